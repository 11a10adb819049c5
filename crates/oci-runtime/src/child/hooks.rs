//! Container-side hooks (createContainer, startContainer), run from inside the container.

use libc::{c_char, c_ulong};

use super::Step;
use crate::plan::HookPlan;
use crate::sys::{self, Errno};

/// Runs one container-side hook with the state JSON on its stdin and a timeout.
/// A hook that fails is reported as [`Step::HookExit`] with its wait status;
/// one that could not be run as [`Step::Hook`] with an errno.
pub(super) fn run_hook(
    h: &HookPlan,
    ptrs: Option<&(Vec<*const c_char>, Vec<*const c_char>)>,
    state: &[u8],
) -> Result<(), (Step, Errno)> {
    let Some((argv, envp)) = ptrs else {
        return Err((Step::Hook, libc::EINVAL));
    };
    let mut pipe = [-1; 2];
    // SAFETY: `pipe` has room for two fds.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err((Step::Hook, sys::errno()));
    }
    // SAFETY: fork-like raw clone; this process is single-threaded.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == -1 {
        return Err((Step::Hook, sys::errno()));
    }
    if pid == 0 {
        // SAFETY: dup2 onto stdin (clearing CLOEXEC there), then exec the hook with prepared arrays.
        unsafe {
            libc::dup2(pipe[0], 0);
        }
        // SAFETY: path, argv and envp are NUL-terminated / null-terminated and live in the plan.
        unsafe { libc::execve(h.path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        // SAFETY: _exit never returns.
        unsafe { libc::_exit(127) }
    }
    sys::close(pipe[0]);
    let _ = sys::write_all(pipe[1], state);
    sys::close(pipe[1]);
    let deadline = sys::now_ms().saturating_add(h.timeout_ms);
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int for wait4 to fill; no rusage requested.
        let r =
            unsafe { libc::wait4(pid as i32, &mut status, libc::WNOHANG, std::ptr::null_mut()) };
        if r == pid as i32 {
            break;
        }
        if r == -1 && sys::errno() != libc::EINTR {
            return Err((Step::Hook, sys::errno()));
        }
        if sys::now_ms() > deadline {
            // SAFETY: signalling and reaping our own child.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            // SAFETY: as above.
            unsafe { libc::wait4(pid as i32, &mut status, 0, std::ptr::null_mut()) };
            return Err((Step::HookTimeout, libc::ETIMEDOUT));
        }
        sys::sleep_ms(1);
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        // The raw wait status: the parent tells an exit code from a signal.
        Err((Step::HookExit, status))
    }
}

/// Writes `container init: startContainer hook <path> <what happened>` to stderr,
/// without allocating.
pub(super) fn report_start_hook_failure(h: &HookPlan, step: Step, value: i32) {
    let mut num = [0u8; 12];
    let (what, n): (&[u8], i32) = match step {
        Step::HookExit if libc::WIFEXITED(value) => {
            (b" exited with status ", libc::WEXITSTATUS(value))
        }
        Step::HookExit if libc::WIFSIGNALED(value) => {
            (b" killed by signal ", libc::WTERMSIG(value))
        }
        Step::HookTimeout => (b" timed out", -1),
        _ => (b" could not be run, errno ", value),
    };
    let parts: [&[u8]; 5] = [
        b"container init: startContainer hook ",
        h.path.as_bytes(),
        what,
        if n >= 0 {
            format_decimal(n as u32, &mut num)
        } else {
            b""
        },
        b"\n",
    ];
    for p in parts {
        let _ = sys::write_all(2, p);
    }
}

/// `n` in decimal, in `buf`.
fn format_decimal(mut n: u32, buf: &mut [u8; 12]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        let mut b = [0u8; 12];
        assert_eq!(format_decimal(0, &mut b), b"0");
        assert_eq!(format_decimal(137, &mut b), b"137");
        assert_eq!(format_decimal(u32::MAX, &mut b), b"4294967295");
    }
}
