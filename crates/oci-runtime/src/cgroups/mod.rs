//! Cgroups: where a container's processes are accounted and limited.
//!
//! [`detect`] tells how cgroupfs is mounted (pure v2, hybrid, legacy v1);
//! [`Cgroups::new`] resolves a container's `cgroupsPath` into one directory per
//! hierarchy; the [`Manager`] operations create them, write limits (one file per
//! controller under `v1/` and `v2/`), freeze, list and remove. Every root is a
//! parameter ([`Roots`]), so tests run on a temp-dir cgroupfs as well as the real one.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, invalid};

pub(crate) mod devices;
mod v1;
mod v2;

pub mod events;
pub mod stats;

/// How cgroupfs is mounted on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// One cgroup2 hierarchy at the root (most hosts today).
    Unified,
    /// v1 controllers, plus a cgroup2 hierarchy at `unified/` (systemd's hybrid mode).
    Hybrid,
    /// v1 controllers only.
    Legacy,
}

/// The roots cgroups are found under, as parameters.
#[derive(Debug, Clone)]
pub struct Roots {
    /// Where cgroupfs is mounted: `/sys/fs/cgroup`.
    pub cgroupfs: PathBuf,
    /// The caller's own cgroups, which relative paths are under: `/proc/self/cgroup`.
    pub own_cgroup: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            cgroupfs: PathBuf::from("/sys/fs/cgroup"),
            own_cgroup: PathBuf::from("/proc/self/cgroup"),
        }
    }
}

/// Tells the layout of the cgroupfs mounted at `root`.
pub fn detect(root: &Path) -> Result<Layout> {
    let magic = |p: &Path| {
        nix::sys::statfs::statfs(p)
            .map(|s| s.filesystem_type())
            .map_err(|e| Error::Io {
                operation: "statfs",
                path: p.to_path_buf(),
                source: e.into(),
            })
    };
    if magic(root)? == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
        return Ok(Layout::Unified);
    }
    let unified = root.join("unified");
    if unified.is_dir() && magic(&unified)? == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
        return Ok(Layout::Hybrid);
    }
    Ok(Layout::Legacy)
}

/// A container's cgroups: one directory per mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroups {
    /// The host's layout.
    pub layout: Layout,
    /// v1: controller name → the container's directory in that controller's
    /// hierarchy (controllers mounted together, like `cpu,cpuacct`, share one).
    pub v1: BTreeMap<String, PathBuf>,
    /// v1 hierarchies by the name they are mounted under (`cpu,cpuacct`,
    /// `systemd`) → the container's directory there: what its `/sys/fs/cgroup` shows.
    #[serde(default)]
    pub hierarchies: BTreeMap<String, PathBuf>,
    /// The container's directory in the cgroup2 hierarchy (unified, or the
    /// hybrid host's `unified/`).
    pub v2: Option<PathBuf>,
    /// The cgroup2 mount, the top for enabling controllers down to `v2`.
    pub v2_mount: Option<PathBuf>,
}

/// v1 hierarchies a container joins: the controllers this runtime drives, and
/// systemd's named one (as runc joins it, so the container has its own there too).
const V1_CONTROLLERS: [&str; 12] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "pids",
    "blkio",
    "hugetlb",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "name=systemd",
];

impl Cgroups {
    /// Resolves `cgroupsPath` as runc's cgroupfs driver does: absolute paths from
    /// each hierarchy's root, relative ones under the caller's own cgroup (on v2,
    /// under its parent, which can have controllers enabled), and `id` (relative)
    /// when absent. The systemd driver's `slice:prefix:name` is refused by name.
    pub fn new(
        roots: &Roots,
        layout: Layout,
        cgroups_path: Option<&Path>,
        id: &str,
    ) -> Result<Self> {
        let inner = match cgroups_path {
            Some(p) => {
                let s = p.to_string_lossy();
                if !s.starts_with('/') && s.split(':').count() == 3 {
                    return Err(invalid(
                        "linux.cgroupsPath",
                        format!(
                            "{s:?} is a systemd slice:prefix:name path; the systemd cgroup driver \
                             is not supported (use the cgroupfs driver)"
                        ),
                    ));
                }
                clean(p)?
            }
            None => PathBuf::from(id),
        };
        if inner.as_os_str().is_empty() || inner == Path::new("/") {
            return Err(invalid(
                "linux.cgroupsPath",
                "names the root cgroup, which a container cannot own",
            ));
        }
        let absolute = inner.is_absolute();
        let rel = inner.strip_prefix("/").unwrap_or(&inner).to_path_buf();
        let own = if absolute {
            BTreeMap::new()
        } else {
            own_cgroups(&roots.own_cgroup)?
        };
        let mut v1 = BTreeMap::new();
        let mut hierarchies = BTreeMap::new();
        if layout != Layout::Unified {
            for name in V1_CONTROLLERS {
                let Some(mount) = v1_mount(&roots.cgroupfs, name) else {
                    continue;
                };
                let base = if absolute {
                    PathBuf::new()
                } else {
                    own.get(name).map(|p| strip_root(p)).unwrap_or_default()
                };
                let dir = mount.join(base).join(&rel);
                if let Some(m) = mount.file_name() {
                    hierarchies.insert(m.to_string_lossy().into_owned(), dir.clone());
                }
                v1.insert(name.to_string(), dir);
            }
        }
        let (v2, v2_mount) = match layout {
            Layout::Legacy => (None, None),
            Layout::Unified | Layout::Hybrid => {
                let mount = if layout == Layout::Unified {
                    roots.cgroupfs.clone()
                } else {
                    roots.cgroupfs.join("unified")
                };
                let base = if absolute {
                    PathBuf::new()
                } else {
                    let mine = own.get("").map(|p| strip_root(p)).unwrap_or_default();
                    // Our own cgroup most likely holds processes, so no controller
                    // can be enabled for a child of it: go one up, as runc does.
                    mine.parent().map(Path::to_path_buf).unwrap_or_default()
                };
                (Some(mount.join(base).join(&rel)), Some(mount))
            }
        };
        Ok(Cgroups {
            layout,
            v1,
            hierarchies,
            v2,
            v2_mount,
        })
    }
}

/// A `..`-free form of a cgroups path, keeping whether it was absolute.
/// Lexically, as runc cleans it: `..` never climbs above the path's own start.
fn clean(p: &Path) -> Result<PathBuf> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let mut out = if p.is_absolute() {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    };
    out.extend(parts);
    Ok(out)
}

fn strip_root(p: &Path) -> PathBuf {
    p.strip_prefix("/").unwrap_or(p).to_path_buf()
}

/// `/proc/self/cgroup`: controller (`""` for cgroup2) → path.
fn own_cgroups(path: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        operation: "reading",
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(p)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if ctrls.is_empty() {
            out.insert(String::new(), PathBuf::from(p));
        }
        for c in ctrls.split(',') {
            if !c.is_empty() {
                out.insert(c.to_string(), PathBuf::from(p));
            }
        }
    }
    Ok(out)
}

/// Where the v1 hierarchy of `name` is mounted, if it is (`cpu` may be
/// `cpu,cpuacct`; `name=systemd` is `systemd`).
fn v1_mount(cgroupfs: &Path, name: &str) -> Option<PathBuf> {
    let name = name.strip_prefix("name=").unwrap_or(name);
    let direct = cgroupfs.join(name);
    if direct.join("cgroup.procs").exists() {
        return Some(direct);
    }
    let rd = std::fs::read_dir(cgroupfs).ok()?;
    for e in rd.flatten() {
        let n = e.file_name();
        let n = n.to_string_lossy();
        if n.split(',').any(|c| c == name) && e.path().join("cgroup.procs").exists() {
            return Some(e.path());
        }
    }
    None
}

/// Fds for joining a container's cgroups before any of its code runs.
#[derive(Debug, Default)]
pub struct JoinFds {
    /// The cgroup2 directory, for `clone3`'s `CLONE_INTO_CGROUP`.
    pub v2_dir: Option<OwnedFd>,
    /// `cgroup.procs` of each v1 directory, opened for writing: the child writes `0`.
    pub v1_procs: Vec<OwnedFd>,
}

/// What a container's cgroups can be asked to do.
pub trait Manager {
    /// Creates the directories (and, on v2, enables the controllers the limits
    /// need on the way down).
    fn create(&self, r: Option<&LinuxResources>) -> Result<()>;
    /// Writes the limits.
    fn apply(&self, r: &LinuxResources) -> Result<()>;
    /// Opens what a new process needs to join the cgroups.
    fn join_fds(&self) -> Result<JoinFds>;
    /// Moves an existing process in.
    fn add(&self, pid: i32) -> Result<()>;
    /// Freezes or thaws every process, returning once the kernel says it is done.
    fn freeze(&self, frozen: bool) -> Result<()>;
    /// Whether the processes are frozen.
    fn frozen(&self) -> Result<bool>;
    /// Host pids of every process in the cgroups.
    fn pids(&self) -> Result<Vec<i32>>;
    /// Removes the directories; they must be empty of processes.
    fn destroy(&self) -> Result<()>;
}

impl Manager for Cgroups {
    fn create(&self, r: Option<&LinuxResources>) -> Result<()> {
        let res = (|| {
            for (name, dir) in &self.v1 {
                v1::create(name, dir)?;
            }
            if let (Some(dir), Some(mount)) = (&self.v2, &self.v2_mount) {
                v2::create(
                    mount,
                    dir,
                    r,
                    self.layout == Layout::Unified,
                    self.v1.contains_key("hugetlb"),
                )?;
            }
            Ok(())
        })();
        if res.is_err() {
            let _ = self.destroy();
        }
        res
    }

    fn apply(&self, r: &LinuxResources) -> Result<()> {
        match self.layout {
            Layout::Unified => v2::apply(self.v2_dir()?, r),
            Layout::Legacy => v1::apply(&self.v1, r),
            Layout::Hybrid => {
                // The v1 controllers take every limit they have; the cgroup2 side
                // takes what only it has here (hugetlb on this kind of host).
                v1::apply(&self.v1, r)?;
                v2::apply_hybrid_rest(self.v2_dir()?, &self.v1, r)
            }
        }
    }

    fn join_fds(&self) -> Result<JoinFds> {
        let mut fds = JoinFds::default();
        if let Some(dir) = &self.v2 {
            fds.v2_dir = Some(open(
                dir,
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
            )?);
        }
        // Controllers mounted together share a directory: join each once.
        let mut seen = Vec::new();
        for dir in self.v1.values() {
            if !seen.contains(&dir) {
                seen.push(dir);
                fds.v1_procs
                    .push(open(&dir.join("cgroup.procs"), rustix::fs::OFlags::WRONLY)?);
            }
        }
        Ok(fds)
    }

    fn add(&self, pid: i32) -> Result<()> {
        for dir in self.dirs() {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn freeze(&self, frozen: bool) -> Result<()> {
        match (self.v1.get("freezer"), &self.v2) {
            (Some(dir), _) => v1::freezer::freeze(dir, frozen),
            (None, Some(dir)) => v2::freezer::freeze(dir, frozen),
            (None, None) => Err(Error::CgroupUnsupported {
                controller: "freezer",
                reason: "not mounted",
            }),
        }
    }

    fn frozen(&self) -> Result<bool> {
        match (self.v1.get("freezer"), &self.v2) {
            (Some(dir), _) => v1::freezer::frozen(dir),
            (None, Some(dir)) => v2::freezer::frozen(dir),
            (None, None) => Ok(false),
        }
    }

    fn pids(&self) -> Result<Vec<i32>> {
        // One hierarchy holds them all; prefer cgroup2, else any v1 one.
        let dir = self
            .v2
            .as_ref()
            .or_else(|| self.v1.get("pids"))
            .or_else(|| self.v1.values().next());
        let Some(dir) = dir else {
            return Ok(Vec::new());
        };
        let mut pids = Vec::new();
        collect_pids(dir, &mut pids)?;
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    fn destroy(&self) -> Result<()> {
        let mut first_err = None;
        for dir in self.dirs() {
            if let Err(e) = remove_tree(dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Whether a block IO section sets anything (a weight of 0 is "unset").
pub(crate) fn block_io_is_set(b: &oci_spec::runtime::LinuxBlockIo) -> bool {
    b.weight().is_some_and(|w| w != 0)
        || b.leaf_weight().is_some_and(|w| w != 0)
        || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
        || [
            b.throttle_read_bps_device(),
            b.throttle_write_bps_device(),
            b.throttle_read_iops_device(),
            b.throttle_write_iops_device(),
        ]
        .iter()
        .any(|v| v.as_ref().is_some_and(|v| !v.is_empty()))
}

/// Whether `r` asks for any limit.
pub(crate) fn asks_for_limits(r: Option<&LinuxResources>) -> bool {
    let Some(r) = r else {
        return false;
    };
    !(r.devices().as_ref().is_none_or(|d| d.is_empty())
        && r.memory().is_none()
        && r.cpu().is_none()
        && r.pids().is_none()
        && r.block_io().is_none()
        && r.hugepage_limits().as_ref().is_none_or(|h| h.is_empty())
        && r.network().is_none()
        && r.rdma().as_ref().is_none_or(|h| h.is_empty())
        && r.unified().as_ref().is_none_or(|h| h.is_empty()))
}

impl Cgroups {
    /// Whether this process may create the directories (rootless callers
    /// usually may not, unless a cgroup was delegated to them).
    pub(crate) fn writable(&self) -> bool {
        self.dirs().iter().all(|d| {
            let mut top = *d;
            while !top.exists() {
                match top.parent() {
                    Some(p) => top = p,
                    None => return false,
                }
            }
            nix::unistd::access(top, nix::unistd::AccessFlags::W_OK).is_ok()
        })
    }

    fn v2_dir(&self) -> Result<&Path> {
        self.v2.as_deref().ok_or(Error::CgroupUnsupported {
            controller: "cgroup2",
            reason: "not mounted",
        })
    }

    /// Every distinct directory, cgroup2 last.
    fn dirs(&self) -> Vec<&Path> {
        let mut out: Vec<&Path> = Vec::new();
        for d in self.v1.values() {
            if !out.contains(&d.as_path()) {
                out.push(d);
            }
        }
        if let Some(d) = &self.v2 {
            out.push(d);
        }
        out
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    let text = match std::fs::read_to_string(&procs) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Io {
                operation: "reading",
                path: procs,
                source,
            });
        }
    };
    out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_pids(&e.path(), out)?;
            }
        }
    }
    Ok(())
}

/// Removes a cgroup dir and the ones below it, deepest first. A cgroup whose
/// last process has just exited may be busy for a moment; that is retried.
fn remove_tree(dir: &Path) -> Result<()> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path())?;
            }
        }
    }
    let mut tries = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 200 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(source) => {
                return Err(Error::Io {
                    operation: "removing cgroup",
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

fn open(path: &Path, flags: rustix::fs::OFlags) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        flags | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::Io {
        operation: "opening cgroup",
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Writes `value` to a cgroup file in one `write`, as the kernel wants.
pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    let res = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    res.map_err(|source| Error::CgroupWrite {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// Reads a cgroup file, trimmed.
pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| Error::Io {
            operation: "reading",
            path: path.to_path_buf(),
            source,
        })
}

/// `dir/name`, refusing a name that would leave `dir`.
pub(crate) fn file(dir: &Path, name: &str) -> Option<PathBuf> {
    let n = Path::new(name);
    (n.components().count() == 1 && n.file_name() == Some(OsStr::new(name))).then(|| dir.join(n))
}

#[cfg(test)]
mod tests;
