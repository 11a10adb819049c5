//! Containers through `serve`'s CRI, driven by this workspace's cri-api
//! client: create/start/stop/remove with the image's process and the
//! request's overrides, CRI logs, ExecSync, status and filters, errors as
//! the CRI expects them, and every container found again (running, with
//! its exit code and log) after a `kill -9` of `serve`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::root_or_skip;
use common::serve::{
    Cleanup, config, create, exec, exited, import_busybox, log_lines, pod_config, run_pod,
    spawn_in, start, status,
};
use cri_api::Code;
use cri_api::v1::{
    ContainerConfig, ContainerFilter, ContainerState, ContainerStateValue, ContainerStatusRequest,
    ExecRequest, ImageSpec, Int64Value, KeyValue, LinuxContainerConfig,
    LinuxContainerSecurityContext, ListContainersRequest, RemoveContainerRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, RuntimeServiceClient, StartContainerRequest,
    StopContainerRequest, StopPodSandboxRequest,
};

#[test]
fn containers_run_in_pods_and_survive_a_restart_of_serve() {
    if !root_or_skip("containers_run_in_pods_and_survive_a_restart_of_serve") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let _cleanup = Cleanup {
        dir: dir.path().to_path_buf(),
        cgroups: vec![format!("/mr-serve-test-{pid}-p")],
    };
    let image = import_busybox(dir.path());
    let logs = dir.path().join("logs");
    let sock = dir.path().join("cri.sock");
    let mut child = spawn_in(dir.path(), &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connect =
        || async { RuntimeServiceClient::new(cri_api::transport::connect(&sock).await.unwrap()) };
    let mut pod_cfg = pod_config("p", &[]);
    pod_cfg.log_directory = logs.display().to_string();
    pod_cfg.hostname = "pod-p".into();
    let (pod, web, once) = rt.block_on(async {
        let mut c = connect().await;
        let pod = run_pod(&mut c, &pod_cfg).await;

        // Events, from here on, collected as they come.
        let mut events = c
            .get_container_events(cri_api::v1::GetEventsRequest {})
            .await
            .unwrap()
            .into_inner();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        tokio::spawn(async move {
            while let Ok(Some(ev)) = events.message().await {
                sink.lock()
                    .unwrap()
                    .push((ev.container_id, ev.container_event_type));
            }
        });

        // A long-running container: output on both streams, a trap for the
        // image's stop signal (SIGQUIT) that exits 3.
        let mut cfg = config(
            "web",
            &image,
            &[
                "/bin/sh",
                "-c",
                "echo out; echo err >&2; trap 'echo bye; exit 3' QUIT; \
                 while :; do sleep 0.05; done",
            ],
        );
        cfg.envs = vec![KeyValue {
            key: "GREETING".into(),
            value: b"hello".to_vec(),
        }];
        let web = create(&mut c, &pod, cfg.clone(), &pod_cfg).await.unwrap();
        let s = status(&mut c, &web).await;
        assert_eq!(s.state, ContainerState::ContainerCreated as i32);
        assert!(s.image_ref.contains("@sha256:"), "{}", s.image_ref);
        assert_eq!(s.log_path, logs.join("web.log").display().to_string());
        // Its image cannot go while the container uses it.
        let mut images =
            cri_api::v1::ImageServiceClient::new(cri_api::transport::connect(&sock).await.unwrap());
        let e = images
            .remove_image(cri_api::v1::RemoveImageRequest {
                image: Some(ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
        assert!(e.message().contains("in use"), "{}", e.message());
        // The same name and attempt again: AlreadyExists.
        let e = create(&mut c, &pod, cfg, &pod_cfg).await.unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists, "{}", e.message());
        start(&mut c, &web).await;
        let e = c
            .start_container(StartContainerRequest {
                container_id: web.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
        let s = status(&mut c, &web).await;
        assert_eq!(s.state, ContainerState::ContainerRunning as i32);
        assert!(s.started_at >= s.created_at && s.created_at > 0);

        // ExecSync: the container's env, user and cwd; both streams; the
        // exit code; a timeout.
        let r = exec(
            &mut c,
            &web,
            &[
                "/bin/sh",
                "-c",
                "echo $GREETING $(id -u):$(id -g) $(pwd) $(cat /etc/hostname); echo e >&2; exit 7",
            ],
            10,
        )
        .await
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&r.stdout),
            "hello 1000:50 /home/app pod-p\n"
        );
        assert_eq!(r.stderr, b"e\n");
        assert_eq!(r.exit_code, 7);
        let e = exec(&mut c, &web, &["/bin/sh", "-c", "sleep 30"], 1)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::DeadlineExceeded, "{}", e.message());
        let e = exec(&mut c, &web, &["/no/such/program"], 5).await;
        assert!(
            e.as_ref().is_err() || e.as_ref().unwrap().exit_code != 0,
            "{e:?}"
        );
        let e = c
            .exec(ExecRequest {
                container_id: web.clone(),
                cmd: vec!["sh".into()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        // Exec with no stream asked for is refused; with one, a URL.
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        let url = c
            .exec(ExecRequest {
                container_id: web.clone(),
                cmd: vec!["sh".into()],
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        assert!(url.contains("/exec/"), "{url}");

        // UpdateContainerResources: the memory cgroup takes the new limit,
        // ContainerStatus shows it.
        c.update_container_resources(cri_api::v1::UpdateContainerResourcesRequest {
            container_id: web.clone(),
            linux: Some(cri_api::v1::LinuxContainerResources {
                memory_limit_in_bytes: 96 << 20,
                cpu_shares: 256,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
        let st = status(&mut c, &web).await;
        assert_eq!(
            st.resources.unwrap().linux.unwrap().memory_limit_in_bytes,
            96 << 20
        );
        let v1 = format!("/sys/fs/cgroup/memory/mr-serve-test-{pid}-p/{web}/memory.limit_in_bytes");
        let v2 = format!("/sys/fs/cgroup/mr-serve-test-{pid}-p/{web}/memory.max");
        let cg = std::fs::read_to_string(&v1)
            .or_else(|_| std::fs::read_to_string(&v2))
            .expect("the container's memory cgroup");
        assert_eq!(cg.trim(), (96u64 << 20).to_string());

        // ReopenContainerLog: after the kubelet moves the log away, the
        // monitor writes a new file.
        let web_log = logs.join("web.log");
        std::fs::rename(&web_log, logs.join("web.log.1")).unwrap();
        c.reopen_container_log(cri_api::v1::ReopenContainerLogRequest {
            container_id: web.clone(),
        })
        .await
        .unwrap();
        assert!(web_log.exists(), "no new log file after ReopenContainerLog");

        // Stats of the running container and of its pod; metrics.
        let st = c
            .container_stats(cri_api::v1::ContainerStatsRequest {
                container_id: web.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
        assert_eq!(st.attributes.as_ref().unwrap().id, web);
        assert!(st.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
        assert!(st.memory.unwrap().working_set_bytes.unwrap().value > 0);
        assert!(st.writable_layer.unwrap().inodes_used.unwrap().value >= 1);
        let listed = c
            .list_container_stats(cri_api::v1::ListContainerStatsRequest {
                filter: Some(cri_api::v1::ContainerStatsFilter {
                    pod_sandbox_id: pod.clone(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .stats;
        assert_eq!(listed.len(), 1);
        let ps = c
            .pod_sandbox_stats(cri_api::v1::PodSandboxStatsRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
        let lx = ps.linux.unwrap();
        assert_eq!(lx.containers.len(), 1);
        // The pause process, the shell and its sleep, at least.
        assert!(lx.process.unwrap().process_count.unwrap().value >= 2);
        let names: Vec<String> = c
            .list_metric_descriptors(cri_api::v1::ListMetricDescriptorsRequest {})
            .await
            .unwrap()
            .into_inner()
            .descriptors
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert!(names.contains(&"container_memory_working_set_bytes".to_string()));
        let pm = c
            .list_pod_sandbox_metrics(cri_api::v1::ListPodSandboxMetricsRequest {})
            .await
            .unwrap()
            .into_inner()
            .pod_metrics;
        let mine = pm
            .iter()
            .find(|m| m.pod_sandbox_id == pod)
            .expect("pod metrics");
        let cm = &mine.container_metrics[0];
        assert_eq!(cm.container_id, web);
        assert!(
            cm.metrics
                .iter()
                .any(|m| m.name == "container_memory_working_set_bytes"
                    && m.value.as_ref().unwrap().value > 0)
        );

        // A container that runs the image's own command, as root with a
        // read-only rootfs and no capabilities.
        let mut cfg = config("once", &image, &[]);
        cfg.args = vec![
            "id -u; id -g; touch /x 2>/dev/null || echo ro; grep CapEff /proc/self/status".into(),
        ];
        cfg.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                run_as_user: Some(Int64Value { value: 0 }),
                readonly_rootfs: true,
                capabilities: Some(cri_api::v1::Capability {
                    drop_capabilities: vec!["ALL".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let once = create(&mut c, &pod, cfg, &pod_cfg).await.unwrap();
        start(&mut c, &once).await;
        let s = exited(&mut c, &once).await;
        assert_eq!(s.exit_code, 0);
        assert_eq!(s.reason, "Completed");
        assert!(s.finished_at >= s.started_at, "{s:?}");
        let lines = log_lines(&logs.join("once.log"));
        let texts: Vec<&str> = lines.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts[..3], ["0", "0", "ro"], "{lines:?}");
        assert!(texts[3].ends_with("0000000000000000"), "{lines:?}");

        // Errors: a missing pod, image or container; stop and remove of a
        // missing container are no errors.
        let e = create(&mut c, "nope", config("x", &image, &["true"]), &pod_cfg)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{}", e.message());
        let e = create(
            &mut c,
            &pod,
            config("x", "example.com/none:1", &["true"]),
            &pod_cfg,
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{}", e.message());
        let e = create(&mut c, &pod, ContainerConfig::default(), &pod_cfg)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        let mut escape = config("escape", &image, &["true"]);
        escape.log_path = "../../elsewhere.log".into();
        let e = create(&mut c, &pod, escape, &pod_cfg).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(e.message().contains("log_path"), "{}", e.message());
        let e = c
            .container_status(ContainerStatusRequest {
                container_id: "nope".into(),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        c.stop_container(StopContainerRequest {
            container_id: "nope".into(),
            timeout: 1,
        })
        .await
        .unwrap();
        c.remove_container(RemoveContainerRequest {
            container_id: "nope".into(),
        })
        .await
        .unwrap();
        // Nothing of the failed creates is left.
        let all = c
            .list_containers(ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(all.len(), 2, "{all:?}");
        use cri_api::v1::ContainerEventType as Ev;
        let want = [
            (web.clone(), Ev::ContainerCreatedEvent as i32),
            (web.clone(), Ev::ContainerStartedEvent as i32),
            (once.clone(), Ev::ContainerStartedEvent as i32),
            (once.clone(), Ev::ContainerStoppedEvent as i32),
        ];
        for _ in 0..200 {
            if want.iter().all(|w| seen.lock().unwrap().contains(w)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let got = seen.lock().unwrap().clone();
        for w in &want {
            assert!(got.contains(w), "{w:?} not in {got:?}");
        }
        (pod, web, once)
    });

    // kill -9 of serve: the containers go on; a new serve finds them.
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(&sock);
    let mut child = spawn_in(dir.path(), &[]);
    rt.block_on(async {
        let mut c = connect().await;
        let running = c
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    state: Some(ContainerStateValue {
                        state: ContainerState::ContainerRunning as i32,
                    }),
                    pod_sandbox_id: pod.clone(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(
            running.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            [web.as_str()]
        );
        let by_label = c
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    label_selector: [("name".to_string(), "once".to_string())].into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(by_label.len(), 1);
        assert_eq!(by_label[0].id, once);
        assert_eq!(status(&mut c, &once).await.exit_code, 0);
        let r = exec(&mut c, &web, &["/bin/sh", "-c", "echo again"], 5)
            .await
            .unwrap();
        assert_eq!(r.stdout, b"again\n");

        // StopContainer: the image's SIGQUIT, which the trap answers with 3.
        c.stop_container(StopContainerRequest {
            container_id: web.clone(),
            timeout: 20,
        })
        .await
        .unwrap();
        let s = status(&mut c, &web).await;
        assert_eq!(s.state, ContainerState::ContainerExited as i32);
        assert_eq!(s.exit_code, 3);
        assert_eq!(s.reason, "Error");
        // The first lines in the rotated file, the last in the new one.
        let old_lines = log_lines(&logs.join("web.log.1"));
        assert!(
            old_lines.contains(&("stdout".into(), "out".into())),
            "{old_lines:?}"
        );
        assert!(
            old_lines.contains(&("stderr".into(), "err".into())),
            "{old_lines:?}"
        );
        let lines = log_lines(&logs.join("web.log"));
        assert_eq!(lines, [("stdout".to_string(), "bye".to_string())]);
        let e = exec(&mut c, &web, &["/bin/sh", "-c", "true"], 5)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);

        // A new container after the restart, then the pod stopped and
        // removed with everything in it.
        let late = create(
            &mut c,
            &pod,
            config("late", &image, &["/bin/sh", "-c", "sleep 60"]),
            &pod_cfg,
        )
        .await
        .unwrap();
        start(&mut c, &late).await;
        c.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        let s = status(&mut c, &late).await;
        assert_eq!(s.state, ContainerState::ContainerExited as i32);
        assert_eq!(s.exit_code, 137);
        c.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        let all = c
            .list_containers(ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert!(all.is_empty(), "{all:?}");
    });
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let base = dir.path().display().to_string();
    assert!(
        !mounts.contains(&base),
        "mounts left under {base}:\n{mounts}"
    );
    let leases = std::fs::read_dir(dir.path().join("store/.store/leases"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leases, 0, "leases left in the store");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A CNI bridge network of this test's own in `dir/net.d`: a bridge, a
/// subnet and host-local's dir unique to this process, and portmap.
fn bridge_network(dir: &Path, tag: u8) -> (String, String) {
    let n = std::process::id() % 200 + 20;
    let bridge = format!("mrt{n}x{tag}");
    let subnet = format!("10.{n}.{tag}");
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "mrtest",
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
             "hairpinMode": true,
             "ipam": {"type": "host-local", "dataDir": dir.join("ipam"),
                      "ranges": [[{"subnet": format!("{subnet}.0/24")}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    std::fs::create_dir_all(dir.join("net.d")).unwrap();
    std::fs::write(
        dir.join("net.d/10-mrtest.conflist"),
        serde_json::to_vec_pretty(&conf).unwrap(),
    )
    .unwrap();
    (bridge, subnet)
}

/// A bridge deleted on drop.
struct Bridge(String);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .output();
    }
}

fn http_get(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Pods on a CNI bridge (Debian's bridge, host-local and portmap plugins):
/// a web server in one pod reached from another pod by pod IP, from the
/// host by pod IP and by hostPort; the pod's hostname, DNS config and a
/// sysctl; and after a kill -9 of serve, StopPodSandbox still detaches the
/// pod (its IP released, its netns unpinned).
#[test]
fn pods_on_a_cni_bridge_reach_each_other_and_the_host() {
    use cri_api::v1::{DnsConfig, PodSandboxStatusRequest, PortMapping, StatusRequest};
    if !root_or_skip("pods_on_a_cni_bridge_reach_each_other_and_the_host") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let (bridge, subnet) = bridge_network(dir.path(), 7);
    let _bridge = Bridge(bridge);
    let _cleanup = Cleanup {
        dir: dir.path().to_path_buf(),
        cgroups: vec![
            format!("/mr-serve-test-{pid}-na"),
            format!("/mr-serve-test-{pid}-nb"),
        ],
    };
    let image = import_busybox(dir.path());
    let sock = dir.path().join("cri.sock");
    let mut child = spawn_in(dir.path(), &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connect =
        || async { RuntimeServiceClient::new(cri_api::transport::connect(&sock).await.unwrap()) };
    let host_port = 20000 + (pid % 10000) as i32;
    let pod_cfg = |name: &str| {
        let mut p = pod_config(name, &[]);
        // Own network, ipc and pid namespaces: the kubelet's defaults.
        p.linux.as_mut().unwrap().security_context = None;
        p.hostname = format!("host-{name}");
        p.log_directory = dir.path().join("logs").join(name).display().to_string();
        p
    };
    let mut a_cfg = pod_cfg("na");
    a_cfg.port_mappings = vec![PortMapping {
        protocol: 0,
        container_port: 8080,
        host_port,
        host_ip: String::new(),
    }];
    a_cfg.dns_config = Some(DnsConfig {
        servers: vec!["10.0.0.10".into()],
        searches: vec!["svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    a_cfg
        .linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("net.ipv4.ip_unprivileged_port_start".into(), "80".into());
    let b_cfg = pod_cfg("nb");
    let (a, ip_a) = rt.block_on(async {
        let mut c = connect().await;
        let st = c
            .status(StatusRequest { verbose: false })
            .await
            .unwrap()
            .into_inner();
        let net = st
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.r#type == "NetworkReady")
            .unwrap();
        assert!(net.status, "{net:?}");
        let mut ids = Vec::new();
        for cfg in [&a_cfg, &b_cfg] {
            ids.push(
                c.run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(cfg.clone()),
                    runtime_handler: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .pod_sandbox_id,
            );
        }
        let mut ips = Vec::new();
        for id in &ids {
            let s = c
                .pod_sandbox_status(PodSandboxStatusRequest {
                    pod_sandbox_id: id.clone(),
                    verbose: false,
                })
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap();
            let ip = s.network.unwrap().ip;
            assert!(ip.starts_with(&format!("{subnet}.")), "{ip}");
            ips.push(ip);
        }
        assert_ne!(ips[0], ips[1]);
        let mut web_cfg = config(
            "web",
            &image,
            &[
                "/bin/sh",
                "-c",
                "mkdir -p /tmp/www && echo hello-from-a > /tmp/www/index.html && \
                 exec httpd -f -p 8080 -h /tmp/www",
            ],
        );
        web_cfg.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                run_as_user: Some(Int64Value { value: 0 }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let web = create(&mut c, &ids[0], web_cfg, &a_cfg).await.unwrap();
        let client = create(
            &mut c,
            &ids[1],
            config("client", &image, &["/bin/sh", "-c", "sleep 600"]),
            &b_cfg,
        )
        .await
        .unwrap();
        for id in [&web, &client] {
            start(&mut c, id).await;
        }
        // The pod's own hostname, resolv.conf and sysctl.
        let r = exec(
            &mut c,
            &web,
            &[
                "/bin/sh",
                "-c",
                "hostname; cat /etc/resolv.conf; cat /proc/sys/net/ipv4/ip_unprivileged_port_start",
            ],
            10,
        )
        .await
        .unwrap();
        let out = String::from_utf8_lossy(&r.stdout);
        assert_eq!(
            out,
            "host-na\nsearch svc.cluster.local\nnameserver 10.0.0.10\noptions ndots:5\n80\n",
            "{}",
            String::from_utf8_lossy(&r.stderr)
        );
        // From the other pod, by pod IP (the server may take a moment).
        let mut got = String::new();
        for _ in 0..100 {
            let r = exec(
                &mut c,
                &client,
                &[
                    "/bin/sh",
                    "-c",
                    &format!("wget -qO- http://{}:8080/", ips[0]),
                ],
                10,
            )
            .await
            .unwrap();
            got = String::from_utf8_lossy(&r.stdout).into_owned();
            if r.exit_code == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(got, "hello-from-a\n");
        (ids[0].clone(), ips[0].clone())
    });
    // From the host, by pod IP and by hostPort on the bridge's address.
    assert!(http_get(&format!("{ip_a}:8080")).ends_with("hello-from-a\n"));
    let gw = format!("{subnet}.1:{host_port}");
    let via_port = http_get(&gw);
    assert!(via_port.ends_with("hello-from-a\n"), "{via_port}");

    // PortForward into pod A's network namespace, over WebSocket.
    if let Some(py) = common::serve::python() {
        let url = rt.block_on(async {
            connect()
                .await
                .port_forward(cri_api::v1::PortForwardRequest {
                    pod_sandbox_id: a.clone(),
                    port: vec![8080],
                })
                .await
                .unwrap()
                .into_inner()
                .url
        });
        let r = common::serve::ws_client(
            &py,
            &url,
            "portforward.k8s.io",
            "GET / HTTP/1.0\r\n\r\n",
            "",
        );
        assert!(
            r["data"].as_str().unwrap().ends_with("hello-from-a\n"),
            "{r}"
        );
    }

    // kill -9 of serve, then a new one tears the network down on stop.
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(&sock);
    let mut child = spawn_in(dir.path(), &[]);
    let netns = dir.path().join("run/netns").join(&a);
    assert!(netns.exists());
    rt.block_on(async {
        let mut c = connect().await;
        c.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: a.clone(),
        })
        .await
        .unwrap();
        // Twice: the second has nothing left to do.
        c.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: a.clone(),
        })
        .await
        .unwrap();
    });
    assert!(!netns.exists(), "the netns pin outlived StopPodSandbox");
    let held: Vec<String> = std::fs::read_dir(dir.path().join("ipam/mrtest"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!held.contains(&ip_a), "{ip_a} still allocated: {held:?}");
    assert!(
        std::net::TcpStream::connect_timeout(&gw.parse().unwrap(), Duration::from_secs(2)).is_err(),
        "the hostPort still answers"
    );
    rt.block_on(async {
        let mut c = connect().await;
        let pods = c
            .list_pod_sandbox(cri_api::v1::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
        for p in pods {
            c.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: p.id,
            })
            .await
            .unwrap();
        }
    });
    let held = std::fs::read_dir(dir.path().join("ipam/mrtest"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&subnet))
        .count();
    assert_eq!(held, 0, "IPs left allocated");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The parent of process `pid` (its monitor, for a container's init).
fn ppid(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit(')').next().unwrap();
    after.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn init_pid(root: &Path, id: &str) -> i32 {
    let out = std::process::Command::new(common::bin_path())
        .arg("--root")
        .arg(root)
        .args(["state", id])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["pid"].as_i64().unwrap() as i32
}

/// After a host reboot (every process killed, mounts and `/run` gone; the
/// persistent state dir kept) a pod on a CNI network is NOTREADY, its
/// container EXITED with reason Unknown; stop releases its IP without a
/// netns, remove leaves no record, mount record or lease.
#[test]
fn containers_after_a_reboot_are_exited_and_removable() {
    if !root_or_skip("containers_after_a_reboot_are_exited_and_removable") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let (bridge, subnet) = bridge_network(dir.path(), 8);
    let _bridge = Bridge(bridge);
    let cg = format!("/mr-serve-test-{pid}-rb");
    let _cleanup = Cleanup {
        dir: dir.path().to_path_buf(),
        cgroups: vec![cg.clone()],
    };
    let image = import_busybox(dir.path());
    let sock = dir.path().join("cri.sock");
    let run = dir.path().join("run");
    let mut child = spawn_in(dir.path(), &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connect =
        || async { RuntimeServiceClient::new(cri_api::transport::connect(&sock).await.unwrap()) };
    let mut pod_cfg = pod_config("rb", &[]);
    pod_cfg.linux.as_mut().unwrap().security_context = None;
    pod_cfg.log_directory = dir.path().join("logs").display().to_string();
    let (pod, ctr) = rt.block_on(async {
        let mut c = connect().await;
        let pod = run_pod(&mut c, &pod_cfg).await;
        let ctr = create(
            &mut c,
            &pod,
            config("sleeper", &image, &["/bin/sh", "-c", "sleep 600"]),
            &pod_cfg,
        )
        .await
        .unwrap();
        start(&mut c, &ctr).await;
        (pod, ctr)
    });
    let ipam = dir.path().join("ipam/mrtest");
    let held = |d: &Path| {
        std::fs::read_dir(d)
            .map(|e| {
                e.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&subnet))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(held(&ipam), 1);

    // The "reboot".
    let inits = [init_pid(&run, &pod), init_pid(&run, &ctr)];
    let monitors = inits.map(ppid);
    child.kill().unwrap();
    child.wait().unwrap();
    for p in inits.iter().chain(monitors.iter()) {
        // SAFETY: signalling processes this test's server started.
        unsafe { libc::kill(*p, libc::SIGKILL) };
    }
    for p in inits {
        for _ in 0..400 {
            if !Path::new(&format!("/proc/{p}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    common::unmount_under(&run);
    std::fs::remove_dir_all(&run).unwrap();
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            let base = e.path().join(cg.trim_start_matches('/'));
            if let Ok(kids) = std::fs::read_dir(&base) {
                for k in kids.flatten() {
                    let _ = std::fs::remove_dir(k.path());
                }
            }
        }
    }
    let _ = std::fs::remove_file(&sock);

    let mut child = spawn_in(dir.path(), &[]);
    rt.block_on(async {
        let mut c = connect().await;
        let pods = c
            .list_pod_sandbox(cri_api::v1::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(pods.len(), 1);
        assert_eq!(
            pods[0].state,
            cri_api::v1::PodSandboxState::SandboxNotready as i32
        );
        let s = status(&mut c, &ctr).await;
        assert_eq!(s.state, ContainerState::ContainerExited as i32);
        assert_eq!((s.exit_code, s.reason.as_str()), (255, "Unknown"), "{s:?}");
        let e = c
            .start_container(StartContainerRequest {
                container_id: ctr.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
        c.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        c.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        let left = c
            .list_containers(ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert!(left.is_empty(), "{left:?}");
    });
    assert_eq!(held(&ipam), 0, "the pod's IP is still allocated");
    for sub in [
        "store/.store/leases",
        "store/.store/mounts",
        "cri/containers",
        "cri/pods",
    ] {
        let n = std::fs::read_dir(dir.path().join(sub))
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(n, 0, "{sub} is not empty");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A pod with a user namespace of its own (mode POD, the kubelet's
/// mappings): root in its container is host uid 200000, and owns its
/// id-mapped rootfs.
#[test]
fn a_pod_with_its_own_user_namespace() {
    use cri_api::v1::{IdMapping, LinuxSandboxSecurityContext, NamespaceOption, UserNamespace};
    if !root_or_skip("a_pod_with_its_own_user_namespace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let (bridge, _) = bridge_network(dir.path(), 9);
    let _bridge = Bridge(bridge);
    let _cleanup = Cleanup {
        dir: dir.path().to_path_buf(),
        cgroups: vec![format!("/mr-serve-test-{pid}-u")],
    };
    let image = import_busybox(dir.path());
    let sock = dir.path().join("cri.sock");
    let mut child = spawn_in(dir.path(), &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = RuntimeServiceClient::new(cri_api::transport::connect(&sock).await.unwrap());
        let map = vec![IdMapping {
            host_id: 200_000,
            container_id: 0,
            length: 65_536,
        }];
        let mut pod_cfg = pod_config("u", &[]);
        pod_cfg.log_directory = dir.path().join("logs").display().to_string();
        pod_cfg.linux.as_mut().unwrap().security_context = Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                userns_options: Some(UserNamespace {
                    mode: cri_api::v1::NamespaceMode::Pod as i32,
                    uids: map.clone(),
                    gids: map.clone(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let pod = c
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod_cfg.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {}", e.message()))
            .into_inner()
            .pod_sandbox_id;
        let mut cfg = config("u", &image, &["/bin/sh", "-c", "sleep 600"]);
        cfg.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                run_as_user: Some(Int64Value { value: 0 }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let id = create(&mut c, &pod, cfg, &pod_cfg)
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {}", e.message()));
        start(&mut c, &id).await;
        let r = exec(
            &mut c,
            &id,
            &[
                "/bin/sh",
                "-c",
                "id -u; cat /proc/self/uid_map; touch /made-here && stat -c %u /made-here; stat -c %u /bin/busybox",
            ],
            10,
        )
        .await
        .unwrap();
        let out = String::from_utf8_lossy(&r.stdout);
        let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            lines,
            vec![
                vec!["0"],
                vec!["0", "200000", "65536"],
                vec!["0"],
                vec!["0"]
            ],
            "{out}{}",
            String::from_utf8_lossy(&r.stderr)
        );
        // On the host the process is uid 200000.
        let init = init_pid(&dir.path().join("run"), &id);
        let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(uid.split_whitespace().nth(1) == Some("200000"), "{uid}");
        c.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        c.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    });
    child.kill().unwrap();
    child.wait().unwrap();
}
