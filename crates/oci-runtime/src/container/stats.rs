//! `stats` and `events`: a created or running container's resource statistics
//! and OOM notifications, and the JSON runc 1.1's `events` prints for them.

use std::collections::BTreeMap;
use std::time::Duration;

use oci_spec::runtime::ContainerState;
use serde::Serialize;

use super::Runtime;
use crate::cgroups::Cgroups;
use crate::cgroups::events::{Event, Events};
use crate::cgroups::stats::{BlkioEntry, MemoryEntry, Stats};
use crate::error::{Error, Result};
use crate::state::Saved;

impl Runtime {
    /// The resource statistics of a created or running container.
    pub fn stats(&self, id: &str) -> Result<Stats> {
        let (_, cg) = self.live(id, "read stats")?;
        cg.stats()
    }

    /// The container's events until it stops: [`Event::Oom`] when its memory
    /// cgroup runs out of memory, and with `interval` its [`Event::Stats`] that
    /// often. Blocks in [`Events::next`]; a caller that wants to stop earlier
    /// drops the iterator.
    ///
    /// ```no_run
    /// # use oci_runtime::Runtime;
    /// let rt = Runtime::new("/run/mini-runtime");
    /// for ev in rt.events("web", Some(std::time::Duration::from_secs(5)))? {
    ///     println!("{}", ev?.to_runc_json("web"));
    /// }
    /// # Ok::<(), oci_runtime::Error>(())
    /// ```
    pub fn events(&self, id: &str, interval: Option<Duration>) -> Result<Events> {
        let (s, cg) = self.live(id, "watch events")?;
        // Watch first, then pin the init: an OOM from here on is counted even
        // when it kills the init at once.
        let oom = cg.oom_watcher()?;
        let stopped = super::pidfd(&self.proc_root, s.pid, s.start_time)?.ok_or_else(|| {
            Error::WrongState {
                id: id.into(),
                status: ContainerState::Stopped.to_string(),
                operation: "watch events",
            }
        })?;
        Ok(Events::new(cg, stopped, oom, interval))
    }

    /// A created or running container's state and cgroups. The lock is not
    /// kept: watching must not hold off `delete`.
    fn live(&self, id: &str, operation: &'static str) -> Result<(Saved, Cgroups)> {
        let (_, s) = self.open_live(id, operation)?;
        let cg = s.cgroups.clone().ok_or(Error::CgroupUnsupported {
            controller: "cgroups",
            reason: "the container runs in its creator's cgroup (rootless, no delegation)",
        })?;
        Ok((s, cg))
    }
}

impl Event {
    /// One line of runc 1.1's `events` output for container `id`:
    /// `{"type":"stats","id":…,"data":{…}}` with runc's field names, nesting
    /// and omitted zero fields, or `{"type":"oom","id":…}`.
    pub fn to_runc_json(&self, id: &str) -> String {
        let line = match self {
            Event::Stats(s) => serde_json::to_string(&RuncEvent {
                kind: "stats",
                id,
                data: Some(RuncStats::from(s)),
            }),
            Event::Oom => serde_json::to_string(&RuncEvent {
                kind: "oom",
                id,
                data: None,
            }),
        };
        // Only maps with string keys and plain numbers: serialising cannot fail.
        line.unwrap_or_default()
    }
}

#[derive(Debug, Serialize)]
struct RuncEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<RuncStats<'a>>,
}

/// The `data` of runc 1.1's `events` `stats` object: its field names, nesting and
/// omitted-when-zero fields (Go's `omitempty`), with the struct order runc prints.
#[derive(Debug, Serialize)]
struct RuncStats<'a> {
    cpu: RuncCpu<'a>,
    cpuset: RuncCpuset<'a>,
    memory: RuncMemory<'a>,
    pids: RuncPids,
    blkio: RuncBlkio<'a>,
    hugetlb: BTreeMap<&'a str, RuncHugetlb>,
    /// Intel RDT is not supported: always the empty object runc prints without it.
    intel_rdt: Empty,
    /// Interfaces runc lists only for its own (non-OCI) network config: none.
    network_interfaces: Option<()>,
}

#[derive(Debug, Serialize)]
struct Empty {}

fn zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Serialize)]
struct RuncCpu<'a> {
    usage: RuncCpuUsage<'a>,
    throttling: RuncThrottling,
}

#[derive(Debug, Serialize)]
struct RuncCpuUsage<'a> {
    #[serde(skip_serializing_if = "zero")]
    total: u64,
    #[serde(skip_serializing_if = "<[u64]>::is_empty")]
    percpu: &'a [u64],
    #[serde(skip_serializing_if = "<[u64]>::is_empty")]
    percpu_kernel: &'a [u64],
    #[serde(skip_serializing_if = "<[u64]>::is_empty")]
    percpu_user: &'a [u64],
    kernel: u64,
    user: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RuncThrottling {
    #[serde(skip_serializing_if = "zero")]
    periods: u64,
    #[serde(skip_serializing_if = "zero")]
    throttled_periods: u64,
    #[serde(skip_serializing_if = "zero")]
    throttled_time: u64,
}

#[derive(Debug, Serialize)]
struct RuncCpuset<'a> {
    #[serde(skip_serializing_if = "<[u16]>::is_empty")]
    cpus: &'a [u16],
    cpu_exclusive: u64,
    #[serde(skip_serializing_if = "<[u16]>::is_empty")]
    mems: &'a [u16],
    mem_hardwall: u64,
    mem_exclusive: u64,
    memory_migrate: u64,
    memory_spread_page: u64,
    memory_spread_slab: u64,
    memory_pressure: u64,
    sched_load_balance: u64,
    sched_relax_domain_level: i64,
}

#[derive(Debug, Serialize)]
struct RuncMemory<'a> {
    #[serde(skip_serializing_if = "zero")]
    cache: u64,
    usage: RuncMemoryEntry,
    swap: RuncMemoryEntry,
    kernel: RuncMemoryEntry,
    #[serde(rename = "kernelTCP")]
    kernel_tcp: RuncMemoryEntry,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a BTreeMap<String, u64>>,
}

#[derive(Debug, Default, Serialize)]
struct RuncMemoryEntry {
    limit: u64,
    #[serde(skip_serializing_if = "zero")]
    usage: u64,
    #[serde(skip_serializing_if = "zero")]
    max: u64,
    failcnt: u64,
}

#[derive(Debug, Serialize)]
struct RuncPids {
    #[serde(skip_serializing_if = "zero")]
    current: u64,
    #[serde(skip_serializing_if = "zero")]
    limit: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct RuncBlkio<'a> {
    #[serde(skip_serializing_if = "<[RuncBlkioEntry]>::is_empty")]
    io_service_bytes_recursive: Vec<RuncBlkioEntry<'a>>,
    #[serde(skip_serializing_if = "<[RuncBlkioEntry]>::is_empty")]
    io_serviced_recursive: Vec<RuncBlkioEntry<'a>>,
    #[serde(
        rename = "ioQueueRecursive",
        skip_serializing_if = "<[RuncBlkioEntry]>::is_empty"
    )]
    io_queued_recursive: Vec<RuncBlkioEntry<'a>>,
    #[serde(skip_serializing_if = "<[RuncBlkioEntry]>::is_empty")]
    io_service_time_recursive: Vec<RuncBlkioEntry<'a>>,
    #[serde(skip_serializing_if = "<[RuncBlkioEntry]>::is_empty")]
    io_wait_time_recursive: Vec<RuncBlkioEntry<'a>>,
    #[serde(skip_serializing_if = "<[RuncBlkioEntry]>::is_empty")]
    io_merged_recursive: Vec<RuncBlkioEntry<'a>>,
    #[serde(skip_serializing_if = "<[RuncBlkioEntry]>::is_empty")]
    io_time_recursive: Vec<RuncBlkioEntry<'a>>,
    #[serde(skip_serializing_if = "<[RuncBlkioEntry]>::is_empty")]
    sectors_recursive: Vec<RuncBlkioEntry<'a>>,
}

#[derive(Debug, Serialize)]
struct RuncBlkioEntry<'a> {
    #[serde(skip_serializing_if = "zero")]
    major: u64,
    #[serde(skip_serializing_if = "zero")]
    minor: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    op: &'a str,
    #[serde(skip_serializing_if = "zero")]
    value: u64,
}

#[derive(Debug, Serialize)]
struct RuncHugetlb {
    #[serde(skip_serializing_if = "zero")]
    usage: u64,
    #[serde(skip_serializing_if = "zero")]
    max: u64,
    failcnt: u64,
}

fn rows(t: &[BlkioEntry]) -> Vec<RuncBlkioEntry<'_>> {
    t.iter()
        .map(|e| RuncBlkioEntry {
            major: e.major,
            minor: e.minor,
            op: &e.op,
            value: e.value,
        })
        .collect()
}

impl RuncMemoryEntry {
    fn from(e: Option<&MemoryEntry>) -> Self {
        e.map(|e| RuncMemoryEntry {
            limit: e.limit,
            usage: e.usage,
            max: e.max_usage.unwrap_or(0),
            failcnt: e.failcnt.unwrap_or(0),
        })
        .unwrap_or_default()
    }
}

impl<'a> RuncStats<'a> {
    fn from(s: &'a Stats) -> RuncStats<'a> {
        let usage = s.cpu.as_ref().and_then(|c| c.usage.as_ref());
        let throttling = s.cpu.as_ref().and_then(|c| c.throttling.clone());
        let throttling = throttling.unwrap_or_default();
        let cs = s.cpuset.as_ref();
        let m = s.memory.as_ref();
        let blkio = match &s.blkio {
            Some(b) => RuncBlkio {
                io_service_bytes_recursive: rows(&b.io_service_bytes_recursive),
                io_serviced_recursive: rows(&b.io_serviced_recursive),
                io_queued_recursive: rows(&b.io_queued_recursive),
                io_service_time_recursive: rows(&b.io_service_time_recursive),
                io_wait_time_recursive: rows(&b.io_wait_time_recursive),
                io_merged_recursive: rows(&b.io_merged_recursive),
                io_time_recursive: rows(&b.io_time_recursive),
                sectors_recursive: rows(&b.sectors_recursive),
            },
            None => RuncBlkio::default(),
        };
        RuncStats {
            cpu: RuncCpu {
                usage: RuncCpuUsage {
                    total: usage.map_or(0, |u| u.total),
                    percpu: usage.map_or(&[][..], |u| &u.per_cpu),
                    percpu_kernel: usage.map_or(&[][..], |u| &u.per_cpu_system),
                    percpu_user: usage.map_or(&[][..], |u| &u.per_cpu_user),
                    kernel: usage.map_or(0, |u| u.system),
                    user: usage.map_or(0, |u| u.user),
                },
                throttling: RuncThrottling {
                    periods: throttling.periods,
                    throttled_periods: throttling.throttled_periods,
                    throttled_time: throttling.throttled_time,
                },
            },
            cpuset: RuncCpuset {
                cpus: cs.map_or(&[][..], |c| &c.cpus),
                cpu_exclusive: cs.map_or(0, |c| c.cpu_exclusive),
                mems: cs.map_or(&[][..], |c| &c.mems),
                mem_hardwall: cs.map_or(0, |c| c.mem_hardwall),
                mem_exclusive: cs.map_or(0, |c| c.mem_exclusive),
                memory_migrate: cs.map_or(0, |c| c.memory_migrate),
                memory_spread_page: cs.map_or(0, |c| c.memory_spread_page),
                memory_spread_slab: cs.map_or(0, |c| c.memory_spread_slab),
                memory_pressure: cs.map_or(0, |c| c.memory_pressure),
                sched_load_balance: cs.map_or(0, |c| c.sched_load_balance),
                sched_relax_domain_level: cs.map_or(0, |c| c.sched_relax_domain_level),
            },
            memory: RuncMemory {
                // runc's `cache` is the cgroup's own counter: v1 `cache`, v2 `file`.
                cache: m
                    .and_then(|m| m.stat.get("cache").or_else(|| m.stat.get("file")))
                    .copied()
                    .unwrap_or(0),
                usage: RuncMemoryEntry::from(m.map(|m| &m.usage)),
                swap: RuncMemoryEntry::from(m.and_then(|m| m.memsw.as_ref())),
                kernel: RuncMemoryEntry::from(m.and_then(|m| m.kernel.as_ref())),
                kernel_tcp: RuncMemoryEntry::from(m.and_then(|m| m.kernel_tcp.as_ref())),
                raw: m.map(|m| &m.stat).filter(|s| !s.is_empty()),
            },
            pids: RuncPids {
                current: s.pids.as_ref().map_or(0, |p| p.current),
                limit: s.pids.as_ref().and_then(|p| p.limit).unwrap_or(0),
            },
            blkio,
            hugetlb: s
                .hugetlb
                .iter()
                .map(|(size, h)| {
                    (
                        size.as_str(),
                        RuncHugetlb {
                            usage: h.usage,
                            max: h.max_usage.unwrap_or(0),
                            failcnt: h.failcnt,
                        },
                    )
                })
                .collect(),
            intel_rdt: Empty {},
            network_interfaces: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;
    use crate::cgroups::Layout;
    use crate::state::Locked;

    fn saved(id: &str, pid: i32, start_time: u64, cgroups: Option<Cgroups>) -> Saved {
        Saved {
            id: id.into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            pid,
            start_time,
            created: "2024-01-01T00:00:00Z".into(),
            started: true,
            creating: false,
            annotations: HashMap::new(),
            exit_status: None,
            exit_time: None,
            oom_killed: false,
            own_pid_ns: true,
            shares_mount_ns: false,
            cgroups,
            hooks: None,
            seccomp: None,
            owner: String::new(),
        }
    }

    fn fake_cgroup(dir: &Path) -> Cgroups {
        std::fs::create_dir_all(dir).expect("mkdir");
        for (name, content) in [
            ("memory.events", "oom 0\noom_kill 0\n"),
            ("cgroup.events", "populated 1\n"),
            ("memory.current", "8192\n"),
            ("memory.max", "16777216\n"),
            ("pids.current", "1\n"),
            ("pids.max", "max\n"),
        ] {
            std::fs::write(dir.join(name), content).expect("write");
        }
        Cgroups {
            layout: Layout::Unified,
            v1: BTreeMap::new(),
            hierarchies: BTreeMap::new(),
            v2: Some(dir.to_path_buf()),
            v2_mount: None,
        }
    }

    #[test]
    fn only_live_containers_with_cgroups_have_stats() {
        let t = tempfile::tempdir().expect("tempdir");
        let rt = Runtime::new(t.path().join("state"));
        assert!(matches!(rt.stats("nope"), Err(Error::NotFound { .. })));
        assert!(matches!(
            rt.events("nope", None),
            Err(Error::NotFound { .. })
        ));

        // Our own pid with a start time that is not ours: a stopped container.
        let cg = fake_cgroup(&t.path().join("cg"));
        let me = std::process::id() as i32;
        let stopped = saved("stopped", me, 1, Some(cg.clone()));
        drop(Locked::create(rt.root(), "stopped", &stopped).expect("save"));
        let e = rt.stats("stopped").expect_err("stopped");
        assert!(
            matches!(&e, Error::WrongState { status, .. } if status == "stopped"),
            "{e:?}"
        );
        assert!(matches!(
            rt.events("stopped", None),
            Err(Error::WrongState { .. })
        ));

        let (start, _) = crate::procfs::stat(Path::new("/proc"), me).expect("own stat");
        drop(
            Locked::create(rt.root(), "rootless", &saved("rootless", me, start, None))
                .expect("save"),
        );
        assert!(matches!(
            rt.stats("rootless"),
            Err(Error::CgroupUnsupported { .. })
        ));

        drop(Locked::create(rt.root(), "live", &saved("live", me, start, Some(cg))).expect("save"));
        let s = rt.stats("live").expect("stats");
        assert_eq!(s.memory.map(|m| m.usage.limit), Some(16777216));
    }

    #[test]
    fn events_end_when_the_init_exits() {
        let t = tempfile::tempdir().expect("tempdir");
        let rt = Runtime::new(t.path().join("state"));
        let cg = fake_cgroup(&t.path().join("cg"));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        let (start, _) = crate::procfs::stat(Path::new("/proc"), pid).expect("child stat");
        drop(Locked::create(rt.root(), "c", &saved("c", pid, start, Some(cg))).expect("save"));
        let mut ev = rt
            .events("c", Some(Duration::from_millis(10)))
            .expect("events");
        let first = ev.next().expect("an event").expect("stats");
        assert!(
            first
                .to_runc_json("c")
                .starts_with(r#"{"type":"stats","id":"c","data":{"cpu":"#),
            "{first:?}"
        );
        child.kill().expect("kill");
        let _ = child.wait();
        // Stats may still come until the exit is seen; then the end.
        let mut n = 0;
        for e in ev {
            assert!(matches!(e, Ok(Event::Stats(_))), "{e:?}");
            n += 1;
            assert!(n < 1000, "events never ended");
        }
    }

    #[test]
    fn oom_events_print_without_data() {
        assert_eq!(
            Event::Oom.to_runc_json("web"),
            r#"{"type":"oom","id":"web"}"#
        );
        let empty = Event::Stats(Box::default()).to_runc_json("web");
        assert_eq!(
            empty,
            r#"{"type":"stats","id":"web","data":{"cpu":{"usage":{"kernel":0,"user":0},"throttling":{}},"cpuset":{"cpu_exclusive":0,"mem_hardwall":0,"mem_exclusive":0,"memory_migrate":0,"memory_spread_page":0,"memory_spread_slab":0,"memory_pressure":0,"sched_load_balance":0,"sched_relax_domain_level":0},"memory":{"usage":{"limit":0,"failcnt":0},"swap":{"limit":0,"failcnt":0},"kernel":{"limit":0,"failcnt":0},"kernelTCP":{"limit":0,"failcnt":0}},"pids":{},"blkio":{},"hugetlb":{},"intel_rdt":{},"network_interfaces":null}}"#
        );
    }
}
