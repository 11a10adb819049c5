//! cgroup v2: the device filter loaded with bpf(2) and attached to the cgroup.
//!
//! Neither nix nor rustix wraps bpf(2), so this file issues it through libc, with
//! `#[repr(C)]` prefixes of `union bpf_attr` for the five commands it needs.

use std::ffi::{CStr, c_long};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use oci_spec::runtime::LinuxDeviceCgroup;

use super::bpf::{self, Insn};
use super::emulator::State;
use crate::{Error, Result};

// bpf(2) commands.
const BPF_PROG_LOAD: u32 = 5;
const BPF_PROG_ATTACH: u32 = 8;
const BPF_PROG_DETACH: u32 = 9;
const BPF_PROG_GET_FD_BY_ID: u32 = 13;
const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
const BPF_PROG_QUERY: u32 = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Other programs may stay attached beside ours (an update briefly runs both).
const BPF_F_ALLOW_MULTI: u32 = 2;
/// The kernel's limit of programs per attach type on one cgroup.
const BPF_CGROUP_MAX_PROGS: usize = 64;

/// Only the stated program type's helpers are checked against the license, and
/// the filter calls none; this is the crate's own.
const LICENSE: &CStr = c"Apache-2.0";
/// Shown by `bpftool prog`.
const PROG_NAME: &[u8] = b"oci_devices";
/// Room for the verifier's log when a load fails.
const LOG_SIZE: usize = 1 << 16;

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Debug, Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_PROG_ATTACH` and `BPF_PROG_DETACH`, up to `replace_bpf_fd`.
#[repr(C)]
#[derive(Debug, Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// `union bpf_attr` for `BPF_PROG_QUERY`, up to `prog_cnt`.
#[repr(C)]
#[derive(Debug, Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// `union bpf_attr` for `BPF_PROG_GET_FD_BY_ID`.
#[repr(C)]
#[derive(Debug, Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `union bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
#[derive(Debug, Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The head of `struct bpf_prog_info`: all this file reads of it.
#[repr(C)]
#[derive(Debug, Default)]
struct ProgInfoHead {
    _prog_type: u32,
    id: u32,
}

/// The attr structs above: plain `#[repr(C)]` integers, valid for the kernel to
/// read and overwrite. Private, so no other type reaches [`bpf`].
trait Attr {}
impl Attr for ProgLoadAttr {}
impl Attr for AttachAttr {}
impl Attr for QueryAttr {}
impl Attr for GetFdByIdAttr {}
impl Attr for InfoAttr {}

/// bpf(2) with `attr` as `union bpf_attr` of its own size (the kernel zero-fills the rest).
fn bpf<A: Attr>(cmd: u32, attr: &mut A) -> io::Result<c_long> {
    let size = std::mem::size_of::<A>();
    // SAFETY: `attr` is an exclusively borrowed, live `#[repr(C)]` prefix of
    // `union bpf_attr` for `cmd` (the Attr trait admits only those), and `size`
    // is its size, so the kernel reads and writes only inside it. Addresses it
    // holds point to buffers the callers keep alive across this call.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, size) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of the new fd a bpf(2) command returned.
fn new_fd(ret: c_long) -> io::Result<OwnedFd> {
    let fd = i32::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just created `fd` for this process (O_CLOEXEC, as bpf(2)
    // makes all its fds) and nothing else has seen it, so we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    // A live fd is never negative.
    fd.as_raw_fd() as u32
}

fn sys(operation: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Sys { operation, source }
}

/// A device filter this process loaded and attached.
///
/// The cgroup keeps the program attached after this handle (and its fd) is
/// dropped; keep it to detach that very program, or call [`apply_v2`] again,
/// which replaces whatever device filters the cgroup has.
#[derive(Debug)]
pub(crate) struct DeviceFilter {
    #[cfg_attr(not(test), allow(dead_code))]
    prog: OwnedFd,
    #[cfg_attr(not(test), allow(dead_code))]
    id: u32,
}

#[cfg(test)]
impl DeviceFilter {
    /// The kernel's id of the program, as [`attached_filters`] and `bpftool` show it.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// Detaches the program from `cgroup`, leaving the cgroup without it.
    pub(crate) fn detach(self, cgroup: BorrowedFd<'_>) -> Result<()> {
        detach(cgroup, self.prog.as_fd())
            .map_err(sys("detaching the device filter (BPF_PROG_DETACH)"))
    }
}

/// Filters the devices of the v2 cgroup open at `cgroup` (a directory fd) to the
/// effective state of `rules`.
///
/// The new program is attached before the ones the cgroup had are detached, so
/// there is never a moment without a filter (both together allow only what
/// both allow). As runc does, every device filter found on the cgroup is
/// replaced, not only one this process attached.
pub(crate) fn apply_v2(
    cgroup: BorrowedFd<'_>,
    rules: &[LinuxDeviceCgroup],
) -> Result<DeviceFilter> {
    let state = State::from_rules(rules)?;
    let prog =
        load(&bpf::program(&state)).map_err(sys("loading the device filter (BPF_PROG_LOAD)"))?;
    let id = prog_id(prog.as_fd()).map_err(sys("reading the device filter's id"))?;
    let old = open_attached(cgroup)?;
    attach(cgroup, prog.as_fd()).map_err(sys("attaching the device filter (BPF_PROG_ATTACH)"))?;
    for old in &old {
        match detach(cgroup, old.as_fd()) {
            // Detached by someone else meanwhile: gone is what we wanted.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            r => r.map_err(sys(
                "detaching the replaced device filter (BPF_PROG_DETACH)",
            ))?,
        }
    }
    Ok(DeviceFilter { prog, id })
}

/// The ids of the device filters attached to the cgroup itself (not its parents').
pub(crate) fn attached_filters(cgroup: BorrowedFd<'_>) -> Result<Vec<u32>> {
    query(cgroup).map_err(sys("listing device filters (BPF_PROG_QUERY)"))
}

fn open_attached(cgroup: BorrowedFd<'_>) -> Result<Vec<OwnedFd>> {
    attached_filters(cgroup)?
        .into_iter()
        .map(|id| {
            prog_fd_by_id(id).map_err(sys(
                "opening an attached device filter (BPF_PROG_GET_FD_BY_ID)",
            ))
        })
        .collect()
}

/// Loads the program; if the kernel refuses it, loads it again to get the
/// verifier's reason into the error.
fn load(insns: &[Insn]) -> io::Result<OwnedFd> {
    match load_with_log(insns, None) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EACCES)) => {
            let mut log = vec![0u8; LOG_SIZE];
            let Err(again) = load_with_log(insns, Some(&mut log)) else {
                return Err(e);
            };
            let reason = verifier_reason(&log);
            Err(io::Error::new(
                again.kind(),
                format!("{again}; verifier: {reason}"),
            ))
        }
        r => r,
    }
}

/// The verifier's last lines, where it says why; its log can run to thousands of lines.
fn verifier_reason(log: &[u8]) -> String {
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join("; ")
}

fn load_with_log(insns: &[Insn], log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let insn_cnt =
        u32::try_from(insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    attr.prog_name[..PROG_NAME.len()].copy_from_slice(PROG_NAME);
    if let Some(log) = log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(log.len()).unwrap_or(u32::MAX);
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    new_fd(bpf(BPF_PROG_LOAD, &mut attr)?)
}

fn attach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..AttachAttr::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

fn detach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        ..AttachAttr::default()
    };
    bpf(BPF_PROG_DETACH, &mut attr).map(drop)
}

fn query(cgroup: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; BPF_CGROUP_MAX_PROGS];
    let mut attr = QueryAttr {
        target_fd: fd_u32(cgroup),
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: BPF_CGROUP_MAX_PROGS as u32,
        ..QueryAttr::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        ..GetFdByIdAttr::default()
    };
    new_fd(bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?)
}

fn prog_id(prog: BorrowedFd<'_>) -> io::Result<u32> {
    let mut info = ProgInfoHead::default();
    let mut attr = InfoAttr {
        bpf_fd: fd_u32(prog),
        info_len: std::mem::size_of::<ProgInfoHead>() as u32,
        info: &mut info as *mut ProgInfoHead as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_the_uapi() {
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::size_of::<AttachAttr>(), 20);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_ids), 16);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_cnt), 24);
        assert_eq!(std::mem::size_of::<GetFdByIdAttr>(), 12);
        assert_eq!(std::mem::offset_of!(InfoAttr, info), 8);
        assert!(PROG_NAME.len() < 16, "BPF_OBJ_NAME_LEN holds the NUL");
    }

    #[test]
    fn a_refused_program_carries_the_verifiers_reason() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "needs root under CI"
            );
            eprintln!("skipping a_refused_program_carries_the_verifiers_reason: needs root");
            return;
        }
        // `exit` with r0 never set.
        let exit_only = bpf::program(&State::allow_all()).split_off(7);
        let err = load(&exit_only).expect_err("refused");
        assert_eq!(
            err.raw_os_error(),
            None,
            "the message replaces the bare errno"
        );
        assert!(err.to_string().contains("verifier: "), "{err}");
        assert!(err.to_string().contains("R0"), "{err}");
        // The real program loads.
        load(&bpf::program(&State::deny_all())).expect("load");
    }
}
