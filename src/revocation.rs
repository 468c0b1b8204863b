//! Disconnect and revoke (SPEC §11): the order `POST /disconnect` gives,
//! and the set of revocations every token is checked against.
//!
//! A [`Disconnect`] names whom (a `sub`, a `channel`, both, or one token's
//! `jti`) and, optionally, a [`Revoke`]: until when tokens of that `sub`
//! issued at or before the call's second, or the token with that `jti`, are
//! refused. It is a record of the log (memory, `--data-dir`, `--redis`), so
//! a revocation survives a restart and reaches every node; the log hands it
//! to the hub ([`crate::hub::Hub::disconnect`]), which adds it to
//! [`Revocations`] and ends the matching streams.
//!
//! [`Revocations`] is read by every request that carries a JWT
//! ([`crate::auth::Auth::access`]): an `RwLock` of two small maps, with an atomic
//! count so that a server with no revocation (the usual case) takes no lock
//! at all. Expired entries are dropped when one is added and when the
//! metrics are read; an expired entry that is still there is ignored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::domain::ChannelName;

/// Longest `jti` a disconnect may name, in characters.
pub const MAX_JTI_CHARS: usize = 256;

/// Whom `POST /disconnect` names, and whether to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// Streams (and, with `revoke`, tokens) of this user.
    pub sub: Option<Box<str>>,
    /// Streams that include this channel (with `sub`: that user's only).
    pub channel: Option<ChannelName>,
    /// The one token with this id (never with `sub` or `channel`).
    pub jti: Option<Box<str>>,
    pub revoke: Option<Revoke>,
}

/// A revocation's time span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoke {
    /// The call's second (Unix seconds): tokens of the `sub` with an `iat`
    /// at or before it (or none) are refused.
    pub at: u64,
    /// When the revocation ends (Unix milliseconds).
    pub until_ms: u64,
}

/// What ended a stream: the `reason` of `herald.disconnected`, and the label
/// of `herald_disconnects_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    /// Ended without revoking: the client may come back at once.
    Disconnected = 1,
    /// Its token is revoked: coming back with it gets 401.
    Revoked = 2,
}

impl Reason {
    pub const ALL: [Reason; 2] = [Reason::Disconnected, Reason::Revoked];

    pub fn label(self) -> &'static str {
        match self {
            Reason::Disconnected => "disconnected",
            Reason::Revoked => "revoked",
        }
    }

    pub fn from_u8(b: u8) -> Option<Reason> {
        match b {
            1 => Some(Reason::Disconnected),
            2 => Some(Reason::Revoked),
            _ => None,
        }
    }
}

/// Who holds a stream, as far as a disconnect can name it: read from the
/// stream's JWT (nothing for an anonymous or publish-token stream).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    pub sub: Option<Box<str>>,
    pub jti: Option<Box<str>>,
    pub iat: Option<u64>,
}

impl Disconnect {
    /// Whether a stream of `holder` on `channels` matches.
    pub fn matches(&self, holder: Option<&Holder>, channels: &[ChannelName]) -> bool {
        let field = |want: &Option<Box<str>>, have: Option<&Option<Box<str>>>| match want {
            None => true,
            Some(want) => have.and_then(Option::as_ref) == Some(want),
        };
        field(&self.sub, holder.map(|h| &h.sub))
            && field(&self.jti, holder.map(|h| &h.jti))
            && self.channel.as_ref().is_none_or(|c| channels.contains(c))
    }

    /// Whether this order revokes the token of `holder`: its `jti`, or its
    /// `sub` with an `iat` at or before the call's second (or none).
    pub fn revokes(&self, holder: Option<&Holder>) -> bool {
        let (Some(revoke), Some(holder)) = (self.revoke, holder) else {
            return false;
        };
        if let Some(jti) = &self.jti {
            return holder.jti.as_ref() == Some(jti);
        }
        self.sub.is_some()
            && holder.sub == self.sub
            && holder.iat.is_none_or(|iat| iat <= revoke.at)
    }

    /// Whether a stream of `holder` on `channels` ends, and why: every
    /// stream whose token this order revokes (whatever its channels: the
    /// token is refused from now on anyway), and every other stream it
    /// names.
    pub fn ends(&self, holder: Option<&Holder>, channels: &[ChannelName]) -> Option<Reason> {
        if self.revokes(holder) {
            Some(Reason::Revoked)
        } else if self.matches(holder, channels) {
            Some(Reason::Disconnected)
        } else {
            None
        }
    }
}

/// The revocations in force.
#[derive(Debug, Default)]
pub struct Revocations {
    inner: RwLock<Inner>,
    /// Entries in `inner`, expired or not: 0 means no lock to take.
    len: AtomicUsize,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per `sub`: (the call's second, until ms). Usually one; several only
    /// when a later revocation ends earlier than an older one.
    subs: HashMap<Box<str>, Vec<Revoke>>,
    /// Per `jti`: until ms.
    jtis: HashMap<Box<str>, u64>,
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Revocations {
    /// Adds the revocation of `order`, if it has one that has not expired.
    pub fn insert(&self, order: &Disconnect) {
        let Some(revoke) = order.revoke else {
            return;
        };
        let now = now_ms();
        if revoke.until_ms <= now {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.prune(now);
        if let Some(jti) = &order.jti {
            let until = inner.jtis.entry(jti.clone()).or_default();
            *until = (*until).max(revoke.until_ms);
        } else if let Some(sub) = &order.sub {
            let list = inner.subs.entry(sub.clone()).or_default();
            // Keep only what another entry does not cover: one that starts
            // no later and ends no sooner covers it.
            if !list
                .iter()
                .any(|r| r.at >= revoke.at && r.until_ms >= revoke.until_ms)
            {
                list.retain(|r| !(revoke.at >= r.at && revoke.until_ms >= r.until_ms));
                list.push(revoke);
            }
        }
        self.len.store(inner.len(), Ordering::Release);
    }

    /// Whether a token with these claims is revoked now.
    pub fn is_revoked(&self, sub: Option<&str>, jti: Option<&str>, iat: Option<u64>) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        let now = now_ms();
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let by_jti = jti
            .and_then(|j| inner.jtis.get(j))
            .is_some_and(|&until| until > now);
        by_jti
            || sub.and_then(|s| inner.subs.get(s)).is_some_and(|list| {
                list.iter()
                    .any(|r| r.until_ms > now && iat.is_none_or(|iat| iat <= r.at))
            })
    }

    /// Revocations in force (drops the expired ones).
    pub fn active(&self) -> usize {
        if self.len.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.prune(now_ms());
        let len = inner.len();
        self.len.store(len, Ordering::Release);
        len
    }

    /// Every revocation in force, as disconnect orders (for a snapshot of
    /// the log).
    pub fn orders(&self) -> Vec<Disconnect> {
        let now = now_ms();
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let jtis = inner
            .jtis
            .iter()
            .filter(|(_, &until)| until > now)
            .map(|(jti, &until_ms)| Disconnect {
                sub: None,
                channel: None,
                jti: Some(jti.clone()),
                revoke: Some(Revoke { at: 0, until_ms }),
            });
        let subs = inner.subs.iter().flat_map(|(sub, list)| {
            list.iter()
                .filter(|r| r.until_ms > now)
                .map(|r| Disconnect {
                    sub: Some(sub.clone()),
                    channel: None,
                    jti: None,
                    revoke: Some(*r),
                })
        });
        jtis.chain(subs).collect()
    }
}

impl Inner {
    fn prune(&mut self, now: u64) {
        self.jtis.retain(|_, until| *until > now);
        self.subs.retain(|_, list| {
            list.retain(|r| r.until_ms > now);
            !list.is_empty()
        });
    }

    fn len(&self) -> usize {
        self.jtis.len() + self.subs.values().map(Vec::len).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_sub(sub: &str, at: u64, for_ms: u64) -> Disconnect {
        Disconnect {
            sub: Some(sub.into()),
            channel: None,
            jti: None,
            revoke: Some(Revoke {
                at,
                until_ms: now_ms() + for_ms,
            }),
        }
    }

    #[test]
    fn a_sub_revocation_covers_tokens_issued_at_or_before_its_second() {
        let r = Revocations::default();
        assert!(!r.is_revoked(Some("42"), None, None));
        r.insert(&by_sub("42", 1000, 60_000));
        assert!(r.is_revoked(Some("42"), None, Some(1000)));
        assert!(r.is_revoked(Some("42"), None, Some(999)));
        assert!(r.is_revoked(Some("42"), None, None), "no iat at all");
        assert!(!r.is_revoked(Some("42"), None, Some(1001)), "minted after");
        assert!(!r.is_revoked(Some("7"), None, None));
        assert!(!r.is_revoked(None, Some("42"), None));
        assert_eq!(r.active(), 1);
    }

    #[test]
    fn a_jti_revocation_covers_that_token_only() {
        let r = Revocations::default();
        let order = Disconnect {
            sub: None,
            channel: None,
            jti: Some("t-1".into()),
            revoke: Some(Revoke {
                at: 0,
                until_ms: now_ms() + 60_000,
            }),
        };
        r.insert(&order);
        assert!(r.is_revoked(Some("42"), Some("t-1"), Some(u64::MAX)));
        assert!(!r.is_revoked(Some("42"), Some("t-2"), None));
        assert_eq!(r.orders(), vec![order]);
    }

    #[test]
    fn expired_revocations_are_ignored_and_dropped() {
        let r = Revocations::default();
        r.insert(&by_sub("42", 1000, 0));
        assert_eq!(r.active(), 0, "already over: never added");
        let mut soon = by_sub("42", 1000, 0);
        soon.revoke.as_mut().unwrap().until_ms = now_ms() + 1000;
        r.insert(&soon);
        assert!(r.is_revoked(Some("42"), None, None));
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(!r.is_revoked(Some("42"), None, None));
        assert_eq!(r.active(), 0);
    }

    #[test]
    fn overlapping_revocations_of_a_sub_each_keep_their_span() {
        let r = Revocations::default();
        r.insert(&by_sub("42", 100, 60_000));
        r.insert(&by_sub("42", 150, 1000));
        assert_eq!(r.active(), 2, "neither covers the other");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(r.is_revoked(Some("42"), None, Some(100)));
        assert!(
            !r.is_revoked(Some("42"), None, Some(120)),
            "the later, shorter one is over"
        );
        r.insert(&by_sub("42", 200, 120_000));
        assert_eq!(r.active(), 1, "covers the first");
    }

    #[test]
    fn matching_needs_every_field_given() {
        let ch = |n: &str| ChannelName::parse(n).unwrap();
        let holder = Holder {
            sub: Some("42".into()),
            jti: Some("t".into()),
            iat: Some(10),
        };
        let mut order = by_sub("42", 10, 1000);
        order.channel = Some(ch("news"));
        assert!(order.matches(Some(&holder), &[ch("a"), ch("news")]));
        assert!(!order.matches(Some(&holder), &[ch("a")]));
        assert!(!order.matches(None, &[ch("news")]));
        assert_eq!(
            order.ends(Some(&holder), &[ch("news")]),
            Some(Reason::Revoked)
        );
        assert_eq!(
            order.ends(Some(&holder), &[ch("other")]),
            Some(Reason::Revoked),
            "a revoked token's stream ends whatever its channels"
        );
        let later = Holder {
            iat: Some(11),
            ..holder.clone()
        };
        assert_eq!(
            order.ends(Some(&later), &[ch("news")]),
            Some(Reason::Disconnected)
        );
        assert_eq!(order.ends(Some(&later), &[ch("other")]), None);
        let channel_only = Disconnect {
            sub: None,
            channel: Some(ch("news")),
            jti: None,
            revoke: None,
        };
        assert!(channel_only.matches(None, &[ch("news")]));
        assert_eq!(
            channel_only.ends(Some(&holder), &[ch("news")]),
            Some(Reason::Disconnected)
        );
    }
}
