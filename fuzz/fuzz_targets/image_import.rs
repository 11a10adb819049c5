//! Arbitrary bytes imported into a fresh store, two ways: as the archive
//! itself (OCI layout or docker-save tar, any compression), and as the
//! index.json of an otherwise well-formed OCI layout. No panic; an error
//! leaves the store as empty as it was (it opens, and lists no image);
//! every message is printable text.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

/// An OCI layout tar with `index` as its index.json and one small blob.
fn layout_with_index(index: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, body: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        let _ = b.append_data(&mut h, name, body);
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", index);
    add(
        "blobs/sha256/44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        b"{}",
    );
    b.into_inner().unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let Ok(tmp) = tempfile::tempdir() else { return };
    let archive = tmp.path().join("image.tar");
    let bytes = match data.split_first() {
        Some((0, rest)) => layout_with_index(rest),
        _ => data.to_vec(),
    };
    if fs_write(&archive, &bytes).is_err() {
        return;
    }
    let store_dir = tmp.path().join("store");
    let Ok(store) = image_store::Store::open(&store_dir) else {
        return;
    };
    let opts = image_store::ImportOptions::default();
    match store.import(&archive, &opts, &image_store::NoProgress) {
        Ok(_) => {}
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.chars().all(|c| !c.is_control() && c != '\u{fffd}'),
                "not printable: {msg:?}"
            );
            // Nothing half-made stays: the store opens and holds no image.
            let again = image_store::Store::open(&store_dir).expect("the store opens again");
            assert!(again.list().map(|l| l.is_empty()).unwrap_or(false), "{msg}");
        }
    }
});

fn fs_write(p: &std::path::Path, b: &[u8]) -> std::io::Result<()> {
    std::fs::File::create(p)?.write_all(b)
}
