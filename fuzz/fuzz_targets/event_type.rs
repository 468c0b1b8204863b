//! `EventType::parse` accepts exactly SPEC §3's types (and never `herald.`).
#![no_main]

use herald::domain::EventType;
use herald_fuzz::is_valid_event_type;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(s) = std::str::from_utf8(bytes) else {
        return;
    };
    match EventType::parse(s) {
        Ok(t) => {
            assert!(is_valid_event_type(s), "accepted {s:?}");
            assert_eq!(t.as_str(), s);
        }
        Err(_) => assert!(!is_valid_event_type(s), "refused {s:?}"),
    }
});
