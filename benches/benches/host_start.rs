//! Container start from a long-lived host: `create_container` + `start` +
//! `wait_container` (+ `delete`) of `/bin/true` in one process that stays,
//! the same with the per-container monitor (`create_monitored` +
//! `wait_exit`), and `crun run` of the same bundle as a whole process, in one
//! run, interleaved, all in one private mount namespace (crun refuses this
//! host's hybrid cgroups, so the v2 mount is unmounted there for all).
//!
//!     cargo bench -p benches --bench host_start [-- --runs 200]
//!
//! Run as root. Prints medians, the ratios to crun with 95% bootstrap
//! intervals, and where the library's time goes (create, start, wait, delete).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use oci_runtime::monitor::MonitorOptions;
use oci_runtime::{CreateOptions, Runtime, Source, Stdio, Stream};

fn main() {
    // `cargo test --all-targets` runs this binary too, without `--bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("host_start: a benchmark; run it with `cargo bench --bench host_start`");
        return;
    }
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(150);
    if !nix::unistd::geteuid().is_root() {
        eprintln!("host_start: needs root; skipped");
        return;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare a mount namespace");
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("make / private");
    let _ = nix::mount::umount2("/sys/fs/cgroup/unified", nix::mount::MntFlags::MNT_DETACH);

    let work = tempfile::tempdir().expect("temp dir");
    let bundle = make_bundle(work.path());
    let monitor = monitor_binary();
    let rt = Runtime::new(work.path().join("state"));
    let crun_root = work.path().join("crun");

    let (mut lib, mut mon, mut crun) = (Vec::new(), Vec::new(), Vec::new());
    let mut rss: Vec<u64> = Vec::new();
    let mut phases = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    // A few rounds first to warm caches, not counted.
    for i in 0..runs + 5 {
        let id = format!("hs-{i}");
        let t = Instant::now();
        let c = rt
            .create_container(
                &id,
                Source::Bundle(&bundle),
                &CreateOptions::default(),
                Stdio {
                    stdin: Stream::Null,
                    stdout: Stream::Null,
                    stderr: Stream::Null,
                },
            )
            .expect("create");
        let t1 = Instant::now();
        rt.start(&id).expect("start");
        let t2 = Instant::now();
        assert_eq!(rt.wait_container(&c).expect("wait"), 0);
        let t3 = Instant::now();
        rt.delete(&id, false).expect("delete");
        let t4 = Instant::now();

        let id = format!("hm-{i}");
        let m = Instant::now();
        let pid = rt
            .create_monitored(
                &id,
                Source::Bundle(&bundle),
                &MonitorOptions {
                    binary: monitor.clone(),
                    args: Vec::new(),
                    log_path: work.path().join("mon.log"),
                    stdin: false,
                    create: CreateOptions::default(),
                },
            )
            .expect("create monitored");
        let mon_rss = monitor_rss_kib(pid);
        rt.start(&id).expect("start monitored");
        let exit = rt
            .wait_exit(&id, Some(Duration::from_secs(30)))
            .expect("wait_exit");
        assert_eq!(exit.code, 0);
        rt.delete(&id, false).expect("delete monitored");
        let m_end = m.elapsed();

        let k = Instant::now();
        let st = Command::new("crun")
            .arg("--root")
            .arg(&crun_root)
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(format!("hc-{i}"))
            .status()
            .expect("crun");
        let k_end = k.elapsed();
        assert!(st.success(), "crun run failed");

        if i >= 5 {
            lib.push(t4 - t);
            for (p, d) in phases.iter_mut().zip([t1 - t, t2 - t1, t3 - t2, t4 - t3]) {
                p.push(d);
            }
            mon.push(m_end);
            rss.push(mon_rss);
            crun.push(k_end);
        }
    }

    println!("create + start + wait + delete of /bin/true, {runs} interleaved runs each");
    println!("{:<42} {:>10}", "", "median");
    let med_crun = median(&crun);
    for (name, v) in [
        ("oci-runtime in a long-lived host", &lib),
        ("oci-runtime with the monitor", &mon),
        ("crun run (a process per run)", &crun),
    ] {
        let m = median(v);
        let (lo, hi) = ratio_interval(v, &crun);
        println!(
            "{name:<42} {:>8.2} ms   {:.2}x crun (95% CI {lo:.2}-{hi:.2})",
            ms(m),
            ms(m) / ms(med_crun)
        );
    }
    rss.sort();
    println!(
        "the monitor's resident memory, a container created: median {} KiB, most {} KiB",
        rss[rss.len() / 2],
        rss[rss.len() - 1]
    );
    println!("where the library's time goes (medians):");
    for (name, p) in ["create", "start", "wait", "delete"].iter().zip(&phases) {
        println!("  {name:<8} {:>8.3} ms", ms(median(p)));
    }
}

/// VmHWM of the monitor: the parent of the container's init `pid`.
fn monitor_rss_kib(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let ppid = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().nth(1))
        .unwrap_or("0");
    let status = std::fs::read_to_string(format!("/proc/{ppid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[s.len() / 2]
}

/// A 95% bootstrap interval for median(a) / median(b).
fn ratio_interval(a: &[Duration], b: &[Duration]) -> (f64, f64) {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut ratios = Vec::new();
    for _ in 0..2000 {
        let pick = |v: &[Duration], next: &mut dyn FnMut() -> u64| -> Vec<Duration> {
            (0..v.len())
                .map(|_| v[(next() % v.len() as u64) as usize])
                .collect()
        };
        let ra = pick(a, &mut next);
        let rb = pick(b, &mut next);
        ratios.push(ms(median(&ra)) / ms(median(&rb)));
    }
    ratios.sort_by(f64::total_cmp);
    (ratios[50], ratios[1950])
}

fn make_bundle(work: &Path) -> PathBuf {
    let b = work.join("bundle");
    let root = b.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    std::os::unix::fs::symlink("busybox", root.join("bin/true")).unwrap();
    // oci-spec's default is runc's `spec`: namespaces, mounts, masks,
    // capabilities, rlimits and no_new_privileges; the device rule and
    // cgroup come with every container.
    let mut spec = oci_spec::runtime::Spec::default();
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(vec!["/bin/true".into()]));
    p.set_terminal(Some(false));
    spec.set_process(Some(p));
    spec.save(b.join("config.json")).unwrap();
    b
}

/// The release build of the monitor, built if it is missing.
fn monitor_binary() -> PathBuf {
    let target =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/oci-runtime-monitor");
    if !target.exists() {
        let ok = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "-p",
                "oci-runtime",
                "--bin",
                "oci-runtime-monitor",
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "building the monitor");
    }
    target
}
