//! Disconnect and revoke across nodes (SPEC §11 with §9).
//!
//! A disconnect is one script (`revoke.lua`): its revocation, if any, goes
//! into the `revoked` hash, and a `d` record into the log. The node that
//! took the request ends its own streams as soon as Redis has taken it;
//! every other node ends its streams when its reader reaches the record,
//! which `XREAD BLOCK` hands over as soon as it is appended: well within
//! the second SPEC allows, unless a node is cut off from Redis (then its
//! streams end anyway after `--redis-timeout`). A node loads the hash each
//! time its reader connects, after taking its place in the log, so a node
//! started later, or one that was away, enforces every revocation still in
//! force; a record it reads afterwards adds the same revocation again,
//! which changes nothing.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::Value;

use super::link::{self, Arg, Lua};
use super::values::{array, bulk, text};
use super::RedisLog;
use crate::domain::ChannelName;
use crate::log::PublishError;
use crate::revocation::{Disconnect, Revoke};

/// `revoke.lua` with what it needs of `presence.lua`.
pub fn script() -> Lua {
    Lua::new(concat!(
        include_str!("presence.lua"),
        include_str!("revoke.lua")
    ))
}

impl RedisLog {
    /// Records `order` in Redis, then ends this node's matching streams.
    pub async fn disconnect(&self, order: Disconnect) -> Result<usize, PublishError> {
        if !self.is_up() {
            return Err(self.unavailable());
        }
        let (at, until) = match order.revoke {
            Some(r) => (r.at.to_string(), r.until_ms.to_string()),
            None => (String::new(), String::new()),
        };
        let args = [
            Arg::Str(&self.keys.base),
            Arg::Int(u64::from(self.log_len)),
            Arg::Str(&self.node),
            Arg::Str(order.sub.as_deref().unwrap_or("")),
            Arg::Str(order.channel.as_ref().map_or("", ChannelName::as_str)),
            Arg::Str(order.jti.as_deref().unwrap_or("")),
            Arg::Str(&at),
            Arg::Str(&until),
        ];
        if let Err(e) = self.link.eval(&self.scripts.revoke, &[], &args).await {
            self.failed("disconnect", e);
            return Err(self.unavailable());
        }
        Ok(self.hub.apply_disconnect(&order))
    }
}

/// A `d` record of the log: the node it came from and the order, `None` if
/// unreadable (it still counts for the log's continuity).
pub fn decode(fields: &[Value]) -> Option<(String, Disconnect)> {
    let mut origin = None;
    let mut order = Disconnect {
        sub: None,
        channel: None,
        jti: None,
        revoke: None,
    };
    let (mut at, mut until) = (None, None);
    for pair in fields.chunks_exact(2) {
        let value = text(&pair[1]);
        match bulk(&pair[0])? {
            b"o" => origin = value.map(str::to_owned),
            b"ds" => order.sub = Some(value?.into()),
            b"dc" => order.channel = Some(ChannelName::parse(value?).ok()?),
            b"dj" => order.jti = Some(value?.into()),
            b"da" => at = value?.parse().ok(),
            b"du" => until = value?.parse().ok(),
            _ => {}
        }
    }
    if let Some(until_ms) = until {
        order.revoke = Some(Revoke {
            at: at.unwrap_or(0),
            until_ms,
        });
    }
    Some((origin?, order))
}

/// Reads the revocations in force on `conn` (the reader's, once it has its
/// place in the log) into the hub.
pub async fn load(log: &RedisLog, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let reply = link::checked(
        conn.req_packed_command(redis::cmd("HGETALL").arg(log.keys.key("revoked")))
            .await,
    )?;
    let flat = match &reply {
        Value::Map(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).cloned().collect(),
        _ => array(&reply).map(<[Value]>::to_vec).unwrap_or_default(),
    };
    let revocations = log.hub.revocations();
    for pair in flat.chunks_exact(2) {
        let (Some(field), Some(until_ms)) =
            (text(&pair[0]), text(&pair[1]).and_then(|s| s.parse().ok()))
        else {
            continue;
        };
        if let Some(order) = parse_field(field, until_ms) {
            revocations.insert(&order);
        }
    }
    Ok(())
}

/// A field of the `revoked` hash: `s <at> <sub>` or `j <jti>`.
fn parse_field(field: &str, until_ms: u64) -> Option<Disconnect> {
    let mut order = Disconnect {
        sub: None,
        channel: None,
        jti: None,
        revoke: None,
    };
    let at = match field.split_once(' ')? {
        ("j", jti) => {
            order.jti = Some(jti.into());
            0
        }
        ("s", rest) => {
            let (at, sub) = rest.split_once(' ')?;
            order.sub = Some(sub.into());
            at.parse().ok()?
        }
        _ => return None,
    };
    order.revoke = Some(Revoke { at, until_ms });
    Some(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_fields_parse_with_spaces_in_the_sub() {
        let order = parse_field("s 1700000000 Ada Lovelace", 5).unwrap();
        assert_eq!(order.sub.as_deref(), Some("Ada Lovelace"));
        assert_eq!(
            order.revoke,
            Some(Revoke {
                at: 1_700_000_000,
                until_ms: 5
            })
        );
        assert_eq!(parse_field("j a b", 5).unwrap().jti.as_deref(), Some("a b"));
        assert!(parse_field("x 1", 5).is_none() && parse_field("s nope x", 5).is_none());
    }

    #[test]
    fn log_records_decode() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let fields: Vec<Value> = [
            "k", "d", "o", "n1", "ds", "42", "dc", "news", "da", "7", "du", "9",
        ]
        .iter()
        .map(|s| bulk(s))
        .collect();
        let (origin, order) = decode(&fields).unwrap();
        assert_eq!(origin, "n1");
        assert_eq!(order.sub.as_deref(), Some("42"));
        assert_eq!(order.channel.unwrap().as_str(), "news");
        assert_eq!(order.revoke, Some(Revoke { at: 7, until_ms: 9 }));
        let bad: Vec<Value> = ["k", "d", "o", "n1", "dc", "a b"]
            .iter()
            .map(|s| bulk(s))
            .collect();
        assert!(decode(&bad).is_none());
    }
}
