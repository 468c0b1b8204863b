//! The wire format checked against an SSE parser we did not write
//! (`eventsource-stream`): for any UTF-8 data and any valid event type, the
//! parsed event equals the data with its line breaks turned into LF.

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use herald::domain::{EventId, EventType};
use herald::sse::PendingEvent;
use proptest::prelude::*;

/// What a browser gets: CRLF and CR become LF.
fn normalized(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

/// Parses `frames` (after a preamble, as on a real stream) with
/// `eventsource-stream`, feeding it in chunks of `chunk` bytes.
fn parse(frames: &[Bytes], chunk: usize) -> Vec<eventsource_stream::Event> {
    let mut wire = b"retry: 3000\n: herald\n\n".to_vec();
    for f in frames {
        wire.extend_from_slice(f);
    }
    let chunks: Vec<Result<Bytes, std::convert::Infallible>> = wire
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_executor_block_on(async move {
        futures_util::stream::iter(chunks)
            .eventsource()
            .map(|e| e.expect("valid SSE"))
            .collect()
            .await
    })
}

fn futures_executor_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// Data with the awkward parts over-represented: line breaks of every kind,
/// lines that look like fields, empty lines, a BOM, non-ASCII.
fn data() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\n".to_owned()),
        Just("\r".to_owned()),
        Just("\r\n".to_owned()),
        Just("data: x".to_owned()),
        Just("id: 5".to_owned()),
        Just("event: evil".to_owned()),
        Just("retry: 1".to_owned()),
        Just(":comment".to_owned()),
        Just("\u{feff}".to_owned()),
        Just(" ".to_owned()),
        Just(":".to_owned()),
        any::<String>(),
    ];
    proptest::collection::vec(piece, 1..8)
        .prop_map(|parts| parts.concat())
        .prop_filter("published data is non-empty", |s| !s.is_empty())
}

fn event_type() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(
        "[A-Za-z0-9_.:-]{1,64}".prop_filter("not reserved", |t| !t.starts_with("herald.")),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_data_round_trips_through_an_independent_parser(
        data in data(),
        ty in event_type(),
        id in 1u64..=u64::MAX,
        chunk in 1usize..64,
    ) {
        let ty = ty.map(|t| EventType::parse(&t).unwrap());
        let frame = PendingEvent::encode(ty.as_ref(), &data).finish(EventId::new(id));
        let events = parse(&[frame], chunk);
        prop_assert_eq!(events.len(), 1, "exactly one event, nothing injected");
        let event = &events[0];
        prop_assert_eq!(&event.data, &normalized(&data));
        prop_assert_eq!(&event.id, &id.to_string());
        let expected_type = ty.as_ref().map_or("message", |t| t.as_str());
        prop_assert_eq!(event.event.as_str(), expected_type);
    }

    #[test]
    fn consecutive_events_stay_separate(a in data(), b in data()) {
        let frames = [
            PendingEvent::encode(None, &a).finish(EventId::new(1)),
            PendingEvent::encode(None, &b).finish(EventId::new(2)),
        ];
        let events = parse(&frames, 7);
        prop_assert_eq!(events.len(), 2);
        prop_assert_eq!(&events[0].data, &normalized(&a));
        prop_assert_eq!(&events[1].data, &normalized(&b));
    }
}

/// The same property end to end for a few cases: published over HTTP,
/// received through the server.
#[tokio::test]
async fn awkward_data_published_over_http_arrives_intact() {
    let app = crate::helpers::spawn_app().await;
    let mut sse = app.subscribe("/events/wire", None).await;
    let cases = [
        "\u{feff}starts with a BOM",
        "data: not a field\nid: 9\nevent: x\n\nretry: 1",
        "\r\n\r\n",
        "trailing\r",
        " leading space",
        "emoji 🚀 and ünïcödé",
    ];
    for data in cases {
        app.publish("wire", data).await;
    }
    for data in cases {
        let event = sse.next().await;
        assert_eq!(event.data, normalized(data));
        assert_eq!(event.event, "message");
    }
}
