//! cgroup v2: one directory.

use super::*;

pub(super) fn read(dir: &Path, s: &mut Stats) -> Result<()> {
    s.cpu = cpu(dir)?;
    s.memory = memory(dir)?;
    s.pids = pids(dir)?;
    s.blkio = io(dir)?;
    s.hugetlb = hugetlb(dir)?;
    Ok(())
}

fn cpu(dir: &Path) -> Result<Option<CpuStats>> {
    let path = dir.join("cpu.stat");
    let Some(text) = read_opt(&path)? else {
        return Ok(None);
    };
    let m = flat_keyed(&path, &text)?;
    let us = |k: &str| m.get(k).map(|v| v.saturating_mul(1000));
    let usage = us("usage_usec").map(|total| CpuUsage {
        total,
        user: us("user_usec").unwrap_or(0),
        system: us("system_usec").unwrap_or(0),
        ..CpuUsage::default()
    });
    // The throttling keys appear only once the cpu controller is enabled.
    let throttling = m.get("nr_periods").map(|periods| Throttling {
        periods: *periods,
        throttled_periods: m.get("nr_throttled").copied().unwrap_or(0),
        throttled_time: us("throttled_usec").unwrap_or(0),
    });
    Ok(Some(CpuStats { usage, throttling }))
}

fn memory(dir: &Path) -> Result<Option<MemoryStats>> {
    let Some(current) = opt_u64(&dir.join("memory.current"))? else {
        return Ok(None);
    };
    let usage = MemoryEntry {
        usage: current,
        max_usage: opt_u64(&dir.join("memory.peak"))?,
        limit: opt_u64(&dir.join("memory.max"))?.unwrap_or(u64::MAX),
        failcnt: None,
    };
    let swap_usage = opt_u64(&dir.join("memory.swap.current"))?;
    // v1's memory+swap, as runc reports it on v2 for the same consumers.
    let memsw = match swap_usage {
        Some(swap) => {
            let swap_max = opt_u64(&dir.join("memory.swap.max"))?.unwrap_or(u64::MAX);
            Some(MemoryEntry {
                usage: current.saturating_add(swap),
                max_usage: None,
                limit: if swap_max == u64::MAX {
                    u64::MAX
                } else {
                    swap_max.saturating_add(usage.limit)
                },
                failcnt: None,
            })
        }
        None => None,
    };
    let stat_path = dir.join("memory.stat");
    let stat = match read_opt(&stat_path)? {
        Some(t) => flat_keyed(&stat_path, &t)?,
        None => BTreeMap::new(),
    };
    let events = dir.join("memory.events");
    let oom = match read_opt(&events)? {
        Some(t) => {
            let m = flat_keyed(&events, &t)?;
            Some(OomStats {
                oom_kill: m.get("oom_kill").copied().unwrap_or(0),
                oom: Some(m.get("oom").copied().unwrap_or(0)),
                under_oom: None,
            })
        }
        None => None,
    };
    let counter = |k: &str| stat.get(k).copied().unwrap_or(0);
    Ok(Some(MemoryStats {
        cache: counter("file"),
        rss: counter("anon"),
        working_set: current.saturating_sub(counter("inactive_file")),
        usage,
        memsw,
        swap_usage,
        kernel: None,
        kernel_tcp: None,
        stat,
        oom,
    }))
}

fn pids(dir: &Path) -> Result<Option<PidsStats>> {
    if let Some(current) = opt_u64(&dir.join("pids.current"))? {
        return Ok(Some(PidsStats {
            current,
            limit: opt_u64(&dir.join("pids.max"))?.filter(|m| *m != u64::MAX),
        }));
    }
    // Without the pids controller, count the processes, as runc does.
    Ok(read_opt(&dir.join("cgroup.procs"))?.map(|t| PidsStats {
        current: t.lines().filter(|l| !l.trim().is_empty()).count() as u64,
        limit: None,
    }))
}

/// `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0` per device, mapped
/// into v1's bytes and IOs tables as runc maps it.
fn io(dir: &Path) -> Result<Option<BlkioStats>> {
    let path = dir.join("io.stat");
    let Some(text) = read_opt(&path)? else {
        return Ok(None);
    };
    let mut b = BlkioStats::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split_whitespace();
        let dev = f.next().unwrap_or_default();
        let Some((major, minor)) = dev.split_once(':') else {
            return Err(malformed(&path, line));
        };
        let (major, minor) = (number(&path, major)?, number(&path, minor)?);
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(malformed(&path, line));
            };
            let (table, op) = match k {
                "rbytes" => (&mut b.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut b.io_service_bytes_recursive, "Write"),
                "rios" => (&mut b.io_serviced_recursive, "Read"),
                "wios" => (&mut b.io_serviced_recursive, "Write"),
                _ => continue,
            };
            table.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value: number(&path, v)?,
            });
        }
    }
    Ok(Some(b))
}

fn hugetlb(dir: &Path) -> Result<BTreeMap<String, HugetlbStats>> {
    let mut out = BTreeMap::new();
    for size in page_sizes(dir, ".current") {
        let Some(usage) = opt_u64(&dir.join(format!("hugetlb.{size}.current")))? else {
            continue;
        };
        let events = dir.join(format!("hugetlb.{size}.events"));
        let failcnt = match read_opt(&events)? {
            Some(t) => flat_keyed(&events, &t)?.get("max").copied().unwrap_or(0),
            None => 0,
        };
        out.insert(
            size,
            HugetlbStats {
                usage,
                max_usage: None,
                failcnt,
            },
        );
    }
    Ok(out)
}
