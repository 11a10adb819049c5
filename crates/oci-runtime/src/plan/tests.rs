//! Plans are plain data: built here from small bundles in temp dirs with a
//! fake proc root, and checked field by field. None of this needs root.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;
use crate::error::Error;

/// A bundle dir with an empty rootfs, and a proc root whose
/// `sys/kernel/cap_last_cap` holds `last_cap`.
struct Fixture {
    tmp: tempfile::TempDir,
    proc_root: PathBuf,
}

impl Fixture {
    fn new(last_cap: u32) -> Self {
        let tmp = tempfile::tempdir().expect("make temp dir");
        std::fs::create_dir(tmp.path().join("rootfs")).expect("make rootfs");
        let proc_root = tmp.path().join("proc");
        std::fs::create_dir_all(proc_root.join("sys/kernel")).expect("make fake proc root");
        std::fs::write(
            proc_root.join("sys/kernel/cap_last_cap"),
            format!("{last_cap}\n"),
        )
        .expect("write cap_last_cap");
        Fixture { tmp, proc_root }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn bundle(&self, config: &Value) -> Bundle {
        Bundle {
            dir: self.dir().to_path_buf(),
            spec: serde_json::from_value(config.clone()).expect("config parses as a spec"),
            rootfs: self.dir().join("rootfs"),
        }
    }

    fn build(&self, config: &Value, opts: &PlanOptions) -> Result<InitPlan> {
        build(&self.bundle(config), opts, &self.proc_root)
    }

    fn plan(&self, config: &Value) -> InitPlan {
        self.build(config, &PlanOptions::default())
            .expect("plan builds")
    }
}

fn plan(config: &Value) -> InitPlan {
    Fixture::new(40).plan(config)
}

/// The field an invalid-config error names.
fn refused(config: &Value) -> String {
    match Fixture::new(40).build(config, &PlanOptions::default()) {
        Err(Error::InvalidConfig { field, .. }) => field,
        Err(e) => panic!("expected an invalid-config error, got {e}"),
        Ok(p) => panic!("expected an invalid-config error, got a plan: {p:?}"),
    }
}

/// A minimal config: `sh` in new mount and pid namespaces.
fn config() -> Value {
    json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs"},
        "process": {
            "args": ["sh"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
            "env": ["PATH=/usr/bin:/bin"]
        },
        "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
    })
}

fn cs(s: &str) -> CString {
    CString::new(s).expect("test string has no NUL")
}

fn rootfs(p: &InitPlan) -> &RootfsPlan {
    p.rootfs.as_ref().expect("the plan has a rootfs part")
}

fn dev_names(r: &RootfsPlan) -> Vec<String> {
    r.devices
        .iter()
        .map(|d| format!("{}/{}", d.parent.display, d.name.to_string_lossy()))
        .collect()
}

const DEFAULT_DEVICES: [&str; 6] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

#[test]
fn new_namespaces_are_created_by_clone() {
    let mut c = config();
    c["linux"]["namespaces"] = json!([
        {"type": "mount"}, {"type": "pid"}, {"type": "network"},
        {"type": "ipc"}, {"type": "uts"}, {"type": "cgroup"}
    ]);
    let p = plan(&c);
    let all = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP;
    // The cgroup namespace is unshared after the v1 cgroups are joined.
    assert_eq!(p.clone_flags, (all & !libc::CLONE_NEWCGROUP) as u64);
    assert_eq!(p.unshare_flags, libc::CLONE_NEWCGROUP);
    assert!(p.join.is_empty());
    assert!(!p.two_stage, "nothing joined, no time namespace");
    assert!(!p.new_user);
    assert_eq!(rootfs(&p).enter, EnterRoot::Pivot);

    let opts = PlanOptions {
        no_pivot: true,
        ..PlanOptions::default()
    };
    let p = Fixture::new(40).build(&c, &opts).expect("plan builds");
    assert_eq!(rootfs(&p).enter, EnterRoot::MoveChroot);
}

#[test]
fn joined_namespaces_come_first_and_new_ones_are_unshared_after() {
    let mut c = config();
    c["linux"]["namespaces"] = json!([
        {"type": "network", "path": "/run/netns/a"},
        {"type": "pid"},
        {"type": "user", "path": "/proc/9/ns/user"},
        {"type": "mount"}
    ]);
    let p = plan(&c);
    // New namespaces made by clone3 would belong to the caller's user
    // namespace, not the joined one: they are unshared after the joins.
    assert_eq!(p.clone_flags, 0);
    assert_eq!(p.unshare_flags, libc::CLONE_NEWPID | libc::CLONE_NEWNS);
    assert!(p.two_stage);
    assert!(!p.new_user, "the user namespace is joined, not made");
    let join: Vec<_> = p
        .join
        .iter()
        .map(|j| (j.path.as_path(), j.nstype))
        .collect();
    assert_eq!(
        join,
        [
            (Path::new("/proc/9/ns/user"), libc::CLONE_NEWUSER),
            (Path::new("/run/netns/a"), libc::CLONE_NEWNET),
        ],
        "the user namespace is joined first"
    );

    // Joining only a network namespace still keeps the new ones out of clone3.
    c["linux"]["namespaces"] = json!([
        {"type": "network", "path": "/run/netns/a"},
        {"type": "mount"}
    ]);
    let p = plan(&c);
    assert_eq!(p.clone_flags, 0);
    assert_eq!(p.unshare_flags, libc::CLONE_NEWNS);
}

#[test]
fn time_namespace_is_two_stage_with_offsets_as_the_kernel_reads_them() {
    let mut c = config();
    c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "pid"}, {"type": "time"}]);
    c["linux"]["timeOffsets"] = json!({"monotonic": {"secs": 86400, "nanosecs": 7}});
    let p = plan(&c);
    assert!(
        p.two_stage,
        "only children enter an unshared time namespace"
    );
    assert_eq!(p.clone_flags, 0);
    assert_eq!(
        p.unshare_flags,
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWTIME
    );
    assert_eq!(p.time_offsets, Some(cs("monotonic 86400 7\n")));

    // One line per clock; a missing field is 0.
    c["linux"]["timeOffsets"] = json!({"boottime": {"secs": -5}, "monotonic": {"nanosecs": 1}});
    let text = plan(&c).time_offsets.expect("offsets planned");
    let mut lines: Vec<_> = text.to_str().expect("ASCII").lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["boottime -5 0", "monotonic 0 1"]);

    c["linux"]["timeOffsets"] = json!({});
    assert_eq!(plan(&c).time_offsets, None);
}

#[test]
fn new_user_namespace_gets_id_maps_and_binds_host_devices() {
    let mut c = config();
    c["linux"]["namespaces"] = json!([{"type": "user"}, {"type": "mount"}, {"type": "pid"}]);
    c["linux"]["uidMappings"] = json!([
        {"containerID": 0, "hostID": 100000, "size": 65536},
        {"containerID": 65536, "hostID": 1000, "size": 1}
    ]);
    c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 10}]);
    let p = plan(&c);
    assert!(p.new_user);
    assert_ne!(p.clone_flags & libc::CLONE_NEWUSER as u64, 0);
    assert!(!p.two_stage);
    assert_eq!(p.uid_map, "0 100000 65536\n65536 1000 1\n");
    assert_eq!(p.gid_map, "0 200000 10\n");
    // mknod is not allowed in a user namespace: each default device is a
    // bind of the host's node of the same name.
    let r = rootfs(&p);
    assert_eq!(dev_names(r), DEFAULT_DEVICES);
    for (d, path) in r.devices.iter().zip(DEFAULT_DEVICES) {
        assert_eq!(d.host, cs(path));
    }

    let p = plan(&config());
    assert_eq!((p.uid_map.as_str(), p.gid_map.as_str()), ("", ""));
    assert!(rootfs(&p).devices.iter().all(|d| d.host.is_empty()));
}

#[test]
fn sharing_the_mount_namespace_enters_by_chroot() {
    let mut c = config();
    c["linux"]["namespaces"] = json!([{"type": "pid"}]);
    let opts = PlanOptions {
        no_pivot: true,
        ..PlanOptions::default()
    };
    let p = Fixture::new(40).build(&c, &opts).expect("plan builds");
    assert_eq!(rootfs(&p).enter, EnterRoot::Chroot);
    assert!(rootfs(&p).enter.shares_mount_ns());
}

#[test]
fn sysctls_become_proc_paths_sorted_by_name() {
    let mut c = config();
    c["linux"]["sysctl"] = json!({
        "net.ipv4.ip_forward": "1",
        "kernel.shm_rmid_forced": "1",
        "net.core.somaxconn": "128"
    });
    let p = plan(&c);
    assert_eq!(
        p.sysctl,
        [
            (cs("sys/kernel/shm_rmid_forced"), cs("1")),
            (cs("sys/net/core/somaxconn"), cs("128")),
            (cs("sys/net/ipv4/ip_forward"), cs("1")),
        ]
    );
}

#[test]
fn capability_masks_drop_what_the_kernel_does_not_know() {
    let mut c = config();
    c["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"],
        "effective": ["CAP_KILL"],
        "permitted": ["CAP_KILL", "CAP_BPF"],
        "inheritable": []
    });
    // A kernel whose last capability is CAP_PERFMON (38).
    let p = Fixture::new(38).plan(&c);
    assert_eq!(p.last_cap, 38);
    let caps = p.process.caps.expect("capabilities planned");
    assert_eq!(caps.bounding, 1 | 1 << 5 | 1 << 38);
    assert_eq!(caps.effective, 1 << 5);
    assert_eq!(caps.permitted, 1 << 5, "CAP_BPF (39) is above last_cap");
    assert_eq!(caps.inheritable, 0);
    assert_eq!(caps.ambient, 0, "absent set");

    let p = Fixture::new(40).plan(&c);
    assert_eq!(p.process.caps.map(|c| c.permitted), Some(1 << 5 | 1 << 39));

    // Without cap_last_cap the plan assumes the capabilities this runtime knows.
    let f = Fixture::new(40);
    std::fs::remove_file(f.proc_root.join("sys/kernel/cap_last_cap")).expect("rm cap_last_cap");
    assert_eq!(f.plan(&c).last_cap, 40);

    assert_eq!(plan(&config()).process.caps, None, "no capabilities given");
}

#[test]
fn rlimits_keep_their_order_values_and_names() {
    let mut c = config();
    c["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": u64::MAX}
    ]);
    let got: Vec<_> = plan(&c)
        .process
        .rlimits
        .into_iter()
        .map(|r| (r.resource, r.soft, r.hard, r.name))
        .collect();
    assert_eq!(
        got,
        [
            (
                libc::RLIMIT_NOFILE as libc::c_int,
                1024,
                4096,
                "RLIMIT_NOFILE".to_string()
            ),
            (
                libc::RLIMIT_CORE as libc::c_int,
                0,
                u64::MAX,
                "RLIMIT_CORE".to_string()
            ),
        ]
    );
}

#[test]
fn a_bare_program_name_is_searched_in_path() {
    let candidates = |args: Value, env: Value| {
        let mut c = config();
        c["process"]["args"] = args;
        c["process"]["env"] = env;
        plan(&c).process.path_dirs
    };
    assert_eq!(
        candidates(
            json!(["sh"]),
            json!(["HOME=/", "PATH=/usr/local/bin::/bin"])
        ),
        [cs("/usr/local/bin/sh"), cs("/bin/sh")],
        "empty PATH entries are skipped"
    );
    // As runc, which sets each entry in order: the last PATH wins.
    assert_eq!(
        candidates(json!(["sh"]), json!(["PATH=/a", "PATH=/b"])),
        [cs("/b/sh")]
    );
    assert_eq!(
        candidates(json!(["sh"]), json!([])),
        [
            cs("/usr/local/sbin/sh"),
            cs("/usr/local/bin/sh"),
            cs("/usr/sbin/sh"),
            cs("/usr/bin/sh"),
            cs("/sbin/sh"),
            cs("/bin/sh"),
        ],
        "no PATH: the usual default"
    );
    for arg0 in ["/bin/sh", "./sh", "bin/sh"] {
        assert_eq!(
            candidates(json!([arg0]), json!(["PATH=/usr/bin"])),
            Vec::<CString>::new(),
            "{arg0} is a path, not searched"
        );
    }
}

#[test]
fn default_devices_unless_dev_is_a_bind_mount() {
    let r = plan(&config()).rootfs.expect("rootfs planned");
    assert!(r.populate_dev);
    assert_eq!(dev_names(&r), DEFAULT_DEVICES);
    let rdevs: Vec<_> = r.devices.iter().map(|d| (d.mode, d.rdev)).collect();
    let chr = |maj, min| (libc::S_IFCHR | 0o666, libc::makedev(maj, min));
    assert_eq!(
        rdevs,
        [
            chr(1, 3),
            chr(1, 5),
            chr(1, 7),
            chr(1, 8),
            chr(1, 9),
            chr(5, 0)
        ]
    );

    // A tmpfs on /dev still gets them.
    let mut c = config();
    c["mounts"] = json!([{"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}]);
    assert_eq!(dev_names(rootfs(&plan(&c))), DEFAULT_DEVICES);

    // A bind-mounted /dev is the host's: nothing is created in it.
    let f = Fixture::new(40);
    let host_dev = f.dir().join("hostdev");
    std::fs::create_dir(&host_dev).expect("make bind source");
    c["mounts"] = json!([{
        "destination": "/dev", "type": "bind", "source": host_dev, "options": ["rbind"]
    }]);
    // Not even the config's own devices, which would replace the host's nodes.
    c["linux"]["devices"] =
        json!([{"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600}]);
    let p = f.plan(&c);
    let r = rootfs(&p);
    assert!(!r.populate_dev);
    assert!(r.devices.is_empty());
    assert_eq!(
        r.mounts[0].kind,
        MountKind::Bind {
            source: cs(host_dev.to_str().expect("UTF-8 temp path")),
            recursive: true,
            source_is_dir: true,
        }
    );
}

#[test]
fn a_configured_device_replaces_the_default_of_the_same_path() {
    let mut c = config();
    c["linux"]["devices"] = json!([
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 5, "gid": 6},
        {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200},
        {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0},
        {"path": "/dev/fifo", "type": "p", "major": 0, "minor": 0}
    ]);
    let p = plan(&c);
    let r = rootfs(&p);
    assert_eq!(
        dev_names(r),
        [
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
            "/dev/tty",
            "/dev/null",
            "/dev/net/tun",
            "/dev/sda",
            "/dev/fifo",
        ]
    );
    let null = &r.devices[5];
    assert_eq!(
        (null.mode, null.rdev, null.uid, null.gid),
        (libc::S_IFCHR | 0o600, libc::makedev(1, 3), 5, 6)
    );
    assert_eq!(null.host, cs("/dev/null"));
    let tun = &r.devices[6];
    assert_eq!(tun.parent.full, cs("dev/net"));
    assert_eq!(tun.parent.prefixes, [cs("dev"), cs("dev/net")]);
    assert_eq!(
        (tun.mode, tun.rdev, tun.uid, tun.gid),
        (libc::S_IFCHR | 0o666, libc::makedev(10, 200), 0, 0),
        "defaults: 0666, root-owned"
    );
    assert_eq!(r.devices[7].mode, libc::S_IFBLK | 0o666);
    assert_eq!(r.devices[8].mode, libc::S_IFIFO | 0o666);
}

#[test]
fn rootfs_settings_masked_and_readonly_paths() {
    let mut c = config();
    c["root"]["readonly"] = json!(true);
    c["process"]["cwd"] = json!("/srv/app");
    c["linux"]["maskedPaths"] = json!(["/proc/kcore", "/sys/firmware"]);
    c["linux"]["readonlyPaths"] = json!(["/proc/sys", "/proc/sysrq-trigger"]);
    c["linux"]["rootfsPropagation"] = json!("rprivate");
    let f = Fixture::new(40);
    let p = f.plan(&c);
    let r = rootfs(&p);
    let full = |v: &[RelPath]| v.iter().map(|p| p.full.clone()).collect::<Vec<_>>();
    assert_eq!(full(&r.masked), [cs("proc/kcore"), cs("sys/firmware")]);
    assert_eq!(
        full(&r.readonly),
        [cs("proc/sys"), cs("proc/sysrq-trigger")]
    );
    assert!(r.readonly_root);
    assert_eq!(r.propagation, libc::MS_PRIVATE | libc::MS_REC);
    assert_eq!(r.cwd.full, cs("srv/app"));
    assert_eq!(p.process.cwd, cs("/srv/app"));
    let rootfs_path = f.dir().join("rootfs");
    assert_eq!(r.rootfs, cs(rootfs_path.to_str().expect("UTF-8 temp path")));

    let p = plan(&config());
    let r = rootfs(&p);
    assert!(r.masked.is_empty() && r.readonly.is_empty() && !r.readonly_root);
    assert_eq!(r.propagation, libc::MS_SLAVE | libc::MS_REC, "default");
    assert_eq!(r.cwd.full, cs("."));
}

#[test]
fn names_personality_and_keyring() {
    let mut c = config();
    c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "uts"}]);
    c["hostname"] = json!("box");
    c["linux"]["personality"] = json!({"domain": "LINUX32"});
    let opts = PlanOptions {
        session_keyring: Some("ctr-1".into()),
        ..PlanOptions::default()
    };
    let p = Fixture::new(40).build(&c, &opts).expect("plan builds");
    assert_eq!(p.hostname, Some(cs("box")));
    assert_eq!(p.domainname, None);
    assert_eq!(p.process.personality, Some(0x0008));
    assert_eq!(p.session_keyring, Some(cs("ctr-1")));

    c["domainname"] = json!("example.test");
    c["linux"]["personality"] = json!({"domain": "LINUX"});
    let p = plan(&c);
    assert_eq!(p.domainname, Some(cs("example.test")));
    assert_eq!(p.process.personality, Some(0));
    assert_eq!(p.session_keyring, None, "the caller's keyring is kept");
}

#[test]
fn hooks_run_by_init_default_their_args_and_time_out_in_ms() {
    let mut c = config();
    c["hooks"] = json!({
        "createContainer": [
            {"path": "/bin/hook"},
            {"path": "/bin/h2", "args": ["h2", "-x"], "env": ["A=1"], "timeout": 3}
        ],
        "startContainer": [{"path": "/bin/s", "timeout": i64::MAX}]
    });
    let p = plan(&c);
    assert!(!p.runtime_hooks, "no prestart or createRuntime hook");
    assert_eq!(
        p.create_container_hooks,
        [
            HookPlan {
                path: cs("/bin/hook"),
                args: vec![cs("/bin/hook")],
                env: vec![],
                timeout_ms: i64::MAX,
            },
            HookPlan {
                path: cs("/bin/h2"),
                args: vec![cs("h2"), cs("-x")],
                env: vec![cs("A=1")],
                timeout_ms: 3000,
            },
        ]
    );
    assert_eq!(p.start_container_hooks.len(), 1);
    assert_eq!(
        p.start_container_hooks[0].timeout_ms,
        i64::MAX,
        "saturates, never wraps"
    );

    for parent_hook in ["prestart", "createRuntime"] {
        let mut c = config();
        c["hooks"][parent_hook] = json!([{"path": "/bin/p"}]);
        let p = plan(&c);
        assert!(p.runtime_hooks, "{parent_hook}");
        assert!(p.create_container_hooks.is_empty() && p.start_container_hooks.is_empty());
    }
}

#[test]
fn bad_input_is_refused_naming_the_field() {
    let edited = |edit: &dyn Fn(&mut Value)| {
        let mut c = config();
        edit(&mut c);
        c
    };
    let without = |key: &str| {
        let mut c = config();
        if let Some(o) = c.as_object_mut() {
            o.remove(key);
        }
        c
    };
    let nul = "a\u{0}b";
    let device = |path: &str, typ: &str, major: i64| {
        edited(&|c| {
            c["linux"]["devices"] = json!([{"path": path, "type": typ, "major": major, "minor": 3}])
        })
    };
    let cases = [
        ("linux", without("linux")),
        ("process", without("process")),
        (
            "process.env",
            edited(&|c| c["process"]["env"] = json!(["A=1", nul])),
        ),
        (
            "process.args",
            edited(&|c| c["process"]["args"] = json!(["sh", nul])),
        ),
        (
            "process.cwd",
            edited(&|c| c["process"]["cwd"] = json!(format!("/{nul}"))),
        ),
        ("hostname", edited(&|c| c["hostname"] = json!(nul))),
        (
            "linux.sysctl.net.ipv4.ip_forward",
            edited(&|c| c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": nul})),
        ),
        (
            "linux.maskedPaths[1]",
            edited(&|c| c["linux"]["maskedPaths"] = json!(["/proc/kcore", "/proc/../etc"])),
        ),
        (
            "linux.readonlyPaths[0]",
            edited(&|c| c["linux"]["readonlyPaths"] = json!(["/../x"])),
        ),
        ("linux.devices[0].path", device("/", "c", 1)),
        ("linux.devices[0].type", device("/dev/x", "a", 1)),
        ("linux.devices[0].major", device("/dev/x", "c", -1)),
        (
            "hooks.createContainer",
            edited(&|c| c["hooks"]["createContainer"] = json!([{"path": format!("/bin/{nul}")}])),
        ),
    ];
    for (field, c) in cases {
        assert_eq!(refused(&c), field);
    }

    let f = Fixture::new(40);
    let mut c = config();
    let missing = f.dir().join("missing");
    c["mounts"] = json!([{"destination": "/data", "type": "bind", "source": missing}]);
    match f.build(&c, &PlanOptions::default()) {
        Err(Error::InvalidConfig { field, reason }) => {
            assert_eq!(field, "mounts[0].source");
            assert!(reason.contains("missing"), "names the source: {reason}");
        }
        other => panic!("a bind of a missing source: {other:?}"),
    }
    c["mounts"] = json!([{"destination": "/a/../b", "type": "tmpfs"}]);
    assert_eq!(refused(&c), "mounts[0].destination");
}

#[test]
fn a_relative_masked_path_is_left_to_validation() {
    // build takes a validated bundle: a relative masked path is refused
    // by config::validate, and build would plan it inside the root.
    let mut c = config();
    c["linux"]["maskedPaths"] = json!(["proc/kcore"]);
    let f = Fixture::new(40);
    let b = f.bundle(&c);
    match crate::config::validate(&b.spec, &b.dir) {
        Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "linux.maskedPaths[0]"),
        other => panic!("validate took a relative masked path: {other:?}"),
    }
    let p = f.plan(&c);
    assert_eq!(rootfs(&p).masked[0].full, cs("proc/kcore"));
}

fn process(json: Value) -> oci_spec::runtime::Process {
    serde_json::from_value(json).expect("process parses")
}

#[test]
fn process_plan_carries_credentials_and_settings() {
    let p = process(json!({
        "args": ["/bin/app", "--flag"],
        "cwd": "/srv",
        "env": ["A=1"],
        "user": {"uid": 1000, "gid": 1001, "additionalGids": [10, 20], "umask": 0o27},
        "noNewPrivileges": true,
        "oomScoreAdj": -500,
        "terminal": true,
        "consoleSize": {"height": 24, "width": 80},
        "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4},
        "scheduler": {"policy": "SCHED_FIFO", "priority": 10, "flags": ["SCHED_FLAG_KEEP_POLICY"]},
        "apparmorProfile": "my-profile"
    }));
    let plan = process_plan(&p, 40, "process").expect("process plan builds");
    assert_eq!(plan.args, [cs("/bin/app"), cs("--flag")]);
    assert_eq!(plan.env, [cs("A=1")]);
    assert!(plan.path_dirs.is_empty());
    assert_eq!(plan.cwd, cs("/srv"));
    assert_eq!((plan.uid, plan.gid), (1000, 1001));
    assert_eq!(plan.groups, [10, 20]);
    assert_eq!(plan.umask, Some(0o27));
    assert!(plan.no_new_privs);
    assert_eq!(plan.oom_score_adj, Some(cs("-500")));
    assert!(plan.terminal);
    assert_eq!(plan.console_size, Some((24, 80)), "(rows, columns)");
    assert_eq!(plan.io_priority, Some(2 << 13 | 4));
    let s = plan.scheduler.expect("scheduler planned");
    assert_eq!((s.policy, s.priority, s.flags, s.nice), (1, 10, 0x08, 0));
    assert_eq!(plan.apparmor, Some(cs("exec my-profile")));
    assert_eq!(
        plan.personality, None,
        "set from linux.personality by build"
    );

    let bare = process(
        json!({"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0},
        "apparmorProfile": ""}),
    );
    let plan = process_plan(&bare, 40, "process").expect("process plan builds");
    assert_eq!(plan.apparmor, None, "an empty profile is none");
    assert_eq!(
        (plan.umask, plan.oom_score_adj, plan.io_priority),
        (None, None, None)
    );
    assert!(!plan.no_new_privs && !plan.terminal);
}

#[test]
fn process_plan_errors_name_the_callers_field() {
    let p = process(
        json!({"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
        "env": ["OK=1", "BAD=\u{0}"]}),
    );
    match process_plan(&p, 40, "exec") {
        Err(Error::InvalidConfig { field, reason }) => {
            assert_eq!(field, "exec.env");
            assert!(reason.contains("NUL"), "{reason}");
        }
        other => panic!("a NUL byte in env: {other:?}"),
    }
}
