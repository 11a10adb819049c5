//! Device access rules (`linux.resources.devices`): v1 files and the v2 eBPF program.
//!
//! The rules are ordered allow and deny edits. As runc does, an emulator of the
//! v1 kernel controller first reduces them to an effective state: a default
//! (allow all or deny all) and exceptions to it; then each backend applies only
//! that state, so a spec means the same on v1 and v2:
//! - v1 ([`apply_v1`]) writes the transition from the cgroup's current list to
//!   `devices.deny` and `devices.allow`, and reads `devices.list` back;
//! - v2 ([`apply_v2`]) compiles the state to a `BPF_PROG_TYPE_CGROUP_DEVICE`
//!   program, attaches it to the cgroup and detaches the filters it replaces.
//!
//! Rules are taken as given: the devices a runtime always allows (`/dev/null`,
//! the container's `linux.devices`, …) are the caller's to append.

mod bpf;
mod emulator;
mod rule;
#[cfg(test)]
mod testutil;
mod v1;
mod v2;

pub(crate) use v1::apply_v1;
pub(crate) use v2::apply_v2;
#[cfg(test)]
pub(crate) use v2::{DeviceFilter, attached_filters};

/// The device rules a container's cgroup gets, as runc builds them: the
/// config's `linux.resources.devices`, then the devices every container may use
/// (`/dev/null`, `/dev/zero`, …, ptys, `mknod` of any node), then `rwm` for each
/// node in `linux.devices`. Rules apply in order, from deny-all.
pub(crate) fn container_rules(
    linux: Option<&oci_spec::runtime::Linux>,
) -> Vec<oci_spec::runtime::LinuxDeviceCgroup> {
    use oci_spec::runtime::LinuxDeviceCgroup;
    use oci_spec::runtime::LinuxDeviceType as T;
    let allow = |typ: T, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    let mut out: Vec<LinuxDeviceCgroup> = linux
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    let created = linux.and_then(|l| l.devices().as_ref());
    let created_path =
        |p: &str| created.is_some_and(|d| d.iter().any(|d| d.path().as_os_str() == p));
    out.push(allow(T::C, None, None, "m"));
    out.push(allow(T::B, None, None, "m"));
    for (path, major, minor) in [
        ("/dev/null", 1, 3),
        ("/dev/random", 1, 8),
        ("/dev/full", 1, 7),
        ("/dev/tty", 5, 0),
        ("/dev/zero", 1, 5),
        ("/dev/urandom", 1, 9),
    ] {
        // A config device of the same path takes its place (it is allowed below).
        if !created_path(path) {
            out.push(allow(T::C, Some(major), Some(minor), "rwm"));
        }
    }
    // /dev/pts/*, /dev/ptmx, and /dev/net/tun, which runc has always allowed.
    out.push(allow(T::C, Some(136), None, "rwm"));
    out.push(allow(T::C, Some(5), Some(2), "rwm"));
    out.push(allow(T::C, Some(10), Some(200), "rwm"));
    for d in created.into_iter().flatten() {
        let typ = match d.typ() {
            T::B => T::B,
            _ => T::C,
        };
        if d.typ() == T::P {
            continue;
        }
        out.push(allow(typ, Some(d.major()), Some(d.minor()), "rwm"));
    }
    out
}

#[cfg(test)]
mod kernel_tests;
