//! Reading `/proc`: process start times (pid-reuse safe identity) and the
//! processes of a pid namespace.

use std::path::Path;

/// Start time (field 22 of `/proc/<pid>/stat`) and state letter of a process.
pub(crate) fn stat(proc_root: &Path, pid: i32) -> Option<(u64, char)> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = text.get(text.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After state (field 3), start time is field 22: skip fields 4..=21.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state))
}

/// Whether `pid` is still the process that started at `start_time` and has not exited.
pub(crate) fn alive(proc_root: &Path, pid: i32, start_time: u64) -> bool {
    pid > 0
        && matches!(stat(proc_root, pid), Some((s, st)) if s == start_time && st != 'Z' && st != 'X')
}

/// All host pids whose pid namespace is the one of `init`.
pub(crate) fn pids_in_pidns_of(proc_root: &Path, init: i32) -> Vec<i32> {
    let Ok(ns) = std::fs::read_link(proc_root.join(init.to_string()).join("ns/pid")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(proc_root) else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if std::fs::read_link(e.path().join("ns/pid")).is_ok_and(|l| l == ns) {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// Parses a signal given as a number, `KILL`, or `SIGKILL`.
pub fn parse_signal(s: &str) -> crate::Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(crate::Error::Signal(s.to_string()));
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    const TABLE: [(&str, i32); 31] = [
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("ILL", libc::SIGILL),
        ("TRAP", libc::SIGTRAP),
        ("ABRT", libc::SIGABRT),
        ("IOT", libc::SIGIOT),
        ("BUS", libc::SIGBUS),
        ("FPE", libc::SIGFPE),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("SEGV", libc::SIGSEGV),
        ("USR2", libc::SIGUSR2),
        ("PIPE", libc::SIGPIPE),
        ("ALRM", libc::SIGALRM),
        ("TERM", libc::SIGTERM),
        ("STKFLT", libc::SIGSTKFLT),
        ("CHLD", libc::SIGCHLD),
        ("CONT", libc::SIGCONT),
        ("STOP", libc::SIGSTOP),
        ("TSTP", libc::SIGTSTP),
        ("TTIN", libc::SIGTTIN),
        ("TTOU", libc::SIGTTOU),
        ("URG", libc::SIGURG),
        ("XCPU", libc::SIGXCPU),
        ("XFSZ", libc::SIGXFSZ),
        ("VTALRM", libc::SIGVTALRM),
        ("PROF", libc::SIGPROF),
        ("WINCH", libc::SIGWINCH),
        ("IO", libc::SIGIO),
        ("SYS", libc::SIGSYS),
    ];
    if let Some((_, n)) = TABLE.iter().find(|(n, _)| *n == name) {
        return Ok(*n);
    }
    if let Some(off) = name
        .strip_prefix("RTMIN+")
        .and_then(|n| n.parse::<i32>().ok())
    {
        let n = libc::SIGRTMIN() + off;
        if n <= libc::SIGRTMAX() {
            return Ok(n);
        }
    }
    Err(crate::Error::Signal(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_stat() {
        let me = std::process::id() as i32;
        let (start, state) = stat(Path::new("/proc"), me).unwrap_or((0, '?'));
        assert!(start > 0);
        assert!(state == 'R' || state == 'S');
        assert!(alive(Path::new("/proc"), me, start));
        assert!(!alive(Path::new("/proc"), me, start + 1));
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("9").ok(), Some(9));
        assert_eq!(parse_signal("KILL").ok(), Some(9));
        assert_eq!(parse_signal("sigterm").ok(), Some(15));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}
