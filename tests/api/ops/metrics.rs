//! The metrics SPEC §15 adds, and the promise that every metric an alert or
//! a dashboard panel names is one herald exports.

use std::collections::BTreeSet;
use std::path::Path;

use rustls::pki_types::CertificateDer;

use super::deploy::metric_names_used;
use super::scratch;
use crate::helpers::{spawn_app_with, Binary, TestApp};
use crate::tls_client::{read_body_until, tls_connect, Client};

/// The series names of a scrape (`name` of `name{labels} value`).
fn series_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// A self-signed pair for localhost that expires at `not_after`, written
/// to `dir`; returns the certificate for the client's trust store.
fn pair_expiring(dir: &Path, not_after: (i32, u8, u8)) -> CertificateDer<'static> {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    cert.der().clone()
}

async fn scrape_tls(app: &TestApp, trusted: &CertificateDer<'static>) -> String {
    let mut client = Client::h1_tls(app.addr, trusted).await;
    let response = client.send("GET", "/metrics", &[], "").await.unwrap();
    assert_eq!(response.status(), 200);
    read_body_until(response, "\0never\0").await
}

/// One gauge's value in a scrape.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} in:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn every_metric_named_by_the_alerts_and_the_dashboard_is_exported() {
    // The real binary, with some traffic: a stream, publishes, a refusal.
    let node = Binary::start(&[]).await;
    let stream = node
        .client
        .get(node.url("/events/ops"))
        .send()
        .await
        .unwrap();
    node.publish("ops", "one").await;
    let missing = node.client.get(node.url("/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let text = node
        .client
        .get(node.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    drop(stream);
    let mut exported = series_names(&text);

    // The certificate's expiry exists only with TLS.
    let dir = scratch("metrics-tls");
    let der = pair_expiring(&dir, (2031, 3, 4));
    let tls = spawn_app_with(|c| {
        c.tls_cert = Some(dir.join("cert.pem"));
        c.tls_key = Some(dir.join("key.pem"));
    })
    .await;
    exported.extend(series_names(&scrape_tls(&tls, &der).await));

    // `up` is Prometheus's own: whether it could scrape the target.
    let not_herald = ["up"];
    let used = metric_names_used();
    assert!(used.len() >= 15, "{used:?}");
    let unknown: Vec<&String> = used
        .iter()
        .filter(|name| !exported.contains(*name) && !not_herald.contains(&name.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "named by deploy/ but not exported: {unknown:?}\nexported: {exported:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn publish_duration_counts_every_http_publish_under_its_backend() {
    let memory = spawn_app_with(|_| {}).await;
    memory.publish("a", "one").await;
    memory
        .publish_to("/publish", r#"[{"channel":"a","data":"two"}]"#)
        .await;
    let refused = memory
        .client
        .post(memory.url("/publish/bad name"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let count =
        |backend: &str| format!("herald_publish_duration_seconds_count{{backend=\"{backend}\"}}");
    assert_eq!(
        memory.metric(&count("memory")).await,
        3.0,
        "refusals count too"
    );
    assert_eq!(
        memory.metric(&count("disk")).await,
        0.0,
        "registered, empty"
    );
    assert_eq!(
        memory.metric(&count("redis")).await,
        0.0,
        "registered, empty"
    );
    assert!(
        memory
            .metric("herald_publish_duration_seconds_bucket{backend=\"memory\",le=\"+Inf\"}")
            .await
            == 3.0
    );
    assert!(memory.metric("herald_backend_up{backend=\"memory\"}").await == 1.0);

    let dir = scratch("metrics-disk");
    let disk = spawn_app_with(|c| c.data_dir = Some(dir.join("data"))).await;
    disk.publish("a", "one").await;
    assert_eq!(disk.metric(&count("disk")).await, 1.0);
    assert_eq!(disk.metric(&count("memory")).await, 0.0);
    assert!(disk.metric("herald_backend_up{backend=\"disk\"}").await == 1.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn certificate_expiry_is_the_served_certificates_and_follows_a_reload() {
    let dir = scratch("metrics-expiry");
    let first = pair_expiring(&dir, (2031, 3, 4));
    let app = spawn_app_with(|c| {
        c.tls_cert = Some(dir.join("cert.pem"));
        c.tls_key = Some(dir.join("key.pem"));
    })
    .await;
    let series = "herald_tls_certificate_expiry_timestamp_seconds";
    // 2031-03-04T00:00:00Z
    assert_eq!(value(&scrape_tls(&app, &first).await, series), 1930348800.0);

    let second = pair_expiring(&dir, (2032, 7, 8));
    app.state.reload.trigger();
    // New handshakes trust only the new certificate once it is loaded.
    let mut seen = 0.0;
    for _ in 0..100 {
        if tls_connect(app.addr, &second, &[b"http/1.1"]).await.is_ok() {
            seen = value(&scrape_tls(&app, &second).await, series);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 1972857600.0, "2032-07-08T00:00:00Z after the reload");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_plain_http_node_has_no_certificate_series() {
    let app = spawn_app_with(|_| {}).await;
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !text.contains("herald_tls_certificate_expiry_timestamp_seconds"),
        "an expiry of 0 would read as expired: {text}"
    );
}

/// With `--redis`: publishes are timed under `redis`, and
/// `herald_backend_up{backend="redis"}` (what `HeraldBackendDown` reads)
/// drops to 0 when Redis goes away.
#[tokio::test]
async fn redis_publishes_are_timed_under_redis_and_backend_up_follows_redis() {
    let Some(mut redis) = crate::cluster::support::Redis::start(&[]).await else {
        return;
    };
    let node = crate::cluster::support::node(&redis.url(), &[]).await;
    node.publish("r", "one").await;
    node.wait_for_metric(
        "herald_publish_duration_seconds_count{backend=\"redis\"}",
        1.0,
    )
    .await;
    assert_eq!(
        node.metric("herald_publish_duration_seconds_count{backend=\"memory\"}")
            .await,
        0.0
    );
    node.wait_for_metric("herald_backend_up{backend=\"redis\"}", 1.0)
        .await;

    redis.kill();
    node.wait_for_metric("herald_backend_up{backend=\"redis\"}", 0.0)
        .await;
}
