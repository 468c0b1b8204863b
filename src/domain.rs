//! Parsed input types: channel names, event types, event ids and the resume
//! point a subscriber presents.
//!
//! Each is built once at the HTTP edge by a `parse` function; code past the
//! edge never sees a raw string, so it never has to re-check one.

use std::fmt;
use std::sync::Arc;

/// Longest channel name, in characters (all are ASCII, so also bytes).
pub const MAX_CHANNEL_LEN: usize = 128;
/// Longest event type.
pub const MAX_EVENT_TYPE_LEN: usize = 64;
/// Most channels one stream may subscribe to.
pub const MAX_CHANNELS_PER_STREAM: usize = 32;
/// Event types starting with this are the server's own.
pub const RESERVED_EVENT_PREFIX: &str = "herald.";

/// A valid channel name: 1–128 characters from `A–Z a–z 0–9 _ - . : ~ @`.
///
/// Shared (`Arc<str>`) because the hub's map, every subscription and every
/// gap notice refer to it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

const CHANNEL_RULE: &str = "a channel name has 1 to 128 characters from A-Z a-z 0-9 _ - . : ~ @";

impl ChannelName {
    pub fn parse(name: &str) -> Result<ChannelName, InvalidInput> {
        check_token(name, MAX_CHANNEL_LEN, b"_-.:~@", CHANNEL_RULE)?;
        Ok(ChannelName(Arc::from(name)))
    }

    /// A channel named by a path segment (`/publish/{channel}`,
    /// `/events/{channel}`, ...): percent-decoded first, so `a%40b` is the
    /// channel `a@b` that a client's URL encoder may have written. A
    /// segment that decodes to something else than a valid name (`%2F`,
    /// bytes that are not UTF-8) is refused like any bad name, and so are
    /// `.` and `..`: dot segments, which browsers and URL libraries remove
    /// from a path, so no page could reach such a channel by its URL.
    pub fn from_path(segment: &str) -> Result<ChannelName, InvalidInput> {
        let decoded = percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| InvalidInput(CHANNEL_RULE))?;
        if decoded == "." || decoded == ".." {
            return Err(InvalidInput(
                "`.` and `..` cannot name a channel in a URL path (they are dot segments)",
            ));
        }
        ChannelName::parse(&decoded)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A valid publisher-chosen event type: 1–64 characters from
/// `A–Z a–z 0–9 _ - . :`, not starting with the reserved `herald.`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventType(Box<str>);

impl EventType {
    pub fn parse(name: &str) -> Result<EventType, InvalidInput> {
        check_token(
            name,
            MAX_EVENT_TYPE_LEN,
            b"_-.:",
            "an event type has 1 to 64 characters from A-Z a-z 0-9 _ - . :",
        )?;
        if name.starts_with(RESERVED_EVENT_PREFIX) {
            return Err(InvalidInput(
                "event types starting with `herald.` are reserved for the server",
            ));
        }
        Ok(EventType(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A server-assigned event id. Written as a plain decimal integer; compared
/// as a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(u64);

impl EventId {
    pub const fn new(id: u64) -> EventId {
        EventId(id)
    }

    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a new stream starts, from `Last-Event-ID` or `lastEventId`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// No id presented (or an empty one): live events only.
    Live,
    /// Events after this id.
    After(EventId),
    /// Something that is not an id this server could have issued (not a
    /// plain decimal, or past `u64`): the subscriber gets a `herald.gap`.
    Unknown,
}

impl Resume {
    /// Parses a presented id. Ids are plain decimals without sign or leading
    /// zeros; anything else cannot be proven to be a point in our sequence.
    pub fn parse(raw: &str) -> Resume {
        if raw.is_empty() {
            return Resume::Live;
        }
        let plain = raw.len() <= 20
            && raw.bytes().all(|b| b.is_ascii_digit())
            && (raw == "0" || !raw.starts_with('0'));
        match raw.parse::<u64>() {
            Ok(id) if plain => Resume::After(EventId(id)),
            _ => Resume::Unknown,
        }
    }
}

/// Checks that `name` has 1 to `max` characters, each an ASCII letter or
/// digit or one of `extra`; `rule` says so to the user otherwise.
fn check_token(
    name: &str,
    max: usize,
    extra: &[u8],
    rule: &'static str,
) -> Result<(), InvalidInput> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || extra.contains(&b);
    if name.is_empty() || name.len() > max || !name.bytes().all(allowed) {
        return Err(InvalidInput(rule));
    }
    Ok(())
}

/// Why an input was refused; the text is shown to the user as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub &'static str);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_accept_the_documented_alphabet() {
        for ok in ["a", "news", "user:42", "a.b-c_d~e@f", &"x".repeat(128)] {
            assert!(ChannelName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn a_path_segment_is_percent_decoded_before_it_is_checked() {
        assert_eq!(ChannelName::from_path("a%40b").unwrap().as_str(), "a@b");
        assert_eq!(ChannelName::from_path("%6Eews").unwrap().as_str(), "news");
        assert_eq!(
            ChannelName::from_path("user:42").unwrap().as_str(),
            "user:42"
        );
        assert_eq!(ChannelName::from_path("...").unwrap().as_str(), "...");
        for bad in [
            "a%2Fb", "a%20b", "%FF", "%", "a%2", "%25", ".", "..", "%2e%2E", "%2e",
        ] {
            assert!(ChannelName::from_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn channel_names_reject_everything_else() {
        for bad in [
            "",
            &"x".repeat(129),
            "a/b",
            "a%20b",
            "a b",
            "é",
            "a\nb",
            "a?b",
            "a#b",
        ] {
            assert!(ChannelName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn event_types_accept_the_documented_alphabet() {
        for ok in ["a", "price.update", "x:y-z_1", &"t".repeat(64), "heraldic"] {
            assert!(EventType::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn event_types_reject_bad_characters_length_and_reserved_prefix() {
        for bad in [
            "",
            &"t".repeat(65),
            "a b",
            "a\nb",
            "a~b",
            "herald.gap",
            "herald.x",
        ] {
            assert!(EventType::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resume_parses_plain_decimals_only() {
        assert_eq!(Resume::parse(""), Resume::Live);
        assert_eq!(Resume::parse("0"), Resume::After(EventId(0)));
        assert_eq!(Resume::parse("17"), Resume::After(EventId(17)));
        assert_eq!(
            Resume::parse("18446744073709551615"),
            Resume::After(EventId(u64::MAX))
        );
        for bad in [
            "017",
            "+1",
            "-1",
            " 1",
            "1 ",
            "abc",
            "1.5",
            "18446744073709551616",
            "123456789012345678901",
        ] {
            assert_eq!(Resume::parse(bad), Resume::Unknown, "{bad:?}");
        }
    }
}
