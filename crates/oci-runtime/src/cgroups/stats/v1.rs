//! cgroup v1: one directory per controller.

use super::*;

/// USER_HZ, the unit of `cpuacct.stat`: 100 on every architecture Linux
/// exposes to user space, whatever the kernel's own HZ.
const USER_HZ: u64 = 100;

pub(super) fn read(dirs: &BTreeMap<String, PathBuf>, s: &mut Stats) -> Result<()> {
    let dir = |name: &str| dirs.get(name).map(PathBuf::as_path);
    let usage = dir("cpuacct").map(cpu_usage).transpose()?.flatten();
    let throttling = dir("cpu").map(throttling).transpose()?.flatten();
    if usage.is_some() || throttling.is_some() {
        s.cpu = Some(CpuStats { usage, throttling });
    }
    s.cpuset = dir("cpuset").map(cpuset).transpose()?.flatten();
    s.memory = dir("memory").map(memory).transpose()?.flatten();
    s.pids = dir("pids").map(pids).transpose()?.flatten();
    s.blkio = dir("blkio").map(blkio).transpose()?.flatten();
    if let Some(d) = dir("hugetlb") {
        s.hugetlb = hugetlb(d)?;
    }
    Ok(())
}

fn cpu_usage(dir: &Path) -> Result<Option<CpuUsage>> {
    let Some(total) = opt_u64(&dir.join("cpuacct.usage"))? else {
        return Ok(None);
    };
    let mut u = CpuUsage {
        total,
        ..CpuUsage::default()
    };
    let stat = dir.join("cpuacct.stat");
    if let Some(text) = read_opt(&stat)? {
        let m = flat_keyed(&stat, &text)?;
        let ns = |ticks: u64| ticks.saturating_mul(1_000_000_000 / USER_HZ);
        u.user = ns(*m.get("user").ok_or_else(|| malformed(&stat, "no `user`"))?);
        u.system = ns(*m
            .get("system")
            .ok_or_else(|| malformed(&stat, "no `system`"))?);
    }
    let percpu = dir.join("cpuacct.usage_percpu");
    if let Some(text) = read_opt(&percpu)? {
        u.per_cpu = text
            .split_whitespace()
            .map(|v| number(&percpu, v))
            .collect::<Result<_>>()?;
    }
    // `cpu user system` then one line per CPU, both in nanoseconds.
    let all = dir.join("cpuacct.usage_all");
    if let Some(text) = read_opt(&all)? {
        for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [_, user, system] = f[..] else {
                return Err(malformed(&all, line));
            };
            u.per_cpu_user.push(number(&all, user)?);
            u.per_cpu_system.push(number(&all, system)?);
        }
    }
    Ok(Some(u))
}

fn throttling(dir: &Path) -> Result<Option<Throttling>> {
    let path = dir.join("cpu.stat");
    let Some(text) = read_opt(&path)? else {
        return Ok(None);
    };
    let m = flat_keyed(&path, &text)?;
    let get = |k: &str| m.get(k).copied().unwrap_or(0);
    Ok(Some(Throttling {
        periods: get("nr_periods"),
        throttled_periods: get("nr_throttled"),
        throttled_time: get("throttled_time"),
    }))
}

fn cpuset(dir: &Path) -> Result<Option<CpusetStats>> {
    let cpus = dir.join("cpuset.cpus");
    let Some(cpus_text) = read_opt(&cpus)? else {
        return Ok(None);
    };
    let mems = dir.join("cpuset.mems");
    let flag = |name: &str| Ok::<_, Error>(opt_u64(&dir.join(name))?.unwrap_or(0));
    let level = dir.join("cpuset.sched_relax_domain_level");
    Ok(Some(CpusetStats {
        cpus: id_list(&cpus, &cpus_text)?,
        mems: match read_opt(&mems)? {
            Some(t) => id_list(&mems, &t)?,
            None => Vec::new(),
        },
        cpu_exclusive: flag("cpuset.cpu_exclusive")?,
        mem_exclusive: flag("cpuset.mem_exclusive")?,
        mem_hardwall: flag("cpuset.mem_hardwall")?,
        memory_migrate: flag("cpuset.memory_migrate")?,
        memory_pressure: flag("cpuset.memory_pressure")?,
        memory_spread_page: flag("cpuset.memory_spread_page")?,
        memory_spread_slab: flag("cpuset.memory_spread_slab")?,
        sched_load_balance: flag("cpuset.sched_load_balance")?,
        sched_relax_domain_level: match read_opt(&level)? {
            Some(t) => t
                .trim()
                .parse()
                .map_err(|_| malformed(&level, &format!("{t:?} is not a number")))?,
            None => 0,
        },
    }))
}

/// `memory.<name>.{usage_in_bytes,max_usage_in_bytes,limit_in_bytes,failcnt}`;
/// absent when its usage file is.
fn entry(dir: &Path, prefix: &str) -> Result<Option<MemoryEntry>> {
    let file = |f: &str| dir.join(format!("{prefix}.{f}"));
    let Some(usage) = opt_u64(&file("usage_in_bytes"))? else {
        return Ok(None);
    };
    Ok(Some(MemoryEntry {
        usage,
        max_usage: opt_u64(&file("max_usage_in_bytes"))?,
        limit: opt_u64(&file("limit_in_bytes"))?.unwrap_or(u64::MAX),
        failcnt: opt_u64(&file("failcnt"))?,
    }))
}

fn memory(dir: &Path) -> Result<Option<MemoryStats>> {
    let Some(usage) = entry(dir, "memory")? else {
        return Ok(None);
    };
    let stat_path = dir.join("memory.stat");
    let stat = match read_opt(&stat_path)? {
        Some(t) => flat_keyed(&stat_path, &t)?,
        None => BTreeMap::new(),
    };
    // The `total_` counters cover the subtree; older files lack them.
    let counter = |k: &str| {
        stat.get(&format!("total_{k}"))
            .or_else(|| stat.get(k))
            .copied()
    };
    let memsw = entry(dir, "memory.memsw")?;
    let oom_path = dir.join("memory.oom_control");
    let oom = match read_opt(&oom_path)? {
        Some(t) => {
            let m = flat_keyed(&oom_path, &t)?;
            Some(OomStats {
                oom_kill: m.get("oom_kill").copied().unwrap_or(0),
                oom: None,
                under_oom: m.get("under_oom").map(|v| *v != 0),
            })
        }
        None => None,
    };
    Ok(Some(MemoryStats {
        swap_usage: counter("swap")
            .or_else(|| memsw.as_ref().map(|m| m.usage.saturating_sub(usage.usage))),
        memsw,
        kernel: entry(dir, "memory.kmem")?,
        kernel_tcp: entry(dir, "memory.kmem.tcp")?,
        cache: counter("cache").unwrap_or(0),
        rss: counter("rss").unwrap_or(0),
        working_set: usage
            .usage
            .saturating_sub(counter("inactive_file").unwrap_or(0)),
        usage,
        oom,
        stat,
    }))
}

fn pids(dir: &Path) -> Result<Option<PidsStats>> {
    let Some(current) = opt_u64(&dir.join("pids.current"))? else {
        return Ok(None);
    };
    Ok(Some(PidsStats {
        current,
        limit: opt_u64(&dir.join("pids.max"))?.filter(|m| *m != u64::MAX),
    }))
}

/// runc's choice of tables: BFQ's debug set, BFQ's, CFQ's, the throttle
/// layer's recursive ones, its own-cgroup ones; the first set whose first
/// file has rows wins, and within it reading stops at the first file without.
fn blkio(dir: &Path) -> Result<Option<BlkioStats>> {
    type Table = fn(&mut BlkioStats) -> &mut Vec<BlkioEntry>;
    let sectors: Table = |b| &mut b.sectors_recursive;
    let service_time: Table = |b| &mut b.io_service_time_recursive;
    let wait_time: Table = |b| &mut b.io_wait_time_recursive;
    let merged: Table = |b| &mut b.io_merged_recursive;
    let queued: Table = |b| &mut b.io_queued_recursive;
    let time: Table = |b| &mut b.io_time_recursive;
    let serviced: Table = |b| &mut b.io_serviced_recursive;
    let bytes: Table = |b| &mut b.io_service_bytes_recursive;
    let sets: [&[(&str, Table)]; 5] = [
        &[
            ("blkio.bfq.sectors_recursive", sectors),
            ("blkio.bfq.io_service_time_recursive", service_time),
            ("blkio.bfq.io_wait_time_recursive", wait_time),
            ("blkio.bfq.io_merged_recursive", merged),
            ("blkio.bfq.io_queued_recursive", queued),
            ("blkio.bfq.time_recursive", time),
            ("blkio.bfq.io_serviced_recursive", serviced),
            ("blkio.bfq.io_service_bytes_recursive", bytes),
        ],
        &[
            ("blkio.bfq.io_serviced_recursive", serviced),
            ("blkio.bfq.io_service_bytes_recursive", bytes),
        ],
        &[
            ("blkio.sectors_recursive", sectors),
            ("blkio.io_service_time_recursive", service_time),
            ("blkio.io_wait_time_recursive", wait_time),
            ("blkio.io_merged_recursive", merged),
            ("blkio.io_queued_recursive", queued),
            ("blkio.time_recursive", time),
            ("blkio.io_serviced_recursive", serviced),
            ("blkio.io_service_bytes_recursive", bytes),
        ],
        &[
            ("blkio.throttle.io_serviced_recursive", serviced),
            ("blkio.throttle.io_service_bytes_recursive", bytes),
        ],
        &[
            ("blkio.throttle.io_serviced", serviced),
            ("blkio.throttle.io_service_bytes", bytes),
        ],
    ];
    if !dir.join("cgroup.procs").exists() {
        return Ok(None);
    }
    let mut b = BlkioStats::default();
    for set in sets {
        for (i, (name, table)) in set.iter().enumerate() {
            let rows = blkio_table(&dir.join(name))?;
            if rows.is_empty() {
                if i == 0 {
                    break;
                }
                return Ok(Some(b));
            }
            *table(&mut b) = rows;
            if i == set.len() - 1 {
                return Ok(Some(b));
            }
        }
    }
    Ok(Some(b))
}

/// `8:0 Read 4096` rows (or `8:0 4096` for tables without an operation);
/// the `Total` line is skipped. A missing file has no rows.
fn blkio_table(path: &Path) -> Result<Vec<BlkioEntry>> {
    let Some(text) = read_opt(path)? else {
        return Ok(Vec::new());
    };
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split([' ', ':']).filter(|f| !f.is_empty()).collect();
        let (major, minor, op, value) = match f[..] {
            ["Total", _] => continue,
            [major, minor, value] => (major, minor, "", value),
            [major, minor, op, value] => (major, minor, op, value),
            _ => return Err(malformed(path, line)),
        };
        rows.push(BlkioEntry {
            major: number(path, major)?,
            minor: number(path, minor)?,
            op: op.to_string(),
            value: number(path, value)?,
        });
    }
    Ok(rows)
}

fn hugetlb(dir: &Path) -> Result<BTreeMap<String, HugetlbStats>> {
    let mut out = BTreeMap::new();
    for size in page_sizes(dir, ".usage_in_bytes") {
        let file = |f: &str| dir.join(format!("hugetlb.{size}.{f}"));
        let Some(usage) = opt_u64(&file("usage_in_bytes"))? else {
            continue;
        };
        out.insert(
            size.clone(),
            HugetlbStats {
                usage,
                max_usage: opt_u64(&file("max_usage_in_bytes"))?,
                failcnt: opt_u64(&file("failcnt"))?.unwrap_or(0),
            },
        );
    }
    Ok(out)
}
