//! Seeded random layers: entries built from a vocabulary of hostile
//! pieces, and random byte damage to valid streams. Whatever they hold,
//! applying one must not panic, must not touch anything outside the root,
//! and may fail only with the errors the applier gives for bad input: a
//! stream it cannot read, an entry it refuses, or an entry the tree below
//! cannot take. Every case has its own seed, named when it fails, so it
//! reproduces alone (a fixed-seed xorshift).

mod common;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use common::{Layer, Raw, snapshot};
use image_store::{ApplyOptions, ApplyStats, Compression, Error, apply};
use tar::EntryType;

struct Rng(u64);

impl Rng {
    /// A generator for one case: cases do not share a stream, so each
    /// reproduces from its own seed.
    fn for_case(base: u64, case: u64) -> Self {
        // xorshift never leaves zero; the odd multiplier spreads the cases.
        Rng((base ^ case.wrapping_mul(0x2545_f491_4f6c_dd1d)) | 1)
    }
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

/// Names the generated paths use besides `.`, `..` and the outside dir;
/// also what an escape would create next to the root's ancestors.
const NAMES: &[&str] = &["a", "b", "esc", ".wh.a", ".wh..wh..opq", ".wh.esc", "link"];

fn random_path(rng: &mut Rng, outside: &str) -> String {
    let mut parts = NAMES.to_vec();
    parts.extend(["..", ".", "", outside]);
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

/// A symlink target that leads out of the root unless resolution is
/// clamped there: up past it, to the host's `/`, or straight at the
/// outside dir; or back at a symlink, for loops.
fn escape_target(rng: &mut Rng, outside: &str) -> String {
    let outside_a = format!("{outside}/a");
    let outside_b = format!("{outside}/b");
    let targets = [
        "..",
        "../..",
        "../../..",
        "../outside",
        "../outside/a",
        "/",
        outside,
        &outside_a,
        &outside_b,
        "link",
        "/link",
    ];
    rng.pick(&targets).to_string()
}

fn random_layer(rng: &mut Rng, outside: &str) -> Vec<u8> {
    let mut l = Layer::new();
    for _ in 0..(1 + rng.next() % 12) {
        let kind = match rng.next() % 7 {
            0 => EntryType::Directory,
            1 | 2 => EntryType::Symlink,
            3 => EntryType::Link,
            4 => EntryType::Fifo,
            _ => EntryType::Regular,
        };
        // Half the symlinks sit where later paths go through them and
        // point out of the root.
        let (path, target) = if kind == EntryType::Symlink && rng.next().is_multiple_of(2) {
            let path = rng.pick(&["link", "a/link", "link/link"]).to_string();
            (path, escape_target(rng, outside))
        } else {
            (random_path(rng, outside), random_path(rng, outside))
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

/// What a case feeds the applier.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Input {
    /// A well-formed tar stream whose entries are hostile.
    Hostile,
    /// A valid stream with bits flipped or cut short.
    Damaged,
}

/// The `op`s of [`Error::Entry`] for work on one entry.
const ENTRY_OPS: &[&str] = &[
    "read metadata",
    "write file",
    "make directory",
    "make symlink",
    "make hardlink",
    "make device node",
    "apply whiteout",
];

/// Why an entry may fail on the tree below it: a missing parent or
/// hardlink target (or a dangling symlink in the way), a parent that is a
/// file or a symlink loop, a hardlink to a directory, a device node
/// without `CAP_MKNOD`. A damaged stream adds content or metadata that
/// does not decode, read while the entry is applied.
fn is_bad_input_cause(input: Input, op: &str, e: &io::Error) -> bool {
    use io::ErrorKind as K;
    if denied_without_root(e) {
        return true;
    }
    if !ENTRY_OPS.contains(&op) {
        return false;
    }
    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        return true;
    }
    match e.kind() {
        K::NotFound | K::NotADirectory | K::IsADirectory => true,
        K::PermissionDenied => {
            e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error())
                && matches!(op, "make hardlink" | "make device node")
        }
        K::UnexpectedEof | K::InvalidInput | K::InvalidData | K::Other => {
            input == Input::Damaged && matches!(op, "write file" | "read metadata")
        }
        _ => false,
    }
}

/// Without root, a directory mode a layer sets (the root's own included)
/// can deny the entries and layers after it; root is not subject to it.
fn denied_without_root(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::ACCESS.raw_os_error())
        && !rustix::process::geteuid().is_root()
}

/// Checks one apply's outcome; panics naming `case` on a panic inside
/// the applier or an error that bad input should not produce.
fn check_outcome(
    case: &str,
    input: Input,
    outcome: std::thread::Result<image_store::Result<ApplyStats>>,
) {
    let err = match outcome {
        Ok(Ok(_)) => return,
        Ok(Err(e)) => e,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            panic!("{case}: the applier panicked: {msg}");
        }
    };
    let expected = match &err {
        // Truncated or corrupt tar or compressed data; a well-formed
        // stream never reads as one.
        Error::ReadLayer { layer, .. } => input == Input::Damaged && layer == "stream",
        // Refused as such: would replace the root, a whiteout of nothing,
        // a link without a target or to the root, an unknown entry type.
        Error::BadEntry { .. } => true,
        Error::Entry { op, source, .. } => is_bad_input_cause(input, op, source),
        Error::Io { op, source, .. } => *op == "open layer root" && denied_without_root(source),
        _ => false,
    };
    assert!(expected, "{case}: unexpected error: {err:?}");
}

fn apply_case(case: &str, input: Input, root: &Path, data: &[u8], opts: &ApplyOptions) {
    let outcome = catch_unwind(AssertUnwindSafe(|| apply(root, data, opts)));
    check_outcome(case, input, outcome);
}

/// A scratch dir with `outside/` (content a layer must not reach) and
/// the empty target `root/` side by side.
struct Sandbox {
    tmp: tempfile::TempDir,
    outside: PathBuf,
    root: PathBuf,
}

/// What the checks compare: the outside tree, the names and mode of the
/// scratch dir holding it and the root, and which escape names exist
/// beside each ancestor of the scratch dir. The root is not walked: a
/// layer may leave directories there that only root can read.
#[derive(Debug, PartialEq)]
struct Around {
    outside: BTreeMap<PathBuf, common::Node>,
    scratch: (u32, Vec<std::ffi::OsString>),
    beside: Vec<(PathBuf, bool)>,
}

impl Sandbox {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("make scratch dir");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("make outside dir");
        std::fs::write(outside.join("a"), b"keep").expect("write outside/a");
        std::fs::create_dir(outside.join("b")).expect("make outside/b");
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).expect("make root dir");
        Sandbox { tmp, outside, root }
    }

    fn outside_str(&self) -> &str {
        self.outside.to_str().expect("temp dir path is UTF-8")
    }

    fn around(&self) -> Around {
        let outside = snapshot(&self.outside).0;
        let mode = std::fs::symlink_metadata(self.tmp.path())
            .expect("stat scratch dir")
            .permissions()
            .mode();
        let mut names: Vec<_> = std::fs::read_dir(self.tmp.path())
            .expect("list scratch dir")
            .map(|e| e.expect("read scratch dir entry").file_name())
            .collect();
        names.sort();
        // An escape through `..` or an absolute symlink lands beside an
        // ancestor: `/tmp/esc`, `/esc`.
        let beside = self
            .tmp
            .path()
            .ancestors()
            .skip(1)
            .flat_map(|dir| NAMES.iter().map(move |n| dir.join(n)))
            .map(|p| {
                let exists = std::fs::symlink_metadata(&p).is_ok();
                (p, exists)
            })
            .collect();
        Around {
            outside,
            scratch: (mode, names),
            beside,
        }
    }

    fn assert_untouched(&self, before: &Around, case: &str) {
        let after = self.around();
        assert_eq!(
            before.outside, after.outside,
            "{case} changed the outside dir"
        );
        assert_eq!(
            before.scratch, after.scratch,
            "{case} changed the dir beside the root"
        );
        for ((p, was), (_, is)) in before.beside.iter().zip(&after.beside) {
            // Only a new name counts: others may come and go in /tmp.
            assert!(!is || *was, "{case} created {}", p.display());
        }
        let md = std::fs::symlink_metadata(&self.root).expect("stat root");
        assert!(md.is_dir(), "{case} replaced the root");
    }
}

#[test]
fn random_hostile_layers_never_escape_or_panic() {
    const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..40 {
        let sb = Sandbox::new();
        let before = sb.around();
        // Layers of a round stack on one root, so later ones meet the
        // symlinks and files earlier ones left.
        for layer in 0..5 {
            let case = format!("seed {SEED:#x} case {round}.{layer}");
            let mut rng = Rng::for_case(SEED, round * 5 + layer);
            let data = random_layer(&mut rng, sb.outside_str());
            apply_case(
                &case,
                Input::Hostile,
                &sb.root,
                &data,
                &ApplyOptions::default(),
            );
            sb.assert_untouched(&before, &case);
        }
    }
}

#[test]
fn damaged_streams_are_errors_not_panics() {
    const SEED: u64 = 0xdead_beef_cafe_f00d;
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
    std::io::Write::write_all(&mut gz, &plain).expect("gzip in memory");
    let gz = gz.finish().expect("gzip in memory");
    let zst = zstd::encode_all(&plain[..], 3).expect("zstd in memory");
    for (base, c) in [
        (&plain, Compression::None),
        (&gz, Compression::Gzip),
        (&zst, Compression::Zstd),
    ] {
        for n in 0..60 {
            let case_no = c as u64 * 1000 + n;
            let case = format!("seed {SEED:#x} case {case_no} ({c:?})");
            let mut rng = Rng::for_case(SEED, case_no);
            let mut data = base.clone();
            for _ in 0..(1 + rng.next() % 4) {
                let i = (rng.next() % data.len() as u64) as usize;
                data[i] ^= 1 << (rng.next() % 8);
            }
            if rng.next().is_multiple_of(3) {
                data.truncate((rng.next() % data.len() as u64) as usize);
            }
            let sb = Sandbox::new();
            let before = sb.around();
            let opts = ApplyOptions {
                compression: c,
                ..ApplyOptions::default()
            };
            apply_case(&case, Input::Damaged, &sb.root, &data, &opts);
            sb.assert_untouched(&before, &case);
        }
    }
}

// The checks above must be able to fail: an error bad input does not
// explain, a panic, and a change beside the root each fail naming the case.

#[test]
#[should_panic(expected = "case io: unexpected error: Io")]
fn outcome_check_rejects_an_unrelated_error() {
    let tmp = tempfile::tempdir().expect("make scratch dir");
    let missing = tmp.path().join("missing");
    apply_case(
        "case io",
        Input::Damaged,
        &missing,
        &Layer::new().tar(),
        &ApplyOptions::default(),
    );
}

#[test]
#[should_panic(expected = "case eof: unexpected error")]
fn outcome_check_rejects_a_read_error_of_a_well_formed_stream() {
    let err = Error::ReadLayer {
        layer: "stream".into(),
        source: io::Error::from(io::ErrorKind::UnexpectedEof),
    };
    check_outcome("case eof", Input::Hostile, Ok(Err(err)));
}

#[test]
#[should_panic(expected = "case boom: the applier panicked: boom")]
fn outcome_check_reports_a_panic() {
    check_outcome("case boom", Input::Hostile, Err(Box::new("boom")));
}

#[test]
#[should_panic(expected = "case beside changed the dir beside the root")]
fn untouched_check_sees_a_new_name_beside_the_root() {
    let sb = Sandbox::new();
    let before = sb.around();
    std::fs::write(sb.tmp.path().join("esc"), b"").expect("write beside the root");
    sb.assert_untouched(&before, "case beside");
}
