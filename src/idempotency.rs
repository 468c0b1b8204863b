//! Idempotency keys (SPEC §12): a publish that carries `Idempotency-Key`
//! is answered once; a retry with the same key and the same request gets
//! that answer again and publishes nothing.
//!
//! A key is a fact of the log, like an event: the memory log keeps it in
//! [`Keys`], the disk log writes it in the same group (same `write`, same
//! `fdatasync`) as the events it answers and restores it at startup, and
//! Redis records it in the very script that issues the ids. This module
//! owns the key's rules, the table every node keeps, and the bytes a key
//! takes on disk; the logs decide where it is kept.
//!
//! A key is scoped by who publishes (the JWT's `sub`, or the publish token):
//! one user cannot replay, block or probe another's keys. The table entry
//! of a key is `<key> <principal>` (a key has no space, so the split is
//! unambiguous).
//!
//! **Memory.** One kept key costs its scoped name (the key, a space and
//! the principal) plus about 200 bytes of table, queue and answer (16 bytes
//! per event of a batch): a 36-character UUID from the publish token takes
//! about 250 bytes (270 measured as resident memory, allocator slack
//! included), so 1,000 keyed publishes a second for the default 10 minute
//! window hold 600,000 keys, about 150 to 160 MB. `--idempotency-max-keys`
//! bounds it: past it a publish with a new key is refused (503) until keys
//! expire, rather than forgetting a key early and publishing a retry twice.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::domain::EventId;

/// The longest key (SPEC §12, as Stripe).
pub const MAX_KEY_LEN: usize = 255;

/// Why an `Idempotency-Key` (or a WebSocket `idempotency_key`) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadKey {
    #[error(
        "the Idempotency-Key is empty: send 1 to 255 visible ASCII characters, such as a UUID"
    )]
    Empty,
    #[error("the Idempotency-Key is {0} characters long: at most 255 visible ASCII characters, such as a UUID")]
    TooLong(usize),
    #[error("the Idempotency-Key has a character that is not visible ASCII at position {0} (spaces, control characters and non-ASCII are refused): send a UUID or similar")]
    NotVisible(usize),
}

/// A client's key, checked: 1 to 255 visible ASCII characters (`!` to
/// `~`). Taken literally: a quoted structured-field string (`"abc"`, as
/// the IETF draft writes it) is the key `"abc"`, quotes included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(Box<str>);

impl IdempotencyKey {
    pub fn parse(bytes: &[u8]) -> Result<IdempotencyKey, BadKey> {
        if bytes.is_empty() {
            return Err(BadKey::Empty);
        }
        if let Some(at) = bytes.iter().position(|b| !b.is_ascii_graphic()) {
            return Err(BadKey::NotVisible(at));
        }
        if bytes.len() > MAX_KEY_LEN {
            return Err(BadKey::TooLong(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).expect("visible ASCII is UTF-8");
        Ok(IdempotencyKey(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key in the space of the principal (who publishes) that the
    /// `principal` parts spell.
    pub fn scoped(&self, principal: &[&str]) -> Arc<str> {
        let len = principal.iter().map(|p| p.len()).sum::<usize>();
        let mut s = String::with_capacity(self.0.len() + 1 + len);
        s.push_str(&self.0);
        s.push(' ');
        principal.iter().for_each(|p| s.push_str(p));
        s.into()
    }
}

/// What identifies a request under its key: a hash of what the SPEC calls
/// the same request (for HTTP: path, query and body bytes). 128 bits of
/// SHA-256; a collision would need 2^64 requests under one key.
pub type Fingerprint = [u8; 16];

/// The fingerprint of a request made of `parts`, each length-prefixed so
/// that no two different lists hash alike.
pub fn fingerprint(parts: &[&[u8]]) -> Fingerprint {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut out = [0; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// The fingerprint as 32 lowercase hex digits (how Redis keeps it).
pub fn hex(fingerprint: &Fingerprint) -> String {
    use std::fmt::Write;
    fingerprint
        .iter()
        .fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// One event of a kept answer. The channel is not kept: the same request
/// names the same channels in the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub id: EventId,
    pub subscribers: u32,
}

/// A keyed publish as the log sees it: the scoped key and the request's
/// fingerprint.
#[derive(Debug, Clone)]
pub struct KeyedRequest {
    pub scope: Arc<str>,
    pub fingerprint: Fingerprint,
}

/// A kept key as it is written to disk (and read back at startup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub scope: Arc<str>,
    pub fingerprint: Fingerprint,
    pub rows: Vec<Row>,
    /// When it expires, in Unix milliseconds.
    pub expires_ms: u64,
}

impl KeyRecord {
    /// `scope_len u16 LE | scope | fingerprint (16) | expires_ms u64 LE |
    /// n u32 LE | n × (id u64 LE | subscribers u32 LE)`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&(self.scope.len() as u16).to_le_bytes());
        buf.extend_from_slice(self.scope.as_bytes());
        buf.extend_from_slice(&self.fingerprint);
        buf.extend_from_slice(&self.expires_ms.to_le_bytes());
        buf.extend_from_slice(&(self.rows.len() as u32).to_le_bytes());
        for row in &self.rows {
            buf.extend_from_slice(&row.id.get().to_le_bytes());
            buf.extend_from_slice(&row.subscribers.to_le_bytes());
        }
    }

    /// Reads what [`KeyRecord::encode`] wrote; `None` if it is not that.
    pub fn decode(mut bytes: &[u8]) -> Option<KeyRecord> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if bytes.len() < n {
                return None;
            }
            let (head, rest) = bytes.split_at(n);
            *bytes = rest;
            Some(head)
        }
        let len = u16::from_le_bytes(take(&mut bytes, 2)?.try_into().ok()?) as usize;
        let scope = std::str::from_utf8(take(&mut bytes, len)?).ok()?;
        let fingerprint: Fingerprint = take(&mut bytes, 16)?.try_into().ok()?;
        let expires_ms = u64::from_le_bytes(take(&mut bytes, 8)?.try_into().ok()?);
        let n = u32::from_le_bytes(take(&mut bytes, 4)?.try_into().ok()?) as usize;
        if bytes.len() != n * 12 {
            return None;
        }
        let rows = bytes
            .chunks_exact(12)
            .map(|row| Row {
                id: EventId::new(u64::from_le_bytes(row[..8].try_into().expect("8 bytes"))),
                subscribers: u32::from_le_bytes(row[8..].try_into().expect("4 bytes")),
            })
            .collect();
        Some(KeyRecord {
            scope: scope.into(),
            fingerprint,
            rows,
            expires_ms,
        })
    }
}

/// What a request with a key finds in the table.
#[derive(Debug)]
pub enum Begin {
    /// Nobody holds the key: it is this request's until the ticket drops.
    New(Ticket),
    /// Published earlier: the first answer, for the same request.
    Done {
        fingerprint: Fingerprint,
        rows: Vec<Row>,
    },
    /// An earlier request with this key is still being published.
    InProgress,
    /// The table holds `--idempotency-max-keys` keys.
    Full,
}

/// The keys this node keeps, and those in flight.
#[derive(Debug)]
pub struct Keys {
    window: Duration,
    max: usize,
    /// False with `--redis`: Redis keeps the answers; a node tracks only
    /// the keys it is publishing now.
    keep: bool,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Arc<str>, Entry>,
    /// Kept keys in the order they expire (the window is one duration, so
    /// the order they were kept in), for pruning.
    expiry: VecDeque<(Instant, Arc<str>)>,
}

#[derive(Debug)]
enum Entry {
    InFlight,
    Done {
        fingerprint: Fingerprint,
        rows: Box<[Row]>,
        expires: Instant,
    },
}

impl Keys {
    /// A table for `window` (zero: keys are off) holding at most `max`
    /// keys; `keep` false when another store (Redis) keeps the answers.
    pub fn new(window: Duration, max: usize, keep: bool) -> Arc<Keys> {
        Arc::new(Keys {
            window,
            max,
            keep,
            inner: Mutex::default(),
        })
    }

    /// Whether this table keeps answers (not with `--redis`).
    pub fn keeps(&self) -> bool {
        self.keep
    }

    /// Whether keys are on (`--idempotency-window` above zero).
    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// The Unix-millisecond expiry of a key kept now.
    pub fn expires_ms(&self) -> u64 {
        unix_ms().saturating_add(self.window.as_millis() as u64)
    }

    // A std Mutex: held for a map operation, never across an await.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Looks `scope` up for a request that is about to publish under it.
    pub fn begin(self: &Arc<Self>, scope: Arc<str>) -> Begin {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.prune(now);
        let full = inner.map.len() >= self.max;
        match inner.map.entry(scope) {
            MapEntry::Occupied(entry) => match entry.get() {
                Entry::InFlight => Begin::InProgress,
                Entry::Done {
                    fingerprint, rows, ..
                } => Begin::Done {
                    fingerprint: *fingerprint,
                    rows: rows.to_vec(),
                },
            },
            MapEntry::Vacant(_) if full => Begin::Full,
            MapEntry::Vacant(entry) => {
                let scope = entry.key().clone();
                entry.insert(Entry::InFlight);
                Begin::New(Ticket {
                    keys: self.clone(),
                    scope,
                    kept: false,
                })
            }
        }
    }

    /// The log published `request` and answered `rows`: keep the answer
    /// for the window (the memory and disk logs; with Redis, Redis keeps
    /// it).
    pub fn complete(&self, request: &KeyedRequest, rows: Vec<Row>) {
        self.insert(
            request.scope.clone(),
            request.fingerprint,
            rows,
            Instant::now() + self.window,
        );
    }

    /// Restores a key read from the data directory at startup, unless it
    /// has expired.
    pub fn restore(&self, record: KeyRecord) {
        let now_ms = unix_ms();
        if record.expires_ms <= now_ms {
            return;
        }
        let left = Duration::from_millis(record.expires_ms - now_ms);
        self.insert(
            record.scope,
            record.fingerprint,
            record.rows,
            Instant::now() + left,
        );
    }

    fn insert(&self, scope: Arc<str>, fingerprint: Fingerprint, rows: Vec<Row>, expires: Instant) {
        if !self.keep {
            return;
        }
        let done = Entry::Done {
            fingerprint,
            rows: rows.into_boxed_slice(),
            expires,
        };
        let mut inner = self.lock();
        inner.expiry.push_back((expires, scope.clone()));
        inner.map.insert(scope, done);
    }

    /// Every kept key that has not expired, for a snapshot of the disk log.
    pub fn export(&self) -> Vec<KeyRecord> {
        let now = Instant::now();
        let now_ms = unix_ms();
        let inner = self.lock();
        inner
            .map
            .iter()
            .filter_map(|(scope, entry)| match entry {
                Entry::Done {
                    fingerprint,
                    rows,
                    expires,
                } if *expires > now => Some(KeyRecord {
                    scope: scope.clone(),
                    fingerprint: *fingerprint,
                    rows: rows.to_vec(),
                    expires_ms: now_ms + (*expires - now).as_millis() as u64,
                }),
                _ => None,
            })
            .collect()
    }

    /// Keys held now (kept and in flight).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    /// Drops the kept keys whose window has passed.
    fn prune(&mut self, now: Instant) {
        while let Some((expires, _)) = self.expiry.front() {
            if *expires > now {
                break;
            }
            let (expires, scope) = self.expiry.pop_front().expect("a front entry");
            // The key may have been kept again since (its old entry in the
            // queue then names another expiry).
            if let Some(Entry::Done { expires: kept, .. }) = self.map.get(&scope) {
                if *kept == expires {
                    self.map.remove(&scope);
                }
            }
        }
    }
}

/// A key held in flight by one request; dropping it frees the key unless
/// the log has kept it (a request that published nothing keeps no key).
#[derive(Debug)]
pub struct Ticket {
    keys: Arc<Keys>,
    scope: Arc<str>,
    /// The log kept the key: nothing to free.
    kept: bool,
}

impl Ticket {
    /// The request the log records under this key.
    pub fn request(&self, fingerprint: Fingerprint) -> KeyedRequest {
        KeyedRequest {
            scope: self.scope.clone(),
            fingerprint,
        }
    }

    /// The log kept the key (it published): the table has it as done, so
    /// dropping the ticket has nothing to do.
    pub fn kept(mut self) {
        self.kept = self.keys.keep;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let mut inner = self.keys.lock();
        if let Some(Entry::InFlight) = inner.map.get(&self.scope) {
            inner.map.remove(&self.scope);
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        assert!(IdempotencyKey::parse(b"a").is_ok());
        assert!(IdempotencyKey::parse(&[b'k'; 255]).is_ok());
        assert_eq!(
            IdempotencyKey::parse(b"\"8e03978e\"").unwrap().as_str(),
            "\"8e03978e\"",
            "a quoted key is taken literally"
        );
        assert_eq!(IdempotencyKey::parse(b""), Err(BadKey::Empty));
        assert_eq!(
            IdempotencyKey::parse(&[b'k'; 256]),
            Err(BadKey::TooLong(256))
        );
        assert_eq!(IdempotencyKey::parse(b"a b"), Err(BadKey::NotVisible(1)));
        assert_eq!(IdempotencyKey::parse(b"ab\x01"), Err(BadKey::NotVisible(2)));
        assert_eq!(IdempotencyKey::parse(b"\x7f"), Err(BadKey::NotVisible(0)));
        assert_eq!(
            IdempotencyKey::parse("caf\u{e9}".as_bytes()),
            Err(BadKey::NotVisible(3))
        );
    }

    #[test]
    fn fingerprints_tell_apart_lists_that_concatenate_alike() {
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        assert_eq!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"ab", b"c"]));
        assert_eq!(hex(&fingerprint(&[b"x"])).len(), 32);
    }

    fn rows() -> Vec<Row> {
        vec![Row {
            id: EventId::new(7),
            subscribers: 2,
        }]
    }

    #[test]
    fn a_key_is_in_flight_then_done_or_free_again() {
        let keys = Keys::new(Duration::from_secs(60), 10, true);
        let scope = IdempotencyKey::parse(b"k").unwrap().scoped(&["*"]);
        let Begin::New(ticket) = keys.begin(scope.clone()) else {
            panic!("a new key");
        };
        assert!(matches!(keys.begin(scope.clone()), Begin::InProgress));
        drop(ticket);
        let Begin::New(ticket) = keys.begin(scope.clone()) else {
            panic!("a request that published nothing keeps no key");
        };
        keys.complete(&ticket.request([1; 16]), rows());
        drop(ticket);
        match keys.begin(scope) {
            Begin::Done { fingerprint, rows } => {
                assert_eq!(fingerprint, [1; 16]);
                assert_eq!(rows, self::rows());
            }
            other => panic!("kept, got {other:?}"),
        }
    }

    #[test]
    fn keys_expire_after_the_window_and_the_table_is_bounded() {
        let keys = Keys::new(Duration::from_millis(30), 2, true);
        for name in [&b"a"[..], b"b"] {
            let Begin::New(t) = keys.begin(IdempotencyKey::parse(name).unwrap().scoped(&["*"]))
            else {
                panic!("new");
            };
            keys.complete(&t.request([0; 16]), rows());
        }
        let c = IdempotencyKey::parse(b"c").unwrap().scoped(&["*"]);
        assert!(matches!(keys.begin(c.clone()), Begin::Full));
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(keys.begin(c), Begin::New(_)));
        assert_eq!(
            keys.len(),
            0,
            "the expired keys were dropped, c's ticket too"
        );
    }

    #[test]
    fn a_node_on_redis_keeps_only_keys_in_flight() {
        let keys = Keys::new(Duration::from_secs(60), 10, false);
        let scope = IdempotencyKey::parse(b"k").unwrap().scoped(&["*"]);
        let Begin::New(t) = keys.begin(scope.clone()) else {
            panic!("new");
        };
        keys.complete(&t.request([0; 16]), rows());
        drop(t);
        assert!(matches!(keys.begin(scope), Begin::New(_)));
    }

    #[test]
    fn records_read_back_as_written_and_expired_ones_are_not_restored() {
        let record = KeyRecord {
            scope: "k sub:42".into(),
            fingerprint: [9; 16],
            rows: vec![
                Row {
                    id: EventId::new(1),
                    subscribers: 0,
                },
                Row {
                    id: EventId::new(u64::MAX),
                    subscribers: u32::MAX,
                },
            ],
            expires_ms: unix_ms() + 60_000,
        };
        let mut buf = Vec::new();
        record.encode(&mut buf);
        assert_eq!(KeyRecord::decode(&buf), Some(record.clone()));
        assert_eq!(KeyRecord::decode(&buf[..buf.len() - 1]), None);
        let keys = Keys::new(Duration::from_secs(60), 10, true);
        keys.restore(KeyRecord {
            expires_ms: 1,
            ..record.clone()
        });
        assert!(keys.is_empty());
        keys.restore(record.clone());
        assert_eq!(
            keys.export(),
            vec![KeyRecord {
                expires_ms: keys.export()[0].expires_ms,
                ..record
            }]
        );
    }
}
