//! One image document replaced by arbitrary bytes inside an otherwise
//! well-formed archive, so that every input reaches the parser of that
//! document: the first byte picks which (an OCI manifest, an image config,
//! a nested index, a docker `manifest.json`). The archive is imported into a
//! fresh store; an image config that imports is then resolved into a
//! process as CreateContainer and `run` resolve it. No panic; an error
//! leaves the store as empty as it was and is printable text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(b)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn descriptor(media_type: &str, body: &[u8]) -> String {
    format!(
        r#"{{"mediaType":"{media_type}","digest":"{}","size":{}}}"#,
        digest(body),
        body.len()
    )
}

/// An empty layer: a tar of two zero blocks (simple, so that
/// `fuzz/seeds.py` writes documents that name it by its digest).
fn layer() -> Vec<u8> {
    vec![0; 1024]
}

fn config_for(layer: &[u8]) -> Vec<u8> {
    format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        digest(layer)
    )
    .into_bytes()
}

fn manifest_for(config: &[u8], layer: &[u8]) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{},"layers":[{}]}}"#,
        descriptor("application/vnd.oci.image.config.v1+json", config),
        descriptor("application/vnd.oci.image.layer.v1.tar", layer)
    )
    .into_bytes()
}

fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        let _ = b.append_data(&mut h, name, &body[..]);
    }
    b.into_inner().unwrap_or_default()
}

fn blob(body: &[u8]) -> (String, Vec<u8>) {
    (
        format!("blobs/sha256/{}", &digest(body)["sha256:".len()..]),
        body.to_vec(),
    )
}

/// An OCI layout whose index names `top` (of `top_type`), with `blobs`.
fn layout(top_type: &str, top: &[u8], blobs: &[&[u8]]) -> Vec<u8> {
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{top_type}","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"example.com/fuzz:1"}}}}]}}"#,
        digest(top),
        top.len()
    );
    let mut files = vec![
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".to_string(), index.into_bytes()),
        blob(top),
    ];
    files.extend(blobs.iter().map(|b| blob(b)));
    tar_of(&files)
}

fn archive(mode: u8, doc: &[u8]) -> Vec<u8> {
    let layer = layer();
    let config = config_for(&layer);
    let manifest = manifest_for(&config, &layer);
    match mode % 4 {
        // The manifest.
        0 => layout(MANIFEST, doc, &[&config, &layer]),
        // The image config.
        1 => layout(MANIFEST, &manifest_for(doc, &layer), &[doc, &layer]),
        // An index under the layout's index.
        2 => layout(INDEX, doc, &[&manifest, &config, &layer]),
        // A docker save tarball's manifest.json.
        _ => tar_of(&[
            ("manifest.json".into(), doc.to_vec()),
            (
                format!("{}.json", hex(&Sha256::digest(&config))),
                config.clone(),
            ),
            ("layer/layer.tar".into(), layer.clone()),
        ]),
    }
}

fn printable(msg: &str) {
    assert!(
        msg.chars().all(|c| !c.is_control() && c != '\u{fffd}'),
        "not printable: {msg:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, doc)) = data.split_first() else {
        return;
    };
    let Ok(tmp) = tempfile::tempdir() else { return };
    let store_dir = tmp.path().join("store");
    let Ok(store) = image_store::Store::open(&store_dir) else {
        return;
    };
    let bytes = archive(*mode, doc);
    let opts = image_store::ImportOptions::default();
    match store.import_reader("fuzz.tar", &bytes[..], &opts, &image_store::NoProgress) {
        Ok(imported) => {
            for i in imported {
                let Ok(Some(image)) = store.find(&i.name) else {
                    panic!("{} imported but not found", i.name);
                };
                let config = match store.config(&image) {
                    Ok(c) => c,
                    Err(e) => return printable(&e.to_string()),
                };
                let rootfs = tmp.path().join("rootfs");
                let _ = std::fs::create_dir_all(rootfs.join("etc"));
                let overrides = oci_runtime::ImageOverrides::default();
                if let Err(e) = oci_runtime::ImageProcess::resolve(&config, &rootfs, &overrides) {
                    printable(&e.to_string());
                }
            }
        }
        Err(e) => {
            printable(&e.to_string());
            let again = image_store::Store::open(&store_dir).expect("the store opens again");
            assert!(again.list().map(|l| l.is_empty()).unwrap_or(false), "{e}");
        }
    }
});
