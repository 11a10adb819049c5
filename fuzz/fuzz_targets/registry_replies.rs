//! What a registry sends that is parsed: `WWW-Authenticate` challenges and
//! error bodies; and the image references a client names. No panic; what
//! is told of a reply is printable text of bounded size.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let detail = image_store::fuzzing::error_detail(data);
    assert!(detail.chars().count() <= 300);
    assert!(detail.chars().all(|c| !c.is_control()), "{detail:?}");
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = image_store::fuzzing::challenge(text);
        let _ = image_store::Reference::parse(text);
        let _ = image_store::Digest::parse(text);
        let p = image_store::fuzzing::printable(text);
        assert!(
            p.chars().all(|c| !c.is_control() && c != '\u{fffd}'),
            "{p:?}"
        );
    }
});
