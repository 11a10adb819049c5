//! Resolving (and creating) paths inside the container's root without leaving it.

use std::ffi::CStr;
use std::os::fd::RawFd;

use crate::plan::RelPath;
use crate::sys::{self, Errno};

pub(super) const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Create {
    No,
    Dir,
    File,
}

/// Longest path handled while resolving inside the root.
const PATH_MAX: usize = 4096;

/// A NUL-terminated copy of `bytes` in `buf`.
fn cstr_in<'a>(bytes: &[u8], buf: &'a mut [u8; PATH_MAX]) -> Result<&'a CStr, Errno> {
    if bytes.len() >= PATH_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    buf[bytes.len()] = 0;
    CStr::from_bytes_with_nul(&buf[..=bytes.len()]).map_err(|_| libc::EINVAL)
}

/// Opens `rel` inside `root` as an O_PATH fd, creating missing directories (and the last
/// component as a file or directory) with every step resolved inside the root. A
/// dangling symlink on the way is followed by creating its target, inside the root.
pub(super) fn resolve(root: RawFd, rel: &RelPath, create: Create) -> Result<RawFd, Errno> {
    match sys::openat2(root, &rel.full, libc::O_PATH, IN_ROOT) {
        Ok(fd) => return Ok(fd),
        Err(libc::ENOENT) if create != Create::No => {}
        Err(e) => return Err(e),
    }
    let mut path = [0u8; PATH_MAX];
    let mut len = rel.full.as_bytes().len().min(PATH_MAX);
    path[..len].copy_from_slice(&rel.full.as_bytes()[..len]);
    let mut scratch = [0u8; PATH_MAX];
    let mut link = [0u8; PATH_MAX];
    for _ in 0..40 {
        match walk_create(root, &path[..len], create, &mut scratch, &mut link)? {
            Walk::Done(fd) => return Ok(fd),
            Walk::Retry(new_len) => {
                path[..new_len].copy_from_slice(&scratch[..new_len]);
                len = new_len;
            }
        }
    }
    Err(libc::ELOOP)
}

enum Walk {
    Done(RawFd),
    /// A dangling symlink was met; the rewritten path is in `scratch[..len]`.
    Retry(usize),
}

fn walk_create(
    root: RawFd,
    path: &[u8],
    create: Create,
    scratch: &mut [u8; PATH_MAX],
    link: &mut [u8; PATH_MAX],
) -> Result<Walk, Errno> {
    // SAFETY: duplicating an fd we own; the copy is closed below or returned.
    let mut parent = unsafe { libc::fcntl(root, libc::F_DUPFD_CLOEXEC, 0) };
    if parent == -1 {
        return Err(sys::errno());
    }
    let mut start = 0;
    while start < path.len() {
        let end = path[start..]
            .iter()
            .position(|b| *b == b'/')
            .map_or(path.len(), |p| start + p);
        let name = &path[start..end];
        let last = end >= path.len();
        if name.is_empty() || name == b"." {
            start = end + 1;
            continue;
        }
        let mut pbuf = [0u8; PATH_MAX];
        let prefix = cstr_in(&path[..end], &mut pbuf)?;
        let mut nbuf = [0u8; PATH_MAX];
        let cname = cstr_in(name, &mut nbuf)?;
        let fd = match sys::openat2(root, prefix, libc::O_PATH, IN_ROOT) {
            Ok(fd) => fd,
            Err(libc::ENOENT) => {
                let made = if last && create == Create::File {
                    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW;
                    match sys::openat(parent, cname, flags, 0o644) {
                        Ok(f) => {
                            sys::close(f);
                            Ok(())
                        }
                        Err(libc::EEXIST) => Ok(()),
                        Err(e) => Err(e),
                    }
                } else {
                    sys::mkdirat(parent, cname, 0o755)
                };
                match made.and_then(|()| sys::openat2(root, prefix, libc::O_PATH, IN_ROOT)) {
                    Ok(fd) => fd,
                    Err(libc::ENOENT) => {
                        // The entry exists but does not resolve: a dangling symlink.
                        // Rewrite the path through its target and start again.
                        // SAFETY: `link` is writable for its length; `cname` is NUL-terminated.
                        let n = unsafe {
                            libc::readlinkat(
                                parent,
                                cname.as_ptr(),
                                link.as_mut_ptr().cast(),
                                PATH_MAX,
                            )
                        };
                        sys::close(parent);
                        if n <= 0 {
                            return Err(libc::ENOENT);
                        }
                        let target = &link[..n as usize];
                        let mut out = 0usize;
                        let mut push = |bytes: &[u8]| -> Result<(), Errno> {
                            if out + bytes.len() >= PATH_MAX {
                                return Err(libc::ENAMETOOLONG);
                            }
                            scratch[out..out + bytes.len()].copy_from_slice(bytes);
                            out += bytes.len();
                            Ok(())
                        };
                        if target.first() != Some(&b'/') {
                            push(&path[..start])?;
                        }
                        push(target)?;
                        if !last {
                            push(b"/")?;
                            push(&path[end + 1..])?;
                        }
                        return Ok(Walk::Retry(out));
                    }
                    Err(e) => {
                        sys::close(parent);
                        return Err(e);
                    }
                }
            }
            Err(e) => {
                sys::close(parent);
                return Err(e);
            }
        };
        sys::close(parent);
        parent = fd;
        start = end + 1;
    }
    Ok(Walk::Done(parent))
}
