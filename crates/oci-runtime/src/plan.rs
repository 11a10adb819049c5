//! The init plan: everything the container's first process will do, prepared in
//! the parent as plain data (paths as C strings, flags as numbers) so the child
//! can carry it out with raw system calls and no allocation.

use std::ffi::CString;
use std::path::{Component, Path};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Process, Spec};

use crate::config::Bundle;
use crate::error::{Result, invalid};

/// A path inside the container's root, split so the child can create what is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelPath {
    /// `a/b/c` relative to the rootfs (`.` for the root itself).
    pub full: CString,
    /// Every prefix: `a`, `a/b`, `a/b/c`.
    pub prefixes: Vec<CString>,
    /// Every component: `a`, `b`, `c`.
    pub names: Vec<CString>,
    /// The path as the config wrote it, for error messages.
    pub display: String,
}

impl RelPath {
    /// Splits an absolute or relative container path; `..` components are refused
    /// (they would be clamped to the root anyway, but they say the author meant something else).
    pub(crate) fn new(p: &Path, field: &str) -> Result<Self> {
        let mut names = Vec::new();
        for c in p.components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(n) => names.push(n.to_string_lossy().into_owned()),
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(invalid(field, format!("{} contains `..`", p.display())));
                }
            }
        }
        let cs = |s: &str| CString::new(s).map_err(|_| invalid(field, "contains a NUL byte"));
        let mut prefixes = Vec::new();
        let mut acc = String::new();
        let mut cnames = Vec::new();
        for n in &names {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(n);
            prefixes.push(cs(&acc)?);
            cnames.push(cs(n)?);
        }
        let full = if acc.is_empty() { cs(".")? } else { cs(&acc)? };
        Ok(RelPath {
            full,
            prefixes,
            names: cnames,
            display: format!("/{acc}"),
        })
    }

    /// The parent directory and the last component, for `mknodat`-style calls.
    pub(crate) fn split_last(&self) -> Option<(RelPath, CString)> {
        let last = self.names.last()?.clone();
        let n = self.names.len() - 1;
        let full = if n == 0 {
            CString::from(c".")
        } else {
            self.prefixes[n - 1].clone()
        };
        let display = self
            .display
            .rsplit_once('/')
            .map(|(a, _)| a.to_string())
            .unwrap_or_default();
        Some((
            RelPath {
                full,
                prefixes: self.prefixes[..n].to_vec(),
                names: self.names[..n].to_vec(),
                display,
            },
            last,
        ))
    }
}

/// What kind of mount a [`MountPlan`] performs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MountKind {
    /// A bind mount of a host path.
    Bind {
        source: CString,
        recursive: bool,
        source_is_dir: bool,
    },
    /// A new filesystem instance (proc, sysfs, tmpfs, devpts, mqueue, cgroup2, …).
    Fs { fstype: CString, source: CString },
    /// Hybrid-cgroup host: a tmpfs with read-only binds of this process's own v1 cgroup dirs.
    CgroupV1 {
        dirs: Vec<(CString, CString)>,
        links: Vec<(CString, CString)>,
    },
}

/// One entry of `mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountPlan {
    pub dest: RelPath,
    pub kind: MountKind,
    /// `MS_*` flags other than propagation.
    pub flags: libc::c_ulong,
    pub data: Option<CString>,
    /// Propagation changes applied after the mount, one call each.
    pub propagation: Vec<libc::c_ulong>,
}

/// One `linux.devices` entry or default device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DevicePlan {
    pub parent: RelPath,
    pub name: CString,
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO` plus permission bits.
    pub mode: libc::mode_t,
    pub rdev: libc::dev_t,
    pub uid: u32,
    pub gid: u32,
    /// Host path to bind instead when `mknod` is not allowed (user namespaces).
    pub host: CString,
}

/// The root filesystem part of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootfsPlan {
    pub rootfs: CString,
    pub propagation: libc::c_ulong,
    pub mounts: Vec<MountPlan>,
    /// Whether to create default devices and `/dev` symlinks.
    pub populate_dev: bool,
    pub devices: Vec<DevicePlan>,
    pub masked: Vec<RelPath>,
    pub readonly: Vec<RelPath>,
    pub readonly_root: bool,
    pub pivot: bool,
    pub cwd: RelPath,
}

/// Capability masks for the five sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

/// One rlimit to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RlimitPlan {
    pub resource: libc::c_int,
    pub soft: u64,
    pub hard: u64,
    pub name: String,
}

/// The process part of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcessPlan {
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    /// `PATH` directories searched when `args[0]` has no `/`.
    pub path_dirs: Vec<CString>,
    pub cwd: CString,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<libc::gid_t>,
    pub umask: Option<libc::mode_t>,
    pub rlimits: Vec<RlimitPlan>,
    pub no_new_privs: bool,
    pub oom_score_adj: Option<CString>,
    pub caps: Option<CapSets>,
    pub terminal: bool,
    pub console_size: Option<(u16, u16)>,
    pub personality: Option<libc::c_ulong>,
    /// `ioprio_set` value: class << 13 | priority.
    pub io_priority: Option<libc::c_int>,
    pub scheduler: Option<SchedPlan>,
    /// `exec <profile>` for the AppArmor exec attribute.
    pub apparmor: Option<CString>,
}

/// `sched_setattr` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SchedPlan {
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
}

fn sched_plan(s: &oci_spec::runtime::Scheduler) -> SchedPlan {
    use oci_spec::runtime::{LinuxSchedulerFlag as F, LinuxSchedulerPolicy as P};
    let policy = match s.policy() {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIso => 4,
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
    };
    let flags = s.flags().iter().flatten().fold(0u64, |acc, f| {
        acc | match f {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin => 0x20,
            F::SchedFlagUtilClampMax => 0x40,
        }
    });
    SchedPlan {
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0).max(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    }
}

/// A hook run by the container's init (createContainer, startContainer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HookPlan {
    pub path: CString,
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    pub timeout_ms: i64,
}

/// A namespace to join by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinNs {
    pub path: std::path::PathBuf,
    pub nstype: libc::c_int,
}

/// Everything the child does, prepared in the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InitPlan {
    /// Namespaces created by `clone3` itself.
    pub clone_flags: u64,
    /// Namespaces created by `unshare` after joining `join` (two-stage spawns).
    pub unshare_flags: libc::c_int,
    /// Namespaces joined first, user namespace first.
    pub join: Vec<JoinNs>,
    /// Whether a second `clone` is needed so the payload lands in a joined or unshared pid/time namespace.
    pub two_stage: bool,
    /// Whether a new user namespace is created (the parent writes the id maps).
    pub new_user: bool,
    pub uid_map: String,
    pub gid_map: String,
    pub time_offsets: Option<CString>,
    pub rootfs: Option<RootfsPlan>,
    pub hostname: Option<CString>,
    pub domainname: Option<CString>,
    /// `(path under /proc, value)`, e.g. `sys/net/ipv4/ip_forward`.
    pub sysctl: Vec<(CString, CString)>,
    pub process: ProcessPlan,
    /// Whether the parent must run prestart / createRuntime hooks mid-setup.
    pub runtime_hooks: bool,
    pub create_container_hooks: Vec<HookPlan>,
    pub start_container_hooks: Vec<HookPlan>,
    /// Highest capability number the kernel knows.
    pub last_cap: u32,
    /// Name of a new session keyring to join, so containers do not share the caller's.
    pub session_keyring: Option<CString>,
}

/// Options of the host that shape the plan.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlanOptions {
    /// Use `MS_MOVE` + `chroot` instead of `pivot_root` (for ramfs roots).
    pub no_pivot: bool,
    /// Name of the session keyring to create and join (`None`: keep the caller's).
    pub session_keyring: Option<String>,
}

pub(crate) fn ns_flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }
}

/// Maps a propagation name (`rslave`, `private`, …) to its `MS_*` flags.
pub(crate) fn propagation_flag(name: &str) -> Option<libc::c_ulong> {
    Some(match name {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

/// Parsed mount options.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct MountOptions {
    pub flags: libc::c_ulong,
    pub propagation: Vec<libc::c_ulong>,
    pub bind: bool,
    pub recursive: bool,
    pub data: Vec<String>,
}

/// Splits OCI mount options into `MS_*` flags, propagation changes and filesystem data.
pub(crate) fn parse_mount_options(opts: &[String]) -> std::result::Result<MountOptions, String> {
    let mut o = MountOptions::default();
    for opt in opts {
        let (set, flag) = match opt.as_str() {
            "ro" => (true, libc::MS_RDONLY),
            "rw" => (false, libc::MS_RDONLY),
            "nosuid" => (true, libc::MS_NOSUID),
            "suid" => (false, libc::MS_NOSUID),
            "nodev" => (true, libc::MS_NODEV),
            "dev" => (false, libc::MS_NODEV),
            "noexec" => (true, libc::MS_NOEXEC),
            "exec" => (false, libc::MS_NOEXEC),
            "sync" => (true, libc::MS_SYNCHRONOUS),
            "async" => (false, libc::MS_SYNCHRONOUS),
            "dirsync" => (true, libc::MS_DIRSYNC),
            "mand" => (true, libc::MS_MANDLOCK),
            "nomand" => (false, libc::MS_MANDLOCK),
            "noatime" => (true, libc::MS_NOATIME),
            "atime" => (false, libc::MS_NOATIME),
            "nodiratime" => (true, libc::MS_NODIRATIME),
            "diratime" => (false, libc::MS_NODIRATIME),
            "relatime" => (true, libc::MS_RELATIME),
            "norelatime" => (false, libc::MS_RELATIME),
            "strictatime" => (true, libc::MS_STRICTATIME),
            "nostrictatime" => (false, libc::MS_STRICTATIME),
            "lazytime" => (true, libc::MS_LAZYTIME),
            "nolazytime" => (false, libc::MS_LAZYTIME),
            "silent" => (true, libc::MS_SILENT),
            "loud" => (false, libc::MS_SILENT),
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                continue;
            }
            "remount" => return Err("`remount` is not a valid option for a new mount".into()),
            "tmpcopyup" | "idmap" | "ridmap" | "copy-symlink" => {
                return Err(format!("option {opt:?} is not supported"));
            }
            other => {
                if let Some(p) = propagation_flag(other) {
                    o.propagation.push(p);
                } else if other.is_empty() || other.contains(',') || other.contains('\0') {
                    return Err(format!("malformed option {other:?}"));
                } else if !other.starts_with("X-") {
                    o.data.push(other.to_string());
                }
                continue;
            }
        };
        if set {
            o.flags |= flag;
        } else {
            o.flags &= !flag;
        }
    }
    Ok(o)
}

/// Capability names in kernel order; the index is the capability number.
const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Number of an oci-spec capability.
pub(crate) fn cap_number(c: &oci_spec::runtime::Capability) -> Option<u32> {
    let name = serde_json::to_value(c).ok()?;
    cap_number_by_name(name.as_str()?)
}

/// Number of a capability given as `CAP_X` or `X` (any case).
pub fn cap_number_by_name(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    CAP_NAMES.iter().position(|n| *n == full).map(|i| i as u32)
}

fn cap_mask(set: &Option<oci_spec::runtime::Capabilities>, last_cap: u32) -> u64 {
    let mut m = 0u64;
    for c in set.iter().flatten() {
        if let Some(n) = cap_number(c).filter(|n| *n <= last_cap) {
            m |= 1 << n;
        }
    }
    m
}

fn rlimit_resource(t: oci_spec::runtime::PosixRlimitType) -> Option<libc::c_int> {
    use oci_spec::runtime::PosixRlimitType as T;
    Some(match t {
        T::RlimitCpu => libc::RLIMIT_CPU,
        T::RlimitFsize => libc::RLIMIT_FSIZE,
        T::RlimitData => libc::RLIMIT_DATA,
        T::RlimitStack => libc::RLIMIT_STACK,
        T::RlimitCore => libc::RLIMIT_CORE,
        T::RlimitRss => libc::RLIMIT_RSS,
        T::RlimitNproc => libc::RLIMIT_NPROC,
        T::RlimitNofile => libc::RLIMIT_NOFILE,
        T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        T::RlimitAs => libc::RLIMIT_AS,
        T::RlimitLocks => libc::RLIMIT_LOCKS,
        T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        T::RlimitNice => libc::RLIMIT_NICE,
        T::RlimitRtprio => libc::RLIMIT_RTPRIO,
        T::RlimitRttime => libc::RLIMIT_RTTIME,
        #[allow(unreachable_patterns)]
        _ => return None,
    } as libc::c_int)
}

fn cstring(s: &str, field: &str) -> Result<CString> {
    CString::new(s).map_err(|_| invalid(field, "contains a NUL byte"))
}

fn cstrings(v: &[String], field: &str) -> Result<Vec<CString>> {
    v.iter().map(|s| cstring(s, field)).collect()
}

/// Reads the highest capability number the running kernel knows.
pub(crate) fn last_cap(proc_root: &Path) -> u32 {
    std::fs::read_to_string(proc_root.join("sys/kernel/cap_last_cap"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Builds the process part of a plan (shared by create and exec).
pub(crate) fn process_plan(p: &Process, last_cap: u32, field: &str) -> Result<ProcessPlan> {
    let args = cstrings(p.args().as_deref().unwrap_or(&[]), &format!("{field}.args"))?;
    let env_strings = p.env().clone().unwrap_or_default();
    let env = cstrings(&env_strings, &format!("{field}.env"))?;
    let arg0 = p
        .args()
        .as_ref()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or_default();
    let path_dirs = if arg0.contains('/') {
        Vec::new()
    } else {
        let path = env_strings
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| cstring(&format!("{d}/{arg0}"), &format!("{field}.env.PATH")))
            .collect::<Result<Vec<_>>>()?
    };
    let rlimits = p
        .rlimits()
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let resource = rlimit_resource(r.typ())
                .ok_or_else(|| invalid(format!("{field}.rlimits[{i}].type"), "unknown rlimit"))?;
            let name = serde_json::to_value(r.typ())
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{:?}", r.typ()));
            Ok(RlimitPlan {
                resource,
                soft: r.soft(),
                hard: r.hard(),
                name,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let caps = p.capabilities().as_ref().map(|c| CapSets {
        bounding: cap_mask(c.bounding(), last_cap),
        effective: cap_mask(c.effective(), last_cap),
        permitted: cap_mask(c.permitted(), last_cap),
        inheritable: cap_mask(c.inheritable(), last_cap),
        ambient: cap_mask(c.ambient(), last_cap),
    });
    let user = p.user();
    Ok(ProcessPlan {
        args,
        env,
        path_dirs,
        cwd: cstring(&p.cwd().to_string_lossy(), &format!("{field}.cwd"))?,
        uid: user.uid(),
        gid: user.gid(),
        groups: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask().map(|u| u as libc::mode_t),
        rlimits,
        no_new_privs: p.no_new_privileges().unwrap_or(false),
        oom_score_adj: p
            .oom_score_adj()
            .map(|v| cstring(&v.to_string(), &format!("{field}.oomScoreAdj")))
            .transpose()?,
        caps,
        terminal: p.terminal().unwrap_or(false),
        console_size: p
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16)),
        personality: None,
        io_priority: p.io_priority().as_ref().map(|io| {
            use oci_spec::runtime::IOPriorityClass as C;
            let class = match io.class() {
                C::IoprioClassRt => 1,
                C::IoprioClassBe => 2,
                C::IoprioClassIdle => 3,
            };
            (class << 13) | io.priority() as libc::c_int
        }),
        scheduler: p.scheduler().as_ref().map(sched_plan),
        apparmor: p
            .apparmor_profile()
            .as_deref()
            .filter(|a| !a.is_empty())
            .map(|a| cstring(&format!("exec {a}"), &format!("{field}.apparmorProfile")))
            .transpose()?,
    })
}

fn hook_plans(hooks: Option<&Vec<oci_spec::runtime::Hook>>, field: &str) -> Result<Vec<HookPlan>> {
    hooks
        .map(|v| v.as_slice())
        .unwrap_or(&[])
        .iter()
        .map(|h| {
            let path = cstring(&h.path().to_string_lossy(), field)?;
            let mut args = cstrings(h.args().as_deref().unwrap_or(&[]), field)?;
            if args.is_empty() {
                args.push(path.clone());
            }
            Ok(HookPlan {
                path,
                args,
                env: cstrings(h.env().as_deref().unwrap_or(&[]), field)?,
                timeout_ms: h.timeout().map(|t| t * 1000).unwrap_or(i64::MAX / 4),
            })
        })
        .collect()
}

/// Reads this process's v1 cgroup dirs on a hybrid host: `(dir name, host path)`
/// plus symlinks for co-mounted controllers (`cpu` → `cpu,cpuacct`).
/// Pairs of C strings: (name, target).
type CPairs = Vec<(CString, CString)>;

fn own_v1_cgroups(proc_root: &Path) -> (CPairs, CPairs) {
    let mut dirs = Vec::new();
    let mut links = Vec::new();
    let Ok(text) = std::fs::read_to_string(proc_root.join("self/cgroup")) else {
        return (dirs, links);
    };
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let name = if ctrls.is_empty() {
            "unified".to_string()
        } else {
            ctrls.strip_prefix("name=").unwrap_or(ctrls).to_string()
        };
        let host = format!("/sys/fs/cgroup/{name}{path}");
        if !Path::new(&host).is_dir() {
            continue;
        }
        let (Ok(n), Ok(h)) = (CString::new(name.clone()), CString::new(host)) else {
            continue;
        };
        if ctrls.contains(',') {
            for c in ctrls.split(',') {
                if let (Ok(l), Ok(t)) = (CString::new(c), CString::new(name.clone())) {
                    links.push((l, t));
                }
            }
        }
        dirs.push((n, h));
    }
    (dirs, links)
}

fn is_cgroup2_host() -> bool {
    let Ok(c) = CString::new("/sys/fs/cgroup") else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path living across the call; `st` is writable statfs storage.
    let r = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) };
    // SAFETY: statfs returned 0, so it filled the struct.
    r == 0 && unsafe { st.assume_init() }.f_type == libc::CGROUP2_SUPER_MAGIC
}

fn mount_plan(m: &Mount, i: usize, bundle_dir: &Path, proc_root: &Path) -> Result<MountPlan> {
    let field = format!("mounts[{i}]");
    let opts = parse_mount_options(m.options().as_deref().unwrap_or(&[]))
        .map_err(|r| invalid(format!("{field}.options"), r))?;
    let dest = RelPath::new(m.destination(), &format!("{field}.destination"))?;
    let typ = m.typ().as_deref().unwrap_or("none");
    let data = if opts.data.is_empty() {
        None
    } else {
        Some(cstring(&opts.data.join(","), &format!("{field}.options"))?)
    };
    let kind = if opts.bind || typ == "bind" {
        let src = m
            .source()
            .as_deref()
            .ok_or_else(|| invalid(format!("{field}.source"), "missing"))?;
        let src = if src.is_absolute() {
            src.to_path_buf()
        } else {
            bundle_dir.join(src)
        };
        let meta = std::fs::metadata(&src)
            .map_err(|e| invalid(format!("{field}.source"), format!("{}: {e}", src.display())))?;
        MountKind::Bind {
            source: cstring(&src.to_string_lossy(), &format!("{field}.source"))?,
            recursive: opts.recursive,
            source_is_dir: meta.is_dir(),
        }
    } else if typ == "cgroup" || typ == "cgroup2" {
        if typ == "cgroup2" || is_cgroup2_host() {
            MountKind::Fs {
                fstype: CString::from(c"cgroup2"),
                source: CString::from(c"cgroup"),
            }
        } else {
            let (dirs, links) = own_v1_cgroups(proc_root);
            MountKind::CgroupV1 { dirs, links }
        }
    } else {
        let source = m
            .source()
            .as_deref()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| typ.to_string());
        MountKind::Fs {
            fstype: cstring(typ, &format!("{field}.type"))?,
            source: cstring(&source, &format!("{field}.source"))?,
        }
    };
    Ok(MountPlan {
        dest,
        kind,
        flags: opts.flags,
        data,
        propagation: opts.propagation,
    })
}

fn default_devices(user_ns: bool) -> Vec<DevicePlan> {
    let dev = RelPath {
        full: CString::from(c"dev"),
        prefixes: vec![CString::from(c"dev")],
        names: vec![CString::from(c"dev")],
        display: "/dev".into(),
    };
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .filter_map(|(n, maj, min)| {
        Some(DevicePlan {
            parent: dev.clone(),
            name: CString::new(n).ok()?,
            mode: libc::S_IFCHR | 0o666,
            rdev: libc::makedev(maj, min),
            uid: 0,
            gid: 0,
            host: if user_ns {
                CString::new(format!("/dev/{n}")).ok()?
            } else {
                CString::default()
            },
        })
    })
    .collect()
}

/// Builds the plan for a container's init from a validated bundle.
pub(crate) fn build(bundle: &Bundle, opts: &PlanOptions, proc_root: &Path) -> Result<InitPlan> {
    let spec: &Spec = &bundle.spec;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| invalid("linux", "missing"))?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process", "missing"))?;
    let last_cap = last_cap(proc_root);
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let mut new_flags: libc::c_int = 0;
    let mut join = Vec::new();
    for ns in &namespaces {
        match ns.path() {
            Some(p) => join.push(JoinNs {
                path: p.clone(),
                nstype: ns_flag(ns.typ()),
            }),
            None => new_flags |= ns_flag(ns.typ()),
        }
    }
    if new_flags & libc::CLONE_NEWNS == 0 && !join.iter().any(|j| j.nstype == libc::CLONE_NEWNS) {
        return Err(invalid("linux.namespaces", "a mount namespace is required"));
    }
    join.sort_by_key(|j| j.nstype != libc::CLONE_NEWUSER);
    let joins_user = join.iter().any(|j| j.nstype == libc::CLONE_NEWUSER);
    let joins_pid = join.iter().any(|j| j.nstype == libc::CLONE_NEWPID);
    let new_user = new_flags & libc::CLONE_NEWUSER != 0;
    let new_time = new_flags & libc::CLONE_NEWTIME != 0;
    let two_stage = joins_pid || joins_user || new_time || !join.is_empty();
    let (clone_flags, unshare_flags) = if two_stage {
        (0u64, new_flags)
    } else {
        (new_flags as u64, 0)
    };

    let fmt_map = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.iter()
            .flatten()
            .map(|e| format!("{} {} {}\n", e.container_id(), e.host_id(), e.size()))
            .collect::<String>()
    };
    let time_offsets = match linux.time_offsets() {
        Some(o) if !o.is_empty() => {
            let mut s = String::new();
            for (k, v) in o {
                s.push_str(&format!(
                    "{k} {} {}\n",
                    v.secs().unwrap_or(0),
                    v.nanosecs().unwrap_or(0)
                ));
            }
            Some(cstring(&s, "linux.timeOffsets")?)
        }
        _ => None,
    };

    let mut mounts = Vec::new();
    for (i, m) in spec.mounts().as_deref().unwrap_or(&[]).iter().enumerate() {
        mounts.push(mount_plan(m, i, &bundle.dir, proc_root)?);
    }
    let dev_is_bind = mounts
        .iter()
        .any(|m| m.dest.display == "/dev" && matches!(m.kind, MountKind::Bind { .. }));
    let mut devices = if dev_is_bind {
        Vec::new()
    } else {
        default_devices(new_user)
    };
    for (i, d) in linux.devices().as_deref().unwrap_or(&[]).iter().enumerate() {
        let field = format!("linux.devices[{i}]");
        let rel = RelPath::new(d.path(), &format!("{field}.path"))?;
        let (parent, name) = rel
            .split_last()
            .ok_or_else(|| invalid(format!("{field}.path"), "empty"))?;
        use oci_spec::runtime::LinuxDeviceType as D;
        let kind = match d.typ() {
            D::C | D::U => libc::S_IFCHR,
            D::B => libc::S_IFBLK,
            D::P => libc::S_IFIFO,
            #[allow(unreachable_patterns)]
            _ => return Err(invalid(format!("{field}.type"), "unsupported device type")),
        };
        let (Ok(maj), Ok(min)) = (u32::try_from(d.major()), u32::try_from(d.minor())) else {
            return Err(invalid(format!("{field}.major"), "out of range"));
        };
        devices.retain(|x| !(x.parent == parent && x.name == name));
        devices.push(DevicePlan {
            parent,
            name,
            mode: kind | (d.file_mode().unwrap_or(0o666) & 0o7777) as libc::mode_t,
            rdev: libc::makedev(maj, min),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
            host: cstring(&d.path().to_string_lossy(), &format!("{field}.path"))?,
        });
    }
    let rel_list = |v: &Option<Vec<String>>, field: &str| -> Result<Vec<RelPath>> {
        v.as_deref()
            .unwrap_or(&[])
            .iter()
            .enumerate()
            .map(|(i, p)| RelPath::new(Path::new(p), &format!("{field}[{i}]")))
            .collect()
    };
    let rootfs = Some(RootfsPlan {
        rootfs: cstring(&bundle.rootfs.to_string_lossy(), "root.path")?,
        propagation: linux
            .rootfs_propagation()
            .as_deref()
            .and_then(propagation_flag)
            .unwrap_or(libc::MS_SLAVE | libc::MS_REC),
        mounts,
        populate_dev: !dev_is_bind,
        devices,
        masked: rel_list(linux.masked_paths(), "linux.maskedPaths")?,
        readonly: rel_list(linux.readonly_paths(), "linux.readonlyPaths")?,
        readonly_root: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        pivot: !opts.no_pivot,
        cwd: RelPath::new(process.cwd(), "process.cwd")?,
    });
    let mut sysctl = Vec::new();
    if let Some(s) = linux.sysctl() {
        let mut keys: Vec<_> = s.iter().collect();
        keys.sort();
        for (k, v) in keys {
            let path = format!("sys/{}", k.replace('.', "/"));
            sysctl.push((
                cstring(&path, "linux.sysctl")?,
                cstring(v, &format!("linux.sysctl.{k}"))?,
            ));
        }
    }
    let hooks = spec.hooks().as_ref();
    let runtime_hooks = hooks.is_some_and(|h| {
        h.prestart().as_ref().is_some_and(|v| !v.is_empty())
            || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
    });
    let mut process = process_plan(process, last_cap, "process")?;
    if let Some(p) = linux.personality() {
        use oci_spec::runtime::LinuxPersonalityDomain as P;
        process.personality = Some(match p.domain() {
            P::PerLinux => 0,
            P::PerLinux32 => 0x0008,
        });
    }
    Ok(InitPlan {
        clone_flags,
        unshare_flags,
        join,
        two_stage,
        new_user,
        uid_map: fmt_map(linux.uid_mappings()),
        gid_map: fmt_map(linux.gid_mappings()),
        time_offsets,
        rootfs,
        hostname: spec
            .hostname()
            .as_deref()
            .map(|h| cstring(h, "hostname"))
            .transpose()?,
        domainname: spec
            .domainname()
            .as_deref()
            .map(|h| cstring(h, "domainname"))
            .transpose()?,
        sysctl,
        process,
        runtime_hooks,
        create_container_hooks: hook_plans(
            hooks.and_then(|h| h.create_container().as_ref()),
            "hooks.createContainer",
        )?,
        start_container_hooks: hook_plans(
            hooks.and_then(|h| h.start_container().as_ref()),
            "hooks.startContainer",
        )?,
        last_cap,
        session_keyring: opts
            .session_keyring
            .as_deref()
            .map(|k| cstring(k, "id"))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relpath_splits_and_refuses_dotdot() {
        let r = RelPath::new(Path::new("/proc/sys/kernel"), "f").ok();
        let r = r
            .as_ref()
            .map(|r| (r.full.clone(), r.prefixes.len(), r.names.len()));
        assert_eq!(r, Some((CString::from(c"proc/sys/kernel"), 3, 3)));
        assert!(RelPath::new(Path::new("/a/../b"), "f").is_err());
        let root = RelPath::new(Path::new("/"), "f").ok().map(|r| r.full);
        assert_eq!(root, Some(CString::from(c".")));
    }

    #[test]
    fn mount_options() {
        let o = parse_mount_options(&[
            "nosuid".into(),
            "ro".into(),
            "rbind".into(),
            "rslave".into(),
            "mode=755".into(),
        ]);
        let o = o.ok().unwrap_or_default();
        assert!(o.bind && o.recursive);
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_RDONLY);
        assert_eq!(o.propagation, vec![libc::MS_SLAVE | libc::MS_REC]);
        assert_eq!(o.data, vec!["mode=755".to_string()]);
        assert!(parse_mount_options(&["tmpcopyup".into()]).is_err());
        assert!(parse_mount_options(&["a,b".into()]).is_err());
        let rw = parse_mount_options(&["ro".into(), "rw".into()])
            .ok()
            .unwrap_or_default();
        assert_eq!(rw.flags, 0);
    }

    #[test]
    fn caps_by_name() {
        assert_eq!(cap_number_by_name("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(cap_number_by_name("net_raw"), Some(13));
        assert_eq!(cap_number_by_name("CAP_NOPE"), None);
        assert_eq!(cap_number(&oci_spec::runtime::Capability::Kill), Some(5));
    }
}
