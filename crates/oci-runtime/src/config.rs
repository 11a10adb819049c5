//! Loading and validating a bundle's `config.json`.
//!
//! Validation happens before anything is created, so a refused bundle leaves no
//! state dir, process or mount behind.

use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result, invalid};

/// A validated bundle: its spec and the absolute path of its root filesystem.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub dir: PathBuf,
    /// The parsed `config.json`.
    pub spec: Spec,
    /// Absolute path of the root filesystem (`root.path` resolved against `dir`).
    pub rootfs: PathBuf,
}

impl Bundle {
    /// Reads `<dir>/config.json` and validates it. See [`parse_spec`] and [`validate`].
    pub fn load(dir: &Path) -> Result<Self> {
        let dir =
            std::path::absolute(dir).map_err(crate::error::io_err("resolving bundle", dir))?;
        let path = dir.join("config.json");
        let bytes = std::fs::read(&path).map_err(|source| Error::ReadConfig {
            path: path.clone(),
            source,
        })?;
        let spec = parse_spec(&bytes, &path)?;
        let rootfs = validate(&spec, &dir)?;
        Ok(Bundle { dir, spec, rootfs })
    }
}

/// Parses `config.json` bytes; errors carry the JSON path of the bad field and line/column.
pub fn parse_spec(bytes: &[u8], path: &Path) -> Result<Spec> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        Error::ParseConfig {
            path: path.to_path_buf(),
            field,
            source: e.into_inner(),
        }
    })
}

/// Checks a container id: non-empty, at most 1024 bytes, no `/`, no `..`, no control characters.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if id == "." || id.contains("..") {
        return bad("contains `..` or is `.`");
    }
    if id.contains('/') {
        return bad("contains `/`");
    }
    if id.chars().any(|c| c.is_control()) {
        return bad("contains control characters");
    }
    Ok(())
}

/// Validates a parsed spec for this runtime; returns the absolute rootfs path.
///
/// Refuses what it cannot honour instead of ignoring it: the few Linux
/// features this runtime does not model. Cgroup limits are checked here; a
/// seccomp profile is checked when it is compiled, while planning.
pub fn validate(spec: &Spec, bundle_dir: &Path) -> Result<PathBuf> {
    let version = spec.version();
    let major = version.split('.').next().unwrap_or("");
    if major != "1" {
        return Err(invalid(
            "ociVersion",
            format!("unsupported version {version:?}, expected 1.x"),
        ));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid("root", "missing"))?;
    let rootfs = bundle_dir.join(root.path());
    let meta = std::fs::metadata(&rootfs)
        .map_err(|e| invalid("root.path", format!("{}: {e}", rootfs.display())))?;
    if !meta.is_dir() {
        return Err(invalid(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    let Some(linux) = spec.linux() else {
        return Err(invalid(
            "linux",
            "missing: only Linux containers are supported",
        ));
    };
    if let Some(r) = linux.resources() {
        validate_resources(r, "linux.resources")?;
    }
    if linux.intel_rdt().is_some() {
        return Err(invalid("linux.intelRdt", "not supported"));
    }
    if linux.memory_policy().is_some() {
        return Err(invalid("linux.memoryPolicy", "not supported"));
    }
    if linux.net_devices().as_ref().is_some_and(|n| !n.is_empty()) {
        return Err(invalid("linux.netDevices", "not supported"));
    }
    if linux.mount_label().as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(invalid("linux.mountLabel", "SELinux is not supported"));
    }
    if let Some(p) = linux.rootfs_propagation()
        && crate::plan::propagation_flag(p).is_none()
    {
        return Err(invalid(
            "linux.rootfsPropagation",
            format!("unknown propagation {p:?}"),
        ));
    }

    let mut seen = HashSet::new();
    let namespaces = linux.namespaces().as_deref().unwrap_or(&[]);
    for (i, ns) in namespaces.iter().enumerate() {
        let field = format!("linux.namespaces[{i}]");
        if !seen.insert(ns.typ()) {
            return Err(invalid(
                field,
                format!("duplicate namespace type {}", ns.typ()),
            ));
        }
        if let Some(p) = ns.path() {
            check_ns_path(p, ns.typ()).map_err(|r| invalid(format!("{field}.path"), r))?;
        }
    }
    let has = |t| namespaces.iter().any(|n| n.typ() == t);
    if !has(LinuxNamespaceType::Mount) {
        // The container's mounts are then the caller's: masking or remounting
        // read-only there would change the host (runc refuses the same).
        for (list, field) in [
            (linux.masked_paths(), "linux.maskedPaths"),
            (linux.readonly_paths(), "linux.readonlyPaths"),
        ] {
            if list.as_ref().is_some_and(|l| !l.is_empty()) {
                return Err(invalid(field, "needs a mount namespace"));
            }
        }
        if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
            return Err(invalid("root.readonly", "needs a mount namespace"));
        }
    }
    let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if maps
        && !namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none())
    {
        return Err(invalid(
            "linux.uidMappings",
            "id mappings need a new user namespace",
        ));
    }
    if namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none())
        && !maps
    {
        return Err(invalid(
            "linux.uidMappings",
            "a new user namespace needs uid and gid mappings",
        ));
    }
    if let Some(offsets) = linux.time_offsets() {
        if !offsets.is_empty()
            && !namespaces
                .iter()
                .any(|n| n.typ() == LinuxNamespaceType::Time && n.path().is_none())
        {
            return Err(invalid(
                "linux.timeOffsets",
                "time offsets need a new time namespace",
            ));
        }
        for k in offsets.keys() {
            if k != "monotonic" && k != "boottime" {
                return Err(invalid(
                    format!("linux.timeOffsets.{k}"),
                    "only monotonic and boottime clocks have offsets",
                ));
            }
        }
    }
    if let Some(sysctl) = linux.sysctl() {
        for (k, _) in sysctl.iter() {
            if k.is_empty() || k.contains("..") || k.starts_with(['/', '.']) {
                return Err(invalid(format!("linux.sysctl.{k}"), "not a sysctl name"));
            }
            let net = k.starts_with("net.");
            let ipc = k.starts_with("kernel.msg")
                || k.starts_with("kernel.sem")
                || k.starts_with("kernel.shm")
                || k == "fs.mqueue"
                || k.starts_with("fs.mqueue.");
            let uts = k == "kernel.hostname" || k == "kernel.domainname";
            let ok = (net && has(LinuxNamespaceType::Network))
                || (ipc && has(LinuxNamespaceType::Ipc))
                || (uts && has(LinuxNamespaceType::Uts));
            if !ok {
                return Err(invalid(
                    format!("linux.sysctl.{k}"),
                    "not namespaced by a namespace this container has",
                ));
            }
        }
    }
    if spec.hostname().is_some() && !has(LinuxNamespaceType::Uts) {
        return Err(invalid(
            "hostname",
            "setting the hostname needs a uts namespace",
        ));
    }
    if spec.domainname().is_some() && !has(LinuxNamespaceType::Uts) {
        return Err(invalid(
            "domainname",
            "setting the domainname needs a uts namespace",
        ));
    }
    for (list, field) in [
        (linux.masked_paths(), "linux.maskedPaths"),
        (linux.readonly_paths(), "linux.readonlyPaths"),
    ] {
        for (i, p) in list.as_deref().unwrap_or(&[]).iter().enumerate() {
            if !p.starts_with('/') {
                return Err(invalid(
                    format!("{field}[{i}]"),
                    format!("{p:?} is not absolute"),
                ));
            }
        }
    }
    if let Some(mounts) = spec.mounts() {
        for (i, m) in mounts.iter().enumerate() {
            crate::plan::parse_mount_options(m.options().as_deref().unwrap_or(&[]))
                .map_err(|r| invalid(format!("mounts[{i}].options"), r))?;
            let bind = m.typ().as_deref() == Some("bind")
                || m.options()
                    .as_deref()
                    .unwrap_or(&[])
                    .iter()
                    .any(|o| o == "bind" || o == "rbind");
            if bind && m.source().is_none() {
                return Err(invalid(
                    format!("mounts[{i}].source"),
                    "a bind mount needs a source",
                ));
            }
            if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
                return Err(invalid(
                    format!("mounts[{i}].uidMappings"),
                    "id-mapped mounts are not supported",
                ));
            }
            if !bind && m.typ().is_none() {
                return Err(invalid(
                    format!("mounts[{i}].type"),
                    "missing for a non-bind mount",
                ));
            }
        }
    }
    if let Some(devices) = linux.devices() {
        for (i, d) in devices.iter().enumerate() {
            if !d.path().starts_with("/dev/") {
                return Err(invalid(
                    format!("linux.devices[{i}].path"),
                    "must be under /dev",
                ));
            }
        }
    }
    if let Some(hooks) = spec.hooks() {
        let lists = [
            ("hooks.prestart", hooks.prestart()),
            ("hooks.createRuntime", hooks.create_runtime()),
            ("hooks.createContainer", hooks.create_container()),
            ("hooks.startContainer", hooks.start_container()),
            ("hooks.poststart", hooks.poststart()),
            ("hooks.poststop", hooks.poststop()),
        ];
        for (field, list) in lists {
            for (i, h) in list.as_deref().unwrap_or(&[]).iter().enumerate() {
                if !h.path().is_absolute() {
                    return Err(invalid(format!("{field}[{i}].path"), "must be absolute"));
                }
                if h.timeout().is_some_and(|t| t <= 0) {
                    return Err(invalid(format!("{field}[{i}].timeout"), "must be positive"));
                }
            }
        }
    }
    if let Some(p) = spec.process() {
        validate_process(p, "process")?;
    }
    Ok(rootfs)
}

/// Validates a process description (also used for `exec --process`).
pub fn validate_process(p: &oci_spec::runtime::Process, field: &str) -> Result<()> {
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(invalid(format!("{field}.args"), "must name a program"));
    }
    if !p.cwd().is_absolute() {
        return Err(invalid(format!("{field}.cwd"), "must be absolute"));
    }
    if p.command_line().is_some() {
        return Err(invalid(format!("{field}.commandLine"), "only for Windows"));
    }
    if p.apparmor_profile().as_ref().is_some_and(|a| !a.is_empty()) && !apparmor_enabled() {
        return Err(invalid(
            format!("{field}.apparmorProfile"),
            "AppArmor is not enabled on this host",
        ));
    }
    if p.selinux_label().as_ref().is_some_and(|a| !a.is_empty()) {
        return Err(invalid(
            format!("{field}.selinuxLabel"),
            "SELinux is not supported",
        ));
    }
    if p.exec_cpu_affinity().is_some() {
        return Err(invalid(format!("{field}.execCPUAffinity"), "not supported"));
    }
    if let Some(io) = p.io_priority()
        && !(0..=7).contains(&io.priority())
    {
        return Err(invalid(
            format!("{field}.ioPriority.priority"),
            "must be 0..=7",
        ));
    }
    if let Some(s) = p.scheduler()
        && s.nice().is_some_and(|n| !(-20..=19).contains(&n))
    {
        return Err(invalid(
            format!("{field}.scheduler.nice"),
            "must be -20..=19",
        ));
    }
    let mut seen = Vec::new();
    for (i, r) in p.rlimits().as_deref().unwrap_or(&[]).iter().enumerate() {
        if seen.contains(&r.typ()) {
            return Err(invalid(
                format!("{field}.rlimits[{i}]"),
                format!("duplicate {:?}", r.typ()),
            ));
        }
        seen.push(r.typ());
        if r.soft() > r.hard() {
            return Err(invalid(
                format!("{field}.rlimits[{i}]"),
                "soft limit above hard limit",
            ));
        }
    }
    for (i, e) in p.env().as_deref().unwrap_or(&[]).iter().enumerate() {
        if !e.contains('=') || e.contains('\0') {
            return Err(invalid(format!("{field}.env[{i}]"), "not KEY=value"));
        }
    }
    if let Some(caps) = p.capabilities() {
        for set in [
            caps.bounding(),
            caps.effective(),
            caps.inheritable(),
            caps.permitted(),
            caps.ambient(),
        ] {
            for c in set.iter().flatten() {
                crate::plan::cap_number(c).ok_or_else(|| {
                    invalid(
                        format!("{field}.capabilities"),
                        format!("unknown capability {c}"),
                    )
                })?;
            }
        }
    }
    Ok(())
}

/// Validates cgroup limits before anything is created: ranges, cpu and memory
/// node lists against this machine's, device rule access letters. What only the
/// kernel can judge (a file this kernel lacks) is reported when it is written.
pub fn validate_resources(r: &oci_spec::runtime::LinuxResources, field: &str) -> Result<()> {
    let f = |sub: &str| format!("{field}.{sub}");
    if let Some(m) = r.memory() {
        for (name, v) in [
            ("limit", m.limit()),
            ("reservation", m.reservation()),
            ("swap", m.swap()),
            ("kernel", m.kernel()),
            ("kernelTCP", m.kernel_tcp()),
        ] {
            if v.is_some_and(|v| v < -1) {
                return Err(invalid(
                    f(&format!("memory.{name}")),
                    "must be -1 (no limit) or more",
                ));
            }
        }
        if m.swappiness().is_some_and(|s| s > 100) {
            return Err(invalid(f("memory.swappiness"), "must be 0..=100"));
        }
        if let (Some(l), Some(s)) = (m.limit(), m.swap())
            && l > 0
            && s > 0
            && s < l
        {
            return Err(invalid(
                f("memory.swap"),
                "memory+swap must not be below the memory limit",
            ));
        }
    }
    if let Some(c) = r.cpu() {
        if c.shares()
            .is_some_and(|s| s != 0 && !(2..=262_144).contains(&s))
        {
            return Err(invalid(f("cpu.shares"), "must be 2..=262144"));
        }
        if c.quota().is_some_and(|q| q < -1) {
            return Err(invalid(f("cpu.quota"), "must be -1 (no limit) or more"));
        }
        if c.period()
            .is_some_and(|p| p != 0 && !(1_000..=1_000_000).contains(&p))
        {
            return Err(invalid(
                f("cpu.period"),
                "must be 1000..=1000000 microseconds",
            ));
        }
        if c.realtime_runtime().is_some_and(|r| r < -1) {
            return Err(invalid(f("cpu.realtimeRuntime"), "must be -1 or more"));
        }
        for (name, list, possible) in [
            ("cpu.cpus", c.cpus(), "/sys/devices/system/cpu/possible"),
            ("cpu.mems", c.mems(), "/sys/devices/system/node/possible"),
        ] {
            if let Some(list) = list.as_deref().filter(|l| !l.is_empty()) {
                check_cpu_list(list, possible).map_err(|r| invalid(f(name), r))?;
            }
        }
    }
    if let Some(b) = r.block_io() {
        let weight_ok = |w: Option<u16>| w.is_none_or(|w| w == 0 || (10..=1000).contains(&w));
        if !weight_ok(b.weight()) {
            return Err(invalid(f("blockIO.weight"), "must be 10..=1000"));
        }
        if !weight_ok(b.leaf_weight()) {
            return Err(invalid(f("blockIO.leafWeight"), "must be 10..=1000"));
        }
        for (i, d) in b.weight_device().iter().flatten().enumerate() {
            if !weight_ok(d.weight()) || !weight_ok(d.leaf_weight()) {
                return Err(invalid(
                    f(&format!("blockIO.weightDevice[{i}]")),
                    "weights must be 10..=1000",
                ));
            }
            if d.major() < 0 || d.minor() < 0 {
                return Err(invalid(
                    f(&format!("blockIO.weightDevice[{i}]")),
                    "negative device number",
                ));
            }
        }
        let throttles = [
            ("throttleReadBpsDevice", b.throttle_read_bps_device()),
            ("throttleWriteBpsDevice", b.throttle_write_bps_device()),
            ("throttleReadIOPSDevice", b.throttle_read_iops_device()),
            ("throttleWriteIOPSDevice", b.throttle_write_iops_device()),
        ];
        for (name, list) in throttles {
            for (i, d) in list.iter().flatten().enumerate() {
                if d.major() < 0 || d.minor() < 0 {
                    return Err(invalid(
                        f(&format!("blockIO.{name}[{i}]")),
                        "negative device number",
                    ));
                }
            }
        }
    }
    for (i, h) in r.hugepage_limits().iter().flatten().enumerate() {
        let size = h.page_size();
        let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &size[digits.len()..];
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || !matches!(unit, "KB" | "MB" | "GB" | "TB" | "PB")
        {
            return Err(invalid(
                f(&format!("hugepageLimits[{i}].pageSize")),
                format!("{size:?} is not a size like 2MB or 1GB"),
            ));
        }
        if h.limit() < 0 {
            return Err(invalid(
                f(&format!("hugepageLimits[{i}].limit")),
                "negative",
            ));
        }
    }
    if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(invalid(f("rdma"), "the rdma controller is not supported"));
    }
    for (i, d) in r.devices().iter().flatten().enumerate() {
        let access = d.access().as_deref().unwrap_or("");
        if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(invalid(
                f(&format!("devices[{i}].access")),
                format!("{access:?}: only r, w and m"),
            ));
        }
        if d.major().is_some_and(|m| m < 0) || d.minor().is_some_and(|m| m < 0) {
            return Err(invalid(
                f(&format!("devices[{i}]")),
                "negative device number (leave it out for any)",
            ));
        }
    }
    Ok(())
}

/// Checks a cpu or memory node list (`0-3,5`) and that each number is one the
/// machine has (`possible`, a list in the same syntax; absent: node 0 only).
fn check_cpu_list(list: &str, possible: &str) -> std::result::Result<(), String> {
    let parse = |s: &str| -> std::result::Result<Vec<(u32, u32)>, String> {
        s.trim()
            .split(',')
            .map(|part| {
                let (a, b) = part.split_once('-').unwrap_or((part, part));
                let n = |x: &str| {
                    x.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("{s:?} is not a list like 0-3,5"))
                };
                let (a, b) = (n(a)?, n(b)?);
                if a > b {
                    return Err(format!("{s:?}: range {a}-{b} runs backwards"));
                }
                Ok((a, b))
            })
            .collect()
    };
    let wanted = parse(list)?;
    let have = std::fs::read_to_string(possible).unwrap_or_else(|_| "0".to_string());
    let have = parse(&have).unwrap_or_default();
    for (a, b) in wanted {
        for n in [a, b] {
            if !have.iter().any(|(lo, hi)| (*lo..=*hi).contains(&n)) {
                return Err(format!(
                    "{n} is not on this machine (it has {})",
                    std::fs::read_to_string(possible)
                        .map(|s| s.trim().to_string())
                        .unwrap_or_else(|_| "0".to_string())
                ));
            }
        }
    }
    Ok(())
}

/// Whether the running kernel has AppArmor enabled.
pub(crate) fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// Checks that `path` is a namespace file of the wanted type (nsfs + `NS_GET_NSTYPE`).
fn check_ns_path(path: &Path, typ: LinuxNamespaceType) -> std::result::Result<(), String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // NS_GET_NSTYPE: _IO(0xb7, 0x3), the namespace type of an nsfs file.
    nix::ioctl_none!(ns_get_nstype, 0xb7, 0x3);
    // SAFETY: `f` is an open file owned for the duration of the call; the ioctl takes no argument.
    let ret = unsafe { ns_get_nstype(f.as_raw_fd()) }
        .map_err(|_| format!("{} is not a namespace", path.display()))?;
    let want = crate::plan::ns_flag(typ);
    if ret != want {
        return Err(format!("{} is not a {typ} namespace", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("abc-1_2.3").is_ok());
        for bad in ["", "a/b", "..", "a..b", ".", "a\nb", "x\u{7f}"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn json_error_names_field_and_line() {
        // The message names the field; its source, the JSON error, says
        // what and where (each once).
        let chain = |e: Error| {
            let mut s = e.to_string();
            let mut cur = std::error::Error::source(&e);
            while let Some(c) = cur {
                s = format!("{s}: {c}");
                cur = c.source();
            }
            s
        };
        let json = br#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/","user":{"uid":"zero","gid":0}}}"#;
        let err = parse_spec(json, Path::new("c.json"))
            .err()
            .map(chain)
            .unwrap_or_default();
        assert!(err.contains("process.user.uid"), "{err}");
        assert_eq!(err.matches("line 1").count(), 1, "{err}");
        let err = parse_spec(b"{\n\"ociVersion\": 1.0,", Path::new("c.json"))
            .err()
            .map(chain)
            .unwrap_or_default();
        assert!(err.contains("line 2"), "{err}");
    }
}

#[cfg(test)]
mod mutation_tests {
    use super::*;

    /// Deterministic byte-level mutations of a valid config: parsing and validation
    /// must return errors, never panic, whatever the bytes.
    #[test]
    fn mutated_configs_never_panic() {
        let spec = oci_spec::runtime::Spec::default();
        let base = serde_json::to_vec(&spec).unwrap_or_default();
        assert!(!base.is_empty());
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let _ = std::fs::create_dir(dir.join("rootfs"));
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"{}[]\":,0123456789-.eE/\\ntrufalsenull \x00\xff";
        for _ in 0..3000 {
            let mut bytes = base.clone();
            for _ in 0..(next() % 8 + 1) {
                let pos = (next() as usize) % bytes.len();
                match next() % 3 {
                    0 => bytes[pos] = alphabet[(next() as usize) % alphabet.len()],
                    1 => {
                        bytes.remove(pos);
                    }
                    _ => bytes.insert(pos, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            if let Ok(spec) = parse_spec(&bytes, Path::new("config.json")) {
                let _ = validate(&spec, &dir);
            }
        }
    }
}
