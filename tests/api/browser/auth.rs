//! Access control in the browser (SPEC §6), scenarios of `tests/browser/auth.mjs`:
//! the demo page with `?token=` on a private channel, a bad token that closes its
//! subscription for good, a renewal before `exp` that misses nothing (the demo page
//! is built on herald.js), and cookie auth from another origin with `withCredentials`.

use herald::config::Secret;
use serde_json::{json, Value};

use super::{browser_available, one_browser_at_a_time, run_scenario, stop, Driver, SHORT_RETRY};
use crate::auth::{claims, hs, token, PUBLISH_TOKEN, SECRET};
use crate::helpers::{spawn_app, spawn_app_with};

/// The driver's `mint` step: a token signed with the test secret granting the
/// step's `subscribe` and `publish` lists for `ttl` seconds (what an app's
/// token endpoint does), for user `sub` (default 42) with `info` if given.
pub(super) fn mint(step: &Value) -> Value {
    let list = |key: &str| step[key].as_array().cloned().unwrap_or_default();
    let ttl = step["ttl"].as_u64().unwrap_or(600);
    let mut grants = json!({"subscribe": list("subscribe"), "publish": list("publish")});
    if !step["info"].is_null() {
        grants["info"] = step["info"].clone();
    }
    let mut claims = claims(ttl, grants);
    if let Some(sub) = step["sub"].as_str() {
        claims["sub"] = sub.into();
    }
    json!({ "token": hs(&claims) })
}

/// A publish token and a JWT secret; a short `retry:` so that an EventSource
/// that did reconnect would do it within the scenario's wait.
pub(super) fn with_auth(c: &mut herald::Config) {
    c.publish_token = vec![Secret::new(PUBLISH_TOKEN)];
    c.jwt_secret = vec![Secret::new(SECRET)];
    c.retry = SHORT_RETRY;
}

#[tokio::test]
async fn demo_page_reads_a_private_channel_with_a_token_and_a_bad_token_stays_closed() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    let mut driver = Driver {
        app: Some(spawn_app_with(with_auth).await),
        configure: with_auth,
    };
    let channel = "private-page";
    let params = json!({
        "channel": channel,
        "token": token(&[channel], &[channel]),
        // Signed with the secret, then one character added: a wrong signature.
        "badToken": format!("{}x", token(&[channel], &[channel])),
        "publishToken": PUBLISH_TOKEN,
        "settleMs": 1000,
    });
    run_scenario(&mut driver, "auth-token", params).await;
    stop(driver).await;
}

#[tokio::test]
async fn demo_page_renews_its_token_before_it_expires_and_misses_nothing() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    let mut driver = Driver {
        app: Some(spawn_app_with(with_auth).await),
        configure: with_auth,
    };
    let params = json!({ "channel": "private-renew", "publishToken": PUBLISH_TOKEN, "ttl": 3 });
    run_scenario(&mut driver, "auth-renew", params).await;
    stop(driver).await;
}

#[tokio::test]
async fn a_page_on_another_origin_reads_a_private_channel_with_a_cookie() {
    if !browser_available() {
        return;
    }
    let _one = one_browser_at_a_time().await;
    // The page's origin: another herald, on another port of 127.0.0.1.
    let pages = spawn_app().await;
    let page_origin = pages.base.clone();
    let api = spawn_app_with(|c| {
        with_auth(c);
        c.auth_cookie = Some("herald_token".into());
        c.cors_origin = vec![page_origin.clone()];
    })
    .await;
    let mut driver = Driver {
        app: Some(api),
        configure: |_| {},
    };
    let channel = "private-cookie";
    let params = json!({
        "pageBase": page_origin,
        "channel": channel,
        "token": token(&[channel], &[]),
        "publishToken": PUBLISH_TOKEN,
    });
    run_scenario(&mut driver, "auth-cookie", params).await;
    stop(driver).await;
    pages.stop().await;
}
