//! A default AppArmor profile for containers, for hosts that have AppArmor:
//! what a CRI server applies for `RuntimeDefault`. It allows what ordinary
//! programs do and refuses what breaks out of a container: mounts, writes to
//! the kernel's knobs under `/proc/sys` and `/sys`, `/proc/sysrq-trigger`,
//! `/proc/kcore`, the security filesystem, and signals or ptrace to
//! processes outside the profile (the runtime's own signals still arrive).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// The profile's name.
pub const DEFAULT_PROFILE: &str = "mini-runtime-default";

/// The profile, as `apparmor_parser` takes it (no includes: it loads on a
/// host without the abstractions too).
pub fn default_profile_text() -> String {
    format!(
        "profile {DEFAULT_PROFILE} flags=(attach_disconnected,mediate_deleted) {{
  network,
  capability,
  file,
  umount,
  unix,
  signal (receive) peer=unconfined,
  signal (send,receive) peer={DEFAULT_PROFILE},
  ptrace (trace,read,tracedby,readby) peer={DEFAULT_PROFILE},
  deny mount,
  deny /proc/sysrq-trigger rwklx,
  deny /proc/kcore rwklx,
  deny /proc/sys/[^k]** wklx,
  deny /proc/sys/kernel/{{?,??,[^s][^h][^m]**}} wklx,
  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/kernel/security/** rwklx,
}}
"
    )
}

/// Whether the kernel has AppArmor on.
pub fn enabled() -> bool {
    crate::config::apparmor_enabled()
}

/// Whether profile `name` is loaded.
pub fn loaded(name: &str) -> bool {
    std::fs::read_to_string("/sys/kernel/security/apparmor/profiles").is_ok_and(|s| {
        s.lines()
            .any(|l| l.rsplit_once(" (").is_some_and(|(n, _)| n == name))
    })
}

/// Loads [`DEFAULT_PROFILE`] with `apparmor_parser` unless it is loaded;
/// returns its name. An error says why not (no AppArmor, no parser, or what
/// the parser said).
pub fn ensure_default() -> Result<&'static str> {
    let err = |reason: String| Error::InvalidConfig {
        field: "process.apparmorProfile".into(),
        reason,
    };
    if !enabled() {
        return Err(err("AppArmor is not enabled on this host".into()));
    }
    if loaded(DEFAULT_PROFILE) {
        return Ok(DEFAULT_PROFILE);
    }
    let parser = ["/usr/sbin/apparmor_parser", "/sbin/apparmor_parser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| {
            err(format!(
                "loading {DEFAULT_PROFILE} needs apparmor_parser (Debian's apparmor package)"
            ))
        })?;
    let mut child = Command::new(parser)
        .args(["-K", "-r"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("{parser}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(default_profile_text().as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("{parser}: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "{parser} refused {DEFAULT_PROFILE}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(DEFAULT_PROFILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_names_itself_and_refuses_mounts() {
        let t = default_profile_text();
        assert!(t.starts_with("profile mini-runtime-default "));
        assert!(t.contains("deny mount,"));
        assert_eq!(t.matches('{').count(), t.matches('}').count());
    }

    #[test]
    fn without_apparmor_loading_says_so() {
        if enabled() {
            return;
        }
        let e = ensure_default().unwrap_err().to_string();
        assert!(e.contains("AppArmor is not enabled"), "{e}");
    }
}
