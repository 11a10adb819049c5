//! Exec, Attach and PortForward through `serve`'s streaming server, driven
//! by clients nobody here wrote: PyPI's websocket-client
//! (`tests/cri/ws_client.py`) in the v5, v4, v1 and base64 channel
//! protocols and `portforward.k8s.io`; npm's spdy-transport
//! (`tests/cri/spdy_*.js`) over SPDY/3.1 and SPDY tunnelled in WebSocket.
//! Stdin and its close, both output streams, the exit code in the v4
//! status, a terminal with a resize, attach with and without `stdin_once`,
//! port forwarding, and tokens that work once.

mod common;

use common::root_or_skip;
use common::serve::{
    Cleanup, config, create, import_busybox, pod_config, python, run_pod, spawn_in, start,
    ws_client as ws,
};
use cri_api::Code;
use cri_api::v1::{AttachRequest, ExecRequest, RuntimeServiceClient};

#[test]
fn exec_attach_and_port_forward_from_real_clients() {
    if !root_or_skip("exec_attach_and_port_forward_from_real_clients") {
        return;
    }
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let _cleanup = Cleanup {
        dir: dir.path().to_path_buf(),
        cgroups: vec![format!("/mr-serve-test-{pid}-st")],
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
        let mut pod_cfg = pod_config("st", &[]);
        pod_cfg.log_directory = dir.path().join("logs").display().to_string();
        let pod = run_pod(&mut c, &pod_cfg).await;
        let sleeper = create(
            &mut c,
            &pod,
            config("sleeper", &image, &["/bin/sh", "-c", "sleep 600"]),
            &pod_cfg,
        )
        .await
        .unwrap();
        // A container with a stdin of its own that echoes what it reads.
        let mut echo_cfg = config(
            "echo",
            &image,
            &["/bin/sh", "-c", "while read l; do echo got-$l; done"],
        );
        echo_cfg.stdin = true;
        let echo = create(&mut c, &pod, echo_cfg, &pod_cfg).await.unwrap();
        for id in [&sleeper, &echo] {
            start(&mut c, id).await;
        }
        let exec_url = |c: &mut RuntimeServiceClient<_>, cmd: &str, stdin: bool, tty: bool| {
            let req = ExecRequest {
                container_id: sleeper.clone(),
                cmd: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
                tty,
                stdin,
                stdout: true,
                stderr: !tty,
            };
            let mut c = c.clone();
            async move { c.exec(req).await.map(|r| r.into_inner().url) }
        };

        // v5: stdin, its close, both streams, the exit code.
        let url = exec_url(&mut c, "cat; echo err >&2; exit 7", true, false)
            .await
            .unwrap();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let r = ws(&py, &url, "v5.channel.k8s.io", "hello\n", "");
        assert_eq!(r["protocol"], "v5.channel.k8s.io");
        assert_eq!(r["stdout"], "hello\n", "{r}");
        // A normal close: with no status (1005) crictl -r websocket takes
        // the end for an error and loses the exit code.
        assert_eq!(r["close_code"], 1000, "{r}");
        assert_eq!(r["stderr"], "err\n", "{r}");
        let status: serde_json::Value = serde_json::from_str(r["error"].as_str().unwrap()).unwrap();
        assert_eq!(status["reason"], "NonZeroExitCode", "{r}");
        assert_eq!(status["details"]["causes"][0]["message"], "7", "{r}");
        // The token was used: a second connection gets 404.
        let again = ws(&py, &url, "v5.channel.k8s.io", "", "");
        assert_eq!(again["http_status"], 404, "{again}");

        // SPDY/3.1, as the kubelet and crictl speak it, from npm's
        // spdy-transport: stdin, both streams and the v4 status; a terminal
        // with a resize.
        let url = exec_url(&mut c, "cat; echo err >&2; exit 5", true, false)
            .await
            .unwrap();
        if let Some(r) = common::serve::spdy_client(&url, "over spdy\n", "", false) {
            assert_eq!(r["protocol"], "v4.channel.k8s.io", "{r}");
            assert_eq!(r["stdout"], "over spdy\n", "{r}");
            assert_eq!(r["stderr"], "err\n", "{r}");
            let status: serde_json::Value =
                serde_json::from_str(r["error"].as_str().unwrap()).unwrap();
            assert_eq!(status["details"]["causes"][0]["message"], "5", "{r}");
            let url = exec_url(&mut c, "sleep 0.5; busybox stty size", false, true)
                .await
                .unwrap();
            let r = common::serve::spdy_client(&url, "", "120x40", true).unwrap();
            assert_eq!(r["stdout"].as_str().unwrap().trim(), "40 120", "{r}");
            // A used token: refused before the upgrade.
            let r = common::serve::spdy_client(&url, "", "", false).unwrap();
            assert_eq!(r["http_status"], 404, "{r}");
        }

        // spdystream, as kubectl and crictl carry it (no flow control): a
        // MiB through cat.
        let url = exec_url(&mut c, "cat", true, false).await.unwrap();
        if let Some(r) = common::serve::spdystream_client(&[&url, "exec", "@1048576"]) {
            assert_eq!(r["length"], 1 << 20, "{r}");
            let status: serde_json::Value =
                serde_json::from_str(r["error"].as_str().unwrap()).unwrap();
            assert_eq!(status["status"], "Success", "{r}");
        }

        // v4 and success.
        let url = exec_url(&mut c, "echo ok", false, false).await.unwrap();
        let r = ws(&py, &url, "v4.channel.k8s.io", "", "");
        assert_eq!(r["stdout"], "ok\n", "{r}");
        let status: serde_json::Value = serde_json::from_str(r["error"].as_str().unwrap()).unwrap();
        assert_eq!(status["status"], "Success", "{r}");

        // base64, and a terminal resized before the command asks its size.
        let url = exec_url(&mut c, "sleep 0.5; busybox stty size", false, true)
            .await
            .unwrap();
        let r = ws(&py, &url, "base64.channel.k8s.io", "", "100x30");
        assert_eq!(r["stdout"].as_str().unwrap().trim(), "30 100", "{r}");

        // v1 (channel.k8s.io): output, and the exit code as text.
        let url = exec_url(&mut c, "echo v1; exit 3", false, false)
            .await
            .unwrap();
        let r = ws(&py, &url, "channel.k8s.io", "", "");
        assert_eq!(r["stdout"], "v1\n", "{r}");
        assert!(
            r["error"].as_str().unwrap().contains("exit status 3"),
            "{r}"
        );

        // An unknown subprotocol and an unknown token are refused.
        let url = exec_url(&mut c, "true", false, false).await.unwrap();
        let r = ws(&py, &url, "v9.channel.k8s.io", "", "");
        assert_eq!(r["http_status"], 400, "{r}");
        let bogus = format!("{}/exec/AAAAAAAAAAA", url.rsplitn(3, '/').nth(2).unwrap());
        let r = ws(&py, &bogus, "v5.channel.k8s.io", "", "");
        assert_eq!(r["http_status"], 404, "{r}");

        // Attach to the echo container's own stdio.
        let url = c
            .attach(AttachRequest {
                container_id: echo.clone(),
                stdin: true,
                tty: false,
                stdout: true,
                stderr: true,
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        let r = common::serve::ws_client_until(&py, &url, "v5.channel.k8s.io", "x\n", "", "got-x");
        assert_eq!(r["stdout"], "got-x\n", "{r}");
        // Without stdin_once, the end of the client's stdin ends the
        // attach and leaves the container's open: a second attach, over
        // SPDY from spdy-transport, is heard.
        let attach_url = |c: &mut RuntimeServiceClient<_>, id: &str| {
            let mut c = c.clone();
            let req = AttachRequest {
                container_id: id.to_string(),
                stdin: true,
                tty: false,
                stdout: true,
                stderr: true,
            };
            async move { c.attach(req).await.unwrap().into_inner().url }
        };
        let url = attach_url(&mut c, &echo).await;
        if let Some(r) =
            common::serve::node_client("spdy_client.js", &[&url, "y\n", "", "", "", "got-y"])
        {
            assert_eq!(r["protocol"], "v4.channel.k8s.io", "{r}");
            assert_eq!(r["stdout"], "got-y\n", "{r}");
            let status: serde_json::Value =
                serde_json::from_str(r["error"].as_str().unwrap()).unwrap();
            assert_eq!(status["status"], "Success", "{r}");
        }
        let st = common::serve::status(&mut c, &echo).await;
        assert_eq!(
            st.state(),
            cri_api::v1::ContainerState::ContainerRunning,
            "{st:?}"
        );
        // With stdin_once, it closes the container's stdin: the loop ends.
        let mut once_cfg = config(
            "once",
            &image,
            &[
                "/bin/sh",
                "-c",
                "while read l; do echo once-$l; done; echo bye",
            ],
        );
        once_cfg.stdin = true;
        once_cfg.stdin_once = true;
        let once = create(&mut c, &pod, once_cfg, &pod_cfg).await.unwrap();
        start(&mut c, &once).await;
        let url = attach_url(&mut c, &once).await;
        let r = common::serve::ws_client_until(&py, &url, "v5.channel.k8s.io", "z\n", "", "once-z");
        assert!(r["stdout"].as_str().unwrap().starts_with("once-z\n"), "{r}");
        let st = common::serve::exited(&mut c, &once).await;
        assert_eq!(st.exit_code, 0, "{st:?}");

        // PortForward: a web server in the (host-network) pod on a loopback
        // port, reached through the stream; a port nobody listens on is
        // told on the error channel.
        let port = 20000 + (pid % 10000) as u16 + 7;
        let mut web_cfg = config(
            "web",
            &image,
            &[
                "/bin/sh",
                "-c",
                &format!(
                    "mkdir -p /tmp/w && echo forwarded > /tmp/w/index.html && \
                     exec httpd -f -p 127.0.0.1:{port} -h /tmp/w"
                ),
            ],
        );
        web_cfg.linux = Some(cri_api::v1::LinuxContainerConfig {
            security_context: Some(cri_api::v1::LinuxContainerSecurityContext {
                run_as_user: Some(cri_api::v1::Int64Value { value: 0 }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let web = create(&mut c, &pod, web_cfg, &pod_cfg).await.unwrap();
        start(&mut c, &web).await;
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        let pf = |c: &mut RuntimeServiceClient<_>, port: u16| {
            let mut c = c.clone();
            let pod = pod.clone();
            async move {
                c.port_forward(cri_api::v1::PortForwardRequest {
                    pod_sandbox_id: pod,
                    port: vec![i32::from(port)],
                })
                .await
                .unwrap()
                .into_inner()
                .url
            }
        };
        let url = pf(&mut c, port).await;
        let r = ws(
            &py,
            &url,
            "portforward.k8s.io",
            "GET / HTTP/1.0\r\n\r\n",
            "",
        );
        assert_eq!(r["ports"], serde_json::json!([port, port]), "{r}");
        assert!(r["data"].as_str().unwrap().ends_with("forwarded\n"), "{r}");
        let url = pf(&mut c, port + 1).await;
        let r = ws(&py, &url, "portforward.k8s.io", "", "");
        assert!(r["error"].as_str().unwrap().contains("refused"), "{r}");
        // The same over SPDY (as kubectl and crictl do it) and SPDY
        // tunnelled in WebSocket (crictl -r websocket), from spdy-transport:
        // two connections on one session, one to a port nobody listens on.
        let url = pf(&mut c, port).await;
        let get = format!("{port}=GET / HTTP/1.0\r\n\r\n");
        if let Some(r) = common::serve::spdystream_client(&[&url, "portforward", &get, &get]) {
            for f in r["forwards"].as_array().unwrap() {
                assert!(f["data"].as_str().unwrap().ends_with("forwarded\n"), "{r}");
            }
        }
        for mode in ["spdy", "websocket"] {
            let url = pf(&mut c, port).await;
            let get = format!("{port}=GET / HTTP/1.0\r\n\r\n");
            let none = format!("{}=x", port + 1);
            let Some(r) =
                common::serve::node_client("spdy_portforward.js", &[&url, mode, &get, &none])
            else {
                break;
            };
            let f = &r["forwards"];
            assert!(
                f[0]["data"].as_str().unwrap().ends_with("forwarded\n"),
                "{r}"
            );
            assert_eq!(f[0]["error"], "", "{r}");
            assert!(f[1]["error"].as_str().unwrap().contains("refused"), "{r}");
        }

        // A stopped container: Exec and Attach refuse it; a URL given while
        // it ran, used after it stopped, ends with the reason on the error
        // stream, and the server goes on serving.
        let doomed = create(
            &mut c,
            &pod,
            config(
                "doomed",
                &image,
                &["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"],
            ),
            &pod_cfg,
        )
        .await
        .unwrap();
        start(&mut c, &doomed).await;
        let late = c
            .exec(ExecRequest {
                container_id: doomed.clone(),
                cmd: vec!["echo".into(), "late".into()],
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        // Killed after a second: the shell as pid 1 ignores SIGTERM.
        c.stop_container(cri_api::v1::StopContainerRequest {
            container_id: doomed.clone(),
            timeout: 1,
        })
        .await
        .unwrap();
        let r = ws(&py, &late, "v4.channel.k8s.io", "", "");
        let status: serde_json::Value = serde_json::from_str(r["error"].as_str().unwrap()).unwrap();
        assert_eq!(status["status"], "Failure", "{r}");
        assert!(
            status["message"].as_str().unwrap().contains("is stopped"),
            "{r}"
        );
        for e in [
            c.exec(ExecRequest {
                container_id: doomed.clone(),
                cmd: vec!["true".into()],
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap_err(),
            c.attach(AttachRequest {
                container_id: doomed.clone(),
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap_err(),
        ] {
            assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
        }
        let url = exec_url(&mut c, "echo still", false, false).await.unwrap();
        let r = ws(&py, &url, "v4.channel.k8s.io", "", "");
        assert_eq!(r["stdout"], "still\n", "{r}");

        // Bad requests: no stream, tty with stderr, a missing container.
        let e = c
            .exec(ExecRequest {
                container_id: sleeper.clone(),
                cmd: vec!["true".into()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let e = c
            .exec(ExecRequest {
                container_id: sleeper.clone(),
                cmd: vec!["true".into()],
                tty: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let e = c
            .exec(ExecRequest {
                container_id: "nope".into(),
                cmd: vec!["true".into()],
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    });
    child.kill().unwrap();
    child.wait().unwrap();
}
