//! The client side of one event stream, parsed without per-event allocation:
//! the HTTP/1.1 response head, chunked de-framing done in place inside the read
//! buffer, and an incremental SSE line parser that copies nothing but the last
//! `id:` (at most [`MAX_ID`] bytes) and decodes the benchmark payload
//! (`p=<publisher> k=<index> t=<send ns>`) straight from the buffer.
//!
//! Both herald and Nchan answer HTTP/1.1 streams with `Transfer-Encoding:
//! chunked`; Nchan puts every event in its own chunk, herald may put many events
//! in one. Nothing here depends on where chunk or read boundaries fall (the
//! tests feed every split).

use memchr::{memchr, memmem};

/// Longest `id:` value kept for `Last-Event-ID` (herald: 20 digits; Nchan: `time:tag`).
pub const MAX_ID: usize = 64;

/// What the response head said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub chunked: bool,
    /// Bytes of the buffer taken by the head (the body starts here).
    pub len: usize,
}

/// Parses a response head if `buf` holds all of it (`None`: read more).
pub fn parse_head(buf: &[u8]) -> Option<Result<Head, String>> {
    let end = memmem::find(buf, b"\r\n\r\n")? + 4;
    let head = &buf[..end];
    let status = head.get(9..12).and_then(|s| std::str::from_utf8(s).ok()).and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status.filter(|_| head.starts_with(b"HTTP/1.")) else {
        return Some(Err(format!("bad status line: {:?}", String::from_utf8_lossy(&head[..head.len().min(40)]))));
    };
    let mut chunked = false;
    for line in head.split(|&b| b == b'\n') {
        if let Some(v) = header_value(line, b"transfer-encoding") {
            chunked |= contains_ignore_case(v, b"chunked");
        }
    }
    Some(Ok(Head { status, chunked, len: end }))
}

/// The value of `line` if it is header `name` (lowercase), trimmed.
pub fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let colon = memchr(b':', line)?;
    if !line[..colon].eq_ignore_ascii_case(name) {
        return None;
    }
    Some(line[colon + 1..].trim_ascii())
}

pub fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading hex digits of a chunk size.
    Size,
    /// After the digits (extension or CR) until LF.
    SizeLine,
    /// Inside chunk data; `left` bytes to go.
    Data,
    /// The CRLF after chunk data.
    DataEnd,
}

/// De-chunks in place: output never runs ahead of input, so the payload is
/// compacted inside the same buffer with `copy_within` and no second buffer.
#[derive(Debug)]
pub struct Dechunker {
    state: ChunkState,
    size: usize,
    digits: bool,
    left: usize,
    /// The terminating zero-size chunk was seen: the server ended the stream.
    pub finished: bool,
}

impl Default for Dechunker {
    fn default() -> Self {
        Dechunker { state: ChunkState::Size, size: 0, digits: false, left: 0, finished: false }
    }
}

impl Dechunker {
    /// Decodes raw bytes `buf[start..end]`, writing payload from `buf[start]`;
    /// returns the end of the payload.
    pub fn decode(&mut self, buf: &mut [u8], start: usize, end: usize) -> usize {
        let (mut r, mut w) = (start, start);
        while r < end && !self.finished {
            match self.state {
                ChunkState::Data => {
                    let n = self.left.min(end - r);
                    if w != r {
                        buf.copy_within(r..r + n, w);
                    }
                    r += n;
                    w += n;
                    self.left -= n;
                    if self.left == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::DataEnd => {
                    if buf[r] == b'\n' {
                        self.state = ChunkState::Size;
                        self.size = 0;
                        self.digits = false;
                    }
                    r += 1;
                }
                ChunkState::Size | ChunkState::SizeLine => {
                    let b = buf[r];
                    r += 1;
                    if b == b'\n' {
                        if !self.digits {
                            continue; // stray blank line: be lenient
                        }
                        if self.size == 0 {
                            self.finished = true;
                        } else {
                            self.left = self.size;
                            self.state = ChunkState::Data;
                        }
                        continue;
                    }
                    if self.state == ChunkState::SizeLine {
                        continue;
                    }
                    let d = match b {
                        b'0'..=b'9' => b - b'0',
                        b'a'..=b'f' => b - b'a' + 10,
                        b'A'..=b'F' => b - b'A' + 10,
                        _ => {
                            self.state = ChunkState::SizeLine;
                            continue;
                        }
                    };
                    self.size = self.size * 16 + d as usize;
                    self.digits = true;
                }
            }
        }
        w
    }
}

/// The event type, classified (no copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Message,
    Gap,
    Other,
}

/// The first data line, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    None,
    /// `w…`: a warm-up/barrier event, not counted.
    Warm,
    /// `p=<publisher> k=<index> t=<ns since tool start>`.
    Bench {
        p: u32,
        k: u32,
        t: u64,
    },
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub etype: EventType,
    pub data: Data,
}

/// Incremental SSE parser. Feed it the payload; it consumes complete lines and
/// keeps the event under construction (type and decoded data) in its fields.
pub struct Parser {
    etype: EventType,
    data: Data,
    last_id: [u8; MAX_ID],
    last_id_len: usize,
    /// Comment lines seen (`:` …): the opening comment and heartbeats.
    pub comments: u64,
    /// `retry:` fields seen.
    pub retries: u64,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            etype: EventType::Message,
            data: Data::None,
            last_id: [0; MAX_ID],
            last_id_len: 0,
            comments: 0,
            retries: 0,
        }
    }
}

impl Parser {
    /// The last event id seen (what a browser would send as `Last-Event-ID`).
    pub fn last_id(&self) -> &[u8] {
        &self.last_id[..self.last_id_len]
    }

    /// Forgets the event under construction (a new connection), keeping the last id.
    pub fn new_stream(&mut self) {
        self.etype = EventType::Message;
        self.data = Data::None;
    }

    /// Parses the complete lines of `buf`, calling `on_event` for each
    /// dispatched event; returns how many bytes were consumed (the rest is an
    /// incomplete line to keep for the next read).
    pub fn feed(&mut self, buf: &[u8], mut on_event: impl FnMut(&Event)) -> usize {
        let mut pos = 0;
        while let Some(nl) = memchr(b'\n', &buf[pos..]) {
            let mut line = &buf[pos..pos + nl];
            pos += nl + 1;
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.is_empty() {
                if self.data != Data::None {
                    on_event(&Event { etype: self.etype, data: self.data });
                }
                self.etype = EventType::Message;
                self.data = Data::None;
                continue;
            }
            if line[0] == b':' {
                self.comments += 1;
                continue;
            }
            let (name, value) = match memchr(b':', line) {
                Some(c) => {
                    let v = &line[c + 1..];
                    (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &b""[..]),
            };
            match name {
                b"data" => {
                    self.data = match self.data {
                        Data::None => decode_data(value),
                        _ => Data::Other, // multi-line data: not a bench payload
                    }
                }
                b"id" if !value.contains(&0) && value.len() <= MAX_ID => {
                    self.last_id[..value.len()].copy_from_slice(value);
                    self.last_id_len = value.len();
                }
                b"event" => {
                    self.etype = match value {
                        b"message" => EventType::Message,
                        b"herald.gap" => EventType::Gap,
                        _ => EventType::Other,
                    }
                }
                b"retry" => self.retries += 1,
                _ => {}
            }
        }
        pos
    }
}

fn decode_data(v: &[u8]) -> Data {
    if v.first() == Some(&b'w') {
        return Data::Warm;
    }
    let mut it = v.split(|&b| b == b' ');
    let mut field = |prefix: &[u8]| -> Option<u64> {
        let f = it.next()?.strip_prefix(prefix)?;
        if f.is_empty() || f.len() > 19 {
            return None;
        }
        f.iter().try_fold(0u64, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + (b - b'0') as u64))
    };
    match (field(b"p="), field(b"k="), field(b"t=")) {
        (Some(p), Some(k), Some(t)) if p <= u32::MAX as u64 && k <= u32::MAX as u64 => {
            Data::Bench { p: p as u32, k: k as u32, t }
        }
        _ => Data::Other,
    }
}

/// Writes the 100-byte (or `len`) benchmark payload into `out`.
pub fn payload(out: &mut Vec<u8>, p: u32, k: u32, t: u64, len: usize) {
    use std::io::Write;
    let start = out.len();
    let _ = write!(out, "p={p} k={k} t={t} ");
    while out.len() - start < len {
        out.push(b'x');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(s: &str) -> String {
        format!("{:x}\r\n{}\r\n", s.len(), s)
    }

    #[test]
    fn head_and_chunked_stream_in_every_split() {
        let mut body = String::new();
        body += &chunk("retry: 3000\n: open\n\n");
        let mut p = Vec::new();
        payload(&mut p, 1, 7, 123456, 100);
        let ev1 = format!("id: 5\ndata: {}\n\n", String::from_utf8(p.clone()).unwrap());
        let ev2 = "id: 1700000000:3\nevent: herald.gap\ndata: {\"channel\":\"a\"}\n\nid: 9\ndata: w\n\n";
        body += &chunk(&ev1);
        body += &chunk(ev2);
        body += "0\r\n\r\n";
        let raw =
            format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: Chunked\r\n\r\n{body}");
        let raw = raw.as_bytes();
        for split in 1..raw.len() {
            let head = parse_head(raw).unwrap().unwrap();
            assert_eq!((head.status, head.chunked), (200, true));
            if split < head.len {
                assert!(parse_head(&raw[..split]).is_none());
            }
            let body = &raw[head.len..];
            let split = split.min(body.len());
            let mut buf = vec![0u8; 1024];
            let mut len = 0;
            let mut d = Dechunker::default();
            let mut parser = Parser::default();
            let mut events = Vec::new();
            for piece in [&body[..split], &body[split..]] {
                buf[len..len + piece.len()].copy_from_slice(piece);
                let end = d.decode(&mut buf, len, len + piece.len());
                let used = parser.feed(&buf[..end], |e| events.push(*e));
                buf.copy_within(used..end, 0);
                len = end - used;
            }
            assert!(d.finished);
            assert_eq!(
                events,
                vec![
                    Event { etype: EventType::Message, data: Data::Bench { p: 1, k: 7, t: 123456 } },
                    Event { etype: EventType::Gap, data: Data::Other },
                    Event { etype: EventType::Message, data: Data::Warm },
                ]
            );
            assert_eq!(parser.last_id(), b"9");
            assert_eq!(parser.comments, 1);
            assert_eq!(parser.retries, 1);
        }
    }

    #[test]
    fn payload_is_fixed_length() {
        let mut p = Vec::new();
        payload(&mut p, 3, 4_000_000, u64::MAX / 2, 100);
        assert_eq!(p.len(), 100);
        assert_eq!(decode_data(&p), Data::Bench { p: 3, k: 4_000_000, t: u64::MAX / 2 });
        assert_eq!(decode_data(b"p=1 k=x t=3"), Data::Other);
    }
}
