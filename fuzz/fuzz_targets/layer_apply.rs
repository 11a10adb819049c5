//! Arbitrary bytes (plain tar, gzip or zstd: the applier detects which)
//! applied as a layer into a fresh root, beside a sentinel tree. Whatever
//! the bytes: no panic, and the sentinel tree (outside the root) is exactly
//! as it was, nothing new appears beside the root, and every error message
//! is printable text.
#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

/// Path → (mode, size, mtime, content or link target) of every entry.
fn snapshot(dir: &Path) -> BTreeMap<String, (u32, u64, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(md) = fs::symlink_metadata(&p) else {
                continue;
            };
            let body = if md.file_type().is_symlink() {
                fs::read_link(&p)
                    .map(|t| t.into_os_string().into_encoded_bytes())
                    .unwrap_or_default()
            } else if md.is_file() {
                fs::read(&p).unwrap_or_default()
            } else {
                Vec::new()
            };
            if md.is_dir() {
                stack.push(p.clone());
            }
            let key = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
            out.insert(key, (md.mode(), md.size(), md.mtime(), body));
        }
    }
    out
}

fn names(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let Ok(tmp) = tempfile::tempdir() else { return };
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    let _ = fs::create_dir(&root);
    let _ = fs::create_dir_all(outside.join("dir"));
    let _ = fs::write(outside.join("file"), b"keep");
    let _ = std::os::unix::fs::symlink("../root", outside.join("link"));
    let before = snapshot(&outside);
    let beside = names(tmp.path());
    let opts = image_store::ApplyOptions::default();
    if let Err(e) = image_store::apply(&root, data, &opts) {
        let msg = e.to_string();
        assert!(
            msg.chars().all(|c| !c.is_control() && c != '\u{fffd}'),
            "not printable: {msg:?}"
        );
    }
    assert_eq!(
        snapshot(&outside),
        before,
        "the layer changed a tree outside its root"
    );
    assert_eq!(
        names(tmp.path()),
        beside,
        "the layer made something beside its root"
    );
});
