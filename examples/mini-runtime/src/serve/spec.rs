//! A CRI container's OCI runtime spec: the image config's process with the
//! request's overrides (oci-runtime's `ImageProcess`, containerd's rules),
//! the pod's namespaces joined through its pause process, and the request's
//! mounts, devices, security context and resources.
//!
//! What this runtime cannot do is refused naming the field: SELinux
//! relabelling, id-mapped and recursively read-only mounts.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use cri_api::Status;
use cri_api::v1::{
    ContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext, MountPropagation,
    NamespaceMode, SecurityProfile, security_profile::ProfileType,
};
use serde_json::{Value, json};

use super::status::invalid;

/// The capabilities a container gets unless its security context says
/// otherwise: containerd's (and Docker's) default set.
pub(crate) const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths masked and made read-only unless the request lists its own.
const MASKED: [&str; 9] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
];
const READONLY: [&str; 6] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/scsi",
];

/// What a container takes from its pod.
#[derive(Debug, Clone)]
pub(crate) struct Sandbox {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// The pause process's host pid.
    pub pid: i32,
    /// NamespaceMode values of the pod's network, pid and ipc.
    pub modes: (i32, i32, i32),
    /// The cgroup the pod's containers go under.
    pub cgroup_parent: String,
    /// Holds `hostname`, `resolv.conf` and `hosts` for the containers.
    pub dir: PathBuf,
    pub hostname: String,
    pub privileged: bool,
    /// Whether the pod has a user namespace of its own, and the host uid
    /// and gid its root is.
    pub userns: bool,
    pub userns_root: (u32, u32),
}

/// A spec and what the server keeps beside it.
#[derive(Debug)]
pub(crate) struct Built {
    pub spec: oci_spec::runtime::Spec,
    /// The signal StopContainer sends first.
    pub stop_signal: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// A capability set of this process (`CapBnd:`, `CapEff:`, …) from
/// `/proc/self/status`.
fn own_caps(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
}

/// Every capability this process may hand on: its bounding set (a host
/// may lack some, as containerd's "all" is the current process's too).
fn all_caps() -> Vec<String> {
    let bnd = own_caps("CapBnd:").unwrap_or(u64::MAX);
    oci_runtime::known_capabilities()
        .into_iter()
        .filter(|c| {
            oci_runtime::cap_number_by_name(c).is_some_and(|n| n < 64 && bnd & (1 << n) != 0)
        })
        .collect()
}

fn caps_of(sc: &LinuxContainerSecurityContext) -> Result<(Vec<String>, Vec<String>), Status> {
    let all = all_caps();
    if sc.privileged {
        return Ok((all, Vec::new()));
    }
    let canon = |field: &str, c: &str| -> Result<String, Status> {
        let name = if c.to_ascii_uppercase().starts_with("CAP_") {
            c.to_ascii_uppercase()
        } else {
            format!("CAP_{}", c.to_ascii_uppercase())
        };
        if oci_runtime::cap_number_by_name(&name).is_none() {
            return Err(invalid(field, &format!("unknown capability {c:?}")));
        }
        Ok(name)
    };
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    let (mut ambient, add, drop) = match &sc.capabilities {
        Some(c) => (
            c.add_ambient_capabilities.clone(),
            c.add_capabilities.clone(),
            c.drop_capabilities.clone(),
        ),
        None => Default::default(),
    };
    let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
    if add.iter().any(is_all) {
        caps = all.clone();
    }
    if drop.iter().any(is_all) {
        caps.clear();
    }
    for c in add.iter().filter(|c| !is_all(c)) {
        let c = canon(
            "config.linux.security_context.capabilities.add_capabilities",
            c,
        )?;
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    for c in drop.iter().filter(|c| !is_all(c)) {
        let c = canon(
            "config.linux.security_context.capabilities.drop_capabilities",
            c,
        )?;
        caps.retain(|x| *x != c);
    }
    for c in ambient.iter_mut() {
        *c = canon(
            "config.linux.security_context.capabilities.add_ambient_capabilities",
            c,
        )?;
        if !caps.contains(c) {
            caps.push(c.clone());
        }
    }
    Ok((caps, ambient))
}

/// The seccomp profile a security context asks for (`None`: unconfined).
#[allow(deprecated)] // the kubelet may still send the old field
fn seccomp_of(
    sc: &LinuxContainerSecurityContext,
    caps: &[String],
) -> Result<Option<Value>, Status> {
    if sc.privileged {
        return Ok(None);
    }
    let profile = match (&sc.seccomp, sc.seccomp_profile_path.as_str()) {
        (Some(p), _) => p.clone(),
        (None, "") | (None, "unconfined") => return Ok(None),
        (None, "runtime/default" | "docker/default") => SecurityProfile::default(),
        (None, path) => match path.strip_prefix("localhost/") {
            Some(p) => SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: p.into(),
            },
            None => {
                return Err(invalid(
                    "config.linux.security_context.seccomp_profile_path",
                    &format!("{path:?} is not runtime/default, unconfined or localhost/<path>"),
                ));
            }
        },
    };
    match ProfileType::try_from(profile.profile_type) {
        Ok(ProfileType::Unconfined) => Ok(None),
        Ok(ProfileType::RuntimeDefault) => {
            let held: Vec<oci_spec::runtime::Capability> =
                caps.iter().filter_map(|c| c.parse().ok()).collect();
            let p = oci_runtime::default_seccomp(&held, oci_spec::runtime::Arch::ScmpArchNative);
            serde_json::to_value(p)
                .map(Some)
                .map_err(|e| Status::internal(format!("encoding the default seccomp profile: {e}")))
        }
        Ok(ProfileType::Localhost) => {
            let path = &profile.localhost_ref;
            if !path.starts_with('/') {
                return Err(invalid(
                    "config.linux.security_context.seccomp.localhost_ref",
                    &format!("{path:?} is not an absolute path"),
                ));
            }
            let text = std::fs::read(path).map_err(|e| {
                invalid(
                    "config.linux.security_context.seccomp.localhost_ref",
                    &format!("reading {path}: {e}"),
                )
            })?;
            let p: oci_spec::runtime::LinuxSeccomp =
                serde_json::from_slice(&text).map_err(|e| {
                    invalid(
                        "config.linux.security_context.seccomp.localhost_ref",
                        &format!("{path} is not a seccomp profile: {e}"),
                    )
                })?;
            serde_json::to_value(p)
                .map(Some)
                .map_err(|e| Status::internal(format!("encoding {path}: {e}")))
        }
        Err(_) => Err(invalid(
            "config.linux.security_context.seccomp.profile_type",
            &format!("unknown value {}", profile.profile_type),
        )),
    }
}

/// The AppArmor profile asked for, if any. On a host with AppArmor,
/// RuntimeDefault (and, as with containerd, no profile asked for at all)
/// is [`oci_runtime::apparmor::DEFAULT_PROFILE`], loaded on first use.
#[allow(deprecated)] // the kubelet may still send the old field
fn apparmor_of(sc: &LinuxContainerSecurityContext) -> Result<Option<String>, Status> {
    if sc.privileged {
        return Ok(None);
    }
    let enabled = oci_runtime::apparmor::enabled();
    enum Want {
        Default,
        Named(String),
        None,
    }
    let want = match (&sc.apparmor, sc.apparmor_profile.as_str()) {
        (Some(p), _) => match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::Localhost) => Want::Named(p.localhost_ref.clone()),
            Ok(ProfileType::RuntimeDefault) => Want::Default,
            Ok(ProfileType::Unconfined) => Want::None,
            Err(_) => {
                return Err(invalid(
                    "config.linux.security_context.apparmor.profile_type",
                    &format!("unknown value {}", p.profile_type),
                ));
            }
        },
        (None, "" | "runtime/default") => Want::Default,
        (None, "unconfined") => Want::None,
        (None, p) => match p.strip_prefix("localhost/") {
            Some(name) => Want::Named(name.to_string()),
            None => {
                return Err(invalid(
                    "config.linux.security_context.apparmor_profile",
                    &format!("{p:?} is not runtime/default, unconfined or localhost/<name>"),
                ));
            }
        },
    };
    match want {
        Want::None => Ok(None),
        Want::Default if !enabled => Ok(None),
        Want::Default => oci_runtime::apparmor::ensure_default()
            .map(|n| Some(n.to_string()))
            .map_err(|e| Status::failed_precondition(e.to_string())),
        Want::Named(name) if !enabled => Err(invalid(
            "config.linux.security_context.apparmor",
            &format!("profile {name:?} asked for, but AppArmor is not enabled on this host"),
        )),
        Want::Named(name) => Ok(Some(name)),
    }
}

/// Whether this process may lower `oom_score_adj` (the kernel asks for
/// CAP_SYS_RESOURCE): when it may not, a lower value is raised to ours, as
/// containerd's `restrict_oom_score_adj` does.
fn oom_floor() -> Option<i64> {
    let eff = own_caps("CapEff:")?;
    // CAP_SYS_RESOURCE is capability 24.
    if eff & (1 << 24) != 0 {
        return None;
    }
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// LinuxContainerResources as the spec's `linux.resources`.
pub(crate) fn resources(r: &LinuxContainerResources) -> Value {
    let mut cpu = serde_json::Map::new();
    if r.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(r.cpu_shares));
    }
    if r.cpu_quota != 0 {
        cpu.insert("quota".into(), json!(r.cpu_quota));
    }
    if r.cpu_period > 0 {
        cpu.insert("period".into(), json!(r.cpu_period));
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(r.cpuset_cpus));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(r.cpuset_mems));
    }
    let mut memory = serde_json::Map::new();
    if r.memory_limit_in_bytes > 0 {
        memory.insert("limit".into(), json!(r.memory_limit_in_bytes));
    }
    if r.memory_swap_limit_in_bytes > 0 {
        memory.insert("swap".into(), json!(r.memory_swap_limit_in_bytes));
    }
    let mut out = serde_json::Map::new();
    if !cpu.is_empty() {
        out.insert("cpu".into(), Value::Object(cpu));
    }
    if !memory.is_empty() {
        out.insert("memory".into(), Value::Object(memory));
    }
    if !r.hugepage_limits.is_empty() {
        out.insert(
            "hugepageLimits".into(),
            r.hugepage_limits
                .iter()
                .map(|h| json!({"pageSize": h.page_size, "limit": h.limit}))
                .collect(),
        );
    }
    if !r.unified.is_empty() {
        out.insert("unified".into(), json!(r.unified));
    }
    Value::Object(out)
}

/// A device node of the host as the spec's `linux.devices` entry and its
/// cgroup rule.
fn device(host: &Path, in_ctr: &str, perms: &str) -> Result<(Value, Value), String> {
    let md = std::fs::metadata(host).map_err(|e| format!("{}: {e}", host.display()))?;
    let ft = md.file_type();
    let kind = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else {
        return Err(format!("{} is not a device node", host.display()));
    };
    let rdev = md.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let perms = if perms.is_empty() { "rwm" } else { perms };
    if !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(format!("permissions {perms:?}: only r, w and m"));
    }
    Ok((
        json!({"path": in_ctr, "type": kind, "major": major, "minor": minor,
               "fileMode": md.mode() & 0o7777, "uid": md.uid(), "gid": md.gid()}),
        json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": perms}),
    ))
}

/// Every device node under the host's `/dev`, for privileged containers.
fn host_devices() -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::from("/dev")];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if !["/dev/pts", "/dev/shm", "/dev/mqueue"].contains(&p.to_str().unwrap_or("")) {
                    dirs.push(p);
                }
            } else if (ft.is_char_device() || ft.is_block_device())
                && p != Path::new("/dev/console")
                && let Some(s) = p.to_str()
                && let Ok(d) = device(&p, s, "rwm")
            {
                out.push(d);
            }
        }
    }
    out
}

/// The mount point `path` is on and its propagation (`shared`, `slave`;
/// none listed: private), from this process's mountinfo.
fn source_propagation(path: &Path) -> Option<(PathBuf, Vec<String>)> {
    let path = std::fs::canonicalize(path).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(PathBuf, Vec<String>)> = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(at) = f.get(4).map(|m| PathBuf::from(unescape_mountinfo(m))) else {
            continue;
        };
        if !path.starts_with(&at) {
            continue;
        }
        // Optional fields run from the 7th to the "-".
        let kinds = f
            .iter()
            .skip(6)
            .take_while(|x| **x != "-")
            .filter_map(|x| x.split(':').next())
            .map(|k| if k == "master" { "slave" } else { k }.to_string())
            .collect();
        // The last of the longest: what is mounted over the rest.
        if best
            .as_ref()
            .is_none_or(|(b, _)| at.components().count() >= b.components().count())
        {
            best = Some((at, kinds));
        }
    }
    best
}

/// Mountinfo's octal escapes (`\040` for a space) undone.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(d) = b.get(i + 1..i + 4)
            && d.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a CRI mount's propagation puts it.
fn propagation(p: i32) -> Result<&'static str, Status> {
    match MountPropagation::try_from(p) {
        Ok(MountPropagation::PropagationPrivate) => Ok("rprivate"),
        Ok(MountPropagation::PropagationHostToContainer) => Ok("rslave"),
        Ok(MountPropagation::PropagationBidirectional) => Ok("rshared"),
        Err(_) => Err(invalid(
            "config.mounts.propagation",
            &format!("unknown value {p}"),
        )),
    }
}

/// The container's spec. `image_mounts` has the host path of each image
/// volume (`Mount.image`), by container path; `pid_target` the pid of a
/// container whose pid namespace a `TARGET` mode names.
#[allow(clippy::too_many_arguments)]
pub(crate) fn container_spec(
    id: &str,
    cfg: &ContainerConfig,
    image_name: &str,
    image: &oci_spec::image::ImageConfiguration,
    rootfs: &Path,
    sb: &Sandbox,
    image_mounts: &HashMap<String, PathBuf>,
    pid_target: &dyn Fn(&str) -> Option<i32>,
) -> Result<Built, Status> {
    let linux = cfg.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    if sc.privileged && !sb.privileged {
        return Err(Status::invalid_argument(
            "config.linux.security_context.privileged: the pod sandbox is not privileged",
        ));
    }
    // The user: run_as_user / run_as_username, with run_as_group.
    let user = match (
        &sc.run_as_user,
        sc.run_as_username.as_str(),
        &sc.run_as_group,
    ) {
        (Some(u), _, g) => Some(match g {
            Some(g) => format!("{}:{}", u.value, g.value),
            None => u.value.to_string(),
        }),
        (None, name, g) if !name.is_empty() => Some(match g {
            Some(g) => format!("{name}:{}", g.value),
            None => name.to_string(),
        }),
        // (run_as_group alone is refused by `cri_api::validate`.)
        (None, _, _) => None,
    };
    // In range: checked by `cri_api::validate`.
    let groups = sc
        .supplemental_groups
        .iter()
        .filter_map(|g| u32::try_from(*g).ok())
        .collect();
    let overrides = oci_runtime::ImageOverrides {
        entrypoint: (!cfg.command.is_empty()).then(|| cfg.command.clone()),
        cmd: (!cfg.args.is_empty()).then(|| cfg.args.clone()),
        // Keys and UTF-8 values: checked by `cri_api::validate`.
        env: cfg
            .envs
            .iter()
            .map(|kv| format!("{}={}", kv.key, String::from_utf8_lossy(&kv.value)))
            .collect(),
        working_dir: (!cfg.working_dir.is_empty()).then(|| cfg.working_dir.clone()),
        user,
        additional_gids: groups,
        convention: oci_runtime::Convention::Containerd,
    };
    let process =
        oci_runtime::ImageProcess::resolve(image, rootfs, &overrides).map_err(|e| match e {
            oci_runtime::Error::ImageConfig { what, reason } => {
                Status::invalid_argument(format!("image {image_name}: {what}: {reason}"))
            }
            other => Status::invalid_argument(format!("image {image_name}: {other}")),
        })?;
    let (caps, ambient) = caps_of(&sc)?;
    let mut env = process.env.clone();
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={}", sb.hostname));
    }
    let mut proc = json!({
        "terminal": cfg.tty,
        "args": process.args,
        "env": env,
        "cwd": process.cwd,
        "user": {"uid": process.uid, "gid": process.gid,
                 "additionalGids": process.additional_gids},
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps,
                         "inheritable": ambient, "ambient": ambient},
        "noNewPrivileges": sc.no_new_privs,
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    });
    if let Some(profile) = apparmor_of(&sc)? {
        proc["apparmorProfile"] = json!(profile);
    }
    let res = linux.resources.clone().unwrap_or_default();
    if res.oom_score_adj != 0 {
        let adj = match oom_floor() {
            Some(floor) if res.oom_score_adj < floor => floor,
            _ => res.oom_score_adj,
        };
        proc["oomScoreAdj"] = json!(adj);
    }

    // Namespaces: a mount namespace of its own; the pod's network, ipc and
    // uts through its pause process unless the pod uses the host's.
    let ns_path = |kind: &str| format!("/proc/{}/ns/{kind}", sb.pid);
    let node = NamespaceMode::Node as i32;
    let mut namespaces = vec![json!({"type": "mount"})];
    if sb.userns {
        namespaces.push(json!({"type": "user", "path": ns_path("user")}));
    }
    if sb.modes.0 != node {
        namespaces.push(json!({"type": "network", "path": ns_path("net")}));
        namespaces.push(json!({"type": "uts", "path": ns_path("uts")}));
    }
    if sb.modes.2 != node {
        namespaces.push(json!({"type": "ipc", "path": ns_path("ipc")}));
    }
    let cns = sc.namespace_options.clone().unwrap_or_default();
    match NamespaceMode::try_from(cns.pid) {
        Ok(NamespaceMode::Node) => {}
        Ok(NamespaceMode::Container) => namespaces.push(json!({"type": "pid"})),
        Ok(NamespaceMode::Pod) => {
            if sb.modes.1 != node {
                namespaces.push(json!({"type": "pid", "path": ns_path("pid")}));
            }
        }
        Ok(NamespaceMode::Target) => {
            let pid = pid_target(&cns.target_id).ok_or_else(|| {
                Status::not_found(format!(
                    "config.linux.security_context.namespace_options.target_id: container {:?} is not running",
                    cns.target_id
                ))
            })?;
            namespaces.push(json!({"type": "pid", "path": format!("/proc/{pid}/ns/pid")}));
        }
        Err(_) => {
            return Err(invalid(
                "config.linux.security_context.namespace_options.pid",
                &format!("unknown value {}", cns.pid),
            ));
        }
    }

    // Mounts: the usual file systems, the pod's files, then the request's.
    let ro_sys = if sc.privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", ro_sys]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", ro_sys]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
    ];
    let wanted: Vec<&str> = cfg
        .mounts
        .iter()
        .map(|m| m.container_path.as_str())
        .collect();
    for file in ["hostname", "resolv.conf", "hosts"] {
        let dest = format!("/etc/{file}");
        if !wanted.contains(&dest.as_str()) && sb.dir.join(file).exists() {
            mounts.push(json!({"destination": dest, "type": "bind",
                "source": sb.dir.join(file), "options": ["rbind", "rprivate", "rw"]}));
        }
    }
    let mut rootfs_propagation = "";
    // By their index in the request, which errors name.
    let mut requested: Vec<_> = cfg.mounts.iter().enumerate().collect();
    // Parents before children, as containerd orders them.
    requested.sort_by_key(|(_, m)| Path::new(&m.container_path).components().count());
    for (i, m) in requested {
        let field = |f: &str| format!("config.mounts[{i}].{f}");
        // Without SELinux there is no label to set, and the relabel is a
        // no-op (as containerd's); with it, this server cannot relabel.
        if m.selinux_relabel && Path::new("/sys/fs/selinux/enforce").exists() {
            return Err(invalid(
                &field("selinux_relabel"),
                "SELinux relabelling is not supported by mini-runtime",
            ));
        }
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            return Err(invalid(
                &field("uidMappings"),
                "id-mapped mounts are not supported by mini-runtime",
            ));
        }
        if m.recursive_read_only {
            return Err(invalid(
                &field("recursive_read_only"),
                "recursively read-only mounts are not supported by mini-runtime",
            ));
        }
        let source = if m.image.as_ref().is_some_and(|s| !s.image.is_empty()) {
            let Some(p) = image_mounts.get(&m.container_path) else {
                return Err(Status::internal(format!(
                    "image volume at {} was not mounted",
                    m.container_path
                )));
            };
            if m.image_sub_path.is_empty() {
                p.clone()
            } else {
                // Resolved, symlinks and all, it must stay inside the image.
                let sub = p.join(m.image_sub_path.trim_start_matches('/'));
                let (Ok(base), Ok(full)) = (std::fs::canonicalize(p), std::fs::canonicalize(&sub))
                else {
                    return Err(invalid(
                        &field("image_sub_path"),
                        &format!("{:?} is not in the image", m.image_sub_path),
                    ));
                };
                if !full.starts_with(&base) {
                    return Err(invalid(
                        &field("image_sub_path"),
                        &format!("{:?} leads out of the image", m.image_sub_path),
                    ));
                }
                full
            }
        } else {
            let p = PathBuf::from(&m.host_path);
            // A missing host path becomes a directory, as containerd does.
            if std::fs::symlink_metadata(&p).is_err() {
                std::fs::create_dir_all(&p)
                    .map_err(|e| invalid(&field("host_path"), &format!("creating it: {e}")))?;
            }
            p
        };
        let ro = m.readonly || m.image.as_ref().is_some_and(|s| !s.image.is_empty());
        // As containerd: a propagating mount needs its source's mount to
        // propagate, and the new root to pass it on.
        let prop = propagation(m.propagation)?;
        if prop != "rprivate" {
            let wanted = if prop == "rshared" {
                "shared"
            } else {
                "shared or slave"
            };
            let propagates = |kinds: &[String]| {
                kinds
                    .iter()
                    .any(|k| k == "shared" || (prop == "rslave" && k == "slave"))
            };
            match source_propagation(&source) {
                Some((_, kinds)) if propagates(&kinds) => {}
                Some((at, _)) => {
                    return Err(invalid(
                        &field("propagation"),
                        &format!(
                            "{} is on the mount at {}, which is not {wanted}",
                            source.display(),
                            at.display()
                        ),
                    ));
                }
                None => {}
            }
            if prop == "rshared" {
                rootfs_propagation = "rshared";
            } else if rootfs_propagation != "rshared" {
                rootfs_propagation = "rslave";
            }
        }
        mounts.push(json!({
            "destination": m.container_path, "type": "bind", "source": source,
            "options": ["rbind", prop, if ro { "ro" } else { "rw" }],
        }));
    }

    // Devices: the request's, or every host device for a privileged one.
    let mut devices = Vec::new();
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    for (c, ty, maj, min) in [
        ("rwm", "c", 1, 3),
        ("rwm", "c", 1, 5),
        ("rwm", "c", 1, 7),
        ("rwm", "c", 1, 8),
        ("rwm", "c", 1, 9),
        ("rwm", "c", 5, 0),
        ("rwm", "c", 5, 2),
        ("rwm", "c", 136, -1),
    ] {
        let minor = if min < 0 { Value::Null } else { json!(min) };
        rules.push(json!({"allow": true, "type": ty, "major": maj, "minor": minor, "access": c}));
    }
    if sc.privileged {
        rules = vec![json!({"allow": true, "access": "rwm"})];
        for (d, _) in host_devices() {
            devices.push(d);
        }
    }
    for (i, d) in cfg.devices.iter().enumerate() {
        let (dev, rule) = device(Path::new(&d.host_path), &d.container_path, &d.permissions)
            .map_err(|e| invalid(&format!("config.devices[{i}]"), &e))?;
        devices.push(dev);
        rules.push(rule);
    }
    let mut resources = resources(&res);
    resources["devices"] = Value::Array(rules);
    let parent = if sb.cgroup_parent.is_empty() {
        "/mini-runtime".to_string()
    } else {
        sb.cgroup_parent.trim_end_matches('/').to_string()
    };
    let mut lx = json!({
        "namespaces": namespaces,
        "cgroupsPath": format!("{parent}/{id}"),
        "resources": resources,
        "devices": devices,
    });
    if !sc.privileged {
        lx["maskedPaths"] = if sc.masked_paths.is_empty() {
            json!(MASKED)
        } else {
            json!(sc.masked_paths)
        };
        lx["readonlyPaths"] = if sc.readonly_paths.is_empty() {
            json!(READONLY)
        } else {
            json!(sc.readonly_paths)
        };
    }
    if let Some(seccomp) = seccomp_of(&sc, &caps)? {
        lx["seccomp"] = seccomp;
    }
    if !rootfs_propagation.is_empty() {
        lx["rootfsPropagation"] = json!(rootfs_propagation);
    }
    let stop_signal = match cri_api::v1::Signal::try_from(cfg.stop_signal) {
        Ok(cri_api::v1::Signal::RuntimeDefault) | Err(_) => process
            .stop_signal
            .clone()
            .unwrap_or_else(|| "SIGTERM".into()),
        Ok(s) => s.as_str_name().to_string(),
    };
    let spec = json!({
        "ociVersion": "1.2.0",
        "process": proc,
        "root": {"path": "rootfs", "readonly": sc.readonly_rootfs},
        "mounts": mounts,
        "annotations": {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": cfg.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
            "io.kubernetes.cri.sandbox-id": sb.id,
            "io.kubernetes.cri.sandbox-name": sb.name,
            "io.kubernetes.cri.sandbox-namespace": sb.namespace,
            "io.kubernetes.cri.sandbox-uid": sb.uid,
            "io.kubernetes.cri.image-name": image_name,
        },
        "linux": lx,
    });
    let spec: oci_spec::runtime::Spec = serde_json::from_value(spec)
        .map_err(|e| Status::internal(format!("building the container's spec: {e}")))?;
    Ok(Built {
        spec,
        stop_signal,
        uid: process.uid,
        gid: process.gid,
        groups: process.additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_api::v1::Capability;

    #[test]
    fn mountinfo_paths_are_unescaped_and_the_root_has_a_mount() {
        assert_eq!(unescape_mountinfo("/a\\040b\\134c"), "/a b\\c");
        // Not an escape: kept as it is, multi-byte text too.
        assert_eq!(unescape_mountinfo("/x\\9é\\"), "/x\\9é\\");
        let (at, _) = source_propagation(Path::new("/")).unwrap();
        assert_eq!(at, PathBuf::from("/"));
    }

    fn sc(add: &[&str], drop: &[&str]) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                add_ambient_capabilities: Vec::new(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn capabilities_add_drop_and_all() {
        let (caps, _) = caps_of(&sc(&["net_admin"], &["CAP_CHOWN", "KILL"])).unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert!(!caps.contains(&"CAP_KILL".to_string()));
        assert_eq!(caps.len(), DEFAULT_CAPS.len() - 1);
        let (caps, _) = caps_of(&sc(&["SYS_ADMIN"], &["ALL"])).unwrap();
        assert_eq!(caps, vec!["CAP_SYS_ADMIN".to_string()]);
        let (caps, _) = caps_of(&sc(&["ALL"], &["NET_RAW"])).unwrap();
        assert_eq!(caps.len(), all_caps().len() - 1);
        let e = caps_of(&sc(&["CAP_FLY"], &[])).unwrap_err();
        assert!(e.message().contains("CAP_FLY"), "{}", e.message());
    }

    #[test]
    fn seccomp_profiles_by_type() {
        let mut s = LinuxContainerSecurityContext::default();
        assert!(
            seccomp_of(&s, &[]).unwrap().is_none(),
            "none asked: unconfined"
        );
        s.seccomp = Some(SecurityProfile::default());
        let p = seccomp_of(&s, &[]).unwrap().unwrap();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        s.seccomp = Some(SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: "relative.json".into(),
        });
        assert!(seccomp_of(&s, &[]).is_err());
        s.seccomp = Some(SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        });
        assert!(seccomp_of(&s, &[]).unwrap().is_none());
    }

    #[test]
    fn resources_map_to_the_spec() {
        let r = LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            cpuset_cpus: "0".into(),
            ..Default::default()
        };
        let v = resources(&r);
        assert_eq!(v["cpu"]["quota"], 50_000);
        assert_eq!(v["cpu"]["shares"], 512);
        assert_eq!(v["cpu"]["cpus"], "0");
        assert_eq!(v["memory"]["limit"], 64 << 20);
        assert!(v.get("hugepageLimits").is_none());
    }
}
