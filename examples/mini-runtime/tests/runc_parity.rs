//! Differential tests against runc. For each case one bundle (a busybox rootfs and
//! one `config.json`) is run by runc and then by mini-runtime; a probe prints what
//! the container can see of itself in marked sections. The two outputs must match
//! section by section and line by line once the few values that have to differ are
//! normalised (each normalisation says why), and both runtimes must agree on
//! success and on the exit code.

mod common;

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Bundle, Rt, RuncRoot, root_or_skip, unique_id};
use serde_json::{Value, json};

/// Far above the second or so a run takes here; only a hung runtime reaches it.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// Starts a section line in the probe's output.
const MARK: &str = "@@parity:";
/// The probe's own exit code, so that passing it on is checked too.
const PROBE_EXIT: i32 = 7;

/// What every case prints: (section name, shell commands).
const BASE_PROBE: &[(&str, &str)] = &[
    // The process the runtime executed, and a child it forked and exec'd.
    ("init-status", "cat /proc/$$/status"),
    ("self-status", "cat /proc/self/status"),
    ("mountinfo", "cat /proc/self/mountinfo"),
    ("id", "id"),
    ("ulimit-soft", "ulimit -S -a"),
    ("ulimit-hard", "ulimit -H -a"),
    ("hostname", "hostname"),
    ("domainname", "cat /proc/sys/kernel/domainname"),
    ("umask", "umask"),
    ("pwd", "pwd"),
    ("env", "env"),
    ("ls /", "ls -ln /"),
    ("ls /dev", "ls -ln /dev"),
    ("ls /dev/pts", "ls -ln /dev/pts"),
    ("ls /dev/shm", "ls -ln /dev/shm"),
    ("ls /dev/mqueue", "ls -ln /dev/mqueue"),
    (
        "ns",
        "for n in cgroup ipc mnt net pid pid_for_children time time_for_children user uts; do \
         echo \"$n $(readlink /proc/self/ns/$n)\"; done",
    ),
    ("oom_score_adj", "cat /proc/self/oom_score_adj"),
    (
        "sysctl",
        "for f in kernel/hostname kernel/domainname kernel/cap_last_cap kernel/ngroups_max \
         kernel/shmmax kernel/shmall kernel/shmmni kernel/msgmax kernel/msgmnb kernel/sem \
         net/ipv4/ip_forward net/ipv4/ip_unprivileged_port_start net/ipv4/ping_group_range \
         net/core/somaxconn fs/mqueue/msg_max; do echo \"$f=$(cat /proc/sys/$f 2>&1)\"; done",
    ),
    ("fds", "ls /proc/$$/fd"),
    (
        "writable",
        "for d in / /tmp /dev /dev/shm /sys; do touch $d/.parity-probe && echo \"$d writable\"; done",
    ),
];

/// All capabilities up to CAP_CHECKPOINT_RESTORE (40), by number.
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

// ---------------------------------------------------------------------------
// Running one runtime
// ---------------------------------------------------------------------------

type Outcome = common::Bounded;

/// [`common::run_bounded`], started as a clean login shell would start it.
fn run_bounded(mut cmd: Command, what: &str) -> Outcome {
    clean_start(&mut cmd);
    common::run_bounded(cmd, what, RUN_TIMEOUT)
}

/// Starts the runtime as a clean login shell would: every signal at its default
/// disposition and no fds but 0-2. Both are differences of the caller's making,
/// not of the config's:
/// - the runtime would inherit glibc's internal signals 32 and 33 as ignored
///   (posix_spawn leaves them so); runc hands an ignored signal on to the
///   container while mini-runtime resets it;
/// - a stray high fd inherited from whatever started the tests sizes the
///   runtime's fd table, which mini-runtime's clone copies into the container's
///   init (`FDSize` 256, not 64) while runc's init starts from a fresh one.
fn clean_start(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let reset = || {
        // An all-zero kernel sigaction is SIG_DFL with no flags and an empty mask,
        // whatever the architecture's field layout.
        let dfl = [0u64; 4];
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                // SAFETY: `dfl` outlives the call, the old-action pointer is null and
                // 8 is the kernel's sigset size; rt_sigaction is async-signal-safe.
                unsafe {
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        sig,
                        dfl.as_ptr(),
                        std::ptr::null::<u64>(),
                        8usize,
                    )
                };
            }
        }
        // SAFETY: close_range only closes this (forked) process's own fds.
        unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
        Ok(())
    };
    // SAFETY: `reset` runs between fork and exec, allocates nothing and makes only
    // async-signal-safe system calls.
    unsafe { cmd.pre_exec(reset) };
}

/// Lazily detaches every mount at or below `dir` in our mount namespace, deepest
/// first: a container without its own mount namespace mounts onto the host.
fn detach_mounts_under(dir: &Path) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.as_os_str().as_bytes();
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| {
            let p = p.as_bytes();
            p.starts_with(prefix) && (p.len() == prefix.len() || p[prefix.len()] == b'/')
        })
        .map(str::to_string)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let Ok(c) = CString::new(p.replace("\\040", " ")) else {
            continue;
        };
        // SAFETY: `c` is a NUL-terminated path that lives across the call.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Keeps both runtimes starting from the same rootfs: a copy is taken before the
/// first run and put back before the second (runtimes create mount points and
/// device nodes in it). On drop, detaches whatever a run left mounted there.
struct RootfsReset {
    rootfs: PathBuf,
    pristine: Option<tempfile::TempDir>,
}

impl RootfsReset {
    fn before_run(&mut self) {
        detach_mounts_under(&self.rootfs);
        match &self.pristine {
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("parity-rootfs-")
                    .tempdir()
                    .expect("tempdir");
                cp_a(&self.rootfs, &dir.path().join("rootfs"));
                self.pristine = Some(dir);
            }
            Some(dir) => {
                std::fs::remove_dir_all(&self.rootfs).unwrap_or_else(|e| {
                    panic!("removing {} after a run: {e}", self.rootfs.display())
                });
                cp_a(&dir.path().join("rootfs"), &self.rootfs);
            }
        }
    }
}

impl Drop for RootfsReset {
    fn drop(&mut self) {
        detach_mounts_under(&self.rootfs);
    }
}

fn cp_a(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

// ---------------------------------------------------------------------------
// A case
// ---------------------------------------------------------------------------

/// Which runtime's `spec` the case starts from.
#[derive(Debug, Clone, Copy)]
enum Base {
    Runc,
    Crun,
    Mini,
}

/// One matrix entry: a bundle, the probe sections and the guards that clean up.
/// Fields drop in order: containers first, then leftover mounts, then the bundle.
struct Parity {
    name: &'static str,
    runc: RuncRoot,
    mini: Rt,
    reset: RootfsReset,
    bundle: Bundle,
    sections: Vec<(String, String)>,
    norm: Norm,
    /// Lines runc's normalised output must have, so the case shows what it is about.
    expected: Vec<(String, String)>,
}

impl Parity {
    /// `None` when not root outside CI (the test then skips).
    fn new(name: &'static str, base: Base) -> Option<Parity> {
        if !root_or_skip(name) {
            return None;
        }
        let mut bundle = Bundle::new(&["true"]);
        if let Some(tool) = match base {
            Base::Runc => Some("runc"),
            Base::Crun => Some("crun"),
            Base::Mini => None,
        } {
            let config = bundle.path().join("config.json");
            std::fs::remove_file(&config).expect("rm config.json");
            let out = Command::new(tool)
                .arg("spec")
                .current_dir(bundle.path())
                .output()
                .expect("spec");
            assert!(
                out.status.success(),
                "{tool} spec: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = std::fs::read_to_string(&config).expect("read config");
            bundle.config = serde_json::from_str(&text).expect("config json");
        }

        // No test has a terminal to give.
        bundle.config["process"]["terminal"] = json!(false);
        let rootfs = bundle.rootfs();
        Some(Parity {
            name,
            runc: RuncRoot::new("parity-runc-"),
            mini: Rt::new(),
            reset: RootfsReset {
                rootfs,
                pristine: None,
            },
            bundle,
            sections: BASE_PROBE
                .iter()
                .map(|(n, c)| (n.to_string(), c.to_string()))
                .collect(),
            norm: Norm::default(),
            expected: Vec::new(),
        })
    }

    /// A case about one topic: runc's defaults with a writable root and an explicit
    /// HOME, so that what the case changes is what it shows. Those two defaults are
    /// what the `spec_defaults_*` cases and `env_without_home` check.
    fn topic(name: &'static str) -> Option<Parity> {
        let mut p = Parity::new(name, Base::Runc)?;
        let c = p.config();
        c["root"]["readonly"] = json!(false);
        c["process"]["env"]
            .as_array_mut()
            .expect("process.env")
            .push(json!("HOME=/"));
        Some(p)
    }

    fn config(&mut self) -> &mut Value {
        &mut self.bundle.config
    }

    fn rootfs(&self) -> PathBuf {
        self.bundle.rootfs()
    }

    /// Adds a probe section.
    fn section(&mut self, name: &str, cmd: &str) {
        self.sections.push((name.to_string(), cmd.to_string()));
    }

    /// Adds an `ls -ln` section (dates are normalised in sections named `ls …`).
    fn ls(&mut self, args: &str) {
        self.section(&format!("ls {args}"), &format!("ls -ln {args}"));
    }

    /// Adds a busybox applet the base rootfs lacks.
    fn applet(&self, name: &str) {
        let link = self.rootfs().join("bin").join(name);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).expect("symlink applet");
        }
    }

    /// Requires `line` in runc's (normalised) `section`: a check on the case itself.
    fn expect(&mut self, section: &str, line: &str) {
        self.expected.push((section.to_string(), line.to_string()));
    }

    /// Accepts a difference where runc 1.1 is the one that departs from the spec or
    /// from later runc: in `section`, its lines containing `line` show `from`
    /// where mini-runtime shows `to`.
    fn known_difference(&mut self, section: &str, line: &str, from: &str, to: &str) {
        self.norm.known.push(Known {
            section: section.to_string(),
            line: line.to_string(),
            from: from.to_string(),
            to: to.to_string(),
        });
    }

    /// Tells the normaliser that a namespace link belongs to a namespace the case joins.
    fn joined_ns(&mut self, link: String) {
        self.norm.joined.push(link);
    }

    fn script(&self) -> String {
        let mut s = String::new();
        for (name, cmd) in &self.sections {
            // stderr goes with stdout, so error messages are compared too.
            s.push_str(&format!(
                "echo '{MARK}{name}'\n{{ {cmd}\n}} 2>&1\necho \"exit=$?\"\n"
            ));
        }
        s.push_str(&format!("exit {PROBE_EXIT}\n"));
        s
    }

    fn save(&mut self) {
        let script = self.script();
        self.bundle.config["process"]["args"] = json!(["sh", "-c", script]);
        self.bundle.save();
    }

    fn bundle_arg(&self) -> String {
        self.bundle
            .path()
            .to_str()
            .expect("bundle path is UTF-8")
            .to_string()
    }

    fn run_runc(&mut self, id: &str) -> Outcome {
        self.save();
        self.reset.before_run();
        self.runc.ids.push(id.to_string());
        let mut c = self.runc.cmd();
        c.args(["run", "--bundle", &self.bundle_arg(), id]);
        run_bounded(c, &format!("runc run {id}"))
    }

    fn run_mini(&mut self, id: &str) -> Outcome {
        self.save();
        self.reset.before_run();
        self.mini.track(id);
        let mut c = self.mini.cmd();
        c.args(["run", "-b", &self.bundle_arg(), id]);
        run_bounded(c, &format!("mini-runtime run {id}"))
    }

    /// Runs the bundle with runc, then with mini-runtime (same id, separate roots).
    /// With `PARITY_DUMP_DIR` set, both raw outputs are kept there for a closer look.
    fn run_both(&mut self) -> (Outcome, Outcome) {
        let id = unique_id(&self.name.replace('_', "-"));
        let runc = self.run_runc(&id);
        let mini = self.run_mini(&id);
        if let Some(dir) = std::env::var_os("PARITY_DUMP_DIR") {
            let dir = PathBuf::from(dir);
            for (who, o) in [("runc", &runc), ("mini-runtime", &mini)] {
                let text = format!("exit {:?}\n{}\n--- stderr\n{}", o.code, o.stdout, o.stderr);
                let _ = std::fs::write(dir.join(format!("{}.{who}.txt", self.name)), text);
            }
        }
        (runc, mini)
    }

    /// The case must run under runc, and mini-runtime must show the same.
    fn check_same(mut self) {
        let (runc, mini) = self.run_both();
        assert_eq!(
            runc.code,
            Some(PROBE_EXIT),
            "case {}: runc itself did not run the probe; the case is wrong.\nstderr: {}\nstdout: {}",
            self.name,
            runc.stderr,
            runc.stdout
        );
        let sections = split_sections(&runc.stdout);
        for (section, line) in &self.expected {
            let lines = sections
                .iter()
                .find(|(n, _)| n == section)
                .map(|(_, l)| normalise(section, l, &self.norm))
                .unwrap_or_default();
            assert!(
                lines.contains(line),
                "case {}: runc's section {section:?} lacks {line:?}; the case is wrong:\n{}",
                self.name,
                lines.join("\n")
            );
        }
        if let Err(report) = compare(self.name, &runc, &mini, &self.norm) {
            panic!("{report}");
        }
    }

    /// runc must refuse the case, and mini-runtime must refuse it too, with the same exit code.
    fn check_both_fail(mut self) {
        let (runc, mini) = self.run_both();
        assert!(
            runc.code != Some(PROBE_EXIT) && runc.code != Some(0),
            "case {}: runc accepted it; the case is wrong.\nstdout: {}",
            self.name,
            runc.stdout
        );
        assert_eq!(
            runc.code, mini.code,
            "case {}: runc failed (exit {:?}) but mini-runtime exited {:?}.\nrunc stderr: {}\nmini-runtime stderr: {}\nmini-runtime stdout: {}",
            self.name, runc.code, mini.code, runc.stderr, mini.stderr, mini.stdout
        );
    }
}

// ---------------------------------------------------------------------------
// Normalising and comparing
// ---------------------------------------------------------------------------

/// What the normaliser needs to know about the case.
#[derive(Debug, Default)]
struct Norm {
    /// Links (`net:[4026…]`) of namespaces the case joins by path.
    joined: Vec<String>,
    /// Differences that are runc's, not mini-runtime's. Each must still be seen,
    /// so that one runc has fixed is noticed.
    known: Vec<Known>,
}

/// In `section`, runc's lines containing `line` have `from` where mini-runtime
/// has `to`.
#[derive(Debug)]
struct Known {
    section: String,
    line: String,
    from: String,
    to: String,
}

type Sections = Vec<(String, Vec<String>)>;

fn split_sections(out: &str) -> Sections {
    let mut v: Sections = vec![("(before the first section)".to_string(), Vec::new())];
    for line in out.lines() {
        if let Some(name) = line.strip_prefix(MARK) {
            v.push((name.to_string(), Vec::new()));
        } else if let Some(last) = v.last_mut() {
            last.1.push(line.to_string());
        }
    }
    if v[0].1.is_empty() {
        v.remove(0);
    }
    v
}

fn normalise(section: &str, lines: &[String], norm: &Norm) -> Vec<String> {
    match section {
        "init-status" | "self-status" => lines
            .iter()
            .map(|l| match l.split_once(":\t") {
                // The shell may or may not have reached wait() when its child reads this.
                Some(("State", _)) if section == "init-status" => "State:\t<racy>".to_string(),
                _ => status_line(l),
            })
            .collect(),
        "mountinfo" => mountinfo(lines),
        "ns" => lines.iter().map(|l| ns_line(l, norm)).collect(),
        "env" => {
            // Variable order is not part of the contract; compare the set.
            let mut v = lines.to_vec();
            v.sort();
            v
        }
        s if s.starts_with("ls ") => lines
            .iter()
            .map(|l| {
                let l = ls_line(l);
                // The link count of procfs's root counts every process on the host.
                match l.split_once(' ') {
                    Some((mode, rest)) if l.ends_with(" proc") && mode.starts_with('d') => {
                        let rest = rest.split_once(' ').map_or(rest, |(_, r)| r);
                        format!("{mode} <n> {rest}")
                    }
                    _ => l,
                }
            })
            .collect(),
        _ => lines.to_vec(),
    }
}

fn status_line(l: &str) -> String {
    let Some((key, value)) = l.split_once(":\t") else {
        return l.to_string();
    };
    let value = match key {
        // Pids other than 0 and 1 count what else ran in the pid namespace: runc's
        // init is a Go program whose threads take pids 2-5 before the payload runs.
        "Pid" | "PPid" | "Tgid" | "NStgid" | "NSpid" | "NSpgid" | "NSsid" | "TracerPid" => value
            .split('\t')
            .map(|p| if p == "0" || p == "1" { p } else { "<pid>" })
            .collect::<Vec<_>>()
            .join("\t"),
        // Context switches, resident memory and page-table size differ between any
        // two runs of the same runtime (scheduling, ASLR, fault order).
        "voluntary_ctxt_switches"
        | "nonvoluntary_ctxt_switches"
        | "VmHWM"
        | "VmRSS"
        | "RssAnon"
        | "RssFile"
        | "RssShmem"
        | "VmPTE" => "<varies>".to_string(),
        // The first number counts signals queued host-wide for this uid right now.
        "SigQ" => match value.split_once('/') {
            Some((_, limit)) => format!("<queued>/{limit}"),
            None => value.to_string(),
        },
        _ => value.to_string(),
    };
    format!("{key}:\t{value}")
}

/// `ls -ln` prints the time each node was made, which differs between two runs.
fn ls_line(l: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t: Vec<&str> = l.split_whitespace().collect();
    match t.iter().skip(4).position(|w| MONTHS.contains(w)) {
        Some(p) if p + 4 + 3 < t.len() => {
            let i = p + 4;
            let mut v = t[..i].to_vec();
            v.extend_from_slice(&t[i + 3..]);
            v.join(" ")
        }
        _ => t.join(" "),
    }
}

/// Namespace inode numbers are fresh for every new namespace; what counts is
/// whether the container shares ours, joined the one it was given, or got a new one.
fn ns_line(l: &str, norm: &Norm) -> String {
    let Some((kind, link)) = l.split_once(' ') else {
        return l.to_string();
    };
    let ours = std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let what = if link.is_empty() {
        "(none)"
    } else if link == ours {
        "host"
    } else if norm.joined.iter().any(|j| j == link) {
        "joined"
    } else {
        "new"
    };
    format!("{kind} {what}")
}

/// Rewrites `/proc/self/mountinfo` lines without the numbers that differ per run.
fn mountinfo(lines: &[String]) -> Vec<String> {
    let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.split(' ').collect()).collect();
    let mut point_of_id: HashMap<&str, &str> = HashMap::new();
    let mut first_point_of_dev: HashMap<&str, &str> = HashMap::new();
    for f in fields.iter().filter(|f| f.len() >= 10) {
        point_of_id.insert(f[0], f[4]);
        first_point_of_dev.entry(f[2]).or_insert(f[4]);
    }
    let mut groups: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (f, line) in fields.iter().zip(lines) {
        let Some(sep) = f.iter().position(|w| *w == "-").filter(|s| *s >= 6) else {
            out.push(line.clone());
            continue;
        };
        // Mount ids are allocated system-wide: name a mount's parent by its mount point.
        let parent = point_of_id.get(f[1]).copied().unwrap_or("(outside)");
        // Anonymous devices (0:N: tmpfs, proc, sysfs, …) are numbered per instance:
        // name them by the first mount point showing that instance, so a bind from
        // the container's /dev still differs from a bind from the host's.
        let dev = if f[2].starts_with("0:") {
            format!("anon@{}", first_point_of_dev.get(f[2]).unwrap_or(&"?"))
        } else {
            f[2].to_string()
        };
        // Peer group ids are system-wide counters: number them by first appearance.
        let optional: Vec<String> = f[6..sep]
            .iter()
            .map(|o| match o.split_once(':') {
                Some((tag, n)) => {
                    let next = groups.len() + 1;
                    let k = *groups.entry(n.to_string()).or_insert(next);
                    format!("{tag}:#{k}")
                }
                None => o.to_string(),
            })
            .collect();
        let root = f[3];
        out.push(format!(
            "{point} parent={parent} dev={dev} root={root} {opts} [{optional}] - {rest}",
            point = f[4],
            opts = f[5],
            optional = optional.join(" "),
            rest = f[sep + 1..].join(" "),
        ));
    }
    out
}

/// Compares two runs; `Err` holds a readable report naming the case and sections.
fn compare(case: &str, runc: &Outcome, mini: &Outcome, norm: &Norm) -> Result<(), String> {
    let mut report = String::new();
    if runc.code != mini.code {
        report.push_str(&format!(
            "exit code: runc {:?}, mini-runtime {:?}\n",
            runc.code, mini.code
        ));
    }
    let a = split_sections(&runc.stdout);
    let b = split_sections(&mini.stdout);
    let mut names: Vec<&str> = a.iter().map(|(n, _)| n.as_str()).collect();
    for (n, _) in &b {
        if !names.contains(&n.as_str()) {
            names.push(n);
        }
    }
    let get = |s: &Sections, name: &str| -> Option<Vec<String>> {
        s.iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| normalise(name, l, norm))
    };
    let mut known_seen = vec![false; norm.known.len()];
    for name in names {
        let (mut la, lb) = (get(&a, name), get(&b, name));
        for (k, known) in norm.known.iter().enumerate() {
            if known.section != name {
                continue;
            }
            for line in la.iter_mut().flatten() {
                if line.contains(&known.line) && line.contains(&known.from) {
                    *line = line.replacen(&known.from, &known.to, 1);
                    known_seen[k] = true;
                }
            }
        }
        if la == lb {
            continue;
        }
        report.push_str(&format!("section {name:?} (- runc, + mini-runtime):\n"));
        match (la, lb) {
            (Some(la), Some(lb)) => report.push_str(&diff(&la, &lb)),
            (Some(_), None) => report.push_str("  missing from mini-runtime's output\n"),
            (None, _) => report.push_str("  missing from runc's output\n"),
        }
    }
    for (seen, k) in known_seen.iter().zip(&norm.known) {
        if !seen {
            report.push_str(&format!(
                "section {:?}: runc no longer shows {:?} in a line with {:?}; \
                 drop the known difference\n",
                k.section, k.from, k.line
            ));
        }
    }
    if report.is_empty() {
        return Ok(());
    }
    Err(format!(
        "case {case}: mini-runtime differs from runc\n{report}\
         --- runc stderr:\n{}\n--- mini-runtime stderr:\n{}",
        runc.stderr.trim_end(),
        mini.stderr.trim_end()
    ))
}

/// A line diff (longest common subsequence) with two lines of context.
fn diff(a: &[String], b: &[String]) -> String {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', &a[i]));
            i += 1;
            j += 1;
        } else if j >= m || (i < n && lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', &a[i]));
            i += 1;
        } else {
            ops.push(('+', &b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|k| ops[*k].0 != ' ').collect();
    let near = |k: usize| changed.iter().any(|c| c.abs_diff(k) <= 2);
    let mut s = String::new();
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if near(k) {
            if skipped {
                s.push_str("  …\n");
                skipped = false;
            }
            s.push_str(&format!("  {op}{line}\n"));
        } else {
            skipped = true;
        }
    }
    s
}

// ---------------------------------------------------------------------------
// Config helpers
// ---------------------------------------------------------------------------

fn namespaces(c: &mut Value) -> &mut Vec<Value> {
    c["linux"]["namespaces"]
        .as_array_mut()
        .expect("linux.namespaces is a list")
}

fn remove_ns(c: &mut Value, kind: &str) {
    namespaces(c).retain(|n| n["type"] != kind);
}

fn set_ns_path(c: &mut Value, kind: &str, path: &str) {
    remove_ns(c, kind);
    namespaces(c).push(json!({"type": kind, "path": path}));
}

fn caps_all_sets(c: &mut Value, caps: &[&str]) {
    c["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps,
        "inheritable": caps, "ambient": caps,
    });
}

/// The capabilities this process may hand on (its bounding set), by name.
fn caps_in_our_bounding_set() -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:\t"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .expect("CapBnd");
    CAPS.iter()
        .enumerate()
        .filter(|(i, _)| bnd & (1u64 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

fn kernel_caps() -> Vec<&'static str> {
    let last: usize = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("cap_last_cap");
    CAPS.iter().take(last + 1).copied().collect()
}

fn write(path: PathBuf, text: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn chmod(path: PathBuf, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A process holding fresh namespaces (made by `unshare`) for a case to join.
struct NsHolder {
    child: std::process::Child,
    /// The process whose namespaces are joined (the forked child for `--pid`).
    pid: u32,
}

impl NsHolder {
    fn new(unshare_flags: &[&str], fork: bool) -> NsHolder {
        let mut child = Command::new("unshare")
            .args(unshare_flags)
            .args(if fork {
                &["--fork", "--kill-child"][..]
            } else {
                &[]
            })
            .args(["sh", "-c", "hostname parity-joined; exec sleep 600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let deadline = Instant::now() + Duration::from_secs(30);
        let pid = loop {
            let target = if fork {
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
                    .ok()
                    .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
            } else {
                Some(child.id())
            };
            if let Some(p) = target
                && std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .ok()
                    .as_deref()
                    == Some("sleep\n")
            {
                break p;
            }
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                panic!("unshare {unshare_flags:?} did not start its sleep");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        NsHolder { child, pid }
    }

    fn path(&self, kind: &str) -> String {
        format!("/proc/{}/ns/{kind}", self.pid)
    }

    fn link(&self, kind: &str) -> String {
        std::fs::read_link(self.path(kind))
            .map(|p| p.to_string_lossy().into_owned())
            .expect("ns link")
    }
}

impl Drop for NsHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tmpfs mounted on the host for a case to bind from; unmounted on drop.
struct HostMount {
    dir: tempfile::TempDir,
}

impl HostMount {
    fn tmpfs(propagation: &str) -> HostMount {
        let dir = tempfile::Builder::new()
            .prefix("parity-src-")
            .tempdir()
            .expect("tempdir");
        let m = HostMount { dir };
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,mode=755", "parity-src"])
            .arg(m.dir.path())
            .status()
            .expect("mount");
        assert!(st.success(), "mount tmpfs on {}", m.dir.path().display());
        let st = Command::new("mount")
            .arg(format!("--make-{propagation}"))
            .arg(m.dir.path())
            .status()
            .expect("mount");
        assert!(st.success(), "mount --make-{propagation}");
        m
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        detach_mounts_under(self.dir.path());
    }
}

// ---------------------------------------------------------------------------
// The matrix
// ---------------------------------------------------------------------------

#[test]
fn spec_defaults_runc() {
    let Some(p) = Parity::new("spec_defaults_runc", Base::Runc) else {
        return;
    };
    p.check_same();
}

#[test]
fn spec_defaults_crun() {
    let Some(p) = Parity::new("spec_defaults_crun", Base::Crun) else {
        return;
    };
    p.check_same();
}

#[test]
fn spec_defaults_mini_runtime() {
    let Some(mut p) = Parity::new("spec_defaults_mini_runtime", Base::Mini) else {
        return;
    };
    p.expect("ns", "cgroup new");
    p.check_same();
}

#[test]
fn caps_empty() {
    let Some(mut p) = Parity::topic("caps_empty") else {
        return;
    };
    caps_all_sets(p.config(), &[]);
    p.check_same();
}

#[test]
fn caps_all_in_our_bounding_set() {
    let Some(mut p) = Parity::topic("caps_all_in_our_bounding_set") else {
        return;
    };
    caps_all_sets(p.config(), &caps_in_our_bounding_set());
    p.check_same();
}

#[test]
fn caps_all_the_kernel_has() {
    let Some(mut p) = Parity::topic("caps_all_the_kernel_has") else {
        return;
    };
    let all = kernel_caps();
    caps_all_sets(p.config(), &all);
    if all.len() == caps_in_our_bounding_set().len() {
        // Nothing is out of reach: both must grant everything.
        p.check_same();
    } else {
        // A capability outside our bounding set cannot be granted: both must refuse.
        p.check_both_fail();
    }
}

#[test]
fn caps_ambient_with_inheritable_non_root() {
    let Some(mut p) = Parity::topic("caps_ambient_with_inheritable_non_root") else {
        return;
    };
    let c = p.config();
    c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let caps = ["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN"];
    c["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps,
        "inheritable": caps, "ambient": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
    });
    // The ambient set survives the exec of a non-root user's child.
    p.expect("self-status", "CapAmb:\t0000000000000420");
    p.expect("self-status", "CapEff:\t0000000000000420");
    p.check_same();
}

#[test]
fn caps_ambient_without_inheritable_non_root() {
    let Some(mut p) = Parity::topic("caps_ambient_without_inheritable_non_root") else {
        return;
    };
    let c = p.config();
    c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let caps = ["CAP_NET_BIND_SERVICE", "CAP_KILL"];
    c["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps,
        "inheritable": [], "ambient": caps,
    });
    p.check_same();
}

#[test]
fn caps_non_root_without_ambient() {
    let Some(mut p) = Parity::topic("caps_non_root_without_ambient") else {
        return;
    };
    let c = p.config();
    c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let caps = ["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_SETUID"];
    c["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps,
    });
    p.check_same();
}

#[test]
fn user_uid_gid_additional_gids_umask() {
    let Some(mut p) = Parity::topic("user_uid_gid_additional_gids_umask") else {
        return;
    };
    p.config()["process"]["user"] =
        json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20, 1001], "umask": 0o077});
    chmod(p.rootfs().join("tmp"), 0o1777);
    p.section("ls umask", "touch /tmp/f && mkdir /tmp/d && ls -ln /tmp");
    p.check_same();
}

#[test]
fn user_from_etc_passwd_and_group() {
    let Some(mut p) = Parity::topic("user_from_etc_passwd_and_group") else {
        return;
    };
    write(
        p.rootfs().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nparity:x:1000:1000:parity:/home/parity:/bin/sh\n",
    );
    write(
        p.rootfs().join("etc/group"),
        "root:x:0:\nwheel:x:10:parity\nparity:x:1000:\nother:x:2000:\n",
    );
    let c = p.config();
    c["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [2000]});
    // No HOME: runc takes it from the user's /etc/passwd entry.
    c["process"]["env"] = json!(["PATH=/bin:/usr/bin", "TERM=xterm"]);
    p.check_same();
}

#[test]
fn user_root_with_additional_gids() {
    let Some(mut p) = Parity::topic("user_root_with_additional_gids") else {
        return;
    };
    p.config()["process"]["user"] = json!({"uid": 0, "gid": 0, "additionalGids": [5, 0, 7]});
    p.check_same();
}

#[test]
fn rlimits_lowered() {
    let Some(mut p) = Parity::topic("rlimits_lowered") else {
        return;
    };
    p.config()["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096},
        {"type": "RLIMIT_NPROC", "soft": 100, "hard": 200},
        {"type": "RLIMIT_STACK", "soft": 4194304, "hard": 8388608},
        {"type": "RLIMIT_MEMLOCK", "soft": 65536, "hard": 65536},
        {"type": "RLIMIT_MSGQUEUE", "soft": 4096, "hard": 8192},
        {"type": "RLIMIT_NICE", "soft": 0, "hard": 0},
        {"type": "RLIMIT_RTPRIO", "soft": 0, "hard": 0},
        {"type": "RLIMIT_AS", "soft": 1073741824, "hard": 2147483648u64},
        {"type": "RLIMIT_CPU", "soft": 100, "hard": 200},
        {"type": "RLIMIT_FSIZE", "soft": 1048576, "hard": 2097152},
        {"type": "RLIMIT_DATA", "soft": 536870912, "hard": 1073741824},
        {"type": "RLIMIT_LOCKS", "soft": 100, "hard": 200},
        {"type": "RLIMIT_SIGPENDING", "soft": 100, "hard": 200},
        {"type": "RLIMIT_RTTIME", "soft": 1000000, "hard": 2000000},
        {"type": "RLIMIT_RSS", "soft": 1048576, "hard": 2097152},
    ]);
    p.check_same();
}

#[test]
fn rlimits_absent() {
    let Some(mut p) = Parity::topic("rlimits_absent") else {
        return;
    };
    if let Some(proc) = p.config()["process"].as_object_mut() {
        proc.remove("rlimits");
    }
    p.check_same();
}

#[test]
fn rlimit_above_hard_limit_fails() {
    let Some(mut p) = Parity::topic("rlimit_above_hard_limit_fails") else {
        return;
    };
    // Raising a hard limit needs CAP_SYS_RESOURCE, which this kernel's bounding set lacks.
    p.config()["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1073741816u64},
    ]);
    p.check_both_fail();
}

#[test]
fn env_and_cwd() {
    let Some(mut p) = Parity::topic("env_and_cwd") else {
        return;
    };
    std::fs::create_dir_all(p.rootfs().join("srv/work")).expect("mkdir");
    let c = p.config();
    c["process"]["env"] = json!([
        "PATH=/bin",
        "A=1",
        "WITH_SPACE=a b  c",
        "EMPTY=",
        "EQUALS=x=y=z",
        "HOME=/srv",
        "TERM=dumb",
    ]);
    c["process"]["cwd"] = json!("/srv/work");
    p.check_same();
}

#[test]
fn env_without_home() {
    let Some(mut p) = Parity::topic("env_without_home") else {
        return;
    };
    p.config()["process"]["env"] = json!(["PATH=/bin", "TERM=xterm"]);
    p.check_same();
}

#[test]
fn env_duplicate_keys() {
    let Some(mut p) = Parity::topic("env_duplicate_keys") else {
        return;
    };
    p.config()["process"]["env"] = json!(["PATH=/bin", "HOME=/", "DUP=first", "DUP=second"]);
    p.check_same();
}

#[test]
fn cwd_missing_is_created() {
    let Some(mut p) = Parity::topic("cwd_missing_is_created") else {
        return;
    };
    p.config()["process"]["cwd"] = json!("/does/not/exist");
    p.ls("-d /does /does/not /does/not/exist");
    p.check_same();
}

#[test]
fn hostname_and_domainname() {
    let Some(mut p) = Parity::topic("hostname_and_domainname") else {
        return;
    };
    p.config()["hostname"] = json!("parity-host");
    p.config()["domainname"] = json!("parity.example");
    // runc sets `domainname` only from 1.2 on; 1.1 leaves the new UTS namespace's "(none)".
    p.known_difference("domainname", "(none)", "(none)", "parity.example");
    p.known_difference("sysctl", "kernel/domainname=", "(none)", "parity.example");
    p.check_same();
}

#[test]
fn sysctls() {
    let Some(mut p) = Parity::topic("sysctls") else {
        return;
    };
    p.config()["linux"]["sysctl"] = json!({
        "net.ipv4.ip_forward": "1",
        "net.ipv4.ip_unprivileged_port_start": "80",
        "net.ipv4.ping_group_range": "0 2147483647",
        "net.core.somaxconn": "1000",
        "kernel.shmmax": "68719476736",
        "kernel.msgmax": "16384",
        "kernel.sem": "250 32000 100 1024",
        "fs.mqueue.msg_max": "20",
    });
    p.check_same();
}

/// Cgroup limits as runc writes them into the v1 controllers, read back from
/// inside the container through its own cgroup mounts.
#[test]
fn cgroup_limits() {
    let Some(mut p) = Parity::topic("cgroup_limits") else {
        return;
    };
    p.config()["linux"]["resources"] = json!({
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}
        ],
        "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                   "swappiness": 30, "disableOOMKiller": false},
        "cpu": {"shares": 512, "quota": 25000, "period": 50000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 42}
    });
    p.section(
        "cgroup-files",
        "cd /sys/fs/cgroup && for f in memory/memory.limit_in_bytes \
         memory/memory.soft_limit_in_bytes memory/memory.memsw.limit_in_bytes \
         memory/memory.swappiness cpu/cpu.shares cpu/cpu.cfs_quota_us \
         cpu/cpu.cfs_period_us cpuset/cpuset.cpus cpuset/cpuset.mems pids/pids.max \
         devices/devices.list; do echo \"$f: $(cat $f | tr '\\n' ' ')\"; done",
    );
    p.section(
        "device-access",
        "head -c1 /dev/zero >/dev/null && echo zero-read; \
         (echo x > /dev/zero) 2>/dev/null && echo zero-write || echo zero-write-denied",
    );
    p.expect("cgroup-files", "pids/pids.max: 42 ");
    p.check_same();
}

#[test]
fn masked_and_readonly_paths() {
    let Some(mut p) = Parity::topic("masked_and_readonly_paths") else {
        return;
    };
    write(p.rootfs().join("etc/secret"), "secret\n");
    write(p.rootfs().join("srv/hidden/file"), "hidden\n");
    write(p.rootfs().join("srv/ro/file"), "ro\n");
    let c = p.config();
    c["linux"]["maskedPaths"] = json!([
        "/proc/acpi",
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/sys/firmware",
        "/etc/secret",
        "/srv/hidden",
        "/does/not/exist",
    ]);
    c["linux"]["readonlyPaths"] = json!([
        "/proc/bus",
        "/proc/sys",
        "/srv/ro",
        "/does/not/exist/either",
    ]);
    p.section(
        "masked",
        "for f in /proc/keys /proc/timer_list /etc/secret /srv/hidden/file /proc/acpi /sys/firmware; do \
         echo \"$f: $(stat -c '%F %a %s %u:%g' $f 2>&1) [$(cat $f 2>&1 | head -c 40)]\"; done",
    );
    p.section(
        "readonly",
        "touch /srv/ro/new; cat /srv/ro/file; echo 1 > /proc/sys/kernel/domainname",
    );
    p.applet("head");
    p.check_same();
}

#[test]
fn mounts_tmpfs_options() {
    let Some(mut p) = Parity::topic("mounts_tmpfs_options") else {
        return;
    };
    let c = p.config();
    let mounts = c["mounts"].as_array_mut().expect("mounts");
    mounts.push(
        json!({"destination": "/mnt/sized", "type": "tmpfs", "source": "tmpfs",
        "options": ["size=1m", "mode=1777", "nosuid", "nodev", "noexec"]}),
    );
    mounts.push(
        json!({"destination": "/mnt/private", "type": "tmpfs", "source": "parity",
        "options": ["mode=700", "uid=1000", "gid=1000", "nr_inodes=100", "ro"]}),
    );
    mounts.push(json!({"destination": "/mnt/plain", "type": "tmpfs", "source": "tmpfs"}));
    mounts.push(
        json!({"destination": "/mnt/atime", "type": "tmpfs", "source": "tmpfs",
        "options": ["noatime", "nodiratime", "sync", "dirsync"]}),
    );
    p.ls("-d /mnt /mnt/sized /mnt/private /mnt/plain /mnt/atime");
    p.section(
        "exec on noexec",
        "cp /bin/busybox /mnt/sized/bb && /mnt/sized/bb true",
    );
    p.applet("cp");
    p.check_same();
}

#[test]
fn mounts_tmpfs_on_an_existing_dir() {
    let Some(mut p) = Parity::topic("mounts_tmpfs_on_an_existing_dir") else {
        return;
    };
    std::fs::create_dir_all(p.rootfs().join("srv/data")).expect("mkdir");
    chmod(p.rootfs().join("srv/data"), 0o750);
    let c = p.config();
    let mounts = c["mounts"].as_array_mut().expect("mounts");
    mounts.push(
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
        "options": ["mode=1777", "nosuid", "nodev"]}),
    );
    mounts.push(json!({"destination": "/srv/data", "type": "tmpfs", "source": "tmpfs"}));
    p.ls("-d /tmp /srv/data");
    // runc 1.1 gives the tmpfs the directory's mode even over an explicit mode=
    // (runc 1.2 lets the option win).
    p.known_difference("ls /", " tmp", "drwxr-xr-x", "drwxrwxrwt");
    p.known_difference("ls -d /tmp /srv/data", " /tmp", "drwxr-xr-x", "drwxrwxrwt");
    p.check_same();
}

#[test]
fn mounts_dev_read_only() {
    let Some(mut p) = Parity::topic("mounts_dev_read_only") else {
        return;
    };
    for m in p.config()["mounts"].as_array_mut().expect("mounts") {
        if m["destination"] == "/dev" {
            m["options"]
                .as_array_mut()
                .expect("options")
                .push(json!("ro"));
        }
    }
    p.check_same();
}

#[test]
fn mounts_bind_ro_and_flags() {
    let Some(mut p) = Parity::topic("mounts_bind_ro_and_flags") else {
        return;
    };
    let src = tempfile::Builder::new()
        .prefix("parity-bind-")
        .tempdir()
        .expect("tempdir");
    write(src.path().join("file"), "from the host\n");
    std::fs::copy("/bin/busybox", src.path().join("bb")).expect("copy busybox");
    let file_src = src.path().join("file");
    let c = p.config();
    let mounts = c["mounts"].as_array_mut().expect("mounts");
    mounts.push(
        json!({"destination": "/mnt/ro", "type": "bind", "source": src.path(),
        "options": ["bind", "ro"]}),
    );
    mounts.push(
        json!({"destination": "/mnt/flags", "type": "none", "source": src.path(),
        "options": ["rbind", "nosuid", "nodev", "noexec"]}),
    );
    mounts.push(
        json!({"destination": "/mnt/rw", "type": "none", "source": src.path(),
        "options": ["bind", "rw"]}),
    );
    mounts.push(
        json!({"destination": "/etc/hostfile", "type": "bind", "source": file_src,
        "options": ["bind", "ro"]}),
    );
    p.ls("-d /mnt/ro /mnt/flags /mnt/rw /etc/hostfile");
    p.section(
        "bind behaviour",
        "cat /mnt/ro/file /etc/hostfile; touch /mnt/ro/x; /mnt/flags/bb true; /mnt/rw/bb true",
    );
    p.check_same();
}

#[test]
fn mounts_rbind_and_bind_of_a_tree() {
    let Some(mut p) = Parity::topic("mounts_rbind_and_bind_of_a_tree") else {
        return;
    };
    let src = HostMount::tmpfs("private");
    std::fs::create_dir_all(src.path().join("sub")).expect("mkdir");
    write(src.path().join("top"), "top\n");
    let sub = src.path().join("sub");
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "parity-sub"])
        .arg(&sub)
        .status()
        .expect("mount");
    assert!(st.success());
    write(sub.join("below"), "below\n");
    let c = p.config();
    let mounts = c["mounts"].as_array_mut().expect("mounts");
    mounts.push(
        json!({"destination": "/mnt/rbind", "type": "bind", "source": src.path(),
        "options": ["rbind", "ro"]}),
    );
    mounts.push(
        json!({"destination": "/mnt/bind", "type": "bind", "source": src.path(),
        "options": ["bind"]}),
    );
    // Nothing is written there: the source outlives the first run.
    p.ls("/mnt/rbind /mnt/rbind/sub /mnt/bind /mnt/bind/sub");
    p.check_same();
}

#[test]
fn mounts_propagation() {
    let Some(mut p) = Parity::topic("mounts_propagation") else {
        return;
    };
    let shared = HostMount::tmpfs("shared");
    write(shared.path().join("f"), "shared\n");
    let c = p.config();
    let mounts = c["mounts"].as_array_mut().expect("mounts");
    for prop in [
        "rprivate", "rslave", "rshared", "private", "slave", "shared",
    ] {
        mounts.push(
            json!({"destination": format!("/mnt/{prop}"), "type": "bind",
            "source": shared.path(), "options": ["rbind", prop]}),
        );
    }
    mounts.push(
        json!({"destination": "/mnt/tmpfs-shared", "type": "tmpfs", "source": "tmpfs",
        "options": ["rshared"]}),
    );
    p.check_same();
}

#[test]
fn rootfs_propagation_shared() {
    let Some(mut p) = Parity::topic("rootfs_propagation_shared") else {
        return;
    };
    p.config()["linux"]["rootfsPropagation"] = json!("shared");
    // runc before 1.4 applies it to the host's `/` copy only, so its container root
    // ends up private; runc 1.4 applies it after pivot_root, as mini-runtime does.
    p.known_difference("mountinfo", "/ parent=(outside)", "[] - ", "[shared:#1] - ");
    p.check_same();
}

#[test]
fn rootfs_propagation_slave() {
    let Some(mut p) = Parity::topic("rootfs_propagation_slave") else {
        return;
    };
    p.config()["linux"]["rootfsPropagation"] = json!("slave");
    p.check_same();
}

#[test]
fn rootfs_propagation_private() {
    let Some(mut p) = Parity::topic("rootfs_propagation_private") else {
        return;
    };
    p.config()["linux"]["rootfsPropagation"] = json!("private");
    p.check_same();
}

#[test]
fn readonly_root() {
    let Some(mut p) = Parity::topic("readonly_root") else {
        return;
    };
    p.config()["root"]["readonly"] = json!(true);
    p.check_same();
}

#[test]
fn devices() {
    let Some(mut p) = Parity::topic("devices") else {
        return;
    };
    p.config()["linux"]["devices"] = json!([
        {"path": "/dev/parity-char", "type": "c", "major": 1, "minor": 7, "fileMode": 0o600,
         "uid": 1000, "gid": 1000},
        {"path": "/dev/parity-block", "type": "b", "major": 7, "minor": 200, "fileMode": 0o640},
        {"path": "/dev/parity-fifo", "type": "p", "major": 0, "minor": 0},
        {"path": "/dev/sub/dir/parity-nested", "type": "u", "major": 1, "minor": 5},
        {"path": "/dev/parity-nomode", "type": "c", "major": 1, "minor": 9},
    ]);
    p.ls("/dev/sub /dev/sub/dir");
    p.section(
        "device use",
        "echo x > /dev/parity-char; head -c 4 /dev/sub/dir/parity-nested | wc -c",
    );
    p.applet("head");
    p.check_same();
}

#[test]
fn ns_joined_by_path() {
    let Some(mut p) = Parity::topic("ns_joined_by_path") else {
        return;
    };
    let holder = NsHolder::new(&["--net", "--uts", "--ipc"], false);
    let c = p.config();
    if let Some(o) = c.as_object_mut() {
        // A hostname needs a UTS namespace of the container's own.
        o.remove("hostname");
    }
    set_ns_path(c, "network", &holder.path("net"));
    set_ns_path(c, "uts", &holder.path("uts"));
    set_ns_path(c, "ipc", &holder.path("ipc"));
    for kind in ["net", "uts", "ipc"] {
        p.joined_ns(holder.link(kind));
        p.expect("ns", &format!("{kind} joined"));
    }
    p.expect("hostname", "parity-joined");
    p.check_same();
}

#[test]
fn ns_joined_pid_namespace() {
    let Some(mut p) = Parity::topic("ns_joined_pid_namespace") else {
        return;
    };
    let holder = NsHolder::new(&["--pid"], true);
    set_ns_path(p.config(), "pid", &holder.path("pid"));
    p.joined_ns(holder.link("pid"));
    p.expect("ns", "pid joined");
    p.check_same();
}

#[test]
fn ns_shared_with_the_host() {
    let Some(mut p) = Parity::topic("ns_shared_with_the_host") else {
        return;
    };
    let c = p.config();
    for kind in ["network", "ipc", "uts", "pid", "cgroup"] {
        remove_ns(c, kind);
    }
    if let Some(o) = c.as_object_mut() {
        o.remove("hostname");
    }
    for kind in ["net", "ipc", "uts", "pid"] {
        p.expect("ns", &format!("{kind} host"));
    }
    p.expect("ns", "mnt new");
    p.check_same();
}

#[test]
fn ns_without_mount_namespace() {
    let Some(mut p) = Parity::topic("ns_without_mount_namespace") else {
        return;
    };
    let c = p.config();
    remove_ns(c, "mount");
    // Masking and read-only paths would change the host's own /proc and /sys; runc
    // refuses them without a mount namespace of the container's own.
    if let Some(l) = c["linux"].as_object_mut() {
        l.remove("maskedPaths");
        l.remove("readonlyPaths");
    }
    p.expect("ns", "mnt host");
    p.check_same();
}

#[test]
fn ns_without_mount_namespace_but_masks_fails() {
    let Some(mut p) = Parity::topic("ns_without_mount_namespace_but_masks_fails") else {
        return;
    };
    // runc refuses masked and read-only paths without a mount namespace of the
    // container's own ("unable to restrict sys entries").
    remove_ns(p.config(), "mount");
    p.check_both_fail();
}

#[test]
fn oom_score_adj_positive() {
    let Some(mut p) = Parity::topic("oom_score_adj_positive") else {
        return;
    };
    p.config()["process"]["oomScoreAdj"] = json!(500);
    p.check_same();
}

#[test]
fn oom_score_adj_negative_fails() {
    let Some(mut p) = Parity::topic("oom_score_adj_negative_fails") else {
        return;
    };
    // Lowering oom_score_adj needs CAP_SYS_RESOURCE, which this kernel's bounding set lacks.
    p.config()["process"]["oomScoreAdj"] = json!(-500);
    p.check_both_fail();
}

#[test]
fn no_new_privileges_true() {
    let Some(mut p) = Parity::topic("no_new_privileges_true") else {
        return;
    };
    p.config()["process"]["noNewPrivileges"] = json!(true);
    p.check_same();
}

#[test]
fn no_new_privileges_false() {
    let Some(mut p) = Parity::topic("no_new_privileges_false") else {
        return;
    };
    p.config()["process"]["noNewPrivileges"] = json!(false);
    p.check_same();
}

// ---------------------------------------------------------------------------
// The harness itself
// ---------------------------------------------------------------------------

/// Probe output as the script prints it, from (section, lines) pairs.
fn probe_output(sections: &[(&str, &[&str])]) -> String {
    let mut s = String::new();
    for (name, lines) in sections {
        s.push_str(&format!("{MARK}{name}\n"));
        for l in *lines {
            s.push_str(l);
            s.push('\n');
        }
    }
    s
}

fn outcome(code: i32, stdout: String) -> Outcome {
    Outcome {
        code: Some(code),
        stdout,
        stderr: String::new(),
    }
}

#[test]
fn compare_reports_a_planted_difference() {
    let norm = Norm::default();
    let a = probe_output(&[
        ("hostname", &["runc-side", "exit=0"]),
        ("pwd", &["/", "exit=0"]),
    ]);
    let b = probe_output(&[
        ("hostname", &["mini-side", "exit=0"]),
        ("pwd", &["/", "exit=0"]),
    ]);
    assert!(
        compare(
            "same",
            &outcome(7, a.clone()),
            &outcome(7, a.clone()),
            &norm
        )
        .is_ok()
    );
    let err = compare("planted", &outcome(7, a.clone()), &outcome(7, b), &norm)
        .expect_err("a changed hostname must be reported");
    assert!(err.contains("case planted"), "{err}");
    assert!(err.contains("section \"hostname\""), "{err}");
    assert!(
        err.contains("-runc-side") && err.contains("+mini-side"),
        "{err}"
    );
    assert!(!err.contains("section \"pwd\""), "{err}");
    let err = compare(
        "code",
        &outcome(7, a.clone()),
        &outcome(1, a.clone()),
        &norm,
    )
    .expect_err("a different exit code must be reported");
    assert!(
        err.contains("exit code: runc Some(7), mini-runtime Some(1)"),
        "{err}"
    );
    let short = probe_output(&[("hostname", &["runc-side", "exit=0"])]);
    let err = compare("missing", &outcome(7, a), &outcome(7, short), &norm)
        .expect_err("a missing section must be reported");
    assert!(
        err.contains("section \"pwd\"") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn normalising_hides_only_what_must_differ() {
    let norm = Norm::default();
    let mi = |lines: &[&str]| probe_output(&[("mountinfo", lines)]);
    let runc = mi(&[
        "68 46 254:0 /b/rootfs / rw,relatime - ext4 /dev/vda rw",
        "70 68 0:42 / /dev rw,nosuid shared:12 - tmpfs tmpfs rw,mode=755",
        "52 69 0:42 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,mode=755",
        "76 75 0:29 /c1 /sys/fs/cgroup/cpu ro - cgroup cgroup rw,cpu",
    ]);
    let renumbered = mi(&[
        "90 12 254:0 /b/rootfs / rw,relatime - ext4 /dev/vda rw",
        "91 90 0:50 / /dev rw,nosuid shared:3 - tmpfs tmpfs rw,mode=755",
        "95 92 0:50 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,mode=755",
        "96 93 0:29 /c1 /sys/fs/cgroup/cpu ro - cgroup cgroup rw,cpu",
    ]);
    assert!(
        compare(
            "ids",
            &outcome(7, runc.clone()),
            &outcome(7, renumbered),
            &norm
        )
        .is_ok()
    );
    // Both runtimes make cgroups now: showing another cgroup is a real difference.
    let other_cgroup = mi(&[
        "68 46 254:0 /b/rootfs / rw,relatime - ext4 /dev/vda rw",
        "70 68 0:42 / /dev rw,nosuid shared:12 - tmpfs tmpfs rw,mode=755",
        "52 69 0:42 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,mode=755",
        "76 75 0:29 / /sys/fs/cgroup/cpu ro - cgroup cgroup rw,cpu",
    ]);
    assert!(
        compare(
            "cgroup",
            &outcome(7, runc.clone()),
            &outcome(7, other_cgroup),
            &norm
        )
        .is_err()
    );
    // Binding the host's /dev/null instead of the container's is a real difference.
    let host_null = mi(&[
        "68 46 254:0 /b/rootfs / rw,relatime - ext4 /dev/vda rw",
        "70 68 0:42 / /dev rw,nosuid shared:12 - tmpfs tmpfs rw,mode=755",
        "52 69 0:6 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,mode=755",
        "76 75 0:29 /c1 /sys/fs/cgroup/cpu ro - cgroup cgroup rw,cpu",
    ]);
    assert!(
        compare(
            "null",
            &outcome(7, runc.clone()),
            &outcome(7, host_null),
            &norm
        )
        .is_err()
    );
    let option = mi(&[
        "68 46 254:0 /b/rootfs / rw,relatime - ext4 /dev/vda rw",
        "70 68 0:42 / /dev rw,nosuid,noexec shared:12 - tmpfs tmpfs rw,mode=755",
        "52 69 0:42 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,mode=755",
        "76 75 0:29 /c1 /sys/fs/cgroup/cpu ro - cgroup cgroup rw,cpu",
    ]);
    let err = compare("opt", &outcome(7, runc.clone()), &outcome(7, option), &norm)
        .expect_err("an added mount option must be reported");
    assert!(err.contains("section \"mountinfo\""), "{err}");
    let unshared = mi(&[
        "68 46 254:0 /b/rootfs / rw,relatime - ext4 /dev/vda rw",
        "70 68 0:42 / /dev rw,nosuid - tmpfs tmpfs rw,mode=755",
        "52 69 0:42 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,mode=755",
        "76 75 0:29 /c1 /sys/fs/cgroup/cpu ro - cgroup cgroup rw,cpu",
    ]);
    assert!(compare("peer", &outcome(7, runc), &outcome(7, unshared), &norm).is_err());

    let st = |pid: &str, caps: &str| {
        probe_output(&[(
            "self-status",
            &[
                &format!("Pid:\t{pid}"),
                &format!("CapEff:\t{caps}"),
                "voluntary_ctxt_switches:\t3",
            ],
        )])
    };
    assert!(
        compare(
            "pid",
            &outcome(7, st("6", "20")),
            &outcome(7, st("2", "20")),
            &norm
        )
        .is_ok()
    );
    assert!(
        compare(
            "init",
            &outcome(7, st("1", "20")),
            &outcome(7, st("2", "20")),
            &norm
        )
        .is_err()
    );
    assert!(
        compare(
            "cap",
            &outcome(7, st("6", "20")),
            &outcome(7, st("6", "21")),
            &norm
        )
        .is_err()
    );

    let ls = |time: &str, mode: &str| {
        probe_output(&[(
            "ls /dev",
            &[&format!(
                "{mode}    1 0        0           1,   3 {time} null"
            )],
        )])
    };
    let (a, b) = (
        ls("Dec  1 19:32", "crw-rw-rw-"),
        ls("Jan 12  2024", "crw-rw-rw-"),
    );
    assert!(compare("ls", &outcome(7, a.clone()), &outcome(7, b), &norm).is_ok());
    let c = ls("Dec  1 19:32", "crw-------");
    assert!(compare("ls", &outcome(7, a), &outcome(7, c), &norm).is_err());
}

#[test]
fn harness_catches_a_changed_hostname() {
    let Some(mut p) = Parity::topic("harness_catches_a_changed_hostname") else {
        return;
    };
    p.config()["hostname"] = json!("parity-one");
    let id = unique_id("planted");
    let runc = p.run_runc(&id);
    p.config()["hostname"] = json!("parity-two");
    let mini = p.run_mini(&id);
    let err = compare(p.name, &runc, &mini, &p.norm)
        .expect_err("a changed hostname must fail the comparison");
    assert!(err.contains("section \"hostname\""), "{err}");
    assert!(
        err.contains("-parity-one") && err.contains("+parity-two"),
        "{err}"
    );
}
