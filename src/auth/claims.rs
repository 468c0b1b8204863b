//! What a verified token says: the claims herald reads and the `herald`
//! permission claim with its grants.
//!
//! ```json
//! {"sub":"42","exp":1767225600,
//!  "herald":{"subscribe":["news","private-user-42*"],"publish":["chat-*"],"info":{"name":"Ada"}}}
//! ```
//!
//! A grant is an exact channel name or a prefix ending in `*` (`*` alone is
//! every channel). `*` cannot occur in a channel name, so a grant with a `*`
//! anywhere but at its end is malformed and the whole token is refused.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::domain::{ChannelName, MAX_CHANNEL_LEN};

/// Longest `sub`, in characters.
pub const MAX_SUB_CHARS: usize = 128;
/// Largest `info` value, as the JSON it was sent as.
pub const MAX_INFO_BYTES: usize = 1024;
/// Most grants in one list; a token is a header, not a database.
pub const MAX_GRANTS: usize = 256;

/// The claims of a token herald accepts. `exp`, `nbf`, `aud` and `iss` are
/// checked by the JWT library; these are the ones herald keeps.
#[derive(Debug, Deserialize)]
pub struct Claims {
    #[serde(deserialize_with = "numeric_date")]
    pub exp: u64,
    #[serde(default, deserialize_with = "sub")]
    pub sub: Option<String>,
    /// When the token was issued (Unix seconds, rounded down), for
    /// revocation by `sub` (SPEC §11). Not checked otherwise; a value that
    /// is not a date counts as no `iat` (such a token is revoked with its
    /// `sub`, the safe side).
    #[serde(default, deserialize_with = "lenient_date")]
    pub iat: Option<u64>,
    /// The token's own id, for revocation of this one token. Not checked
    /// otherwise; a value that is not a string is ignored.
    #[serde(default, deserialize_with = "lenient_string")]
    pub jti: Option<String>,
    #[serde(default)]
    pub herald: HeraldClaim,
}

/// The `herald` claim. Unknown fields are refused: a typo such as
/// `subscibe` would otherwise grant nothing without saying why.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeraldClaim {
    #[serde(default)]
    pub subscribe: Grants,
    #[serde(default)]
    pub publish: Grants,
    /// Any JSON value of at most [`MAX_INFO_BYTES`], shown to other members
    /// of a presence channel. Kept as sent, never re-encoded.
    #[serde(default, deserialize_with = "info")]
    pub info: Option<Box<RawValue>>,
}

/// A list of grants: the channels a token may subscribe or publish to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Grants(Vec<Grant>);

/// One grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Exactly this channel.
    Exact(Box<str>),
    /// Every channel starting with this (empty: every channel).
    Prefix(Box<str>),
}

impl Grant {
    /// Parses `news`, `chat-*` or `*`.
    pub fn parse(raw: &str) -> Result<Grant, String> {
        let (body, prefix) = match raw.strip_suffix('*') {
            Some(body) => (body, true),
            None => (raw, false),
        };
        if body.contains('*') {
            return Err(format!("grant `{raw}`: `*` may only end a grant"));
        }
        if prefix {
            let ok = body.len() < MAX_CHANNEL_LEN
                && (body.is_empty() || ChannelName::parse(body).is_ok());
            return match ok {
                true => Ok(Grant::Prefix(body.into())),
                false => Err(format!("grant `{raw}` is not a channel prefix")),
            };
        }
        match ChannelName::parse(body) {
            Ok(_) => Ok(Grant::Exact(body.into())),
            Err(_) => Err(format!("grant `{raw}` is not a channel name")),
        }
    }

    pub fn covers(&self, channel: &ChannelName) -> bool {
        match self {
            Grant::Exact(name) => **name == *channel.as_str(),
            Grant::Prefix(prefix) => channel.as_str().starts_with(&**prefix),
        }
    }
}

impl Grants {
    pub fn parse<'a>(raw: impl IntoIterator<Item = &'a str>) -> Result<Grants, String> {
        let grants = raw
            .into_iter()
            .map(Grant::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if grants.len() > MAX_GRANTS {
            return Err(format!("more than {MAX_GRANTS} grants"));
        }
        Ok(Grants(grants))
    }

    pub fn covers(&self, channel: &ChannelName) -> bool {
        self.0.iter().any(|g| g.covers(channel))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Grants {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Grants, D::Error> {
        let raw: Vec<&str> = Vec::deserialize(d)?;
        Grants::parse(raw).map_err(D::Error::custom)
    }
}

/// An RFC 7519 NumericDate: seconds since the epoch, which may have a
/// fraction (`Date.now() / 1000 + 600` in JavaScript). Rounded down, so a
/// stream never outlives its token.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Whole(u64),
        Fraction(f64),
    }
    match Number::deserialize(d)? {
        Number::Whole(secs) => Ok(secs),
        // `as` saturates: a date past u64::MAX seconds is u64::MAX.
        Number::Fraction(secs) if secs.is_finite() && secs >= 0.0 => Ok(secs.floor() as u64),
        Number::Fraction(_) => Err(D::Error::custom("`exp` is not a date")),
    }
}

/// An optional NumericDate that never refuses the token: anything but a
/// non-negative number is `None`.
fn lenient_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(match value {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f.floor() as u64)
        }),
        _ => None,
    })
}

/// An optional string claim that never refuses the token.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    })
}

fn sub<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let sub = String::deserialize(d)?;
    match sub.chars().count() {
        1..=MAX_SUB_CHARS => Ok(Some(sub)),
        _ => Err(D::Error::custom("`sub` has 1 to 128 characters")),
    }
}

fn info<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    let info = Box::<RawValue>::deserialize(d)?;
    match info.get().len() {
        0..=MAX_INFO_BYTES => Ok(Some(info)),
        _ => Err(D::Error::custom("`info` is larger than 1 KiB")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    #[test]
    fn exact_grants_cover_one_channel() {
        let g = Grant::parse("news").unwrap();
        assert!(g.covers(&ch("news")));
        assert!(!g.covers(&ch("news2")));
        assert!(!g.covers(&ch("new")));
    }

    #[test]
    fn prefix_grants_cover_every_channel_they_start() {
        let g = Grant::parse("private-user-42*").unwrap();
        assert!(g.covers(&ch("private-user-42")));
        assert!(g.covers(&ch("private-user-42-inbox")));
        assert!(!g.covers(&ch("private-user-4")));
        let all = Grant::parse("*").unwrap();
        assert!(all.covers(&ch("private-x")) && all.covers(&ch("a")));
    }

    #[test]
    fn a_star_anywhere_but_the_end_is_refused() {
        for bad in ["a*b", "**", "*a", "pri*vate-*", "", "a b", "a/b*"] {
            assert!(Grant::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn claims_parse_the_spec_example() {
        let json = r#"{"sub":"42","exp":1767225600,"herald":{"subscribe":["news","private-user-42*"],"publish":["chat-*"],"info":{"name":"Ada"}}}"#;
        let c: Claims = serde_json::from_str(json).unwrap();
        assert_eq!(c.sub.as_deref(), Some("42"));
        assert!(c.herald.subscribe.covers(&ch("private-user-42-x")));
        assert!(c.herald.publish.covers(&ch("chat-1")));
        assert!(!c.herald.publish.covers(&ch("news")));
        assert_eq!(c.herald.info.unwrap().get(), r#"{"name":"Ada"}"#);
    }

    #[test]
    fn claims_of_the_wrong_shape_are_refused() {
        for bad in [
            r#"{"exp":1,"herald":["news"]}"#,
            r#"{"exp":1,"herald":{"subscribe":"news"}}"#,
            r#"{"exp":1,"herald":{"subscibe":["news"]}}"#,
            r#"{"exp":1,"herald":{"subscribe":[1]}}"#,
            r#"{"exp":1,"herald":{"publish":["a*b"]}}"#,
            r#"{"exp":1,"sub":""}"#,
            r#"{"exp":1,"sub":7}"#,
            r#"{"sub":"x"}"#,
        ] {
            assert!(serde_json::from_str::<Claims>(bad).is_err(), "{bad}");
        }
        let long_sub = format!(r#"{{"exp":1,"sub":"{}"}}"#, "x".repeat(129));
        assert!(serde_json::from_str::<Claims>(&long_sub).is_err());
        let big_info = format!(r#"{{"exp":1,"herald":{{"info":"{}"}}}}"#, "x".repeat(1100));
        assert!(serde_json::from_str::<Claims>(&big_info).is_err());
    }

    #[test]
    fn exp_may_have_a_fraction_and_is_rounded_down() {
        let c: Claims = serde_json::from_str(r#"{"exp":1767225600.9}"#).unwrap();
        assert_eq!(c.exp, 1767225600);
        let c: Claims = serde_json::from_str(r#"{"exp":1.7672256e9}"#).unwrap();
        assert_eq!(c.exp, 1767225600);
        for bad in [
            r#"{"exp":-1}"#,
            r#"{"exp":-0.5}"#,
            r#"{"exp":"1767225600"}"#,
        ] {
            assert!(serde_json::from_str::<Claims>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn iat_and_jti_are_read_leniently() {
        let c: Claims = serde_json::from_str(r#"{"exp":1,"iat":5.7,"jti":"t-1"}"#).unwrap();
        assert_eq!((c.iat, c.jti.as_deref()), (Some(5), Some("t-1")));
        for odd in [
            r#"{"exp":1,"iat":"5","jti":7}"#,
            r#"{"exp":1,"iat":-3,"jti":""}"#,
            r#"{"exp":1,"iat":null,"jti":null}"#,
            r#"{"exp":1}"#,
        ] {
            let c: Claims = serde_json::from_str(odd).unwrap();
            assert_eq!((c.iat, c.jti), (None, None), "{odd}");
        }
    }

    #[test]
    fn a_token_without_a_herald_claim_grants_nothing() {
        let c: Claims = serde_json::from_str(r#"{"exp":1}"#).unwrap();
        assert!(c.herald.subscribe.is_empty() && c.herald.publish.is_empty());
    }
}
