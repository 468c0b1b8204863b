//! [`Access`]: what one request may do, decided once at the edge.
//!
//! A route turns the request into an `Access` ([`super::Auth::access`])
//! before it touches the hub, then asks it about the channels it is about
//! to use. Every transport does the same: the SSE route today, the
//! WebSocket upgrade and the publishes sent over a socket later. Presence
//! reads [`Access::sub`] and [`Access::info`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;

use super::claims::{Claims, Grants};
use crate::domain::ChannelName;
use crate::revocation::Holder;

/// Channel names that promise privacy: they always need a grant, and are
/// refused outright when no key is configured.
pub const PROTECTED_PREFIXES: [&str; 2] = ["private-", "presence-"];

pub fn is_protected(channel: &ChannelName) -> bool {
    PROTECTED_PREFIXES
        .iter()
        .any(|p| channel.as_str().starts_with(p))
}

/// Who made a request and what it may do.
#[derive(Debug)]
pub struct Access {
    who: Who,
    policy: Policy,
}

/// The server-wide rules an `Access` is judged by.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Some key (publish token, secret, public key, JWKS) is configured.
    pub enabled: bool,
    /// Unprefixed channels are open to anyone (`--anonymous`, default true).
    pub anonymous: bool,
}

#[derive(Debug)]
enum Who {
    /// No token (or auth is off and tokens are not read).
    Anonymous,
    /// The `--publish-token`: may do everything.
    PublishToken,
    /// A verified JWT.
    Jwt(Box<Identity>),
}

/// What a verified JWT says.
#[derive(Debug)]
struct Identity {
    sub: Option<String>,
    exp: u64,
    /// `iat` and `jti`, for revocation (SPEC §11).
    iat: Option<u64>,
    jti: Option<String>,
    subscribe: Grants,
    publish: Grants,
    info: Option<Box<RawValue>>,
}

/// Why a request is refused. Converts into the HTTP error
/// ([`crate::error::ApiError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// 401: a token is needed and none was given (`invalid: false`), or the
    /// one given was refused (`invalid: true`).
    Unauthorized { invalid: bool },
    /// 403: a valid token that does not cover these channels (empty for an
    /// endpoint that needs the publish token).
    Forbidden(Vec<ChannelName>),
    /// 403 `auth_not_configured`: `private-*`/`presence-*` channels while no
    /// key is configured.
    NotConfigured(Vec<ChannelName>),
}

impl Access {
    pub(super) fn anonymous(policy: Policy) -> Access {
        Access {
            who: Who::Anonymous,
            policy,
        }
    }

    pub(super) fn publish_token(policy: Policy) -> Access {
        Access {
            who: Who::PublishToken,
            policy,
        }
    }

    pub(super) fn jwt(claims: Claims, policy: Policy) -> Access {
        Access {
            who: Who::Jwt(Box::new(Identity {
                sub: claims.sub,
                exp: claims.exp,
                iat: claims.iat,
                jti: claims.jti,
                subscribe: claims.herald.subscribe,
                publish: claims.herald.publish,
                info: claims.herald.info,
            })),
            policy,
        }
    }

    /// May this request read all of `channels`? All or nothing: the
    /// refusal lists every channel not covered.
    pub fn check_subscribe(&self, channels: &[ChannelName]) -> Result<(), Denied> {
        let open = self.policy.anonymous;
        self.check(channels, |c| !open || is_protected(c), |id| &id.subscribe)
    }

    /// May this request publish to all of `channels`? All or nothing, as a
    /// batch is.
    pub fn check_publish(&self, channels: &[ChannelName]) -> Result<(), Denied> {
        if self.policy.enabled && matches!(self.who, Who::Anonymous) {
            return Err(Denied::Unauthorized { invalid: false });
        }
        self.check(channels, |_| true, |id| &id.publish)
    }

    /// Endpoints that reveal every channel (`GET /channels`) need the
    /// publish token once any key is configured.
    pub fn check_admin(&self) -> Result<(), Denied> {
        match (&self.who, self.policy.enabled) {
            (_, false) | (Who::PublishToken, _) => Ok(()),
            (Who::Anonymous, true) => Err(Denied::Unauthorized { invalid: false }),
            (Who::Jwt(_), true) => Err(Denied::Forbidden(Vec::new())),
        }
    }

    fn check(
        &self,
        channels: &[ChannelName],
        needs_grant: impl Fn(&ChannelName) -> bool,
        grants: impl Fn(&Identity) -> &Grants,
    ) -> Result<(), Denied> {
        if !self.policy.enabled {
            let refused: Vec<ChannelName> = channels
                .iter()
                .filter(|c| is_protected(c))
                .cloned()
                .collect();
            return match refused.is_empty() {
                true => Ok(()),
                false => Err(Denied::NotConfigured(refused)),
            };
        }
        let refused: Vec<ChannelName> = match &self.who {
            Who::PublishToken => return Ok(()),
            Who::Anonymous => channels
                .iter()
                .filter(|c| needs_grant(c))
                .cloned()
                .collect(),
            Who::Jwt(id) => channels
                .iter()
                .filter(|c| needs_grant(c) && !grants(id).covers(c))
                .cloned()
                .collect(),
        };
        match (refused.is_empty(), &self.who) {
            (true, _) => Ok(()),
            (false, Who::Anonymous) => Err(Denied::Unauthorized { invalid: false }),
            (false, _) => Err(Denied::Forbidden(refused)),
        }
    }

    /// The token's `exp` (Unix seconds), for a JWT.
    pub fn expires_at(&self) -> Option<u64> {
        match &self.who {
            Who::Jwt(id) => Some(id.exp),
            _ => None,
        }
    }

    /// When a stream opened with this access must end: a millisecond
    /// before `exp`, so the timer (which fires at or after its deadline, at
    /// millisecond granularity) never fires later than `exp`. None also for
    /// an `exp` too far ahead for the clock to hold (past the year
    /// 292 billion): such a stream never ends for its token.
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        let exp = UNIX_EPOCH.checked_add(Duration::from_secs(self.expires_at()?))?;
        let left = exp
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(Duration::from_millis(1));
        tokio::time::Instant::now().checked_add(left)
    }

    /// The JWT's `sub`, the user.
    pub fn sub(&self) -> Option<&str> {
        match &self.who {
            Who::Jwt(id) => id.sub.as_deref(),
            _ => None,
        }
    }

    /// Who a disconnect may name this stream by: the JWT's `sub`, `jti`
    /// and `iat` (None without a JWT).
    pub fn holder(&self) -> Option<Holder> {
        match &self.who {
            Who::Jwt(id) => Some(Holder {
                sub: id.sub.as_deref().map(Into::into),
                jti: id.jti.as_deref().map(Into::into),
                iat: id.iat,
            }),
            _ => None,
        }
    }

    /// The JWT's `herald.info`, as the JSON it was sent as.
    pub fn info(&self) -> Option<&RawValue> {
        match &self.who {
            Who::Jwt(id) => id.info.as_deref(),
            _ => None,
        }
    }

    pub fn is_publish_token(&self) -> bool {
        matches!(self.who, Who::PublishToken)
    }

    /// A token was presented and accepted: streams answer
    /// `Cache-Control: private`.
    pub fn is_authenticated(&self) -> bool {
        !matches!(self.who, Who::Anonymous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: Policy = Policy {
        enabled: true,
        anonymous: true,
    };
    const OFF: Policy = Policy {
        enabled: false,
        anonymous: true,
    };

    fn chs(names: &[&str]) -> Vec<ChannelName> {
        names
            .iter()
            .map(|n| ChannelName::parse(n).unwrap())
            .collect()
    }

    fn jwt(json: &str, policy: Policy) -> Access {
        Access::jwt(serde_json::from_str(json).unwrap(), policy)
    }

    #[test]
    fn without_keys_protected_names_fail_closed_and_the_rest_is_open() {
        let a = Access::anonymous(OFF);
        assert_eq!(a.check_subscribe(&chs(&["news"])), Ok(()));
        assert_eq!(a.check_publish(&chs(&["news"])), Ok(()));
        assert_eq!(
            a.check_subscribe(&chs(&["news", "private-a", "presence-b"])),
            Err(Denied::NotConfigured(chs(&["private-a", "presence-b"])))
        );
        assert!(a.check_publish(&chs(&["private-a"])).is_err());
        assert_eq!(a.check_admin(), Ok(()));
    }

    #[test]
    fn with_keys_anonymous_reads_open_channels_only() {
        let a = Access::anonymous(ON);
        assert_eq!(a.check_subscribe(&chs(&["news"])), Ok(()));
        let missing = Err(Denied::Unauthorized { invalid: false });
        assert_eq!(a.check_subscribe(&chs(&["news", "private-a"])), missing);
        assert_eq!(a.check_publish(&chs(&["news"])), missing);
        assert_eq!(a.check_admin(), missing);
        let closed = Access::anonymous(Policy {
            anonymous: false,
            ..ON
        });
        assert_eq!(closed.check_subscribe(&chs(&["news"])), missing);
    }

    #[test]
    fn a_jwt_is_judged_by_its_grants_all_or_nothing() {
        let a = jwt(
            r#"{"exp":9,"sub":"42","herald":{"subscribe":["private-u-42*"],"publish":["chat"]}}"#,
            ON,
        );
        assert_eq!(a.check_subscribe(&chs(&["news", "private-u-42-x"])), Ok(()));
        assert_eq!(
            a.check_subscribe(&chs(&["private-u-42", "private-u-7", "presence-r"])),
            Err(Denied::Forbidden(chs(&["private-u-7", "presence-r"])))
        );
        assert_eq!(a.check_publish(&chs(&["chat"])), Ok(()));
        assert_eq!(
            a.check_publish(&chs(&["chat", "news"])),
            Err(Denied::Forbidden(chs(&["news"])))
        );
        assert_eq!(a.check_admin(), Err(Denied::Forbidden(vec![])));
        assert_eq!((a.sub(), a.expires_at()), (Some("42"), Some(9)));
    }

    #[test]
    fn anonymous_false_makes_every_channel_need_a_grant() {
        let policy = Policy {
            anonymous: false,
            ..ON
        };
        let a = jwt(r#"{"exp":9,"herald":{"subscribe":["news"]}}"#, policy);
        assert_eq!(a.check_subscribe(&chs(&["news"])), Ok(()));
        assert_eq!(
            a.check_subscribe(&chs(&["sport"])),
            Err(Denied::Forbidden(chs(&["sport"])))
        );
    }

    #[test]
    fn the_publish_token_may_do_everything() {
        let a = Access::publish_token(ON);
        assert_eq!(
            a.check_subscribe(&chs(&["private-a", "presence-b"])),
            Ok(())
        );
        assert_eq!(a.check_publish(&chs(&["private-a"])), Ok(()));
        assert_eq!(a.check_admin(), Ok(()));
        assert!(a.is_publish_token() && a.expires_at().is_none());
    }

    #[test]
    fn an_exp_past_what_the_clock_holds_has_no_deadline() {
        for exp in [1u64 << 63, u64::MAX] {
            let a = jwt(&format!(r#"{{"exp":{exp}}}"#), ON);
            assert_eq!(a.deadline(), None, "{exp}");
        }
        let a = jwt(r#"{"exp":9007199254740991}"#, ON);
        assert!(a.deadline().is_some());
    }
}
