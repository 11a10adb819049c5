//! A corpus of hostile layers: whatever they contain, nothing outside the
//! target root may be created, overwritten, linked, chmodded or deleted.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Layer, Raw, snapshot};
use image_store::{ApplyOptions, WhiteoutMode, apply};
use tar::EntryType;

/// One hostile case: layers built against the absolute path of the
/// protected directory, applied in order.
struct Case {
    name: &'static str,
    layers: fn(&str) -> Vec<Vec<u8>>,
}

fn one(f: impl FnOnce(&mut Layer)) -> Vec<u8> {
    let mut l = Layer::new();
    f(&mut l);
    l.tar()
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "dotdot file",
            layers: |_| {
                vec![one(|l| {
                    l.file("../outside/secret", b"pwned");
                    l.file("../../../../../../../outside/new", b"pwned");
                })]
            },
        },
        Case {
            name: "absolute file",
            layers: |o| {
                vec![one(|l| {
                    l.file(&format!("{o}/secret"), b"pwned");
                    l.file(&format!("{o}/new"), b"pwned");
                })]
            },
        },
        Case {
            name: "absolute symlink escape, same layer",
            layers: |o| {
                vec![one(|l| {
                    l.symlink("esc", o);
                    l.file("esc/secret", b"pwned");
                    l.file("esc/new", b"pwned");
                    l.dir("esc/newdir", 0o777);
                })]
            },
        },
        Case {
            name: "relative symlink escape",
            layers: |_| {
                vec![one(|l| {
                    l.symlink("esc", "../../../../../../../../outside");
                    l.symlink("esc2", "../outside");
                    l.file("esc/secret", b"pwned");
                    l.file("esc2/secret", b"pwned");
                })]
            },
        },
        Case {
            name: "symlink chain",
            layers: |o| {
                vec![one(|l| {
                    l.dir("a", 0o755);
                    l.symlink("a/b", "../c");
                    l.symlink("c", "d/..");
                    l.symlink("d", o);
                    l.file("a/b/secret", b"pwned");
                    l.file("c/new", b"pwned");
                })]
            },
        },
        Case {
            name: "symlink escape from an earlier layer",
            layers: |o| {
                vec![
                    one(|l| {
                        l.symlink("esc", o);
                        l.symlink("rel", "../../../../../..");
                    }),
                    one(|l| {
                        l.file("esc/secret", b"pwned");
                        l.file("rel/outside/secret", b"pwned");
                        l.hardlink("esc/new", "etc-ish");
                    }),
                ]
            },
        },
        Case {
            name: "hardlink to outside",
            layers: |o| {
                vec![one(|l| {
                    l.hardlink("h1", &format!("{o}/secret"));
                    l.hardlink("h2", "../outside/secret");
                    l.symlink("esc", o);
                    l.hardlink("h3", "esc/secret");
                    l.file("h1", b"pwned");
                })]
            },
        },
        Case {
            name: "overwrite through a symlink to a file",
            layers: |o| {
                vec![
                    one(|l| {
                        l.symlink("f", &format!("{o}/secret"));
                        l.symlink("dangling", &format!("{o}/new"));
                    }),
                    one(|l| {
                        l.file("f", b"pwned");
                        l.file("dangling", b"pwned");
                        l.raw(Raw {
                            kind: EntryType::Fifo,
                            path: b"f",
                            ..Raw::default()
                        });
                    }),
                ]
            },
        },
        Case {
            name: "whiteout through a symlink",
            layers: |o| {
                vec![
                    one(|l| {
                        l.symlink("esc", o);
                        l.symlink("rel", "../outside");
                    }),
                    one(|l| {
                        l.file("esc/.wh.secret", b"");
                        l.file("rel/.wh.secret", b"");
                        l.file("esc/.wh..wh..opq", b"");
                        l.file("rel/.wh..wh..opq", b"");
                        l.file(".wh.esc", b"");
                    }),
                ]
            },
        },
        Case {
            name: "whiteout with dotdot",
            layers: |_| {
                vec![one(|l| {
                    l.file("../outside/.wh.secret", b"");
                    l.file("x/../../outside/.wh..wh..opq", b"");
                    l.file(".wh...", b"");
                })]
            },
        },
        Case {
            name: "symlink named like the root",
            layers: |o| {
                vec![
                    one(|l| {
                        l.symlink(".", o);
                        l.symlink("./", o);
                        l.symlink("/", o);
                    }),
                    one(|l| {
                        l.file("secret", b"pwned");
                    }),
                ]
            },
        },
        Case {
            name: "chmod through symlinks",
            layers: |o| {
                vec![
                    one(|l| {
                        l.symlink("s", &format!("{o}/secret"));
                        l.symlink("sd", o);
                    }),
                    one(|l| {
                        // A directory entry whose name is then taken by a symlink
                        // in the same layer: the deferred chmod must not follow it.
                        l.dir("d", 0o777);
                        l.symlink("d", o);
                        l.raw(Raw {
                            kind: EntryType::Directory,
                            path: b"sd/",
                            mode: 0o777,
                            ..Raw::default()
                        });
                        l.hardlink("s2", "s");
                    }),
                ]
            },
        },
        Case {
            name: "device and fifo through symlinks",
            layers: |o| {
                vec![one(|l| {
                    l.symlink("esc", o);
                    l.raw(Raw {
                        kind: EntryType::Fifo,
                        path: b"esc/fifo",
                        ..Raw::default()
                    });
                    l.raw(Raw {
                        kind: EntryType::Char,
                        path: b"esc/null",
                        dev: (1, 3),
                        ..Raw::default()
                    });
                })]
            },
        },
    ]
}

fn run(mode: WhiteoutMode) {
    let root_user = rustix::process::geteuid().is_root();
    for case in cases() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"original").unwrap();
        std::fs::set_permissions(
            outside.join("secret"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o700)).unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let before = snapshot(tmp.path());
        let outside_before = snapshot(&outside);
        let opts = ApplyOptions {
            whiteouts: mode,
            ..ApplyOptions::default()
        };
        for layer in (case.layers)(outside.to_str().unwrap()) {
            // Refusing an entry is fine; escaping is not.
            let _ = apply(&root, &layer[..], &opts);
        }
        let outside_after = snapshot(&outside);
        assert_eq!(
            outside_before.0, outside_after.0,
            "case {:?} ({mode:?}) changed the outside dir",
            case.name
        );
        assert_eq!(
            outside_before.1, outside_after.1,
            "case {:?} ({mode:?}) changed inodes outside",
            case.name
        );
        let nlink = std::fs::symlink_metadata(outside.join("secret"))
            .map(|m| std::os::unix::fs::MetadataExt::nlink(&m))
            .unwrap();
        assert_eq!(
            nlink, 1,
            "case {:?} ({mode:?}) hardlinked the outside file",
            case.name
        );
        // The root is still a directory, and nothing beside it appeared.
        assert!(
            std::fs::symlink_metadata(&root).unwrap().is_dir(),
            "case {:?}",
            case.name
        );
        let after = snapshot(tmp.path());
        let top_before: Vec<_> = before
            .0
            .keys()
            .filter(|p| p.components().count() == 1)
            .collect();
        let top_after: Vec<_> = after
            .0
            .keys()
            .filter(|p| p.components().count() == 1)
            .collect();
        assert_eq!(top_before, top_after, "case {:?}", case.name);
        let _ = root_user;
    }
}

#[test]
fn hostile_layers_stay_inside_root_when_flattening() {
    run(WhiteoutMode::Remove);
}

#[test]
fn hostile_layers_stay_inside_root_in_overlay_snapshots() {
    if !common::require_root("hostile_layers_stay_inside_root_in_overlay_snapshots") {
        return;
    }
    run(WhiteoutMode::Overlay);
}

#[test]
fn escaping_writes_land_inside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mut l = Layer::new();
    l.dir("etc", 0o755)
        .symlink("esc", "/etc")
        .file("esc/passwd", b"inside")
        .file("../../x", b"x");
    apply(&root, &l.tar()[..], &ApplyOptions::default()).unwrap();
    assert_eq!(std::fs::read(root.join("etc/passwd")).unwrap(), b"inside");
    assert_eq!(std::fs::read(root.join("x")).unwrap(), b"x");
    assert!(!Path::new(&tmp.path().join("x")).exists());
}
