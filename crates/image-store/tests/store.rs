//! The store: imports, verification, names, atomicity, locking, rm and gc.

mod common;

use std::path::Path;

use common::{
    Comp, Layer, put_blob, put_image, put_index, require_tool, run, sample_layers, sha256, tar_dir,
};
use image_store::{Error, ImportOptions, NoProgress, Store};

fn import(store: &Store, p: &Path) -> image_store::Result<Vec<image_store::Imported>> {
    store.import(p, &ImportOptions::default(), &NoProgress)
}

fn names(store: &Store) -> Vec<String> {
    store.list().unwrap().into_iter().map(|(n, _)| n).collect()
}

#[test]
fn imports_an_oci_layout_readable_by_skopeo_and_umoci() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("myapp");
    let m = put_image(&layout, &sample_layers(), Comp::Gzip, "amd64");
    put_index(&layout, &[(Some("latest"), m)]);
    let store = Store::open(tmp.path().join("store")).unwrap();
    let got = import(&store, &layout).unwrap();
    assert_eq!(got[0].name, "localhost/myapp:latest");
    assert_eq!(names(&store), ["localhost/myapp:latest"]);
    let image = store.image("localhost/myapp").unwrap();
    assert_eq!(image.layers.len(), 2);

    let root = store.root().to_str().unwrap().to_string();
    if require_tool(
        "skopeo",
        "imports_an_oci_layout_readable_by_skopeo_and_umoci",
    ) {
        let (ok, out) = run(
            "skopeo",
            &["inspect", &format!("oci:{root}:localhost/myapp:latest")],
        );
        assert!(ok, "skopeo: {out}");
        assert!(out.contains(&image.layers[1].blob.digest_str), "{out}");
    }
    if require_tool("umoci", "imports_an_oci_layout_readable_by_umoci") {
        let bundle = tmp.path().join("bundle");
        let (ok, out) = run(
            "umoci",
            &[
                "unpack",
                "--rootless",
                "--image",
                &format!("{root}:localhost/myapp:latest"),
                bundle.to_str().unwrap(),
            ],
        );
        assert!(ok, "umoci: {out}");
        assert_eq!(
            std::fs::read(bundle.join("rootfs/etc/hostname")).unwrap(),
            b"upper\n"
        );
    }
}

#[test]
fn imports_oci_archive_and_names_like_containerd() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let m = put_image(&layout, &sample_layers(), Comp::Zstd, "amd64");
    put_index(
        &layout,
        &[(Some("busybox"), m.clone()), (Some("quay.io/x/y:1"), m)],
    );
    let archive = tmp.path().join("img.tar");
    std::fs::write(&archive, tar_dir(&layout)).unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    import(&store, &archive).unwrap();
    // A bare word is a tag (as umoci and skopeo write): named after the file.
    assert_eq!(names(&store), ["localhost/img:busybox", "quay.io/x/y:1"]);
    let opts = ImportOptions {
        name: Some("busybox".into()),
        ..ImportOptions::default()
    };
    let err = store.import(&archive, &opts, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("2 images"), "{err}");
}

#[test]
fn imports_docker_save_tarballs() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = sample_layers();
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_name = format!("{}.json", &sha256(&config)[7..]);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, name, data).unwrap();
    };
    add(&config_name, &config);
    add("aaa/layer.tar", &layers[0]);
    add("bbb/layer.tar", &layers[1]);
    let manifest = serde_json::json!([{"Config": config_name, "RepoTags": ["busybox:1.36", "example.com/team/app:v2"], "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}]);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    let path = tmp.path().join("save.tar");
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    import(&store, &path).unwrap();
    assert_eq!(
        names(&store),
        ["docker.io/library/busybox:1.36", "example.com/team/app:v2"]
    );
    let img = store.image("busybox:1.36").unwrap();
    assert_eq!(img.layers[0].diff_id.to_string(), sha256(&layers[0]));
    let rootfs = tmp.path().join("rootfs");
    store.unpack("busybox:1.36", &rootfs, &NoProgress).unwrap();
    assert_eq!(
        std::fs::read(rootfs.join("etc/hostname")).unwrap(),
        b"upper\n"
    );
}

#[test]
fn picks_this_platform_from_an_index_and_docker_manifest_list() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("multi");
    let mut other = Layer::new();
    other.file("arch", b"arm64");
    let mut mine = Layer::new();
    mine.file("arch", b"host");
    let host = image_store::Platform::host();
    let arm = put_image(&layout, &[other.tar()], Comp::Gzip, "arm64");
    let here = put_image(&layout, &[mine.tar()], Comp::Gzip, &host.architecture);
    let with_platform = |d: &serde_json::Value, arch: &str| {
        let mut d = d.clone();
        d["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
        d
    };
    let list = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [with_platform(&arm, "arm64-nope"), with_platform(&here, &host.architecture)],
    });
    let list = put_blob(
        &layout,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        &serde_json::to_vec(&list).unwrap(),
    );
    let oci_index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [with_platform(&arm, "arm64-nope"), with_platform(&here, &host.architecture)],
    });
    let oci_index = put_blob(
        &layout,
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&oci_index).unwrap(),
    );
    put_index(
        &layout,
        &[
            (Some("a.io/list:1"), list),
            (Some("a.io/index:1"), oci_index),
        ],
    );
    let store = Store::open(tmp.path().join("store")).unwrap();
    import(&store, &layout).unwrap();
    for name in ["a.io/list:1", "a.io/index:1"] {
        let dest = tmp.path().join(name.replace(['/', ':'], "_"));
        store.unpack(name, &dest, &NoProgress).unwrap();
        assert_eq!(std::fs::read(dest.join("arch")).unwrap(), b"host");
    }
    let opts = ImportOptions {
        platform: image_store::Platform {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        },
        ..ImportOptions::default()
    };
    let err = Store::open(tmp.path().join("store2"))
        .unwrap()
        .import(&layout, &opts, &NoProgress)
        .unwrap_err();
    assert!(matches!(err, Error::NoMatchingPlatform { .. }), "{err}");
}

/// Builds a layout, lets `corrupt` damage it, and checks the import fails
/// with an error naming the blob and leaves no image visible.
fn assert_rejected(corrupt: impl FnOnce(&Path, &serde_json::Value), want: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("bad");
    let m = put_image(&layout, &sample_layers(), Comp::Gzip, "amd64");
    put_index(&layout, &[(Some("x.io/bad:1"), m.clone())]);
    corrupt(&layout, &m);
    let store = Store::open(tmp.path().join("store")).unwrap();
    let err = import(&store, &layout).unwrap_err();
    assert!(err.to_string().contains(want), "{err} lacks {want}");
    assert!(names(&store).is_empty());
    assert!(
        std::fs::read_dir(tmp.path().join("store/.store/tmp"))
            .unwrap()
            .next()
            .is_none(),
        "temp files left"
    );
}

fn layer_blob(layout: &Path, m: &serde_json::Value, i: usize) -> (String, std::path::PathBuf) {
    let mhex = &m["digest"].as_str().unwrap()[7..];
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(mhex)).unwrap())
            .unwrap();
    let d = manifest["layers"][i]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let p = layout.join("blobs/sha256").join(&d[7..]);
    (d, p)
}

#[test]
fn corrupt_blob_is_rejected_naming_it() {
    let mut digest = String::new();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("bad");
    let m = put_image(&layout, &sample_layers(), Comp::Gzip, "amd64");
    let (d, p) = layer_blob(&layout, &m, 1);
    digest.push_str(&d);
    let _ = (layout, p);
    assert_rejected(
        |layout, m| {
            let (_, p) = layer_blob(layout, m, 1);
            let mut data = std::fs::read(&p).unwrap();
            let n = data.len();
            data[n / 2] ^= 0xff;
            std::fs::write(&p, data).unwrap();
        },
        &digest,
    );
}

#[test]
fn wrong_size_missing_blob_bad_digest_and_bad_diff_id_are_rejected() {
    assert_rejected(
        |layout, m| {
            let (_, p) = layer_blob(layout, m, 0);
            let mut data = std::fs::read(&p).unwrap();
            data.extend_from_slice(b"trailing");
            std::fs::write(&p, data).unwrap();
        },
        "expected",
    );
    assert_rejected(
        |layout, m| {
            let (_, p) = layer_blob(layout, m, 0);
            std::fs::remove_file(p).unwrap();
        },
        "missing",
    );
    assert_rejected(
        |layout, _| {
            let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:../../../../etc/passwd", "size": 1, "annotations": {"org.opencontainers.image.ref.name": "x"}}]});
            std::fs::write(
                layout.join("index.json"),
                serde_json::to_vec(&index).unwrap(),
            )
            .unwrap();
        },
        "invalid digest",
    );
    // A layer whose content does not match the config's diff_id.
    assert_rejected(
        |layout, m| {
            let mut other = Layer::new();
            other.file("evil", b"x");
            let other = other.gzip();
            let mhex = &m["digest"].as_str().unwrap()[7..];
            let mut manifest: serde_json::Value = serde_json::from_slice(
                &std::fs::read(layout.join("blobs/sha256").join(mhex)).unwrap(),
            )
            .unwrap();
            manifest["layers"][1] = put_blob(
                layout,
                "application/vnd.oci.image.layer.v1.tar+gzip",
                &other,
            );
            let m2 = put_blob(
                layout,
                "application/vnd.oci.image.manifest.v1+json",
                &serde_json::to_vec(&manifest).unwrap(),
            );
            put_index(layout, &[(Some("x.io/bad:1"), m2)]);
        },
        "diff_id",
    );
}

#[test]
fn stale_temp_files_are_cleaned_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let stale = tmp.path().join(".store/tmp/blob-killed-import");
    std::fs::write(&stale, b"half").unwrap();
    drop(store);
    Store::open(tmp.path()).unwrap();
    assert!(!stale.exists());
}

#[test]
fn concurrent_imports_sharing_layers_both_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = sample_layers();
    let mut extra = Layer::new();
    extra.file("only-b", b"b");
    let la = tmp.path().join("a");
    put_index(
        &la,
        &[(
            Some("x.io/a:1"),
            put_image(&la, &layers, Comp::Gzip, "amd64"),
        )],
    );
    let lb = tmp.path().join("b");
    let mut lbs = layers.clone();
    lbs.push(extra.tar());
    put_index(
        &lb,
        &[(Some("x.io/b:1"), put_image(&lb, &lbs, Comp::Gzip, "amd64"))],
    );
    let root = tmp.path().join("store");
    Store::open(&root).unwrap();
    std::thread::scope(|s| {
        for _ in 0..3 {
            for l in [&la, &lb] {
                let root = root.clone();
                s.spawn(move || {
                    let store = Store::open(&root).unwrap();
                    import(&store, l).unwrap();
                });
            }
        }
    });
    let store = Store::open(&root).unwrap();
    assert_eq!(names(&store), ["x.io/a:1", "x.io/b:1"]);
}

#[test]
fn rm_and_gc_keep_shared_and_leased_content() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = sample_layers();
    let la = tmp.path().join("a");
    put_index(
        &la,
        &[(
            Some("x.io/a:1"),
            put_image(&la, &layers[..1], Comp::Gzip, "amd64"),
        )],
    );
    let lb = tmp.path().join("b");
    put_index(
        &lb,
        &[(
            Some("x.io/b:1"),
            put_image(&lb, &layers, Comp::Gzip, "amd64"),
        )],
    );
    let store = Store::open(tmp.path().join("store")).unwrap();
    import(&store, &la).unwrap();
    import(&store, &lb).unwrap();
    let a = store.image("x.io/a:1").unwrap();
    let b = store.image("x.io/b:1").unwrap();
    assert_eq!(store.gc().unwrap().blobs_removed, 0);
    store
        .add_lease(&store.lease_for("keep-b", &b, None))
        .unwrap();
    store.remove("x.io/b:1").unwrap();
    assert!(matches!(
        store.remove("x.io/b:1"),
        Err(Error::ImageNotFound { .. })
    ));
    assert_eq!(store.gc().unwrap().blobs_removed, 0, "the lease holds b");
    store.remove_lease("keep-b").unwrap();
    let stats = store.gc().unwrap();
    // b's manifest, config and its own top layer go; the shared base stays.
    assert_eq!(stats.blobs_removed, 3);
    assert!(store.has_blob(&a.layers[0].blob.digest().unwrap()));
    assert!(!store.has_blob(&b.layers[1].blob.digest().unwrap()));
    let rootfs = tmp.path().join("rootfs");
    store.unpack("x.io/a:1", &rootfs, &NoProgress).unwrap();
    assert_eq!(
        std::fs::read(rootfs.join("etc/hostname")).unwrap(),
        b"base\n"
    );
}

#[test]
fn unpack_flattens_and_failed_unpack_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("app");
    let m = put_image(&layout, &sample_layers(), Comp::Gzip, "amd64");
    put_index(&layout, &[(Some("x.io/app:1"), m.clone())]);
    let store = Store::open(tmp.path().join("store")).unwrap();
    import(&store, &layout).unwrap();
    let rootfs = tmp.path().join("rootfs");
    store.unpack("x.io/app:1", &rootfs, &NoProgress).unwrap();
    assert!(!rootfs.join("etc/remove-me").exists());
    assert!(!rootfs.join("var/cache/old").exists());
    assert_eq!(std::fs::read(rootfs.join("var/cache/new")).unwrap(), b"new");
    assert!(matches!(
        store.unpack("x.io/app:1", &rootfs, &NoProgress),
        Err(Error::TargetNotEmpty { .. })
    ));
    // Damage a stored layer: unpack fails naming it and leaves no rootfs.
    let img = store.image("x.io/app:1").unwrap();
    let blob = store.blob_path(&img.layers[1].blob.digest().unwrap());
    let data = std::fs::read(&blob).unwrap();
    std::fs::write(&blob, &data[..data.len() - 20]).unwrap();
    let dest = tmp.path().join("rootfs2");
    let err = store.unpack("x.io/app:1", &dest, &NoProgress).unwrap_err();
    assert!(
        err.to_string().contains(&img.layers[1].blob.digest_str),
        "{err}"
    );
    assert!(!dest.exists());
}

/// An archive streamed through a pipe, as from a socket: imported without a
/// file, verified as it streams; garbage through the same path is a clear
/// error that stores nothing.
#[test]
fn imports_an_archive_streamed_from_a_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("piped");
    let m = put_image(&layout, &sample_layers(), Comp::Gzip, "amd64");
    put_index(&layout, &[(Some("v1"), m)]);
    let archive = tar_dir(&layout);
    let store = Store::open(tmp.path().join("store")).unwrap();
    let (reader, mut writer) = std::io::pipe().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write as _;
        for chunk in archive.chunks(7000) {
            writer.write_all(chunk).unwrap();
        }
    });
    let got = store
        .import_reader("upload", reader, &ImportOptions::default(), &NoProgress)
        .unwrap();
    feeder.join().unwrap();
    assert_eq!(got[0].name, "localhost/upload:v1");
    assert_eq!(store.image("localhost/upload:v1").unwrap().layers.len(), 2);

    let store2 = Store::open(tmp.path().join("store2")).unwrap();
    let junk: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let err = store2
        .import_reader("junk", &junk[..], &ImportOptions::default(), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("junk"), "{err}");
    assert!(names(&store2).is_empty());
    assert_eq!(
        std::fs::read_dir(store2.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}
