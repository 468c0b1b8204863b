//! `ChannelName::parse` accepts exactly SPEC §1's names, and keeps them as given.
#![no_main]

use herald::domain::ChannelName;
use herald_fuzz::is_valid_channel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(s) = std::str::from_utf8(bytes) else {
        return;
    };
    match ChannelName::parse(s) {
        Ok(name) => {
            assert!(is_valid_channel(s), "accepted {s:?}");
            assert_eq!(name.as_str(), s);
        }
        Err(_) => assert!(!is_valid_channel(s), "refused {s:?}"),
    }
});
