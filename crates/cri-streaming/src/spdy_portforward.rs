//! Port forwarding over SPDY/3.1 (`portforward.k8s.io`), as the kubelet
//! serves it: for each TCP connection the client opens two streams, each
//! with the headers `streamtype` (`error` or `data`), `port` and
//! `requestid`. Once both of a request are open, the server connects to the
//! port in the pod's network namespace and copies bytes between that
//! connection and the data stream; why it could not is written on the error
//! stream. One session carries any number of these, concurrently.
//!
//! What the client sends on a data stream is given back to its window only
//! once written to the TCP connection, so with a client that keeps to
//! windows a slow port holds up only its own stream; one that overruns them
//! gets that stream reset. A client that does no flow control (spdystream)
//! is held back by TCP, as it holds back servers itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Backend;
use crate::spdy::{FLAG_FIN, Frame, Headers};
use crate::spdy_conn::{
    Conn, Inbound, InboundRx, Out, Reader, accept, give_back, handle_control, inbound,
};

/// How long the second stream of a request may come after the first.
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
/// Streams open at once in one session, at most.
const MAX_STREAMS: usize = 1024;

/// RST_STREAM statuses.
const PROTOCOL_ERROR: u32 = 1;
const REFUSED_STREAM: u32 = 3;
const FLOW_CONTROL_ERROR: u32 = 7;

/// A request whose streams are not both open yet.
struct Pending {
    port: u16,
    error: Option<u32>,
    data: Option<(u32, InboundRx)>,
    since: Instant,
}

/// What the client writes on a data stream goes here.
struct Input {
    queue: Inbound,
    request: String,
}

/// The two streams' headers that matter.
struct StreamHeaders {
    kind: String,
    port: Result<u16, String>,
    request: String,
}

fn first<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.first()).map(String::as_str)
}

/// Reads a new stream's headers. Without `requestid` (old clients) the
/// request is named from the stream ids, as the kubelet does it: an error
/// stream's own, a data stream's less two.
fn stream_headers(stream: u32, h: &Headers) -> StreamHeaders {
    let kind = first(h, "streamtype").unwrap_or("").to_string();
    let port = match first(h, "port") {
        None | Some("") => Err("the port header is missing".to_string()),
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("port header {p:?} is not a TCP port")),
    };
    let request = match first(h, "requestid") {
        Some(r) if !r.is_empty() => r.to_string(),
        _ if kind == "data" => stream.wrapping_sub(2).to_string(),
        _ => stream.to_string(),
    };
    StreamHeaders {
        kind,
        port,
        request,
    }
}

/// Serves port forwards into pod `pod` over the upgraded connection `io`.
pub(crate) async fn serve<S>(io: S, pod: String, stall: Duration, backend: Arc<dyn Backend>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let conn = Conn::start(wr, stall);
    let Ok(mut reader) = Reader::new(rd) else {
        conn.finish(0, PROTOCOL_ERROR).await;
        return;
    };
    let out = conn.out.clone();
    let mut closed = conn.closed.clone();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut inputs: HashMap<u32, Input> = HashMap::new();
    let mut running: HashMap<String, (JoinHandle<()>, u32, u32)> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut last = 0;

    let reply = async |out: &mpsc::Sender<Out>, stream: u32| {
        let _ = out.send(accept(stream)).await;
    };
    let reset = async |out: &mpsc::Sender<Out>, stream: u32, status: u32| {
        let _ = out
            .send(Out::Frame(Frame::RstStream { stream, status }))
            .await;
    };
    // The reason on an error stream, which ends with it.
    let tell = async |out: &mpsc::Sender<Out>, stream: u32, msg: String| {
        let _ = out.send(Out::Data(stream, msg.into_bytes(), true)).await;
        let _ = out.send(Out::Forget(stream)).await;
    };

    loop {
        let deadline = pending.values().map(|p| p.since + PAIR_TIMEOUT).min();
        let frame = tokio::select! {
            f = reader.next() => match f {
                Some(f) => f,
                None => break,
            },
            _ = crate::spdy_conn::closed(&mut closed) => break,
            Some(request) = done_rx.recv() => {
                if let Some((_, data, error)) = running.remove(&request) {
                    inputs.remove(&data);
                    let _ = out.send(Out::Forget(data)).await;
                    let _ = out.send(Out::Forget(error)).await;
                }
                continue;
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                let now = Instant::now();
                let late: Vec<String> = pending
                    .iter()
                    .filter(|(_, p)| p.since + PAIR_TIMEOUT <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in late {
                    let Some(p) = pending.remove(&k) else { continue };
                    if let Some((data, _)) = p.data {
                        inputs.remove(&data);
                        reset(&out, data, REFUSED_STREAM).await;
                    }
                    if let Some(e) = p.error {
                        tell(&out, e, format!("timed out waiting for the data stream of request {k}")).await;
                    }
                }
                continue;
            }
        };
        handle_control(&frame, &conn.windows, &out).await;
        match frame {
            Frame::SynStream {
                stream, headers, ..
            } => {
                last = last.max(stream);
                let h = stream_headers(stream, &headers);
                let open = inputs.len() + pending.len() * 2 + running.len() * 2;
                if open >= MAX_STREAMS {
                    reset(&out, stream, REFUSED_STREAM).await;
                    continue;
                }
                let port = match (&h.port, h.kind.as_str()) {
                    (Ok(p), "error" | "data") => *p,
                    (Err(e), "error") => {
                        reply(&out, stream).await;
                        tell(&out, stream, format!("request {}: {e}", h.request)).await;
                        continue;
                    }
                    (Err(_), _) | (_, _) => {
                        reset(&out, stream, PROTOCOL_ERROR).await;
                        let why = match &h.port {
                            Err(e) => e.clone(),
                            Ok(_) => format!(
                                "stream type {:?} is neither \"error\" nor \"data\"",
                                h.kind
                            ),
                        };
                        if let Some(e) = pending.remove(&h.request).and_then(|p| p.error) {
                            tell(&out, e, format!("request {}: {why}", h.request)).await;
                        }
                        continue;
                    }
                };
                let p = pending.entry(h.request.clone()).or_insert(Pending {
                    port,
                    error: None,
                    data: None,
                    since: Instant::now(),
                });
                let taken = if h.kind == "error" {
                    p.error.is_some()
                } else {
                    p.data.is_some()
                };
                if taken || p.port != port || running.contains_key(&h.request) {
                    reset(&out, stream, PROTOCOL_ERROR).await;
                    continue;
                }
                reply(&out, stream).await;
                if h.kind == "error" {
                    p.error = Some(stream);
                } else {
                    let (queue, rx) = inbound(stream, &conn);
                    inputs.insert(
                        stream,
                        Input {
                            queue,
                            request: h.request.clone(),
                        },
                    );
                    p.data = Some((stream, rx));
                }
                if p.error.is_some() && p.data.is_some() {
                    let Some(Pending {
                        port,
                        error: Some(error),
                        data: Some((data, rx)),
                        ..
                    }) = pending.remove(&h.request)
                    else {
                        continue;
                    };
                    let task = tokio::spawn(forward(
                        Forward {
                            pod: pod.clone(),
                            port,
                            data,
                            error,
                            rx,
                            out: out.clone(),
                            backend: backend.clone(),
                        },
                        done_tx.clone(),
                        h.request.clone(),
                    ));
                    running.insert(h.request, (task, data, error));
                }
            }
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                let Some(input) = inputs.get_mut(&stream) else {
                    // The error stream's (nothing is read from it) or a
                    // stream already done with: room again at once.
                    let open = flags & FLAG_FIN == 0;
                    give_back(&out, open.then_some(stream), data.len()).await;
                    continue;
                };
                let fin = flags & FLAG_FIN != 0;
                let pushed = tokio::time::timeout(stall, input.queue.push(data, fin)).await;
                if !matches!(pushed, Ok(Ok(()))) {
                    let request = input.request.clone();
                    inputs.remove(&stream);
                    reset(&out, stream, FLOW_CONTROL_ERROR).await;
                    if let Some((t, _, _)) = running.remove(&request) {
                        t.abort();
                    }
                    pending.remove(&request);
                    continue;
                }
                if fin {
                    // The client is done writing: the connection's write side
                    // closes once what came is written.
                    inputs.remove(&stream);
                }
            }
            Frame::RstStream { stream, .. } => {
                let request = inputs
                    .remove(&stream)
                    .map(|i| i.request)
                    .or_else(|| {
                        running
                            .iter()
                            .find(|(_, (_, d, e))| *d == stream || *e == stream)
                            .map(|(k, _)| k.clone())
                    })
                    .or_else(|| {
                        pending
                            .iter()
                            .find(|(_, p)| p.error == Some(stream))
                            .map(|(k, _)| k.clone())
                    });
                if let Some(r) = request {
                    if let Some((t, data, error)) = running.remove(&r) {
                        t.abort();
                        inputs.remove(&data);
                        let _ = out.send(Out::Forget(data)).await;
                        let _ = out.send(Out::Forget(error)).await;
                    }
                    pending.remove(&r);
                }
            }
            Frame::GoAway { .. } => break,
            _ => {}
        }
    }
    for (_, (t, _, _)) in running.drain() {
        t.abort();
    }
    drop(inputs);
    drop(out);
    conn.finish(last, 0).await;
}

/// One forwarded connection.
struct Forward {
    pod: String,
    port: u16,
    data: u32,
    error: u32,
    rx: InboundRx,
    out: mpsc::Sender<Out>,
    backend: Arc<dyn Backend>,
}

/// Connects and copies until the port's side ends; then ends both streams
/// and reports `request` done.
async fn forward(f: Forward, done: mpsc::UnboundedSender<String>, request: String) {
    let Forward {
        pod,
        port,
        data,
        error,
        mut rx,
        out,
        backend,
    } = f;
    match backend.port_forward(&pod, port).await {
        Ok(tcp) => {
            let (mut r, mut w) = tcp.into_split();
            // The client's bytes to the port; the window opens as they go.
            tokio::spawn(async move {
                while let Some(b) = rx.recv().await {
                    if w.write_all(&b).await.is_err() {
                        break;
                    }
                    rx.used(b.len()).await;
                }
                let _ = w.shutdown().await;
            });
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if out
                            .send(Out::Data(data, buf[..n].to_vec(), false))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
            let _ = out.send(Out::Data(data, Vec::new(), true)).await;
            let _ = out.send(Out::Data(error, Vec::new(), true)).await;
        }
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {pod}: {e}");
            let _ = out.send(Out::Data(error, msg.into_bytes(), true)).await;
            let _ = out.send(Out::Data(data, Vec::new(), true)).await;
        }
    }
    let _ = done.send(request);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdrs(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect()
    }

    #[test]
    fn stream_headers_name_the_request_and_check_the_port() {
        let h = stream_headers(
            5,
            &hdrs(&[("streamtype", "data"), ("port", "80"), ("requestid", "7")]),
        );
        assert_eq!(
            (h.kind.as_str(), h.port, h.request.as_str()),
            ("data", Ok(80), "7")
        );
        // Old clients: no requestid.
        let h = stream_headers(5, &hdrs(&[("streamtype", "data"), ("port", "80")]));
        assert_eq!(h.request, "3");
        let h = stream_headers(3, &hdrs(&[("streamtype", "error"), ("port", "80")]));
        assert_eq!(h.request, "3");
        for bad in ["0", "70000", "x", ""] {
            let h = stream_headers(1, &hdrs(&[("streamtype", "error"), ("port", bad)]));
            assert!(h.port.is_err(), "{bad}");
        }
        assert!(
            stream_headers(1, &hdrs(&[("streamtype", "error")]))
                .port
                .is_err()
        );
    }
}
