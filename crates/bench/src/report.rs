//! Figures and their renderings: terminal table, JSON, SVG, Markdown.

use serde::Serialize;
use std::fmt::Write;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub median: f64,
    pub p95: f64,
    pub n: usize,
}

impl Stats {
    pub fn from_values(v: &[f64]) -> Stats {
        let mut s = v.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        let pick = |q: f64| -> f64 {
            if s.is_empty() {
                return f64::NAN;
            }
            let i = ((s.len() - 1) as f64 * q).round() as usize;
            s[i.min(s.len() - 1)]
        };
        Stats {
            median: pick(0.5),
            p95: pick(0.95),
            n: s.len(),
        }
    }

    pub fn from_durations(v: &[Duration]) -> Stats {
        let ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        Stats::from_values(&ms)
    }

    pub fn single(x: f64) -> Stats {
        Stats {
            median: x,
            p95: x,
            n: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    /// (side, stats) in insertion order.
    pub values: Vec<(String, Stats)>,
    pub higher_is_better: bool,
}

impl Figure {
    pub fn new(name: &str, unit: &str) -> Figure {
        Figure {
            name: name.into(),
            unit: unit.into(),
            values: Vec::new(),
            higher_is_better: false,
        }
    }

    pub fn set(&mut self, side: &str, s: Stats) {
        self.values.push((side.into(), s));
    }

    pub fn get(&self, side: &str) -> Option<&Stats> {
        self.values.iter().find(|(k, _)| k == side).map(|(_, s)| s)
    }

    /// rcni's median over the reference's (for throughput: reference over rcni
    /// is not used; the ratio is always rcni/reference as printed).
    pub fn ratio(&self) -> Option<f64> {
        let a = self.get("rcni")?.median;
        let b = self.get("reference")?.median;
        (b > 0.0).then(|| a / b)
    }
}

pub struct Report {
    pub command: String,
    pub figures: Vec<Figure>,
    /// host-local ADD/DEL per allocated count, for the chart.
    pub curve: Vec<(usize, Figure, Figure)>,
    /// Bridge ADD and the kernel's create + attach floor per pods on the
    /// bridge, for the chart.
    pub density: Vec<(usize, Figure, Figure)>,
    /// The density target's comparisons, one line each.
    pub density_target: Vec<String>,
    pub date: String,
    pub machine: String,
}

fn sh(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into())
}

impl Report {
    pub fn new(command: String) -> Report {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Report {
            command,
            figures: Vec::new(),
            curve: Vec::new(),
            density: Vec::new(),
            density_target: Vec::new(),
            date: sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            machine: format!(
                "{cpus} cores, {}, Linux {}",
                cpu_model(),
                sh("uname", &["-r"])
            ),
        }
    }

    pub fn push(&mut self, f: Figure) {
        self.figures.push(f);
    }

    fn cell(f: &Figure, side: &str) -> String {
        match f.get(side) {
            Some(s) if s.n > 1 => format!("{:.2} / {:.2}", s.median, s.p95),
            Some(s) => format!("{:.2}", s.median),
            None => "—".into(),
        }
    }

    fn rows(&self) -> Vec<[String; 5]> {
        self.figures
            .iter()
            .map(|f| {
                let ratio = f.ratio().map_or("—".into(), |r| format!("{r:.3}"));
                let first = if f.get("kernel").is_some() {
                    Self::cell(f, "kernel")
                } else {
                    Self::cell(f, "rcni")
                };
                // A figure of another side only (netavark, no network) shows
                // it, named, in the first column.
                let first = match f.values.first() {
                    Some((side, _))
                        if !["rcni", "reference", "kernel"].contains(&side.as_str()) =>
                    {
                        format!("{side}: {}", Self::cell(f, side))
                    }
                    _ => first,
                };
                [
                    f.name.clone(),
                    f.unit.clone(),
                    first,
                    Self::cell(f, "reference"),
                    ratio,
                ]
            })
            .collect()
    }

    const HEADER: [&'static str; 5] = [
        "figure",
        "unit",
        "rcni (median / p95)",
        "reference (median / p95)",
        "rcni / reference",
    ];

    pub fn table(&self) -> String {
        let rows = self.rows();
        let mut w = Self::HEADER.map(str::len);
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            for (i, c) in cells.iter().enumerate() {
                let pad = w[i] - c.chars().count();
                let _ = write!(out, "{c}{}  ", " ".repeat(pad));
            }
            out.push('\n');
        };
        line(&mut out, &Self::HEADER.map(String::from));
        line(&mut out, &w.map(|n| "-".repeat(n)));
        for r in &rows {
            line(&mut out, r);
        }
        out
    }

    pub fn json(&self) -> String {
        let v = serde_json::json!({
            "date": self.date,
            "machine": self.machine,
            "command": self.command,
            "figures": self.figures.iter().map(|f| serde_json::json!({
                "name": f.name,
                "unit": f.unit,
                "values": f.values.iter().map(|(k, s)| (k.clone(), serde_json::to_value(s).unwrap_or_default())).collect::<serde_json::Map<_, _>>(),
                "ratio_rcni_over_reference": f.ratio(),
                "higher_is_better": f.higher_is_better,
            })).collect::<Vec<_>>(),
        });
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Benchmarks\n");
        let _ = writeln!(
            out,
            "Latest run: {} on {}.\n\nCommand (as root, from the repository root):\n\n```sh\nbash scripts/dev.sh bench\n# which runs: {}\n```\n",
            self.date, self.machine, self.command
        );
        let _ = writeln!(
            out,
            "Every figure runs inside throwaway network namespaces; rcni and the reference (Debian's `containernetworking-plugins`) alternate A B / B A after 3 warm-up runs. Times are wall clock from spawning the plugin process to reaping it, in milliseconds: median / p95. A ratio below 1 means rcni is faster (or smaller), except for pods/s where higher is better.\n"
        );
        let has = |prefix: &str| self.figures.iter().any(|f| f.name.starts_with(prefix));
        if has("density:") {
            let _ = writeln!(
                out,
                "Density: one pod is added and removed (bridge + host-local) while N pods stay attached to the same bridge (veths made with netlink, their addresses in host-local's store). The kernel rows are measured in the same loop on the same bridge, with netlink only: a veth created and attached (master + up), the same plus the pod end addressed and then up and both ends operationally up (what a bridge ADD asks of the kernel; learnt from link notifications, as rcni's bridge waits; DAD off on the pod end, as both plugins set it, so the pod's first IPv6 announcements follow carrier at once, as theirs do), and the deletion. 300 samples per size: a veth deletion waits for RCU grace periods, and DEL's median moved by 3 ms between 40-sample runs. A Linux bridge takes at most 1023 ports, so 1000 is as dense as one bridge gets. The target lines compare the largest density with the smallest: rcni there may cost its own cost at the smallest plus the floor's growth plus 0.5 ms.\n"
            );
            for line in &self.density_target {
                let _ = writeln!(out, "- {line}");
            }
            if !self.density_target.is_empty() {
                let _ = writeln!(out);
            }
        }
        if has("host-local wrap") {
            let _ = writeln!(
                out,
                "host-local walks: `steady` has the cursor (`last_reserved_ip.0`) just before a free address; `wrap` is a 98%-full /20 whose cursor sits at the end, so every ADD wraps and walks past all taken addresses; `no cursor` removes the cursor file before each ADD (a reboot or a restore): rcni's index recognises that change (its hard link of the cursor is the removed file, untouched) and keeps its taken-address pages instead of rebuilding, then walks them from the start of the range as the reference walks the files.\n"
            );
        }
        if has("podman run") {
            let _ = writeln!(
                out,
                "Podman: `podman run --rm` of a no-op container from a local image, Debian's Podman in a private jail per backend (CNI with rcni's plugins, the same conflist on the reference plugins, netavark, and `--network none`); the backends rotate order every round. The network share is each median minus the `--network none` median.\n"
            );
        }
        let _ = writeln!(out, "| {} |", Self::HEADER.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(5));
        for r in self.rows() {
            let _ = writeln!(out, "| {} |", r.join(" | "));
        }
        let _ = writeln!(out, "\n![latency chart](benchmarks.svg)");
        out
    }

    /// Two charts side by side: host-local ADD latency against allocated
    /// addresses, and median ADD/DEL per main-plugin figure.
    pub fn svg(&self) -> String {
        let (w, h) = (
            960.0,
            if self.density.is_empty() {
                400.0
            } else {
                460.0
            },
        );
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let colors = [("rcni", "#d9480f"), ("reference", "#1864ab")];

        // Left: line chart(s).
        let hl: Vec<(usize, Vec<(&str, f64)>)> = self
            .curve
            .iter()
            .map(|(n, a, _)| {
                let pts = colors
                    .iter()
                    .filter_map(|(side, _)| Some((*side, a.get(side)?.median)))
                    .collect();
                (*n, pts)
            })
            .collect();
        let ch = if self.density.is_empty() {
            300.0
        } else {
            150.0
        };
        line_chart(
            &mut s,
            "host-local ADD median (ms) vs allocated addresses",
            (60.0, 40.0, 380.0, ch),
            &hl,
            &colors,
        );
        if !self.density.is_empty() {
            let dn: Vec<(usize, Vec<(&str, f64)>)> = self
                .density
                .iter()
                .map(|(n, a, k)| {
                    let mut pts: Vec<(&str, f64)> = colors
                        .iter()
                        .filter_map(|(side, _)| Some((*side, a.get(side)?.median)))
                        .collect();
                    if let Some(st) = k.get("kernel") {
                        pts.push(("kernel", st.median));
                    }
                    (*n, pts)
                })
                .collect();
            line_chart(
                &mut s,
                "bridge ADD median (ms) vs pods on the bridge",
                (60.0, 250.0, 380.0, ch),
                &dn,
                &[colors[0], colors[1], ("kernel", "#2b8a3e")],
            );
        }

        // Right: grouped bars for ADD/DEL figures of main plugins.
        let bars: Vec<&Figure> = self
            .figures
            .iter()
            .filter(|f| {
                (f.name.ends_with(" ADD") || f.name.ends_with(" DEL"))
                    && !f.name.starts_with("host-local")
            })
            .collect();
        let (bx0, by0, bw, bh) = (520.0, 40.0, 420.0, 300.0);
        svg_title(&mut s, (bx0, 24.0), "median per call (ms)");
        let bmax = axis_top(
            bars.iter()
                .flat_map(|f| f.values.iter().map(|(_, st)| st.median)),
        );
        svg_line(&mut s, (bx0, by0 + bh), (bx0 + bw, by0 + bh));
        let slot = bw / bars.len().max(1) as f64;
        for (i, f) in bars.iter().enumerate() {
            for (j, (side, color)) in colors.iter().enumerate() {
                if let Some(st) = f.get(side) {
                    let bar_w = slot * 0.35;
                    let x = bx0 + slot * i as f64 + slot * 0.1 + bar_w * j as f64;
                    let hgt = bh * st.median / bmax;
                    let _ = writeln!(
                        s,
                        r#"<rect x="{x:.1}" y="{:.1}" width="{bar_w:.1}" height="{hgt:.1}" fill="{color}"/>"#,
                        by0 + bh - hgt
                    );
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle">{:.1}</text>"#,
                        x + bar_w / 2.0,
                        by0 + bh - hgt - 3.0,
                        st.median
                    );
                }
            }
            let short = f
                .name
                .replace(" + host-local", "+hl")
                .replace(" + ipMasq", "+masq");
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="end" transform="rotate(-30 {:.1} {:.1})">{}</text>"#,
                bx0 + slot * (i as f64 + 0.5),
                by0 + bh + 12.0,
                bx0 + slot * (i as f64 + 0.5),
                by0 + bh + 12.0,
                short
            );
        }
        let mut legend = colors.to_vec();
        if !self.density.is_empty() {
            legend.push(("kernel floor", "#2b8a3e"));
        }
        for (j, (side, color)) in legend.iter().enumerate() {
            let y = h - 14.0;
            let x = 60.0 + 120.0 * j as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{x}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{y}">{side}</text>"#,
                y - 10.0,
                x + 16.0
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// The top of a value axis: 10% above the largest of `values` (at least
/// 0.001, so an all-zero chart still has a scale).
fn axis_top(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0f64, f64::max).max(0.001) * 1.1
}

/// A black SVG line from `a` to `b`.
fn svg_line(s: &mut String, (x1, y1): (f64, f64), (x2, y2): (f64, f64)) {
    let _ = writeln!(
        s,
        r#"<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="black"/>"#
    );
}

/// A chart's bold title at `(x, y)`.
fn svg_title(s: &mut String, (x, y): (f64, f64), title: &str) {
    let _ = writeln!(
        s,
        r#"<text x="{x}" y="{y}" font-weight="bold">{title}</text>"#
    );
}

/// A line chart at (x, y, width, height): one line per side over the x
/// values of `points`.
fn line_chart(
    s: &mut String,
    title: &str,
    (x0, y0, cw, ch): (f64, f64, f64, f64),
    points: &[(usize, Vec<(&str, f64)>)],
    colors: &[(&str, &str)],
) {
    svg_title(s, (x0, y0 - 16.0), title);
    let max_n = points.iter().map(|(n, _)| *n).max().unwrap_or(1).max(1) as f64;
    let max_y = axis_top(points.iter().flat_map(|(_, v)| v.iter().map(|(_, m)| *m)));
    svg_line(s, (x0, y0 + ch), (x0 + cw, y0 + ch));
    svg_line(s, (x0, y0), (x0, y0 + ch));
    for k in 0..=4 {
        let v = max_y * k as f64 / 4.0;
        let y = y0 + ch - ch * k as f64 / 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{v:.1}</text>"#,
            x0 - 6.0,
            y + 4.0
        );
    }
    for (n, _) in points {
        let x = x0 + cw * *n as f64 / max_n;
        let _ = writeln!(
            s,
            r#"<text x="{x}" y="{}" text-anchor="middle">{n}</text>"#,
            y0 + ch + 16.0
        );
    }
    for (side, color) in colors {
        let pts: Vec<(f64, f64)> = points
            .iter()
            .filter_map(|(n, v)| {
                let m = v.iter().find(|(k, _)| k == side)?.1;
                Some((x0 + cw * *n as f64 / max_n, y0 + ch - ch * m / max_y))
            })
            .collect();
        if pts.is_empty() {
            continue;
        }
        let line: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            line.join(" ")
        );
        for (x, y) in &pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{color}"/>"#
            );
        }
    }
}
