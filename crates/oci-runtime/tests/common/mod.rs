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

/// A busybox root filesystem at `<dir>/rootfs` (made once): `/bin/busybox`
/// with `applets` linked to it, and the usual mount points.
pub fn busybox_rootfs(dir: &std::path::Path, applets: &[&str]) -> std::path::PathBuf {
    let root = dir.join("rootfs");
    if root.exists() {
        return root;
    }
    for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    for l in applets {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(l)).unwrap();
    }
    root
}

/// Detaches every mount under `base`, deepest first (what a peer tool left).
pub fn unmount_under(base: &std::path::Path) {
    let base = base.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&base))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}
