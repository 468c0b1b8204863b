//! Turns the runs (one JSON line per target × scenario × round) into the
//! Markdown table and the JSON summary: medians per target, herald/Nchan
//! ratios taken within each round and then their median, and each target of
//! issue 4 checked.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

#[derive(Clone, Copy)]
enum Check {
    /// Information only.
    None,
    /// herald/Nchan ratio at most this.
    RatioMax(f64),
    /// herald/Nchan ratio at least this.
    RatioMin(f64),
    /// herald's figure at most this.
    AbsMax(f64),
    /// herald's figure is 0 in every run.
    Zero,
}

#[derive(Clone, Copy)]
enum Unit {
    Kib,
    Us,
    LatMs,
    PerS,
    Secs,
    Count,
    Ratio,
}

struct Row {
    scenario: &'static str,
    key: &'static str,
    label: &'static str,
    unit: Unit,
    check: Check,
    target: &'static str,
}

const fn row(
    scenario: &'static str,
    key: &'static str,
    label: &'static str,
    unit: Unit,
    check: Check,
    target: &'static str,
) -> Row {
    Row { scenario, key, label, unit, check, target }
}

/// Metric "loss" is computed: lost + dup + ooo + gaps + subscriber errors.
/// One row per line, so the table reads as a table.
#[rustfmt::skip]
const ROWS: &[Row] = &[
    row("idle", "rss_kib_per_sub", "server RSS per idle subscriber (KiB)", Unit::Kib, Check::RatioMax(0.5), "≤ 0.5× (≈ 5 KiB)"),
    row("idle", "pss_kib_per_sub", "server PSS per idle subscriber (KiB)", Unit::Kib, Check::None, ""),
    row("fanout-1k", "deliveries_per_s", "deliveries/s", Unit::PerS, Check::RatioMin(3.0), "≥ 3×"),
    row("fanout-1k", "srv_cpu_us_per_delivery", "server CPU per delivery (µs)", Unit::Us, Check::AbsMax(0.5), "≤ 0.5 µs"),
    row("fanout-1k", "srv_write_syscalls_per_delivery", "server write syscalls per delivery", Unit::Ratio, Check::None, ""),
    row("fanout-1k", "lat_p50_us", "latency p50 (ms)", Unit::LatMs, Check::None, ""),
    row("fanout-1k", "lat_p99_us", "latency p99 (ms)", Unit::LatMs, Check::RatioMax(1.0), "≤ 1× (no worse)"),
    row("fanout-1k", "lat_p999_us", "latency p99.9 (ms)", Unit::LatMs, Check::None, ""),
    row("fanout-1k", "lat_max_us", "latency max (ms)", Unit::LatMs, Check::None, ""),
    row("fanout-1k", "loss", "lost + dup + out-of-order", Unit::Count, Check::Zero, "0"),
    row("fanout-10k", "deliveries_per_s", "deliveries/s", Unit::PerS, Check::RatioMin(3.0), "≥ 3×"),
    row("fanout-10k", "srv_cpu_us_per_delivery", "server CPU per delivery (µs)", Unit::Us, Check::AbsMax(1.0), "≤ 1 µs"),
    row("fanout-10k", "srv_write_syscalls_per_delivery", "server write syscalls per delivery", Unit::Ratio, Check::None, ""),
    row("fanout-10k", "lat_p50_us", "latency p50 (ms)", Unit::LatMs, Check::None, ""),
    row("fanout-10k", "lat_p99_us", "latency p99 (ms)", Unit::LatMs, Check::RatioMax(1.0), "≤ 1× (no worse)"),
    row("fanout-10k", "lat_p999_us", "latency p99.9 (ms)", Unit::LatMs, Check::None, ""),
    row("fanout-10k", "lat_max_us", "latency max (ms)", Unit::LatMs, Check::None, ""),
    row("fanout-10k", "loss", "lost + dup + out-of-order", Unit::Count, Check::Zero, "0"),
    row("fanout-1k-200hz", "lat_p50_us", "latency p50 (ms)", Unit::LatMs, Check::None, ""),
    row("fanout-1k-200hz", "lat_p99_us", "latency p99 (ms)", Unit::LatMs, Check::RatioMax(1.0), "≤ 1× (no worse)"),
    row("fanout-1k-200hz", "lat_p999_us", "latency p99.9 (ms)", Unit::LatMs, Check::None, ""),
    row("fanout-1k-200hz", "lat_max_us", "latency max (ms)", Unit::LatMs, Check::None, ""),
    row("fanout-1k-200hz", "srv_cpu_us_per_delivery", "server CPU per delivery (µs)", Unit::Us, Check::None, ""),
    row("fanout-1k-200hz", "loss", "lost + dup + out-of-order", Unit::Count, Check::Zero, "0"),
    row("fanout-10k-200hz", "lat_p50_us", "latency p50 (ms)", Unit::LatMs, Check::None, ""),
    row("fanout-10k-200hz", "lat_p99_us", "latency p99 (ms)", Unit::LatMs, Check::RatioMax(1.0), "≤ 1× (no worse)"),
    row("fanout-10k-200hz", "lat_p999_us", "latency p99.9 (ms)", Unit::LatMs, Check::None, ""),
    row("fanout-10k-200hz", "lat_max_us", "latency max (ms)", Unit::LatMs, Check::None, ""),
    row("fanout-10k-200hz", "srv_cpu_us_per_delivery", "server CPU per delivery (µs)", Unit::Us, Check::None, ""),
    row("fanout-10k-200hz", "loss", "lost + dup + out-of-order", Unit::Count, Check::Zero, "0"),
    row("channels", "srv_cpu_us_per_delivery", "server CPU per delivery (µs)", Unit::Us, Check::RatioMax(0.5), "≤ 0.5×"),
    row("channels", "deliveries_per_s", "deliveries/s", Unit::PerS, Check::None, ""),
    row("channels", "lat_p99_us", "latency p99 (ms)", Unit::LatMs, Check::None, ""),
    row("channels", "loss", "lost + dup + out-of-order", Unit::Count, Check::Zero, "0"),
    row("publish", "publishes_per_s", "publishes/s (16 keep-alive clients)", Unit::PerS, Check::RatioMin(1.5), "≥ 1.5×"),
    row("publish", "srv_cpu_us_per_publish", "server CPU per publish (µs)", Unit::Us, Check::None, ""),
    row("publish", "srv_write_syscalls_per_publish", "server write syscalls per publish", Unit::Ratio, Check::None, ""),
    row("replay", "catchup_s", "reconnect with Last-Event-ID: all caught up (s)", Unit::Secs, Check::RatioMax(0.25), "≤ 0.25×"),
    row("replay", "loss", "lost + dup + out-of-order", Unit::Count, Check::Zero, "0"),
];

fn metric(run: &Value, key: &str) -> Option<f64> {
    let m = run.get("metrics")?;
    if key == "loss" {
        let f = |k: &str| m.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        return Some(f("lost") + f("dup") + f("ooo") + f("gaps") + f("sub_errors"));
    }
    m.get(key).and_then(Value::as_f64)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

fn fmt(unit: Unit, v: Option<f64>) -> String {
    let Some(v) = v else { return "—".into() };
    match unit {
        Unit::Kib => format!("{v:.1}"),
        Unit::Us => format!("{v:.2}"),
        Unit::LatMs => format!("{:.2}", v / 1000.0),
        Unit::PerS if v >= 10_000.0 => format!("{:.0}k", v / 1000.0),
        Unit::PerS => format!("{v:.0}"),
        Unit::Secs => format!("{v:.3}"),
        Unit::Count => format!("{v:.0}"),
        Unit::Ratio => format!("{v:.3}"),
    }
}

/// Builds (markdown, json) from the run lines.
pub fn build(runs: &[Value], title_meta: &str) -> (String, Value) {
    // (scenario, target) -> round -> run
    let mut by: BTreeMap<(String, String), BTreeMap<i64, &Value>> = BTreeMap::new();
    for r in runs {
        let s = r["scenario"].as_str().unwrap_or("").to_string();
        let t = r["target"].as_str().unwrap_or("").to_string();
        let round = r["round"].as_i64().unwrap_or(0);
        by.entry((s, t)).or_default().insert(round, r);
    }
    let get = |s: &str, t: &str| by.get(&(s.to_string(), t.to_string()));
    let mut md = String::new();
    let mut rows_json = Vec::new();
    let _ = writeln!(md, "{title_meta}\n");
    let _ = writeln!(
        md,
        "| scenario | metric | herald | Nchan | herald/Nchan | target | met | tool CPU/delivery µs (herald / Nchan) |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---|:---:|---:|");
    let mut last_scenario = "";
    let (mut met_n, mut missed_n) = (0, 0);
    for row in ROWS {
        let (h, n) = (get(row.scenario, "herald"), get(row.scenario, "nchan"));
        if h.is_none() && n.is_none() {
            continue; // scenario not run (--scenarios)
        }
        let vals = |m: Option<&BTreeMap<i64, &Value>>| -> Vec<f64> {
            m.map(|m| m.values().filter_map(|r| metric(r, row.key)).collect()).unwrap_or_default()
        };
        let (hv, nv) = (vals(h), vals(n));
        let mut ratios = Vec::new();
        if let (Some(h), Some(n)) = (h, n) {
            for (round, hr) in h {
                if let (Some(a), Some(b)) = (metric(hr, row.key), n.get(round).and_then(|nr| metric(nr, row.key))) {
                    if b > 0.0 {
                        ratios.push(a / b);
                    }
                }
            }
        }
        let (hm, nm, ratio) = (median(hv.clone()), median(nv.clone()), median(ratios.clone()));
        let met = match row.check {
            Check::None => None,
            Check::RatioMax(x) => ratio.map(|r| r <= x),
            Check::RatioMin(x) => ratio.map(|r| r >= x),
            Check::AbsMax(x) => hm.map(|v| v <= x),
            Check::Zero => (!hv.is_empty()).then(|| hv.iter().all(|&v| v == 0.0)),
        };
        match met {
            Some(true) => met_n += 1,
            Some(false) => missed_n += 1,
            None => {}
        }
        let (hshow, nshow) = if matches!(row.check, Check::Zero) {
            // zero-loss rows show the worst run, not the median
            let mx = |v: &[f64]| v.iter().cloned().fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
            (mx(&hv), mx(&nv))
        } else {
            (hm, nm)
        };
        let tool = if row.scenario != last_scenario {
            let key = if row.scenario == "publish" { "tool_cpu_us_per_publish" } else { "tool_cpu_us_per_delivery" };
            let t = |m: Option<&BTreeMap<i64, &Value>>| {
                median(m.map(|m| m.values().filter_map(|r| metric(r, key)).collect()).unwrap_or_default())
            };
            let (th, tn) = (t(h), t(n));
            if th.is_none() && tn.is_none() {
                String::new()
            } else {
                format!("{} / {}", fmt(Unit::Us, th), fmt(Unit::Us, tn))
            }
        } else {
            String::new()
        };
        let failed =
            |m: Option<&BTreeMap<i64, &Value>>| m.map_or(0, |m| m.values().filter(|r| r["ok"] != json!(true)).count());
        let (hf, nf) = (failed(h), failed(n));
        let mut hcell = fmt(row.unit, hshow);
        if hf > 0 {
            hcell += &format!(" ({hf} failed)");
        }
        let mut ncell = fmt(row.unit, nshow);
        if nf > 0 {
            ncell += &format!(" ({nf} failed)");
        }
        let ratio_cell = if matches!(row.check, Check::Zero) {
            String::new()
        } else {
            ratio.map_or("—".into(), |r| format!("{r:.2}"))
        };
        let met_cell = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        let scen_cell = if row.scenario != last_scenario { format!("`{}`", row.scenario) } else { String::new() };
        let _ = writeln!(
            md,
            "| {scen_cell} | {} | {hcell} | {ncell} | {ratio_cell} | {} | {met_cell} | {tool} |",
            row.label, row.target
        );
        rows_json.push(json!({
            "scenario": row.scenario, "metric": row.key, "label": row.label,
            "herald": hshow, "nchan": nshow, "ratio": ratio, "target": row.target, "met": met,
            "herald_runs": hv, "nchan_runs": nv, "ratio_runs": ratios,
            "herald_failed_runs": hf, "nchan_failed_runs": nf,
        }));
        last_scenario = row.scenario;
    }
    let _ = writeln!(md, "\nTargets met: {met_n}, missed: {missed_n}.");
    variants_tables(&mut md, &by);
    let mut errors = String::new();
    for r in runs {
        if r["ok"] != json!(true) {
            let _ = writeln!(
                errors,
                "- {} `{}` round {}: {}",
                r["target"].as_str().unwrap_or("?"),
                r["scenario"].as_str().unwrap_or("?"),
                r["round"],
                r["error"].as_str().unwrap_or("?")
            );
        } else if let Some(n) = r["metrics"].get("ended_by_server").and_then(Value::as_u64).filter(|&n| n > 0) {
            let _ = writeln!(
                errors,
                "- {} `{}` round {}: the server ended {n} streams (the tool reconnected with Last-Event-ID)",
                r["target"].as_str().unwrap_or("?"),
                r["scenario"].as_str().unwrap_or("?"),
                r["round"]
            );
        }
        if let Some(n) = r["metrics"].get("listen_overflows").and_then(Value::as_u64).filter(|&n| n > 0) {
            let _ = writeln!(
                errors,
                "- {} `{}` round {}: {n} connections overflowed the listen queue (TcpExt ListenOverflows; each costs a 1 s+ SYN retry)",
                r["target"].as_str().unwrap_or("?"),
                r["scenario"].as_str().unwrap_or("?"),
                r["round"]
            );
        }
        if let Some(n) = r["metrics"].get("publish_errors").and_then(Value::as_u64).filter(|&n| n > 0) {
            let _ = writeln!(
                errors,
                "- {} `{}` round {}: {n} publishes failed ({}); events not published count as lost",
                r["target"].as_str().unwrap_or("?"),
                r["scenario"].as_str().unwrap_or("?"),
                r["round"],
                r["metrics"].get("first_publish_error").and_then(Value::as_str).unwrap_or("non-2xx answer")
            );
        }
        if let Some(e) = r["metrics"].get("first_error").and_then(Value::as_str) {
            let _ = writeln!(
                errors,
                "- {} `{}` round {}: subscriber error: {e}",
                r["target"].as_str().unwrap_or("?"),
                r["scenario"].as_str().unwrap_or("?"),
                r["round"]
            );
        }
    }
    if !errors.is_empty() {
        let _ = writeln!(md, "\nProblems seen:\n{errors}");
    }
    let _ = writeln!(
        md,
        "\nFigures are medians over rounds; ratios are herald/Nchan taken within the same round, then the median. \
         Loss rows show the worst run. Latency is publish (request written) → event parsed by the subscriber. \
         Server CPU is utime+stime from /proc (Nchan: master + workers); RSS is VmRSS (Nchan: summed over master + workers)."
    );
    let summary = json!({ "title": title_meta, "targets_met": met_n, "targets_missed": missed_n, "rows": rows_json, "runs": runs });
    (md, summary)
}

type By<'a> = BTreeMap<(String, String), BTreeMap<i64, &'a Value>>;

/// herald measured against variants of itself in the same rounds, each a
/// herald of its own (`bench.sh --transports`, `--auth`), in a table of its own.
struct Variants {
    title: &'static str,
    /// (target, column); the first is the baseline of the ratio column.
    targets: &'static [(&'static str, &'static str)],
    /// (scenario, metric, label, unit)
    rows: &'static [(&'static str, &'static str, &'static str, Unit)],
    /// A column with this target over the baseline (same-round ratios, then
    /// their median), under this header.
    ratio: Option<(&'static str, &'static str)>,
    note: &'static str,
    /// A line saying whether the goal was met.
    goal: fn(&By) -> Option<String>,
}

const VARIANTS: &[Variants] = &[
    Variants {
        title: "herald over HTTP/2, TLS and WebSocket (same run)",
        targets: &[
            ("herald", "HTTP/1.1"),
            ("herald-h2c", "h2c, 100 streams/conn"),
            ("herald-tls-h1", "TLS + HTTP/1.1"),
            ("herald-tls-h2", "TLS + h2, 100 streams/conn"),
            ("herald-ws", "WebSocket"),
        ],
        rows: &[
            ("idle", "rss_kib_per_sub", "RSS per idle stream (KiB)", Unit::Kib),
            ("idle", "pss_kib_per_sub", "PSS per idle stream (KiB)", Unit::Kib),
            ("fanout-1k", "deliveries_per_s", "deliveries/s", Unit::PerS),
            ("fanout-1k", "srv_cpu_us_per_delivery", "server CPU per delivery (µs)", Unit::Us),
            ("fanout-1k", "lat_p99_us", "latency p99 (ms)", Unit::LatMs),
            ("fanout-1k", "loss", "lost + dup + out-of-order", Unit::Count),
        ],
        ratio: Some(("herald-ws", "WebSocket / HTTP/1.1")),
        note: "Each transport is a herald of its own started for the round (`--h2c`, `--tls-cert` with a \
               self-signed pair, or a plain one whose subscribers upgrade to WebSocket); subscribers over HTTP/2 \
               share connections 100 streams each, publishers speak HTTP/1.1 (over TLS for the TLS servers). \
               Medians over rounds; the loss row shows the worst run.",
        goal: ws_goal,
    },
    Variants {
        title: "herald with access control against without (same run)",
        targets: &[("herald", "auth off"), ("herald-auth", "auth on")],
        rows: &[
            ("publish", "publishes_per_s", "publishes/s (16 keep-alive clients)", Unit::PerS),
            ("publish", "srv_cpu_us_per_publish", "server CPU per publish (µs)", Unit::Us),
            ("publish", "lat_p50_us", "publish latency p50 (ms)", Unit::LatMs),
            ("publish", "lat_p99_us", "publish latency p99 (ms)", Unit::LatMs),
            ("fanout-1k", "deliveries_per_s", "deliveries/s", Unit::PerS),
            ("fanout-1k", "srv_cpu_us_per_delivery", "server CPU per delivery (µs)", Unit::Us),
            ("fanout-1k", "lat_p99_us", "latency p99 (ms)", Unit::LatMs),
            ("fanout-1k", "loss", "lost + dup + out-of-order", Unit::Count),
        ],
        ratio: Some(("herald-auth", "on / off")),
        note: "auth on: a herald of its own with `--publish-token` and `--jwt-secret` (HS256); publishers send \
               `Authorization: Bearer <publish token>`, subscribers a JWT from `herald token` granting \
               `subscribe: [\"*\"]`. Medians over rounds; the ratio is taken within each round, then the median.",
        goal: auth_goal,
    },
    Variants {
        title: "herald now against a baseline build (same run)",
        targets: &[("herald-baseline", "baseline"), ("herald", "now")],
        rows: &[
            ("idle", "rss_kib_per_sub", "RSS per idle stream (KiB)", Unit::Kib),
            ("idle", "pss_kib_per_sub", "PSS per idle stream (KiB)", Unit::Kib),
            ("publish", "publishes_per_s", "publishes/s (16 keep-alive clients)", Unit::PerS),
            ("publish", "srv_cpu_us_per_publish", "server CPU per publish (µs)", Unit::Us),
            ("publish", "lat_p50_us", "publish latency p50 (ms)", Unit::LatMs),
            ("publish", "lat_p99_us", "publish latency p99 (ms)", Unit::LatMs),
            ("fanout-1k", "deliveries_per_s", "deliveries/s", Unit::PerS),
            ("fanout-1k", "srv_cpu_us_per_delivery", "server CPU per delivery (µs)", Unit::Us),
            ("fanout-1k", "lat_p99_us", "latency p99 (ms)", Unit::LatMs),
            ("fanout-1k", "loss", "lost + dup + out-of-order", Unit::Count),
        ],
        ratio: Some(("herald", "now / baseline")),
        note: "baseline: the herald binary given in `HERALD_BASELINE_BIN`, a herald of its own started for the \
               round and measured just before the current one. Medians over rounds; the ratio is taken within \
               each round, then the median; the loss row shows the worst run.",
        goal: baseline_goal,
    },
];

/// The values of one metric over the rounds of (scenario, target) that ran.
fn values(by: &By, scenario: &str, target: &str, key: &str) -> Vec<f64> {
    let runs = by.get(&(scenario.to_string(), target.to_string()));
    runs.map(|m| m.values().filter(|r| r["ok"] == json!(true)).filter_map(|r| metric(r, key)).collect())
        .unwrap_or_default()
}

/// The median of `target`'s figure over `base`'s, taken within each round.
fn same_round_ratio(by: &By, scenario: &str, base: &str, target: &str, key: &str) -> Option<f64> {
    let (b, t) =
        (by.get(&(scenario.to_string(), base.to_string()))?, by.get(&(scenario.to_string(), target.to_string()))?);
    let ratios = t
        .iter()
        .filter_map(|(round, tr)| Some(metric(tr, key)? / metric(b.get(round)?, key)?))
        .filter(|r| r.is_finite())
        .collect();
    median(ratios)
}

fn ws_goal(by: &By) -> Option<String> {
    let ws = median(values(by, "idle", "herald-ws", "rss_kib_per_sub"))?;
    let sse = median(values(by, "idle", "herald", "rss_kib_per_sub"));
    let nchan = median(values(by, "idle", "nchan", "rss_kib_per_sub"));
    let met = ws <= 6.0 && nchan.is_none_or(|n| ws < n);
    let sockets = median(values(by, "idle", "herald-ws", "subscribers")).unwrap_or(0.0);
    let small = if sockets < 10_000.0 {
        format!(" (only {sockets:.0} sockets, which also carry the server's fixed costs: the goal is for 10,000)")
    } else {
        String::new()
    };
    Some(format!(
        "WebSocket goal (issue 13): {} KiB per idle WebSocket, against {} KiB per idle event stream and Nchan's {} \
         KiB per idle event stream in the same run (at most 6 KiB, below Nchan): {}{small}.",
        fmt(Unit::Kib, Some(ws)),
        fmt(Unit::Kib, sse),
        fmt(Unit::Kib, nchan),
        if met { "met" } else { "**missed**" }
    ))
}

fn auth_goal(by: &By) -> Option<String> {
    let ratio = same_round_ratio(by, "publish", "herald", "herald-auth", "publishes_per_s")?;
    let cost = (1.0 - ratio) * 100.0;
    Some(format!(
        "Access-control goal (issue 8): checking the publish token costs {cost:.1} % of the publish rate \
         (less than 10 %: {}).",
        if cost < 10.0 { "met" } else { "**missed**" }
    ))
}

fn baseline_goal(by: &By) -> Option<String> {
    let publish = same_round_ratio(by, "publish", "herald-baseline", "herald", "publishes_per_s");
    let fanout = same_round_ratio(by, "fanout-1k", "herald-baseline", "herald", "deliveries_per_s");
    if publish.is_none() && fanout.is_none() {
        return None;
    }
    let slower = [publish, fanout].iter().flatten().any(|r| *r < 0.9);
    let show = |r: Option<f64>| r.map_or("—".to_string(), |r| format!("{r:.2}"));
    Some(format!(
        "Hot path (issues 17, 22): now / baseline is {} for publishes/s and {} for fan-out deliveries/s: {}.",
        show(publish),
        show(fanout),
        if slower { "**more than 10 % slower**" } else { "within 10 % or faster" }
    ))
}

fn variants_tables(md: &mut String, by: &By) {
    for v in VARIANTS {
        let ran = |t: &str| by.keys().any(|(_, target)| target == t);
        let targets: Vec<&(&str, &str)> = v.targets.iter().filter(|(t, _)| ran(t)).collect();
        if targets.len() < 2 {
            continue;
        }
        let ratio = v.ratio.filter(|(t, _)| ran(t));
        let _ = writeln!(md, "\n### {}\n", v.title);
        let mut head: Vec<&str> = targets.iter().map(|(_, label)| *label).collect();
        head.extend(ratio.map(|(_, header)| header));
        let _ = writeln!(md, "| scenario | metric | {} |", head.join(" | "));
        let _ = writeln!(md, "|---|---|{}", "---:|".repeat(head.len()));
        for &(scenario, key, label, unit) in v.rows {
            let mut cells: Vec<String> = targets
                .iter()
                .map(|(t, _)| {
                    let values = values(by, scenario, t, key);
                    let runs = by.get(&(scenario.to_string(), t.to_string()));
                    let failed = runs.map_or(0, |m| m.values().filter(|r| r["ok"] != json!(true)).count());
                    let shown = if key == "loss" {
                        values.iter().cloned().fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))))
                    } else {
                        median(values)
                    };
                    let cell = fmt(unit, shown);
                    if failed > 0 {
                        format!("{cell} ({failed} failed)")
                    } else {
                        cell
                    }
                })
                .collect();
            if cells.iter().all(|c| c == "—") {
                continue;
            }
            if let Some((t, _)) = ratio {
                let r = (key != "loss").then(|| same_round_ratio(by, scenario, v.targets[0].0, t, key)).flatten();
                cells.push(r.map_or(String::new(), |r| format!("{r:.2}")));
            }
            let _ = writeln!(md, "| `{scenario}` | {label} | {} |", cells.join(" | "));
        }
        let _ = writeln!(md, "\n{}", v.note);
        if let Some(goal) = (v.goal)(by) {
            let _ = writeln!(md, "\n{goal}");
        }
    }
}
