//! Hostile CRI requests against a running `serve`: the fuzz corpus's pod
//! and container requests and byte-flipped variants of them, then requests
//! that pass the CRI's rules and fail only where the host is consulted
//! (after the rootfs is mounted). Every refusal the CRI's rules make is the
//! one `cri_api::validate` makes, and after every failed request nothing of
//! it is left: no mount, no file under the server's dirs, no pod or
//! container listed.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::root_or_skip;
use common::serve::{Cleanup, config, import_busybox, pod_config, run_pod, spawn_in};
use cri_api::Code;
use cri_api::transport::Channel;
use cri_api::v1::{
    Capability, CdiDevice, ContainerConfig, CreateContainerRequest, Device, ImageSpec,
    LinuxContainerConfig, LinuxContainerSecurityContext, ListContainersRequest,
    ListPodSandboxRequest, Mount, NamespaceMode, NamespaceOption, PodSandboxConfig,
    RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest, RuntimeServiceClient,
    SecurityProfile, StopPodSandboxRequest, security_profile::ProfileType,
};
use cri_api::validate::Validate;
use prost::Message;

/// What a request could leave behind: the mounts under `dir` and every
/// path under it but the server's own log.
fn footprint(dir: &Path) -> (usize, BTreeSet<PathBuf>) {
    let d = dir.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&d)))
        .count();
    let mut files = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.file_name().is_some_and(|n| n == "serve.log") {
                continue;
            }
            // Inside a mount (a pod's or container's rootfs) is the image's.
            if e.file_type().is_ok_and(|t| t.is_dir()) && !path.ends_with("rootfs") {
                todo.push(path.clone());
            }
            files.insert(path);
        }
    }
    (mounts, files)
}

/// What `after` has that `before` had not, but the server's own top-level
/// directories (`run/containers`, made on first use, is no container's).
fn added(dir: &Path, before: &BTreeSet<PathBuf>, after: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    after
        .difference(before)
        .filter(|p| {
            let top = p.parent().and_then(|q| q.parent()) == Some(dir);
            let empty = std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none());
            !(top && empty)
        })
        .cloned()
        .collect()
}

async fn listed(c: &mut RuntimeServiceClient<Channel>) -> (usize, usize) {
    let pods = c
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items
        .len();
    let ctrs = c
        .list_containers(ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers
        .len();
    (pods, ctrs)
}

/// The corpus file's request with its first byte flipped at `k` (0: as is).
fn variant(bytes: &[u8], k: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    if k > 0 && !b.is_empty() {
        let at = (k * 7919) % b.len();
        b[at] ^= (k * 37 + 1) as u8;
    }
    b
}

enum Req {
    Pod(Box<RunPodSandboxRequest>),
    Ctr(Box<CreateContainerRequest>),
}

/// A decoded request made safe to send here: cgroups under this test's
/// parent, host paths under `dir`, a pod id (when it has one) that is real.
fn tame(r: &mut Req, dir: &Path, parent: &str, pod: &str) {
    match r {
        Req::Pod(p) => {
            if let Some(l) = p.config.as_mut().and_then(|c| c.linux.as_mut()) {
                l.cgroup_parent = parent.to_string();
            }
            if let Some(c) = p.config.as_mut() {
                c.log_directory = dir.join("logs").display().to_string();
            }
        }
        Req::Ctr(c) => {
            if !c.pod_sandbox_id.is_empty() {
                c.pod_sandbox_id = pod.to_string();
            }
            if let Some(cfg) = c.config.as_mut() {
                for (i, m) in cfg.mounts.iter_mut().enumerate() {
                    if m.host_path.starts_with('/') {
                        m.host_path = dir.join("host").join(i.to_string()).display().to_string();
                    }
                }
            }
        }
    }
}

#[test]
fn hostile_cri_requests_leave_nothing_half_made() {
    if !root_or_skip("hostile_cri_requests_leave_nothing_half_made") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let parent = format!("/mr-serve-test-{pid}-h");
    let _cleanup = Cleanup {
        dir: dir.path().to_path_buf(),
        cgroups: vec![parent.clone()],
    };
    let image = import_busybox(dir.path());
    let sock = dir.path().join("cri.sock");
    let mut child = spawn_in(dir.path(), &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/cri_requests");
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    seeds.sort();

    rt.block_on(async {
        let mut c = RuntimeServiceClient::new(cri_api::transport::connect(&sock).await.unwrap());
        let mut pod_cfg: PodSandboxConfig = pod_config("h", &[]);
        pod_cfg.log_directory = dir.path().join("logs").display().to_string();
        let pod = run_pod(&mut c, &pod_cfg).await;
        let (mut pods, mut ctrs) = (vec![pod.clone()], Vec::new());

        // The corpus, and byte-flipped variants of it.
        let (mut sent, mut refused) = (0, 0);
        for seed in &seeds {
            let bytes = std::fs::read(seed).unwrap();
            let Some((&sel, body)) = bytes.split_first() else {
                continue;
            };
            for k in 0..80 {
                let b = variant(body, k);
                let mut req = match sel {
                    1 => match RunPodSandboxRequest::decode(&b[..]) {
                        Ok(r) => Req::Pod(Box::new(r)),
                        Err(_) => continue,
                    },
                    7 => match CreateContainerRequest::decode(&b[..]) {
                        Ok(r) => Req::Ctr(Box::new(r)),
                        Err(_) => continue,
                    },
                    _ => break,
                };
                tame(&mut req, dir.path(), &parent, &pod);
                let before = footprint(dir.path());
                let shown = listed(&mut c).await;
                let (verdict, answer) = match req {
                    Req::Pod(r) => (
                        r.validate(),
                        c.run_pod_sandbox(*r)
                            .await
                            .map(|a| (true, a.into_inner().pod_sandbox_id)),
                    ),
                    Req::Ctr(r) => (
                        r.validate(),
                        c.create_container(*r)
                            .await
                            .map(|a| (false, a.into_inner().container_id)),
                    ),
                };
                sent += 1;
                let what = format!("{} variant {k}", seed.display());
                match (verdict, answer) {
                    (Err(v), Err(e)) => {
                        refused += 1;
                        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
                        assert_eq!(e.message(), v.to_string(), "{what}");
                    }
                    (Err(v), Ok(_)) => panic!("{what}: made, though the CRI refuses it: {v}"),
                    (Ok(()), Ok((true, id))) => pods.push(id),
                    (Ok(()), Ok((false, id))) => ctrs.push(id),
                    (Ok(()), Err(e)) => {
                        assert!(!e.message().is_empty(), "{what}: {e:?}");
                    }
                }
                if pods.len() + ctrs.len() == shown.0 + shown.1 {
                    // It failed: nothing of it stays.
                    assert_eq!(listed(&mut c).await, shown, "{what}");
                    let after = footprint(dir.path());
                    assert_eq!(after.0, before.0, "{what}: mounts left");
                    let new = added(dir.path(), &before.1, &after.1);
                    let only_host_dirs = new.iter().all(|p| p.starts_with(dir.path().join("host")));
                    assert!(only_host_dirs, "{what}: left {new:?}");
                }
            }
        }
        assert!(
            sent >= 100 && refused > sent / 4,
            "{sent} sent, {refused} refused"
        );

        // Requests the CRI's rules pass that the host refuses, each after
        // the rootfs is mounted.
        let seccomp = dir.path().join("garbage.json");
        std::fs::write(&seccomp, "{ not json").unwrap();
        let sc = |f: &dyn Fn(&mut LinuxContainerSecurityContext)| {
            let mut s = LinuxContainerSecurityContext::default();
            f(&mut s);
            Some(LinuxContainerConfig {
                security_context: Some(s),
                ..Default::default()
            })
        };
        let base = config("x", &image, &["/bin/true"]);
        let cases: Vec<(&str, ContainerConfig)> = vec![
            (
                "unknown capability",
                ContainerConfig {
                    linux: sc(&|s| {
                        s.capabilities = Some(Capability {
                            add_capabilities: vec!["CAP_NOPE".into()],
                            ..Default::default()
                        })
                    }),
                    ..base.clone()
                },
            ),
            (
                "missing device",
                ContainerConfig {
                    devices: vec![Device {
                        container_path: "/dev/x".into(),
                        host_path: "/dev/no-such-device".into(),
                        permissions: "rw".into(),
                    }],
                    ..base.clone()
                },
            ),
            (
                "not a device",
                ContainerConfig {
                    devices: vec![Device {
                        container_path: "/dev/x".into(),
                        host_path: "/etc/hostname".into(),
                        permissions: "r".into(),
                    }],
                    ..base.clone()
                },
            ),
            (
                "unreadable seccomp profile",
                ContainerConfig {
                    linux: sc(&|s| {
                        s.seccomp = Some(SecurityProfile {
                            profile_type: ProfileType::Localhost as i32,
                            localhost_ref: seccomp.display().to_string(),
                        })
                    }),
                    ..base.clone()
                },
            ),
            (
                "pid namespace of a container that is not there",
                ContainerConfig {
                    linux: sc(&|s| {
                        s.namespace_options = Some(NamespaceOption {
                            pid: NamespaceMode::Target as i32,
                            target_id: "no-such-container".into(),
                            ..Default::default()
                        })
                    }),
                    ..base.clone()
                },
            ),
            (
                "user the image does not have",
                ContainerConfig {
                    linux: sc(&|s| s.run_as_username = "no-such-user".into()),
                    ..base.clone()
                },
            ),
            (
                "image volume path out of the image",
                ContainerConfig {
                    mounts: vec![Mount {
                        container_path: "/vol".into(),
                        image: Some(ImageSpec {
                            image: image.clone(),
                            ..Default::default()
                        }),
                        image_sub_path: "../../../../etc".into(),
                        readonly: true,
                        ..Default::default()
                    }],
                    ..base.clone()
                },
            ),
            (
                "unknown CDI device",
                ContainerConfig {
                    cdi_devices: vec![CdiDevice {
                        name: "vendor.example/gpu=0".into(),
                    }],
                    ..base.clone()
                },
            ),
            (
                "image not in the store",
                ContainerConfig {
                    image: Some(ImageSpec {
                        image: "example.com/none:1".into(),
                        ..Default::default()
                    }),
                    ..base.clone()
                },
            ),
        ];
        for (what, cfg) in cases {
            let req = CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(cfg),
                sandbox_config: Some(pod_cfg.clone()),
            };
            req.validate()
                .unwrap_or_else(|e| panic!("{what}: the CRI's rules refuse it: {e}"));
            let before = footprint(dir.path());
            let shown = listed(&mut c).await;
            let e = c.create_container(req).await.expect_err(what);
            assert_ne!(e.code(), Code::Internal, "{what}: {e:?}");
            assert!(
                !e.message().chars().any(char::is_control),
                "{what}: {:?}",
                e.message()
            );
            assert_eq!(listed(&mut c).await, shown, "{what}");
            let after = footprint(dir.path());
            assert_eq!(after.0, before.0, "{what}: mounts left");
            let new = added(dir.path(), &before.1, &after.1);
            assert!(new.is_empty(), "{what}: left {new:?}");
        }

        // What was made goes; then nothing is left but the store.
        for id in ctrs {
            c.remove_container(RemoveContainerRequest { container_id: id })
                .await
                .unwrap();
        }
        for id in pods {
            c.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .unwrap();
            c.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                .await
                .unwrap();
        }
        assert_eq!(listed(&mut c).await, (0, 0));
    });
    let _ = child.kill();
    let _ = child.wait();
    let left = footprint(dir.path());
    assert_eq!(left.0, 0, "mounts left under {}", dir.path().display());
    // Nothing of any pod or container under the runtime root, and no
    // container the OCI runtime knows.
    let run = dir.path().join("run");
    let states: Vec<_> = left
        .1
        .iter()
        .filter(|p| {
            let parent = p.parent();
            parent == Some(&run.join("containers")) || parent == Some(&run.join("pods"))
        })
        .collect();
    assert!(states.is_empty(), "pod or container state left: {states:?}");
    let out = std::process::Command::new(common::bin_path())
        .arg("--root")
        .arg(&run)
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
}

/// Fills the file system of `dir`: its blocks with one file, its inodes
/// with empty ones, all under `dir/fill`.
fn fill(dir: &Path) {
    use std::io::Write;
    let fill = dir.join("fill");
    std::fs::create_dir_all(&fill).unwrap();
    let mut f = std::fs::File::create(fill.join("blocks")).unwrap();
    let chunk = vec![0x5a; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&chunk[..4096]).is_ok() {}
    let _ = f.sync_all();
    for i in 0.. {
        if std::fs::File::create(fill.join(i.to_string())).is_err() {
            break;
        }
    }
}

/// CreateContainer with the store and state on a full file system fails
/// naming ENOSPC and leaves nothing of the container; once there is room,
/// the same request makes a container that runs.
#[test]
fn create_container_on_a_full_disk_fails_cleanly_then_works() {
    if !root_or_skip("create_container_on_a_full_disk_fails_cleanly_then_works") {
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m,nr_inodes=4096", "tmpfs"])
        .arg(&disk)
        .status()
        .unwrap();
    assert!(st.success());
    let _unmount = Unmount(disk.clone());
    let pid = std::process::id();
    let parent = format!("/mr-serve-test-{pid}-full");
    let _cleanup = Cleanup {
        dir: disk.clone(),
        cgroups: vec![parent.clone()],
    };
    let image = import_busybox(&disk);
    let sock = disk.join("cri.sock");
    let mut child = spawn_in(&disk, &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = RuntimeServiceClient::new(cri_api::transport::connect(&sock).await.unwrap());
        let mut pod_cfg = pod_config("full", &[]);
        pod_cfg.log_directory = disk.join("logs").display().to_string();
        let pod = run_pod(&mut c, &pod_cfg).await;
        // As root, which owns the image's /tmp.
        let mut cfg = config(
            "c",
            &image,
            &["/bin/sh", "-c", "echo hi > /tmp/x; sleep 60"],
        );
        cfg.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                run_as_user: Some(cri_api::v1::Int64Value { value: 0 }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let req = CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cfg),
            sandbox_config: Some(pod_cfg.clone()),
        };
        fill(&disk);
        let before = footprint(&disk);
        let shown = listed(&mut c).await;
        let e = c.create_container(req.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert!(e.message().contains("No space left on device"), "{e:?}");
        assert_eq!(listed(&mut c).await, shown);
        let after = footprint(&disk);
        assert_eq!(after.0, before.0, "mounts left");
        let new = added(&disk, &before.1, &after.1);
        assert!(new.is_empty(), "left {new:?}");

        std::fs::remove_dir_all(disk.join("fill")).unwrap();
        let id = c
            .create_container(req)
            .await
            .unwrap_or_else(|e| panic!("with room again: {e:?}"))
            .into_inner()
            .container_id;
        common::serve::start(&mut c, &id).await;
        // What the container writes lands on the disk that was full.
        let mut out = String::new();
        for _ in 0..100 {
            let script = "read l < /tmp/x; echo $l";
            let r = common::serve::exec(&mut c, &id, &["/bin/sh", "-c", script], 10)
                .await
                .unwrap();
            out = String::from_utf8_lossy(&r.stdout).into_owned();
            if out == "hi\n" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(out, "hi\n");
        c.remove_container(RemoveContainerRequest { container_id: id })
            .await
            .unwrap();
        c.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        c.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
    });
    let _ = child.kill();
    let _ = child.wait();
}
