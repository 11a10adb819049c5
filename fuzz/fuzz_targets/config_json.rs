//! Arbitrary bytes as a bundle's config.json: parsed, validated and, when
//! valid, planned as `create` would. No panic; a parse or validation error
//! names a field or a line; a config that validates always yields a plan
//! or an error that names what is wrong (never a panic).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tmp) = tempfile::tempdir() else { return };
    let dir = tmp.path();
    let _ = std::fs::create_dir(dir.join("rootfs"));
    let spec = match oci_runtime::parse_spec(data, Path::new("config.json")) {
        Ok(s) => s,
        Err(e) => {
            let mut msg = e.to_string();
            let mut cur = std::error::Error::source(&e);
            while let Some(c) = cur {
                msg = format!("{msg}: {c}");
                cur = c.source();
            }
            assert!(msg.contains("field `") || msg.contains("line "), "{msg}");
            return;
        }
    };
    let rootfs = match oci_runtime::validate(&spec, dir) {
        Ok(r) => r,
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            return;
        }
    };
    let bundle = oci_runtime::Bundle {
        dir: dir.to_path_buf(),
        spec,
        rootfs,
    };
    if let Err(e) = oci_runtime::fuzzing::plan(&bundle) {
        assert!(!e.to_string().is_empty());
    }
});
