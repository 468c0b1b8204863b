//! Presence's rules, one channel at a time, with no hub around it.

use super::*;
use serde_json::{json, Value};

const GRACE: Duration = Duration::from_secs(10);

fn presence(max_members: usize) -> Presence {
    Presence::new(PresenceConfig {
        grace: GRACE,
        max_members,
    })
}

fn room(name: &str) -> ChannelName {
    ChannelName::parse(name).unwrap()
}

fn member(sub: &str, name: &str) -> Member {
    Member::new(sub, Some(&json!({ "name": name }).to_string()))
}

fn subs(list: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(list).unwrap();
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sub"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn first_connection_joins_and_later_ones_do_not() {
    let mut p = presence(100);
    let ch = room("presence-a");
    let ada = member("42", "Ada");
    assert_eq!(
        p.connect(&ch, &ada),
        Some(Announcement::Join(ch.clone(), ada.clone()))
    );
    assert_eq!(
        p.connect(&ch, &ada),
        None,
        "a second tab is the same member"
    );
    assert_eq!(p.members(), 1);
}

#[test]
fn a_new_info_is_announced_as_a_join() {
    let mut p = presence(100);
    let ch = room("presence-a");
    p.connect(&ch, &member("42", "Ada"));
    let renamed = member("42", "Ada L.");
    assert_eq!(
        p.connect(&ch, &renamed),
        Some(Announcement::Join(ch.clone(), renamed))
    );
    let snapshot: Value = serde_json::from_str(&p.snapshot_json(&ch)).unwrap();
    assert_eq!(snapshot["members"][0]["info"]["name"], "Ada L.");
}

#[tokio::test(start_paused = true)]
async fn leave_is_announced_only_after_the_grace_at_zero_connections() {
    let mut p = presence(100);
    let ch = room("presence-a");
    let ada = member("42", "Ada");
    p.connect(&ch, &ada);
    p.connect(&ch, &ada);
    let t0 = Instant::now();
    assert_eq!(p.disconnect(&ch, "42", t0), None, "one tab is still open");
    assert_eq!(p.disconnect(&ch, "42", t0), Some(t0 + GRACE));
    assert_eq!(p.next_leave(), Some(t0 + GRACE));
    assert!(p.expire(t0 + GRACE - Duration::from_millis(1)).is_empty());
    assert_eq!(
        p.expire(t0 + GRACE),
        vec![Announcement::Leave(ch.clone(), ada)]
    );
    assert_eq!((p.members(), p.pending_leaves()), (0, 0));
    assert!(p.rooms.is_empty(), "an empty channel is forgotten");
}

#[tokio::test(start_paused = true)]
async fn coming_back_within_the_grace_announces_nothing() {
    let mut p = presence(100);
    let ch = room("presence-a");
    let ada = member("42", "Ada");
    p.connect(&ch, &ada);
    let t0 = Instant::now();
    p.disconnect(&ch, "42", t0);
    assert_eq!(p.connect(&ch, &ada), None);
    assert_eq!(p.pending_leaves(), 0, "the pending leave is cancelled");
    assert!(p.expire(t0 + 2 * GRACE).is_empty());
    assert_eq!(p.members(), 1);
}

#[tokio::test(start_paused = true)]
async fn thousands_of_reconnects_make_one_join_and_one_leave() {
    let mut p = presence(100);
    let ch = room("presence-a");
    let ada = member("42", "Ada");
    let t0 = Instant::now();
    let mut announced = Vec::new();
    for i in 0..5000u32 {
        let now = t0 + Duration::from_micros(200 * u64::from(i));
        announced.extend(p.connect(&ch, &ada));
        p.disconnect(&ch, "42", now);
        announced.extend(p.expire(now));
        assert!(p.pending_leaves() <= 1);
    }
    announced.extend(p.expire(t0 + Duration::from_secs(1) + GRACE));
    assert_eq!(
        announced,
        vec![
            Announcement::Join(ch.clone(), ada.clone()),
            Announcement::Leave(ch.clone(), ada)
        ]
    );
    assert_eq!((p.members(), p.pending_leaves(), p.rooms.len()), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn leaves_come_out_in_deadline_order_across_channels() {
    let mut p = presence(100);
    let (a, b) = (room("presence-a"), room("presence-b"));
    p.connect(&a, &member("1", "x"));
    p.connect(&b, &member("2", "y"));
    let t0 = Instant::now();
    p.disconnect(&b, "2", t0);
    p.disconnect(&a, "1", t0 + Duration::from_secs(1));
    let out = p.expire(t0 + GRACE);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].channel(), &b);
    assert_eq!(p.next_leave(), Some(t0 + Duration::from_secs(1) + GRACE));
}

#[tokio::test(start_paused = true)]
async fn above_the_limit_nothing_is_announced_until_a_fresh_snapshot() {
    let mut p = presence(2);
    let ch = room("presence-a");
    assert!(p.connect(&ch, &member("a", "A")).is_some());
    assert!(p.connect(&ch, &member("b", "B")).is_some());
    assert_eq!(p.connect(&ch, &member("c", "C")), None, "third of two");
    let snapshot: Value = serde_json::from_str(&p.snapshot_json(&ch)).unwrap();
    assert_eq!(snapshot["count"], 3);
    assert_eq!(snapshot["truncated"], true);
    assert_eq!(subs(&p.snapshot_json(&ch)), ["a", "b"]);

    let t0 = Instant::now();
    p.disconnect(&ch, "c", t0);
    assert_eq!(
        p.expire(t0 + GRACE),
        vec![Announcement::Snapshot(ch.clone())],
        "back at the limit: a fresh snapshot, not a leave nobody saw join"
    );
    let snapshot: Value = serde_json::from_str(&p.snapshot_json(&ch)).unwrap();
    assert_eq!(snapshot.get("truncated"), None);
    p.disconnect(&ch, "b", t0 + GRACE);
    let out = p.expire(t0 + 2 * GRACE);
    assert!(matches!(&out[..], [Announcement::Leave(_, m)] if m.sub() == "b"));
}

#[test]
fn snapshot_and_roster_have_the_spec_shapes() {
    let mut p = presence(100);
    let ch = room("presence-a");
    let ada = member("42", "Ada");
    p.connect(&ch, &ada);
    p.connect(&ch, &ada);
    p.connect(&ch, &Member::new("7", None));
    assert_eq!(
        serde_json::from_str::<Value>(&p.snapshot_json(&ch)).unwrap(),
        json!({"channel":"presence-a","count":2,"members":[
            {"sub":"42","info":{"name":"Ada"}},{"sub":"7","info":null}]})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&p.roster_json(&ch)).unwrap(),
        json!({"channel":"presence-a","count":2,"members":[
            {"sub":"42","info":{"name":"Ada"},"connections":2},
            {"sub":"7","info":null,"connections":1}]})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&p.roster_json(&room("presence-empty"))).unwrap(),
        json!({"channel":"presence-empty","count":0,"members":[]})
    );
}

#[test]
fn info_is_compared_and_sent_without_the_spacing_of_its_token() {
    let mut p = presence(100);
    let ch = room("presence-a");
    let spaced = Member::new(
        "42",
        Some("{ \"name\" : \"A d\\\" a\" ,\n\t\"n\": [1, 2.50] }"),
    );
    assert_eq!(spaced.info_json(), r#"{"name":"A d\" a","n":[1,2.50]}"#);
    p.connect(&ch, &spaced);
    let compact = Member::new("42", Some(r#"{"name":"A d\" a","n":[1,2.50]}"#));
    assert_eq!(
        p.connect(&ch, &compact),
        None,
        "the same info, spaced otherwise"
    );
    assert_eq!(Member::new("7", Some(" \"x y\" ")).info_json(), r#""x y""#);
    assert_eq!(Member::new("7", Some("\"a\r\nb\"")).info_json(), r#""ab""#);
}

#[test]
fn json_is_escaped_and_stays_on_one_line() {
    let ch = room("presence-a");
    let odd = Member::new("a\"b\nc", Some("{\n  \"n\": \"x\\ny\u{2028}\"\n}"));
    let data = change_json(&ch, &odd);
    assert!(!data.contains('\n') && !data.contains('\r'), "{data}");
    let v: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(v["sub"], "a\"b\nc");
    assert_eq!(v["info"]["n"], "x\ny\u{2028}");
}
