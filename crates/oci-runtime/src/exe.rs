//! Keeping the runtime's own binary out of the containers' reach (CVE-2019-5736).
//!
//! Between `clone` and the payload's `execve`, a container's init (and every
//! process `exec` starts) is a copy of the runtime, and `/proc/<pid>/exe` names
//! the runtime's binary. `PR_SET_DUMPABLE` hides that link from the container's
//! processes, except from one holding `CAP_SYS_PTRACE` in the host's user
//! namespace, which could open the binary and, once the runtime has exited,
//! overwrite it on the host. The defence is to run the runtime from a binary the
//! container cannot write: [`protect_exe`] re-executes the process from a
//! read-only view of its binary before it starts any container.

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

use crate::error::{Error, Result};

/// Set in the environment of the re-executed process, so that a re-execution that
/// did not yield a protected binary fails instead of looping.
const REEXEC_MARK: &str = "_OCI_RUNTIME_EXE_PROTECTED";

/// What keeps the running binary from being written through `/proc/<pid>/exe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExeProtection {
    /// The binary sits on a read-only mount: the private, detached, lower-only
    /// overlayfs view [`protect_exe`] makes (as runc ≥ 1.2 does), or a read-only
    /// filesystem the binary was installed on.
    ReadOnlyMount,
    /// The binary is a sealed in-memory copy (`memfd` with write, grow, shrink
    /// and seal seals), made where overlayfs cannot be mounted (rootless).
    SealedMemfd,
}

/// Whether a container made from `spec` needs the runtime to run from a
/// protected binary: when its init joins a pid namespace that other processes
/// already live in (one given by path, or the caller's when it asks for none),
/// those can see the init while it is still a copy of the runtime. An init in a
/// new pid namespace is alone there until it execs the payload. `exec` always
/// needs protection: it joins the container's pid namespace.
pub fn needs_protected_exe(spec: &oci_spec::runtime::Spec) -> bool {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    !namespaces.is_some_and(|ns| {
        ns.iter()
            .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Pid && n.path().is_none())
    })
}

/// Refuses to go on unless the running binary is protected (see [`protect_exe`]).
pub(crate) fn require_protected_exe(operation: &'static str) -> Result<()> {
    match exe_protection()? {
        Some(_) => Ok(()),
        None => Err(Error::UnprotectedExe { operation }),
    }
}

/// How the running binary is protected, if it is.
pub fn exe_protection() -> Result<Option<ExeProtection>> {
    let exe = std::fs::File::open("/proc/self/exe").map_err(|source| Error::Io {
        operation: "opening",
        path: "/proc/self/exe".into(),
        source,
    })?;
    if let Ok(seals) = rustix::fs::fcntl_get_seals(&exe) {
        let needed = SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE;
        if seals.contains(needed) {
            return Ok(Some(ExeProtection::SealedMemfd));
        }
    }
    let st = rustix::fs::fstatvfs(&exe).map_err(|e| Error::Sys {
        operation: "statvfs /proc/self/exe",
        source: e.into(),
    })?;
    Ok(st
        .f_flag
        .contains(rustix::fs::StatVfsMountFlags::RDONLY)
        .then_some(ExeProtection::ReadOnlyMount))
}

/// Makes sure the process runs from a binary no container can write, re-executing
/// it (same arguments and environment) from a protected view when it does not.
///
/// Call it first thing in `main` of a program that creates containers or execs
/// into them, before starting threads: on success the re-executed process starts
/// over, so this returns only when the binary already was protected, or with an
/// error when no protection could be had. A long-lived host (a CRI server) pays
/// for it once at start; every container it spawns inherits the protected binary.
///
/// `scratch` is a directory this may create (empty) and keep: overlayfs needs
/// a second, empty lower layer beside the binary's directory. As root the view is
/// a detached read-only overlayfs mount of the binary's directory (no copy; the
/// page cache is shared); where overlayfs cannot be mounted, a sealed memfd copy.
pub fn protect_exe(scratch: &Path) -> Result<ExeProtection> {
    if let Some(p) = exe_protection()? {
        return Ok(p);
    }
    if std::env::var_os(REEXEC_MARK).is_some() {
        return Err(Error::Sys {
            operation: "re-executing from a protected binary: it is still writable",
            source: std::io::Error::from_raw_os_error(libc::EROFS),
        });
    }
    let fd = match overlay_view(scratch) {
        Ok(fd) => fd,
        Err(overlay) => sealed_copy().map_err(|memfd| Error::Sys {
            operation: match overlay.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    "protecting the runtime binary (overlayfs not permitted, memfd copy failed)"
                }
                _ => "protecting the runtime binary (overlayfs and memfd copy both failed)",
            },
            source: memfd,
        })?,
    };
    let args: Vec<CString> = std::env::args_os().map(cstring).collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            cstring(kv)
        })
        .collect();
    env.push(cstring(format!("{REEXEC_MARK}=1").into()));
    let err = nix::unistd::execveat(
        fd.as_fd(),
        c"",
        &args,
        &env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .err();
    Err(Error::Sys {
        operation: "re-executing from the protected binary",
        source: err.map_or_else(std::io::Error::last_os_error, Into::into),
    })
}

fn cstring(s: OsString) -> CString {
    // Arguments and environment strings come from the kernel NUL-terminated, so
    // they hold no NUL; drop any rather than fail.
    let mut bytes = s.into_vec();
    bytes.retain(|b| *b != 0);
    CString::new(bytes).unwrap_or_default()
}

/// The binary through a private, detached, read-only overlayfs of its directory.
fn overlay_view(scratch: &Path) -> std::io::Result<OwnedFd> {
    let ctx = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    let exe = std::fs::read_link("/proc/self/exe")?;
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    };
    // A binary replaced since it started reads "… (deleted)": there is no
    // directory to view it through.
    if name.as_bytes().ends_with(b" (deleted)") {
        return Err(std::io::Error::from_raw_os_error(libc::ENOENT));
    }
    std::fs::create_dir_all(scratch)?;
    // Without an upper layer overlayfs wants two lower ones; the binary's dir on
    // top, so nothing in the empty one can shadow it.
    let lower = format!("{}:{}", escape_lower(dir), escape_lower(scratch));
    rustix::mount::fsconfig_set_string(&ctx, "lowerdir", lower.as_str())?;
    rustix::mount::fsconfig_create(&ctx)?;
    let mnt = rustix::mount::fsmount(
        &ctx,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOSUID,
    )?;
    let fd = rustix::fs::openat(
        &mnt,
        name,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    Ok(fd)
}

/// `\`, `:` and `,` are separators in overlayfs's `lowerdir`; escape them.
fn escape_lower(p: &Path) -> String {
    let mut out = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, '\\' | ':' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A sealed in-memory copy of the binary.
fn sealed_copy() -> std::io::Result<OwnedFd> {
    let src = std::fs::File::open("/proc/self/exe")?;
    let len = src.metadata()?.len();
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    // Kernels with vm.memfd_noexec want executability asked for; older ones
    // do not know the flag.
    let memfd = rustix::fs::memfd_create("oci-runtime-exe", flags | MemfdFlags::EXEC)
        .or_else(|_| rustix::fs::memfd_create("oci-runtime-exe", flags))?;
    let mut left = len;
    while left > 0 {
        let n = rustix::fs::sendfile(&memfd, &src, None, left as usize)?;
        if n == 0 {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        left -= n as u64;
    }
    rustix::fs::fcntl_add_seals(
        &memfd,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )?;
    Ok(memfd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowerdir_separators_are_escaped() {
        assert_eq!(escape_lower(Path::new("/usr/bin")), "/usr/bin");
        assert_eq!(escape_lower(Path::new("/a:b,c\\d")), "/a\\:b\\,c\\\\d");
    }

    #[test]
    fn a_sealed_copy_cannot_be_written() -> std::io::Result<()> {
        let fd = sealed_copy()?;
        let f = std::fs::File::from(fd);
        let exe = std::fs::metadata("/proc/self/exe")?;
        assert_eq!(f.metadata()?.len(), exe.len());
        // Through /proc, as a container would try it: no write goes through.
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&f));
        if let Ok(mut w) = std::fs::OpenOptions::new().write(true).open(&path) {
            use std::io::Write;
            assert!(w.write_all(b"x").is_err(), "wrote into a sealed memfd");
        }
        assert!(f.set_len(0).is_err(), "shrank a sealed memfd");
        Ok(())
    }
}
