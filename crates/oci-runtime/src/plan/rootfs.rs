//! The root filesystem part of the plan: in-root paths, mounts and devices.

use std::ffi::CString;
use std::path::{Component, Path};

use oci_spec::runtime::Mount;

use super::cstring;
use crate::error::{Result, invalid};

/// A path inside the container's root, split so the child can create what is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelPath {
    /// `a/b/c` relative to the rootfs (`.` for the root itself).
    pub full: CString,
    /// Every prefix: `a`, `a/b`, `a/b/c`.
    pub prefixes: Vec<CString>,
    /// Every component: `a`, `b`, `c`.
    pub names: Vec<CString>,
    /// The path as the config wrote it, for error messages.
    pub display: String,
}

impl RelPath {
    /// Splits an absolute or relative container path; `..` components are refused
    /// (they would be clamped to the root anyway, but they say the author meant something else).
    pub(crate) fn new(p: &Path, field: &str) -> Result<Self> {
        let mut names = Vec::new();
        for c in p.components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(n) => names.push(n.to_string_lossy().into_owned()),
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(invalid(field, format!("{} contains `..`", p.display())));
                }
            }
        }
        let cs = |s: &str| CString::new(s).map_err(|_| invalid(field, "contains a NUL byte"));
        let mut prefixes = Vec::new();
        let mut acc = String::new();
        let mut cnames = Vec::new();
        for n in &names {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(n);
            prefixes.push(cs(&acc)?);
            cnames.push(cs(n)?);
        }
        let full = if acc.is_empty() { cs(".")? } else { cs(&acc)? };
        Ok(RelPath {
            full,
            prefixes,
            names: cnames,
            display: format!("/{acc}"),
        })
    }

    /// The parent directory and the last component, for `mknodat`-style calls.
    pub(crate) fn split_last(&self) -> Option<(RelPath, CString)> {
        let last = self.names.last()?.clone();
        let n = self.names.len() - 1;
        let full = if n == 0 {
            CString::from(c".")
        } else {
            self.prefixes[n - 1].clone()
        };
        let display = self
            .display
            .rsplit_once('/')
            .map(|(a, _)| a.to_string())
            .unwrap_or_default();
        Some((
            RelPath {
                full,
                prefixes: self.prefixes[..n].to_vec(),
                names: self.names[..n].to_vec(),
                display,
            },
            last,
        ))
    }
}

/// What kind of mount a [`MountPlan`] performs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MountKind {
    /// A bind mount of a host path.
    Bind {
        source: CString,
        recursive: bool,
        source_is_dir: bool,
    },
    /// A new filesystem instance (proc, sysfs, tmpfs, devpts, mqueue, cgroup2, …).
    Fs { fstype: CString, source: CString },
    /// Hybrid-cgroup host: a tmpfs with read-only binds of this process's own v1 cgroup dirs.
    CgroupV1 {
        dirs: Vec<(CString, CString)>,
        links: Vec<(CString, CString)>,
        /// In a cgroup namespace of its own (and no user namespace, where v1
        /// cgroupfs cannot be mounted): a fresh mount of each hierarchy, which
        /// shows the namespace's root, as runc mounts them; `(source, options)`
        /// per entry of `dirs`. Empty: bind `dirs`.
        fresh: Vec<(CString, CString)>,
    },
}

/// One entry of `mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountPlan {
    pub dest: RelPath,
    pub kind: MountKind,
    /// `MS_*` flags other than propagation.
    pub flags: libc::c_ulong,
    pub data: Option<CString>,
    /// Propagation changes applied after the mount, one call each.
    pub propagation: Vec<libc::c_ulong>,
}

/// One `linux.devices` entry or default device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DevicePlan {
    pub parent: RelPath,
    pub name: CString,
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO` plus permission bits.
    pub mode: libc::mode_t,
    pub rdev: libc::dev_t,
    pub uid: u32,
    pub gid: u32,
    /// Host path to bind instead when `mknod` is not allowed (user namespaces).
    pub host: CString,
}

/// The root filesystem part of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootfsPlan {
    pub rootfs: CString,
    pub propagation: libc::c_ulong,
    pub mounts: Vec<MountPlan>,
    /// Whether to create default devices and `/dev` symlinks.
    pub populate_dev: bool,
    pub devices: Vec<DevicePlan>,
    pub masked: Vec<RelPath>,
    pub readonly: Vec<RelPath>,
    pub readonly_root: bool,
    pub enter: EnterRoot,
    pub cwd: RelPath,
}

/// How the init makes the prepared rootfs its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnterRoot {
    /// `pivot_root`, then detach the old root: the default in a new mount namespace.
    Pivot,
    /// `MS_MOVE` of the rootfs onto `/`, then `chroot` (`--no-pivot`, for ramfs roots).
    MoveChroot,
    /// Only `chroot`: the container shares the caller's mount namespace, where
    /// neither pivoting nor moving `/` is allowed or wanted (runc does the same).
    Chroot,
}

impl EnterRoot {
    /// Whether the container's mounts are made in the caller's mount namespace.
    pub(crate) fn shares_mount_ns(self) -> bool {
        self == EnterRoot::Chroot
    }
}

/// Maps a propagation name (`rslave`, `private`, …) to its `MS_*` flags.
pub(crate) fn propagation_flag(name: &str) -> Option<libc::c_ulong> {
    Some(match name {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

/// Parsed mount options.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct MountOptions {
    pub flags: libc::c_ulong,
    pub propagation: Vec<libc::c_ulong>,
    pub bind: bool,
    pub recursive: bool,
    pub data: Vec<String>,
}

/// Splits OCI mount options into `MS_*` flags, propagation changes and filesystem data.
pub(crate) fn parse_mount_options(opts: &[String]) -> std::result::Result<MountOptions, String> {
    let mut o = MountOptions::default();
    for opt in opts {
        let (set, flag) = match opt.as_str() {
            "ro" => (true, libc::MS_RDONLY),
            "rw" => (false, libc::MS_RDONLY),
            "nosuid" => (true, libc::MS_NOSUID),
            "suid" => (false, libc::MS_NOSUID),
            "nodev" => (true, libc::MS_NODEV),
            "dev" => (false, libc::MS_NODEV),
            "noexec" => (true, libc::MS_NOEXEC),
            "exec" => (false, libc::MS_NOEXEC),
            "sync" => (true, libc::MS_SYNCHRONOUS),
            "async" => (false, libc::MS_SYNCHRONOUS),
            "dirsync" => (true, libc::MS_DIRSYNC),
            "mand" => (true, libc::MS_MANDLOCK),
            "nomand" => (false, libc::MS_MANDLOCK),
            "noatime" => (true, libc::MS_NOATIME),
            "atime" => (false, libc::MS_NOATIME),
            "nodiratime" => (true, libc::MS_NODIRATIME),
            "diratime" => (false, libc::MS_NODIRATIME),
            "relatime" => (true, libc::MS_RELATIME),
            "norelatime" => (false, libc::MS_RELATIME),
            "strictatime" => (true, libc::MS_STRICTATIME),
            "nostrictatime" => (false, libc::MS_STRICTATIME),
            "lazytime" => (true, libc::MS_LAZYTIME),
            "nolazytime" => (false, libc::MS_LAZYTIME),
            "silent" => (true, libc::MS_SILENT),
            "loud" => (false, libc::MS_SILENT),
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                continue;
            }
            "remount" => return Err("`remount` is not a valid option for a new mount".into()),
            "tmpcopyup" | "idmap" | "ridmap" | "copy-symlink" => {
                return Err(format!("option {opt:?} is not supported"));
            }
            other => {
                if let Some(p) = propagation_flag(other) {
                    o.propagation.push(p);
                } else if other.is_empty() || other.contains(',') || other.contains('\0') {
                    return Err(format!("malformed option {other:?}"));
                } else if !other.starts_with("X-") {
                    o.data.push(other.to_string());
                }
                continue;
            }
        };
        if set {
            o.flags |= flag;
        } else {
            o.flags &= !flag;
        }
    }
    Ok(o)
}

/// Reads this process's v1 cgroup dirs on a hybrid host: `(dir name, host path)`
/// plus symlinks for co-mounted controllers (`cpu` → `cpu,cpuacct`).
/// Pairs of C strings: (name, target).
type CPairs = Vec<(CString, CString)>;

/// Where the hierarchy mounted on `/sys/fs/cgroup/<name>` comes in `mountinfo`, so
/// the container lists its hierarchies in the host's order, as runc does.
fn mountinfo_position(mountinfo: &str, name: &str) -> usize {
    let point = format!("/sys/fs/cgroup/{name}");
    mountinfo
        .lines()
        .position(|l| l.split(' ').nth(4) == Some(point.as_str()))
        .unwrap_or(usize::MAX)
}

/// The v1 hierarchies a container's `/sys/fs/cgroup` shows: its own cgroup dirs
/// (`hierarchies`: mount name → dir, made before the init mounts them), or, for
/// a container left in its creator's cgroups, the creator's.
fn v1_cgroup_binds(
    proc_root: &Path,
    hierarchies: Option<&std::collections::BTreeMap<String, std::path::PathBuf>>,
) -> (CPairs, CPairs) {
    let Some(h) = hierarchies else {
        return own_v1_cgroups(proc_root);
    };
    let mountinfo = std::fs::read_to_string(proc_root.join("self/mountinfo")).unwrap_or_default();
    let mut dirs: Vec<(usize, CString, CString)> = Vec::new();
    let mut links = Vec::new();
    for (name, dir) in h {
        let (Ok(n), Ok(d)) = (
            CString::new(name.as_str()),
            CString::new(dir.to_string_lossy().into_owned()),
        ) else {
            continue;
        };
        if name.contains(',') {
            for c in name.split(',') {
                if let (Ok(l), Ok(t)) = (CString::new(c), CString::new(name.as_str())) {
                    links.push((l, t));
                }
            }
        }
        dirs.push((mountinfo_position(&mountinfo, name), n, d));
    }
    dirs.sort_by_key(|(pos, _, _)| *pos);
    (dirs.into_iter().map(|(_, n, d)| (n, d)).collect(), links)
}

fn own_v1_cgroups(proc_root: &Path) -> (CPairs, CPairs) {
    let mut dirs: Vec<(usize, CString, CString)> = Vec::new();
    let mut links = Vec::new();
    let Ok(text) = std::fs::read_to_string(proc_root.join("self/cgroup")) else {
        return (Vec::new(), links);
    };
    let mountinfo = std::fs::read_to_string(proc_root.join("self/mountinfo")).unwrap_or_default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        // Only the v1 hierarchies, as runc: the unified one of a hybrid host is not
        // what a v1 container's /sys/fs/cgroup shows.
        if ctrls.is_empty() {
            continue;
        }
        let name = ctrls.strip_prefix("name=").unwrap_or(ctrls).to_string();
        let host = format!("/sys/fs/cgroup/{name}{path}");
        if !Path::new(&host).is_dir() {
            continue;
        }
        let (Ok(n), Ok(h)) = (CString::new(name.clone()), CString::new(host)) else {
            continue;
        };
        if ctrls.contains(',') {
            for c in ctrls.split(',') {
                if let (Ok(l), Ok(t)) = (CString::new(c), CString::new(name.clone())) {
                    links.push((l, t));
                }
            }
        }
        dirs.push((mountinfo_position(&mountinfo, &name), n, h));
    }
    dirs.sort_by_key(|(pos, _, _)| *pos);
    let dirs = dirs.into_iter().map(|(_, n, h)| (n, h)).collect();
    (dirs, links)
}

fn is_cgroup2_host() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|st| st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

pub(super) fn mount_plan(
    m: &Mount,
    i: usize,
    bundle_dir: &Path,
    proc_root: &Path,
    hierarchies: Option<&std::collections::BTreeMap<String, std::path::PathBuf>>,
    fresh_cgroupfs: bool,
) -> Result<MountPlan> {
    let field = format!("mounts[{i}]");
    let opts = parse_mount_options(m.options().as_deref().unwrap_or(&[]))
        .map_err(|r| invalid(format!("{field}.options"), r))?;
    let dest = RelPath::new(m.destination(), &format!("{field}.destination"))?;
    let typ = m.typ().as_deref().unwrap_or("none");
    let data = if opts.data.is_empty() {
        None
    } else {
        Some(cstring(&opts.data.join(","), &format!("{field}.options"))?)
    };
    let kind = if opts.bind || typ == "bind" {
        let src = m
            .source()
            .as_deref()
            .ok_or_else(|| invalid(format!("{field}.source"), "missing"))?;
        let src = if src.is_absolute() {
            src.to_path_buf()
        } else {
            bundle_dir.join(src)
        };
        let meta = std::fs::metadata(&src)
            .map_err(|e| invalid(format!("{field}.source"), format!("{}: {e}", src.display())))?;
        MountKind::Bind {
            source: cstring(&src.to_string_lossy(), &format!("{field}.source"))?,
            recursive: opts.recursive,
            source_is_dir: meta.is_dir(),
        }
    } else if typ == "cgroup" || typ == "cgroup2" {
        if typ == "cgroup2" || is_cgroup2_host() {
            MountKind::Fs {
                fstype: CString::from(c"cgroup2"),
                source: CString::from(c"cgroup"),
            }
        } else {
            let (dirs, links) = v1_cgroup_binds(proc_root, hierarchies);
            let fresh = if fresh_cgroupfs && hierarchies.is_some() {
                dirs.iter()
                    .map(|(name, _)| {
                        if name.as_bytes() == b"systemd" {
                            (CString::from(c"systemd"), CString::from(c"name=systemd"))
                        } else {
                            (CString::from(c"cgroup"), name.clone())
                        }
                    })
                    .collect()
            } else {
                Vec::new()
            };
            MountKind::CgroupV1 { dirs, links, fresh }
        }
    } else {
        let source = m
            .source()
            .as_deref()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| typ.to_string());
        MountKind::Fs {
            fstype: cstring(typ, &format!("{field}.type"))?,
            source: cstring(&source, &format!("{field}.source"))?,
        }
    };
    Ok(MountPlan {
        dest,
        kind,
        flags: opts.flags,
        data,
        propagation: opts.propagation,
    })
}

pub(super) fn default_devices(user_ns: bool) -> Vec<DevicePlan> {
    let dev = RelPath {
        full: CString::from(c"dev"),
        prefixes: vec![CString::from(c"dev")],
        names: vec![CString::from(c"dev")],
        display: "/dev".into(),
    };
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .filter_map(|(n, maj, min)| {
        Some(DevicePlan {
            parent: dev.clone(),
            name: CString::new(n).ok()?,
            mode: libc::S_IFCHR | 0o666,
            rdev: libc::makedev(maj, min),
            uid: 0,
            gid: 0,
            host: if user_ns {
                CString::new(format!("/dev/{n}")).ok()?
            } else {
                CString::default()
            },
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relpath_splits_and_refuses_dotdot() {
        let r = RelPath::new(Path::new("/proc/sys/kernel"), "f").ok();
        let r = r
            .as_ref()
            .map(|r| (r.full.clone(), r.prefixes.len(), r.names.len()));
        assert_eq!(r, Some((CString::from(c"proc/sys/kernel"), 3, 3)));
        assert!(RelPath::new(Path::new("/a/../b"), "f").is_err());
        let root = RelPath::new(Path::new("/"), "f").ok().map(|r| r.full);
        assert_eq!(root, Some(CString::from(c".")));
    }

    #[test]
    fn mount_options() {
        let o = parse_mount_options(&[
            "nosuid".into(),
            "ro".into(),
            "rbind".into(),
            "rslave".into(),
            "mode=755".into(),
        ]);
        let o = o.ok().unwrap_or_default();
        assert!(o.bind && o.recursive);
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_RDONLY);
        assert_eq!(o.propagation, vec![libc::MS_SLAVE | libc::MS_REC]);
        assert_eq!(o.data, vec!["mode=755".to_string()]);
        assert!(parse_mount_options(&["tmpcopyup".into()]).is_err());
        assert!(parse_mount_options(&["a,b".into()]).is_err());
        let rw = parse_mount_options(&["ro".into(), "rw".into()])
            .ok()
            .unwrap_or_default();
        assert_eq!(rw.flags, 0);
    }

    #[test]
    fn v1_hierarchies_come_in_mountinfo_order() {
        let mi = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                  32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                  40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n";
        assert_eq!(mountinfo_position(mi, "cpu"), 1);
        assert_eq!(mountinfo_position(mi, "systemd"), 2);
        assert_eq!(mountinfo_position(mi, "cpuset"), usize::MAX);
        // A prefix of a mount point is not that mount point.
        assert_eq!(mountinfo_position(mi, "cp"), usize::MAX);
    }
}
