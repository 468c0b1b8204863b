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
//! one user cannot replay, block or probe another's keys. The scoped name
//! of a key is `<key> <principal>` (a key has no space, so the split is
//! unambiguous). The table does not keep that name: it keeps its 128-bit
//! SipHash-1-3 under a secret drawn from the operating system's random
//! source when the process starts (a [`Slot`]), so a lookup hashes the
//! key once and compares 16 bytes, and no client can aim a key at another
//! one's slot without the secret. The disk log, which writes its snapshot
//! from the table, has the table keep the name as well; Redis keeps its
//! answers under the name itself, so the name is built only there and for
//! the disk log.
//!
//! **Memory.** A kept key costs about 130 to 190 bytes on the in-memory
//! log: an entry of 72 bytes (slot, fingerprint, expiry and a one-event
//! answer inline; a batch adds 16 bytes per event) in a hash table kept
//! between 44 and 88 % full, and 24 bytes in the expiry queue. The disk
//! log keeps the scoped name too (about 45 bytes more for a UUID key from
//! the publish token). Measured as resident memory (allocator slack
//! included): 130 to 165 bytes per key in `scripts/bench.sh --idempotency`
//! (about 150,000 keys), 173 bytes at 600,000 keys and 190 at 1,000,000
//! (215 to 232 with the names of the disk log); see docs/idempotency.md.
//! So 1,000 keyed publishes a second for the default 10 minute window hold
//! 600,000 keys, about 105 MB. `--idempotency-max-keys` bounds it: past it
//! a publish with a new key is refused (503) until keys expire, rather than
//! forgetting a key early and publishing a retry twice.

use std::borrow::Cow;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use siphasher::sip128::{Hasher128, SipHasher13};

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
/// the IETF draft writes it) is the key `"abc"`, quotes included. Borrows
/// the bytes it was parsed from (a header's); [`IdempotencyKey::into_owned`]
/// keeps it beyond them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey<'a>(Cow<'a, str>);

impl<'a> IdempotencyKey<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<IdempotencyKey<'a>, BadKey> {
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
        Ok(IdempotencyKey(Cow::Borrowed(text)))
    }

    pub fn into_owned(self) -> IdempotencyKey<'static> {
        IdempotencyKey(Cow::Owned(self.0.into_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key in the space of the principal (who publishes) that the
    /// `principal` parts spell: `<key> <principal>`.
    pub fn scoped(&self, principal: &[&str]) -> Box<str> {
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
/// SHA-256; a collision would need 2^64 requests under one key. Stable
/// across processes: Redis and the data directory keep it.
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
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for b in fingerprint {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// One event of a kept answer. The channel is not kept: the same request
/// names the same channels in the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub id: EventId,
    pub subscribers: u32,
}

/// Where a scoped key lives in a node's table: 128 bits of keyed SipHash
/// of its scoped name (see the module's docs). Meaningful only within the
/// table that computed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot([u64; 2]);

impl Hash for Slot {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already uniformly random: the table's hasher passes it through.
        state.write_u64(self.0[0]);
    }
}

/// The table's hasher: a [`Slot`]'s first half is its hash.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is called (by `Slot`); anything else would
        // still hash, if poorly.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A keyed publish as the log sees it: where its key lives in this node's
/// table, its scoped name where the log needs it (the disk log writes it,
/// Redis names its key with it; the memory log has none), and the
/// request's fingerprint.
#[derive(Debug, Clone)]
pub struct KeyedRequest {
    pub slot: Slot,
    pub scope: Option<Box<str>>,
    pub fingerprint: Fingerprint,
}

/// A kept key as it is written to disk (and read back at startup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub scope: Box<str>,
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
pub enum Begin<'k> {
    /// Nobody holds the key: it is this request's until the ticket drops.
    New(Ticket<'k>),
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

/// What a node's table keeps, by log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The in-memory log: the answers, no names.
    Memory,
    /// The disk log: the answers and the scoped names (a snapshot writes
    /// them, [`Keys::export`]).
    Disk,
    /// `--redis`: Redis keeps the answers; the table holds only the keys
    /// this node is publishing now, and hands out their names (Redis
    /// names its key with them).
    Redis,
}

/// The keys this node keeps, and those in flight.
#[derive(Debug)]
pub struct Keys {
    window: Duration,
    max: usize,
    mode: Mode,
    /// The [`Slot`] hash's secret, this table's own.
    secret: [u8; 16],
    /// Expiries are kept as milliseconds since this instant.
    epoch: Instant,
    inner: Mutex<Inner>,
}

type Table = HashMap<Slot, Entry, BuildHasherDefault<PassThrough>>;

#[derive(Debug, Default)]
struct Inner {
    map: Table,
    /// Kept keys in the order they expire (the window is one duration, so
    /// the order they were kept in), for pruning: (expiry, slot).
    expiry: VecDeque<(u64, Slot)>,
}

#[derive(Debug)]
enum Entry {
    InFlight,
    Done {
        fingerprint: Fingerprint,
        rows: Rows,
        /// Milliseconds since the table's epoch.
        expires: u64,
        /// The scoped name, kept for the disk log's snapshot only.
        scope: Option<Box<str>>,
    },
}

/// A kept answer: most publishes answer one event, kept inline (its
/// fields, so that the variant's tag fits beside them: 16 bytes).
#[derive(Debug, Clone)]
enum Rows {
    One { id: EventId, subscribers: u32 },
    Many(Box<Box<[Row]>>),
}

impl Rows {
    fn new(rows: impl IntoIterator<Item = Row>) -> Rows {
        let mut rows = rows.into_iter();
        match (rows.next(), rows.next()) {
            (Some(Row { id, subscribers }), None) => Rows::One { id, subscribers },
            (first, second) => Rows::Many(Box::new(
                first.into_iter().chain(second).chain(rows).collect(),
            )),
        }
    }

    fn to_vec(&self) -> Vec<Row> {
        match self {
            Rows::One { id, subscribers } => vec![Row {
                id: *id,
                subscribers: *subscribers,
            }],
            Rows::Many(rows) => rows.to_vec(),
        }
    }
}

impl Keys {
    /// A table for `window` (zero: keys are off) holding at most `max`
    /// keys, keeping what `mode` says.
    pub fn new(window: Duration, max: usize, mode: Mode) -> Arc<Keys> {
        let mut secret = [0; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .expect("the operating system's random source answers");
        Arc::new(Keys {
            window,
            max,
            mode,
            secret,
            epoch: Instant::now(),
            inner: Mutex::default(),
        })
    }

    /// Whether this table keeps answers (not with `--redis`).
    pub fn keeps(&self) -> bool {
        self.mode != Mode::Redis
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

    /// The slot of `key` in the space of the principal that `principal`
    /// spells: the hash of the scoped name `<key> <principal>`, without
    /// building it.
    fn slot(&self, key: &str, principal: &[&str]) -> Slot {
        let mut hash = SipHasher13::new_with_key(&self.secret);
        hash.write(key.as_bytes());
        hash.write(b" ");
        principal.iter().for_each(|p| hash.write(p.as_bytes()));
        let h = hash.finish128();
        Slot([h.h1, h.h2])
    }

    /// The slot of a scoped name (read back from the data directory).
    fn slot_of_name(&self, scope: &str) -> Slot {
        let mut hash = SipHasher13::new_with_key(&self.secret);
        hash.write(scope.as_bytes());
        let h = hash.finish128();
        Slot([h.h1, h.h2])
    }

    /// Milliseconds since the table's epoch, now.
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    // A std Mutex: held for a map operation, never across an await.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Looks `key` of the principal that the `principal` parts spell up,
    /// for a request that is about to publish under it.
    pub fn begin(&self, key: &IdempotencyKey<'_>, principal: &[&str]) -> Begin<'_> {
        let slot = self.slot(key.as_str(), principal);
        let now = self.now();
        let mut inner = self.lock();
        inner.prune(now);
        let full = inner.map.len() >= self.max;
        match inner.map.entry(slot) {
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
                entry.insert(Entry::InFlight);
                drop(inner);
                let scope = match self.mode {
                    Mode::Memory => None,
                    Mode::Disk | Mode::Redis => Some(key.scoped(principal)),
                };
                Begin::New(Ticket {
                    keys: self,
                    slot,
                    scope,
                    kept: false,
                })
            }
        }
    }

    /// The log published `request` and answered `rows`: keep the answer
    /// for the window (the memory and disk logs; with Redis, Redis keeps
    /// it).
    pub fn complete(&self, request: KeyedRequest, rows: impl IntoIterator<Item = Row>) {
        if !self.keeps() {
            return;
        }
        let expires = self.now().saturating_add(self.window.as_millis() as u64);
        self.insert(
            request.slot,
            request.fingerprint,
            Rows::new(rows),
            expires,
            request.scope,
        );
    }

    /// Restores a key read from the data directory at startup, unless it
    /// has expired.
    pub fn restore(&self, record: KeyRecord) {
        let now_ms = unix_ms();
        if record.expires_ms <= now_ms || !self.keeps() {
            return;
        }
        let expires = self.now().saturating_add(record.expires_ms - now_ms);
        let slot = self.slot_of_name(&record.scope);
        self.insert(
            slot,
            record.fingerprint,
            Rows::new(record.rows),
            expires,
            Some(record.scope),
        );
    }

    fn insert(
        &self,
        slot: Slot,
        fingerprint: Fingerprint,
        rows: Rows,
        expires: u64,
        scope: Option<Box<str>>,
    ) {
        let done = Entry::Done {
            fingerprint,
            rows,
            expires,
            scope: scope.filter(|_| self.mode == Mode::Disk),
        };
        let mut inner = self.lock();
        inner.expiry.push_back((expires, slot));
        inner.map.insert(slot, done);
    }

    /// Every kept key that has not expired, for a snapshot of the disk log
    /// (the only table that keeps the names).
    pub fn export(&self) -> Vec<KeyRecord> {
        let now = self.now();
        let now_ms = unix_ms();
        let inner = self.lock();
        inner
            .map
            .values()
            .filter_map(|entry| match entry {
                Entry::Done {
                    fingerprint,
                    rows,
                    expires,
                    scope: Some(scope),
                } if *expires > now => Some(KeyRecord {
                    scope: scope.clone(),
                    fingerprint: *fingerprint,
                    rows: rows.to_vec(),
                    expires_ms: now_ms + (*expires - now),
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
    fn prune(&mut self, now: u64) {
        while let Some(&(expires, slot)) = self.expiry.front() {
            if expires > now {
                break;
            }
            self.expiry.pop_front();
            // The key may have been kept again since (its old entry in the
            // queue then names another expiry).
            if let MapEntry::Occupied(entry) = self.map.entry(slot) {
                if matches!(entry.get(), Entry::Done { expires: kept, .. } if *kept == expires) {
                    entry.remove();
                }
            }
        }
    }
}

/// A key held in flight by one request; dropping it frees the key unless
/// the log has kept it (a request that published nothing keeps no key).
#[derive(Debug)]
pub struct Ticket<'k> {
    /// Borrowed, not an `Arc`: a count taken and dropped on every keyed
    /// publish is a cache line that two cores pass back and forth.
    keys: &'k Keys,
    slot: Slot,
    /// The scoped name, for the logs that need it; moves into the request.
    scope: Option<Box<str>>,
    /// The log kept the key: nothing to free.
    kept: bool,
}

impl Ticket<'_> {
    /// The request the log records under this key (asked once: the
    /// scoped name moves into it).
    pub fn request(&mut self, fingerprint: Fingerprint) -> KeyedRequest {
        KeyedRequest {
            slot: self.slot,
            scope: self.scope.take(),
            fingerprint,
        }
    }

    /// The log kept the key (it published): the table has it as done, so
    /// dropping the ticket has nothing to do.
    pub fn kept(mut self) {
        self.kept = self.keys.keeps();
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let mut inner = self.keys.lock();
        if let MapEntry::Occupied(entry) = inner.map.entry(self.slot) {
            if matches!(entry.get(), Entry::InFlight) {
                entry.remove();
            }
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
        assert_eq!(
            hex(&[0x00, 0x01, 0x7f, 0x80, 0xab, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]),
            "00017f80abff00000000000000000010"
        );
    }

    fn key(name: &str) -> IdempotencyKey<'_> {
        IdempotencyKey::parse(name.as_bytes()).unwrap()
    }

    fn rows() -> Vec<Row> {
        vec![Row {
            id: EventId::new(7),
            subscribers: 2,
        }]
    }

    /// Takes `name` for `principal` and keeps `fingerprint` with `rows`.
    fn keep(keys: &Arc<Keys>, name: &str, principal: &[&str], fingerprint: Fingerprint) {
        let Begin::New(mut ticket) = keys.begin(&key(name), principal) else {
            panic!("{name} is new");
        };
        keys.complete(ticket.request(fingerprint), rows());
        ticket.kept();
    }

    #[test]
    fn a_key_is_in_flight_then_done_or_free_again() {
        let keys = Keys::new(Duration::from_secs(60), 10, Mode::Memory);
        let Begin::New(ticket) = keys.begin(&key("k"), &["*"]) else {
            panic!("a new key");
        };
        assert!(
            matches!(keys.begin(&key("k"), &["*"]), Begin::InProgress),
            "a key in flight answers 409"
        );
        drop(ticket);
        let Begin::New(mut ticket) = keys.begin(&key("k"), &["*"]) else {
            panic!("a request that published nothing keeps no key");
        };
        let request = ticket.request([1; 16]);
        assert_eq!(request.scope, None, "the memory log keeps no names");
        keys.complete(request, rows());
        ticket.kept();
        match keys.begin(&key("k"), &["*"]) {
            Begin::Done { fingerprint, rows } => {
                assert_eq!(fingerprint, [1; 16]);
                assert_eq!(rows, self::rows());
            }
            other => panic!("kept, got {other:?}"),
        }
        assert_eq!(keys.len(), 1);
    }

    #[test]
    fn the_same_key_of_two_principals_is_two_keys() {
        let keys = Keys::new(Duration::from_secs(60), 10, Mode::Memory);
        keep(&keys, "k", &["sub:", "alice"], [1; 16]);
        assert!(
            matches!(keys.begin(&key("k"), &["sub:", "bob"]), Begin::New(_)),
            "bob's k is not alice's"
        );
        // The parts are concatenated: the same principal however split.
        assert!(matches!(
            keys.begin(&key("k"), &["sub:alice", ""]),
            Begin::Done { .. }
        ));
        assert!(matches!(keys.begin(&key("k"), &["*"]), Begin::New(_)));
        // Two tables (two processes) draw different secrets.
        let other = Keys::new(Duration::from_secs(60), 10, Mode::Memory);
        assert_ne!(keys.slot("k", &["*"]), other.slot("k", &["*"]));
        assert_eq!(keys.slot("k", &["*"]), keys.slot_of_name("k *"));
    }

    #[test]
    fn keys_expire_after_the_window_and_the_table_is_bounded() {
        let keys = Keys::new(Duration::from_millis(30), 2, Mode::Memory);
        keep(&keys, "a", &["*"], [0; 16]);
        keep(&keys, "b", &["*"], [0; 16]);
        assert!(
            matches!(keys.begin(&key("c"), &["*"]), Begin::Full),
            "a full table answers 503 for a new key"
        );
        assert!(
            matches!(keys.begin(&key("a"), &["*"]), Begin::Done { .. }),
            "and still replays the keys it holds"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(keys.begin(&key("c"), &["*"]), Begin::New(_)));
        assert_eq!(
            keys.len(),
            0,
            "the expired keys were dropped, c's ticket too"
        );
        assert!(keys.inner.lock().unwrap().expiry.is_empty());
    }

    #[test]
    fn a_key_kept_again_expires_with_its_new_window() {
        let keys = Keys::new(Duration::from_millis(40), 10, Mode::Memory);
        keep(&keys, "a", &["*"], [1; 16]);
        // Restored again (as a restart replaying its log would) later.
        std::thread::sleep(Duration::from_millis(25));
        let Begin::Done { .. } = keys.begin(&key("a"), &["*"]) else {
            panic!("kept");
        };
        keys.insert(
            keys.slot("a", &["*"]),
            [2; 16],
            Rows::new(rows()),
            keys.now() + 40,
            None,
        );
        std::thread::sleep(Duration::from_millis(25));
        match keys.begin(&key("a"), &["*"]) {
            Begin::Done { fingerprint, .. } => assert_eq!(
                fingerprint, [2; 16],
                "the first expiry in the queue does not drop the renewed key"
            ),
            other => panic!("kept, got {other:?}"),
        };
    }

    #[test]
    fn a_node_on_redis_keeps_only_keys_in_flight_and_hands_out_names() {
        let keys = Keys::new(Duration::from_secs(60), 10, Mode::Redis);
        let Begin::New(mut t) = keys.begin(&key("k"), &["sub:", "42"]) else {
            panic!("new");
        };
        let request = t.request([0; 16]);
        assert_eq!(request.scope.as_deref(), Some("k sub:42"));
        keys.complete(request, rows());
        t.kept();
        assert!(matches!(
            keys.begin(&key("k"), &["sub:", "42"]),
            Begin::New(_)
        ));
        assert!(keys.is_empty());
    }

    #[test]
    fn answers_of_one_event_are_inline_and_batches_keep_every_row() {
        assert!(matches!(Rows::new(rows()), Rows::One { .. }));
        let three: Vec<Row> = (1..=3)
            .map(|i| Row {
                id: EventId::new(i),
                subscribers: i as u32,
            })
            .collect();
        assert_eq!(Rows::new(three.clone()).to_vec(), three);
        assert_eq!(Rows::new(Vec::new()).to_vec(), vec![]);
        assert_eq!(Rows::new(rows()).to_vec(), rows());
        // The slot, fingerprint, expiry, name and a one-event answer: what
        // the module's docs count per key.
        assert!(
            std::mem::size_of::<(Slot, Entry)>() <= 72,
            "{} bytes: Slot {}, Entry {}, Rows {}",
            std::mem::size_of::<(Slot, Entry)>(),
            std::mem::size_of::<Slot>(),
            std::mem::size_of::<Entry>(),
            std::mem::size_of::<Rows>()
        );
    }

    /// The figure the module's docs give, measured: `cargo test --release
    /// --lib kept_keys_resident -- --ignored --nocapture` (alone, as it
    /// reads the process's resident memory).
    #[cfg(target_os = "linux")]
    #[test]
    #[ignore = "a measurement: run alone, in release"]
    fn kept_keys_resident_memory_per_key() {
        fn rss_bytes() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
            1024 * line
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        }
        for (mode, n, bound) in [(Mode::Memory, 600_000, 200), (Mode::Disk, 600_000, 260)] {
            let names: Vec<String> = (0..n)
                .map(|i| {
                    format!(
                        "{:08x}-{:04x}-4000-8000-{:012x}",
                        7,
                        i >> 48,
                        i & 0xffff_ffff_ffff
                    )
                })
                .collect();
            let before = rss_bytes();
            let keys = Keys::new(Duration::from_secs(600), 10_000_000, mode);
            for (i, name) in names.iter().enumerate() {
                let Begin::New(mut ticket) = keys.begin(&key(name), &["*"]) else {
                    panic!("new");
                };
                let row = Row {
                    id: EventId::new(i as u64),
                    subscribers: 0,
                };
                keys.complete(ticket.request([1; 16]), [row]);
                ticket.kept();
            }
            let per_key = (rss_bytes() - before) / n;
            println!("{mode:?}: {n} keys kept, {per_key} bytes of resident memory each");
            assert!(per_key < bound, "{mode:?}: {per_key} bytes a key");
            drop(keys);
        }
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
        let keys = Keys::new(Duration::from_secs(60), 10, Mode::Disk);
        keys.restore(KeyRecord {
            expires_ms: 1,
            ..record.clone()
        });
        assert!(keys.is_empty());
        keys.restore(record.clone());
        let exported = keys.export();
        assert_eq!(
            exported,
            vec![KeyRecord {
                expires_ms: exported[0].expires_ms,
                ..record.clone()
            }]
        );
        assert!(exported[0].expires_ms.abs_diff(record.expires_ms) <= 2);
        // A restored key answers the same principal's retry.
        match keys.begin(&key("k"), &["sub:", "42"]) {
            Begin::Done { fingerprint, rows } => {
                assert_eq!(fingerprint, [9; 16]);
                assert_eq!(rows, record.rows);
            }
            other => panic!("restored, got {other:?}"),
        };
    }

    #[test]
    fn the_disk_table_exports_what_it_kept_and_a_new_table_restores_it() {
        let keys = Keys::new(Duration::from_secs(60), 10, Mode::Disk);
        keep(&keys, "k", &["sub:", "42"], [3; 16]);
        let Begin::New(_in_flight) = keys.begin(&key("j"), &["*"]) else {
            panic!("new");
        };
        let exported = keys.export();
        assert_eq!(exported.len(), 1, "keys in flight are not written");
        assert_eq!(&*exported[0].scope, "k sub:42");
        // A restart: another process, another secret, the same answers.
        let restarted = Keys::new(Duration::from_secs(60), 10, Mode::Disk);
        for record in exported {
            let mut buf = Vec::new();
            record.encode(&mut buf);
            restarted.restore(KeyRecord::decode(&buf).unwrap());
        }
        assert!(matches!(
            restarted.begin(&key("k"), &["sub:", "42"]),
            Begin::Done {
                fingerprint: [3, ..],
                ..
            }
        ));
        assert!(matches!(restarted.begin(&key("k"), &["*"]), Begin::New(_)));
    }
}
