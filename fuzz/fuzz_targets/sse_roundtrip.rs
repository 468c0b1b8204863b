//! The SSE encoder, round-tripped through an independent parser (the WHATWG
//! algorithm in `herald_fuzz`): any data and event type come back exactly as
//! a browser should see them, in exactly one event with the right id, and
//! no byte sequence in the data can end the event early or add a field.
//! Also the preamble / retry-later answer (comment text is arbitrary) and
//! gap notices.
#![no_main]

use std::time::Duration;

use herald::domain::{ChannelName, EventId, EventType};
use herald::history::{GapReason, Notice};
use herald::sse::{self, PendingEvent};
use herald_fuzz::{as_received, parse_event_stream};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = check(&mut Unstructured::new(bytes));
});

fn check(u: &mut Unstructured<'_>) -> Result<()> {
    let id: u64 = u.arbitrary()?;
    let event_type: Option<String> = u.arbitrary()?;
    let comment: String = u.arbitrary()?;
    let retry_ms: u32 = u.arbitrary()?;
    let channel: String = u.arbitrary()?;
    let data: String = u.arbitrary()?;

    // An event.
    let ty = event_type.and_then(|t| EventType::parse(&t).ok());
    let frame = PendingEvent::encode(ty.as_ref(), &data).finish(EventId::new(id));
    assert!(std::str::from_utf8(&frame).is_ok(), "frames are UTF-8");
    let parsed = parse_event_stream(&frame);
    assert!(
        parsed.unterminated.is_empty(),
        "frame ends with a line break"
    );
    assert!(parsed.other_fields.is_empty() && parsed.retries.is_empty());
    assert_eq!(parsed.comments, 0);
    assert_eq!(parsed.events.len(), 1, "exactly one event: {frame:?}");
    let event = &parsed.events[0];
    assert_eq!(event.last_event_id, id.to_string());
    let expected_type = ty.as_ref().map_or("message", EventType::as_str);
    assert_eq!(event.event_type, expected_type);
    assert_eq!(event.data, as_received(&data));
    // Frames back to back stay separate events.
    let again = PendingEvent::encode(None, &data).finish(EventId::new(id.wrapping_add(1)));
    let both = [&frame[..], &again[..]].concat();
    assert_eq!(parse_event_stream(&both).events.len(), 2);

    // The preamble, and the retry-later answer: a retry field and a comment,
    // whatever the comment's text; never an event or another field.
    let retry = Duration::from_millis(u64::from(retry_ms));
    for bytes in [
        sse::preamble(retry, &comment),
        sse::retry_later(retry, &comment),
    ] {
        let parsed = parse_event_stream(&bytes);
        assert!(
            parsed.events.is_empty(),
            "a comment dispatched an event: {bytes:?}"
        );
        assert!(
            parsed.other_fields.is_empty(),
            "a comment injected a field: {bytes:?}"
        );
        assert_eq!(parsed.retries, [retry_ms.to_string()]);
        assert!(parsed.unterminated.is_empty());
    }

    // A gap notice: typed herald.gap, no id, JSON naming the channel.
    if let Ok(name) = ChannelName::parse(&channel) {
        let after = (id % 3 != 0).then_some(EventId::new(id));
        let bytes = sse::notice(&Notice::gap(&name, GapReason::SlowSubscriber, after));
        let parsed = parse_event_stream(&bytes);
        assert_eq!(parsed.events.len(), 1);
        let gap = &parsed.events[0];
        assert_eq!(gap.event_type, "herald.gap");
        assert_eq!(gap.last_event_id, "", "a gap notice carries no id");
        let json: serde_json::Value = serde_json::from_str(&gap.data).expect("gap data is JSON");
        assert_eq!(json["channel"], channel.as_str());
    }
    Ok(())
}
