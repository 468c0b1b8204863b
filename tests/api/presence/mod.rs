//! Presence (SPEC §7) on the real server: members per `sub`, the snapshot,
//! joins and leaves, the grace, the member limit, refusals, dead peers.
//!
//! Tokens are HS256 JWTs signed here with the server's `--jwt-secret`.

mod churn;
mod dead_peer;
mod grace;
mod rules;
mod websocket;

use std::time::{SystemTime, UNIX_EPOCH};

use herald::config::Secret;
use herald::Config;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Sse, TestApp};

pub const SECRET: &str = "presence-tests-secret";
pub const PUBLISH_TOKEN: &str = "presence-tests-publish-token";
pub const ROOM: &str = "presence-room";

/// Auth on: a JWT secret and a publish token.
pub fn with_auth(config: &mut Config) {
    config.jwt_secret = vec![Secret::new(SECRET)];
    config.publish_token = vec![Secret::new(PUBLISH_TOKEN)];
}

pub async fn app(configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with(|c| {
        with_auth(c);
        configure(c);
    })
    .await
}

/// A JWT with these claims, valid for an hour.
pub fn jwt(claims: Value) -> String {
    jwt_for(claims, 3600)
}

/// A JWT with these claims, valid for `seconds`.
pub fn jwt_for(mut claims: Value, seconds: u64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    claims["exp"] = (now.as_secs() + seconds).into();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A member's token: `sub`, `info.name`, and every presence channel.
pub fn member(sub: &str, name: &str) -> String {
    jwt(json!({"sub": sub, "herald": {"subscribe": ["presence-*"], "info": {"name": name}}}))
}

/// Opens `/events/{channel}` with `token` in the query, as a page would.
pub async fn stream(app: &TestApp, channel: &str, token: &str) -> Sse {
    app.subscribe(&format!("/events/{channel}?token={token}"), None)
        .await
}

/// The next event of `sse`: its type and JSON data. (The parser reports
/// the last id seen, so ids are checked on the raw bytes, in `rules`.)
pub async fn notice(sse: &mut Sse) -> (String, Value) {
    let event = sse.next().await;
    (event.event, serde_json::from_str(&event.data).unwrap())
}

/// The `sub`s of a snapshot or roster.
pub fn subs(list: &Value) -> Vec<&str> {
    list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sub"].as_str().unwrap())
        .collect()
}
