//! Runtime-side hooks (prestart, createRuntime, poststart, poststop): run in the
//! runtime's namespaces with the state JSON on stdin and an optional timeout.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Runs each hook in order; the first failure stops the list.
pub(crate) fn run(kind: &'static str, hooks: Option<&Vec<Hook>>, state: &[u8]) -> Result<()> {
    for h in hooks.map(|v| v.as_slice()).unwrap_or(&[]) {
        run_one(kind, h, state)?;
    }
    Ok(())
}

fn run_one(kind: &'static str, h: &Hook, state: &[u8]) -> Result<()> {
    let fail = |reason: String, source: Option<std::io::Error>| Error::Hook {
        kind,
        path: h.path().clone(),
        reason,
        source,
    };
    let mut cmd = Command::new(h.path());
    if let Some((first, rest)) = h.args().as_deref().and_then(|a| a.split_first()) {
        use std::os::unix::process::CommandExt;
        cmd.arg0(first);
        cmd.args(rest);
    }
    cmd.env_clear();
    for e in h.env().as_deref().unwrap_or(&[]) {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| fail("cannot start".into(), Some(e)))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that ignores its stdin may close it early; that is not a failure.
        let _ = stdin.write_all(state);
    }
    // A timeout too large for the clock is no deadline at all.
    let deadline = h
        .timeout()
        .and_then(|t| Instant::now().checked_add(Duration::from_secs(t.max(1) as u64)));
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(fail(format!("exited with {st}"), None)),
            Ok(None) => {}
            Err(e) => return Err(fail("waiting".into(), Some(e))),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(
                format!("timed out after {}s", h.timeout().unwrap_or(0)),
                None,
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
