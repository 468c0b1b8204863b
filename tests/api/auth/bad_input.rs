//! Every bad token of issue 8 gets a 401 with a JSON error that does not say
//! which check failed, is counted, changes nothing, and the server keeps
//! serving others.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use super::{
    answer, claims, hs, key_pair, now, rejected, sign_with, spawn_auth_with, token, Kind,
    PUBLISH_TOKEN,
};

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// The bad tokens, each with what is wrong with it.
fn bad_tokens() -> Vec<(&'static str, String)> {
    let grants = json!({"subscribe": ["private-a"], "publish": ["private-a"]});
    let valid = claims(600, grants.clone());
    let with = |field: &str, value: Value| {
        let mut c = valid.clone();
        c[field] = value;
        hs(&c)
    };
    let expired = with("exp", json!(now() - 5));
    let not_yet = with("nbf", json!(now() + 300));
    let wrong_aud = with("aud", json!("someone-else"));
    let wrong_iss = with("iss", json!("https://evil.example"));
    let wrong_shape = with("herald", json!(["private-a"]));
    let star_inside = with("herald", json!({"subscribe": ["priv*ate-a"]}));
    let mut no_exp = valid.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    let other_key = EncodingKey::from_secret(b"not-the-configured-secret").unwrap();
    let wrong_signature = sign_with(Algorithm::HS256, &other_key, &valid, None);
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&valid)
    );
    // Algorithm confusion: HS256 keyed with the bytes of the configured
    // public key, which an attacker can read.
    let public_pem = std::fs::read(&key_pair(Kind::Rsa).public).unwrap();
    let confused_key = EncodingKey::from_secret(&public_pem).unwrap();
    let confused = sign_with(Algorithm::HS256, &confused_key, &valid, None);
    let rsa = key_pair(Kind::Rsa).encoding(Kind::Rsa);
    let unknown_kid = sign_with(Algorithm::RS256, &rsa, &valid, Some("no-such-kid"));
    let huge = hs(&claims(
        600,
        json!({"subscribe": ["private-a"], "info": "x".repeat(16 * 1024)}),
    ));
    vec![
        ("expired", expired),
        ("not yet valid (nbf)", not_yet),
        ("wrong signature", wrong_signature),
        ("alg none", alg_none),
        ("HS256 signed with the public key's bytes", confused),
        ("wrong aud", wrong_aud),
        ("wrong iss", wrong_iss),
        ("missing exp", hs(&no_exp)),
        ("not a JWT", "this-is-not-a-jwt".to_owned()),
        ("16 KiB token", huge),
        ("herald claim of the wrong shape", wrong_shape),
        ("grant with a * in the middle", star_inside),
        ("unknown kid", unknown_kid),
        ("less than a second left", with("exp", json!(now()))),
    ]
}

#[tokio::test]
async fn each_bad_token_is_refused_counted_and_changes_nothing() {
    let app = spawn_auth_with(|c| {
        c.jwt_public_key = vec![key_pair(Kind::Rsa).public.clone()];
        c.jwt_audience = Some("herald-test".into());
        c.jwt_issuer = Some("https://issuer.test".into());
        c.auth_cookie = Some("herald_token".into());
        c.cors_origin = vec!["http://app.test".into()];
    })
    .await;
    let mut good_claims = claims(600, json!({"subscribe": ["private-a"]}));
    good_claims["aud"] = json!("herald-test");
    good_claims["iss"] = json!("https://issuer.test");
    let mut watcher = app
        .subscribe(
            &format!("/events/private-a?token={}", hs(&good_claims)),
            None,
        )
        .await;
    let cases = bad_tokens();
    for (what, bad) in &cases {
        let stream = app
            .client
            .get(app.url("/events/private-a"))
            .bearer_auth(bad);
        let (status, challenge, body) = answer(stream).await;
        assert_eq!(status, 401, "{what}: subscribe");
        assert_eq!(
            challenge.as_deref(),
            Some("Bearer error=\"invalid_token\""),
            "{what}"
        );
        assert_eq!(body["error"], "unauthorized", "{what}");
        let message = body["message"].as_str().unwrap();
        assert!(
            !message.contains(bad.as_str()),
            "{what}: the token is not echoed"
        );
        // On an open channel by the query, and on a publish: the same.
        let by_query = app.url(&format!("/events/news?token={bad}"));
        let publish = app
            .client
            .post(app.url("/publish/private-a"))
            .bearer_auth(bad)
            .body("x");
        for (how, request) in [("query", app.client.get(by_query)), ("publish", publish)] {
            let (status, _, body) = answer(request).await;
            assert_eq!(status, 401, "{what}: {how}");
            assert_eq!(body["error"], "unauthorized", "{what}: {how}");
        }
    }
    assert_eq!(
        rejected(&app, "unauthorized").await,
        3.0 * cases.len() as f64
    );
    // A cookie header of garbage is no token at all; a garbage token in it
    // is refused.
    for garbage in [
        &b"\xff\xfe=;;;herald_token"[..],
        b"herald_token=%%%; =;",
        b"herald_token=a.b.c",
        b"herald_token",
    ] {
        let value = reqwest::header::HeaderValue::from_bytes(garbage).unwrap();
        let r = app
            .client
            .get(app.url("/events/private-a"))
            .header("cookie", value);
        let (status, _, body) = answer(r).await;
        assert_eq!(status, 401, "{garbage:?}");
        assert_eq!(body["error"], "unauthorized", "{garbage:?}");
    }
    // Nothing was published or subscribed (only the watcher's channel
    // exists), and the server still serves a good client.
    assert_eq!(app.metric("herald_events_published_total").await, 0.0);
    assert_eq!(app.state.hub.channel_count(), 1);
    let ok = app
        .client
        .post(app.url("/publish/private-a"))
        .bearer_auth(PUBLISH_TOKEN);
    assert_eq!(answer(ok.body("still here")).await.0, 200);
    assert_eq!(watcher.next().await.data, "still here");
    // An empty cookie, quoted or not, is no token: an open channel serves it.
    for empty in ["herald_token=", "herald_token=\"\""] {
        let r = app
            .client
            .get(app.url("/events/news"))
            .header("cookie", empty);
        assert_eq!(answer(r).await.0, 200, "{empty}");
    }
}

#[tokio::test]
async fn a_malformed_authorization_header_is_refused_even_on_open_channels() {
    let app = spawn_auth_with(|_| {}).await;
    for header in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b"] {
        let r = app
            .client
            .get(app.url("/events/news"))
            .header("authorization", header);
        assert_eq!(answer(r).await.0, 401, "{header}");
    }
    let r = app
        .client
        .get(app.url("/events/news"))
        .bearer_auth(token(&[], &[]));
    assert_eq!(
        answer(r).await.0,
        200,
        "a valid token with no grants reads open channels"
    );
}
