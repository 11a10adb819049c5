//! Seeded random layers: entries built from a vocabulary of hostile
//! pieces, and random byte damage to valid streams. Whatever they hold,
//! applying them must not panic and must not touch anything outside the
//! root. Deterministic (a fixed-seed xorshift), so a failure reproduces.

mod common;

use common::{Layer, Raw, snapshot};
use image_store::{ApplyOptions, Compression, apply};
use tar::EntryType;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn random_path(rng: &mut Rng, outside: &str) -> String {
    let parts = [
        "a",
        "b",
        "..",
        ".",
        "",
        "esc",
        ".wh.a",
        ".wh..wh..opq",
        ".wh.esc",
        "link",
        outside,
    ];
    let n = 1 + rng.next() % 4;
    let mut p = if rng.next().is_multiple_of(4) {
        "/".to_string()
    } else {
        String::new()
    };
    for i in 0..n {
        if i > 0 {
            p.push('/');
        }
        p.push_str(rng.pick(&parts));
    }
    p
}

fn random_layer(rng: &mut Rng, outside: &str) -> Vec<u8> {
    let mut l = Layer::new();
    for _ in 0..(1 + rng.next() % 12) {
        let path = random_path(rng, outside);
        let target = random_path(rng, outside);
        let kind = match rng.next() % 7 {
            0 => EntryType::Directory,
            1 | 2 => EntryType::Symlink,
            3 => EntryType::Link,
            4 => EntryType::Fifo,
            _ => EntryType::Regular,
        };
        l.raw(Raw {
            kind,
            path: path.as_bytes(),
            link: target.as_bytes(),
            data: if kind == EntryType::Regular {
                b"pwned"
            } else {
                b""
            },
            mode: (rng.next() % 0o10000) as u32 | 0o200,
            ..Raw::default()
        });
    }
    l.tar()
}

#[test]
fn random_hostile_layers_never_escape_or_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..40 {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("a"), b"keep").unwrap();
        std::fs::create_dir(outside.join("b")).unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let before = snapshot(&outside);
        for _ in 0..5 {
            let layer = random_layer(&mut rng, outside.to_str().unwrap());
            let _ = apply(&root, &layer[..], &ApplyOptions::default());
        }
        assert_eq!(
            before.0,
            snapshot(&outside).0,
            "round {round} changed the outside dir"
        );
        assert!(std::fs::symlink_metadata(&root).unwrap().is_dir());
    }
}

#[test]
fn damaged_streams_are_errors_not_panics() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut l = Layer::new();
    l.dir("d", 0o755)
        .file("d/f", &[1u8; 3000])
        .symlink("d/s", "f")
        .hardlink("d/h", "d/f");
    l.raw(Raw {
        path: b"d/p",
        data: b"x",
        pax: vec![("mtime", b"12.5"), ("SCHILY.xattr.user.a", b"v")],
        ..Raw::default()
    });
    let plain = l.tar();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&plain[..], 3).unwrap();
    for (base, c) in [
        (&plain, Compression::None),
        (&gz, Compression::Gzip),
        (&zst, Compression::Zstd),
    ] {
        for _ in 0..60 {
            let mut data = base.clone();
            for _ in 0..(1 + rng.next() % 4) {
                let i = (rng.next() % data.len() as u64) as usize;
                data[i] ^= 1 << (rng.next() % 8);
            }
            if rng.next().is_multiple_of(3) {
                data.truncate((rng.next() % data.len() as u64) as usize);
            }
            let tmp = tempfile::tempdir().unwrap();
            let _ = apply(
                tmp.path(),
                &data[..],
                &ApplyOptions {
                    compression: c,
                    ..ApplyOptions::default()
                },
            );
        }
    }
}
