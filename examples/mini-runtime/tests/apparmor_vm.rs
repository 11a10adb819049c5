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

    // oci-runtime's default profile, with CAP_SYS_ADMIN in the container
    // so that only the profile stands in the way of a mount.
    let mut default = Bundle::new(&[
        "sh",
        "-c",
        "echo \"label: $(cat /proc/self/attr/current)\"; \
         if mount -t tmpfs t /mnt 2>/dev/null; then echo mount:done; else echo mount:denied; fi; \
         if cat /etc/hostname >/dev/null 2>&1; then echo read:ok; fi",
    ]);
    default.config["process"]["apparmorProfile"] = json!(oci_runtime::apparmor::DEFAULT_PROFILE);
    for set in ["bounding", "effective", "permitted"] {
        default.config["process"]["capabilities"][set]
            .as_array_mut()
            .expect("caps")
            .push(json!("CAP_SYS_ADMIN"));
    }
    if let Some(mounts) = default.config["mounts"].as_array_mut() {
        mounts.retain(|m| m["type"] != "cgroup" && m["type"] != "cgroup2");
    }
    std::fs::write(default.rootfs().join("etc/hostname"), "x\n").unwrap();
    std::fs::create_dir_all(default.rootfs().join("mnt")).unwrap();
    default.save();
    let default_profile = work.path().join("default-profile");
    std::fs::write(
        &default_profile,
        oci_runtime::apparmor::default_profile_text(),
    )
    .unwrap();
    let script = "\
        set -e; \
        apparmor_parser -r /work/profile; \
        apparmor_parser -r /work/default-profile; \
        echo \"=== confined\"; mini-runtime --root /run/mr run -b /work/confined aa-on; \
        echo \"=== unconfined\"; mini-runtime --root /run/mr run -b /work/free aa-off; \
        echo \"=== default\"; mini-runtime --root /run/mr run -b /work/default aa-def; \
        echo \"=== end\"";
    let bin = PathBuf::from(bin_path());
    let console = common::run_in_vm(
        &[
            (&bin, "/bin/mini-runtime"),
            (&profile, "/work/profile"),
            (confined.path(), "/work/confined"),
            (free.path(), "/work/free"),
            (default.path(), "/work/default"),
            (&default_profile, "/work/default-profile"),
        ],
        &[],
        script,
    );
    let def = common::vm_section(&console, "default");
    assert!(
        def.contains("label: mini-runtime-default (enforce)"),
        "the default profile loads and applies:\n{console}"
    );
    assert!(
        def.contains("mount:denied"),
        "it refuses mounts:\n{console}"
    );
    assert!(def.contains("read:ok"), "it lets files be read:\n{console}");
    let (on, off) = console
        .split_once("=== unconfined")
        .unwrap_or_else(|| panic!("both containers ran:\n{console}"));
    let off = off.split("=== default").next().unwrap_or(off);
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
