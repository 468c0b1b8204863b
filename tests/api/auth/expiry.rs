//! A stream opened with a JWT ends at the token's `exp`, never later, with
//! one `herald.expired` event and no `id:`; a reconnect with a fresh token
//! and the last id loses nothing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::{claims, hs, now, spawn_auth, token, PUBLISH_TOKEN};
use crate::helpers::Sse;

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[tokio::test]
async fn a_two_second_token_ends_its_stream_at_exp_and_a_renewal_loses_nothing() {
    let app = spawn_auth().await;
    let publish = |data: &'static str| {
        let request = app.client.post(app.url("/publish/private-feed"));
        async move {
            let response = request.bearer_auth(PUBLISH_TOKEN).body(data).send().await;
            let answer: serde_json::Value = response.unwrap().json().await.unwrap();
            answer["id"].as_str().unwrap().to_owned()
        }
    };
    let short = claims(2, json!({"subscribe": ["private-feed"]}));
    let exp = short["exp"].as_u64().unwrap();
    let url = app.url(&format!("/events/private-feed?token={}", hs(&short)));
    let response = app.client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let before = publish("before").await;

    let body = tokio::time::timeout(Duration::from_secs(5), response.text())
        .await
        .expect("the stream ends on its own")
        .unwrap();
    let ended = now_ms();
    let exp_ms = u128::from(exp) * 1000;
    assert!(
        ended + 50 >= exp_ms,
        "not before exp: ended {ended}, exp {exp_ms}"
    );
    assert!(
        ended <= exp_ms + 1000,
        "within a second of exp: ended {ended}, exp {exp_ms}"
    );
    let last =
        format!("event: herald.expired\ndata: {{\"reason\":\"token_expired\",\"exp\":{exp}}}\n\n");
    assert!(body.ends_with(&last), "{body:?}");
    assert!(
        body.contains(&format!("id: {before}\ndata: before\n\n")),
        "{body:?}"
    );
    assert_eq!(
        body.matches("id:").count(),
        1,
        "the expiry notice has no id"
    );

    // Published while the page fetches a new token.
    publish("missed-1").await;
    publish("missed-2").await;
    let fresh = token(&["private-feed"], &[]);
    let request = app
        .client
        .get(app.url(&format!("/events/private-feed?token={fresh}")));
    let response = request
        .header("Last-Event-ID", &before)
        .send()
        .await
        .unwrap();
    let mut sse = Sse::from_response(response);
    assert_eq!(sse.data(2).await, ["missed-1", "missed-2"]);
    assert!(now() >= exp);
}

/// RFC 7519 dates may have a fraction (`Date.now() / 1000 + 600` in
/// JavaScript); a date too far ahead for the clock (a "never expires" token)
/// used to panic the connection, which then closed with no answer.
#[tokio::test]
async fn an_exp_with_a_fraction_or_beyond_the_clock_opens_the_stream() {
    let app = spawn_auth().await;
    let fraction = (now() + 600) as f64 + 0.75;
    for exp in [json!(fraction), json!(1u64 << 63), json!(u64::MAX)] {
        let t = hs(&json!({"exp": exp, "herald": {"subscribe": ["private-feed"]}}));
        let mut sse = app
            .subscribe(&format!("/events/private-feed?token={t}"), None)
            .await;
        let published = app
            .client
            .post(app.url("/publish/private-feed"))
            .bearer_auth(PUBLISH_TOKEN)
            .body(exp.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(published.status(), 200);
        assert_eq!(sse.next().await.data, exp.to_string(), "exp {exp}");
    }
}
