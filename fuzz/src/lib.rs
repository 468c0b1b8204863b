//! What the fuzz targets check herald against, written from the SPEC and
//! the WHATWG HTML standard rather than from herald's code: an event-stream
//! parser, and plain re-statements of the input rules.

/// One event as a browser's EventSource would dispatch it.
#[derive(Debug, PartialEq, Eq)]
pub struct Dispatched {
    pub event_type: String,
    pub data: String,
    pub last_event_id: String,
}

/// Everything a stream's bytes amount to for a client.
#[derive(Debug, Default)]
pub struct Parsed {
    pub events: Vec<Dispatched>,
    /// Values of `retry` fields (the reconnection time).
    pub retries: Vec<String>,
    /// Names of fields other than data/event/id/retry (ignored by browsers;
    /// herald must never write one).
    pub other_fields: Vec<String>,
    pub comments: usize,
    /// Bytes after the last line break (an unfinished line).
    pub unterminated: String,
}

/// The event-stream interpretation of WHATWG HTML §9.2.6, run over a whole
/// byte string: lines end at CRLF, LF or CR; a blank line dispatches; a
/// leading BOM is skipped.
pub fn parse_event_stream(bytes: &[u8]) -> Parsed {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut out = Parsed::default();
    let mut data = String::new();
    let mut event_type = String::new();
    let mut last_event_id = String::new();
    let mut rest = text;
    loop {
        let Some(i) = rest.find(['\r', '\n']) else {
            out.unterminated = rest.to_owned();
            break;
        };
        let line = &rest[..i];
        let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
        if line.is_empty() {
            // Dispatch.
            if data.is_empty() {
                event_type.clear();
                continue;
            }
            if data.ends_with('\n') {
                data.pop();
            }
            out.events.push(Dispatched {
                event_type: if event_type.is_empty() {
                    "message".to_owned()
                } else {
                    std::mem::take(&mut event_type)
                },
                data: std::mem::take(&mut data),
                last_event_id: last_event_id.clone(),
            });
            event_type.clear();
            continue;
        }
        if line.starts_with(':') {
            out.comments += 1;
            continue;
        }
        let (field, value) = match line.find(':') {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        match field {
            "event" => event_type = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" => {
                if !value.contains('\0') {
                    last_event_id = value.to_owned();
                }
            }
            "retry" => out.retries.push(value.to_owned()),
            other => out.other_fields.push(other.to_owned()),
        }
    }
    out
}

/// What a browser hands the page for published `data`: CRLF and CR become LF.
pub fn as_received(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

/// SPEC §1: 1–128 characters from `A–Z a–z 0–9 _ - . : ~ @`.
pub fn is_valid_channel(s: &str) -> bool {
    (1..=128).contains(&s.chars().count())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:~@".contains(c))
}

/// SPEC §3: 1–64 characters from `A–Z a–z 0–9 _ - . :`, not `herald.`-prefixed.
pub fn is_valid_event_type(s: &str) -> bool {
    (1..=64).contains(&s.chars().count())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
        && !s.starts_with("herald.")
}

/// SPEC §2: a decimal integer with no sign and no leading zeros, at most 20
/// digits (and within u64, herald's id type). `None` if `s` is not one.
pub fn plain_id(s: &str) -> Option<u64> {
    let digits = !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    let no_leading_zero = s == "0" || !s.starts_with('0');
    if !(digits && no_leading_zero) {
        return None;
    }
    // Sum by hand rather than `str::parse`, to be independent of it.
    s.bytes().try_fold(0u64, |n, b| {
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_handles_the_three_line_endings_and_dispatch_rules() {
        let p = parse_event_stream(b"retry: 10\r: c\rid: 5\ndata: a\r\ndata\n\nevent: x\n\n");
        assert_eq!(p.retries, ["10"]);
        assert_eq!(p.comments, 1);
        assert_eq!(
            p.events,
            [Dispatched {
                event_type: "message".into(),
                data: "a\n".into(),
                last_event_id: "5".into()
            }]
        );
    }

    #[test]
    fn plain_ids() {
        assert_eq!(plain_id("0"), Some(0));
        assert_eq!(plain_id("18446744073709551615"), Some(u64::MAX));
        assert_eq!(plain_id("18446744073709551616"), None);
        assert_eq!(plain_id("01"), None);
        assert_eq!(plain_id(""), None);
    }
}
