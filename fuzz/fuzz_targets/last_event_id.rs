//! `Resume::parse` (Last-Event-ID / lastEventId): empty is "live", a plain
//! decimal id is "after it" and prints back the same, anything else is
//! "unknown" (a gap). Ids written by the encoder parse back to themselves.
#![no_main]

use herald::domain::{EventId, Resume};
use herald::sse::PendingEvent;
use herald_fuzz::{parse_event_stream, plain_id};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // Header values may hold any byte; herald sees them as text only when
    // they are visible ASCII (routes::events), so try the lossy form too.
    let s = String::from_utf8_lossy(bytes);
    let expected = if s.is_empty() {
        Resume::Live
    } else {
        match plain_id(&s) {
            Some(n) => Resume::After(EventId::new(n)),
            None => Resume::Unknown,
        }
    };
    let got = Resume::parse(&s);
    assert_eq!(got, expected, "{s:?}");
    if let Resume::After(id) = got {
        assert_eq!(id.to_string(), s);
        let frame = PendingEvent::encode(None, "x").finish(id);
        assert_eq!(parse_event_stream(&frame).events[0].last_event_id, s);
    }
    // And every u64 the server may issue survives the trip through the wire.
    if bytes.len() >= 8 {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        let frame = PendingEvent::encode(None, "x").finish(EventId::new(n));
        let seen = &parse_event_stream(&frame).events[0].last_event_id;
        assert_eq!(Resume::parse(seen), Resume::After(EventId::new(n)));
    }
});
