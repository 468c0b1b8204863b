//! herald.js, the browser client (SPEC §16), driven directly in chromium by the
//! `herald-*` scenarios of `tests/browser/herald.mjs`: the page is served by one
//! herald and subscribes to another (the one under test), across origins as an
//! app's page would. Also: how the two files are served, and `tsc --strict` on
//! the declarations.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use super::auth::with_auth;
use super::{
    browser_available, browser_dir, id_of, one_browser_at_a_time, run_scenario, stop, Driver,
};
use crate::auth::{hs, token, PUBLISH_TOKEN};
use crate::helpers::{spawn_app, spawn_app_with};

/// Runs `scenario` against a server made by `configure`, with the page on
/// another herald; `params` gain `pageBase` and `publishToken`.
async fn run(scenario: &str, configure: fn(&mut herald::Config), params: Value) -> Value {
    run_on(scenario, spawn_app_with(configure).await, configure, params).await
}

async fn run_on(
    scenario: &str,
    app: crate::helpers::TestApp,
    configure: fn(&mut herald::Config),
    mut params: Value,
) -> Value {
    let pages = spawn_app().await;
    params["pageBase"] = pages.base.clone().into();
    params["publishToken"] = PUBLISH_TOKEN.into();
    let mut driver = Driver {
        app: Some(app),
        configure,
    };
    let result = run_scenario(&mut driver, scenario, params).await;
    stop(driver).await;
    pages.stop().await;
    result
}

#[tokio::test]
async fn herald_js_and_its_declarations_are_served_with_their_types() {
    // Arrange
    let app = spawn_app().await;

    // Act
    // A page on another origin imports the module: a CORS request
    let js = app
        .client
        .get(app.url("/herald.js"))
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    let dts = app
        .client
        .get(app.url("/herald.d.ts"))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(js.status(), 200);
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(js.headers()["x-typescript-types"], "./herald.d.ts");
    assert_eq!(js.headers()["access-control-allow-origin"], "*");
    let source = js.text().await.unwrap();
    assert!(source.contains("export function subscribe("), "{source}");
    assert_eq!(dts.status(), 200);
    assert_eq!(
        dts.headers()["content-type"],
        "application/typescript; charset=utf-8"
    );
    let declarations = dts.text().await.unwrap();
    assert!(declarations.contains("export declare function subscribe("));
    app.stop().await;
}

#[tokio::test]
async fn herald_d_ts_and_a_usage_file_pass_tsc_strict() {
    let tsc = browser_dir().join("node_modules/typescript/bin/tsc");
    if !tsc.is_file() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "typescript is not installed (npm ci --prefix tests/browser) and CI=true"
        );
        eprintln!("tsc test skipped: npm ci --prefix tests/browser");
        return;
    }
    // Act: tests/browser/tsconfig.json checks herald-usage.ts, --strict --noEmit
    let out = tokio::process::Command::new("node")
        .arg(&tsc)
        .arg("-p")
        .arg(browser_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("node runs tsc");

    // Assert
    assert!(
        out.status.success(),
        "tsc --strict failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn herald_js_hands_over_events_in_id_order_and_publishes_on_both_transports() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    // Act: one- and multi-channel subscriptions, on an event stream then a
    // WebSocket; events with types and line breaks; publish() from the page
    let result = run("herald-order", |_| {}, json!({})).await;

    // Assert: done in the scenario
    assert_eq!(result["transports"], json!(["sse", "ws"]), "{result}");
}

/// Tokens that live three seconds, renewed three times on each transport while
/// an event is published every 100 ms.
#[tokio::test]
async fn herald_js_renews_three_second_tokens_three_times_under_steady_publishing_losing_nothing() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    let params = json!({ "channel": "private-renew", "ttl": 3, "renewals": 3 });
    let result = run("herald-renew", with_auth, params).await;
    for transport in ["sse", "ws"] {
        assert!(
            result[transport]["renewals"].as_u64() >= Some(3),
            "{result}"
        );
    }
}

/// The page's clock is an hour fast: every token looks expired to it, so it
/// plans no renewal, and the server's `herald.expired` is what renews.
#[tokio::test]
async fn herald_js_renews_on_herald_expired_when_the_page_clock_is_wrong() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    let params = json!({ "channel": "private-expired", "ttl": 3 });
    let result = run("herald-expired", with_auth, params).await;
    for transport in ["sse", "ws"] {
        assert!(
            result[transport]["renewals"].as_u64() >= Some(2),
            "{result}"
        );
    }
}

#[tokio::test]
async fn herald_js_tells_a_gap_with_on_gap_then_hands_over_what_is_retained() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    // Arrange: a history of 2 and five events, so the first three are gone
    let configure: fn(&mut herald::Config) = |c| c.history = 2;
    let app = spawn_app_with(configure).await;
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(id_of(&app.publish("gappy", &format!("event {n}")).await));
    }

    // Act: both transports resume after the first event
    let params = json!({ "channel": "gappy", "lastEventId": ids[0], "retained": ids[3..] });
    run_on("herald-gap", app, configure, params).await;

    // Assert: done in the scenario (onGap once with the channel, then events 4 and 5)
}

#[tokio::test]
async fn herald_js_keeps_the_presence_roster_of_two_users_through_a_join_and_a_leave() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    let configure: fn(&mut herald::Config) = |c| {
        with_auth(c);
        c.presence_grace = Duration::from_secs(1);
    };
    let member = |sub: &str, name: &str| {
        let mut claims = crate::auth::claims(
            600,
            json!({"subscribe": ["presence-*"], "info": {"name": name}}),
        );
        claims["sub"] = sub.into();
        hs(&claims)
    };
    let params = json!({ "room": "presence-js",
        "alice": member("1", "Alice"), "bob": member("2", "Bob") });
    run("herald-presence", configure, params).await;
}

#[tokio::test]
async fn herald_js_close_leaves_no_stream_and_no_connection_open_at_the_server() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    let result = run("herald-close", |_| {}, json!({})).await;
    assert!(result["during"].as_f64() >= Some(4.0), "{result}");
}

#[tokio::test]
async fn herald_js_closes_on_401_and_403_after_one_request_with_no_retry() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    let channel = "private-refused";
    let good = token(&[channel], &[]);
    let params = json!({
        "channel": channel,
        // Signed with the secret, then one character added: a wrong signature.
        "badToken": format!("{good}x"),
        // Valid, but for another channel.
        "otherToken": hs(&crate::auth::claims(600, json!({"subscribe": ["private-other"]}))),
        "settleMs": 1500,
    });
    let result = run("herald-refused", with_auth, params).await;
    assert_eq!(
        result["bad-sse"],
        json!([["connecting", null], ["closed", "unauthorized"]]),
        "{result}"
    );
}

/// `POST /disconnect` (SPEC §11): without `revoke` the page comes back at once
/// from its last id with a new token; with `revoke` herald.js closes with
/// reason `revoked` and sends nothing more (no refusal counted at the server,
/// no stream open, no `getToken()`, no request seen leaving the page).
#[tokio::test]
async fn herald_js_comes_back_after_a_disconnect_and_ends_on_a_revocation_with_no_further_request()
{
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    let params = json!({ "channel": "private-revoke", "settleMs": 2000 });
    let result = run("herald-revoke", with_auth, params).await;
    assert_eq!(
        result["sse"].as_array().unwrap().last(),
        Some(&json!(["closed", "revoked"])),
        "{result}"
    );
}

/// `publish(…, {idempotencyKey})` (SPEC §12) on both transports, from a page on
/// another origin: the repeat publishes nothing and answers the first id with
/// `replayed`; the same key with other data is refused.
#[tokio::test]
async fn herald_js_publish_with_an_idempotency_key_twice_publishes_once() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    let result = run("herald-idempotent", |_| {}, json!({})).await;
    assert!(
        result["sse"].is_string() && result["ws"].is_string(),
        "{result}"
    );
}
