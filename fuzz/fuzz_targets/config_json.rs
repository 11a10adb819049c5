//! config.json through parse, validate and plan, as `create` takes it. The
//! first byte picks how the rest is read: as the file itself, or as edits
//! of a valid config (each edit: a path of member and element choices into
//! the document and a new JSON value there), so that mutations stay
//! structured and reach validation and planning. No panic; a parse error
//! names a field or a line; a config that validates yields a plan or an
//! error that says something.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fn base() -> Value {
    json!({
        "ociVersion": "1.2.0",
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "env": ["PATH=/bin"], "cwd": "/",
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]},
        "root": {"path": "rootfs"},
        "hostname": "c",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}],
                  "resources": {"memory": {"limit": 10000000}, "pids": {"limit": 10}},
                  "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
                  "seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                              "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}}
    })
}

/// A value made from bytes: small numbers, edge numbers, strings, nulls,
/// booleans, arrays and objects.
fn value(b: &mut &[u8]) -> Value {
    let Some((&k, rest)) = b.split_first() else {
        return Value::Null;
    };
    *b = rest;
    let take = |b: &mut &[u8], n: usize| {
        let n = n.min(b.len());
        let (h, t) = b.split_at(n);
        *b = t;
        h.to_vec()
    };
    match k % 9 {
        0 => Value::Null,
        1 => json!(k & 16 != 0),
        2 => json!(i64::from(k) - 128),
        3 => json!([u64::MAX, i64::MIN as u64, 0, 1 << 32, 4096][usize::from(k) % 5]),
        4 => json!(-1),
        5 => {
            let s = take(b, usize::from(k % 24));
            json!(String::from_utf8_lossy(&s))
        }
        6 => json!(
            [
                "/",
                "..",
                "/proc",
                "rootfs",
                "CAP_SYS_ADMIN",
                "RLIMIT_NPROC",
                "rshared",
                "user"
            ][usize::from(k) % 8]
        ),
        7 => Value::Array((0..k % 3).map(|_| value(b)).collect()),
        _ => {
            let mut m = serde_json::Map::new();
            for i in 0..k % 3 {
                m.insert(
                    ["type", "path", "options", "limit"][usize::from(i + k) % 4].into(),
                    value(b),
                );
            }
            Value::Object(m)
        }
    }
}

/// Edits `doc` at a path the bytes choose (a JSON pointer).
fn edit(doc: &mut Value, b: &mut &[u8]) {
    let mut ptr = String::new();
    let mut at: &Value = doc;
    while let Some((&c, rest)) = b.split_first() {
        *b = rest;
        let step = match at {
            Value::Object(m) if !m.is_empty() && c % 4 != 0 => m
                .iter()
                .nth(usize::from(c) % m.len())
                .map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v)),
            Value::Array(a) if !a.is_empty() && c % 4 != 0 => {
                let i = usize::from(c) % a.len();
                Some((i.to_string(), &a[i]))
            }
            _ => None,
        };
        let Some((key, next)) = step else { break };
        ptr.push('/');
        ptr.push_str(&key);
        at = next;
    }
    let v = value(b);
    if let Some(slot) = doc.pointer_mut(&ptr) {
        *slot = v;
    }
}

fn check(bytes: &[u8]) {
    let Ok(tmp) = tempfile::tempdir() else { return };
    let dir = tmp.path();
    let _ = std::fs::create_dir(dir.join("rootfs"));
    let spec = match oci_runtime::parse_spec(bytes, Path::new("config.json")) {
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
            assert!(!e.to_string().is_empty());
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
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((k, rest)) if k % 2 == 1 => {
            let mut doc = base();
            let mut b = rest;
            for _ in 0..4 {
                if b.is_empty() {
                    break;
                }
                edit(&mut doc, &mut b);
            }
            check(doc.to_string().as_bytes());
        }
        Some((_, rest)) => check(rest),
        None => {}
    }
});
