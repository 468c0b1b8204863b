//! `--presence-grace` on tokio's paused clock: a leave comes exactly when a
//! member has had no stream for the grace, and a reconnect inside it
//! announces nothing, for one member or a storm of 200. The server runs
//! in-process, so its timers follow the test's clock.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::{app, jwt_for, member, notice, stream, subs, PUBLISH_TOKEN, ROOM};
use crate::helpers::{Sse, TestApp};

const GRACE: Duration = Duration::from_secs(10);

/// Publishes a marker with the publish token and checks it is the next
/// thing `sse` sees: no join or leave came before it.
async fn next_is_marker(app: &TestApp, sse: &mut Sse, marker: &str) {
    let response = app
        .client
        .post(app.url(&format!("/publish/{ROOM}")))
        .bearer_auth(PUBLISH_TOKEN)
        .body(marker.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let next = sse.next().await;
    assert_eq!(
        (next.event.as_str(), next.data.as_str()),
        ("message", marker)
    );
}

#[tokio::test(start_paused = true)]
async fn the_last_stream_closing_announces_a_leave_after_the_grace_and_not_before() {
    let app = app(|_| {}).await;
    let mut ada = stream(&app, ROOM, &member("42", "Ada")).await;
    notice(&mut ada).await;
    let bo_tab_1 = stream(&app, ROOM, &member("7", "Bo")).await;
    let bo_tab_2 = stream(&app, ROOM, &member("7", "Bo")).await;
    assert_eq!(notice(&mut ada).await.0, "herald.join");

    drop(bo_tab_1);
    tokio::time::sleep(Duration::from_secs(30)).await;
    next_is_marker(&app, &mut ada, "one tab of two closed").await;

    drop(bo_tab_2);
    let closed = Instant::now();
    assert!(
        ada.try_next(GRACE - Duration::from_millis(1))
            .await
            .is_none(),
        "no leave inside the grace"
    );
    let (kind, leave) = notice(&mut ada).await;
    assert_eq!(
        (kind.as_str(), leave),
        (
            "herald.leave",
            json!({"channel": ROOM, "sub": "7", "info": {"name": "Bo"}})
        )
    );
    let after = closed.elapsed();
    assert!(
        after >= GRACE && after < GRACE + Duration::from_secs(1),
        "{after:?}"
    );
    assert_eq!(app.state.hub.presence_size(), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_member_whose_token_expires_leaves_one_grace_after_its_stream_ends() {
    let app = app(|_| {}).await;
    let mut ada = stream(&app, ROOM, &member("42", "Ada")).await;
    notice(&mut ada).await;
    let short = jwt_for(
        json!({"sub": "7", "herald": {"subscribe": ["presence-*"]}}),
        3,
    );
    let opened = Instant::now();
    let mut bo = stream(&app, ROOM, &short).await;
    assert_eq!(notice(&mut ada).await.0, "herald.join");
    notice(&mut bo).await;

    assert_eq!(bo.next().await.event, "herald.expired");
    assert!(
        bo.ends_within(Duration::from_secs(1)).await,
        "the stream ends at exp"
    );
    let ended = opened.elapsed();
    let leave = ada.try_next(3 * GRACE).await.expect("bo leaves");
    assert_eq!(leave.event, "herald.leave");
    assert!(leave.data.contains(r#""sub":"7""#), "{leave:?}");
    let left = opened.elapsed();
    assert!(
        left >= ended + GRACE - Duration::from_millis(10),
        "{ended:?} then {left:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_inside_the_grace_announces_nothing() {
    let app = app(|_| {}).await;
    let mut ada = stream(&app, ROOM, &member("42", "Ada")).await;
    notice(&mut ada).await;
    let bo = stream(&app, ROOM, &member("7", "Bo")).await;
    assert_eq!(notice(&mut ada).await.0, "herald.join");

    drop(bo);
    tokio::time::sleep(GRACE - Duration::from_secs(1)).await;
    let mut bo = stream(&app, ROOM, &member("7", "Bo")).await;
    assert_eq!(subs(&notice(&mut bo).await.1), ["42", "7"]);
    tokio::time::sleep(3 * GRACE).await;
    next_is_marker(&app, &mut ada, "after the reload").await;
    assert_eq!(app.state.hub.presence_size(), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn a_reconnect_storm_of_200_members_inside_the_grace_sends_no_join_or_leave() {
    const MEMBERS: usize = 200;
    let app = app(|c| c.presence_max_members = 1000).await;
    let tokens: Vec<String> = (0..MEMBERS)
        .map(|i| member(&format!("user-{i}"), &format!("User {i}")))
        .collect();
    let mut streams = Vec::with_capacity(MEMBERS);
    for token in &tokens {
        streams.push(stream(&app, ROOM, token).await);
    }
    let mut watcher = stream(&app, ROOM, PUBLISH_TOKEN).await;
    assert_eq!(notice(&mut watcher).await.1["count"], MEMBERS);

    // Every member drops at once (a deploy, a load balancer reload), and
    // comes back over the next few seconds, as EventSource retries do.
    streams.clear();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        app.state.hub.presence_size(),
        (MEMBERS, MEMBERS),
        "every member is at 0 streams, its leave pending"
    );
    for (i, token) in tokens.iter().enumerate() {
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        streams.push(stream(&app, ROOM, token).await);
    }
    tokio::time::sleep(3 * GRACE).await;
    next_is_marker(&app, &mut watcher, "after the storm").await;
    assert_eq!(app.state.hub.presence_size(), (MEMBERS, 0));
}
