//! The host's side of a container's pty: the caller's terminal in raw mode
//! while a container uses it, window sizes carried over, output and input
//! copied, and the signals a foreground runtime gets passed on.
//!
//! A runtime that runs a container on its caller's terminal (`run` and
//! `exec` with `terminal: true` and no console socket) holds the pty master
//! (from [`crate::Container::pty_master`] or a console socket), then:
//!
//! ```no_run
//! # fn demo(master: std::os::fd::OwnedFd, pid: i32) -> std::io::Result<()> {
//! use oci_runtime::pty;
//! pty::forward_signals();                       // before the container starts
//! pty::forward_to(pid, Some(&master));          // SIGWINCH resizes the pty
//! let _raw = pty::RawMode::enable(std::io::stdin())?;
//! pty::copy_window_size(std::io::stdin(), &master)?;
//! pty::proxy_stdio(master);                     // until the container side closes
//! # Ok(()) }
//! ```

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use rustix::termios::{OptionalActions, Termios, Winsize};

/// A terminal put in raw mode, restored as it was on drop.
#[derive(Debug)]
pub struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal `fd` in raw mode; `None` when `fd` is not a terminal.
    pub fn enable(fd: impl AsFd) -> std::io::Result<Option<RawMode>> {
        let fd = fd.as_fd();
        let saved = match rustix::termios::tcgetattr(fd) {
            Ok(t) => t,
            Err(rustix::io::Errno::NOTTY | rustix::io::Errno::INVAL) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(fd, OptionalActions::Now, &raw)?;
        Ok(Some(RawMode {
            fd: fd.try_clone_to_owned()?,
            saved,
        }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(&self.fd, OptionalActions::Now, &self.saved);
    }
}

/// Gives the pty `master` the window size of the terminal `from`; nothing
/// when `from` is not a terminal.
pub fn copy_window_size(from: impl AsFd, master: impl AsFd) -> std::io::Result<()> {
    match rustix::termios::tcgetwinsize(from.as_fd()) {
        Ok(ws) => Ok(rustix::termios::tcsetwinsize(master.as_fd(), ws)?),
        Err(rustix::io::Errno::NOTTY | rustix::io::Errno::INVAL) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sets the window size of the pty `master` (a CRI resize, an attach
/// client's); the kernel tells the container's foreground processes with SIGWINCH.
pub fn set_window_size(master: impl AsFd, rows: u16, columns: u16) -> std::io::Result<()> {
    let ws = Winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    Ok(rustix::termios::tcsetwinsize(master.as_fd(), ws)?)
}

/// Copies this process's stdin to the pty and the pty to its stdout until
/// the container side closes (the read gets EIO once the last slave fd is
/// gone). The stdin copy runs on a detached thread, since stdin may never end.
pub fn proxy_stdio(master: OwnedFd) {
    let mut output = std::fs::File::from(master);
    if let Ok(mut input) = output.try_clone() {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut input);
        });
    }
    let _ = std::io::copy(&mut output, &mut std::io::stdout());
}

/// The process signals are passed to, 0 until known.
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);
/// A signal that came before the process was known.
static PENDING: AtomicI32 = AtomicI32::new(0);
/// The pty master a SIGWINCH resizes, -1 for none.
static MASTER: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGWINCH {
        let master = MASTER.load(Ordering::SeqCst);
        if master >= 0 {
            // SAFETY: `master` stays open while forwarding to it lasts (see
            // `forward_to`); the calls below are plain ioctls, safe in a handler.
            let m = unsafe { BorrowedFd::borrow_raw(master) };
            let _ = copy_window_size(std::io::stdin(), m);
            return;
        }
    }
    let pid = FORWARD_TO.load(Ordering::SeqCst);
    match nix::unistd::Pid::from_raw(pid) {
        p if pid > 0 => {
            if let Ok(s) = nix::sys::signal::Signal::try_from(sig) {
                let _ = nix::sys::signal::kill(p, s);
            }
        }
        _ => PENDING.store(sig, Ordering::SeqCst),
    }
}

/// Installs handlers for the signals a foreground runtime passes on to its
/// container: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and
/// SIGWINCH. Until [`forward_to`] names the process, the last one that came
/// is held, not lost.
pub fn forward_signals() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        // SAFETY: the handler only loads atomics and makes kill/ioctl calls,
        // all async-signal-safe.
        let _ = unsafe { signal(sig, SigHandler::Handler(on_signal)) };
    }
}

/// Passes the signals of [`forward_signals`] on to `pid`, delivering one
/// that came before; with `master`, a SIGWINCH instead resizes that pty to
/// this process's terminal. `master` must stay open while signals may come.
pub fn forward_to(pid: i32, master: Option<&OwnedFd>) {
    MASTER.store(master.map_or(-1, |m| m.as_raw_fd()), Ordering::SeqCst);
    FORWARD_TO.store(pid, Ordering::SeqCst);
    let sig = PENDING.swap(0, Ordering::SeqCst);
    if sig != 0
        && let Ok(s) = nix::sys::signal::Signal::try_from(sig)
        && let Some(p) = (pid > 0).then(|| nix::unistd::Pid::from_raw(pid))
    {
        let _ = nix::sys::signal::kill(p, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_and_raw_mode_on_a_real_pty() {
        let a = nix::pty::openpty(None, None).unwrap();
        let b = nix::pty::openpty(None, None).unwrap();
        set_window_size(&a.master, 30, 100).unwrap();
        let ws = rustix::termios::tcgetwinsize(&a.slave).unwrap();
        assert_eq!((ws.ws_row, ws.ws_col), (30, 100));
        // From one terminal to another pty.
        copy_window_size(&a.slave, &b.master).unwrap();
        let ws = rustix::termios::tcgetwinsize(&b.slave).unwrap();
        assert_eq!((ws.ws_row, ws.ws_col), (30, 100));

        let before = rustix::termios::tcgetattr(&a.slave).unwrap();
        let icanon = rustix::termios::LocalModes::ICANON;
        assert!(before.local_modes.contains(icanon));
        {
            let _raw = RawMode::enable(&a.slave).unwrap().expect("a terminal");
            let now = rustix::termios::tcgetattr(&a.slave).unwrap();
            assert!(!now.local_modes.contains(icanon));
        }
        let after = rustix::termios::tcgetattr(&a.slave).unwrap();
        assert_eq!(after.local_modes, before.local_modes, "restored on drop");

        // Not a terminal: nothing to do, no error.
        let (r, _w) = std::io::pipe().unwrap();
        assert!(RawMode::enable(&r).unwrap().is_none());
        copy_window_size(&r, &b.master).unwrap();
    }
}
