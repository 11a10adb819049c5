//! Container-side hooks (createContainer, startContainer), run from inside the container.

use libc::{c_char, c_ulong};

use super::Step;
use crate::plan::HookPlan;
use crate::sys::{self, Errno};

/// Runs one container-side hook with the state JSON on its stdin and a timeout.
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
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        };
        Err((Step::Hook, code))
    }
}
