//! `update`: new limits for a running container, from a JSON file or runc's flags.

use std::path::PathBuf;

use clap::Args;
use oci_spec::runtime::{LinuxMemory, LinuxPids, LinuxResources};

use crate::oci_cmd::CliError;

/// Arguments of `update`, as runc names them.
#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// Container id.
    pub id: String,
    /// A `linux.resources` JSON object from a file, or `-` for stdin; the flags
    /// below override its values.
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Block IO weight, 10 to 1000.
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// CFS period, in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CFS quota, in microseconds per period (-1: none).
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long)]
    pub cpu_share: Option<u64>,
    /// Realtime period, in microseconds.
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// Realtime runtime, in microseconds.
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs to run on (0-3, 0,1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to allocate from (0-3, 0,1).
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Memory limit, in bytes or with a unit (512m, 1g; -1: none).
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory soft limit (units as --memory).
    #[arg(long, allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit (units as --memory; -1: unlimited swap).
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Kernel TCP buffer memory limit (cgroup v1; units as --memory).
    #[arg(long, allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<String>,
    /// Maximum number of processes (0 or -1: none).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Intel RDT L3 cache schema (not supported).
    #[arg(long)]
    pub l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema (not supported).
    #[arg(long)]
    pub mem_bw_schema: Option<String>,
}

/// A size in bytes as runc's flags take it: a number, or one with a binary unit
/// (`k`, `m`, `g`, `t`, `p`, optionally followed by `b`, any case); -1 is "none".
pub(crate) fn parse_size(flag: &str, s: &str) -> Result<i64, CliError> {
    let bad = || CliError::Usage(format!("--{flag}: {s:?} is not a size like 512m or 1g"));
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        Some('p') => (&t[..t.len() - 1], 50),
        _ => (t, 0),
    };
    let n: i64 = digits.trim().parse().map_err(|_| bad())?;
    if n < 0 {
        return Err(bad());
    }
    n.checked_mul(1i64 << shift).ok_or_else(bad)
}

/// The resources `update` asks for: the file's, with the flags on top.
pub(crate) fn resources(a: &UpdateArgs) -> Result<LinuxResources, CliError> {
    if a.l3_cache_schema.is_some() || a.mem_bw_schema.is_some() {
        return Err(CliError::Usage(
            "--l3-cache-schema and --mem-bw-schema: Intel RDT is not supported".into(),
        ));
    }
    let mut r: LinuxResources = match &a.resources {
        Some(path) => crate::oci_cmd::read_json(path)?,
        None => LinuxResources::default(),
    };
    let mut cpu = r.cpu().clone().unwrap_or_default();
    let cpu_flags = a.cpu_period.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_share.is_some()
        || a.cpu_rt_period.is_some()
        || a.cpu_rt_runtime.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some();
    if let Some(v) = a.cpu_period {
        cpu.set_period(Some(v));
    }
    if let Some(v) = a.cpu_quota {
        cpu.set_quota(Some(v));
    }
    if let Some(v) = a.cpu_share {
        cpu.set_shares(Some(v));
    }
    if let Some(v) = a.cpu_rt_period {
        cpu.set_realtime_period(Some(v));
    }
    if let Some(v) = a.cpu_rt_runtime {
        cpu.set_realtime_runtime(Some(v));
    }
    if let Some(v) = &a.cpuset_cpus {
        cpu.set_cpus(Some(v.clone()));
    }
    if let Some(v) = &a.cpuset_mems {
        cpu.set_mems(Some(v.clone()));
    }
    if cpu_flags {
        r.set_cpu(Some(cpu));
    }
    let mut mem = r.memory().unwrap_or_default();
    let mut mem_flags = false;
    for (flag, value, set) in [
        (
            "memory",
            &a.memory,
            LinuxMemory::set_limit as fn(&mut LinuxMemory, Option<i64>) -> &mut LinuxMemory,
        ),
        (
            "memory-reservation",
            &a.memory_reservation,
            LinuxMemory::set_reservation,
        ),
        ("memory-swap", &a.memory_swap, LinuxMemory::set_swap),
        (
            "kernel-memory-tcp",
            &a.kernel_memory_tcp,
            LinuxMemory::set_kernel_tcp,
        ),
    ] {
        if let Some(v) = value {
            set(&mut mem, Some(parse_size(flag, v)?));
            mem_flags = true;
        }
    }
    if mem_flags {
        r.set_memory(Some(mem));
    }
    if let Some(limit) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        r.set_pids(Some(p));
    }
    if let Some(w) = a.blkio_weight {
        let mut b = r.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        r.set_block_io(Some(b));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("memory", "1024").ok(), Some(1024));
        assert_eq!(parse_size("memory", "512m").ok(), Some(512 << 20));
        assert_eq!(parse_size("memory", "1G").ok(), Some(1 << 30));
        assert_eq!(parse_size("memory", "4kb").ok(), Some(4096));
        assert_eq!(parse_size("memory", "-1").ok(), Some(-1));
        for bad in ["", "m", "1x", "-2", "99999999999p"] {
            assert!(parse_size("memory", bad).is_err(), "{bad:?}");
        }
    }
}
