//! Helpers shared by the integration tests of this crate.
#![allow(dead_code, unreachable_pub)]

/// Whether privileged tests can run; under `CI=true` a missing root is a failure.
pub fn root_or_skip(name: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{name} needs root and CI=true forbids skipping"
    );
    eprintln!("skipping {name}: needs root");
    false
}

/// Entries of a directory (`/proc/self/fd`), or lines of a file (`mountinfo`).
pub fn count(path: &str) -> usize {
    match std::fs::read_dir(path) {
        Ok(d) => d.count(),
        Err(_) => std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0),
    }
}
