//! Resource statistics: what a container's cgroups have accounted so far.
//!
//! [`Cgroups::stats`] reads the v1 controllers' files (legacy and hybrid hosts)
//! or the cgroup2 directory (unified hosts), and pressure stall information from
//! the cgroup2 directory wherever there is one (on a hybrid host, its only use). A controller that is not mounted,
//! or a file this kernel does not have, leaves its part absent (`None`, empty);
//! a file that is there but cannot be parsed is an error naming it.
//!
//! Times are nanoseconds, sizes bytes. Limits are the kernel's numbers: cgroup2's
//! `max` reads as `u64::MAX`, and v1 shows "no limit" as the largest page-aligned
//! `i64` (9223372036854771712 with 4 KiB pages), as runc reports them too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Cgroups, Layout};
use crate::error::{Error, Result};

/// What a container's cgroups have accounted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// CPU time and CFS throttling.
    pub cpu: Option<CpuStats>,
    /// The cpuset the processes may run on (v1 only).
    pub cpuset: Option<CpusetStats>,
    /// Memory use, limits and OOM counts.
    pub memory: Option<MemoryStats>,
    /// Number of tasks and their limit.
    pub pids: Option<PidsStats>,
    /// Block IO per device.
    pub blkio: Option<BlkioStats>,
    /// Huge pages per page size (`2MB`, `1GB`).
    pub hugetlb: BTreeMap<String, HugetlbStats>,
    /// Pressure stall information, where the cgroup2 directory has it.
    pub pressure: Option<Pressure>,
}

/// CPU time and CFS throttling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// CPU time used (v1 `cpuacct`, v2 `cpu.stat`).
    pub usage: Option<CpuUsage>,
    /// CFS bandwidth throttling (v1 `cpu.stat`; v2 `cpu.stat` once the `cpu`
    /// controller is enabled).
    pub throttling: Option<Throttling>,
}

/// CPU time used, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuUsage {
    /// All of it.
    pub total: u64,
    /// In user mode.
    pub user: u64,
    /// In kernel mode.
    pub system: u64,
    /// Per CPU (v1 `cpuacct.usage_percpu`; empty on v2).
    pub per_cpu: Vec<u64>,
    /// Per CPU, user mode (v1 `cpuacct.usage_all`; empty where absent).
    pub per_cpu_user: Vec<u64>,
    /// Per CPU, kernel mode (v1 `cpuacct.usage_all`; empty where absent).
    pub per_cpu_system: Vec<u64>,
}

/// CFS bandwidth throttling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Throttling {
    /// Enforcement periods that have elapsed while the cgroup was runnable.
    pub periods: u64,
    /// Periods in which the cgroup used up its quota and was throttled.
    pub throttled_periods: u64,
    /// Total time throttled, in nanoseconds.
    pub throttled_time: u64,
}

/// The v1 cpuset: CPUs and memory nodes, and its flags (0 where a flag's file is missing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpusetStats {
    /// CPUs the processes may run on.
    pub cpus: Vec<u16>,
    /// Memory nodes they may allocate from.
    pub mems: Vec<u16>,
    /// `cpuset.cpu_exclusive`.
    pub cpu_exclusive: u64,
    /// `cpuset.mem_exclusive`.
    pub mem_exclusive: u64,
    /// `cpuset.mem_hardwall`.
    pub mem_hardwall: u64,
    /// `cpuset.memory_migrate`.
    pub memory_migrate: u64,
    /// `cpuset.memory_pressure`.
    pub memory_pressure: u64,
    /// `cpuset.memory_spread_page`.
    pub memory_spread_page: u64,
    /// `cpuset.memory_spread_slab`.
    pub memory_spread_slab: u64,
    /// `cpuset.sched_load_balance`.
    pub sched_load_balance: u64,
    /// `cpuset.sched_relax_domain_level` (-1: the system default).
    pub sched_relax_domain_level: i64,
}

/// One memory counter with its limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryEntry {
    /// Bytes in use.
    pub usage: u64,
    /// The most ever in use (v1 `max_usage_in_bytes`, v2 `memory.peak` where the
    /// kernel has it).
    pub max_usage: Option<u64>,
    /// The limit, as the kernel reports it (see the module docs for "no limit").
    pub limit: u64,
    /// Times the limit was hit (v1 only).
    pub failcnt: Option<u64>,
}

/// Memory use, limits and OOM counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Memory alone (v1 `memory.usage_in_bytes` and friends, v2 `memory.current`,
    /// `memory.max`).
    pub usage: MemoryEntry,
    /// Memory plus swap, as v1's `memory.memsw.*` counts it; on v2 the sums
    /// `memory.current + memory.swap.current` and `memory.max + memory.swap.max`.
    /// Absent without swap accounting.
    pub memsw: Option<MemoryEntry>,
    /// Swap alone in use (v1 `total_swap` of `memory.stat`, v2 `memory.swap.current`).
    pub swap_usage: Option<u64>,
    /// Kernel memory (v1 `memory.kmem.*`, where the kernel still has it).
    pub kernel: Option<MemoryEntry>,
    /// Kernel TCP buffers (v1 `memory.kmem.tcp.*`).
    pub kernel_tcp: Option<MemoryEntry>,
    /// Page cache of the whole subtree (v1 `total_cache`, v2 `file`).
    pub cache: u64,
    /// Anonymous memory of the whole subtree (v1 `total_rss`, v2 `anon`).
    pub rss: u64,
    /// Usage minus inactive file pages (v1 `total_inactive_file`, v2
    /// `inactive_file`), never below zero: the working set as kubelet computes it.
    pub working_set: u64,
    /// Every counter of `memory.stat`.
    pub stat: BTreeMap<String, u64>,
    /// OOM counts (v1 `memory.oom_control`, v2 `memory.events`).
    pub oom: Option<OomStats>,
}

/// What the memory cgroup's OOM killer has done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OomStats {
    /// Processes it killed (`oom_kill`).
    pub oom_kill: u64,
    /// Times the cgroup reached its limit and the OOM killer was invoked (v2 `oom`;
    /// v1 has no such counter).
    pub oom: Option<u64>,
    /// Whether the cgroup is out of memory right now, its tasks waiting (v1
    /// `under_oom`, which only lasts when the OOM killer is disabled).
    pub under_oom: Option<bool>,
}

/// Number of tasks and their limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PidsStats {
    /// Tasks in the cgroup now.
    pub current: u64,
    /// `pids.max`; `None` for `max`.
    pub limit: Option<u64>,
}

/// Block IO, in v1's tables (v2's `io.stat` is mapped into the first two, as runc does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkioStats {
    /// Bytes transferred, per device and operation (`Read`, `Write`, …).
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// IOs completed, per device and operation.
    pub io_serviced_recursive: Vec<BlkioEntry>,
    /// IOs queued (v1 CFQ/BFQ debug statistics).
    pub io_queued_recursive: Vec<BlkioEntry>,
    /// Time spent servicing IOs (v1 CFQ/BFQ debug statistics).
    pub io_service_time_recursive: Vec<BlkioEntry>,
    /// Time IOs waited (v1 CFQ/BFQ debug statistics).
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    /// IOs merged (v1 CFQ/BFQ debug statistics).
    pub io_merged_recursive: Vec<BlkioEntry>,
    /// Disk time (v1 CFQ/BFQ debug statistics).
    pub io_time_recursive: Vec<BlkioEntry>,
    /// Sectors transferred (v1 CFQ/BFQ debug statistics).
    pub sectors_recursive: Vec<BlkioEntry>,
}

/// One row of a block IO table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkioEntry {
    /// Device major number.
    pub major: u64,
    /// Device minor number.
    pub minor: u64,
    /// Operation (`Read`, `Write`, `Sync`, `Async`, `Discard`, `Total`), empty
    /// for tables without one.
    pub op: String,
    /// The count.
    pub value: u64,
}

/// Huge pages of one size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HugetlbStats {
    /// Bytes in use.
    pub usage: u64,
    /// The most ever in use (v1 only).
    pub max_usage: Option<u64>,
    /// Allocations refused by the limit (v1 `failcnt`, v2 `max` of `.events`).
    pub failcnt: u64,
}

/// Pressure stall information per resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pressure {
    /// `cpu.pressure`.
    pub cpu: Option<Psi>,
    /// `memory.pressure`.
    pub memory: Option<Psi>,
    /// `io.pressure`.
    pub io: Option<Psi>,
}

/// One pressure file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Psi {
    /// Some tasks stalled.
    pub some: PsiData,
    /// All non-idle tasks stalled at once (absent from older kernels' `cpu.pressure`).
    pub full: Option<PsiData>,
}

/// One line of a pressure file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PsiData {
    /// Share of the last 10 seconds stalled, in percent.
    pub avg10: f64,
    /// Share of the last 60 seconds stalled, in percent.
    pub avg60: f64,
    /// Share of the last 300 seconds stalled, in percent.
    pub avg300: f64,
    /// Total stall time, in microseconds.
    pub total: u64,
}

impl Cgroups {
    /// Reads the container's resource statistics: the v1 controllers on legacy and
    /// hybrid hosts, the cgroup2 directory on unified ones, and pressure from the
    /// cgroup2 directory wherever there is one (a hybrid host's `unified/`).
    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        match self.layout {
            Layout::Unified => {
                if let Some(dir) = &self.v2 {
                    v2::read(dir, &mut s)?;
                }
            }
            Layout::Legacy | Layout::Hybrid => v1::read(&self.v1, &mut s)?,
        }
        // On a hybrid host the v1 hierarchies hold every controller runc reads;
        // cgroup2 adds pressure, which v1 has not.
        if let Some(dir) = &self.v2 {
            s.pressure = pressure(dir)?;
        }
        Ok(s)
    }
}

mod v1;
mod v2;

/// Pressure files of a cgroup2 directory; absent where none is there.
fn pressure(dir: &Path) -> Result<Option<Pressure>> {
    let p = Pressure {
        cpu: psi(&dir.join("cpu.pressure"))?,
        memory: psi(&dir.join("memory.pressure"))?,
        io: psi(&dir.join("io.pressure"))?,
    };
    Ok((p.cpu.is_some() || p.memory.is_some() || p.io.is_some()).then_some(p))
}

/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=0`, and a `full` line.
fn psi(path: &Path) -> Result<Option<Psi>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // PSI compiled in but switched off (`psi=0`): the files refuse reads.
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                operation: "reading",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut some = None;
    let mut full = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split_whitespace();
        let kind = f.next().unwrap_or_default();
        let mut d = PsiData::default();
        let mut seen = 0;
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(malformed(path, line));
            };
            let avg = || {
                v.parse::<f64>()
                    .map_err(|_| malformed(path, &format!("{v:?} is not a number")))
            };
            match k {
                "avg10" => d.avg10 = avg()?,
                "avg60" => d.avg60 = avg()?,
                "avg300" => d.avg300 = avg()?,
                "total" => d.total = number(path, v)?,
                _ => continue,
            }
            seen += 1;
        }
        if seen != 4 {
            return Err(malformed(path, line));
        }
        match kind {
            "some" => some = Some(d),
            "full" => full = Some(d),
            _ => return Err(malformed(path, line)),
        }
    }
    let some = some.ok_or_else(|| malformed(path, "no `some` line"))?;
    Ok(Some(Psi { some, full }))
}

/// Page sizes that have a `hugetlb.<size><suffix>` file in `dir`, sorted.
fn page_sizes(dir: &Path, suffix: &str) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut sizes: Vec<String> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            // `hugetlb.2MB.rsvd.current` is the reservation counter, not a size.
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    sizes
}

/// A file's content, or `None` when the file (or its directory) is not there.
fn read_opt(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            operation: "reading",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A single-number file (`max` is `u64::MAX`), or `None` when it is not there.
fn opt_u64(path: &Path) -> Result<Option<u64>> {
    read_opt(path)?.map(|t| number(path, t.trim())).transpose()
}

/// A counter from `path`; `max` is `u64::MAX`.
fn number(path: &Path, s: &str) -> Result<u64> {
    if s == "max" {
        return Ok(u64::MAX);
    }
    s.parse()
        .map_err(|_| malformed(path, &format!("{s:?} is not a number")))
}

/// `key value` lines.
fn flat_keyed(path: &Path, text: &str) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split_whitespace();
        let (Some(k), Some(v), None) = (f.next(), f.next(), f.next()) else {
            return Err(malformed(path, line));
        };
        out.insert(k.to_string(), number(path, v)?);
    }
    Ok(out)
}

/// `0-3,8,10-11` into its ids.
fn id_list(path: &Path, text: &str) -> Result<Vec<u16>> {
    let mut out = Vec::new();
    let id = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| malformed(path, &format!("{s:?} is not an id")))
    };
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (id(lo)?, id(hi)?);
                if lo > hi {
                    return Err(malformed(path, part));
                }
                out.extend(lo..=hi);
            }
            None => out.push(id(part)?),
        }
    }
    Ok(out)
}

fn malformed(path: &Path, what: &str) -> Error {
    Error::Io {
        operation: "parsing",
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unexpected content: {what}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::events::Event;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).expect("mkdir");
        for (name, content) in files {
            std::fs::write(dir.join(name), content).expect("write cgroup file");
        }
    }

    const MEMORY_STAT_V1: &str = "cache 0\nrss 53248\nrss_huge 0\nshmem 0\nmapped_file 0\n\
        dirty 0\nwriteback 0\nworkingset_refault_anon 0\nworkingset_refault_file 0\nswap 0\n\
        swapcached 0\npgpgin 471\npgpgout 458\npgfault 773\npgmajfault 0\ninactive_anon 49152\n\
        active_anon 4096\ninactive_file 0\nactive_file 0\nunevictable 0\n\
        hierarchical_memory_limit 67108864\nhierarchical_memsw_limit 9223372036854771712\n\
        total_cache 0\ntotal_rss 53248\ntotal_rss_huge 0\ntotal_shmem 0\ntotal_mapped_file 0\n\
        total_dirty 0\ntotal_writeback 0\ntotal_workingset_refault_anon 0\n\
        total_workingset_refault_file 0\ntotal_swap 0\ntotal_swapcached 0\ntotal_pgpgin 471\n\
        total_pgpgout 458\ntotal_pgfault 773\ntotal_pgmajfault 0\ntotal_inactive_anon 49152\n\
        total_active_anon 4096\ntotal_inactive_file 0\ntotal_active_file 0\n\
        total_unevictable 0\n";

    /// A container's v1 cgroups as a hybrid host with runc's container showed
    /// them (cpu and cpuacct mounted apart, no hugetlb hierarchy).
    fn fake_v1(root: &Path) -> BTreeMap<String, PathBuf> {
        let dir = |c: &str| root.join(c).join("ctr");
        let procs = ("cgroup.procs", "4242\n");
        write(
            &dir("cpuacct"),
            &[
                procs,
                ("cpuacct.usage", "7211943\n"),
                ("cpuacct.stat", "user 0\nsystem 0\n"),
                ("cpuacct.usage_percpu", "5704116 1507827 \n"),
                (
                    "cpuacct.usage_all",
                    "cpu user system\n0 4000000 4000000\n1 0 0\n",
                ),
            ],
        );
        write(
            &dir("cpu"),
            &[
                procs,
                (
                    "cpu.stat",
                    "nr_periods 0\nnr_throttled 0\nthrottled_time 0\nnr_bursts 0\nburst_time 0\n",
                ),
            ],
        );
        write(
            &dir("cpuset"),
            &[
                procs,
                ("cpuset.cpus", "0-1\n"),
                ("cpuset.mems", "0\n"),
                ("cpuset.cpu_exclusive", "0\n"),
                ("cpuset.mem_exclusive", "0\n"),
                ("cpuset.mem_hardwall", "0\n"),
                ("cpuset.memory_migrate", "0\n"),
                ("cpuset.memory_pressure", "0\n"),
                ("cpuset.memory_spread_page", "0\n"),
                ("cpuset.memory_spread_slab", "0\n"),
                ("cpuset.sched_load_balance", "1\n"),
                ("cpuset.sched_relax_domain_level", "-1\n"),
            ],
        );
        let unlimited = "9223372036854771712\n";
        write(
            &dir("memory"),
            &[
                procs,
                ("memory.usage_in_bytes", "299008\n"),
                ("memory.max_usage_in_bytes", "2777088\n"),
                ("memory.limit_in_bytes", "67108864\n"),
                ("memory.failcnt", "0\n"),
                ("memory.memsw.usage_in_bytes", "299008\n"),
                ("memory.memsw.max_usage_in_bytes", "2777088\n"),
                ("memory.memsw.limit_in_bytes", unlimited),
                ("memory.memsw.failcnt", "0\n"),
                ("memory.kmem.usage_in_bytes", "245760\n"),
                ("memory.kmem.max_usage_in_bytes", "614400\n"),
                ("memory.kmem.limit_in_bytes", unlimited),
                ("memory.kmem.failcnt", "0\n"),
                ("memory.kmem.tcp.usage_in_bytes", "0\n"),
                ("memory.kmem.tcp.max_usage_in_bytes", "0\n"),
                ("memory.kmem.tcp.limit_in_bytes", unlimited),
                ("memory.kmem.tcp.failcnt", "0\n"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
                ),
                ("memory.stat", MEMORY_STAT_V1),
            ],
        );
        write(
            &dir("pids"),
            &[procs, ("pids.current", "1\n"), ("pids.max", "32\n")],
        );
        write(
            &dir("blkio"),
            &[
                procs,
                ("blkio.bfq.io_serviced_recursive", "Total 0\n"),
                ("blkio.bfq.io_service_bytes_recursive", "Total 0\n"),
                ("blkio.throttle.io_serviced_recursive", "Total 0\n"),
                ("blkio.throttle.io_service_bytes_recursive", "Total 0\n"),
                ("blkio.throttle.io_serviced", "Total 0\n"),
                ("blkio.throttle.io_service_bytes", "Total 0\n"),
            ],
        );
        ["cpu", "cpuacct", "cpuset", "memory", "pids", "blkio"]
            .iter()
            .map(|c| (c.to_string(), dir(c)))
            .collect()
    }

    fn legacy(v1: BTreeMap<String, PathBuf>) -> Cgroups {
        Cgroups {
            layout: Layout::Legacy,
            v1,
            hierarchies: BTreeMap::new(),
            v2: None,
            v2_mount: None,
        }
    }

    fn unified(dir: &Path) -> Cgroups {
        Cgroups {
            layout: Layout::Unified,
            v1: BTreeMap::new(),
            hierarchies: BTreeMap::new(),
            v2: Some(dir.to_path_buf()),
            v2_mount: dir.parent().map(Path::to_path_buf),
        }
    }

    /// The files runc 1.1.5 read for a busybox container with a 64 MiB memory
    /// and a 32 pids limit, and the line its `events --stats` printed for them.
    #[test]
    fn v1_files_print_as_runc_printed_them() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = legacy(fake_v1(t.path())).stats().expect("stats");
        let runc = r#"{"type":"stats","id":"st1","data":{"cpu":{"usage":{"total":7211943,"percpu":[5704116,1507827],"percpu_kernel":[4000000,0],"percpu_user":[4000000,0],"kernel":0,"user":0},"throttling":{}},"cpuset":{"cpus":[0,1],"cpu_exclusive":0,"mems":[0],"mem_hardwall":0,"mem_exclusive":0,"memory_migrate":0,"memory_spread_page":0,"memory_spread_slab":0,"memory_pressure":0,"sched_load_balance":1,"sched_relax_domain_level":-1},"memory":{"usage":{"limit":67108864,"usage":299008,"max":2777088,"failcnt":0},"swap":{"limit":9223372036854771712,"usage":299008,"max":2777088,"failcnt":0},"kernel":{"limit":9223372036854771712,"usage":245760,"max":614400,"failcnt":0},"kernelTCP":{"limit":9223372036854771712,"failcnt":0},"raw":{"active_anon":4096,"active_file":0,"cache":0,"dirty":0,"hierarchical_memory_limit":67108864,"hierarchical_memsw_limit":9223372036854771712,"inactive_anon":49152,"inactive_file":0,"mapped_file":0,"pgfault":773,"pgmajfault":0,"pgpgin":471,"pgpgout":458,"rss":53248,"rss_huge":0,"shmem":0,"swap":0,"swapcached":0,"total_active_anon":4096,"total_active_file":0,"total_cache":0,"total_dirty":0,"total_inactive_anon":49152,"total_inactive_file":0,"total_mapped_file":0,"total_pgfault":773,"total_pgmajfault":0,"total_pgpgin":471,"total_pgpgout":458,"total_rss":53248,"total_rss_huge":0,"total_shmem":0,"total_swap":0,"total_swapcached":0,"total_unevictable":0,"total_workingset_refault_anon":0,"total_workingset_refault_file":0,"total_writeback":0,"unevictable":0,"workingset_refault_anon":0,"workingset_refault_file":0,"writeback":0}},"pids":{"current":1,"limit":32},"blkio":{},"hugetlb":{},"intel_rdt":{},"network_interfaces":null}}"#;
        assert_eq!(Event::Stats(Box::new(s.clone())).to_runc_json("st1"), runc);

        // And the typed view of the same files.
        let m = s.memory.expect("memory");
        assert_eq!(m.usage.limit, 67108864);
        assert_eq!(m.usage.max_usage, Some(2777088));
        assert_eq!((m.cache, m.rss, m.working_set), (0, 53248, 299008));
        assert_eq!(m.swap_usage, Some(0));
        assert_eq!(m.stat.len(), 42);
        assert_eq!(
            m.oom,
            Some(OomStats {
                oom_kill: 0,
                oom: None,
                under_oom: Some(false)
            })
        );
        let cpu = s.cpu.expect("cpu");
        let u = cpu.usage.expect("usage");
        assert_eq!(u.per_cpu_system, [4000000, 0]);
        assert_eq!(cpu.throttling, Some(Throttling::default()));
        assert_eq!(
            s.pids,
            Some(PidsStats {
                current: 1,
                limit: Some(32)
            })
        );
        assert_eq!(s.cpuset.expect("cpuset").sched_relax_domain_level, -1);
        assert_eq!(s.blkio, Some(BlkioStats::default()));
        assert!(s.hugetlb.is_empty() && s.pressure.is_none());
    }

    #[test]
    fn v1_usage_and_working_set_follow_the_subtree_counters() {
        let t = tempfile::tempdir().expect("tempdir");
        let v1 = fake_v1(t.path());
        write(
            &v1["memory"],
            &[
                (
                    "memory.stat",
                    "cache 4096\nrss 8192\ninactive_file 4096\nswap 0\n\
                     total_cache 1052672\ntotal_rss 2097152\ntotal_inactive_file 1048576\n\
                     total_swap 12288\n",
                ),
                ("memory.usage_in_bytes", "3145728\n"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 1\noom_kill 3\n",
                ),
            ],
        );
        write(&v1["cpuacct"], &[("cpuacct.stat", "user 150\nsystem 25\n")]);
        let s = legacy(v1).stats().expect("stats");
        let m = s.memory.expect("memory");
        assert_eq!((m.cache, m.rss), (1052672, 2097152));
        assert_eq!(m.working_set, 3145728 - 1048576);
        assert_eq!(m.swap_usage, Some(12288));
        let oom = m.oom.expect("oom");
        assert_eq!((oom.oom_kill, oom.under_oom), (3, Some(true)));
        let u = s.cpu.and_then(|c| c.usage).expect("usage");
        // USER_HZ ticks: 1.5 s user, 0.25 s system.
        assert_eq!((u.user, u.system), (1_500_000_000, 250_000_000));
    }

    #[test]
    fn v1_blkio_takes_the_first_table_set_with_rows_as_runc_does() {
        let t = tempfile::tempdir().expect("tempdir");
        let v1 = fake_v1(t.path());
        let blkio = v1["blkio"].clone();
        write(
            &blkio,
            &[
                (
                    "blkio.throttle.io_service_bytes_recursive",
                    "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n\
                     8:0 Discard 0\n8:0 Total 12288\nTotal 12288\n",
                ),
                (
                    "blkio.throttle.io_serviced_recursive",
                    "8:0 Read 1\n8:0 Write 2\n8:0 Total 3\nTotal 3\n",
                ),
            ],
        );
        let cg = legacy(v1);
        let b = cg.stats().expect("stats").blkio.expect("blkio");
        assert_eq!(b.io_service_bytes_recursive.len(), 6);
        assert_eq!(
            b.io_serviced_recursive[1],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Write".into(),
                value: 2
            }
        );
        let json = Event::Stats(Box::new(cg.stats().expect("stats"))).to_runc_json("c");
        assert!(
            json.contains(
                r#""blkio":{"ioServiceBytesRecursive":[{"major":8,"op":"Read","value":4096},"#
            ),
            "{json}"
        );
        assert!(json.contains(r#"{"major":8,"op":"Sync"}"#), "{json}");

        // With BFQ accounting rows, runc takes BFQ's pair instead.
        write(
            &blkio,
            &[
                ("blkio.bfq.io_serviced_recursive", "259:0 Read 7\nTotal 7\n"),
                (
                    "blkio.bfq.io_service_bytes_recursive",
                    "259:0 Read 28672\nTotal 28672\n",
                ),
            ],
        );
        let b = cg.stats().expect("stats").blkio.expect("blkio");
        assert_eq!(b.io_serviced_recursive.len(), 1);
        assert_eq!(b.io_service_bytes_recursive[0].value, 28672);
        assert_eq!(b.io_service_bytes_recursive[0].major, 259);

        write(
            &blkio,
            &[("blkio.bfq.io_serviced_recursive", "8:0 Read seven\n")],
        );
        let e = cg.stats().expect_err("malformed");
        assert!(
            e.to_string().contains("blkio.bfq.io_serviced_recursive"),
            "{e}"
        );
    }

    #[test]
    fn v1_hugetlb_per_page_size() {
        let t = tempfile::tempdir().expect("tempdir");
        let mut v1 = fake_v1(t.path());
        let dir = t.path().join("hugetlb/ctr");
        write(
            &dir,
            &[
                ("cgroup.procs", ""),
                ("hugetlb.2MB.usage_in_bytes", "4194304\n"),
                ("hugetlb.2MB.max_usage_in_bytes", "6291456\n"),
                ("hugetlb.2MB.failcnt", "2\n"),
                ("hugetlb.2MB.limit_in_bytes", "8388608\n"),
                ("hugetlb.2MB.rsvd.usage_in_bytes", "0\n"),
                ("hugetlb.1GB.usage_in_bytes", "0\n"),
                ("hugetlb.1GB.max_usage_in_bytes", "0\n"),
                ("hugetlb.1GB.failcnt", "0\n"),
            ],
        );
        v1.insert("hugetlb".into(), dir);
        let s = legacy(v1).stats().expect("stats");
        assert_eq!(s.hugetlb.keys().collect::<Vec<_>>(), ["1GB", "2MB"]);
        assert_eq!(
            s.hugetlb["2MB"],
            HugetlbStats {
                usage: 4194304,
                max_usage: Some(6291456),
                failcnt: 2
            }
        );
        let json = Event::Stats(Box::new(s)).to_runc_json("c");
        assert!(
            json.contains(r#""hugetlb":{"1GB":{"failcnt":0},"2MB":{"usage":4194304,"max":6291456,"failcnt":2}}"#),
            "{json}"
        );
    }

    fn fake_v2(dir: &Path) {
        write(
            dir,
            &[
                ("cgroup.procs", "4242\n4243\n"),
                (
                    "cpu.stat",
                    "usage_usec 90123\nuser_usec 60000\nsystem_usec 30123\nnr_periods 40\n\
                     nr_throttled 7\nthrottled_usec 1500\nnr_bursts 0\nburst_usec 0\n",
                ),
                ("memory.current", "10485760\n"),
                ("memory.max", "16777216\n"),
                ("memory.peak", "15728640\n"),
                ("memory.swap.current", "1048576\n"),
                ("memory.swap.max", "0\n"),
                (
                    "memory.stat",
                    "anon 8388608\nfile 2097152\nkernel 131072\nshmem 0\n\
                     inactive_anon 8388608\nactive_anon 0\ninactive_file 1048576\n\
                     active_file 1048576\npgfault 5000\n",
                ),
                (
                    "memory.events",
                    "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n",
                ),
                ("pids.current", "2\n"),
                ("pids.max", "max\n"),
                (
                    "io.stat",
                    "8:16 rbytes=1024 wbytes=2048 rios=3 wios=4 dbytes=0 dios=0\n\
                     253:0 rbytes=0 wbytes=512 rios=0 wios=1 dbytes=0 dios=0\n",
                ),
                ("hugetlb.2MB.current", "2097152\n"),
                ("hugetlb.2MB.max", "max\n"),
                ("hugetlb.2MB.events", "max 5\n"),
                ("hugetlb.2MB.rsvd.current", "0\n"),
                (
                    "cpu.pressure",
                    "some avg10=1.29 avg60=4.41 avg300=3.85 total=129057124\n\
                     full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
                ),
                (
                    "memory.pressure",
                    "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n\
                     full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
                ),
                (
                    "io.pressure",
                    "some avg10=0.01 avg60=0.23 avg300=0.37 total=15307105\n\
                     full avg10=0.01 avg60=0.14 avg300=0.25 total=11208390\n",
                ),
            ],
        );
    }

    #[test]
    fn v2_files_map_to_the_same_stats() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("ctr");
        fake_v2(&dir);
        let s = unified(&dir).stats().expect("stats");
        let cpu = s.cpu.clone().expect("cpu");
        let u = cpu.usage.expect("usage");
        assert_eq!(
            (u.total, u.user, u.system),
            (90_123_000, 60_000_000, 30_123_000)
        );
        assert!(u.per_cpu.is_empty());
        assert_eq!(
            cpu.throttling,
            Some(Throttling {
                periods: 40,
                throttled_periods: 7,
                throttled_time: 1_500_000
            })
        );
        let m = s.memory.clone().expect("memory");
        assert_eq!(
            m.usage,
            MemoryEntry {
                usage: 10485760,
                max_usage: Some(15728640),
                limit: 16777216,
                failcnt: None
            }
        );
        // Memory plus swap, as runc reports it on v2.
        let memsw = m.memsw.expect("memsw");
        assert_eq!((memsw.usage, memsw.limit), (10485760 + 1048576, 16777216));
        assert_eq!(m.swap_usage, Some(1048576));
        assert_eq!(
            (m.cache, m.rss, m.working_set),
            (2097152, 8388608, 10485760 - 1048576)
        );
        let oom = m.oom.expect("oom");
        assert_eq!((oom.oom_kill, oom.oom, oom.under_oom), (1, Some(2), None));
        assert_eq!(
            s.pids,
            Some(PidsStats {
                current: 2,
                limit: None
            })
        );
        let b = s.blkio.clone().expect("io");
        assert_eq!(b.io_service_bytes_recursive.len(), 4);
        assert_eq!(b.io_serviced_recursive.len(), 4);
        assert!(b.io_service_bytes_recursive.contains(&BlkioEntry {
            major: 253,
            minor: 0,
            op: "Write".into(),
            value: 512
        }));
        assert_eq!(
            s.hugetlb["2MB"],
            HugetlbStats {
                usage: 2097152,
                max_usage: None,
                failcnt: 5
            }
        );
        assert_eq!(s.hugetlb.len(), 1, "rsvd is no page size");
        let p = s.pressure.clone().expect("pressure");
        let cpu = p.cpu.expect("cpu.pressure");
        assert_eq!(cpu.some.avg10, 1.29);
        assert_eq!(cpu.some.total, 129057124);
        assert_eq!(p.io.and_then(|io| io.full).map(|f| f.avg300), Some(0.25));

        let json: serde_json::Value =
            serde_json::from_str(&Event::Stats(Box::new(s)).to_runc_json("c")).expect("json");
        let d = &json["data"];
        assert_eq!(d["memory"]["cache"], 2097152, "v2's `file`");
        assert_eq!(
            d["memory"]["usage"],
            serde_json::json!({"limit": 16777216, "usage": 10485760, "max": 15728640, "failcnt": 0})
        );
        assert_eq!(
            d["memory"]["kernel"],
            serde_json::json!({"limit": 0, "failcnt": 0})
        );
        assert_eq!(d["cpu"]["throttling"]["throttledTime"], 1_500_000);
        assert!(d["cpu"]["usage"].get("percpu").is_none());
        assert!(d["pids"].get("limit").is_none(), "runc omits `max` as 0");
        assert_eq!(d["cpuset"]["sched_load_balance"], 0);
        assert!(d["cpuset"].get("cpus").is_none());
    }

    #[test]
    fn v2_without_controllers_has_what_cgroup2_always_has() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("ctr");
        write(
            &dir,
            &[
                ("cgroup.procs", "7\n8\n9\n"),
                ("cpu.stat", "usage_usec 5\nuser_usec 3\nsystem_usec 2\n"),
            ],
        );
        let s = unified(&dir).stats().expect("stats");
        let cpu = s.cpu.expect("cpu");
        assert!(cpu.usage.is_some() && cpu.throttling.is_none());
        assert_eq!(s.memory, None);
        assert_eq!(
            s.pids,
            Some(PidsStats {
                current: 3,
                limit: None
            })
        );
        assert_eq!((s.blkio, s.pressure), (None, None));
    }

    #[test]
    fn hybrid_reads_v1_and_pressure_from_cgroup2() {
        let t = tempfile::tempdir().expect("tempdir");
        let v1 = fake_v1(&t.path().join("v1"));
        let v2 = t.path().join("unified/ctr");
        fake_v2(&v2);
        let cg = Cgroups {
            layout: Layout::Hybrid,
            v2: Some(v2),
            ..legacy(v1)
        };
        let s = cg.stats().expect("stats");
        // v1's numbers, not cgroup2's.
        assert_eq!(s.memory.expect("memory").usage.usage, 299008);
        assert_eq!(s.cpu.and_then(|c| c.usage).map(|u| u.total), Some(7211943));
        assert_eq!(s.pids.map(|p| p.limit), Some(Some(32)));
        assert!(s.pressure.and_then(|p| p.memory).is_some());
        // As runc: huge pages from v1 only, though cgroup2 shows its files.
        assert!(s.hugetlb.is_empty());
    }

    #[test]
    fn missing_controllers_and_files_are_absent_not_errors() {
        let t = tempfile::tempdir().expect("tempdir");
        let mut v1 = BTreeMap::new();
        for c in ["cpu", "cpuacct", "memory", "pids", "blkio", "cpuset"] {
            v1.insert(c.to_string(), t.path().join(c).join("gone"));
        }
        assert_eq!(legacy(v1).stats().expect("stats"), Stats::default());
        assert_eq!(
            unified(&t.path().join("gone")).stats().expect("stats"),
            Stats::default()
        );
        assert_eq!(
            legacy(BTreeMap::new()).stats().expect("stats"),
            Stats::default()
        );

        // A memory cgroup without swap or kmem accounting.
        let dir = t.path().join("memory/ctr");
        write(
            &dir,
            &[
                ("memory.usage_in_bytes", "4096\n"),
                ("memory.limit_in_bytes", "8192\n"),
            ],
        );
        let m = legacy(BTreeMap::from([("memory".to_string(), dir)]))
            .stats()
            .expect("stats")
            .memory
            .expect("memory");
        assert_eq!(
            (m.memsw, m.kernel, m.oom, m.swap_usage),
            (None, None, None, None)
        );
        assert_eq!((m.usage.max_usage, m.usage.failcnt), (None, None));
    }

    #[test]
    fn malformed_files_are_errors_naming_them() {
        let cases: &[(&str, &str, &str)] = &[
            ("memory", "memory.stat", "cache lots\n"),
            ("memory", "memory.usage_in_bytes", "-\n"),
            ("memory", "memory.oom_control", "oom_kill_disable\n"),
            ("cpuacct", "cpuacct.usage_all", "cpu user system\n0 1\n"),
            ("cpuacct", "cpuacct.stat", "system 4\n"),
            ("cpuset", "cpuset.cpus", "3-1\n"),
            ("pids", "pids.max", "many\n"),
        ];
        for (ctrl, file, content) in cases {
            let t = tempfile::tempdir().expect("tempdir");
            let v1 = fake_v1(t.path());
            write(&v1[*ctrl], &[(file, content)]);
            let e = legacy(v1).stats().expect_err(file);
            assert!(
                matches!(&e, Error::Io { operation: "parsing", path, .. } if path.ends_with(file)),
                "{file}: {e:?}"
            );
        }
        for (file, content) in [
            ("cpu.pressure", "some avg10=x avg60=0 avg300=0 total=0\n"),
            (
                "io.pressure",
                "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            ),
            ("memory.pressure", "some avg10=0.00\n"),
            ("io.stat", "8:0 rbytes=1 wbytes\n"),
            ("memory.events", "oom_kill one\n"),
        ] {
            let t = tempfile::tempdir().expect("tempdir");
            let dir = t.path().join("ctr");
            fake_v2(&dir);
            write(&dir, &[(file, content)]);
            let e = unified(&dir).stats().expect_err(file);
            assert!(e.to_string().ends_with(file), "{file}: {e}");
        }
    }

    #[test]
    fn id_lists() {
        let p = Path::new("cpuset.cpus");
        assert_eq!(
            id_list(p, "0-3,8,10-11\n").expect("list"),
            [0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(id_list(p, "\n").expect("empty"), Vec::<u16>::new());
        assert!(id_list(p, "1-").is_err());
        assert!(id_list(p, "70000").is_err());
    }
}
