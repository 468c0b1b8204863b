//! `server::h1::parse`, the first request head of a cleartext HTTP/1.1
//! connection that herald reads itself (issue 23) before any request goes
//! to hyper: it never panics; it keeps only a whole HTTP/1.1 `GET` of a
//! path with no body, upgrade or `Expect`, at most `HEAD_LIMIT` long;
//! a head it keeps is kept with the same length whatever follows it
//! (pipelined bytes are never part of it), and every prefix of it is
//! `Partial` (a head split across reads is read on, never handed on half
//! read); `Partial` never holds more than `HEAD_LIMIT`.
#![no_main]

use herald::server::h1::{parse, Parsed, HEAD_LIMIT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    match parse(bytes) {
        Parsed::Partial => assert!(bytes.len() < HEAD_LIMIT),
        Parsed::Hyper => {}
        Parsed::Ours(head) => {
            assert!(head.len <= bytes.len() && head.len <= HEAD_LIMIT);
            let request = &head.request;
            assert_eq!(request.method(), "GET");
            assert_eq!(request.version(), http::Version::HTTP_11);
            assert!(request.uri().path().starts_with('/'));
            for name in ["content-length", "transfer-encoding", "upgrade", "expect"] {
                assert!(!request.headers().contains_key(name), "{name}");
            }
            let mut more = bytes[..head.len].to_vec();
            more.extend_from_slice(b"\x00GET /healthz HTTP/1.1\r\n\r\n");
            match parse(&more) {
                Parsed::Ours(again) => assert_eq!(again.len, head.len),
                _ => panic!("a kept head is no longer kept with bytes after it"),
            }
            for cut in 0..head.len {
                assert!(
                    matches!(parse(&bytes[..cut]), Parsed::Partial),
                    "a prefix of {cut} bytes is not partial"
                );
            }
        }
    }
});
