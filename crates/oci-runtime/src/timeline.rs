//! Phase timestamps, for a breakdown of where a container's start time goes.
//!
//! Off unless [`enable`] is called: then every [`mark`] the library passes
//! (in the calling process, and in the container's init until it execs the
//! payload) records `CLOCK_MONOTONIC` in one page shared by both, and
//! [`marks`] reads them back in the order they happened. A mark is an atomic
//! add and a vDSO clock read, and safe between `clone` and `execve`; with the
//! timeline off it is one load.
//!
//! `mini-runtime` enables it when `MINI_RUNTIME_TIMELINE` names a file, and
//! writes the marks there when it exits; `benches/start_breakdown.py` turns
//! many runs into medians per phase.

use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

const SLOTS: usize = 100;

#[repr(C)]
struct Page {
    next: AtomicU32,
    slots: [Slot; SLOTS],
}

#[repr(C)]
struct Slot {
    nanos: AtomicU64,
    /// `&'static str` as pointer and length: the same addresses in the init,
    /// which is a copy of this process until it execs.
    name: AtomicU64,
    len: AtomicU64,
    pid: AtomicU32,
}

static PAGE: AtomicPtr<Page> = AtomicPtr::new(std::ptr::null_mut());

/// Turns the timeline on for this process and every container init it spawns
/// from now on. Calling it again is harmless.
pub fn enable() -> std::io::Result<()> {
    if !PAGE.load(Ordering::Acquire).is_null() {
        return Ok(());
    }
    let size = std::mem::size_of::<Page>();
    // SAFETY: a fresh anonymous shared mapping; zeroed memory is a valid Page
    // (atomics of zero).
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    if PAGE
        .compare_exchange(
            std::ptr::null_mut(),
            p.cast(),
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        // SAFETY: `p` was mapped above with `size` and nothing else has it.
        unsafe { libc::munmap(p, size) };
    }
    Ok(())
}

/// The monotonic clock in nanoseconds.
pub fn now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Records that `name` has just finished, if the timeline is on.
pub fn mark(name: &'static str) {
    let page = PAGE.load(Ordering::Acquire);
    if page.is_null() {
        return;
    }
    // SAFETY: a non-null PAGE points at a live mapping that is never unmapped.
    let page = unsafe { &*page };
    let i = page.next.fetch_add(1, Ordering::AcqRel) as usize;
    let Some(slot) = page.slots.get(i) else {
        return;
    };
    slot.name.store(name.as_ptr() as u64, Ordering::Relaxed);
    slot.len.store(name.len() as u64, Ordering::Relaxed);
    // SAFETY: getpid has no preconditions.
    slot.pid
        .store(unsafe { libc::getpid() } as u32, Ordering::Relaxed);
    slot.nanos.store(now(), Ordering::Release);
}

/// One recorded mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// What had just finished.
    pub name: &'static str,
    /// `CLOCK_MONOTONIC`, in nanoseconds.
    pub nanos: u64,
    /// The process that recorded it.
    pub pid: u32,
}

/// The marks recorded so far, oldest first; empty when the timeline is off.
pub fn marks() -> Vec<Mark> {
    let page = PAGE.load(Ordering::Acquire);
    if page.is_null() {
        return Vec::new();
    }
    // SAFETY: as in `mark`.
    let page = unsafe { &*page };
    let n = (page.next.load(Ordering::Acquire) as usize).min(SLOTS);
    let mut out: Vec<Mark> = page.slots[..n]
        .iter()
        .filter_map(|s| {
            let nanos = s.nanos.load(Ordering::Acquire);
            if nanos == 0 {
                return None;
            }
            let ptr = s.name.load(Ordering::Relaxed) as *const u8;
            let len = s.len.load(Ordering::Relaxed) as usize;
            // SAFETY: written by `mark` from a `&'static str` of this binary,
            // at the same address in this process.
            let bytes: &'static [u8] = unsafe { std::slice::from_raw_parts(ptr, len) };
            Some(Mark {
                name: std::str::from_utf8(bytes).unwrap_or("?"),
                nanos,
                pid: s.pid.load(Ordering::Relaxed),
            })
        })
        .collect();
    out.sort_by_key(|m| m.nanos);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_from_a_forked_child_are_seen_by_the_parent() {
        enable().unwrap();
        mark("test: before fork");
        // SAFETY: the child only marks and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            mark("test: in the child");
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        mark("test: after wait");
        let ours: Vec<_> = marks()
            .into_iter()
            .filter(|m| m.name.starts_with("test: "))
            .collect();
        let names: Vec<_> = ours.iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            [
                "test: before fork",
                "test: in the child",
                "test: after wait"
            ]
        );
        assert_eq!(ours[1].pid, pid as u32);
        assert!(ours.windows(2).all(|w| w[0].nanos <= w[1].nanos));
    }
}
