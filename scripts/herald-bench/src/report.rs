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
    transports_table(&mut md, &by);
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

/// herald's other transports (`bench.sh --transports`), each run against its
/// own herald in the same round: HTTP/2 with prior knowledge (100 streams per
/// connection), TLS with HTTP/1.1, TLS with HTTP/2 (100 streams per connection).
const TRANSPORTS: &[(&str, &str)] = &[
    ("herald", "HTTP/1.1"),
    ("herald-h2c", "h2c, 100 streams/conn"),
    ("herald-tls-h1", "TLS + HTTP/1.1"),
    ("herald-tls-h2", "TLS + h2, 100 streams/conn"),
];

const TRANSPORT_ROWS: &[(&str, &str, &str, Unit)] = &[
    ("idle", "rss_kib_per_sub", "RSS per idle stream (KiB)", Unit::Kib),
    ("idle", "pss_kib_per_sub", "PSS per idle stream (KiB)", Unit::Kib),
    ("fanout-1k", "deliveries_per_s", "deliveries/s", Unit::PerS),
    ("fanout-1k", "srv_cpu_us_per_delivery", "server CPU per delivery (µs)", Unit::Us),
    ("fanout-1k", "lat_p99_us", "latency p99 (ms)", Unit::LatMs),
    ("fanout-1k", "loss", "lost + dup + out-of-order", Unit::Count),
];

fn transports_table(md: &mut String, by: &BTreeMap<(String, String), BTreeMap<i64, &Value>>) {
    let ran = |t: &str| by.keys().any(|(_, target)| target == t);
    let targets: Vec<&(&str, &str)> = TRANSPORTS.iter().filter(|(t, _)| ran(t)).collect();
    if targets.len() < 2 {
        return;
    }
    let _ = writeln!(md, "\n### herald over HTTP/2 and TLS (same run)\n");
    let head: Vec<&str> = targets.iter().map(|(_, label)| *label).collect();
    let _ = writeln!(md, "| scenario | metric | {} |", head.join(" | "));
    let _ = writeln!(md, "|---|---|{}", "---:|".repeat(targets.len()));
    for (scenario, key, label, unit) in TRANSPORT_ROWS {
        let cells: Vec<String> = targets
            .iter()
            .map(|(t, _)| {
                let runs = by.get(&(scenario.to_string(), t.to_string()));
                let ok = |r: &&&Value| r["ok"] == json!(true);
                let values: Vec<f64> =
                    runs.map(|m| m.values().filter(ok).filter_map(|r| metric(r, key)).collect()).unwrap_or_default();
                let failed = runs.map_or(0, |m| m.values().filter(|r| !ok(r)).count());
                let shown = if *key == "loss" {
                    values.iter().cloned().fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))))
                } else {
                    median(values)
                };
                let cell = fmt(*unit, shown);
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
        let _ = writeln!(md, "| `{scenario}` | {label} | {} |", cells.join(" | "));
    }
    let _ = writeln!(
        md,
        "\nEach transport is a herald of its own started for the round (`--h2c`, or `--tls-cert` with a \
         self-signed pair); subscribers over HTTP/2 share connections 100 streams each, publishers speak \
         HTTP/1.1 (over TLS for the TLS servers). Medians over rounds; the loss row shows the worst run."
    );
}
