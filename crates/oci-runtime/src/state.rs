//! The per-container state dir: `<root>/<id>/state.json`, written atomically and
//! guarded by an `flock` on the directory itself.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io_err};

/// Everything known about a container, kept on disk so any process can drive it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Saved {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// Host pid of the init; 0 while the container is being created.
    pub pid: i32,
    /// Start time of `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22),
    /// so a recycled pid is never mistaken for the container.
    pub start_time: u64,
    /// RFC 3339 creation time.
    pub created: String,
    pub started: bool,
    /// Set while prestart and createRuntime hooks run: the init exists (`pid` is
    /// set, so those hooks can find it) but `create` has not finished.
    #[serde(default)]
    pub creating: bool,
    pub annotations: HashMap<String, String>,
    /// The init's exit status, once someone who waited for it recorded it.
    pub exit_status: Option<i32>,
    /// RFC 3339 time the exit status was recorded.
    #[serde(default)]
    pub exit_time: Option<String>,
    /// Whether the kernel's OOM killer killed a process of the container
    /// (recorded by its monitor).
    #[serde(default)]
    pub oom_killed: bool,
    /// Whether the container has its own pid namespace (so killing init kills all).
    pub own_pid_ns: bool,
    /// Whether the container shares the caller's mount namespace, so its mounts
    /// (all under the rootfs bind) are the host's and delete must detach them.
    #[serde(default)]
    pub shares_mount_ns: bool,
    /// The container's cgroups (`None`: it stayed in the caller's, rootless).
    #[serde(default)]
    pub cgroups: Option<crate::cgroups::Cgroups>,
    /// The bundle's hooks, needed again at start and delete.
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// The config's seccomp profile, which processes exec'd later get too.
    #[serde(default)]
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// Owner (user name) for `list`.
    pub owner: String,
}

/// An open, locked container dir.
#[derive(Debug)]
pub(crate) struct Locked {
    pub dir: PathBuf,
    _lock: Flock<File>,
}

fn lock_dir(dir: &Path) -> Result<Flock<File>> {
    let mut f = File::open(dir).map_err(io_err("opening state dir", dir))?;
    loop {
        match Flock::lock(f, FlockArg::LockExclusive) {
            Ok(l) => return Ok(l),
            Err((back, nix::errno::Errno::EINTR)) => f = back,
            Err((_, e)) => {
                return Err(Error::Io {
                    operation: "locking state dir",
                    path: dir.to_path_buf(),
                    source: e.into(),
                });
            }
        }
    }
}

impl Locked {
    /// Locks an existing container's dir; `NotFound` if it does not exist (or was deleted meanwhile).
    pub(crate) fn open(root: &Path, id: &str) -> Result<Self> {
        let dir = root.join(id);
        let lock = match lock_dir(&dir) {
            Ok(l) => l,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound { id: id.to_string() });
            }
            Err(e) => return Err(e),
        };
        // A concurrent delete may have removed the dir while we waited for the lock.
        if !dir.join("state.json").exists() {
            return Err(Error::NotFound { id: id.to_string() });
        }
        Ok(Locked { dir, _lock: lock })
    }

    /// Creates `<root>/<id>` atomically, already locked and holding `saved`.
    pub(crate) fn create(root: &Path, id: &str, saved: &Saved) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(io_err("creating state root", root))?;
        let dir = root.join(id);
        if dir.exists() {
            return Err(Error::Exists { id: id.to_string() });
        }
        sweep_stale_tmp(root);
        let tmp = tempdir_in(root, id)?;
        let lock = lock_dir(&tmp)?;
        write_atomic(
            &tmp.join("state.json"),
            &serde_json::to_vec(saved).map_err(|source| Error::State {
                id: id.into(),
                source,
            })?,
        )?;
        // No replacing: two creates of one id race here, and one must lose.
        let r = nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &tmp,
            nix::fcntl::AT_FDCWD,
            &dir,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        );
        if let Err(e) = r {
            let _ = std::fs::remove_dir_all(&tmp);
            if e == nix::errno::Errno::EEXIST || e == nix::errno::Errno::ENOTEMPTY {
                return Err(Error::Exists { id: id.to_string() });
            }
            return Err(Error::Io {
                operation: "renaming state dir",
                path: dir,
                source: e.into(),
            });
        }
        Ok(Locked { dir, _lock: lock })
    }

    pub(crate) fn load(&self, id: &str) -> Result<Saved> {
        read_state(&self.dir, id)
    }

    pub(crate) fn save(&self, saved: &Saved) -> Result<()> {
        let bytes = serde_json::to_vec(saved).map_err(|source| Error::State {
            id: saved.id.clone(),
            source,
        })?;
        write_atomic(&self.dir.join("state.json"), &bytes)
    }

    pub(crate) fn fifo(&self) -> PathBuf {
        self.dir.join("exec.fifo")
    }

    /// Removes the dir (the lock is released when `self` drops).
    pub(crate) fn remove(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir).map_err(io_err("removing state dir", &self.dir))
    }
}

/// Reads a container's state without taking its lock. `state.json` is only ever
/// replaced by a rename, so a reader sees a whole old or new state; this is what
/// lets a prestart hook run `state` for the container whose `create` holds the lock.
pub(crate) fn read_unlocked(root: &Path, id: &str) -> Result<Saved> {
    match read_state(&root.join(id), id) {
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::NotFound { id: id.to_string() })
        }
        r => r,
    }
}

fn read_state(dir: &Path, id: &str) -> Result<Saved> {
    let path = dir.join("state.json");
    let bytes = std::fs::read(&path).map_err(io_err("reading", &path))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::State {
        id: id.to_string(),
        source,
    })
}

/// Removes `.tmp-<id>-<pid>-<nanos>` dirs whose creating process is gone: a
/// create killed between making its temp state dir and renaming it into place.
/// A live creator (its pid still exists) is left alone; best effort throughout.
fn sweep_stale_tmp(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(".tmp-")) else {
            continue;
        };
        // The id may contain '-', so the pid is the second field from the right.
        let mut fields = rest.rsplitn(3, '-');
        let (_nanos, pid) = (fields.next(), fields.next());
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn tempdir_in(root: &Path, id: &str) -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = root.join(format!(".tmp-{id}-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&tmp).map_err(io_err("creating state dir", &tmp))?;
    Ok(tmp)
}

/// Writes `bytes` to a temp file beside `path` and renames it over `path`, so readers
/// see the old or the new state, never a torn one. No fsync: the state root lives on
/// a tmpfs (`/run`) and does not outlive a reboot anyway.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(io_err("creating", &tmp))?;
    f.write_all(bytes).map_err(io_err("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("renaming", path))
}

/// Formats a system time as RFC 3339 UTC with nanoseconds.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(id: &str) -> Saved {
        Saved {
            id: id.into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            pid: 0,
            start_time: 0,
            created: rfc3339(std::time::SystemTime::now()),
            started: false,
            creating: false,
            annotations: HashMap::new(),
            exit_status: None,
            exit_time: None,
            oom_killed: false,
            own_pid_ns: true,
            shares_mount_ns: false,
            cgroups: None,
            hooks: None,
            seccomp: None,
            owner: String::new(),
        }
    }

    #[test]
    fn create_lock_save_remove() -> Result<()> {
        let root = tempfile::tempdir().map_err(io_err("tempdir", "/tmp"))?;
        let l = Locked::create(root.path(), "c1", &saved("c1"))?;
        assert!(matches!(
            Locked::create(root.path(), "c1", &saved("c1")),
            Err(Error::Exists { .. })
        ));
        let mut s = l.load("c1")?;
        s.pid = 42;
        l.save(&s)?;
        assert_eq!(l.load("c1")?.pid, 42);
        l.remove()?;
        assert!(matches!(
            Locked::open(root.path(), "c1"),
            Err(Error::NotFound { .. })
        ));
        let leftovers: Vec<_> = std::fs::read_dir(root.path())
            .map_err(io_err("read", "/tmp"))?
            .collect();
        assert!(leftovers.is_empty());
        Ok(())
    }

    #[test]
    fn create_sweeps_temp_dirs_of_dead_creators() -> Result<()> {
        let root = tempfile::tempdir().map_err(io_err("tempdir", "/tmp"))?;
        // pid_max is at most 2^22, so this pid cannot be alive.
        let dead = root.path().join(".tmp-my-ctr-4999999-123");
        let live = root
            .path()
            .join(format!(".tmp-other-1-{}-456", std::process::id()));
        let not_ours = root.path().join(".tmp-garbage");
        for d in [&dead, &live, &not_ours] {
            std::fs::create_dir(d).map_err(io_err("mkdir", d))?;
        }
        let l = Locked::create(root.path(), "c2", &saved("c2"))?;
        assert!(!dead.exists(), "a dead creator's temp dir is swept");
        assert!(live.exists(), "a live creator's temp dir stays");
        assert!(not_ours.exists(), "names not in our format stay");
        l.remove()?;
        Ok(())
    }

    #[test]
    fn rfc3339_epoch() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000000000Z");
    }
}
