//! `image mount` of a 127-layer image on Debian's cloud kernel (6.1), which
//! has no `lowerdir+`: the store falls back to naming the lower dirs through
//! `/proc/self/fd`, since their full paths overflow the page of mount options.
//! (The host's kernel takes the new mount API path; image-store's tests
//! cover that one.)

mod common;

use std::path::{Path, PathBuf};

use common::{bin_path, root_or_skip};
use serde_json::json;
use sha2::Digest;

fn put_blob(layout: &Path, data: &[u8]) -> String {
    let hex = hex::encode(sha2::Sha256::digest(data));
    std::fs::write(layout.join("blobs/sha256").join(&hex), data).unwrap();
    format!("sha256:{hex}")
}

/// An OCI layout of 127 uncompressed layers, each adding `layer-N` and
/// replacing `top`.
fn many_layers(layout: &Path) {
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..127 {
        let mut b = tar::Builder::new(Vec::new());
        for name in [format!("layer-{i}"), "top".to_string()] {
            let data = format!("{i}\n");
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, name, data.as_bytes()).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let d = put_blob(layout, &tar);
        diff_ids.push(d.clone());
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": tar.len()}));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let cd = put_blob(layout, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let md = put_blob(layout, &manifest);
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
}

#[test]
fn image_mount_of_127_layers_on_a_kernel_without_lowerdir_plus() {
    if !root_or_skip("image_mount_of_127_layers_on_a_kernel_without_lowerdir_plus") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("many");
    many_layers(&layout);
    // A long store path, as under /var/lib and longer.
    let script = "set -e; S=/var/lib/a-rather-long-directory-name-for-the-store/images; \
        mkdir -p /var/lib /mnt/m; mount -t tmpfs tmpfs /var/lib; \
        R=\"mini-runtime --store $S\"; uname -r; \
        $R image import /work/many 2>/tmp/e || { cat /tmp/e; exit 1; }; $R image mount localhost/many /mnt/m 2>/tmp/e || { cat /tmp/e; exit 1; }; \
        echo \"=== top\"; cat /mnt/m/top; echo \"=== count\"; ls /mnt/m | wc -l; \
        echo \"=== layer-0\"; cat /mnt/m/layer-0; echo '=== umount'; \
        $R image umount /mnt/m; echo umounted; echo '=== end'";
    let bin = PathBuf::from(bin_path());
    let console = common::run_in_vm(
        &[(&bin, "/bin/mini-runtime"), (&layout, "/work/many")],
        &[],
        script,
    );
    let section = |name: &str| common::vm_section(&console, name).trim().to_string();
    assert_eq!(section("top"), "126", "{console}");
    assert_eq!(section("count"), "128", "{console}");
    assert_eq!(section("layer-0"), "0", "{console}");
    assert_eq!(section("umount"), "umounted", "{console}");
}
