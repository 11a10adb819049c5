//! WebSocket streams with the Kubernetes channel subprotocols: every
//! message starts with a channel (0 stdin, 1 stdout, 2 stderr, 3 error,
//! 4 resize), as a byte, or with `base64.channel.k8s.io` as a digit before
//! base64 text. `v4`/`v5` end with a JSON status on the error channel that
//! carries the exit code; `v5` lets the client close stdin (`255, 0`).

use std::sync::Arc;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::http::{Head, respond};
use crate::{Backend, Request, Shared, Streams};

/// The requests that stream a process's stdio.
pub(crate) enum Io {
    Exec(crate::ExecRequest),
    Attach(crate::AttachRequest),
}

impl Io {
    /// Whether it wants stdin, stdout, stderr (never with a terminal) and
    /// a terminal.
    pub(crate) fn wants(&self) -> (bool, bool, bool, bool) {
        match self {
            Io::Exec(e) => (e.stdin, e.stdout, e.stderr && !e.tty, e.tty),
            Io::Attach(a) => (a.stdin, a.stdout, a.stderr && !a.tty, a.tty),
        }
    }

    /// Runs it through `backend`: the exit code (0 for attach).
    pub(crate) async fn run(self, backend: &dyn Backend, streams: Streams) -> Result<i32, String> {
        match self {
            Io::Exec(e) => backend.exec(e, streams).await,
            Io::Attach(a) => backend.attach(a, streams).await.map(|()| 0),
        }
    }
}

/// Port forwarding's subprotocols: binary, base64 text, and SPDY's
/// port forwarding tunnelled in binary messages.
pub(crate) const PORTFORWARD: [&str; 3] =
    ["portforward.k8s.io", "base64.portforward.k8s.io", TUNNEL];
/// client-go's SPDY-over-WebSocket port forwarding.
pub(crate) const TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

/// What this server speaks, in the order it prefers them.
pub(crate) const PROTOCOLS: [&str; 4] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    V1,
    Base64,
    V4,
    V5,
}

/// One message of `channel` in `proto`'s framing.
fn frame(proto: Proto, channel: u8, data: &[u8]) -> Message {
    match proto {
        Proto::Base64 => {
            let mut s = String::with_capacity(1 + data.len() * 4 / 3 + 4);
            s.push(char::from(b'0' + channel));
            s.push_str(&base64::engine::general_purpose::STANDARD.encode(data));
            Message::Text(s.into())
        }
        _ => {
            let mut v = Vec::with_capacity(1 + data.len());
            v.push(channel);
            v.extend_from_slice(data);
            Message::Binary(v.into())
        }
    }
}

/// A client message as (channel, data).
fn unframe(proto: Proto, m: Message) -> Option<(u8, Vec<u8>)> {
    match (proto, m) {
        (Proto::Base64, Message::Text(t)) => {
            let b = t.as_bytes();
            let ch = b.first()?.checked_sub(b'0')?;
            let data = base64::engine::general_purpose::STANDARD
                .decode(&b[1..])
                .ok()?;
            Some((ch, data))
        }
        (_, Message::Binary(b)) if !b.is_empty() => Some((b[0], b[1..].to_vec())),
        _ => None,
    }
}

/// The close frame that ends a session: with status 1000 (normal), which
/// gorilla/websocket clients (crictl, client-go) need to read the end as
/// an end rather than an error; a close with no status is 1005 to them.
pub(crate) fn normal_close() -> Message {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

/// What a process's exit code other than 0 is told as.
fn nonzero(code: i32) -> String {
    format!("command terminated with non-zero exit code: exit status {code}")
}

/// The exit status as the protocols before v4 tell it: text on the error
/// channel, nothing on success.
pub(crate) fn status_text(result: &Result<i32, String>) -> Option<String> {
    match result {
        Ok(0) => None,
        Ok(code) => Some(nonzero(*code)),
        Err(e) => Some(e.clone()),
    }
}

/// The exit status as the kubelet's remotecommand v4 encodes it.
pub(crate) fn status(result: &Result<i32, String>) -> String {
    match result {
        Ok(0) => serde_json::json!({"metadata": {}, "status": "Success"}).to_string(),
        Ok(code) => serde_json::json!({
            "metadata": {}, "status": "Failure",
            "message": nonzero(*code),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
        .to_string(),
        Err(e) => {
            serde_json::json!({"metadata": {}, "status": "Failure", "message": e}).to_string()
        }
    }
}

/// The parsers a client's messages meet, for the fuzz target.
#[cfg(fuzzing)]
pub(crate) fn fuzz_unframe(bytes: &[u8]) {
    for p in [Proto::V1, Proto::Base64, Proto::V4, Proto::V5] {
        let _ = unframe(p, Message::Binary(bytes.to_vec().into()));
        if let Ok(t) = std::str::from_utf8(bytes) {
            let _ = unframe(p, Message::Text(t.to_string().into()));
        }
    }
    let _ = resize(bytes);
}

/// Parses a resize message: `{"Width": w, "Height": h}`.
fn resize(data: &[u8]) -> Option<(u16, u16)> {
    size(&serde_json::from_slice(data).ok()?)
}

/// The (columns, rows) of a parsed resize message.
pub(crate) fn size(v: &serde_json::Value) -> Option<(u16, u16)> {
    let w = u16::try_from(v.get("Width")?.as_u64()?).ok()?;
    let h = u16::try_from(v.get("Height")?.as_u64()?).ok()?;
    Some((w, h))
}

/// The WebSocket handshake with one of `served` as the subprotocol (none
/// offered: the first of them, unnamed); `None` once refused with a status.
async fn handshake(
    mut sock: TcpStream,
    head: &Head,
    served: &[&'static str],
) -> std::io::Result<Option<(WebSocketStream<TcpStream>, &'static str)>> {
    let Some(key) = head.header("Sec-WebSocket-Key").map(str::to_string) else {
        respond(&mut sock, "400 Bad Request", "no Sec-WebSocket-Key\n").await;
        return Ok(None);
    };
    if head.header("Sec-WebSocket-Version") != Some("13") {
        respond(
            &mut sock,
            "426 Upgrade Required",
            "WebSocket version 13 only\n",
        )
        .await;
        return Ok(None);
    }
    let offered = head.list("Sec-WebSocket-Protocol");
    let chosen = if offered.is_empty() {
        None
    } else {
        match offered
            .iter()
            .find_map(|o| served.iter().find(|p| **p == o.as_str()))
        {
            Some(p) => Some(*p),
            None => {
                let msg = format!(
                    "none of the offered subprotocols ({}) is served here; this endpoint speaks {}\n",
                    offered.join(", "),
                    served.join(", ")
                );
                respond(&mut sock, "400 Bad Request", &msg).await;
                return Ok(None);
            }
        }
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(n) = chosen {
        resp.push_str(&format!("Sec-WebSocket-Protocol: {n}\r\n"));
    }
    resp.push_str("\r\n");
    sock.write_all(resp.as_bytes()).await?;
    let ws = WebSocketStream::from_raw_socket(sock, Role::Server, None).await;
    Ok(Some((ws, chosen.unwrap_or(served[served.len() - 1]))))
}

pub(crate) async fn serve(
    sock: TcpStream,
    head: &Head,
    req: Request,
    shared: &Arc<Shared>,
) -> std::io::Result<()> {
    let (backend, stall) = (shared.backend.clone(), shared.stall);
    let req = match req {
        Request::PortForward(pf) => {
            let Some((ws, proto)) = handshake(sock, head, &PORTFORWARD).await? else {
                return Ok(());
            };
            if proto == TUNNEL {
                let io = tunnel(ws, stall);
                crate::spdy_portforward::serve(io, pf.pod_sandbox_id, stall, backend).await;
            } else {
                crate::portforward::serve(ws, proto == PORTFORWARD[1], pf, head, stall, backend)
                    .await;
            }
            return Ok(());
        }
        Request::Exec(e) => Io::Exec(e),
        Request::Attach(a) => Io::Attach(a),
    };
    // No subprotocol offered: the plain one of channel.k8s.io.
    let served = [PROTOCOLS[0], PROTOCOLS[1], PROTOCOLS[3], PROTOCOLS[2]];
    let Some((ws, name)) = handshake(sock, head, &served).await? else {
        return Ok(());
    };
    let proto = match name {
        "v5.channel.k8s.io" => Proto::V5,
        "v4.channel.k8s.io" => Proto::V4,
        "base64.channel.k8s.io" => Proto::Base64,
        _ => Proto::V1,
    };
    let (mut sink, mut source) = ws.split();

    let (want_in, want_out, want_err, tty) = req.wants();
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Vec<u8>)>(64);
    let writer = tokio::spawn(async move {
        while let Some((ch, data)) = out_rx.recv().await {
            let sent = tokio::time::timeout(stall, sink.send(frame(proto, ch, &data))).await;
            if !matches!(sent, Ok(Ok(()))) {
                break;
            }
        }
        let _ = sink.send(normal_close()).await;
        let _ = sink.close().await;
    });
    // The process's output streams, each forwarded onto its channel.
    let mut forwarders = Vec::new();
    let mut output = |want: bool, ch: u8| {
        want.then(|| {
            let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
            let out = out_tx.clone();
            forwarders.push(tokio::spawn(async move {
                while let Some(b) = rx.recv().await {
                    if out.send((ch, b)).await.is_err() {
                        break;
                    }
                }
            }));
            tx
        })
    };
    let stdout = output(want_out, STDOUT);
    let stderr = output(want_err, STDERR);
    let (stdin_tx, stdin_rx) = if want_in {
        let (t, r) = mpsc::channel::<Vec<u8>>(64);
        (Some(t), Some(r))
    } else {
        (None, None)
    };
    let (resize_tx, resize_rx) = if tty {
        let (t, r) = mpsc::channel::<(u16, u16)>(8);
        (Some(t), Some(r))
    } else {
        (None, None)
    };
    let reader = tokio::spawn(async move {
        let mut stdin_tx = stdin_tx;
        while let Some(Ok(m)) = source.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
            let Some((ch, data)) = unframe(proto, m) else {
                continue;
            };
            match ch {
                STDIN => {
                    if let Some(t) = &stdin_tx
                        && t.send(data).await.is_err()
                    {
                        stdin_tx = None;
                    }
                }
                RESIZE => {
                    if let (Some(t), Some(size)) = (&resize_tx, resize(&data)) {
                        let _ = t.send(size).await;
                    }
                }
                CLOSE if proto == Proto::V5 && data.first() == Some(&STDIN) => stdin_tx = None,
                _ => {}
            }
        }
    });
    let streams = Streams {
        stdin: stdin_rx,
        stdout,
        stderr,
        resize: resize_rx,
    };
    let result = req.run(backend.as_ref(), streams).await;
    for f in forwarders {
        let _ = f.await;
    }
    let told = match proto {
        Proto::V4 | Proto::V5 => Some(status(&result)),
        Proto::V1 | Proto::Base64 => status_text(&result),
    };
    if let Some(t) = told {
        let _ = out_tx.send((ERROR, t.into_bytes())).await;
    }
    drop(out_tx);
    let _ = writer.await;
    reader.abort();
    Ok(())
}

/// A byte stream over `ws`'s binary messages, as client-go's tunnelling
/// connection makes one: each message is a piece of the stream, a text
/// message ends it.
fn tunnel(ws: WebSocketStream<TcpStream>, stall: Duration) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut rd, mut wr) = tokio::io::split(ours);
    let (mut sink, mut source) = ws.split();
    let inbound = tokio::spawn(async move {
        while let Some(Ok(m)) = source.next().await {
            match m {
                Message::Binary(b) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Message::Ping(_) | Message::Pong(_) => {}
                _ => break,
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let m = Message::Binary(buf[..n].to_vec().into());
                    let sent = tokio::time::timeout(stall, sink.send(m)).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break;
                    }
                }
            }
        }
        let _ = sink.send(normal_close()).await;
        let _ = sink.close().await;
        inbound.abort();
    });
    theirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_statuses_carry_the_exit_code() {
        for p in [Proto::V1, Proto::Base64, Proto::V4, Proto::V5] {
            let m = frame(p, STDOUT, b"hello");
            // A client's message looks the same.
            assert_eq!(unframe(p, m), Some((STDOUT, b"hello".to_vec())));
        }
        let s: serde_json::Value = serde_json::from_str(&status(&Ok(7))).unwrap();
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "7");
        let s: serde_json::Value = serde_json::from_str(&status(&Ok(0))).unwrap();
        assert_eq!(s["status"], "Success");
        assert_eq!(resize(br#"{"Width":80,"Height":24}"#), Some((80, 24)));
        assert_eq!(resize(b"nope"), None);
    }
}
