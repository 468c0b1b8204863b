//! The on-disk record: one event, one channel's mark, one forgotten
//! channel, one revocation, or one idempotency key, framed with its
//! length and a CRC-32 of its contents.
//!
//! ```text
//! len u32 LE | crc32 u32 LE | kind u8 | id u64 LE | data_len u32 LE
//!            | name_len u8 | name | payload
//! ```
//!
//! `len` counts the bytes after the checksum; the checksum covers exactly
//! them. An event's payload is its SSE frame as it goes on the wire, so
//! recovery rebuilds the event without encoding it again. Every file starts
//! with a header (`MAGIC`, format version) so a file from a newer herald is
//! refused rather than misread.

use bytes::{BufMut, Bytes};

use crate::domain::{ChannelName, EventId};
use crate::revocation::{Disconnect, Revoke};

/// Bytes before a record's contents: its length and checksum.
pub const FRAME_HEAD: usize = 8;
/// Fixed part of the contents: kind, id, data_len, name_len.
const FIXED: usize = 1 + 8 + 4 + 1;
/// The largest record accepted when reading: the biggest event herald can
/// be configured to take, with room to spare. A length past it is garbage.
pub const MAX_RECORD: usize = 64 << 20;

/// First bytes of every segment and snapshot file.
pub const MAGIC: &[u8; 8] = b"HERALDLG";
/// The format this herald writes; a file with a higher one is refused.
/// Version 2 added [`Kind::Key`].
pub const VERSION: u32 = 2;
/// Length of the file header: magic and version.
pub const HEADER_LEN: usize = 12;

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A published event: `id`, `data_len`, the channel, the frame.
    Event = 1,
    /// A snapshot's channel: `id` is its mark; its events follow.
    Channel = 2,
    /// The reaper dropped the channel when `id` was the newest id.
    Forget = 3,
    /// The last record of a complete snapshot; `id` is the newest id it
    /// covers.
    End = 4,
    /// An idempotency key and the answer it keeps (SPEC §12): written in
    /// the same group as the events it answers, after them; the payload
    /// is a [`crate::idempotency::KeyRecord`], `id` its last event.
    Key = 5,
    /// A revocation (SPEC §11): `id` is when it ends (Unix ms), no channel,
    /// the payload `{"sub":…,"at":…}` or `{"jti":…}` as JSON. Numbered
    /// apart from the event kinds so other record kinds can be added beside
    /// it without renumbering.
    Revoke = 9,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Event,
            2 => Kind::Channel,
            3 => Kind::Forget,
            4 => Kind::End,
            5 => Kind::Key,
            9 => Kind::Revoke,
            _ => return None,
        })
    }
}

/// One decoded record; the payload borrows from the file's bytes.
#[derive(Debug)]
pub struct Record<'a> {
    pub kind: Kind,
    pub id: EventId,
    pub data_len: usize,
    pub channel: Option<ChannelName>,
    pub payload: &'a [u8],
}

/// The file header.
pub fn header() -> [u8; HEADER_LEN] {
    let mut h = [0; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// The format version in a file's header, if it has one.
pub fn version(path: &std::path::Path) -> Option<u32> {
    use std::io::Read;
    let mut header = [0; HEADER_LEN];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    (&header[..8] == MAGIC).then(|| u32::from_le_bytes(header[8..].try_into().expect("4 bytes")))
}

/// Why a file cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("not a herald data file (bad magic)")]
    NotOurs,
    #[error("written by a newer herald (format {0}, this herald reads up to {VERSION})")]
    Newer(u32),
}

/// Checks a file's header; a file shorter than the header is `Ok(false)`
/// (created but never written: a torn creation).
pub fn check_header(bytes: &[u8]) -> Result<bool, HeaderError> {
    if bytes.len() < HEADER_LEN {
        return if MAGIC.starts_with(&bytes[..bytes.len().min(8)]) {
            Ok(false)
        } else {
            Err(HeaderError::NotOurs)
        };
    }
    if &bytes[..8] != MAGIC {
        return Err(HeaderError::NotOurs);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version > VERSION {
        return Err(HeaderError::Newer(version));
    }
    Ok(true)
}

/// Appends one record to `buf`.
pub fn encode(
    buf: &mut Vec<u8>,
    kind: Kind,
    id: EventId,
    data_len: usize,
    channel: Option<&ChannelName>,
    payload: &[u8],
) {
    let name = channel.map_or(&b""[..], |c| c.as_str().as_bytes());
    let len = FIXED + name.len() + payload.len();
    let start = buf.len();
    buf.reserve(FRAME_HEAD + len);
    buf.put_u32_le(len as u32);
    buf.put_u32_le(0);
    buf.put_u8(kind as u8);
    buf.put_u64_le(id.get());
    buf.put_u32_le(data_len as u32);
    buf.put_u8(name.len() as u8);
    buf.put_slice(name);
    buf.put_slice(payload);
    let crc = crc32fast::hash(&buf[start + FRAME_HEAD..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What is at an offset of a file.
#[derive(Debug)]
pub enum Read<'a> {
    /// A whole, valid record, and the offset after it.
    Record(Record<'a>, usize),
    /// Nothing more: the end of the file.
    End,
    /// Bytes that are not a valid record: cut short, a bad checksum, or
    /// garbage.
    Bad(&'static str),
}

/// Reads the record at `at`.
pub fn read(bytes: &[u8], at: usize) -> Read<'_> {
    let rest = &bytes[at..];
    if rest.is_empty() {
        return Read::End;
    }
    if rest.len() < FRAME_HEAD {
        return Read::Bad("cut short");
    }
    let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    if !(FIXED..=MAX_RECORD).contains(&len) {
        return Read::Bad("bad length");
    }
    if rest.len() < FRAME_HEAD + len {
        return Read::Bad("cut short");
    }
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    let body = &rest[FRAME_HEAD..FRAME_HEAD + len];
    if crc32fast::hash(body) != crc {
        return Read::Bad("bad checksum");
    }
    let Some(kind) = Kind::from_u8(body[0]) else {
        return Read::Bad("unknown record kind");
    };
    let id = EventId::new(u64::from_le_bytes(body[1..9].try_into().expect("8 bytes")));
    let data_len = u32::from_le_bytes(body[9..13].try_into().expect("4 bytes")) as usize;
    let name_len = body[13] as usize;
    if FIXED + name_len > len {
        return Read::Bad("bad name length");
    }
    let name = &body[FIXED..FIXED + name_len];
    let channel = if name_len == 0 {
        None
    } else {
        match std::str::from_utf8(name).ok().map(ChannelName::parse) {
            Some(Ok(c)) => Some(c),
            _ => return Read::Bad("bad channel name"),
        }
    };
    let record = Record {
        kind,
        id,
        data_len,
        channel,
        payload: &body[FIXED + name_len..],
    };
    Read::Record(record, at + FRAME_HEAD + len)
}

/// The payload of a [`Kind::Revoke`] record.
#[derive(serde::Serialize, serde::Deserialize)]
struct RevokePayload<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    jti: Option<&'a str>,
    #[serde(default)]
    at: u64,
}

/// Appends the record of `order`'s revocation (nothing if it has none).
pub fn encode_revoke(buf: &mut Vec<u8>, order: &Disconnect) {
    let Some(revoke) = order.revoke else {
        return;
    };
    let payload = RevokePayload {
        sub: order
            .jti
            .is_none()
            .then_some(order.sub.as_deref())
            .flatten(),
        jti: order.jti.as_deref(),
        at: revoke.at,
    };
    let json = serde_json::to_vec(&payload).expect("a revocation serializes");
    encode(
        buf,
        Kind::Revoke,
        EventId::new(revoke.until_ms),
        0,
        None,
        &json,
    );
}

/// The revocation a [`Kind::Revoke`] record holds; `None` if its payload is
/// not one (it passed its checksum, so a newer herald wrote it).
pub fn decode_revoke(until_ms: EventId, payload: &[u8]) -> Option<Disconnect> {
    let payload: RevokePayload<'_> = serde_json::from_slice(payload).ok()?;
    if payload.sub.is_none() == payload.jti.is_none() {
        return None;
    }
    Some(Disconnect {
        sub: payload.sub.map(Into::into),
        channel: None,
        jti: payload.jti.map(Into::into),
        revoke: Some(Revoke {
            at: payload.at,
            until_ms: until_ms.get(),
        }),
    })
}

/// An event's frame, copied out of the file's bytes (so a retained event
/// does not keep its whole segment in memory).
pub fn frame(payload: &[u8]) -> Bytes {
    Bytes::copy_from_slice(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_event() -> Vec<u8> {
        let mut buf = Vec::new();
        let channel = ChannelName::parse("news").unwrap();
        encode(
            &mut buf,
            Kind::Event,
            EventId::new(42),
            5,
            Some(&channel),
            b"id: 42\ndata: hello\n\n",
        );
        buf
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let buf = one_event();
        let Read::Record(rec, next) = read(&buf, 0) else {
            panic!("a valid record");
        };
        assert_eq!(next, buf.len());
        assert_eq!(rec.kind, Kind::Event);
        assert_eq!(rec.id, EventId::new(42));
        assert_eq!(rec.data_len, 5);
        assert_eq!(rec.channel.unwrap().as_str(), "news");
        assert_eq!(rec.payload, b"id: 42\ndata: hello\n\n");
        assert!(matches!(read(&buf, next), Read::End));
    }

    #[test]
    fn every_flipped_bit_and_every_cut_is_detected() {
        let buf = one_event();
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    matches!(read(&bad, 0), Read::Bad(_)),
                    "flip of bit {bit} of byte {byte}"
                );
            }
        }
        for cut in 1..buf.len() {
            assert!(matches!(read(&buf[..cut], 0), Read::Bad(_)), "cut at {cut}");
        }
    }

    #[test]
    fn a_revocation_reads_back_as_written() {
        let order = Disconnect {
            sub: Some("42".into()),
            channel: ChannelName::parse("news").ok(),
            jti: None,
            revoke: Some(Revoke {
                at: 1_700_000_000,
                until_ms: 1_700_000_060_000,
            }),
        };
        let mut buf = Vec::new();
        encode_revoke(&mut buf, &order);
        let Read::Record(rec, _) = read(&buf, 0) else {
            panic!("a valid record");
        };
        assert_eq!(rec.kind, Kind::Revoke);
        let back = decode_revoke(rec.id, rec.payload).unwrap();
        assert_eq!(
            back.channel, None,
            "a revocation is the user's, not a channel's"
        );
        assert_eq!((back.sub.clone(), back.revoke), (order.sub, order.revoke));
        let mut none = Vec::new();
        encode_revoke(
            &mut none,
            &Disconnect {
                revoke: None,
                ..back
            },
        );
        assert!(none.is_empty(), "a plain disconnect keeps nothing");
    }

    #[test]
    fn headers_of_newer_formats_and_other_files_are_refused() {
        assert!(matches!(check_header(&header()), Ok(true)));
        assert!(matches!(check_header(&header()[..5]), Ok(false)));
        let mut newer = header();
        newer[8] = 3;
        assert!(matches!(check_header(&newer), Err(HeaderError::Newer(3))));
        assert!(matches!(
            check_header(b"something else"),
            Err(HeaderError::NotOurs)
        ));
    }
}
