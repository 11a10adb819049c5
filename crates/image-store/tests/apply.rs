//! Layer application semantics on real directories.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{Layer, Raw, require_root, snapshot};
use image_store::{ApplyOptions, Compression, Error, WhiteoutMode, apply};
use tar::EntryType;

fn apply_bytes(root: &Path, layer: &[u8]) -> image_store::Result<image_store::ApplyStats> {
    apply(root, layer, &ApplyOptions::default())
}

fn overlay_opts() -> ApplyOptions {
    ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        ..ApplyOptions::default()
    }
}

#[test]
fn entry_types_modes_owners_and_times() {
    if !require_root("entry_types_modes_owners_and_times") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut l = Layer::new();
    l.raw(Raw {
        kind: EntryType::Directory,
        path: b"d/",
        mode: 0o2775,
        uid: 1000,
        gid: 2000,
        mtime: 1_000_000,
        pax: vec![("mtime", b"1000000.123456789")],
        ..Raw::default()
    });
    l.raw(Raw {
        path: b"d/suid",
        data: b"hello",
        mode: 0o4755,
        uid: 1000,
        gid: 2000,
        pax: vec![
            ("mtime", b"1500000000.5"),
            ("SCHILY.xattr.user.note", b"v1"),
        ],
        ..Raw::default()
    });
    l.dir("tmp", 0o1777);
    l.symlink("d/link", "suid");
    l.hardlink("d/hard", "d/suid");
    l.raw(Raw {
        kind: EntryType::Fifo,
        path: b"fifo",
        mode: 0o640,
        ..Raw::default()
    });
    l.raw(Raw {
        kind: EntryType::Char,
        path: b"null",
        mode: 0o666,
        dev: (1, 3),
        ..Raw::default()
    });
    l.raw(Raw {
        kind: EntryType::Block,
        path: b"loop0",
        mode: 0o660,
        dev: (7, 0),
        ..Raw::default()
    });
    let stats = apply_bytes(root, &l.tar()).unwrap();
    assert_eq!(stats.entries, 8);

    let d = std::fs::metadata(root.join("d")).unwrap();
    assert_eq!(d.mode() & 0o7777, 0o2775);
    assert_eq!((d.uid(), d.gid()), (1000, 2000));
    // Children were created after the directory: its mtime was set last.
    assert_eq!((d.mtime(), d.mtime_nsec()), (1_000_000, 123_456_789));
    let f = std::fs::symlink_metadata(root.join("d/suid")).unwrap();
    assert_eq!(f.mode() & 0o7777, 0o4755);
    assert_eq!((f.uid(), f.gid(), f.nlink()), (1000, 2000, 2));
    assert_eq!((f.mtime(), f.mtime_nsec()), (1_500_000_000, 500_000_000));
    assert_eq!(std::fs::read(root.join("d/hard")).unwrap(), b"hello");
    assert_eq!(
        std::fs::symlink_metadata(root.join("d/hard"))
            .unwrap()
            .ino(),
        f.ino()
    );
    assert_eq!(
        std::fs::read_link(root.join("d/link")).unwrap(),
        Path::new("suid")
    );
    assert_eq!(
        std::fs::metadata(root.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );
    let (nodes, _) = snapshot(root);
    assert_eq!(nodes[Path::new("fifo")].kind, "fifo");
    assert_eq!(nodes[Path::new("fifo")].mode, 0o640);
    assert_eq!(nodes[Path::new("null")].kind, "char");
    assert_eq!(nodes[Path::new("null")].rdev, rustix::fs::makedev(1, 3));
    assert_eq!(nodes[Path::new("loop0")].kind, "block");
    let mut buf = [0u8; 8];
    let n = rustix::fs::getxattr(root.join("d/suid"), "user.note", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"v1");
}

#[test]
fn whiteouts_remove_lower_files_and_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut l1 = Layer::new();
    l1.dir("a", 0o755)
        .file("a/b", b"1")
        .file("a/c", b"2")
        .dir("x", 0o755)
        .file("x/y", b"3");
    apply_bytes(root, &l1.tar()).unwrap();
    let mut l2 = Layer::new();
    l2.file("a/.wh.b", b"")
        .file(".wh.x", b"")
        .file(".wh.never-existed", b"");
    apply_bytes(root, &l2.tar()).unwrap();
    assert!(!root.join("a/b").exists());
    assert!(root.join("a/c").exists());
    assert!(!root.join("x").exists());
    assert!(!root.join("a/.wh.b").exists());
}

#[test]
fn opaque_dirs_in_any_entry_order() {
    for marker_first in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let mut l1 = Layer::new();
        l1.dir("d", 0o755)
            .file("d/old", b"o")
            .dir("d/sub", 0o755)
            .file("d/sub/old2", b"o")
            .file("keep", b"k");
        apply_bytes(root, &l1.tar()).unwrap();
        let mut l2 = Layer::new();
        if marker_first {
            l2.file("d/.wh..wh..opq", b"");
        }
        l2.dir("d", 0o750)
            .file("d/new", b"n")
            .file("d/sub/new2", b"n");
        if !marker_first {
            l2.file("d/.wh..wh..opq", b"");
        }
        apply_bytes(root, &l2.tar()).unwrap();
        let (nodes, _) = snapshot(root);
        let names: Vec<_> = nodes
            .keys()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["", "d", "d/new", "d/sub", "d/sub/new2", "keep"],
            "marker_first={marker_first}"
        );
        assert_eq!(nodes[Path::new("d")].mode, 0o750);
    }
}

#[test]
fn hardlink_to_a_lower_layer_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut l1 = Layer::new();
    l1.dir("bin", 0o755).file("bin/busybox", b"elf");
    apply_bytes(root, &l1.tar()).unwrap();
    let mut l2 = Layer::new();
    l2.hardlink("bin/sh", "bin/busybox")
        .hardlink("/bin/ls", "/bin/busybox");
    apply_bytes(root, &l2.tar()).unwrap();
    let ino = std::fs::metadata(root.join("bin/busybox")).unwrap().ino();
    assert_eq!(std::fs::metadata(root.join("bin/sh")).unwrap().ino(), ino);
    assert_eq!(std::fs::metadata(root.join("bin/ls")).unwrap().ino(), ino);
}

#[test]
fn directory_replaced_by_file_symlink_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut l1 = Layer::new();
    l1.dir("p", 0o755)
        .file("p/child", b"c")
        .dir("q", 0o755)
        .file("q/child", b"c")
        .file("r", b"file");
    apply_bytes(root, &l1.tar()).unwrap();
    let mut l2 = Layer::new();
    l2.file("p", b"now a file")
        .symlink("q", "p")
        .dir("r", 0o700)
        .file("r/inside", b"i");
    apply_bytes(root, &l2.tar()).unwrap();
    assert_eq!(std::fs::read(root.join("p")).unwrap(), b"now a file");
    assert_eq!(std::fs::read_link(root.join("q")).unwrap(), Path::new("p"));
    assert_eq!(std::fs::read(root.join("r/inside")).unwrap(), b"i");
    let mut l3 = Layer::new();
    l3.dir("p", 0o755)
        .file("p/again", b"a")
        .file("r", b"file again");
    apply_bytes(root, &l3.tar()).unwrap();
    assert_eq!(std::fs::read(root.join("p/again")).unwrap(), b"a");
    assert_eq!(std::fs::read(root.join("r")).unwrap(), b"file again");
}

#[test]
fn gnu_and_pax_long_names() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let long_dir = "d".repeat(120);
    let long_file = format!("{long_dir}/{}", "f".repeat(150));
    // GNU long names, written by the tar crate for a GNU header.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_size(4);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, &long_file, &b"gnu!"[..]).unwrap();
    apply_bytes(root, &b.into_inner().unwrap()).unwrap();
    assert_eq!(std::fs::read(root.join(&long_file)).unwrap(), b"gnu!");
    // PAX path and linkpath.
    let pax_file = format!("{long_dir}/{}", "p".repeat(140));
    let pax_link = format!("{long_dir}/{}", "l".repeat(140));
    let mut l = Layer::new();
    l.file(&pax_file, b"pax!").hardlink(&pax_link, &pax_file);
    apply_bytes(root, &l.tar()).unwrap();
    assert_eq!(std::fs::read(root.join(&pax_link)).unwrap(), b"pax!");
}

#[test]
fn gzip_and_zstd_layers_by_detection_and_by_media_type() {
    let build = || {
        let mut l = Layer::new();
        l.dir("etc", 0o755).file("etc/hostname", b"box\n");
        l
    };
    for (bytes, c) in [
        (build().gzip(), Compression::Gzip),
        (build().zstd(), Compression::Zstd),
        (build().tar(), Compression::None),
    ] {
        for compression in [Compression::Auto, c] {
            let tmp = tempfile::tempdir().unwrap();
            let opts = ApplyOptions {
                compression,
                ..ApplyOptions::default()
            };
            apply(tmp.path(), &bytes[..], &opts).unwrap();
            assert_eq!(
                std::fs::read(tmp.path().join("etc/hostname")).unwrap(),
                b"box\n"
            );
        }
    }
    assert_eq!(
        Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
        Some(Compression::Zstd)
    );
    assert_eq!(
        Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
        Some(Compression::Gzip)
    );
    assert_eq!(Compression::from_media_type("application/json"), None);
}

#[test]
fn truncated_and_corrupt_streams_are_errors() {
    let mut l = Layer::new();
    l.file("big", &vec![7u8; 100_000]);
    let gz = l.gzip();
    let tmp = tempfile::tempdir().unwrap();
    let err = apply_bytes(tmp.path(), &gz[..gz.len() / 2]).unwrap_err();
    assert!(
        matches!(err, Error::ReadLayer { .. } | Error::Entry { .. }),
        "{err}"
    );
    let mut bad = gz.clone();
    for b in &mut bad[20..60] {
        *b ^= 0x55;
    }
    assert!(apply_bytes(tmp.path(), &bad[..]).is_err());
}

#[test]
fn errors_name_the_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let mut l = Layer::new();
    l.hardlink("bin/sh", "bin/missing-target");
    let err = apply_bytes(tmp.path(), &l.tar()).unwrap_err();
    assert!(err.to_string().contains("bin/sh"), "{err}");
    let mut l = Layer::new();
    l.symlink(".", "/etc");
    let err = apply_bytes(tmp.path(), &l.tar()).unwrap_err();
    assert!(err.to_string().contains("root"), "{err}");
}

#[test]
fn overlay_mode_keeps_whiteouts_for_overlayfs() {
    if !require_root("overlay_mode_keeps_whiteouts_for_overlayfs") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut l = Layer::new();
    l.file(".wh.gone", b"")
        .dir("opq", 0o755)
        .file("opq/.wh..wh..opq", b"")
        .file("opq/new", b"n")
        .hardlink("sh", "bin/busybox");
    let stats = apply(root, &l.tar()[..], &overlay_opts()).unwrap();
    let (nodes, _) = snapshot(root);
    assert_eq!(nodes[Path::new("gone")].kind, "char");
    assert_eq!(nodes[Path::new("gone")].rdev, 0);
    let mut buf = [0u8; 4];
    let n = rustix::fs::getxattr(root.join("opq"), "trusted.overlay.opaque", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"y");
    assert_eq!(stats.pending_links.len(), 1);
    assert_eq!(stats.pending_links[0].target, Path::new("bin/busybox"));
}

#[test]
fn layer_cannot_forge_overlay_xattrs() {
    if !require_root("layer_cannot_forge_overlay_xattrs") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut l = Layer::new();
    l.raw(Raw {
        kind: EntryType::Directory,
        path: b"d",
        mode: 0o755,
        pax: vec![("SCHILY.xattr.trusted.overlay.opaque", b"y")],
        ..Raw::default()
    });
    apply(tmp.path(), &l.tar()[..], &overlay_opts()).unwrap();
    let mut buf = [0u8; 4];
    assert!(
        rustix::fs::getxattr(tmp.path().join("d"), "trusted.overlay.opaque", &mut buf).is_err()
    );
}

#[test]
fn failures_writing_small_files_name_the_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let mut l = Layer::new();
    l.file("ok", b"fine");
    // An xattr name longer than the kernel's 255-byte limit cannot be set.
    let long = format!("SCHILY.xattr.user.{}", "x".repeat(300));
    l.raw(Raw {
        path: b"bad-xattr",
        data: b"x",
        pax: vec![(long.as_str(), &b"v"[..])],
        ..Raw::default()
    });
    let err = apply_bytes(tmp.path(), &l.tar()).unwrap_err();
    assert!(err.to_string().contains("bad-xattr"), "{err}");
}
