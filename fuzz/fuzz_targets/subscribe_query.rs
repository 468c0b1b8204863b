//! `parse_query`, the multi-channel subscribe query (SPEC §2): accepted iff
//! every `channel` is a valid name and there are 1–32 distinct ones (or the
//! path names a valid channel, which then is the only one); a channel named
//! twice counts once; the last `lastEventId` is the resume point.
#![no_main]

use herald::domain::{EventId, Resume};
use herald::routes::events::parse_query;
use herald_fuzz::{is_valid_channel, plain_id};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = check(&mut Unstructured::new(bytes));
});

fn resume(raw: &str) -> Resume {
    match (raw.is_empty(), plain_id(raw)) {
        (true, _) => Resume::Live,
        (false, Some(n)) => Resume::After(EventId::new(n)),
        (false, None) => Resume::Unknown,
    }
}

fn check(u: &mut Unstructured<'_>) -> Result<()> {
    let path: Option<String> = u.arbitrary()?;
    let query: String = u.arbitrary()?;
    let got = parse_query(&query, path.as_deref());

    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let expected_resume = pairs
        .iter()
        .filter(|(k, _)| k == "lastEventId")
        .last()
        .map_or(Resume::Live, |(_, v)| resume(v));
    let expected: Option<Vec<String>> = match &path {
        Some(p) => is_valid_channel(p).then(|| vec![p.clone()]),
        None => {
            let mut distinct: Vec<String> = Vec::new();
            let mut ok = true;
            for (_, v) in pairs.iter().filter(|(k, _)| k == "channel") {
                ok &= is_valid_channel(v);
                if !distinct.contains(v) {
                    distinct.push(v.clone());
                }
            }
            (ok && (1..=32).contains(&distinct.len())).then_some(distinct)
        }
    };
    match (got, expected) {
        (Ok((channels, resume)), Some(expected)) => {
            let names: Vec<&str> = channels.iter().map(|c| c.as_str()).collect();
            assert_eq!(names, expected);
            assert_eq!(resume, expected_resume);
        }
        (Err(_), None) => {}
        (got, expected) => panic!("{query:?} path {path:?}: got {got:?}, expected {expected:?}"),
    }
    Ok(())
}
