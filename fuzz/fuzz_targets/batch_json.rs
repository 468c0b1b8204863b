//! `parse_batch` (SPEC §3 batch publish): accepted iff the body is a JSON
//! array of objects with only `channel` (a valid name), `data` (a non-empty
//! string, or any other JSON value sent as its compact text, within the size
//! limit) and an optional valid `event`; otherwise refused whole, with the
//! index of the first bad item. Accepted items encode to frames that parse
//! back to the same data and type.
#![no_main]

use herald::domain::EventId;
use herald::error::ApiError;
use herald::routes::publish::parse_batch;
use herald_fuzz::{as_received, is_valid_channel, is_valid_event_type, parse_event_stream};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|bytes: &[u8]| {
    let Some((&limit, body)) = bytes.split_first() else {
        return;
    };
    let max = if limit == 0 {
        65536
    } else {
        usize::from(limit)
    };
    let got = parse_batch(body, max);
    let items = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items,
        _ => {
            assert!(
                matches!(got, Err(ApiError::BadJson(_))),
                "not a JSON array but {got:?}"
            );
            return;
        }
    };
    let expected: Vec<Option<(String, String, Option<String>)>> =
        items.iter().map(|item| expected_item(item, max)).collect();
    match (got, expected.iter().position(Option::is_none)) {
        (Ok(parsed), None) => {
            assert_eq!(parsed.len(), items.len());
            for (i, (item, exp)) in parsed.into_iter().zip(expected).enumerate() {
                let (channel, data, event) = exp.unwrap();
                assert_eq!(item.channel.as_str(), channel);
                assert_eq!(item.data_len, data.len());
                let frame = item.event.finish(EventId::new(i as u64));
                let parsed = parse_event_stream(&frame);
                assert_eq!(parsed.events.len(), 1);
                assert_eq!(parsed.events[0].data, as_received(&data));
                assert_eq!(
                    parsed.events[0].event_type,
                    event.as_deref().unwrap_or("message")
                );
            }
        }
        (Err(ApiError::BadBatchItem { index, .. }), Some(first_bad)) => {
            assert_eq!(index, first_bad, "index of the first bad item");
        }
        (got, first_bad) => panic!("got {got:?}, first bad item {first_bad:?}"),
    }
});

/// (channel, data as published, event type) if the item is acceptable.
fn expected_item(item: &Value, max: usize) -> Option<(String, String, Option<String>)> {
    let fields = item.as_object()?;
    if fields
        .keys()
        .any(|k| !["channel", "data", "event"].contains(&k.as_str()))
    {
        return None;
    }
    let channel = fields.get("channel")?.as_str()?;
    if !is_valid_channel(channel) {
        return None;
    }
    let event = match fields.get("event") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if is_valid_event_type(t) => Some(t.clone()),
        Some(_) => return None,
    };
    let data = match fields.get("data")? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if data.is_empty() || data.len() > max {
        return None;
    }
    Some((channel.to_owned(), data, event))
}
