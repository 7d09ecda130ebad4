//! The iptables backend: the reference plugin's chains, by running the
//! `iptables`/`ip6tables` binaries (the only place the plugin spawns
//! processes). Each call and IP version reads the table once (`-S`) and
//! changes it with one `iptables-restore --noflush` (where the reference
//! runs one process per rule), so the change is also all-or-nothing.
//!
//! ```text
//! -A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD
//! -A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN
//! -A CNI-FORWARD -d POD/32 -m comment --comment "rcni-fw:…:in:POD" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
//! -A CNI-FORWARD -s POD/32 -m comment --comment "rcni-fw:…:out:POD" -j ACCEPT
//! # ingressPolicy same-bridge / isolated (jump placed before CNI-FORWARD):
//! -A FORWARD -j CNI-ISOLATION-STAGE-1
//! -A CNI-ISOLATION-STAGE-1 -i BR ! -o BR -j CNI-ISOLATION-STAGE-2
//! -A CNI-ISOLATION-STAGE-1 -i BR -o BR -j DROP          (isolated only)
//! -A CNI-ISOLATION-STAGE-1 -j RETURN
//! -A CNI-ISOLATION-STAGE-2 -o BR -j DROP
//! -A CNI-ISOLATION-STAGE-2 -j RETURN
//! ```
//!
//! Unlike the reference, per-pod rules carry the attachment's comment, so
//! DEL needs no prevResult and GC can find stale rules. Like the
//! reference, per-bridge isolation rules stay (another pod may use the
//! bridge).
//!
//! Which binary: where the host's iptables state lives. A legacy `filter`
//! table in this namespace (listed in `/proc/net/ip_tables_names`) and no
//! iptables-nft `filter` table → `iptables-legacy`; an nftables `ip filter`
//! table → `iptables-nft`; neither → plain `iptables`.

use kit::Teardown;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use cni_spec::error::CniResult;
use cni_spec::Error;
use nft::{Family, Hook, IpVersion, Nft};

use crate::tag::{Dir, Tag};
use crate::{Backend, Pod, Policy};

/// The built-in chain the plugin hooks its own chains into.
pub const FORWARD: &str = "FORWARD";
/// The chain holding the per-pod accept rules.
pub const CNI_FORWARD: &str = "CNI-FORWARD";
/// First isolation stage: matches traffic leaving an isolating bridge.
pub const STAGE1: &str = "CNI-ISOLATION-STAGE-1";
/// Second isolation stage: drops that traffic when it enters another
/// isolating bridge.
pub const STAGE2: &str = "CNI-ISOLATION-STAGE-2";
const FORWARD_COMMENT: &str = "CNI firewall plugin rules";
const ADMIN_COMMENT: &str = "CNI firewall plugin admin overrides";

/// iptables chain names: 1–28 bytes, no whitespace, not an option.
pub fn check_chain_name(c: &str) -> Result<(), String> {
    if c.is_empty() || c.len() > 28 {
        return Err("must be 1 to 28 bytes long".into());
    }
    if c.starts_with('-') || c.starts_with('!') {
        return Err("must not start with '-' or '!'".into());
    }
    if c.chars()
        .any(|ch| ch.is_whitespace() || ch.is_control() || ch == '"')
    {
        return Err("must not contain whitespace, control characters or quotes".into());
    }
    if ["INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"].contains(&c) {
        return Err("must not be a built-in chain".into());
    }
    Ok(())
}

/// Where the iptables state of one IP version lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The legacy x_tables state (`iptables-legacy`).
    Legacy,
    /// iptables-nft's nftables tables (`iptables-nft`).
    Nft,
    /// Whatever `iptables` points to (nothing exists yet).
    Default,
}

impl Variant {
    fn binary(self, v: IpVersion) -> &'static str {
        match (self, v) {
            (Variant::Legacy, IpVersion::V4) => "iptables-legacy",
            (Variant::Legacy, IpVersion::V6) => "ip6tables-legacy",
            (Variant::Nft, IpVersion::V4) => "iptables-nft",
            (Variant::Nft, IpVersion::V6) => "ip6tables-nft",
            (Variant::Default, IpVersion::V4) => "iptables",
            (Variant::Default, IpVersion::V6) => "ip6tables",
        }
    }
}

/// The plugin may run with an empty environment (libcni passes its own,
/// tests clear it): look in `PATH` and the usual system directories.
fn find_bin(name: &str) -> Option<PathBuf> {
    let from_env = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let fixed = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ];
    from_env
        .into_iter()
        .chain(fixed.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| kit::os::is_file(p))
}

/// STATUS: the binaries can be run.
pub fn usable() -> Result<(), String> {
    for v in [IpVersion::V4, IpVersion::V6] {
        let name = Variant::Default.binary(v);
        let bin = find_bin(name).ok_or_else(|| format!("{name} not found"))?;
        let out = kit::os::run(&bin, &["--version"], None)
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        if !out.success() {
            return Err(format!("{} --version failed", bin.display()));
        }
    }
    Ok(())
}

fn nft_family(v: IpVersion) -> Family {
    match v {
        IpVersion::V4 => Family::Ip,
        IpVersion::V6 => Family::Ip6,
    }
}

/// A legacy `filter` table exists in the calling thread's namespace.
fn legacy_present(v: IpVersion) -> bool {
    let file = match v {
        IpVersion::V4 => "ip_tables_names",
        IpVersion::V6 => "ip6_tables_names",
    };
    kit::os::read_to_string(&Path::new("/proc/thread-self/net").join(file))
        .map(|s| s.lines().any(|l| l.trim() == "filter"))
        .unwrap_or(false)
}

/// Chains of the iptables-nft `filter` table (empty when absent).
fn nft_filter_chains(nft: &Nft, v: IpVersion) -> CniResult<Vec<nft::ChainInfo>> {
    match nft.chains(nft_family(v), "filter") {
        Ok(c) => Ok(c),
        Err(e) if e.is_not_found() => Ok(Vec::new()),
        Err(e) => Err(kit::err(e)),
    }
}

/// The variant that holds this version's state, if any.
fn present_variant(nft: &Nft, v: IpVersion) -> CniResult<Option<Variant>> {
    if !nft_filter_chains(nft, v)?.is_empty() {
        return Ok(Some(Variant::Nft));
    }
    if legacy_present(v) {
        return Ok(Some(Variant::Legacy));
    }
    Ok(None)
}

/// The binaries of one IP version: `iptables` to read the table,
/// `iptables-restore` to change it in one process per call.
#[derive(Debug, Clone)]
pub struct Tool {
    /// The IP version these binaries manage.
    pub version: IpVersion,
    /// `iptables` or `ip6tables` (of the chosen variant).
    pub bin: PathBuf,
    /// The matching `iptables-restore` / `ip6tables-restore`.
    pub restore: PathBuf,
}

fn tool(v: IpVersion, variant: Variant) -> CniResult<Tool> {
    let found = |x: Variant| {
        let name = x.binary(v);
        Some((find_bin(name)?, find_bin(&format!("{name}-restore"))?))
    };
    let (bin, restore) = found(variant)
        .or_else(|| found(Variant::Default))
        .ok_or_else(|| {
            Error::io(format!(
                "firewall backend iptables: {0} or {0}-restore not found",
                variant.binary(v)
            ))
        })?;
    Ok(Tool {
        version: v,
        bin,
        restore,
    })
}

/// Whether the `FORWARD` chain's policy is DROP.
fn policy_drop(t: &Tool) -> CniResult<bool> {
    let out = t.run(&["-w", "-t", "filter", "-S", FORWARD])?;
    Ok(out.lines().any(|l| tokens(l) == ["-P", FORWARD, "DROP"]))
}

/// Auto-detection: for each version the pod uses, an iptables `FORWARD`
/// chain with policy DROP (iptables-nft is seen through nf_tables, legacy
/// through `/proc/net/ip_tables_names`; only then is a binary run to read
/// the policy, which nf_tables chain dumps here do not expose).
pub fn detect_drop_policy(
    nft: &Nft,
    versions: &[IpVersion],
) -> CniResult<Option<Vec<(IpVersion, Variant)>>> {
    let mut found = Vec::new();
    for &v in versions {
        let nft_forward = nft_filter_chains(nft, v)?.iter().any(|c| {
            c.name == FORWARD && matches!(c.hook, Some((h, _)) if h == Hook::Forward.raw())
        });
        if nft_forward && policy_drop(&tool(v, Variant::Nft)?)? {
            found.push((v, Variant::Nft));
            continue;
        }
        if legacy_present(v) && policy_drop(&tool(v, Variant::Legacy)?)? {
            found.push((v, Variant::Legacy));
        }
    }
    Ok((!found.is_empty()).then_some(found))
}

/// Splits one `iptables -S` line like a shell would (double quotes,
/// backslash escapes inside them).
pub fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// One rule of an `-S` listing: its chain and spec (after `-A CHAIN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRule {
    /// The chain the rule is appended to.
    pub chain: String,
    /// The rule's tokens after `-A CHAIN`, unquoted.
    pub spec: Vec<String>,
}

impl ListedRule {
    /// The rule's `--comment` value, if it has one.
    pub fn comment(&self) -> Option<&str> {
        self.spec
            .windows(2)
            .find(|w| w[0] == "--comment")
            .map(|w| w[1].as_str())
    }
    /// The spec without `-m comment --comment X`.
    fn bare(&self) -> Vec<String> {
        strip_comment(&self.spec)
    }
    fn target(&self) -> Option<&str> {
        self.spec
            .windows(2)
            .rev()
            .find(|w| w[0] == "-j")
            .map(|w| w[1].as_str())
    }
}

fn strip_comment(spec: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < spec.len() {
        if spec[i] == "-m" && spec.get(i + 1).map(String::as_str) == Some("comment") {
            i += 2;
            if spec.get(i).map(String::as_str) == Some("--comment") {
                i += 2;
            }
            continue;
        }
        out.push(spec[i].clone());
        i += 1;
    }
    out
}

/// The filter table as `iptables -S` prints it.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Every chain declared (`-N`) or given a policy (`-P`).
    pub chains: BTreeSet<String>,
    /// The rules (`-A`) in listing order.
    pub rules: Vec<ListedRule>,
}

impl Listing {
    /// Reads an `iptables -S` output; lines of other kinds are skipped.
    pub fn parse(text: &str) -> Listing {
        let mut l = Listing::default();
        for line in text.lines() {
            let t = tokens(line);
            match t.first().map(String::as_str) {
                Some("-N") | Some("-P") if t.len() >= 2 => {
                    l.chains.insert(t[1].clone());
                }
                Some("-A") if t.len() >= 2 => l.rules.push(ListedRule {
                    chain: t[1].clone(),
                    spec: t[2..].to_vec(),
                }),
                _ => {}
            }
        }
        l
    }
    fn in_chain<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a ListedRule> + 'a {
        self.rules.iter().filter(move |r| r.chain == chain)
    }
    /// 1-based position of the first rule of `chain` jumping to `target`.
    fn jump_pos(&self, chain: &str, target: &str) -> Option<usize> {
        self.in_chain(chain)
            .position(|r| r.target() == Some(target))
            .map(|i| i + 1)
    }
    fn has_bare(&self, chain: &str, bare: &[String]) -> bool {
        self.in_chain(chain).any(|r| r.bare() == bare)
    }
    fn has_comment(&self, chain: &str, c: &str) -> bool {
        self.in_chain(chain).any(|r| r.comment() == Some(c))
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn with_comment(mut spec: Vec<String>, comment: &str) -> Vec<String> {
    // iptables prints interface matches first, then -m matches in order.
    let at = spec
        .iter()
        .position(|t| t == "-m" || t == "-j")
        .unwrap_or(spec.len());
    let c = s(&["-m", "comment", "--comment", comment]);
    spec.splice(at..at, c);
    spec
}

fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

/// The spec of one per-pod rule.
pub fn pod_spec(t: &Tag) -> Vec<String> {
    let c = t.comment();
    let h = host(t.ip);
    match t.dir {
        Dir::In => s(&[
            "-d",
            &h,
            "-m",
            "comment",
            "--comment",
            &c,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ]),
        Dir::Out => s(&["-s", &h, "-m", "comment", "--comment", &c, "-j", "ACCEPT"]),
    }
}

/// Quotes one argument for `iptables-restore`, which splits lines on
/// whitespace and honours double quotes.
fn restore_quote(arg: &str) -> String {
    if !arg.is_empty()
        && !arg
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\')
    {
        return arg.to_string();
    }
    let mut q = String::with_capacity(arg.len() + 2);
    q.push('"');
    for c in arg.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// The changes of one call to the `filter` table, applied by one
/// `iptables-restore --noflush` process: all of them or none.
#[derive(Debug, Default)]
struct Script {
    lines: Vec<String>,
}

impl Script {
    fn push(&mut self, op: &[&str], spec: &[String]) {
        let mut line: Vec<String> = op.iter().map(|a| restore_quote(a)).collect();
        line.extend(spec.iter().map(|a| restore_quote(a)));
        self.lines.push(line.join(" "));
    }

    /// `-N` rather than a `:CHAIN` declaration: with `--noflush` a
    /// declaration flushes a chain that a concurrent call created since
    /// our listing, while `-N` fails and the call retries on a new listing.
    fn ensure_chain(&mut self, l: &Listing, chain: &str) {
        if !l.chains.contains(chain) {
            self.push(&["-N", chain], &[]);
        }
    }

    fn ensure_first(&mut self, l: &Listing, chain: &str, pos: usize, spec: Vec<String>) {
        if !l.has_bare(chain, &strip_comment(&spec)) {
            self.push(&["-I", chain, &pos.to_string()], &spec);
        }
    }

    fn ensure_last(&mut self, l: &Listing, chain: &str, spec: Vec<String>) {
        if !l.has_bare(chain, &strip_comment(&spec)) {
            self.push(&["-A", chain], &spec);
        }
    }

    fn isolation(&mut self, l: &Listing, bridge: &str, policy: Policy) {
        let comment = format!(
            "CNI firewall plugin rules (ingressPolicy: {})",
            policy.as_str()
        );
        self.ensure_chain(l, STAGE1);
        self.ensure_chain(l, STAGE2);
        if l.jump_pos(FORWARD, STAGE1).is_none() {
            self.push(
                &["-I", FORWARD, "1"],
                &with_comment(s(&["-j", STAGE1]), &comment),
            );
        }
        let c = |spec: &[&str]| with_comment(s(spec), &comment);
        self.ensure_first(
            l,
            STAGE1,
            1,
            c(&["-i", bridge, "!", "-o", bridge, "-j", STAGE2]),
        );
        if policy == Policy::Isolated {
            self.ensure_first(l, STAGE1, 1, c(&["-i", bridge, "-o", bridge, "-j", "DROP"]));
        }
        self.ensure_last(l, STAGE1, c(&["-j", "RETURN"]));
        self.ensure_first(l, STAGE2, 1, c(&["-o", bridge, "-j", "DROP"]));
        self.ensure_last(l, STAGE2, c(&["-j", "RETURN"]));
    }

    fn remove_in(&mut self, l: &Listing, gone: &dyn Fn(&Tag) -> bool) {
        for r in l.in_chain(CNI_FORWARD) {
            if r.comment().and_then(Tag::parse).is_some_and(|t| gone(&t)) {
                self.push(&["-D", CNI_FORWARD], &r.spec);
            }
        }
    }

    fn text(&self) -> String {
        let mut t = String::from("*filter\n");
        for l in &self.lines {
            t.push_str(l);
            t.push('\n');
        }
        t.push_str("COMMIT\n");
        t
    }
}

/// How often a call re-reads the table when a concurrent call changed it
/// between our listing and our restore (a chain we create appeared, a rule
/// we delete went).
const RESTORE_TRIES: usize = 5;

/// The `filter` table of one IP version, as the backend reads and changes
/// it: the seam under the iptables backend. [`Tool`] runs the binaries;
/// the unit tests' fake keeps the table in memory.
pub trait FilterTable {
    /// The IP version of the table.
    fn version(&self) -> IpVersion;
    /// Who answers, for messages (the `iptables`/`ip6tables` binary).
    fn who(&self) -> String;
    /// The table as `iptables -S` prints it.
    fn dump(&self) -> CniResult<String>;
    /// Applies an `iptables-restore --noflush` script: all of it or none.
    fn restore(&self, script: &str) -> CniResult<()>;
}

impl FilterTable for Tool {
    fn version(&self) -> IpVersion {
        self.version
    }
    fn who(&self) -> String {
        self.bin.display().to_string()
    }
    fn dump(&self) -> CniResult<String> {
        self.run(&["-w", "-t", "filter", "-S"])
    }
    fn restore(&self, text: &str) -> CniResult<()> {
        let out = kit::os::run(&self.restore, &["-w", "--noflush"], Some(text.as_bytes()))
            .map_err(|e| Error::io(format!("failed to run {}: {e}", self.restore.display())))?;
        if !out.success() {
            return Err(Error::io(format!(
                "`{} -w --noflush` failed on\n{}: {}",
                self.restore.display(),
                text.trim_end(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
}

impl Tool {
    fn run(&self, args: &[&str]) -> CniResult<String> {
        let out = kit::os::run(&self.bin, args, None)
            .map_err(|e| Error::io(format!("failed to run {}: {e}", self.bin.display())))?;
        if !out.success() {
            return Err(Error::io(format!(
                "`{} {}` failed: {}",
                self.bin.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl dyn FilterTable + '_ {
    fn listing(&self) -> CniResult<Listing> {
        Ok(Listing::parse(&self.dump()?))
    }

    fn apply(&self, script: &Script) -> CniResult<()> {
        self.restore(&script.text())
    }

    /// Lists the table, builds the changes against that listing and
    /// applies them in one process; a failure is retried on a fresh
    /// listing, since a concurrent call may have changed the table.
    fn change(&self, build: &dyn Fn(&Listing, &mut Script)) -> CniResult<()> {
        let mut last = None;
        for _ in 0..RESTORE_TRIES {
            let l = self.listing()?;
            let mut script = Script::default();
            build(&l, &mut script);
            if script.lines.is_empty() {
                return Ok(());
            }
            match self.apply(&script) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::io("iptables-restore failed")))
    }

    fn add(&self, pod: &Pod, admin: &str) -> CniResult<()> {
        let tags: Vec<Tag> = pod
            .tags()
            .into_iter()
            .filter(|t| IpVersion::of(t.ip) == self.version())
            .collect();
        self.change(&|l, sc| {
            sc.ensure_chain(l, CNI_FORWARD);
            sc.ensure_chain(l, admin);
            if l.jump_pos(FORWARD, CNI_FORWARD).is_none() {
                // After the isolation jump, which must see packets first.
                let pos = l.jump_pos(FORWARD, STAGE1).map_or(1, |p| p + 1);
                sc.push(
                    &["-I", FORWARD, &pos.to_string()],
                    &with_comment(s(&["-j", CNI_FORWARD]), FORWARD_COMMENT),
                );
            }
            if l.jump_pos(CNI_FORWARD, admin).is_none() {
                sc.push(
                    &["-I", CNI_FORWARD, "1"],
                    &with_comment(s(&["-j", admin]), ADMIN_COMMENT),
                );
            }
            // A repeated ADD replaces the attachment's rules.
            sc.remove_in(l, &|t| pod.owner.owns(t));
            for t in &tags {
                sc.push(&["-A", CNI_FORWARD], &pod_spec(t));
            }
            if let Some(br) = &pod.bridge {
                sc.isolation(l, br, pod.policy);
            }
        })
    }

    fn remove(&self, gone: &dyn Fn(&Tag) -> bool) -> CniResult<()> {
        self.change(&|l, sc| sc.remove_in(l, gone))
    }

    fn check(&self, pod: &Pod, admin: &str) -> CniResult<()> {
        let l = self.listing()?;
        let bin = self.who();
        let fail = |what: String| Err(Error::internal(format!("firewall CHECK ({bin}): {what}")));
        if l.jump_pos(FORWARD, CNI_FORWARD).is_none() {
            return fail(format!("no jump from {FORWARD} to {CNI_FORWARD}"));
        }
        if !l.chains.contains(admin) || l.jump_pos(CNI_FORWARD, admin).is_none() {
            return fail(format!("no jump from {CNI_FORWARD} to {admin}"));
        }
        for t in pod.tags() {
            if IpVersion::of(t.ip) == self.version() && !l.has_comment(CNI_FORWARD, &t.comment()) {
                return fail(format!(
                    "rule \"{}\" not found in {CNI_FORWARD}",
                    t.comment()
                ));
            }
        }
        if let Some(br) = &pod.bridge {
            let mut need = vec![
                (STAGE1, s(&["-i", br, "!", "-o", br, "-j", STAGE2])),
                (STAGE2, s(&["-o", br, "-j", "DROP"])),
            ];
            if pod.policy == Policy::Isolated {
                need.push((STAGE1, s(&["-i", br, "-o", br, "-j", "DROP"])));
            }
            if l.jump_pos(FORWARD, STAGE1).is_none() {
                return fail(format!("no jump from {FORWARD} to {STAGE1}"));
            }
            for (chain, spec) in need {
                if !l.has_bare(chain, &spec) {
                    return fail(format!("rule \"{}\" not found in {chain}", spec.join(" ")));
                }
            }
        }
        Ok(())
    }
}

/// The iptables backend: one tool per IP version it manages.
pub struct IptBackend {
    tools: Vec<Box<dyn FilterTable>>,
    admin: String,
}

impl IptBackend {
    /// Tools for `versions`: the variant auto-detection found, else the
    /// one holding the host's state, else the default binary.
    pub fn select(
        nft: &Nft,
        admin: &str,
        versions: &[IpVersion],
        found: Option<Vec<(IpVersion, Variant)>>,
    ) -> CniResult<IptBackend> {
        let mut tools = Vec::new();
        for &v in versions {
            let detected = found
                .as_ref()
                .and_then(|f| f.iter().find(|(fv, _)| *fv == v).map(|(_, x)| *x));
            let variant = match detected {
                Some(x) => x,
                None => present_variant(nft, v)?.unwrap_or(Variant::Default),
            };
            tools.push(Box::new(tool(v, variant)?) as Box<dyn FilterTable>);
        }
        Ok(IptBackend {
            tools,
            admin: admin.to_string(),
        })
    }

    /// For DEL and GC without an explicit backend: the tools of versions
    /// where rules of ours may exist (iptables-nft: a `CNI-FORWARD` chain
    /// seen through nf_tables; legacy: a legacy filter table).
    pub fn in_use(nft: &Nft, admin: &str) -> Option<IptBackend> {
        let mut tools = Vec::new();
        for v in [IpVersion::V4, IpVersion::V6] {
            let nft_has = nft_filter_chains(nft, v)
                .map(|c| c.iter().any(|c| c.name == CNI_FORWARD))
                .unwrap_or(false);
            let variant = if nft_has {
                Some(Variant::Nft)
            } else if legacy_present(v) {
                Some(Variant::Legacy)
            } else {
                None
            };
            if let Some(t) = variant.and_then(|x| tool(v, x).ok()) {
                tools.push(Box::new(t) as Box<dyn FilterTable>);
            }
        }
        (!tools.is_empty()).then(|| IptBackend {
            tools,
            admin: admin.to_string(),
        })
    }
}

impl Backend for IptBackend {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn add(&self, pod: &Pod) -> CniResult<()> {
        for t in &self.tools {
            if let Err(e) = t.add(pod, &self.admin) {
                // Leave nothing of this attachment behind.
                let _ = self.remove(&|x| pod.owner.owns(x));
                return Err(e);
            }
        }
        Ok(())
    }

    fn check(&self, pod: &Pod) -> CniResult<()> {
        for t in &self.tools {
            t.check(pod, &self.admin)?;
        }
        Ok(())
    }

    fn remove(&self, gone: &dyn Fn(&Tag) -> bool) -> CniResult<()> {
        let mut td = Teardown::new();
        for t in &self.tools {
            td.step(t.remove(gone));
        }
        Ok(td.finish()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_handle_quotes() {
        assert_eq!(
            tokens(r#"-A CNI-FORWARD -s 10.0.0.2/32 -m comment --comment "a b \"c\"" -j ACCEPT"#),
            s(&[
                "-A",
                "CNI-FORWARD",
                "-s",
                "10.0.0.2/32",
                "-m",
                "comment",
                "--comment",
                "a b \"c\"",
                "-j",
                "ACCEPT"
            ])
        );
        assert_eq!(tokens("  -P FORWARD DROP "), s(&["-P", "FORWARD", "DROP"]));
        assert_eq!(tokens(r#"--comment """#), s(&["--comment", ""]));
    }

    #[test]
    fn listing_finds_jumps_and_comments() {
        let text = r#"-P INPUT ACCEPT
-P FORWARD DROP
-N CNI-ADMIN
-N CNI-FORWARD
-A FORWARD -m comment --comment "CNI firewall plugin rules (ingressPolicy: same-bridge)" -j CNI-ISOLATION-STAGE-1
-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD
-A CNI-FORWARD -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN
-A CNI-FORWARD -s 10.0.0.2/32 -m comment --comment "rcni-fw:n:c:eth0:open:-:out:10.0.0.2" -j ACCEPT
-A CNI-ISOLATION-STAGE-1 -i br0 ! -o br0 -m comment --comment "x" -j CNI-ISOLATION-STAGE-2
"#;
        let l = Listing::parse(text);
        assert!(l.chains.contains("CNI-ADMIN") && l.chains.contains("FORWARD"));
        assert_eq!(l.jump_pos(FORWARD, STAGE1), Some(1));
        assert_eq!(l.jump_pos(FORWARD, CNI_FORWARD), Some(2));
        assert!(l.has_comment(CNI_FORWARD, "rcni-fw:n:c:eth0:open:-:out:10.0.0.2"));
        assert!(l.has_bare(STAGE1, &s(&["-i", "br0", "!", "-o", "br0", "-j", STAGE2])));
        let t = Tag::parse("rcni-fw:n:c:eth0:open:-:out:10.0.0.2").expect("tag");
        let spec = pod_spec(&t);
        assert_eq!(l.in_chain(CNI_FORWARD).nth(1).map(|r| &r.spec), Some(&spec));
    }

    #[test]
    fn restore_script_quotes_and_skips_what_exists() {
        assert_eq!(restore_quote("ACCEPT"), "ACCEPT");
        assert_eq!(restore_quote("a b"), "\"a b\"");
        assert_eq!(restore_quote("x\"y"), "\"x\\\"y\"");
        assert_eq!(restore_quote(""), "\"\"");
        let l = Listing::parse("-N CNI-FORWARD\n-A CNI-FORWARD -s 10.0.0.2/32 -m comment --comment \"rcni-fw:n:c:eth0:open:-:out:10.0.0.2\" -j ACCEPT\n");
        let mut sc = Script::default();
        sc.ensure_chain(&l, CNI_FORWARD);
        sc.ensure_chain(&l, "CNI-ADMIN");
        sc.remove_in(&l, &|t| t.ip.to_string() == "10.0.0.2");
        assert_eq!(
            sc.text(),
            "*filter\n-N CNI-ADMIN\n-D CNI-FORWARD -s 10.0.0.2/32 -m comment --comment rcni-fw:n:c:eth0:open:-:out:10.0.0.2 -j ACCEPT\nCOMMIT\n"
        );
    }

    #[test]
    fn comment_goes_before_matches() {
        assert_eq!(
            with_comment(s(&["-i", "b", "!", "-o", "b", "-j", "X"]), "c"),
            s(&[
                "-i",
                "b",
                "!",
                "-o",
                "b",
                "-m",
                "comment",
                "--comment",
                "c",
                "-j",
                "X"
            ])
        );
        assert!(check_chain_name("CNI-ADMIN").is_ok());
        assert!(check_chain_name("FORWARD").is_err());
    }
}

/// The iptables backend on a fake `filter` table (in memory, changed by
/// the restore scripts as iptables-restore would, all or nothing): order,
/// undo, retries and error codes without root or binaries. tests/firewall.rs
/// stays the ground truth.
#[cfg(test)]
mod fake_tests {
    use super::*;
    use crate::tag::Owner;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// One version's table: chains and rules, the scripts applied, and
    /// how many of the next restores to refuse.
    struct FakeTable {
        version: IpVersion,
        chains: RefCell<Vec<String>>,
        rules: RefCell<Vec<(String, Vec<String>)>>,
        scripts: RefCell<Vec<Vec<String>>>,
        refuse: RefCell<usize>,
    }

    impl FakeTable {
        fn new(version: IpVersion) -> Rc<FakeTable> {
            Rc::new(FakeTable {
                version,
                chains: RefCell::new(s(&["INPUT", FORWARD, "OUTPUT"])),
                rules: RefCell::default(),
                scripts: RefCell::default(),
                refuse: RefCell::new(0),
            })
        }
        fn rules_of(&self, chain: &str) -> Vec<Vec<String>> {
            self.rules
                .borrow()
                .iter()
                .filter(|(c, _)| c == chain)
                .map(|(_, r)| r.clone())
                .collect()
        }
        /// The position in `rules` of the `n`-th (1-based) rule of `chain`.
        fn index_of(rules: &[(String, Vec<String>)], chain: &str, n: usize) -> Option<usize> {
            let of_chain: Vec<usize> = (0..rules.len()).filter(|&i| rules[i].0 == chain).collect();
            match of_chain.get(n - 1) {
                Some(&i) => Some(i),
                None if n == of_chain.len() + 1 => Some(rules.len()),
                None => None,
            }
        }
    }

    impl FilterTable for Rc<FakeTable> {
        fn version(&self) -> IpVersion {
            self.version
        }
        fn who(&self) -> String {
            format!("fake {:?}", self.version)
        }
        fn dump(&self) -> CniResult<String> {
            let mut out = String::new();
            for c in self.chains.borrow().iter() {
                let builtin = [FORWARD, "INPUT", "OUTPUT"].contains(&c.as_str());
                out.push_str(&if builtin {
                    format!("-P {c} ACCEPT\n")
                } else {
                    format!("-N {c}\n")
                });
            }
            for (c, spec) in self.rules.borrow().iter() {
                let spec: Vec<String> = spec.iter().map(|a| restore_quote(a)).collect();
                out.push_str(&format!("-A {c} {}\n", spec.join(" ")));
            }
            Ok(out)
        }
        fn restore(&self, script: &str) -> CniResult<()> {
            let lines: Vec<String> = script
                .lines()
                .filter(|l| !l.starts_with('*') && *l != "COMMIT")
                .map(str::to_string)
                .collect();
            self.scripts.borrow_mut().push(lines.clone());
            let refused = Error::io(format!("{}: iptables-restore refused", self.who()));
            if *self.refuse.borrow() > 0 {
                *self.refuse.borrow_mut() -= 1;
                return Err(refused);
            }
            let mut chains = self.chains.borrow().clone();
            let mut rules = self.rules.borrow().clone();
            for line in &lines {
                let t = tokens(line);
                let (op, chain) = (t[0].as_str(), t[1].clone());
                let known = chains.contains(&chain);
                match op {
                    "-N" if !known => chains.push(chain),
                    "-A" if known => rules.push((chain, t[2..].to_vec())),
                    "-I" if known => {
                        let n: usize = t[2].parse().expect("position");
                        let at = FakeTable::index_of(&rules, &chain, n).ok_or(refused.clone())?;
                        rules.insert(at, (chain, t[3..].to_vec()));
                    }
                    "-D" => {
                        let at = rules
                            .iter()
                            .position(|(c, r)| *c == chain && r[..] == t[2..])
                            .ok_or(refused.clone())?;
                        rules.remove(at);
                    }
                    _ => return Err(refused),
                }
            }
            *self.chains.borrow_mut() = chains;
            *self.rules.borrow_mut() = rules;
            Ok(())
        }
    }

    fn backend(tables: &[&Rc<FakeTable>]) -> IptBackend {
        IptBackend {
            tools: tables
                .iter()
                .map(|t| Box::new(Rc::clone(t)) as Box<dyn FilterTable>)
                .collect(),
            admin: crate::DEFAULT_ADMIN_CHAIN.to_string(),
        }
    }

    fn pod(policy: Policy, ips: &[&str]) -> Pod {
        Pod {
            owner: Owner {
                network: "net".into(),
                container_id: "ctr".into(),
                ifname: "eth0".into(),
            },
            policy,
            bridge: policy.isolates().then(|| "cni0".to_string()),
            ips: ips.iter().map(|i| i.parse().expect("ip")).collect(),
        }
    }

    fn ops(script: &[String]) -> Vec<String> {
        script
            .iter()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect()
    }

    #[test]
    fn add_makes_chains_then_jumps_then_the_pod_rules_in_one_restore() {
        let v4 = FakeTable::new(IpVersion::V4);
        let p = pod(Policy::Open, &["10.0.0.2"]);
        backend(&[&v4]).add(&p).expect("add");
        let scripts = v4.scripts.borrow();
        assert_eq!(scripts.len(), 1);
        assert_eq!(
            ops(&scripts[0]),
            [
                "-N CNI-FORWARD",
                "-N CNI-ADMIN",
                "-I FORWARD",
                "-I CNI-FORWARD",
                "-A CNI-FORWARD",
                "-A CNI-FORWARD"
            ]
        );
        let fwd = v4.rules_of(CNI_FORWARD);
        assert_eq!(fwd.len(), 3);
        assert_eq!(fwd[0].last().map(String::as_str), Some("CNI-ADMIN"));
        assert!(fwd[1].contains(&"10.0.0.2/32".to_string()));
        backend(&[&v4]).check(&p).expect("check after add");
    }

    #[test]
    fn a_repeated_add_replaces_the_pod_rules_and_adds_no_second_jump() {
        let v4 = FakeTable::new(IpVersion::V4);
        let p = pod(Policy::Open, &["10.0.0.2"]);
        backend(&[&v4]).add(&p).expect("add");
        backend(&[&v4]).add(&p).expect("add again");
        assert_eq!(v4.rules_of(FORWARD).len(), 1);
        assert_eq!(v4.rules_of(CNI_FORWARD).len(), 3);
    }

    #[test]
    fn isolation_jumps_before_the_forward_jump() {
        let v4 = FakeTable::new(IpVersion::V4);
        backend(&[&v4])
            .add(&pod(Policy::Isolated, &["10.0.0.2"]))
            .expect("add");
        let fwd = v4.rules_of(FORWARD);
        let targets: Vec<&str> = fwd
            .iter()
            .filter_map(|r| r.last())
            .map(String::as_str)
            .collect();
        assert_eq!(targets, [STAGE1, CNI_FORWARD]);
        let stage1 = v4.rules_of(STAGE1);
        assert_eq!(stage1.len(), 3, "{stage1:?}");
        assert_eq!(stage1[0].last().map(String::as_str), Some("DROP"));
        assert_eq!(stage1[2].last().map(String::as_str), Some("RETURN"));
    }

    #[test]
    fn a_restore_refused_once_is_retried_on_a_fresh_listing() {
        let v4 = FakeTable::new(IpVersion::V4);
        *v4.refuse.borrow_mut() = 1;
        backend(&[&v4])
            .add(&pod(Policy::Open, &["10.0.0.2"]))
            .expect("add");
        assert_eq!(v4.scripts.borrow().len(), 2);
        assert_eq!(v4.rules_of(CNI_FORWARD).len(), 3);
    }

    #[test]
    fn ipv6_refused_every_time_fails_add_with_code_5_and_takes_the_ipv4_rules_back() {
        let v4 = FakeTable::new(IpVersion::V4);
        let v6 = FakeTable::new(IpVersion::V6);
        *v6.refuse.borrow_mut() = RESTORE_TRIES;
        let e = backend(&[&v4, &v6])
            .add(&pod(Policy::Open, &["10.0.0.2", "fd00::2"]))
            .expect_err("refused");
        assert_eq!(e.code, 5, "{e}");
        assert_eq!(v6.scripts.borrow().len(), RESTORE_TRIES);
        // Only the admin jump is left in CNI-FORWARD: no pod rule.
        let fwd = v4.rules_of(CNI_FORWARD);
        assert_eq!(fwd.len(), 1, "{fwd:?}");
        assert_eq!(fwd[0].last().map(String::as_str), Some("CNI-ADMIN"));
    }

    #[test]
    fn del_removes_only_this_attachments_rules_and_a_second_del_changes_nothing() {
        let v4 = FakeTable::new(IpVersion::V4);
        let b = backend(&[&v4]);
        let mine = pod(Policy::Open, &["10.0.0.2"]);
        let mut other = pod(Policy::Open, &["10.0.0.3"]);
        other.owner.container_id = "other".into();
        b.add(&mine).expect("add");
        b.add(&other).expect("add other");
        b.remove(&|t| mine.owner.owns(t)).expect("del");
        assert_eq!(v4.rules_of(CNI_FORWARD).len(), 3);
        let scripts = v4.scripts.borrow().len();
        b.remove(&|t| mine.owner.owns(t)).expect("del again");
        assert_eq!(v4.scripts.borrow().len(), scripts, "nothing to restore");
        b.check(&other).expect("the other pod keeps its rules");
    }

    #[test]
    fn check_of_missing_rules_fails_with_code_999() {
        let v4 = FakeTable::new(IpVersion::V4);
        let b = backend(&[&v4]);
        let p = pod(Policy::SameBridge, &["10.0.0.2"]);
        let e = b.check(&p).expect_err("nothing there");
        assert_eq!(e.code, 999);
        assert!(e.msg.contains("no jump from FORWARD to CNI-FORWARD"), "{e}");
        b.add(&p).expect("add");
        b.remove(&|t| p.owner.owns(t)).expect("del");
        let e = b.check(&p).expect_err("pod rules gone");
        assert_eq!(e.code, 999);
        assert!(e.msg.contains("not found in CNI-FORWARD"), "{e}");
    }
}
