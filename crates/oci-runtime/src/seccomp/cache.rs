//! Compiled filters kept between container starts, as crun keeps them: a
//! repeated profile is compiled once.
//!
//! An entry lives in a root-owned directory (0700, under the state root) and is
//! named by a hash of what shapes the program: this runtime's version, the
//! architecture, the kernel's release and the profile itself. It holds that key
//! again, a SHA-256 of its body and the body (flags, listener, instructions);
//! on load all three are checked and the program is run through the same
//! validator a fresh compile passes. An entry that fails any check, or cannot be
//! read, is compiled afresh and rewritten, never installed.

use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;
use seccompiler::sock_filter;
use sha2::{Digest, Sha256};

use super::{Filter, Listener, bpf};
use crate::error::Result;

const MAGIC: &str = "oci-runtime seccomp cache 1";

/// Compiles `profile`, or loads the program an earlier compile of it left in `dir`.
pub(crate) fn compile_cached(profile: &LinuxSeccomp, dir: &Path) -> Result<Filter> {
    let key = key(profile);
    let path = dir.join(format!("{key}.bpf"));
    if let Some(f) = load(&path, &key) {
        return Ok(f);
    }
    let filter = Filter::compile(profile)?;
    // Best effort: a cache that cannot be written costs only the next compile.
    let _ = store(dir, &path, &key, &filter);
    Ok(filter)
}

fn key(profile: &LinuxSeccomp) -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut h = Sha256::new();
    for part in [
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        release.as_str(),
        &serde_json::to_string(profile).unwrap_or_default(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What an entry holds after its header.
#[derive(serde::Serialize, serde::Deserialize)]
struct Body {
    flags: libc::c_ulong,
    listener: Option<(PathBuf, Option<String>)>,
    program: Vec<(u16, u8, u8, u32)>,
}

fn load(path: &Path, key: &str) -> Option<Filter> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.splitn(4, '\n');
    let (magic, stored_key, digest, body) =
        (lines.next()?, lines.next()?, lines.next()?, lines.next()?);
    if magic != MAGIC || stored_key != key || digest != hex(&Sha256::digest(body.as_bytes())) {
        return None;
    }
    let body: Body = serde_json::from_str(body).ok()?;
    let program: Vec<sock_filter> = body
        .program
        .iter()
        .map(|&(code, jt, jf, k)| sock_filter { code, jt, jf, k })
        .collect();
    bpf::verify(&program).ok()?;
    Some(Filter {
        program,
        flags: body.flags,
        listener: body
            .listener
            .map(|(path, metadata)| Listener { path, metadata }),
    })
}

fn store(dir: &Path, path: &Path, key: &str, f: &Filter) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let body = Body {
        flags: f.flags,
        listener: f
            .listener
            .as_ref()
            .map(|l| (l.path.clone(), l.metadata.clone())),
        program: f
            .program
            .iter()
            .map(|i| (i.code, i.jt, i.jf, i.k))
            .collect(),
    };
    let body = serde_json::to_string(&body).map_err(std::io::Error::other)?;
    let digest = hex(&Sha256::digest(body.as_bytes()));
    let tmp = dir.join(format!(".{key}.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(format!("{MAGIC}\n{key}\n{digest}\n{body}").as_bytes())?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> LinuxSeccomp {
        serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
        }))
        .expect("profile")
    }

    #[test]
    fn a_repeated_profile_is_loaded_and_equals_a_fresh_compile() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("cache");
        let fresh = Filter::compile(&profile()).expect("compile");
        let first = compile_cached(&profile(), &dir).expect("first");
        assert_eq!(first, fresh);
        let entries: Vec<_> = std::fs::read_dir(&dir)
            .expect("cache dir")
            .flatten()
            .collect();
        assert_eq!(entries.len(), 1, "one entry, no temp file left");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let path = entries[0].path();
        assert_eq!(load(&path, &key(&profile())), Some(fresh));
    }

    #[test]
    fn a_flipped_byte_or_another_key_is_compiled_afresh_never_loaded() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("cache");
        let fresh = compile_cached(&profile(), &dir).expect("first");
        let path = dir.join(format!("{}.bpf", key(&profile())));
        let good = std::fs::read(&path).expect("entry");
        // Every byte of the entry, flipped in turn, is caught.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            std::fs::write(&path, &bad).expect("write");
            assert_eq!(load(&path, &key(&profile())), None, "byte {i} flipped");
            // And the compile that follows is a correct one, rewriting the entry.
            assert_eq!(compile_cached(&profile(), &dir).expect("recompile"), fresh);
            assert_eq!(std::fs::read(&path).expect("entry"), good);
        }
        // An entry under another profile's name does not stand in for this one.
        let mut other = profile();
        other.set_default_errno_ret(Some(1));
        let other_path = dir.join(format!("{}.bpf", key(&other)));
        std::fs::copy(&path, &other_path).expect("copy");
        assert_eq!(load(&other_path, &key(&other)), None);
    }
}
