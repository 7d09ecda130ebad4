#!/usr/bin/env python3
"""Turns the standing suites' `RELIABILITY key=value ...` lines (file given
as the argument) into RELIABILITY.md on stdout. Called by
`bash scripts/dev.sh reliability`."""
import datetime
import sys


def rows(path):
    out = []
    with open(path) as f:
        for line in f:
            if not line.startswith("RELIABILITY "):
                continue
            out.append(dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv))
    return out


def main():
    data = rows(sys.argv[1])
    by = lambda s: [r for r in data if r.get("suite") == s]
    fuzz, fault, conc = by("fuzz"), by("fault"), by("concurrency")
    # The rows of issue 10's defects count with the rest of the table.
    hostile = by("hostile") + by("hostile-harden")
    n = lambda r, k: int(r.get(k, "0"))
    p = print
    p("# Reliability figures")
    p()
    p("Written by `bash scripts/dev.sh reliability` from the standing suites' own")
    p("summary lines (`RELIABILITY ...` on their output); do not edit by hand.")
    p(f"Last run: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.")
    p()
    p("| suite | what ran | left behind |")
    p("|---|---|---|")
    p(f"| fuzzing (`fuzz/`, {len(fuzz)} targets) | {sum(n(r, 'execs') for r in fuzz):,} executions, "
      f"{sum(n(r, 'crashes') for r in fuzz)} crashes | — |")
    p(f"| fault injection (`tests/fault_injection.rs`) | {sum(n(r, 'kills') for r in fault)} SIGKILLs "
      f"landed mid-call (of {sum(n(r, 'attempts') for r in fault)} calls started) | "
      f"{sum(n(r, 'leaked') for r in fault)} leaked, {sum(n(r, 'duplicates') for r in fault)} duplicate addresses |")
    p(f"| concurrency (`tests/concurrency.rs`) | {sum(n(r, 'ops') for r in conc)} operations "
      f"({sum(n(r, 'adds') for r in conc)} concurrent ADDs, then DELs and GCs) | "
      f"{sum(n(r, 'leaked') for r in conc)} leaked, {sum(n(r, 'duplicates') for r in conc)} duplicates |")
    p(f"| hostile input (`tests/hostile_input.rs`) | {sum(n(r, 'rows') for r in hostile)} rows over "
      f"{max([n(r, 'plugins') for r in hostile] or [0])} plugins, {sum(n(r, 'failed') for r in hostile)} failed | "
      f"{sum(n(r, 'leaked') for r in hostile)} leaked |")
    p()
    p("## Fuzz targets")
    p()
    p("| target | executions | crashes |")
    p("|---|---|---|")
    for r in fuzz:
        p(f"| `{r['target']}` | {n(r, 'execs'):,} | {n(r, 'crashes')} |")
    p()
    p("## Fault injection per plugin")
    p()
    p("| plugin | SIGKILLs landed | calls started | leaked | duplicate addresses |")
    p("|---|---|---|---|---|")
    for r in fault:
        p(f"| {r['plugin']} | {n(r, 'kills')} | {n(r, 'attempts')} | {n(r, 'leaked')} | {n(r, 'duplicates')} |")
    p()
    p("What \"left behind\" checks: host-local allocations and temp files under the")
    p("test's dataDir, attachment records and temp files under its stateDir, links")
    p("in the node and pod namespaces, nft rules and set/map elements in the node")
    p("namespace, and (hostile input) anything under /run/cni, /var/lib/cni or")
    p("/run/netns naming the test. The hostile-input figure includes the rows of")
    p("issue 10's defects (`hostile_input_table_defects_of_issue_10`).")


main()
