//! Events of a container's cgroups: OOM notifications and periodic statistics.
//!
//! [`OomWatcher`] turns the kernel's OOM notification into a pollable fd: on v1
//! an eventfd registered through `cgroup.event_control` with `memory.oom_control`,
//! on v2 an inotify watch on `memory.events`. Either only says "look again"; the
//! counters in those files say how many OOMs there were, so a notification that
//! comes late, or twice, neither loses nor invents one.
//!
//! [`Events`] combines the watcher, a timer for statistics and a fd that becomes
//! readable when the container stops into one blocking iterator.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::stats::Stats;
use super::{Cgroups, Layout};
use crate::error::{Error, Result};

/// Something that happened to a container.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The statistics, read at the requested interval.
    Stats(Box<Stats>),
    /// The memory cgroup ran out of memory and the OOM killer killed one of the
    /// container's processes: one event per kill the kernel counted (`oom_kill`).
    /// With v1's OOM killer disabled, nothing is killed: one event per OOM
    /// notification, the processes then waiting for memory.
    Oom,
}

/// What an [`OomWatcher`] saw since it was last asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OomUpdate {
    /// OOMs since the previous check.
    pub ooms: u64,
    /// Whether the cgroup is gone, so no further OOM can come.
    pub gone: bool,
}

/// Watches a container's memory cgroup for OOMs. Its fd (see [`AsFd`]) polls
/// readable when there may be news; [`OomWatcher::check`] says what it is.
#[derive(Debug)]
pub struct OomWatcher {
    kind: Kind,
    /// Counters at the previous check.
    seen: Counts,
}

#[derive(Debug)]
enum Kind {
    V1 {
        /// Signalled by the kernel on each OOM, and once when the cgroup is removed.
        eventfd: OwnedFd,
        /// The kernel wants it open as long as the registration lasts.
        _oom_control: File,
        dir: PathBuf,
    },
    V2 {
        /// Watches `memory.events` and `cgroup.events` for modification.
        inotify: OwnedFd,
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    oom_kill: u64,
    /// v1 `oom_kill_disable`: OOMs then stall the cgroup instead of killing.
    killer_disabled: bool,
}

impl Cgroups {
    /// Starts watching the container's memory cgroup for OOMs: the v1 `memory`
    /// hierarchy on legacy and hybrid hosts, the cgroup2 directory on unified
    /// ones. `None` when there is no memory controller, so nothing can run out.
    pub fn oom_watcher(&self) -> Result<Option<OomWatcher>> {
        match (self.layout, self.v1.get("memory"), &self.v2) {
            (Layout::Legacy | Layout::Hybrid, Some(dir), _) => OomWatcher::v1(dir).map(Some),
            (Layout::Unified, _, Some(dir)) if dir.join("memory.events").exists() => {
                OomWatcher::v2(dir).map(Some)
            }
            _ => Ok(None),
        }
    }
}

impl OomWatcher {
    fn v1(dir: &Path) -> Result<OomWatcher> {
        let control = dir.join("memory.oom_control");
        let oom_control = File::open(&control).map_err(|source| Error::Io {
            operation: "opening",
            path: control.clone(),
            source,
        })?;
        // SAFETY: eventfd takes no pointers; it returns a new fd or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(Error::Sys {
                operation: "eventfd",
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(raw) };
        let seen = v1_counts(&control)?;
        use std::os::fd::AsRawFd;
        super::write(
            &dir.join("cgroup.event_control"),
            &format!("{} {}", eventfd.as_raw_fd(), oom_control.as_raw_fd()),
        )?;
        Ok(OomWatcher {
            kind: Kind::V1 {
                eventfd,
                _oom_control: oom_control,
                dir: dir.to_path_buf(),
            },
            seen,
        })
    }

    fn v2(dir: &Path) -> Result<OomWatcher> {
        use rustix::fs::inotify;
        let sys = |operation| {
            move |e: rustix::io::Errno| Error::Sys {
                operation,
                source: e.into(),
            }
        };
        let inotify = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .map_err(sys("inotify_init1"))?;
        // `cgroup.events` too: the kernel removes no watched file with a
        // notification, but it does note the cgroup's last process leaving.
        for name in ["memory.events", "cgroup.events"] {
            let path = dir.join(name);
            inotify::add_watch(&inotify, &path, inotify::WatchFlags::MODIFY).map_err(|e| {
                Error::Io {
                    operation: "watching",
                    path,
                    source: e.into(),
                }
            })?;
        }
        let seen = v2_counts(&dir.join("memory.events"))?;
        Ok(OomWatcher {
            kind: Kind::V2 {
                inotify,
                dir: dir.to_path_buf(),
            },
            seen,
        })
    }

    /// Takes the pending notifications (without blocking) and re-reads the
    /// counters: the OOMs since the previous check, and whether the cgroup is gone.
    pub fn check(&mut self) -> Result<OomUpdate> {
        match &self.kind {
            Kind::V1 { eventfd, dir, .. } => {
                let signals = drain(eventfd, "reading the OOM eventfd")?;
                // The removal of the cgroup signals the eventfd too.
                if !dir.join("cgroup.event_control").exists() {
                    return Ok(OomUpdate {
                        ooms: 0,
                        gone: true,
                    });
                }
                let control = dir.join("memory.oom_control");
                let mut now = match v1_counts(&control) {
                    Ok(c) => c,
                    Err(_) if !dir.exists() => return Ok(gone()),
                    Err(e) => return Err(e),
                };
                // The kernel signals before it picks a victim: give the kill a
                // moment to be counted, or a check in between would miss it.
                let mut tries = 0;
                while signals > 0 && !now.killer_disabled && now.oom_kill == self.seen.oom_kill {
                    if tries == 20 {
                        break;
                    }
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(1));
                    now = v1_counts(&control)?;
                }
                let kills = now.oom_kill.saturating_sub(self.seen.oom_kill);
                self.seen = now;
                Ok(OomUpdate {
                    // Without the killer nothing is killed: each notification is an OOM.
                    ooms: if now.killer_disabled {
                        kills.max(signals)
                    } else {
                        kills
                    },
                    gone: false,
                })
            }
            Kind::V2 { inotify, dir } => {
                drain(inotify, "reading inotify events")?;
                let now = match v2_counts(&dir.join("memory.events")) {
                    Ok(c) => c,
                    Err(_) if !dir.exists() => return Ok(gone()),
                    Err(e) => return Err(e),
                };
                // `oom` rises before the victim is picked, `oom_kill` after, each
                // with its own notification: the kills are what to count.
                let ooms = now.oom_kill.saturating_sub(self.seen.oom_kill);
                self.seen = now;
                Ok(OomUpdate { ooms, gone: false })
            }
        }
    }
}

impl AsFd for OomWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            Kind::V1 { eventfd, .. } => eventfd.as_fd(),
            Kind::V2 { inotify, .. } => inotify.as_fd(),
        }
    }
}

fn gone() -> OomUpdate {
    OomUpdate {
        ooms: 0,
        gone: true,
    }
}

/// Reads a non-blocking fd until it has nothing more; an eventfd's reads are
/// its counter, which is returned summed (for inotify the sum means nothing).
fn drain(fd: &OwnedFd, operation: &'static str) -> Result<u64> {
    let mut total = 0u64;
    let mut buf = [0u8; 4096];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(8) => {
                total = total
                    .saturating_add(u64::from_ne_bytes(buf[..8].try_into().unwrap_or_default()));
            }
            Ok(0) => return Ok(total),
            Ok(_) => {}
            Err(rustix::io::Errno::AGAIN) => return Ok(total),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(Error::Sys {
                    operation,
                    source: e.into(),
                });
            }
        }
    }
}

fn keyed(path: &Path) -> Result<BTreeMap<String, u64>> {
    let text = super::read(path)?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        if let (Some(k), Some(v)) = (f.next(), f.next()) {
            let v = v.parse().map_err(|_| Error::Io {
                operation: "parsing",
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("unexpected content: {line}"),
                ),
            })?;
            out.insert(k.to_string(), v);
        }
    }
    Ok(out)
}

fn v1_counts(oom_control: &Path) -> Result<Counts> {
    let m = keyed(oom_control)?;
    Ok(Counts {
        oom_kill: m.get("oom_kill").copied().unwrap_or(0),
        killer_disabled: m.get("oom_kill_disable").is_some_and(|v| *v != 0),
    })
}

fn v2_counts(events: &Path) -> Result<Counts> {
    let m = keyed(events)?;
    Ok(Counts {
        oom_kill: m.get("oom_kill").copied().unwrap_or(0),
        killer_disabled: false,
    })
}

/// A container's events, as a blocking iterator: [`Event::Oom`] as OOMs happen,
/// [`Event::Stats`] at each interval (the first one interval after the start),
/// until the container stops. Made by `Runtime::events`.
///
/// A statistics read that fails is yielded as an error and the iteration goes
/// on; a failure of the waiting itself is yielded and ends it. Dropping the
/// iterator stops watching.
#[derive(Debug)]
pub struct Events {
    cgroups: Cgroups,
    /// Readable once the container has stopped (its init's pidfd).
    stopped: OwnedFd,
    oom: Option<OomWatcher>,
    interval: Option<Duration>,
    next_stats: Option<Instant>,
    pending_ooms: u64,
    done: bool,
}

impl Events {
    /// Events of `cgroups` until `stopped` polls readable.
    pub(crate) fn new(
        cgroups: Cgroups,
        stopped: OwnedFd,
        oom: Option<OomWatcher>,
        interval: Option<Duration>,
    ) -> Events {
        Events {
            cgroups,
            stopped,
            oom,
            next_stats: interval.map(|i| Instant::now() + i),
            interval,
            pending_ooms: 0,
            done: false,
        }
    }

    /// Takes what the watcher has; on its error stops watching (and yields it).
    fn check_oom(&mut self) -> Result<()> {
        let Some(w) = &mut self.oom else {
            return Ok(());
        };
        match w.check() {
            Ok(u) => {
                self.pending_ooms = self.pending_ooms.saturating_add(u.ooms);
                if u.gone {
                    self.oom = None;
                }
                Ok(())
            }
            Err(e) => {
                self.oom = None;
                Err(e)
            }
        }
    }

    /// Waits until the next stats are due, or either fd has news.
    /// Returns which fds are readable: (stopped, oom).
    fn wait(&self) -> Result<(bool, bool)> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let timeout = match self.next_stats {
            // Rounded up, so it never wakes just before the deadline and spins.
            Some(at) => {
                let ms = at
                    .saturating_duration_since(Instant::now())
                    .as_micros()
                    .div_ceil(1000);
                PollTimeout::try_from(i32::try_from(ms).unwrap_or(i32::MAX))
                    .unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = vec![PollFd::new(self.stopped.as_fd(), PollFlags::POLLIN)];
        if let Some(w) = &self.oom {
            fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
        }
        loop {
            match poll(&mut fds, timeout) {
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    return Err(Error::Sys {
                        operation: "poll for container events",
                        source: e.into(),
                    });
                }
            }
        }
        let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        Ok((ready(&fds[0]), fds.get(1).is_some_and(ready)))
    }
}

impl Iterator for Events {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if self.pending_ooms > 0 {
                self.pending_ooms -= 1;
                return Some(Ok(Event::Oom));
            }
            if self.done {
                return None;
            }
            if let (Some(at), Some(every)) = (self.next_stats, self.interval)
                && Instant::now() >= at
            {
                // Ticks missed while the caller was busy are dropped, not bunched.
                self.next_stats = Some((at + every).max(Instant::now()));
                return Some(self.cgroups.stats().map(|s| Event::Stats(Box::new(s))));
            }
            let (stopped, oom) = match self.wait() {
                Ok(r) => r,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            if oom || stopped {
                // Also when stopped: an OOM that killed the init was counted
                // before the init exited, and must not be lost.
                if let Err(e) = self.check_oom() {
                    return Some(Err(e));
                }
            }
            if stopped {
                self.done = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).expect("mkdir");
        for (name, content) in files {
            std::fs::write(dir.join(name), content).expect("write cgroup file");
        }
    }

    fn cgroups(layout: Layout, dir: &Path) -> Cgroups {
        let v1 = if layout == Layout::Unified {
            BTreeMap::new()
        } else {
            BTreeMap::from([("memory".to_string(), dir.to_path_buf())])
        };
        Cgroups {
            layout,
            v1,
            hierarchies: BTreeMap::new(),
            v2: (layout == Layout::Unified).then(|| dir.to_path_buf()),
            v2_mount: None,
        }
    }

    fn oom_control(dir: &Path, disabled: u8, kills: u64) {
        write(
            dir,
            &[(
                "memory.oom_control",
                &format!("oom_kill_disable {disabled}\nunder_oom 0\noom_kill {kills}\n"),
            )],
        );
    }

    /// What the kernel does on a v1 OOM: bump the eventfd's counter.
    fn signal(w: &OomWatcher) {
        let Kind::V1 { eventfd, .. } = &w.kind else {
            panic!("not a v1 watcher");
        };
        rustix::io::write(eventfd, &1u64.to_ne_bytes()).expect("signal eventfd");
    }

    #[test]
    fn v1_registers_its_eventfd_and_counts_kills() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("memory/ctr");
        write(&dir, &[("cgroup.event_control", "")]);
        oom_control(&dir, 0, 2);
        let mut w = cgroups(Layout::Hybrid, &dir)
            .oom_watcher()
            .expect("watch")
            .expect("a memory cgroup");
        // `<eventfd> <oom_control fd>`, as the kernel wants it.
        let reg = std::fs::read_to_string(dir.join("cgroup.event_control")).expect("read");
        let fds: Vec<i32> = reg
            .split(' ')
            .map(|f| f.parse().expect("an fd number"))
            .collect();
        use std::os::fd::AsRawFd;
        assert_eq!(fds, [w.as_fd().as_raw_fd(), fds[1]]);
        assert!(Path::new(&format!("/proc/self/fd/{}", fds[1])).exists());

        // Kills from before the watch started are not news.
        assert_eq!(w.check().expect("check"), OomUpdate::default());
        oom_control(&dir, 0, 3);
        signal(&w);
        assert_eq!(w.check().expect("check").ooms, 1);
        assert_eq!(w.check().expect("check").ooms, 0);
        // A kill without a notification (a host-wide OOM chose a victim here).
        oom_control(&dir, 0, 4);
        assert_eq!(w.check().expect("check").ooms, 1);
        // A notification whose kill is never counted (the victim was already dying).
        signal(&w);
        assert_eq!(w.check().expect("check").ooms, 0);
        // With the killer disabled, each notification is an OOM.
        oom_control(&dir, 1, 4);
        signal(&w);
        signal(&w);
        assert_eq!(w.check().expect("check").ooms, 2);

        std::fs::remove_file(dir.join("cgroup.event_control")).expect("rm");
        signal(&w);
        assert!(w.check().expect("check").gone);
    }

    #[test]
    fn v2_watches_memory_events() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("ctr");
        let events = |oom: u64, kill: u64| {
            format!("low 0\nhigh 0\nmax 3\noom {oom}\noom_kill {kill}\noom_group_kill 0\n")
        };
        write(
            &dir,
            &[
                ("memory.events", &events(1, 1)),
                ("cgroup.events", "populated 1\nfrozen 0\n"),
            ],
        );
        let mut w = cgroups(Layout::Unified, &dir)
            .oom_watcher()
            .expect("watch")
            .expect("a memory cgroup");
        assert_eq!(w.check().expect("check"), OomUpdate::default());
        // `oom` rises first: no kill yet, nothing to report.
        write(&dir, &[("memory.events", &events(2, 1))]);
        assert!(readable(&w, 1000), "inotify saw the write");
        assert_eq!(w.check().expect("check").ooms, 0);
        assert!(!readable(&w, 0), "check took the notification");
        write(&dir, &[("memory.events", &events(2, 2))]);
        assert_eq!(w.check().expect("check").ooms, 1);

        std::fs::remove_dir_all(&dir).expect("rm");
        assert!(w.check().expect("check").gone);
    }

    #[test]
    fn no_memory_controller_no_watcher() {
        let t = tempfile::tempdir().expect("tempdir");
        let cg = Cgroups {
            v1: BTreeMap::new(),
            ..cgroups(Layout::Legacy, t.path())
        };
        assert!(cg.oom_watcher().expect("watch").is_none());
        let cg = cgroups(Layout::Unified, &t.path().join("no-memory"));
        assert!(cg.oom_watcher().expect("watch").is_none());
    }

    fn readable(w: &OomWatcher, ms: u16) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut p = [PollFd::new(w.as_fd(), PollFlags::POLLIN)];
        poll(&mut p, PollTimeout::from(ms)).expect("poll") == 1
    }

    #[test]
    fn events_yield_stats_and_ooms_until_stopped() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("ctr");
        let events = |kill: u64| format!("oom {kill}\noom_kill {kill}\n");
        write(
            &dir,
            &[
                ("memory.events", &events(0)),
                ("cgroup.events", "populated 1\n"),
                ("memory.current", "4096\n"),
                ("memory.max", "max\n"),
                ("pids.current", "1\n"),
                ("pids.max", "10\n"),
            ],
        );
        let cg = cgroups(Layout::Unified, &dir);
        let oom = cg.oom_watcher().expect("watch");
        let (stop_r, stop_w) = rustix::pipe::pipe().expect("pipe");
        let mut ev = Events::new(cg, stop_r, oom, Some(Duration::from_millis(20)));
        let Some(Ok(Event::Stats(s))) = ev.next() else {
            panic!("stats first");
        };
        assert_eq!(s.pids.and_then(|p| p.limit), Some(10));
        write(&dir, &[("memory.events", &events(1))]);
        // Stats keep coming at the interval; the OOM arrives among them.
        let mut saw_oom = false;
        for _ in 0..500 {
            match ev.next() {
                Some(Ok(Event::Oom)) => {
                    saw_oom = true;
                    break;
                }
                Some(Ok(Event::Stats(_))) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(saw_oom, "no OOM event");

        // An OOM right before the stop is still delivered, then the end.
        write(&dir, &[("memory.events", &events(3))]);
        drop(stop_w);
        let rest: Vec<_> = ev.by_ref().map(|e| e.expect("event")).collect();
        let ooms = rest.iter().filter(|e| **e == Event::Oom).count();
        assert_eq!(ooms, 2, "{rest:?}");
        assert!(ev.next().is_none());
    }

    #[test]
    fn events_without_interval_only_wait() {
        let t = tempfile::tempdir().expect("tempdir");
        let (stop_r, stop_w) = rustix::pipe::pipe().expect("pipe");
        let cg = cgroups(Layout::Unified, &t.path().join("gone"));
        let mut ev = Events::new(cg, stop_r, None, None);
        let waiter = std::thread::spawn(move || ev.next().is_none());
        std::thread::sleep(Duration::from_millis(50));
        drop(stop_w);
        assert!(waiter.join().expect("join"), "ends when stopped, no event");
    }
}
