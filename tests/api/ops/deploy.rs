//! `deploy/`: the systemd unit under `systemd-analyze`, the example config
//! against the real flags, the alert rules and their unit tests under
//! `promtool`, and the dashboard's queries parsed by `promtool`.

use std::time::Duration;

use super::{have, repo, run, said, scratch};
use crate::helpers::herald_bin;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The value of `key = value` in `deploy/herald.toml` (uncommented).
fn toml_value(key: &str) -> String {
    read("deploy/herald.toml")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("deploy/herald.toml sets {key}"))
        .trim_matches('"')
        .to_owned()
}

/// The value of `Key=` in the unit.
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("herald.service sets {key}="))
        .to_owned()
}

#[test]
fn systemd_unit_keeps_its_promises_to_the_config() {
    let unit = read("deploy/herald.service");
    assert_eq!(
        unit_value(&unit, "ExecStart"),
        "/usr/local/bin/herald --config /etc/herald/herald.toml"
    );
    assert_eq!(unit_value(&unit, "DynamicUser"), "yes", "its own user");
    assert_eq!(unit_value(&unit, "StateDirectory"), "herald");
    assert_eq!(
        toml_value("data-dir"),
        "/var/lib/herald",
        "the state directory"
    );

    let nofile: u64 = unit_value(&unit, "LimitNOFILE").parse().unwrap();
    let max_connections: u64 = toml_value("max-connections").parse().unwrap();
    assert!(
        nofile > max_connections + 1000,
        "LimitNOFILE {nofile} leaves room above --max-connections {max_connections}"
    );
    let stop = humantime::parse_duration(&unit_value(&unit, "TimeoutStopSec")).unwrap();
    let grace = humantime::parse_duration(&toml_value("shutdown-grace")).unwrap();
    assert!(
        stop >= grace + Duration::from_secs(5),
        "TimeoutStopSec {stop:?} above --shutdown-grace {grace:?}"
    );
}

#[test]
fn systemd_unit_verifies_with_no_warning_and_rates_below_7_5() {
    if !have("systemd-analyze") {
        return;
    }
    // verify checks that ExecStart's binary exists: point it at the one
    // this test suite built, nothing else changes.
    let dir = scratch("systemd");
    let unit = read("deploy/herald.service").replace(
        "/usr/local/bin/herald",
        herald_bin().to_str().expect("a UTF-8 target path"),
    );
    std::fs::write(dir.join("herald.service"), unit).unwrap();

    let verify = run("systemd-analyze", &["verify", "./herald.service"], &dir);
    // rc 0 is not enough: an unknown key or a bad value is only a line on
    // stderr.
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        said(&verify)
    );

    let security = run(
        "systemd-analyze",
        &[
            "security",
            "--offline=yes",
            "--threshold=75",
            "./herald.service",
        ],
        &dir,
    );
    let text = said(&security);
    let level: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for herald.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an exposure level in:\n{text}"));
    eprintln!("systemd-analyze security: exposure {level}");
    assert!(security.status.success() && level < 7.5, "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn example_config_names_only_real_flags() {
    let help = std::process::Command::new(herald_bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let mut keys = 0;
    for line in read("deploy/herald.toml").lines() {
        // `key = value`, or a commented-out example `# key = value`.
        let line = line.trim_start_matches("# ");
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if !key.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            continue;
        }
        keys += 1;
        assert!(
            help.contains(&format!("--{key} ")) || help.contains(&format!("--{key}\n")),
            "deploy/herald.toml: `{key}` is no flag of `herald --help`"
        );
    }
    assert!(keys >= 10, "read {keys} keys");

    // Where this build reads config files (SPEC §15, `--config`), the
    // example must load as it is.
    if !help.contains("--config") {
        eprintln!("skipped: this build has no --config; deploy/herald.toml checked by key only");
        return;
    }
    let config = std::process::Command::new(herald_bin())
        .arg("config")
        .env("HERALD_CONFIG", repo("deploy/herald.toml"))
        .output()
        .unwrap();
    assert!(
        config.status.success(),
        "herald config with deploy/herald.toml: {}",
        said(&config)
    );
    let effective = String::from_utf8_lossy(&config.stdout);
    assert!(effective.contains("/var/lib/herald"), "{effective}");
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    if !have("promtool") {
        return;
    }
    let dir = repo("deploy/prometheus");
    let check = run("promtool", &["check", "rules", "alerts.yml"], &dir);
    assert!(check.status.success(), "{}", said(&check));
    let test = run("promtool", &["test", "rules", "alerts_test.yml"], &dir);
    eprintln!("promtool test rules: {}", said(&test).trim());
    assert!(test.status.success(), "{}", said(&test));
    // Every alert has a unit test.
    let tests = read("deploy/prometheus/alerts_test.yml");
    for name in read("deploy/prometheus/alerts.yml")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{name} has a unit test"
        );
    }
}

/// Every query of the dashboard, with Grafana's variables filled in.
pub fn dashboard_queries() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/herald.json")).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("each panel has targets"))
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("a PromQL expr")
                .replace("$__rate_interval", "5m")
                .replace("$instance", ".*")
        })
        .collect()
}

#[test]
fn dashboard_queries_are_valid_promql() {
    if !have("promtool") {
        return;
    }
    // promtool has no PromQL checker of its own: each query becomes a
    // recording rule, which `check rules` parses.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in dashboard_queries().iter().enumerate() {
        rules += &format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        );
    }
    let dir = scratch("dashboard");
    std::fs::write(dir.join("rules.yml"), rules).unwrap();
    let check = run("promtool", &["check", "rules", "rules.yml"], &dir);
    assert!(check.status.success(), "{}", said(&check));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The metric names of the alert rules and the dashboard.
pub fn metric_names_used() -> std::collections::BTreeSet<String> {
    let mut exprs = dashboard_queries();
    exprs.extend(
        read("deploy/prometheus/alerts.yml")
            .lines()
            .filter_map(|l| l.trim().strip_prefix("expr: "))
            .map(str::to_owned),
    );
    exprs.iter().flat_map(|e| metric_names(e)).collect()
}

/// The metric names in a PromQL expression: identifiers outside label
/// matchers, strings and ranges that are not functions, keywords or
/// grouping labels.
pub fn metric_names(expr: &str) -> Vec<String> {
    const KEYWORDS: [&str; 8] = [
        "by", "without", "on", "ignoring", "and", "or", "unless", "bool",
    ];
    // Aggregations may be followed by `by (...)` rather than `(`.
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
    ];
    let mut names = Vec::new();
    let mut depth = 0; // inside {...}, [...] or "..."
    let mut in_grouping = false; // inside by (...)
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += 1;
                }
            }
            ')' => in_grouping = false,
            c if depth == 0 && (c.is_ascii_alphabetic() || c == '_') => {
                let start = i;
                while i + 1 < chars.len()
                    && (chars[i + 1].is_ascii_alphanumeric()
                        || chars[i + 1] == '_'
                        || chars[i + 1] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..=i].iter().collect();
                let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
                if KEYWORDS.contains(&word.as_str()) {
                    in_grouping = matches!(word.as_str(), "by" | "without" | "on" | "ignoring");
                } else if next != Some(&'(')
                    && !in_grouping
                    && !AGGREGATIONS.contains(&word.as_str())
                {
                    names.push(word);
                }
            }
            _ => {}
        }
        i += 1;
    }
    names
}

#[test]
fn metric_names_are_read_out_of_promql() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (backend, le) (rate(herald_publish_duration_seconds_bucket{job="herald", x=~"a(b)"}[5m]))) > 0.5"#
        ),
        ["herald_publish_duration_seconds_bucket"]
    );
    assert_eq!(
        metric_names(r#"process_open_fds{job="h"} / process_max_fds - time() < 14 * 86400"#),
        ["process_open_fds", "process_max_fds"]
    );
    assert_eq!(metric_names("up == 0"), ["up"]);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test]
async fn cluster_example_serves_through_nginx_and_stops_everything() {
    use tokio::io::AsyncBufReadExt;
    if !have("redis-server") || !have("nginx") {
        return;
    }
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let dir = scratch("cluster");
    let mut script = tokio::process::Command::new(repo("deploy/cluster/run.sh"))
        .env("HERALD", herald_bin())
        .env("CLUSTER_PORT", ports[0].to_string())
        .env(
            "NODE_PORTS",
            format!("{} {} {}", ports[1], ports[2], ports[3]),
        )
        .env("REDIS_PORT", ports[4].to_string())
        .env("CLUSTER_DIR", &dir)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("deploy/cluster/run.sh starts");
    let mut lines = tokio::io::BufReader::new(script.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("cluster: http://") {
                return;
            }
        }
        panic!("run.sh ended before the cluster was up");
    })
    .await;
    assert!(ready.is_ok(), "the cluster is up within 60 s");

    // A stream through nginx gets what any node publishes.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let front = format!("http://127.0.0.1:{}", ports[0]);
    let response = client
        .get(format!("{front}/events/cluster"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut events = crate::helpers::Sse::from_response(response);
    for (n, url) in [
        (1, format!("http://127.0.0.1:{}/publish/cluster", ports[2])),
        (2, format!("{front}/publish/cluster")),
        (3, format!("http://127.0.0.1:{}/publish/cluster", ports[3])),
    ] {
        let published = client.post(url).body(format!("e{n}")).send().await.unwrap();
        assert_eq!(published.status(), 200);
    }
    assert_eq!(events.data(3).await, ["e1", "e2", "e3"]);
    let health = client.get(format!("{front}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // SIGTERM to the script stops every process it started.
    let pid = script.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(Duration::from_secs(30), script.wait())
        .await
        .expect("run.sh exits on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    for port in &ports {
        assert!(!port_open(*port), "port {port} closed after the stop");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
