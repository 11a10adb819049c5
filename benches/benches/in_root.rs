//! What the in-root path resolution costs: one `openat2` with
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` (as the container's init opens
//! every mount target and masked path) against a plain `openat` that follows
//! whatever it meets, over the paths runc's default config names, in a
//! busybox-like rootfs.

use std::ffi::CString;
use std::hint::black_box;
use std::os::fd::AsRawFd;

use criterion::{Criterion, criterion_group, criterion_main};

/// Mount targets and masked/read-only paths of `runc spec`, relative.
const PATHS: &[&str] = &[
    "proc",
    "dev",
    "dev/pts",
    "dev/shm",
    "dev/mqueue",
    "sys",
    "sys/fs/cgroup",
    "proc/acpi",
    "proc/asound",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "sys/firmware",
    "proc/scsi",
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

fn rootfs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for p in PATHS {
        std::fs::create_dir_all(dir.path().join(p)).unwrap();
    }
    dir
}

fn bench(c: &mut Criterion) {
    let root = rootfs();
    let fd = std::fs::File::open(root.path()).unwrap();
    let paths: Vec<CString> = PATHS.iter().map(|p| CString::new(*p).unwrap()).collect();
    let mut g = c.benchmark_group("open the 22 paths of runc's default config");
    g.bench_function("openat2 RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS", |b| {
        // SAFETY: open_how is plain data; all-zero is valid and the fields are set below.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        b.iter(|| {
            for p in &paths {
                // SAFETY: a valid dirfd, NUL-terminated path and open_how of the given size.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_openat2,
                        fd.as_raw_fd(),
                        p.as_ptr(),
                        &how as *const libc::open_how,
                        std::mem::size_of::<libc::open_how>(),
                    )
                };
                assert!(r >= 0);
                // SAFETY: closing the fd just opened.
                unsafe { libc::close(black_box(r as i32)) };
            }
        })
    });
    g.bench_function("plain openat", |b| {
        b.iter(|| {
            for p in &paths {
                // SAFETY: a valid dirfd and NUL-terminated path.
                let r = unsafe {
                    libc::openat(fd.as_raw_fd(), p.as_ptr(), libc::O_PATH | libc::O_CLOEXEC)
                };
                assert!(r >= 0);
                // SAFETY: closing the fd just opened.
                unsafe { libc::close(black_box(r)) };
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
