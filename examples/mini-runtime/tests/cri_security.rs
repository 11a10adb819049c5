//! What critest's security-context, mount and OOM specs check, through
//! `serve`'s CRI: capabilities, privileged, seccomp RuntimeDefault /
//! Localhost / Unconfined, NoNewPrivs, RunAs user/group/username and
//! supplemental groups, masked and read-only paths, pid namespace modes
//! (container, pod, host) and host IPC, devices, mount propagation from the
//! host, image volumes (read-only, sub paths kept inside the image), and an
//! OOM kill reported as OOMKilled.

mod common;

use std::path::Path;
use std::process::Command;

use common::root_or_skip;
use common::serve::{
    Cleanup, config, create, exec, exited, import_busybox, import_data_image, pod_config, run_pod,
    spawn_in, start, status,
};
use cri_api::Code;
use cri_api::v1::{
    Capability, ContainerConfig, ContainerState, Device, ImageSpec, Int64Value,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext, Mount,
    MountPropagation, NamespaceMode, NamespaceOption, PodSandboxConfig, RuntimeServiceClient,
    SecurityProfile, security_profile::ProfileType,
};

fn with_sc(mut c: ContainerConfig, sc: LinuxContainerSecurityContext) -> ContainerConfig {
    c.linux = Some(LinuxContainerConfig {
        security_context: Some(sc),
        resources: c.linux.and_then(|l| l.resources),
    });
    c
}

/// A status line of `/proc/self/status` in the container, run as the
/// container's own process (`grep` is its init).
fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{name} not in {out}"))
}

#[test]
fn security_contexts_mounts_and_oom_as_critest_checks_them() {
    if !root_or_skip("security_contexts_mounts_and_oom_as_critest_checks_them") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let _cleanup = Cleanup {
        dir: dir.path().to_path_buf(),
        cgroups: vec![
            format!("/mr-serve-test-{pid}-s"),
            format!("/mr-serve-test-{pid}-h"),
        ],
    };
    let image = import_busybox(dir.path());
    let data = import_data_image(dir.path());
    // A host dir that is a shared mount point, to see propagation.
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let mnt = |args: &[&str]| {
        let out = Command::new("mount").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "mount {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let s = shared.to_str().unwrap();
    mnt(&["--bind", s, s]);
    mnt(&["--make-shared", s]);
    // A seccomp profile that refuses mkdir.
    let profile = dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        serde_json::to_vec(&serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
        }))
        .unwrap(),
    )
    .unwrap();
    // A CDI spec (YAML) with one device: a node and an env var.
    let cdi = dir.path().join("cdi");
    std::fs::create_dir_all(&cdi).unwrap();
    std::fs::write(
        cdi.join("test.yaml"),
        "cdiVersion: \"0.6.0\"\nkind: example.com/test\ndevices:\n- name: null\n  containerEdits:\n    \
         env: [\"CDI_OK=yes\"]\n    deviceNodes:\n    - path: /dev/cdinull\n      hostPath: /dev/null\n",
    )
    .unwrap();
    let sock = dir.path().join("cri.sock");
    let mut child = spawn_in(dir.path(), &["--cdi-spec-dir", cdi.to_str().unwrap()]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = RuntimeServiceClient::new(cri_api::transport::connect(&sock).await.unwrap());
        // A privileged pod with its own pid namespace, and a host-pid/ipc pod.
        let mut pod_cfg: PodSandboxConfig = pod_config("s", &[]);
        {
            let sc = pod_cfg
                .linux
                .as_mut()
                .unwrap()
                .security_context
                .as_mut()
                .unwrap();
            sc.privileged = true;
            sc.namespace_options.as_mut().unwrap().pid = NamespaceMode::Pod as i32;
        }
        pod_cfg.log_directory = dir.path().join("logs").display().to_string();
        let pod = run_pod(&mut c, &pod_cfg).await;
        let mut host_cfg = pod_config("h", &[]);
        {
            let ns = host_cfg
                .linux
                .as_mut()
                .unwrap()
                .security_context
                .as_mut()
                .unwrap()
                .namespace_options
                .as_mut()
                .unwrap();
            ns.pid = NamespaceMode::Node as i32;
            ns.ipc = NamespaceMode::Node as i32;
        }
        host_cfg.log_directory = pod_cfg.log_directory.clone();
        let host_pod = run_pod(&mut c, &host_cfg).await;

        // Runs `sc` as a long-lived container of `pod`; its id.
        let mut n = 0;
        let mut run = async |c: &mut RuntimeServiceClient<_>,
                             pod: &str,
                             pcfg: &PodSandboxConfig,
                             cfg: ContainerConfig|
               -> String {
            n += 1;
            let mut cfg = cfg;
            cfg.metadata.as_mut().unwrap().name = format!("c{n}");
            cfg.log_path = format!("c{n}.log");
            let id = create(c, pod, cfg, pcfg).await.unwrap();
            start(c, &id).await;
            id
        };
        let sleeper = || config("x", &image, &["/bin/sh", "-c", "sleep 600"]);
        let sh = |cmd: &str| vec!["/bin/sh".to_string(), "-c".into(), cmd.into()];
        let exec_sh = async |c: &mut RuntimeServiceClient<_>, id: &str, cmd: &str| {
            let r = exec(
                c,
                id,
                &sh(cmd).iter().map(String::as_str).collect::<Vec<_>>(),
                10,
            )
            .await
            .unwrap();
            (
                r.exit_code,
                String::from_utf8_lossy(&r.stdout).into_owned(),
                String::from_utf8_lossy(&r.stderr).into_owned(),
            )
        };

        // Defaults: containerd's 14 capabilities, masked /proc/kcore,
        // read-only /proc/sys, no seccomp asked for: unconfined.
        let plain = run(&mut c, &pod, &pod_cfg, sleeper()).await;
        let (_, out, _) = exec_sh(&mut c, &plain, "cat /proc/self/status").await;
        // The image's user (1000) keeps them only in its bounding set.
        assert_eq!(field(&out, "CapBnd:"), "00000000a80425fb");
        assert_eq!(field(&out, "CapEff:"), "0000000000000000");
        assert_eq!(field(&out, "Seccomp:"), "0");
        assert_eq!(field(&out, "NoNewPrivs:"), "0");
        let (code, _, _) = exec_sh(&mut c, &plain, "echo 1 > /proc/sys/vm/overcommit_memory").await;
        assert_ne!(code, 0, "/proc/sys is writable");
        let (_, out, err) = exec_sh(&mut c, &plain, "wc -c < /proc/keys").await;
        assert_eq!(out.trim(), "0", "/proc/keys is not masked: {err}");
        // In the pod's pid namespace (mode POD): the pause process is pid 1.
        let (_, out, _) = exec_sh(&mut c, &plain, "cat /proc/1/cmdline | tr '\\0' ' '").await;
        assert!(out.starts_with("/pause pod-infra"), "{out}");

        // Capabilities added and dropped; NoNewPrivs; RuntimeDefault seccomp.
        let caps = run(
            &mut c,
            &pod,
            &pod_cfg,
            with_sc(
                sleeper(),
                LinuxContainerSecurityContext {
                    capabilities: Some(Capability {
                        add_capabilities: vec!["SYS_ADMIN".into()],
                        drop_capabilities: vec!["CHOWN".into()],
                        ..Default::default()
                    }),
                    no_new_privs: true,
                    seccomp: Some(SecurityProfile::default()),
                    run_as_user: Some(Int64Value { value: 0 }),
                    ..Default::default()
                },
            ),
        )
        .await;
        let (_, out, _) = exec_sh(&mut c, &caps, "cat /proc/self/status").await;
        let eff = u64::from_str_radix(field(&out, "CapEff:"), 16).unwrap();
        assert_ne!(eff & (1 << 21), 0, "CAP_SYS_ADMIN missing");
        assert_eq!(eff & 1, 0, "CAP_CHOWN kept");
        assert_eq!(field(&out, "NoNewPrivs:"), "1");
        assert_eq!(field(&out, "Seccomp:"), "2");

        // A Localhost profile refusing mkdir; an unknown file is refused.
        let local = |path: &Path| SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: path.display().to_string(),
        };
        let nomk = run(
            &mut c,
            &pod,
            &pod_cfg,
            with_sc(
                sleeper(),
                LinuxContainerSecurityContext {
                    seccomp: Some(local(&profile)),
                    run_as_user: Some(Int64Value { value: 0 }),
                    ..Default::default()
                },
            ),
        )
        .await;
        let (code, _, err) = exec_sh(&mut c, &nomk, "mkdir /tmp/d").await;
        assert_ne!(code, 0);
        assert!(err.contains("not permitted"), "{err}");
        let mut bad = with_sc(
            sleeper(),
            LinuxContainerSecurityContext {
                seccomp: Some(local(Path::new("/no/such/profile.json"))),
                ..Default::default()
            },
        );
        bad.metadata.as_mut().unwrap().name = "bad-seccomp".into();
        let e = create(&mut c, &pod, bad, &pod_cfg).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(
            e.message().contains("/no/such/profile.json"),
            "{}",
            e.message()
        );

        // RunAs user and group, supplemental groups; RunAsUsername.
        let ids = run(
            &mut c,
            &pod,
            &pod_cfg,
            with_sc(
                sleeper(),
                LinuxContainerSecurityContext {
                    run_as_user: Some(Int64Value { value: 1234 }),
                    run_as_group: Some(Int64Value { value: 5678 }),
                    supplemental_groups: vec![50, 4242],
                    ..Default::default()
                },
            ),
        )
        .await;
        let (_, out, _) = exec_sh(&mut c, &ids, "id -u; id -g; id -G").await;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..2], ["1234", "5678"], "{out}");
        for g in ["5678", "50", "4242"] {
            assert!(lines[2].split(' ').any(|x| x == g), "{out}");
        }
        let named = run(
            &mut c,
            &pod,
            &pod_cfg,
            with_sc(
                sleeper(),
                LinuxContainerSecurityContext {
                    run_as_username: "app".into(),
                    ..Default::default()
                },
            ),
        )
        .await;
        let (_, out, _) = exec_sh(&mut c, &named, "id -u; id -g").await;
        assert_eq!(out, "1000\n1000\n");
        let st = status(&mut c, &named).await;
        let user = st.user.unwrap().linux.unwrap();
        assert_eq!((user.uid, user.gid), (1000, 1000));

        // Privileged: every capability, /sys writable, the host's devices.
        let prv = run(
            &mut c,
            &pod,
            &pod_cfg,
            with_sc(
                sleeper(),
                LinuxContainerSecurityContext {
                    privileged: true,
                    run_as_user: Some(Int64Value { value: 0 }),
                    ..Default::default()
                },
            ),
        )
        .await;
        let (_, out, _) = exec_sh(
            &mut c,
            &prv,
            "cat /proc/self/status; grep ' /sys ' /proc/mounts; ls /dev",
        )
        .await;
        let eff = u64::from_str_radix(field(&out, "CapEff:"), 16).unwrap();
        assert_eq!(
            eff & ((1 << 21) | (1 << 12)),
            (1 << 21) | (1 << 12),
            "{out}"
        );
        assert!(out.contains("sysfs /sys sysfs rw"), "{out}");
        assert!(
            out.lines().any(|l| l == "loop-control" || l == "kmsg"),
            "{out}"
        );
        // A privileged container in a pod that is not: refused.
        let mut p = with_sc(
            sleeper(),
            LinuxContainerSecurityContext {
                privileged: true,
                ..Default::default()
            },
        );
        p.metadata.as_mut().unwrap().name = "no-priv".into();
        let e = create(&mut c, &host_pod, p, &host_cfg).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());

        // Host pid and ipc namespaces.
        let mut hcfg = sleeper();
        hcfg.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption {
                    pid: NamespaceMode::Node as i32,
                    ipc: NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let host = run(&mut c, &host_pod, &host_cfg, hcfg).await;
        let (_, out, _) = exec_sh(
            &mut c,
            &host,
            "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc",
        )
        .await;
        let mine = format!(
            "{}\n{}\n",
            std::fs::read_link("/proc/self/ns/pid").unwrap().display(),
            std::fs::read_link("/proc/self/ns/ipc").unwrap().display()
        );
        assert_eq!(out, mine);
        // A pid namespace of its own (mode CONTAINER): it is pid 1.
        let mut own = config("x", &image, &["/bin/sh", "-c", "echo $$; sleep 600"]);
        own.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption {
                    pid: NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let own = run(&mut c, &pod, &pod_cfg, own).await;
        let (_, out, _) = exec_sh(&mut c, &own, "cat /proc/1/cmdline | tr '\\0' ' '").await;
        // The shell execs its last command: sleep is pid 1, no pause there.
        assert!(out.starts_with("sleep 600"), "{out}");

        // Mounts: host-to-container propagation, a private one, a
        // read-only one, a device, and an image volume with a sub path.
        std::fs::create_dir_all(shared.join("before")).unwrap();
        let mut m = sleeper();
        m.mounts = vec![
            Mount {
                container_path: "/slave".into(),
                host_path: s.into(),
                propagation: MountPropagation::PropagationHostToContainer as i32,
                ..Default::default()
            },
            Mount {
                container_path: "/private".into(),
                host_path: s.into(),
                propagation: MountPropagation::PropagationPrivate as i32,
                ..Default::default()
            },
            Mount {
                container_path: "/ro".into(),
                host_path: s.into(),
                readonly: true,
                ..Default::default()
            },
            Mount {
                container_path: "/vol".into(),
                image: Some(ImageSpec {
                    image: data.clone(),
                    ..Default::default()
                }),
                image_sub_path: "data".into(),
                ..Default::default()
            },
        ];
        m.devices = vec![Device {
            container_path: "/dev/xnull".into(),
            host_path: "/dev/null".into(),
            permissions: "rwm".into(),
        }];
        let m = with_sc(
            m,
            LinuxContainerSecurityContext {
                run_as_user: Some(Int64Value { value: 0 }),
                ..Default::default()
            },
        );
        let mounts = run(&mut c, &pod, &pod_cfg, m).await;
        let tmp = shared.join("later");
        std::fs::create_dir_all(&tmp).unwrap();
        mnt(&["-t", "tmpfs", "tmpfs", tmp.to_str().unwrap()]);
        std::fs::write(tmp.join("f"), "propagated").unwrap();
        let (_, out, _) = exec_sh(
            &mut c,
            &mounts,
            "cat /slave/later/f; echo; ls /private/later | wc -l; touch /ro/x || echo ro; \
             cat /vol/hello.txt; touch /vol/y || echo vol-ro; echo hi > /dev/xnull && echo dev",
        )
        .await;
        assert_eq!(
            out, "propagated\n0\nro\nfrom-volume\nvol-ro\ndev\n",
            "{out}"
        );
        // Bidirectional (privileged): a mount made in the container shows
        // on the host, and the spec's root passes it on (rshared); on a
        // source whose mount does not propagate it is refused.
        let mut b = sleeper();
        b.metadata.as_mut().unwrap().name = "bidir".into();
        b.mounts = vec![Mount {
            container_path: "/both".into(),
            host_path: s.into(),
            propagation: MountPropagation::PropagationBidirectional as i32,
            ..Default::default()
        }];
        let b = with_sc(
            b,
            LinuxContainerSecurityContext {
                privileged: true,
                run_as_user: Some(Int64Value { value: 0 }),
                ..Default::default()
            },
        );
        let bidir = run(&mut c, &pod, &pod_cfg, b.clone()).await;
        let (code, _, err) = exec_sh(
            &mut c,
            &bidir,
            "mkdir -p /both/fromctr && mount -t tmpfs tmpfs /both/fromctr && echo up > /both/fromctr/f",
        )
        .await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            std::fs::read_to_string(shared.join("fromctr/f")).unwrap(),
            "up\n"
        );
        let private = dir.path().join("private");
        std::fs::create_dir_all(&private).unwrap();
        let p = private.to_str().unwrap();
        mnt(&["--bind", p, p]);
        mnt(&["--make-private", p]);
        let mut nb = b;
        nb.metadata.as_mut().unwrap().name = "bidir-private".into();
        nb.mounts[0].host_path = p.into();
        let e = create(&mut c, &pod, nb, &pod_cfg).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(e.message().contains("not shared"), "{}", e.message());

        // A sub path through a symlink that leaves the image: refused.
        let mut esc = sleeper();
        esc.metadata.as_mut().unwrap().name = "escape".into();
        esc.mounts = vec![Mount {
            container_path: "/vol".into(),
            image: Some(ImageSpec {
                image: data.clone(),
                ..Default::default()
            }),
            image_sub_path: "data/out".into(),
            ..Default::default()
        }];
        let e = create(&mut c, &pod, esc, &pod_cfg).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(e.message().contains("out of the image"), "{}", e.message());
        // SELinux relabelling on a host without SELinux: nothing to
        // relabel, the mount is made (critest's volume specs ask for it).
        let mut se = sleeper();
        se.metadata.as_mut().unwrap().name = "selinux".into();
        se.mounts = vec![Mount {
            container_path: "/x".into(),
            host_path: s.into(),
            selinux_relabel: true,
            ..Default::default()
        }];
        if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
            let e = create(&mut c, &pod, se, &pod_cfg).await.unwrap_err();
            assert!(e.message().contains("SELinux"), "{}", e.message());
        } else {
            let se = run(&mut c, &pod, &pod_cfg, se).await;
            let (code, _, err) = exec_sh(&mut c, &se, "test -d /x").await;
            assert_eq!(code, 0, "{err}");
        }

        // CDI devices; an unknown one is refused naming it.
        let mut cd = sleeper();
        cd.cdi_devices = vec![cri_api::v1::CdiDevice {
            name: "example.com/test=null".into(),
        }];
        let cd = with_sc(
            cd,
            LinuxContainerSecurityContext {
                run_as_user: Some(Int64Value { value: 0 }),
                ..Default::default()
            },
        );
        let cd = run(&mut c, &pod, &pod_cfg, cd).await;
        let (_, out, _) = exec_sh(
            &mut c,
            &cd,
            "echo $CDI_OK; echo x > /dev/cdinull && echo dev",
        )
        .await;
        assert_eq!(out, "yes\ndev\n");
        let mut unknown = sleeper();
        unknown.metadata.as_mut().unwrap().name = "cdi-unknown".into();
        unknown.cdi_devices = vec![cri_api::v1::CdiDevice {
            name: "example.com/test=none".into(),
        }];
        let e = create(&mut c, &pod, unknown, &pod_cfg).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(
            e.message().contains("example.com/test=none"),
            "{}",
            e.message()
        );

        // OOM: a 16 MiB limit and a 64 MiB buffer.
        let mut oom = config(
            "x",
            &image,
            &[
                "/bin/sh",
                "-c",
                "exec dd if=/dev/zero of=/dev/null bs=64M count=1",
            ],
        );
        oom.linux = Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                memory_limit_in_bytes: 16 << 20,
                ..Default::default()
            }),
            ..Default::default()
        });
        let oom = run(&mut c, &pod, &pod_cfg, oom).await;
        let st = exited(&mut c, &oom).await;
        assert_eq!(st.state, ContainerState::ContainerExited as i32);
        assert_eq!(st.reason, "OOMKilled", "{st:?}");
        assert_eq!(st.exit_code, 137);
        let _ = std::process::Command::new("umount").arg(&tmp).output();
    });
    common::unmount_under(&shared);
    child.kill().unwrap();
    child.wait().unwrap();
}
