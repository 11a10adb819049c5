//! `linux.seccomp` end to end: the filter holds for the container's process
//! and for what is exec'd into it, installed late with no_new_privs and before
//! the capabilities go without it.

mod common;

use common::{Bundle, Rt, root_or_skip, stderr, stdout, unique_id};
use serde_json::json;

fn bundle(no_new_privs: bool, args: &[&str]) -> Bundle {
    let mut b = Bundle::new(args);
    b.config["process"]["noNewPrivileges"] = json!(no_new_privs);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
        ]
    });
    b.save();
    b
}

#[test]
fn the_filter_holds_in_both_install_orders_and_for_exec() {
    if !root_or_skip("the_filter_holds_in_both_install_orders_and_for_exec") {
        return;
    }
    let rt = Rt::new();
    for nnp in [true, false] {
        let b = bundle(
            nnp,
            &[
                "sh",
                "-c",
                "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; \
                 mkdir /tmp/d 2>&1 || true; touch /tmp/f && echo touch:ok",
            ],
        );
        let id = unique_id("seccomp");
        let out = rt.run(&["run", "-b", b.path().to_str().unwrap_or_default(), &id]);
        assert!(out.status.success(), "nnp={nnp}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("Seccomp:\t2"), "nnp={nnp}: {text}");
        assert!(
            text.contains(&format!("NoNewPrivs:\t{}", u8::from(nnp))),
            "nnp={nnp}: {text}"
        );
        assert!(text.contains("Permission denied"), "nnp={nnp}: {text}");
        assert!(text.contains("touch:ok"), "nnp={nnp}: {text}");
    }

    // exec: the container's filter applies to the new process as well.
    let b = bundle(true, &["sleep", "1000"]);
    let id = unique_id("seccomp-exec");
    rt.run_detached(&b, &id);
    let out = rt.run(&["exec", &id, "sh", "-c", "mkdir /tmp/e 2>&1; true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Permission denied"),
        "{}",
        stdout(&out)
    );
    assert!(rt.run(&["delete", "-f", &id]).status.success());
}
