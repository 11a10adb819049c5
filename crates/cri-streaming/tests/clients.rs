//! The server against clients nobody here wrote, with a backend of the
//! test's own (stdin back on stdout, a line on stderr, exit 5): npm's
//! spdy-transport speaking SPDY/3.1 as the kubelet's remotecommand client.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cri_streaming::{AttachRequest, Backend, BoxFuture, ExecRequest, Request, Server, Streams};

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
        _pod: &str,
        _port: u16,
    ) -> BoxFuture<Result<tokio::net::TcpStream, String>> {
        Box::pin(async { Err("no port forward here".to_string()) })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_spdy_from_spdy_transport() {
    let Some(modules) = modules() else { return };
    let server = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(60),
        Arc::new(Echo),
    )
    .await
    .unwrap();
    let url = server.url_for(Request::Exec(ExecRequest {
        container_id: "c".into(),
        cmd: vec!["x".into()],
        tty: false,
        stdin: true,
        stdout: true,
        stderr: true,
    }));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/mini-runtime/tests/cri/spdy_client.js");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args([url.as_str(), "hello spdy\n", "", ""])
            .env("NODE_PATH", &modules)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["stdout"], "hello spdy\n", "{r}");
    assert_eq!(r["stderr"], "err\n", "{r}");
    let status: serde_json::Value = serde_json::from_str(r["error"].as_str().unwrap()).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "5", "{r}");
}
