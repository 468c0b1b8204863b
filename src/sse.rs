//! The Server-Sent Events wire format, and nothing else.
//!
//! Every byte herald writes on an event stream is built here: the opening
//! `retry:` preamble, event frames, `herald.*` notices, heartbeat comments
//! and the "come back later" answer. Nothing outside this module writes
//! `id:`, `event:`, `data:` or `retry:`.
//!
//! An event is framed once, when it is published, into one shared [`Bytes`];
//! the ring buffer and every subscriber hold cheap clones of it.
//!
//! Publisher input is untrusted. Data may hold CR, LF or CRLF: each line
//! becomes its own `data:` line, so no byte sequence can end the event early
//! or inject a field. Event types and ids are validated types from
//! [`crate::domain`] and cannot hold a line break.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::domain::{EventId, EventType};
use crate::history::Notice;

/// A heartbeat: a comment line that keeps proxies from closing an idle stream.
/// Constant, so sending it costs no allocation.
pub const HEARTBEAT: Bytes = Bytes::from_static(b": heartbeat\n\n");

/// A heartbeat a page can see (`--heartbeat-event`): an event with no `id:`,
/// so it does not move the browser's last event id. Constant too.
pub const HEARTBEAT_EVENT: Bytes = Bytes::from_static(b"event: herald.heartbeat\ndata: {}\n\n");

/// The heartbeat frame to send: the event with `--heartbeat-event`, else the
/// comment.
pub fn heartbeat(as_event: bool) -> Bytes {
    if as_event {
        HEARTBEAT_EVENT
    } else {
        HEARTBEAT
    }
}

/// Room reserved in front of an encoded event for its `id: <n>\n` line:
/// `id: ` (4) + at most 20 digits + `\n` (1).
const ID_LINE_MAX: usize = 25;

/// The opening bytes of every stream: the reconnection delay browsers should
/// use and a comment, so curl and EventSource see the stream open at once.
pub fn preamble(retry: Duration, comment: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(32 + comment.len());
    put_retry(&mut buf, retry);
    put_comment(&mut buf, comment);
    buf.put_u8(b'\n');
    buf.freeze()
}

/// The whole body of a "cannot serve you now" answer: a `retry:` field with
/// the back-off to use and a comment saying why. The stream ends after it.
pub fn retry_later(retry: Duration, reason: &str) -> Bytes {
    preamble(retry, reason)
}

fn put_retry(buf: &mut BytesMut, retry: Duration) {
    buf.put_slice(b"retry: ");
    let mut digits = itoa::Buffer::new();
    buf.put_slice(digits.format(retry.as_millis()).as_bytes());
    buf.put_u8(b'\n');
}

/// A comment line. Line breaks in `text` would end the comment and start a
/// field, so they are replaced by spaces.
fn put_comment(buf: &mut BytesMut, text: &str) {
    buf.put_slice(b": ");
    for &b in text.as_bytes() {
        buf.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    buf.put_u8(b'\n');
}

/// An event encoded except for its id, which is only known once the hub has
/// ordered it. Encoding (the part that scales with the data) happens before
/// the hub's lock is taken; [`PendingEvent::finish`] then only writes the id
/// line into the space reserved in front and freezes the buffer, no copy.
#[derive(Debug)]
pub struct PendingEvent {
    /// `ID_LINE_MAX` bytes of reserved room, then the `event:`/`data:` lines
    /// and the closing blank line.
    buf: BytesMut,
}

impl PendingEvent {
    /// Encodes `data` as `data:` lines (split on CRLF, CR and LF) after an
    /// optional `event:` line (omitted for the default type `message`).
    pub fn encode(event: Option<&EventType>, data: &str) -> PendingEvent {
        let lines = 1 + data.bytes().filter(|&b| b == b'\n' || b == b'\r').count();
        let mut buf = BytesMut::with_capacity(ID_LINE_MAX + 80 + data.len() + 7 * lines);
        buf.put_bytes(0, ID_LINE_MAX);
        if let Some(event) = event.filter(|e| e.as_str() != "message") {
            buf.put_slice(b"event: ");
            buf.put_slice(event.as_str().as_bytes());
            buf.put_u8(b'\n');
        }
        for line in split_lines(data) {
            buf.put_slice(b"data: ");
            buf.put_slice(line.as_bytes());
            buf.put_u8(b'\n');
        }
        buf.put_u8(b'\n');
        PendingEvent { buf }
    }

    /// The encoded `event:`/`data:` lines and closing blank line, without
    /// the id: what a shared log (Redis) stores, so every node frames the
    /// event once with [`PendingEvent::from_fields`].
    pub fn fields(&self) -> &[u8] {
        &self.buf[ID_LINE_MAX..]
    }

    /// An event whose fields were encoded elsewhere (by [`PendingEvent::encode`]
    /// on another node, carried by the shared log).
    pub fn from_fields(fields: &[u8]) -> PendingEvent {
        let mut buf = BytesMut::with_capacity(ID_LINE_MAX + fields.len());
        buf.put_bytes(0, ID_LINE_MAX);
        buf.put_slice(fields);
        PendingEvent { buf }
    }

    /// An upper bound of the finished frame's length (the room reserved for
    /// the id line included).
    pub fn len_bound(&self) -> usize {
        self.buf.len()
    }

    /// Writes `id: <id>` in front of the encoded fields and returns the frame.
    pub fn finish(mut self, id: EventId) -> Bytes {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(id.get()).as_bytes();
        let start = ID_LINE_MAX - (4 + digits.len() + 1);
        let head = &mut self.buf[start..ID_LINE_MAX];
        head[..4].copy_from_slice(b"id: ");
        head[4..4 + digits.len()].copy_from_slice(digits);
        head[4 + digits.len()] = b'\n';
        let _reserved_but_unused = self.buf.split_to(start);
        self.buf.freeze()
    }
}

/// The event type and the data of a frame built by [`PendingEvent`], as an
/// EventSource would hand them to a page: the `data:` lines joined with
/// `\n`. `None` for the type means `message`. Used to give another
/// transport the very event an SSE client sees.
pub fn frame_fields(frame: &[u8]) -> (Option<&str>, String) {
    let text = std::str::from_utf8(frame).unwrap_or_default();
    let mut event = None;
    let mut data = String::with_capacity(text.len());
    let mut first = true;
    for line in text.split('\n') {
        if let Some(value) = line.strip_prefix("data: ") {
            if !first {
                data.push('\n');
            }
            data.push_str(value);
            first = false;
        } else if let Some(value) = line.strip_prefix("event: ") {
            event = Some(value);
        }
    }
    (event, data)
}

/// Splits on CRLF, CR and LF, the three line endings of the SSE grammar.
/// `"a\n"` gives `["a", ""]`, so a trailing line break survives the trip.
fn split_lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(s)
            }
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
        }
    })
}

/// A `herald.*` notice: `event:` and `data:` lines and no `id:` field, so it
/// does not move the browser's last event id.
pub fn notice(notice: &Notice) -> Bytes {
    let mut buf = BytesMut::with_capacity(24 + notice.event.len() + notice.data.len());
    buf.put_slice(b"event: ");
    buf.put_slice(notice.event.as_bytes());
    buf.put_slice(b"\ndata: ");
    // Compact JSON never contains a raw line break: strings escape them.
    buf.put_slice(notice.data.as_bytes());
    buf.put_slice(b"\n\n");
    buf.freeze()
}

/// The last frame of a stream whose token reached its `exp`: no `id:`, so
/// the client's last event id stays where it was.
pub fn expired(exp: u64) -> Bytes {
    let mut buf = BytesMut::with_capacity(80);
    buf.put_slice(b"event: herald.expired\ndata: {\"reason\":\"token_expired\",\"exp\":");
    buf.put_slice(itoa::Buffer::new().format(exp).as_bytes());
    buf.put_slice(b"}\n\n");
    buf.freeze()
}

/// The last frame of a stream a disconnect ended (SPEC §11): no `id:`.
/// `reason` is `disconnected` or `revoked`.
pub fn disconnected(reason: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_slice(b"event: herald.disconnected\ndata: {\"reason\":\"");
    buf.put_slice(reason.as_bytes());
    buf.put_slice(b"\"}\n\n");
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(event: Option<&str>, data: &str, id: u64) -> String {
        let ty = event.map(|e| EventType::parse(e).unwrap());
        let bytes = PendingEvent::encode(ty.as_ref(), data).finish(EventId::new(id));
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn the_disconnect_notice_has_no_id() {
        assert_eq!(
            &disconnected("revoked")[..],
            b"event: herald.disconnected\ndata: {\"reason\":\"revoked\"}\n\n"
        );
    }

    #[test]
    fn single_line_event_is_framed_with_id_and_data() {
        assert_eq!(frame(None, "hello", 7), "id: 7\ndata: hello\n\n");
    }

    #[test]
    fn event_type_line_follows_the_id() {
        assert_eq!(
            frame(Some("price.update"), "1", 42),
            "id: 42\nevent: price.update\ndata: 1\n\n"
        );
    }

    #[test]
    fn message_type_is_omitted() {
        assert_eq!(frame(Some("message"), "x", 1), "id: 1\ndata: x\n\n");
    }

    #[test]
    fn every_line_ending_starts_a_new_data_line() {
        assert_eq!(
            frame(None, "a\nb\r\nc\rd", 1),
            "id: 1\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }

    #[test]
    fn empty_lines_and_trailing_break_survive() {
        assert_eq!(
            frame(None, "\n\nx\n", 1),
            "id: 1\ndata: \ndata: \ndata: x\ndata: \n\n"
        );
    }

    #[test]
    fn data_that_looks_like_fields_stays_data() {
        assert_eq!(
            frame(None, "id: 9\nevent: evil\n\ndata: x", 3),
            "id: 3\ndata: id: 9\ndata: event: evil\ndata: \ndata: data: x\n\n"
        );
    }

    #[test]
    fn leading_space_is_kept_by_the_separator_space() {
        assert_eq!(frame(None, " x", 1), "id: 1\ndata:  x\n\n");
    }

    #[test]
    fn largest_id_fits_the_reserved_room() {
        assert_eq!(
            frame(None, "x", u64::MAX),
            format!("id: {}\ndata: x\n\n", u64::MAX)
        );
    }

    #[test]
    fn fields_round_trip_through_a_shared_log() {
        let ty = EventType::parse("t").unwrap();
        let pending = PendingEvent::encode(Some(&ty), "a\nb");
        let copy = PendingEvent::from_fields(pending.fields());
        assert_eq!(
            copy.finish(EventId::new(9)),
            pending.finish(EventId::new(9))
        );
    }

    #[test]
    fn frame_fields_give_back_the_type_and_the_data_a_browser_sees() {
        let ty = EventType::parse("chat").unwrap();
        let frame = PendingEvent::encode(Some(&ty), "a\r\nb\n\ndata: c").finish(EventId::new(9));
        assert_eq!(
            frame_fields(&frame),
            (Some("chat"), "a\nb\n\ndata: c".to_owned())
        );
        let frame = PendingEvent::encode(None, "x").finish(EventId::new(1));
        assert_eq!(frame_fields(&frame), (None, "x".to_owned()));
    }

    #[test]
    fn preamble_has_retry_in_milliseconds_and_a_comment() {
        assert_eq!(
            &preamble(Duration::from_secs(3), "news")[..],
            b"retry: 3000\n: news\n\n"
        );
    }

    #[test]
    fn comments_cannot_inject_fields() {
        assert_eq!(
            &retry_later(Duration::from_millis(1500), "a\ndata: b")[..],
            b"retry: 1500\n: a data: b\n\n"
        );
    }

    #[test]
    fn heartbeat_is_a_comment_or_an_event_without_id() {
        assert_eq!(&heartbeat(false)[..], b": heartbeat\n\n");
        assert_eq!(
            &heartbeat(true)[..],
            b"event: herald.heartbeat\ndata: {}\n\n"
        );
    }

    #[test]
    fn notice_has_a_type_one_data_line_and_no_id() {
        assert_eq!(
            &notice(&Notice {
                channel: crate::domain::ChannelName::parse("presence-a").unwrap(),
                event: "herald.join",
                data: "{\"sub\":\"42\"}".to_owned(),
            })[..],
            b"event: herald.join\ndata: {\"sub\":\"42\"}\n\n"
        );
    }

    #[test]
    fn gap_notice_has_no_id_and_json_data() {
        let ch = crate::domain::ChannelName::parse("news").unwrap();
        let text = notice(&Notice::gap(
            &ch,
            crate::history::GapReason::History,
            Some(EventId::new(5)),
        ));
        assert_eq!(
            &text[..],
            &b"event: herald.gap\ndata: {\"channel\":\"news\",\"last_event_id\":\"5\",\"reason\":\"history\"}\n\n"[..]
        );
    }
}
