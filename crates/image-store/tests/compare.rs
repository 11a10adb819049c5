//! Our flattened unpack against `umoci unpack`, and our overlay snapshots
//! (mounted) against our flattened unpack, for the same image.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{
    Comp, Layer, Node, Raw, put_image, put_index, require_root, require_tool, run, sample_layers,
    snapshot,
};
use image_store::{ImportOptions, NoProgress, Store};
use tar::EntryType;

/// Layers exercising every entry type and the tricky orderings.
fn rich_layers() -> Vec<Vec<u8>> {
    let mut layers = sample_layers();
    let mut l3 = Layer::new();
    let long = format!("deep/{}/{}", "a".repeat(90), "b".repeat(90));
    l3.dir("dev", 0o755)
        .raw(Raw {
            kind: EntryType::Char,
            path: b"dev/null",
            mode: 0o666,
            dev: (1, 3),
            ..Raw::default()
        })
        .raw(Raw {
            kind: EntryType::Block,
            path: b"dev/loop9",
            mode: 0o660,
            dev: (7, 9),
            gid: 6,
            ..Raw::default()
        })
        .raw(Raw {
            kind: EntryType::Fifo,
            path: b"dev/initctl",
            mode: 0o600,
            ..Raw::default()
        })
        .raw(Raw {
            kind: EntryType::Directory,
            path: b"tmp",
            mode: 0o1777,
            ..Raw::default()
        })
        .raw(Raw {
            kind: EntryType::Directory,
            path: b"srv",
            mode: 0o2750,
            uid: 33,
            gid: 33,
            ..Raw::default()
        })
        .raw(Raw {
            path: b"srv/data",
            data: b"owned",
            mode: 0o640,
            uid: 33,
            gid: 33,
            ..Raw::default()
        })
        .raw(Raw {
            path: long.as_bytes(),
            data: b"long name",
            ..Raw::default()
        })
        .hardlink("srv/data-link", "srv/data")
        .hardlink("srv/data-link2", "srv/data")
        // Directory replaced by a file, file replaced by a directory.
        .file("var", b"var is a file now")
        .dir("etc/hostname", 0o755)
        .file("etc/hostname/inside", b"i")
        .symlink("etc/localtime", "/usr/share/zoneinfo/UTC");
    layers.push(l3.tar());
    let mut l4 = Layer::new();
    // The opaque marker after its siblings, and a whiteout of a dir.
    l4.dir("srv", 0o2750)
        .raw(Raw {
            path: b"srv/fresh",
            data: b"f",
            uid: 33,
            gid: 33,
            ..Raw::default()
        })
        .file("srv/.wh..wh..opq", b"")
        .file(".wh.deep", b"")
        .raw(Raw {
            path: b"usr/bin/suid",
            data: b"s2",
            mode: 0o6755,
            ..Raw::default()
        });
    layers.push(l4.tar());
    layers
}

fn image(tmp: &Path) -> (Store, String) {
    let layout = tmp.join("rich");
    let m = put_image(&layout, &rich_layers(), Comp::Gzip, "amd64");
    put_index(&layout, &[(Some("x.io/rich:1"), m)]);
    let store = Store::open(tmp.join("store")).unwrap();
    store
        .import(&layout, &ImportOptions::default(), &NoProgress)
        .unwrap();
    (store, "x.io/rich:1".to_string())
}

/// Groups of paths sharing an inode (only groups of two or more).
fn link_groups(
    inodes: &BTreeMap<PathBuf, u64>,
    nodes: &BTreeMap<PathBuf, Node>,
) -> BTreeSet<Vec<PathBuf>> {
    let mut by: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    for (p, ino) in inodes {
        if nodes[p].kind != "dir" {
            by.entry(*ino).or_default().push(p.clone());
        }
    }
    by.into_values().filter(|g| g.len() > 1).collect()
}

fn assert_same_tree(ours: &Path, theirs: &Path, check_links: bool, what: &str) {
    let (mut a, ai) = snapshot(ours);
    let (mut b, bi) = snapshot(theirs);
    if check_links {
        assert_eq!(
            link_groups(&ai, &a),
            link_groups(&bi, &b),
            "{what}: hardlink groups differ"
        );
    }
    // The root directory itself is the caller's, not the image's.
    a.remove(Path::new(""));
    b.remove(Path::new(""));
    for n in a.values_mut().chain(b.values_mut()) {
        // Directory mtimes change when overlayfs or the whiteout removal
        // touches them; file and link times must match.
        if n.kind == "dir" {
            n.mtime = (0, 0);
        }
    }
    for must in [
        "dev/null",
        "srv/fresh",
        "etc/hostname/inside",
        "usr/bin/suid",
        "bin/ls",
    ] {
        assert!(a.contains_key(Path::new(must)), "{what}: {must} missing");
    }
    for gone in ["srv/data", "deep", "etc/remove-me", "var/cache"] {
        assert!(!a.contains_key(Path::new(gone)), "{what}: {gone} present");
    }
    let keys_a: Vec<_> = a.keys().collect();
    let keys_b: Vec<_> = b.keys().collect();
    assert_eq!(keys_a, keys_b, "{what}: different paths");
    for (p, na) in &a {
        assert_eq!(na, &b[p], "{what}: {} differs", p.display());
    }
}

#[test]
fn flattened_unpack_matches_umoci() {
    if !require_root("flattened_unpack_matches_umoci")
        || !require_tool("umoci", "flattened_unpack_matches_umoci")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (store, name) = image(tmp.path());
    let ours = tmp.path().join("ours");
    store.unpack(&name, &ours, &NoProgress).unwrap();
    let bundle = tmp.path().join("bundle");
    let image = format!("{}:{name}", store.root().display());
    let (ok, out) = run(
        "umoci",
        &["unpack", "--image", &image, bundle.to_str().unwrap()],
    );
    assert!(ok, "umoci: {out}");
    assert_same_tree(&ours, &bundle.join("rootfs"), true, "unpack vs umoci");
}

/// Unmounts on drop so a failing test leaves no mount behind.
struct Unmount<'a>(&'a Store, PathBuf);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        if self.0.umount(&self.1).is_err() {
            let _ = rustix::mount::unmount(&self.1, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

#[test]
fn overlay_mount_of_snapshots_matches_flattened_unpack() {
    if !require_root("overlay_mount_of_snapshots_matches_flattened_unpack") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (store, name) = image(tmp.path());
    let flat = tmp.path().join("flat");
    store.unpack(&name, &flat, &NoProgress).unwrap();
    let mnt = tmp.path().join("mnt");
    let target = store.mount(&name, &mnt, &NoProgress).unwrap();
    let guard = Unmount(&store, target.clone());
    // Overlayfs gives a hardlink into a lower layer its own copy, so link
    // groups are compared only within the flattened tree (above).
    assert_same_tree(&target, &flat, false, "overlay vs flattened");
    // One snapshot per layer, keyed by chain id, shared on a second mount.
    let img = store.image(&name).unwrap();
    for l in &img.layers {
        assert!(store.snapshot_dir(&l.chain_id).is_dir());
    }
    drop(guard);
    assert!(std::fs::read_dir(&target).unwrap().next().is_none());
}

/// The most layers a Docker build makes: 127, each adding a file and
/// replacing a shared one. Their snapshot paths overflow the one page of
/// mount options the classic `mount(2)` takes.
#[test]
fn overlay_mount_of_127_layers() {
    if !require_root("overlay_mount_of_127_layers") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("many");
    let layers: Vec<Vec<u8>> = (0..127)
        .map(|i| {
            let mut l = common::Layer::new();
            l.file(&format!("layer-{i}"), format!("{i}\n").as_bytes())
                .file("top", format!("{i}\n").as_bytes());
            l.tar()
        })
        .collect();
    let m = common::put_image(&layout, &layers, common::Comp::Gzip, "amd64");
    common::put_index(&layout, &[(Some("latest"), m)]);
    // Under a long path, as a store under /var/lib would be and longer.
    let store_dir = tmp
        .path()
        .join("a-rather-long-directory-name-for-the-store/images");
    let store = Store::open(&store_dir).unwrap();
    store
        .import(&layout, &image_store::ImportOptions::default(), &NoProgress)
        .unwrap();
    let mnt = tmp.path().join("mnt");
    let target = store.mount("localhost/many", &mnt, &NoProgress).unwrap();
    let guard = Unmount(&store, target.clone());
    assert_eq!(std::fs::read(target.join("top")).unwrap(), b"126\n");
    for i in [0, 63, 126] {
        assert_eq!(
            std::fs::read(target.join(format!("layer-{i}"))).unwrap(),
            format!("{i}\n").as_bytes()
        );
    }
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 128);
    drop(guard);
}

/// An import with snapshots reads each layer once, and a mount afterwards
/// reads no blob at all: it still works with the layer blobs overwritten.
#[test]
fn import_with_snapshots_then_mount_reads_no_blob() {
    if !require_root("import_with_snapshots_then_mount_reads_no_blob") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("snap");
    let m = common::put_image(
        &layout,
        &common::sample_layers(),
        common::Comp::Zstd,
        "amd64",
    );
    common::put_index(&layout, &[(Some("latest"), m)]);
    let store = Store::open(tmp.path().join("store")).unwrap();
    let opts = ImportOptions {
        snapshots: true,
        ..ImportOptions::default()
    };
    store.import(&layout, &opts, &NoProgress).unwrap();
    let image = store.image("localhost/snap").unwrap();
    for l in &image.layers {
        assert!(store.snapshot_dir(&l.chain_id).is_dir());
        let blob = store.blob_path(&l.blob.digest().unwrap());
        assert!(blob.is_file());
        std::fs::write(&blob, b"not a layer any more").unwrap();
    }
    let flat = tmp.path().join("flat");
    let mnt = tmp.path().join("mnt");
    let target = store.mount("localhost/snap", &mnt, &NoProgress).unwrap();
    let guard = Unmount(&store, target.clone());
    assert_eq!(
        std::fs::read(target.join("etc/hostname")).unwrap(),
        b"upper\n"
    );
    drop(guard);
    // A flattened unpack reads the snapshots too.
    store.unpack("localhost/snap", &flat, &NoProgress).unwrap();
    assert_eq!(
        std::fs::read(flat.join("etc/hostname")).unwrap(),
        b"upper\n"
    );

    // A layer that does not match its diff_id (the manifest names the
    // upper layer where the config has the base's diff_id twice): no
    // snapshot, no image, no temp files.
    let store2 = Store::open(tmp.path().join("store2")).unwrap();
    let layers = common::sample_layers();
    let wrong = tmp.path().join("wrong");
    let m = common::put_image(
        &wrong,
        &[layers[0].clone(), layers[0].clone()],
        common::Comp::Gzip,
        "amd64",
    );
    let manifest_hex = m["digest"].as_str().unwrap()[7..].to_string();
    let mut man: serde_json::Value = serde_json::from_slice(
        &std::fs::read(wrong.join("blobs/sha256").join(&manifest_hex)).unwrap(),
    )
    .unwrap();
    let upper = common::put_blob(&wrong, "application/vnd.oci.image.layer.v1.tar", &layers[1]);
    man["layers"][1] = upper;
    let m = common::put_blob(
        &wrong,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&man).unwrap(),
    );
    common::put_index(&wrong, &[(Some("latest"), m)]);
    let err = store2
        .import(&wrong, &opts, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("diff_id"), "{err}");
    assert!(store2.list().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(store2.root().join(".store/snapshots"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(store2.root().join(".store/tmp"))
            .unwrap()
            .count(),
        0
    );
}

/// A flattened unpack from complete snapshots (read back as tar streams)
/// gives the same tree as one from the blobs: whiteouts, opaque dirs,
/// hardlinks, devices, xattrs, owners, modes and times.
#[test]
fn flattened_unpack_from_snapshots_matches_unpack_from_blobs() {
    if !require_root("flattened_unpack_from_snapshots_matches_unpack_from_blobs") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (store, name) = image(tmp.path());
    let from_blobs = tmp.path().join("from-blobs");
    store.unpack(&name, &from_blobs, &NoProgress).unwrap();
    let img = store.image(&name).unwrap();
    store.prepare_snapshots(&img, &NoProgress).unwrap();
    // Proof that no blob is read: damage every layer blob.
    for l in &img.layers {
        std::fs::write(store.blob_path(&l.blob.digest().unwrap()), b"gone").unwrap();
    }
    let from_snapshots = tmp.path().join("from-snapshots");
    store.unpack(&name, &from_snapshots, &NoProgress).unwrap();
    assert_same_tree(&from_snapshots, &from_blobs, true, "snapshots vs blobs");
}
