//! Device rules on this host's kernel: the v1 `devices.*` files and the v2 eBPF
//! filter, each checked by a forked process moved into a fresh cgroup, which
//! opens and creates device nodes.
//!
//! Root only; in a forked child (forked before it does anything but raw
//! open/mknod calls), so the test harness's threads do not matter.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::cgroups::devices;
use crate::error::Error;
use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork, pipe2};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

fn root_or_skip(name: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{name} needs root and CI=true forbids skipping"
    );
    eprintln!("skipping {name}: needs root");
    false
}

/// A rule from a v1-style line: `"allow c 1:3 rw"`, `"deny a"`.
fn rule(line: &str) -> LinuxDeviceCgroup {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(words[0] == "allow");
    r.set_typ(Some(match words[1] {
        "b" => LinuxDeviceType::B,
        "c" => LinuxDeviceType::C,
        _ => LinuxDeviceType::A,
    }));
    if let Some((major, minor)) = words.get(2).and_then(|n| n.split_once(':')) {
        r.set_major(major.parse().ok());
        r.set_minor(minor.parse().ok());
    }
    r.set_access(Some(words.get(3).unwrap_or(&"rwm").to_string()));
    r
}

fn rules(lines: &[&str]) -> Vec<LinuxDeviceCgroup> {
    lines.iter().map(|l| rule(l)).collect()
}

/// A fresh child cgroup, removed on drop (after its processes are reaped).
struct TempCgroup {
    path: PathBuf,
}

impl TempCgroup {
    fn new(hierarchy: &Path, name: &str) -> TempCgroup {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = hierarchy.join(format!("oci-devices-{name}-{}-{n}", std::process::id()));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempCgroup { path }
    }

    fn open(&self) -> File {
        File::open(&self.path).expect("open cgroup dir")
    }
}

impl Drop for TempCgroup {
    fn drop(&mut self) {
        // A reaped process may still be leaving the cgroup for a moment.
        for _ in 0..50 {
            match std::fs::remove_dir(&self.path) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return,
            }
        }
        eprintln!("could not remove {}", self.path.display());
    }
}

/// The cgroup2 hierarchy: `unified/` on a hybrid host, the root on a pure v2 one.
fn v2_hierarchy() -> PathBuf {
    let hybrid = Path::new("/sys/fs/cgroup/unified");
    if hybrid.join("cgroup.procs").exists() {
        hybrid.to_owned()
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

/// One thing the probe process tries; it reports 0 or the errno.
enum Probe {
    Open(CString, libc::c_int),
    Mknod(CString, u32, u32),
}

const MAX_PROBES: usize = 8;

impl Probe {
    fn open(path: &str, flags: libc::c_int) -> Probe {
        Probe::Open(CString::new(path).expect("path"), flags)
    }

    /// A char device node `major:minor` at `path`.
    fn mknod(path: &Path, major: u32, minor: u32) -> Probe {
        let path = CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
        Probe::Mknod(path, major, minor)
    }

    /// Runs in the forked child: raw calls only, no allocation.
    fn run(&self) -> i32 {
        match self {
            Probe::Open(path, flags) => {
                // SAFETY: `path` is a NUL-terminated string that outlives the call.
                let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
                if fd < 0 {
                    return errno();
                }
                // SAFETY: `fd` was just opened here and is closed once.
                unsafe { libc::close(fd) };
                0
            }
            Probe::Mknod(path, major, minor) => {
                let mode = libc::S_IFCHR | 0o600;
                // SAFETY: `path` is a NUL-terminated string that outlives the call.
                if unsafe { libc::mknod(path.as_ptr(), mode, libc::makedev(*major, *minor)) } < 0 {
                    return errno();
                }
                // SAFETY: as above; the node was just made here.
                unsafe { libc::unlink(path.as_ptr()) };
                0
            }
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
}

/// A forked child, killed and reaped on drop if it was not reaped already.
struct Child(Option<Pid>);

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// Forks a process, moves it into `cgroup`, lets it run `probes` and returns
/// each one's errno (0 for success).
fn probe_in(cgroup: &TempCgroup, probes: &[Probe]) -> Vec<i32> {
    assert!(probes.len() <= MAX_PROBES);
    let (go_r, go_w) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
    // SAFETY: the child only runs `child`, which makes raw system calls on memory
    // prepared before the fork and ends in _exit, so it is safe after forking a
    // multi-threaded process.
    let pid = match unsafe { fork() }.expect("fork") {
        ForkResult::Child => child(go_r.as_raw_fd(), out_w.as_raw_fd(), probes),
        ForkResult::Parent { child } => child,
    };
    let mut guard = Child(Some(pid));
    drop(out_w);
    std::fs::write(cgroup.path.join("cgroup.procs"), pid.to_string()).expect("move into cgroup");
    nix::unistd::write(go_w.as_fd(), b"g").expect("start the probe");
    let results = read_results(out_r, probes.len());
    if let Some(pid) = guard.0.take() {
        waitpid(pid, None).expect("reap");
    }
    results
}

fn read_results(out: OwnedFd, n: usize) -> Vec<i32> {
    let mut bytes = [0u8; MAX_PROBES * 4];
    File::from(out)
        .read_exact(&mut bytes)
        .expect("probe results");
    bytes
        .chunks_exact(4)
        .take(n)
        .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn child(go: RawFd, out: RawFd, probes: &[Probe]) -> ! {
    let mut byte = 0u8;
    // SAFETY: reads one byte into a live local.
    unsafe { libc::read(go, (&raw mut byte).cast(), 1) };
    let mut results = [0i32; MAX_PROBES];
    for (slot, probe) in results.iter_mut().zip(probes) {
        *slot = probe.run();
    }
    // SAFETY: writes the whole local array, which lives across the call.
    unsafe { libc::write(out, results.as_ptr().cast(), size_of_val(&results)) };
    // SAFETY: _exit ends this process without running the parent's atexit or destructors.
    unsafe { libc::_exit(0) }
}

const EPERM: i32 = libc::EPERM;

#[test]
fn v1_deny_all_but_dev_null() {
    if !root_or_skip("v1_deny_all_but_dev_null") {
        return;
    }
    let hierarchy = Path::new("/sys/fs/cgroup/devices");
    if !hierarchy.join("devices.list").exists() {
        eprintln!("skipping v1_deny_all_but_dev_null: no v1 devices hierarchy");
        return;
    }
    let cg = TempCgroup::new(hierarchy, "v1");
    let nodes = tempfile::tempdir().expect("tempdir");
    let list = || std::fs::read_to_string(cg.path.join("devices.list")).expect("list");

    devices::apply_v1(&cg.path, &rules(&["deny a", "allow c 1:3 rwm"])).expect("apply");
    assert_eq!(list(), "c 1:3 rwm\n");
    let probes = [
        Probe::open("/dev/null", libc::O_RDWR),
        Probe::open("/dev/zero", libc::O_RDONLY),
        Probe::mknod(&nodes.path().join("null"), 1, 3),
        Probe::mknod(&nodes.path().join("zero"), 1, 5),
    ];
    assert_eq!(probe_in(&cg, &probes), [0, EPERM, 0, EPERM]);

    // An update of a deny list: only the difference is written, and it takes.
    devices::apply_v1(
        &cg.path,
        &rules(&["deny a", "allow c 1:3 rw", "allow c 1:5 r"]),
    )
    .expect("update");
    assert_eq!(list(), "c 1:3 rw\nc 1:5 r\n");
    let probes = [
        Probe::open("/dev/null", libc::O_RDWR),
        Probe::open("/dev/zero", libc::O_RDONLY),
        Probe::open("/dev/zero", libc::O_RDWR),
        Probe::mknod(&nodes.path().join("null"), 1, 3),
    ];
    assert_eq!(probe_in(&cg, &probes), [0, 0, EPERM, EPERM]);

    // Allow-all with a deny: the kernel lists only the mode.
    devices::apply_v1(&cg.path, &rules(&["allow a", "deny c 1:5 rwm"])).expect("blacklist");
    assert_eq!(list(), "a *:* rwm\n");
    let probes = [
        Probe::open("/dev/full", libc::O_RDWR),
        Probe::open("/dev/zero", libc::O_RDONLY),
    ];
    assert_eq!(probe_in(&cg, &probes), [0, EPERM]);
}

#[test]
fn v2_filter_denies_all_but_dev_null() {
    if !root_or_skip("v2_filter_denies_all_but_dev_null") {
        return;
    }
    let cg = TempCgroup::new(&v2_hierarchy(), "v2");
    let dir = cg.open();
    let nodes = tempfile::tempdir().expect("tempdir");

    let first: devices::DeviceFilter =
        devices::apply_v2(dir.as_fd(), &rules(&["deny a", "allow c 1:3 rw"])).expect("apply");
    assert_eq!(
        devices::attached_filters(dir.as_fd()).expect("query"),
        [first.id()]
    );
    let probes = [
        Probe::open("/dev/null", libc::O_RDWR),
        Probe::open("/dev/zero", libc::O_RDONLY),
        Probe::mknod(&nodes.path().join("null"), 1, 3),
    ];
    assert_eq!(probe_in(&cg, &probes), [0, EPERM, EPERM]);

    // The update replaces the filter: one program attached, the new one.
    let rules2 = rules(&["deny a", "allow c 1:3 rwm", "allow c 1:5 r"]);
    let second = devices::apply_v2(dir.as_fd(), &rules2).expect("update");
    assert_ne!(second.id(), first.id());
    assert_eq!(
        devices::attached_filters(dir.as_fd()).expect("query"),
        [second.id()]
    );
    let probes = [
        Probe::open("/dev/null", libc::O_RDWR),
        Probe::open("/dev/zero", libc::O_RDONLY),
        Probe::open("/dev/zero", libc::O_RDWR),
        Probe::mknod(&nodes.path().join("null"), 1, 3),
        Probe::mknod(&nodes.path().join("zero"), 1, 5),
        Probe::open("/dev/full", libc::O_RDONLY),
    ];
    assert_eq!(probe_in(&cg, &probes), [0, 0, EPERM, 0, EPERM, EPERM]);

    // Detached, the cgroup filters nothing any more.
    second.detach(dir.as_fd()).expect("detach");
    assert!(
        devices::attached_filters(dir.as_fd())
            .expect("query")
            .is_empty()
    );
    let probes = [Probe::open("/dev/zero", libc::O_RDWR)];
    assert_eq!(probe_in(&cg, &probes), [0]);
}

#[test]
fn v2_filter_allow_all_but_some() {
    if !root_or_skip("v2_filter_allow_all_but_some") {
        return;
    }
    let cg = TempCgroup::new(&v2_hierarchy(), "v2-allow");
    let dir = cg.open();
    devices::apply_v2(
        dir.as_fd(),
        &rules(&["allow a", "deny c 1:5 rwm", "deny c 1:7 w"]),
    )
    .expect("apply");
    let probes = [
        Probe::open("/dev/null", libc::O_RDWR),
        Probe::open("/dev/zero", libc::O_RDONLY),
        Probe::open("/dev/full", libc::O_RDONLY),
        Probe::open("/dev/full", libc::O_RDWR),
    ];
    assert_eq!(probe_in(&cg, &probes), [0, EPERM, 0, EPERM]);
}

#[test]
fn v2_bad_rules_attach_nothing() {
    if !root_or_skip("v2_bad_rules_attach_nothing") {
        return;
    }
    let cg = TempCgroup::new(&v2_hierarchy(), "v2-bad");
    let dir = cg.open();
    let bad = rules(&["deny a", "allow c 1:* rwm", "deny c 1:3 w"]);
    match devices::apply_v2(dir.as_fd(), &bad) {
        Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "linux.resources.devices[2]"),
        other => panic!("{other:?}"),
    }
    assert!(
        devices::attached_filters(dir.as_fd())
            .expect("query")
            .is_empty()
    );
}
