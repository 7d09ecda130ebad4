#!/usr/bin/env bash
# Plugins reach the kernel and the filesystem only through the plugin kit
# (issue 11). `cargo clippy` enforces std::fs / std::process / Path probes
# with plugins/clippy.toml; this script checks what clippy cannot:
#   1. no plugin crate depends on libc (so `libc::` does not compile there);
#   2. plugins/clippy.toml is in place;
#   3. the lints are only ever allowed in test code (`#[cfg(test)]` on the
#      line before the allow);
#   4. no source under plugins/*/src names `std::fs`, `std::process` or
#      `libc::` at all, unit tests included (clippy lets tests through).
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
for toml in plugins/*/Cargo.toml; do
  # [dependencies] (and [build-dependencies]) only: tests may use libc.
  if awk '/^\[/{sec=$0} sec ~ /^\[(build-)?dependencies\]/ && /^libc[ .=]/{found=1} END{exit !found}' "$toml"; then
    echo "$toml: plugins must not depend on libc; use the kit (crates/kit: os, sysctl, packet)" >&2
    fail=1
  fi
done
if ! grep -q 'std::process::Command' plugins/clippy.toml 2>/dev/null; then
  echo "plugins/clippy.toml is missing or no longer refuses std::process::Command" >&2
  fail=1
fi
while IFS=: read -r file line _; do
  prev=$((line - 1))
  if [ "$prev" -lt 1 ] || ! sed -n "${prev}p" "$file" | grep -q '#\[cfg(test)\]'; then
    echo "$file:$line: clippy::disallowed_* may only be allowed on a #[cfg(test)] item" >&2
    fail=1
  fi
done < <(grep -rn 'allow(.*clippy::disallowed_\(methods\|types\)' plugins --include=*.rs || true)
while IFS= read -r hit; do
  echo "$hit: plugins reach files and processes through kit::os" >&2
  fail=1
done < <(grep -rnE 'std::(fs|process)\b|\blibc::' plugins/*/src --include=*.rs | grep -vE '^[^:]+:[0-9]+:\s*//' || true)
if [ "$fail" -ne 0 ]; then
  exit 1
fi
echo "plugin OS rule: ok"
