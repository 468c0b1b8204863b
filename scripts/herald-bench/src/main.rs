//! herald-bench: the load generator behind `scripts/bench.sh`.
//!
//! ```text
//! herald-bench run --target NAME --addr 127.0.0.1:PORT --pid PID --scenario S
//!                  [--round N] [--quick] [--threads N] [--out runs.jsonl]
//!                  [--transport h1|h2c|tls-h1|tls-h2|ws] [--tls-ca cert.pem]
//!                  [--pub-addr 127.0.0.1:PORT] [--watch name=pid,name=pid]
//! herald-bench report --in runs.jsonl --md results.md --json results.json [--title TEXT]
//! herald-bench list
//! herald-bench presence --addr 127.0.0.1:PORT --pid PID --secret S --channel C
//!                  [--members 1000] [--churn 100] [--seconds 10] [--settle-ms 3000]
//! ```
//!
//! `run` measures one scenario against one server and appends one JSON line;
//! `bench.sh` calls it A B A B (herald, Nchan, herald, Nchan …) and `report`
//! turns the lines into medians, same-round ratios and the target checks.
//!
//! Layout: `sse` (response head, in-place de-chunking, SSE parser), `client`
//! (subscriber and publisher connections), `transport` (HTTP/1.1, HTTP/2,
//! TLS, WebSocket), `ws` (WebSocket frames read as SSE text), `hist`
//! (latency histogram), `sys` (/proc and rusage), `scenario` (the
//! scenarios), `report` (tables).
//!
//! Access control (herald's `--publish-token`, `--jwt-secret`): publishers
//! send `Authorization: Bearer $HERALD_BENCH_PUBLISH_TOKEN` and subscribers
//! `Authorization: Bearer $HERALD_BENCH_SUBSCRIBE_TOKEN` when those are set
//! (environment, not flags: command lines are visible to every user).

mod client;
mod hist;
mod presence;
mod report;
mod scenario;
mod sse;
mod sys;
mod transport;
mod ws;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::json;

static START: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the tool started: the clock of payload timestamps.
pub fn now_ns() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The whole process gives up after this long, whatever happens.
const WATCHDOG: Duration = Duration::from_secs(420);

fn main() {
    now_ns();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("run") => cmd_run(&args[1..]),
        Some("report") => cmd_report(&args[1..]),
        Some("presence") => cmd_presence(&args[1..]),
        Some("list") => {
            println!("{}", scenario::SCENARIOS.join("\n"));
            0
        }
        _ => {
            eprintln!(
                "usage: herald-bench run --target NAME --addr HOST:PORT --pid PID --scenario S [--round N] [--quick] [--threads N] [--out FILE] [--transport h1|h2c|tls-h1|tls-h2|ws] [--tls-ca FILE]\n       herald-bench report --in FILE --md FILE --json FILE [--title TEXT]\n       herald-bench list"
            );
            2
        }
    };
    std::process::exit(code);
}

fn opt<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn flag(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}

fn cmd_run(args: &[String]) -> i32 {
    let (Some(target), Some(addr), Some(pid), Some(scen)) =
        (opt(args, "--target"), opt(args, "--addr"), opt(args, "--pid"), opt(args, "--scenario"))
    else {
        eprintln!("run needs --target, --addr, --pid and --scenario");
        return 2;
    };
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        eprintln!("bad --addr {addr}");
        return 2;
    };
    if !addr.ip().is_loopback() {
        eprintln!("refusing {addr}: this tool only loads servers on the loopback interface");
        return 2;
    }
    let Ok(pid) = pid.parse::<i32>() else {
        eprintln!("bad --pid");
        return 2;
    };
    let round: i64 = opt(args, "--round").and_then(|r| r.parse().ok()).unwrap_or(1);
    let quick = flag(args, "--quick");
    let threads: usize = opt(args, "--threads").and_then(|t| t.parse().ok()).unwrap_or(2);
    let nofile = sys::raise_nofile();
    let Some(kind) = transport::Kind::parse(opt(args, "--transport").unwrap_or("h1")) else {
        eprintln!("--transport is one of h1, h2c, tls-h1, tls-h2, ws");
        return 2;
    };
    if let Err(e) = transport::init(kind, opt(args, "--tls-ca")) {
        eprintln!("{e}");
        return 2;
    }

    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        eprintln!("herald-bench: watchdog: giving up after {WATCHDOG:?}");
        std::process::exit(3);
    });

    let server = sys::Server::discover(pid);
    if !server.alive() {
        eprintln!("no process {pid}");
        return 2;
    }
    let nonce = format!("{}x{}", std::process::id(), round);
    let pub_rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let pubs = pub_rt.handle().clone();
    let (pub_stop, pub_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let pub_thread = std::thread::Builder::new()
        .name("publishers".into())
        .spawn(move || {
            pub_rt.block_on(async move {
                let _ = pub_stop_rx.await;
            });
            pub_rt.shutdown_timeout(Duration::from_secs(2));
        })
        .expect("publisher thread");
    let pub_addr = match opt(args, "--pub-addr").map(str::parse::<SocketAddr>) {
        None => addr,
        Some(Ok(a)) if a.ip().is_loopback() => a,
        Some(_) => {
            eprintln!("bad --pub-addr (a loopback HOST:PORT)");
            return 2;
        }
    };
    let mut watch = Vec::new();
    for spec in opt(args, "--watch").unwrap_or("").split(',').filter(|s| !s.is_empty()) {
        let Some((name, pid)) = spec.split_once('=').and_then(|(n, p)| Some((n, p.parse::<i32>().ok()?))) else {
            eprintln!("bad --watch {spec} (name=pid)");
            return 2;
        };
        watch.push((name.to_owned(), sys::Server::discover(pid)));
    }
    let ctx = scenario::Ctx { addr, pub_addr, watch, server, quick, nonce, pubs };
    // One thread (the default) is the cheapest client: no work stealing, no
    // cross-thread wake-ups; the server gets the other core.
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
    .expect("runtime");
    let t0 = Instant::now();
    let overflows0 = sys::listen_overflows();
    let mut result = rt.block_on(scenario::run(scen, &ctx));
    if let Ok(m) = &mut result {
        m.insert("listen_overflows".into(), json!(sys::listen_overflows().saturating_sub(overflows0)));
    }
    rt.shutdown_timeout(Duration::from_secs(5));
    let _ = pub_stop.send(());
    let _ = pub_thread.join();
    let wall = t0.elapsed().as_secs_f64();
    let line = match &result {
        Ok(m) => {
            json!({"target": target, "scenario": scen, "round": round, "quick": quick, "ok": true, "transport": kind.name(),
                        "wall_s": wall, "server_pids": ctx.server.pids, "nofile": nofile, "metrics": m})
        }
        Err(e) => json!({"target": target, "scenario": scen, "round": round, "quick": quick, "ok": false,
                         "wall_s": wall, "error": e, "metrics": {}}),
    };
    let text = line.to_string();
    println!("{text}");
    if let Some(out) = opt(args, "--out") {
        let f = std::fs::OpenOptions::new().create(true).append(true).open(out);
        match f {
            Ok(mut f) => {
                let _ = writeln!(f, "{text}");
            }
            Err(e) => {
                eprintln!("cannot write {out}: {e}");
                return 1;
            }
        }
    }
    if result.is_ok() {
        0
    } else {
        1
    }
}

/// `presence`: one churn run against one server (see `presence.rs`); prints one JSON line.
fn cmd_presence(args: &[String]) -> i32 {
    let (Some(addr), Some(pid), Some(secret), Some(channel)) =
        (opt(args, "--addr"), opt(args, "--pid"), opt(args, "--secret"), opt(args, "--channel"))
    else {
        eprintln!("presence needs --addr, --pid, --secret and --channel");
        return 2;
    };
    let (Ok(addr), Ok(pid)) = (addr.parse::<SocketAddr>(), pid.parse::<i32>()) else {
        eprintln!("bad --addr or --pid");
        return 2;
    };
    if !addr.ip().is_loopback() {
        eprintln!("refusing {addr}: this tool only loads servers on the loopback interface");
        return 2;
    }
    let num = |name: &str, default: u64| opt(args, name).and_then(|v| v.parse().ok()).unwrap_or(default);
    sys::raise_nofile();
    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        eprintln!("herald-bench: watchdog: giving up after {WATCHDOG:?}");
        std::process::exit(3);
    });
    let run = presence::Args {
        addr,
        pid,
        secret: secret.to_owned(),
        channel: channel.to_owned(),
        members: num("--members", 1000) as usize,
        churn_per_s: num("--churn", 100) as u32,
        seconds: num("--seconds", 10),
        settle: Duration::from_millis(num("--settle-ms", 3000)),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    match rt.block_on(presence::run(run)) {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => {
            eprintln!("presence run failed: {e}");
            1
        }
    }
}

fn cmd_report(args: &[String]) -> i32 {
    let (Some(input), Some(md_out), Some(json_out)) = (opt(args, "--in"), opt(args, "--md"), opt(args, "--json"))
    else {
        eprintln!("report needs --in, --md and --json");
        return 2;
    };
    let title = opt(args, "--title").unwrap_or("# herald vs Nchan");
    let text = match std::fs::read_to_string(input) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {input}: {e}");
            return 1;
        }
    };
    let runs: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let (md, js) = report::build(&runs, title);
    if let Err(e) = std::fs::write(md_out, &md)
        .and_then(|_| std::fs::write(json_out, serde_json::to_string_pretty(&js).unwrap_or_default()))
    {
        eprintln!("cannot write results: {e}");
        return 1;
    }
    print!("{md}");
    0
}
