//! The server against clients nobody here wrote, with a backend of the
//! test's own (stdin back on stdout, a line on stderr, exit 5; port
//! forwards to loopback ports): npm's spdy-transport speaking SPDY/3.1 as
//! the kubelet's remotecommand and port-forward clients, directly and
//! tunnelled in WebSocket (npm's websocket-driver) as client-go's
//! tunnelling dialer does; and spdystream (Debian's Go package), the SPDY
//! library under kubectl, crictl and the kubelet, which does no flow
//! control at all.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cri_streaming::{
    AttachRequest, Backend, BoxFuture, ExecRequest, PortForwardRequest, Request, Server, Streams,
};

struct Echo;

impl Backend for Echo {
    fn exec(&self, req: ExecRequest, mut s: Streams) -> BoxFuture<Result<i32, String>> {
        Box::pin(async move {
            // Past every window: flow control must let it all through.
            if req.cmd == ["big"] {
                if let Some(out) = &s.stdout {
                    for _ in 0..64 {
                        let _ = out.send(vec![b'x'; 32 * 1024]).await;
                    }
                }
                return Ok(0);
            }
            if let Some(err) = &s.stderr {
                let _ = err.send(b"err\n".to_vec()).await;
            }
            if let (Some(rx), Some(out)) = (s.stdin.as_mut(), &s.stdout) {
                while let Some(b) = rx.recv().await {
                    let _ = out.send(b).await;
                }
            }
            Ok(5)
        })
    }

    fn attach(&self, _req: AttachRequest, _s: Streams) -> BoxFuture<Result<(), String>> {
        Box::pin(async { Err("no attach here".to_string()) })
    }

    fn port_forward(
        &self,
        pod: &str,
        port: u16,
    ) -> BoxFuture<Result<tokio::net::TcpStream, String>> {
        let pod = pod.to_string();
        Box::pin(async move {
            if pod != "p" {
                return Err(format!("no pod {pod}"));
            }
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| format!("port {port}: {e}"))
        })
    }
}

fn modules() -> Option<PathBuf> {
    let m = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.node/node_modules");
    if m.join("spdy-transport").is_dir() {
        return Some(m);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "spdy-transport not installed in .node: the test command installs it"
    );
    eprintln!("skipping: no .node/node_modules/spdy-transport");
    None
}

/// Builds `tests/cri/spdystream_client.go` against Debian's spdystream;
/// `None` (skip) outside CI without Go or the package.
fn spdystream_client() -> Option<PathBuf> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/mini-runtime/tests/cri/spdystream_client.go");
    let gopath = "/usr/share/gocode";
    let have = std::path::Path::new(gopath)
        .join("src/github.com/moby/spdystream")
        .is_dir()
        && Command::new("go").arg("version").output().is_ok();
    if !have {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "go or golang-github-docker-spdystream-dev missing: the test command installs them"
        );
        eprintln!("skipping: no go or no spdystream");
        return None;
    }
    let bin = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("spdystream_client");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", gopath)
        .env(
            "GOCACHE",
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gocache"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(bin)
}

/// A streaming server on a loopback port with the test's backend.
async fn echo_server() -> Server {
    Server::start(
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(60),
        Arc::new(Echo),
    )
    .await
    .unwrap()
}

/// Runs `cmd` (off the runtime's threads); the JSON it printed.
async fn json_of(mut cmd: Command) -> serde_json::Value {
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn run_json(bin: PathBuf, args: Vec<String>) -> serde_json::Value {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    json_of(cmd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_port_forward_from_spdystream_which_does_no_flow_control() {
    let Some(bin) = spdystream_client() else {
        return;
    };
    let server = echo_server().await;
    let exec = |cmd: &str| {
        server.url_for(Request::Exec(ExecRequest {
            container_id: "c".into(),
            cmd: vec![cmd.into()],
            tty: false,
            stdin: true,
            stdout: true,
            stderr: true,
        }))
    };
    // A MiB of stdin back on stdout, and 2 MiB out: past every window
    // that is never widened.
    let r = run_json(
        bin.clone(),
        vec![exec("x"), "exec".into(), "@1048576".into()],
    )
    .await;
    assert_eq!(r["protocol"], "v4.channel.k8s.io", "{r}");
    assert_eq!(r["length"], 1 << 20, "{r}");
    assert_eq!(r["stderr"], "err\n", "{r}");
    let status: serde_json::Value = serde_json::from_str(r["error"].as_str().unwrap()).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "5", "{r}");
    let r = run_json(bin.clone(), vec![exec("big"), "exec".into()]).await;
    assert_eq!(r["length"], 64 * 32 * 1024, "{r}");
    // Port forwards: a MiB each way, and a port nobody listens on.
    let a = answering_port().await;
    let url = server.url_for(Request::PortForward(PortForwardRequest {
        pod_sandbox_id: "p".into(),
        ports: vec![],
    }));
    let args = vec![
        url,
        "portforward".into(),
        format!("{a}=@1048576"),
        format!("{a}=small"),
        "1=x".into(),
    ];
    let r = run_json(bin, args).await;
    assert_eq!(r["protocol"], "portforward.k8s.io", "{r}");
    let f = &r["forwards"];
    assert_eq!(f[0]["length"], format!("{a} got ").len() + (1 << 20), "{r}");
    assert_eq!(f[1]["data"], format!("{a} got small"), "{r}");
    assert!(f[2]["error"].as_str().unwrap().contains("refused"), "{r}");
}

/// Runs a client script of examples/mini-runtime/tests/cri with `args`;
/// what it printed.
async fn node(modules: PathBuf, script: &str, args: Vec<String>) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/mini-runtime/tests/cri")
        .join(script);
    let mut cmd = Command::new("node");
    cmd.arg(script).args(args).env("NODE_PATH", &modules);
    json_of(cmd).await
}

/// A loopback TCP server that reads to the end and answers with what it
/// read, prefixed: a forwarded connection must carry a half-close.
async fn answering_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut got = Vec::new();
                if s.read_to_end(&mut got).await.is_ok() {
                    let _ = s.write_all(format!("{port} got ").as_bytes()).await;
                    let _ = s.write_all(&got).await;
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_spdy_and_spdy_in_websocket() {
    let Some(modules) = modules() else { return };
    let server = echo_server().await;
    let (a, b) = (answering_port().await, answering_port().await);
    let pf = || {
        server.url_for(Request::PortForward(PortForwardRequest {
            pod_sandbox_id: "p".into(),
            ports: vec![],
        }))
    };
    for mode in ["spdy", "websocket"] {
        // Two ports, a big payload past every window, a port nobody
        // listens on; all at once on one session.
        let args = vec![
            pf(),
            mode.to_string(),
            format!("{a}=hello"),
            format!("{b}=there"),
            format!("{a}=@1048576"),
            "1=nobody".to_string(),
        ];
        let r = node(modules.clone(), "spdy_portforward.js", args).await;
        let want = if mode == "spdy" {
            "portforward.k8s.io"
        } else {
            "SPDY/3.1+portforward.k8s.io"
        };
        assert_eq!(r["protocol"], want, "{r}");
        let f = &r["forwards"];
        assert_eq!(f[0]["data"], format!("{a} got hello"), "{r}");
        assert_eq!(f[1]["data"], format!("{b} got there"), "{r}");
        assert_eq!(f[2]["length"], format!("{a} got ").len() + (1 << 20), "{r}");
        for i in 0..3 {
            assert_eq!(f[i]["error"], "", "{r}");
        }
        assert_eq!(f[3]["data"], "", "{r}");
        let e = f[3]["error"].as_str().unwrap();
        assert!(e.contains("port 1") && e.contains("refused"), "{r}");
        // Twenty connections in one session.
        let mut args = vec![pf(), mode.to_string()];
        args.extend((0..20).map(|i| format!("{a}=n{i}")));
        let r = node(modules.clone(), "spdy_portforward.js", args).await;
        for i in 0..20 {
            assert_eq!(r["forwards"][i]["data"], format!("{a} got n{i}"), "{r}");
        }
    }
    // A bad port header is told on the error stream; the session goes on.
    let r = node(
        modules.clone(),
        "spdy_portforward.js",
        vec![pf(), "spdy".into(), "0=x".into(), format!("{a}=fine")],
    )
    .await;
    assert!(
        r["forwards"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not a TCP port"),
        "{r}"
    );
    assert_eq!(r["forwards"][1]["data"], format!("{a} got fine"), "{r}");
    // A pod the backend does not know: the backend's reason.
    let url = server.url_for(Request::PortForward(PortForwardRequest {
        pod_sandbox_id: "gone".into(),
        ports: vec![],
    }));
    let r = node(
        modules.clone(),
        "spdy_portforward.js",
        vec![url, "websocket".into(), format!("{a}=x")],
    )
    .await;
    assert!(
        r["forwards"][0]["error"]
            .as_str()
            .unwrap()
            .contains("no pod gone"),
        "{r}"
    );
    // Exec protocols are not port forwarding's.
    let url = pf();
    let r = node(
        modules.clone(),
        "spdy_client.js",
        vec![
            url,
            "x".into(),
            "".into(),
            "".into(),
            "v4.channel.k8s.io".into(),
        ],
    )
    .await;
    assert_eq!(r["http_status"], 403, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_output_past_every_window_over_spdy() {
    let Some(modules) = modules() else { return };
    let server = echo_server().await;
    let url = server.url_for(Request::Exec(ExecRequest {
        container_id: "c".into(),
        cmd: vec!["big".into()],
        tty: false,
        stdin: false,
        stdout: true,
        stderr: true,
    }));
    let r = node(
        modules,
        "spdy_client.js",
        vec![url, "".into(), "".into(), "".into()],
    )
    .await;
    assert_eq!(r["stdout"].as_str().unwrap().len(), 64 * 32 * 1024);
    assert!(r["stdout"].as_str().unwrap().bytes().all(|b| b == b'x'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_spdy_from_spdy_transport() {
    let Some(modules) = modules() else { return };
    let server = echo_server().await;
    let url = server.url_for(Request::Exec(ExecRequest {
        container_id: "c".into(),
        cmd: vec!["x".into()],
        tty: false,
        stdin: true,
        stdout: true,
        stderr: true,
    }));
    let args = vec![url, "hello spdy\n".into(), "".into(), "".into()];
    let r = node(modules, "spdy_client.js", args).await;
    assert_eq!(r["stdout"], "hello spdy\n", "{r}");
    assert_eq!(r["stderr"], "err\n", "{r}");
    let status: serde_json::Value = serde_json::from_str(r["error"].as_str().unwrap()).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "5", "{r}");
}
