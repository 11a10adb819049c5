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
pub(crate) use v2::{DeviceFilter, apply_v2, attached_filters};
