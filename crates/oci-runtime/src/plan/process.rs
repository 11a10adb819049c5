//! The process part of the plan: arguments, credentials, capabilities, rlimits and scheduling.

use std::ffi::CString;
use std::path::Path;

use oci_spec::runtime::Process;

use super::{cstring, cstrings};
use crate::error::{Result, invalid};

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
    /// The compiled `linux.seccomp` filter, installed by the child.
    pub seccomp: Option<crate::seccomp::Filter>,
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

/// Number of an oci-spec capability.
pub(crate) fn cap_number(c: &oci_spec::runtime::Capability) -> Option<u32> {
    let name = serde_json::to_value(c).ok()?;
    cap_number_by_name(name.as_str()?)
}

/// Every capability this runtime knows, as `CAP_X`, in kernel order (the index
/// is the capability number): what `features` reports.
pub fn known_capabilities() -> Vec<String> {
    let mut all: Vec<caps::Capability> = caps::all().into_iter().collect();
    all.sort_by_key(|c| c.index());
    all.iter().map(|c| c.to_string()).collect()
}

/// Number of a capability given as `CAP_X` or `X` (any case).
pub fn cap_number_by_name(name: &str) -> Option<u32> {
    caps::to_canonical(name)
        .parse::<caps::Capability>()
        .ok()
        .map(|c| u32::from(c.index()))
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

/// The highest capability number both the running kernel (`<proc_root>/sys/kernel/cap_last_cap`)
/// and this runtime know. Unreadable, it is the highest this runtime knows: the
/// child drops every bounding capability the kernel has either way.
pub(crate) fn last_cap(proc_root: &Path) -> u32 {
    let known = || caps::all().iter().map(|c| c.index()).max().unwrap_or(0);
    let supported = caps::runtime::procfs_all_supported(Some(proc_root.to_path_buf()))
        .ok()
        .and_then(|s| s.iter().map(|c| c.index()).max());
    u32::from(supported.unwrap_or_else(known))
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
        seccomp: None,
    })
}

/// As runc: a process whose env has no `HOME` gets its user's home from the
/// container's `/etc/passwd` (read inside `root`, never through a symlink out of
/// it), or `/` when the user has no entry there.
pub(crate) fn add_default_home(p: &mut ProcessPlan, root: &Path) {
    if p.env.iter().any(|e| e.as_bytes().starts_with(b"HOME=")) {
        return;
    }
    let home = passwd_home(root, p.uid).unwrap_or_else(|| "/".to_string());
    if let Ok(e) = CString::new(format!("HOME={home}")) {
        p.env.push(e);
    }
}

/// The home directory of `uid` in `<root>/etc/passwd`.
fn passwd_home(root: &Path, uid: u32) -> Option<String> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let fd = rustix::fs::openat2(
        &dir,
        "etc/passwd",
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()?;
    let mut text = String::new();
    use std::io::Read;
    // A passwd file is small; a huge one is not read whole.
    std::fs::File::from(fd)
        .take(1 << 20)
        .read_to_string(&mut text)
        .ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid) && !f[5].is_empty())
            .then(|| f[5].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_by_name() {
        assert_eq!(cap_number_by_name("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(cap_number_by_name("net_raw"), Some(13));
        assert_eq!(cap_number_by_name("CAP_NOPE"), None);
        assert_eq!(cap_number(&oci_spec::runtime::Capability::Kill), Some(5));
    }
}

#[cfg(test)]
mod home_tests {
    use super::*;

    #[test]
    fn home_comes_from_the_rootfs_passwd_or_is_slash() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(t.path().join("etc")).expect("mkdir");
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .expect("passwd");
        assert_eq!(passwd_home(t.path(), 1000).as_deref(), Some("/home/app"));
        assert_eq!(passwd_home(t.path(), 0).as_deref(), Some("/root"));
        assert_eq!(passwd_home(t.path(), 5), None);
        // A passwd that is a symlink out of the root is read inside it (here: missing).
        let u = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(u.path().join("etc")).expect("mkdir");
        std::os::unix::fs::symlink(t.path().join("etc/passwd"), u.path().join("etc/passwd"))
            .expect("symlink");
        assert_eq!(passwd_home(u.path(), 1000), None);
    }
}
