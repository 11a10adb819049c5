//! Cgroups on a pure cgroup v2 host, as most users run them. This host is
//! hybrid, so the test boots Debian's cloud kernel in a throwaway VM
//! (`scripts/vm/run.sh`: pure v2, every controller enabled) and drives
//! containers there with `mini-runtime`: limits land in the v2 files (seen from
//! inside, through the container's own cgroup namespace), the eBPF device filter
//! denies what it should, pause freezes, a fork bomb is held, and a memory hog
//! is OOM-killed and counted.

mod common;

use std::path::PathBuf;

use common::{Bundle, bin_path, root_or_skip};
use serde_json::json;

/// Allocates and touches memory until the kernel stops it.
const HOG: &str = r#"
#include <stdlib.h>
#include <string.h>
int main(void) {
    for (;;) {
        char *p = malloc(1 << 20);
        if (!p) return 3;
        memset(p, 1, 1 << 20);
    }
}
"#;

fn bundle(args: &[&str], resources: serde_json::Value) -> Bundle {
    let mut b = Bundle::new(args);
    b.config["linux"]["resources"] = resources;
    for a in ["mknod", "seq"] {
        let _ = std::os::unix::fs::symlink("busybox", b.rootfs().join("bin").join(a));
    }
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set] = json!([
            "CAP_MKNOD",
            "CAP_KILL",
            "CAP_AUDIT_WRITE",
            "CAP_NET_BIND_SERVICE"
        ]);
    }
    b.save();
    b
}

#[test]
fn cgroup_v2_limits_devices_freeze_and_oom_in_a_vm() {
    if !root_or_skip("cgroup_v2_limits_devices_freeze_and_oom_in_a_vm") {
        return;
    }
    let limits = bundle(
        &[
            "sh",
            "-c",
            "cat /proc/self/cgroup; for f in memory.max memory.low memory.swap.max pids.max \
             cpu.max cpu.weight; do echo \"$f: $(cat /sys/fs/cgroup/$f)\"; done; \
             cat /dev/null && echo null:ok; mknod /tmp/lc c 10 237 && \
             { (: < /tmp/lc) 2>/dev/null && echo lc:ok || echo lc:denied; }",
        ],
        json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": {"limit": 33554432, "reservation": 16777216, "swap": 33554432},
            "pids": {"limit": 20},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000}
        }),
    );
    let busy = bundle(&["sh", "-c", "while :; do :; done"], json!({}));
    let bomb = bundle(
        &[
            "sh",
            "-c",
            "(for i in $(seq 100); do sleep 1000 & done) 2>/dev/null; exec sleep 1000",
        ],
        json!({"pids": {"limit": 10}}),
    );
    // The guest's virtio disk is 254:0 (checked there), with BFQ.
    let io = bundle(
        &[
            "sh",
            "-c",
            "echo \"io.max: $(cat /sys/fs/cgroup/io.max)\"; \
             echo \"io.bfq.weight: $(cat /sys/fs/cgroup/io.bfq.weight | tr '\\n' ' ')\"",
        ],
        json!({"blockIO": {
            "weight": 500,
            "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}],
            "throttleWriteIOPSDevice": [{"major": 254, "minor": 0, "rate": 100}]
        }}),
    );
    let _ = std::os::unix::fs::symlink("busybox", io.rootfs().join("bin/tr"));
    let hog = bundle(
        &["/hog"],
        json!({"memory": {"limit": 16777216, "swap": 16777216}}),
    );
    common::compile_static(HOG, &hog.rootfs().join("hog"));

    let script = "\
        R='mini-runtime --root /run/mr'; \
        echo '=== limits'; $R run -b /work/limits lim; echo \"limits-exit: $?\"; \
        echo '=== freeze'; $R run -d -b /work/busy busy; \
        $R pause busy && $R state busy | grep '\"status\"'; \
        cat /sys/fs/cgroup/busy/cgroup.events | grep frozen; \
        a=$(grep usage_usec /sys/fs/cgroup/busy/cpu.stat); sleep 1; \
        b=$(grep usage_usec /sys/fs/cgroup/busy/cpu.stat); \
        [ \"$a\" = \"$b\" ] && echo paused-cpu:still || echo paused-cpu:moving; \
        $R resume busy && $R state busy | grep '\"status\"'; \
        echo \"stats: $($R events --stats busy)\"; \
        a=$(grep usage_usec /sys/fs/cgroup/busy/cpu.stat); sleep 1; \
        b=$(grep usage_usec /sys/fs/cgroup/busy/cpu.stat); \
        [ \"$a\" = \"$b\" ] && echo resumed-cpu:still || echo resumed-cpu:moving; \
        $R delete -f busy; [ -d /sys/fs/cgroup/busy ] && echo busy-cgroup:left || echo busy-cgroup:gone; \
        echo '=== bomb'; $R run -d -b /work/bomb bomb; sleep 2; \
        echo \"bomb-pids: $(cat /sys/fs/cgroup/bomb/pids.current)\"; \
        grep max /sys/fs/cgroup/bomb/pids.events; $R delete -f bomb; \
        echo '=== io'; echo \"disk: $(cat /sys/block/vda/dev)\"; \
        echo bfq > /sys/block/vda/queue/scheduler; $R run -b /work/io io; \
        echo '=== oom'; $R create -b /work/hog hog; \
        ($R events --interval 60s hog > /tmp/hog-events) & ev=$!; sleep 1; $R start hog; \
        i=0; while [ $i -lt 300 ] && ! $R state hog | grep -q stopped; do sleep 0.1; i=$((i+1)); done; \
        grep oom_kill /sys/fs/cgroup/hog/memory.events; wait $ev; \
        echo \"events: $(cat /tmp/hog-events)\"; $R delete -f hog; echo '=== end'";
    let bin = PathBuf::from(bin_path());
    let console = common::run_in_vm(
        &[
            (&bin, "/bin/mini-runtime"),
            (limits.path(), "/work/limits"),
            (busy.path(), "/work/busy"),
            (bomb.path(), "/work/bomb"),
            (hog.path(), "/work/hog"),
            (io.path(), "/work/io"),
        ],
        &["--disk", "64"],
        script,
    );
    let section = |name: &str| common::vm_section(&console, name);
    let lim = section("limits");
    for want in [
        "0::/",
        "memory.max: 33554432",
        "memory.low: 16777216",
        "memory.swap.max: 0",
        "pids.max: 20",
        "cpu.max: 50000 100000",
        "cpu.weight: 100",
        "null:ok",
        "lc:denied",
        "limits-exit: 0",
    ] {
        assert!(lim.contains(want), "{want:?} in the limits section:\n{lim}");
    }
    let fr = section("freeze");
    for want in [
        "\"status\": \"paused\"",
        "frozen 1",
        "paused-cpu:still",
        "\"status\": \"running\"",
        "resumed-cpu:moving",
        "busy-cgroup:gone",
    ] {
        assert!(fr.contains(want), "{want:?} in the freeze section:\n{fr}");
    }
    // Statistics read back from the v2 files, in runc's events JSON.
    let stats_line = fr
        .lines()
        .find_map(|l| l.strip_prefix("stats: "))
        .unwrap_or_else(|| panic!("no stats line:\n{fr}"));
    let stats: serde_json::Value = serde_json::from_str(stats_line)
        .unwrap_or_else(|e| panic!("stats JSON {stats_line:?}: {e}"));
    assert_eq!(stats["type"], "stats", "{stats}");
    assert!(
        stats["data"]["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0,
        "the busy loop's cpu time: {stats}"
    );
    assert!(
        stats["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "{stats}"
    );
    let bomb_out = section("bomb");
    let current: u32 = bomb_out
        .lines()
        .find_map(|l| l.strip_prefix("bomb-pids: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(u32::MAX);
    assert!(current <= 10, "{bomb_out}");
    assert!(
        bomb_out
            .lines()
            .any(|l| l.starts_with("max ") && l != "max 0"),
        "forks were refused:\n{bomb_out}"
    );
    let io_out = section("io");
    assert!(
        io_out.contains("disk: 254:0"),
        "the guest's disk number:\n{io_out}"
    );
    for want in [
        "io.max: 254:0 rbps=1048576 wbps=max riops=max wiops=100",
        "io.bfq.weight: default 500",
    ] {
        assert!(
            io_out.contains(want),
            "{want:?} in the io section:\n{io_out}"
        );
    }
    let oom = section("oom");
    let kills: u32 = oom
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(kills >= 1, "the hog was OOM-killed:\n{oom}");
    let events = oom
        .lines()
        .find_map(|l| l.strip_prefix("events: "))
        .unwrap_or_else(|| panic!("no events line:\n{oom}"));
    assert!(
        events.contains("\"type\":\"oom\""),
        "`events` reported the OOM kill:\n{oom}"
    );
}
