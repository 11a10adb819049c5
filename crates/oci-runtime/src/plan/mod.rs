//! The init plan: everything the container's first process will do, prepared in
//! the parent as plain data (paths as C strings, flags as numbers) so the child
//! can carry it out with raw system calls and no allocation.

use std::ffi::CString;
use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::config::Bundle;
use crate::error::{Result, invalid};

mod process;
mod rootfs;

pub(crate) use process::{ProcessPlan, add_default_home, cap_number, last_cap, process_plan};
pub use process::{cap_number_by_name, known_capabilities};
pub(crate) use rootfs::{
    DevicePlan, EnterRoot, MountKind, MountPlan, RelPath, RootfsPlan, parse_mount_options,
    propagation_flag,
};
use rootfs::{default_devices, mount_plan};

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
    /// `CLONE_NEW*` flags of the namespaces joined at once through a pidfd (exec),
    /// before `join`; 0 for none.
    pub join_pidfd_flags: libc::c_int,
    /// Whether a second `clone` is needed so the payload lands in a joined or unshared pid/time namespace.
    pub two_stage: bool,
    /// Whether a new user namespace is created (the parent writes the id maps).
    pub new_user: bool,
    /// Whether devices are bind-mounted from the host rather than made with
    /// mknod: in a user namespace, new or joined, mknod is refused.
    pub bind_devices: bool,
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
    /// The container's v1 cgroup dirs by hierarchy, for a `cgroup` mount (`None`:
    /// it stays in the caller's cgroups, which that mount then shows).
    pub cgroup_hierarchies: Option<std::collections::BTreeMap<String, std::path::PathBuf>>,
    /// Where compiled seccomp programs are kept (`None`: compile each time).
    pub seccomp_cache: Option<std::path::PathBuf>,
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

fn cstring(s: &str, field: &str) -> Result<CString> {
    CString::new(s).map_err(|_| invalid(field, "contains a NUL byte"))
}

fn cstrings(v: &[String], field: &str) -> Result<Vec<CString>> {
    v.iter().map(|s| cstring(s, field)).collect()
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
                // Saturating: a timeout of i64::MAX seconds means "never".
                timeout_ms: h
                    .timeout()
                    .map(|t| t.saturating_mul(1000))
                    .unwrap_or(i64::MAX),
            })
        })
        .collect()
}

/// Compiles `linux.seccomp`, if any, for the container's processes; with a
/// cache dir, a profile compiled before is loaded from there.
pub(crate) fn seccomp_filter(
    linux: &oci_spec::runtime::Linux,
    cache: Option<&Path>,
) -> Result<Option<crate::seccomp::Filter>> {
    let Some(profile) = linux.seccomp() else {
        return Ok(None);
    };
    Ok(Some(match cache {
        Some(dir) => crate::seccomp::compile_cached(profile, dir)?,
        None => crate::seccomp::Filter::compile(profile)?,
    }))
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
    let shares_mount_ns =
        new_flags & libc::CLONE_NEWNS == 0 && !join.iter().any(|j| j.nstype == libc::CLONE_NEWNS);
    join.sort_by_key(|j| j.nstype != libc::CLONE_NEWUSER);
    let joins_user = join.iter().any(|j| j.nstype == libc::CLONE_NEWUSER);
    let joins_pid = join.iter().any(|j| j.nstype == libc::CLONE_NEWPID);
    let new_user = new_flags & libc::CLONE_NEWUSER != 0;
    let new_time = new_flags & libc::CLONE_NEWTIME != 0;
    let two_stage = joins_pid || joins_user || new_time || !join.is_empty();
    // A new cgroup namespace is unshared by the child after it has joined its
    // v1 cgroups, so that it is rooted in them rather than in the caller's.
    let (clone_flags, unshare_flags) = if two_stage {
        (0u64, new_flags)
    } else {
        (
            (new_flags & !libc::CLONE_NEWCGROUP) as u64,
            new_flags & libc::CLONE_NEWCGROUP,
        )
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

    // In its own cgroup namespace a container can mount v1 hierarchies afresh,
    // rooted at its cgroups; not from inside a user namespace.
    let fresh_cgroupfs = new_flags & libc::CLONE_NEWCGROUP != 0 && !new_user && !joins_user;
    let mut mounts = Vec::new();
    for (i, m) in spec.mounts().as_deref().unwrap_or(&[]).iter().enumerate() {
        mounts.push(mount_plan(
            m,
            i,
            &bundle.dir,
            proc_root,
            opts.cgroup_hierarchies.as_ref(),
            fresh_cgroupfs,
        )?);
    }
    let dev_is_bind = mounts
        .iter()
        .any(|m| m.dest.display == "/dev" && matches!(m.kind, MountKind::Bind { .. }));
    let mut devices = if dev_is_bind {
        Vec::new()
    } else {
        default_devices(new_user || joins_user)
    };
    // A bind-mounted /dev is the host's (or the caller's): as runc does, create
    // nothing in it, or a config's device would replace the host's node.
    let config_devices = if dev_is_bind {
        &[][..]
    } else {
        linux.devices().as_deref().unwrap_or(&[])
    };
    for (i, d) in config_devices.iter().enumerate() {
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
        enter: if shares_mount_ns {
            EnterRoot::Chroot
        } else if opts.no_pivot {
            EnterRoot::MoveChroot
        } else {
            EnterRoot::Pivot
        },
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
    process.seccomp = seccomp_filter(linux, opts.seccomp_cache.as_deref())?;
    process::add_default_home(&mut process, &bundle.rootfs);
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
        join_pidfd_flags: 0,
        two_stage,
        new_user,
        bind_devices: new_user || joins_user,
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
mod tests;
