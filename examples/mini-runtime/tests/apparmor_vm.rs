//! `process.apparmorProfile` on a kernel that has AppArmor.
//!
//! The host kernel here has none, so the test boots Debian's cloud kernel in a
//! throwaway VM (`scripts/vm/run.sh`: pure cgroup v2, AppArmor enabled), loads a
//! profile there with `apparmor_parser`, and runs two containers with
//! `mini-runtime run`: one confined by the profile, one not.

mod common;

use std::path::PathBuf;

use common::{Bundle, bin_path, root_or_skip};
use serde_json::json;

/// The profile loaded in the guest: everything allowed except /secret.
const PROFILE: &str = "\
profile mini-runtime-test flags=(attach_disconnected,mediate_deleted) {
  file,
  capability,
  network,
  mount,
  umount,
  pivot_root,
  signal,
  ptrace,
  unix,
  deny /secret rw,
}
";

const PAYLOAD: &str = "echo \"label: $(cat /proc/self/attr/current)\"; \
     if cat /secret >/dev/null 2>&1; then echo secret:read; else echo secret:denied; fi";

fn bundle(profile: Option<&str>) -> Bundle {
    let mut b = Bundle::new(&["sh", "-c", PAYLOAD]);
    std::fs::write(b.rootfs().join("secret"), "s3cret\n").expect("write /secret");
    if let Some(p) = profile {
        b.config["process"]["apparmorProfile"] = json!(p);
    }
    // The guest's cgroup layout is not what this test is about.
    if let Some(mounts) = b.config["mounts"].as_array_mut() {
        mounts.retain(|m| m["type"] != "cgroup" && m["type"] != "cgroup2");
    }
    b.save();
    b
}

#[test]
fn apparmor_profile_confines_the_container_in_a_vm() {
    if !root_or_skip("apparmor_profile_confines_the_container_in_a_vm") {
        return;
    }
    let confined = bundle(Some("mini-runtime-test"));
    let free = bundle(None);
    let work = tempfile::tempdir().expect("tempdir");
    let profile = work.path().join("profile");
    std::fs::write(&profile, PROFILE).expect("write profile");

    let script = "\
        set -e; \
        apparmor_parser -r /work/profile; \
        echo \"=== confined\"; mini-runtime --root /run/mr run -b /work/confined aa-on; \
        echo \"=== unconfined\"; mini-runtime --root /run/mr run -b /work/free aa-off";
    let bin = PathBuf::from(bin_path());
    let console = common::run_in_vm(
        &[
            (&bin, "/bin/mini-runtime"),
            (&profile, "/work/profile"),
            (confined.path(), "/work/confined"),
            (free.path(), "/work/free"),
        ],
        &[],
        script,
    );
    let (on, off) = console
        .split_once("=== unconfined")
        .unwrap_or_else(|| panic!("both containers ran:\n{console}"));
    assert!(
        on.contains("label: mini-runtime-test (enforce)"),
        "confined container runs under the profile:\n{console}"
    );
    assert!(
        on.contains("secret:denied"),
        "the profile's deny rule applies:\n{console}"
    );
    assert!(
        off.contains("label: unconfined"),
        "no profile, no confinement:\n{console}"
    );
    assert!(
        off.contains("secret:read"),
        "an unconfined container reads /secret:\n{console}"
    );
}
