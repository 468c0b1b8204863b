//! Reading Redis answers (`redis::Value`) without surprises: each helper
//! says `None` for anything but the shape it expects.

use std::time::Duration;

use redis::{AsyncConnectionConfig, RedisResult, Value};

use crate::domain::EventId;

pub fn array(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(items) => Some(items),
        _ => None,
    }
}

pub fn bulk(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

pub fn text(v: &Value) -> Option<&str> {
    std::str::from_utf8(bulk(v)?).ok()
}

pub fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

/// A stream entry id written by herald, `<id>-0`.
pub fn stream_id(v: &Value) -> Option<EventId> {
    let (ms, seq) = text(v)?.split_once('-')?;
    if seq != "0" {
        return None;
    }
    ms.parse().ok().map(EventId::new)
}

/// An error answer from Redis as an `Err` (a raw command returns it as a
/// value).
pub fn checked(result: RedisResult<Value>) -> RedisResult<Value> {
    match result {
        Ok(Value::ServerError(e)) => Err(e.into()),
        other => other,
    }
}

/// Connection settings: `connect` to open the socket, `response` for each
/// answer.
pub fn config(connect: Duration, response: Duration) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect))
        .set_response_timeout(Some(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_herald_ids_with_sequence_zero() {
        let id = |s: &str| stream_id(&Value::BulkString(s.as_bytes().to_vec()));
        assert_eq!(
            id("1764547200000000-0"),
            Some(EventId::new(1764547200000000))
        );
        assert_eq!(id("5-1"), None);
        assert_eq!(id("x-0"), None);
        assert_eq!(int(&Value::Nil), None);
    }
}
