//! Exec and Attach over SPDY/3.1, as the kubelet's remotecommand client
//! speaks it: after the HTTP upgrade the client opens one stream per
//! channel (a `streamtype` header: error, stdin, stdout, stderr, resize);
//! the server answers each, runs the process once all it expects are open,
//! and ends with the status on the error stream. Flow control as 3.1 has
//! it: a window per stream and one for the session, both 64 KiB to start,
//! widened by WINDOW_UPDATE.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::spdy::{FLAG_FIN, Frame};
use crate::spdy_conn::{Conn, Out, Reader, accept, give_back, handle_control, inbound};

/// RST_STREAM status for a peer that sent past its window.
const FLOW_CONTROL_ERROR: u32 = 7;
use crate::ws::{Io, size, status, status_text};
use crate::{Backend, Streams};

/// How long the client has to open every stream it should.
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `req` over the upgraded connection `io`; with `v4` the status on
/// the error stream is JSON, else text (and nothing on success). The
/// session ends if the client takes no data for `stall`.
pub(crate) async fn serve<S>(io: S, req: Io, v4: bool, stall: Duration, backend: Arc<dyn Backend>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let conn = Conn::start(wr, stall);
    let (windows, out_tx) = (conn.windows.clone(), conn.out.clone());
    let (want_in, want_out, want_err, tty) = req.wants();
    let mut expected: Vec<&str> = vec!["error"];
    for (want, name) in [
        (want_in, "stdin"),
        (want_out, "stdout"),
        (want_err, "stderr"),
        (tty, "resize"),
    ] {
        if want {
            expected.push(name);
        }
    }
    // Read frames until every expected stream is open; then keep reading
    // in a task of its own.
    let Ok(mut reader) = Reader::new(rd) else {
        conn.finish(0, 1).await;
        return;
    };
    let mut streams: HashMap<String, u32> = HashMap::new();
    let mut early: Vec<Frame> = Vec::new();
    let opened = tokio::time::timeout(STREAMS_TIMEOUT, async {
        while !expected.iter().all(|e| streams.contains_key(*e)) {
            let f = reader.next().await?;
            handle_control(&f, &windows, &out_tx).await;
            // Data that comes before the last stream opens (stdin, say) is
            // kept for when the process runs.
            if matches!(f, Frame::Data { .. }) {
                early.push(f);
                continue;
            }
            if let Frame::SynStream {
                stream, headers, ..
            } = f
            {
                let kind = headers
                    .get("streamtype")
                    .and_then(|v| v.first())
                    .cloned()
                    .unwrap_or_default();
                let _ = out_tx.send(accept(stream)).await;
                streams.insert(kind, stream);
            }
        }
        Some(())
    })
    .await;
    if !matches!(opened, Ok(Some(()))) {
        drop(out_tx);
        let last = streams.values().max().copied().unwrap_or(0);
        conn.finish(last, 1).await;
        return;
    }
    let id = |k: &str| streams.get(k).copied();
    let (stdin_id, resize_id) = (id("stdin"), id("resize"));
    // Stdin: queued as it comes, its window opened as the backend takes it.
    let (stdin_queue, stdin_rx) = match stdin_id.filter(|_| want_in) {
        Some(sid) => {
            let (queue, mut q) = inbound(sid, &conn);
            let (t, r) = mpsc::channel::<Vec<u8>>(64);
            tokio::spawn(async move {
                while let Some(b) = q.recv().await {
                    let n = b.len();
                    if t.send(b).await.is_err() {
                        break;
                    }
                    q.used(n).await;
                }
            });
            (Some(queue), Some(r))
        }
        None => (None, None),
    };
    let (resize_tx, resize_rx) = if tty {
        let (t, r) = mpsc::channel::<(u16, u16)>(8);
        (Some(t), Some(r))
    } else {
        (None, None)
    };
    let last = streams.values().max().copied().unwrap_or(0);
    let w = windows.clone();
    let control = out_tx.clone();
    let mut closed = conn.closed.clone();
    let reading = tokio::spawn(async move {
        let mut stdin_queue = stdin_queue;
        let mut resize_buf: Vec<u8> = Vec::new();
        let mut early = early.into_iter();
        loop {
            let f = match early.next() {
                Some(f) => f,
                None => {
                    let f = tokio::select! {
                        f = reader.next() => f,
                        _ = crate::spdy_conn::closed(&mut closed) => None,
                    };
                    let Some(f) = f else { break };
                    handle_control(&f, &w, &control).await;
                    f
                }
            };
            let Frame::Data {
                stream,
                flags,
                data,
            } = f
            else {
                continue;
            };
            let fin = flags & FLAG_FIN != 0;
            if Some(stream) == stdin_id {
                match &mut stdin_queue {
                    Some(q) => {
                        if q.push(data, fin).await.is_err() {
                            let _ = control
                                .send(Out::Frame(Frame::RstStream {
                                    stream,
                                    status: FLOW_CONTROL_ERROR,
                                }))
                                .await;
                            stdin_queue = None;
                        }
                    }
                    // After its end: only the session's room is owed.
                    None => give_back(&control, None, data.len()).await,
                }
                if fin {
                    stdin_queue = None;
                }
                continue;
            }
            // The rest is used at once: room again.
            give_back(&control, (!fin).then_some(stream), data.len()).await;
            if Some(stream) == resize_id {
                resize_buf.extend_from_slice(&data);
                let mut de = serde_json::Deserializer::from_slice(&resize_buf)
                    .into_iter::<serde_json::Value>();
                let mut consumed = 0;
                while let Some(Ok(v)) = de.next() {
                    consumed = de.byte_offset();
                    if let (Some(t), Some(s)) = (&resize_tx, size(&v)) {
                        let _ = t.send(s).await;
                    }
                }
                resize_buf.drain(..consumed);
            }
        }
    });
    // The process's output, each on its stream.
    let mut forwarders = Vec::new();
    let mut output = |stream: Option<u32>| {
        stream.map(|s| {
            let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
            let out = out_tx.clone();
            forwarders.push(tokio::spawn(async move {
                while let Some(b) = rx.recv().await {
                    if out.send(Out::Data(s, b, false)).await.is_err() {
                        break;
                    }
                }
                let _ = out.send(Out::Data(s, Vec::new(), true)).await;
            }));
            tx
        })
    };
    let stdout = output(if want_out { id("stdout") } else { None });
    let stderr = output(if want_err { id("stderr") } else { None });
    let io = Streams {
        stdin: stdin_rx,
        stdout,
        stderr,
        resize: resize_rx,
    };
    let result = req.run(backend.as_ref(), io).await;
    for f in forwarders {
        let _ = f.await;
    }
    if let Some(err) = id("error") {
        let text = if v4 {
            status(&result)
        } else {
            status_text(&result).unwrap_or_default()
        };
        let _ = out_tx.send(Out::Data(err, text.into_bytes(), true)).await;
    }
    drop(out_tx);
    conn.finish(last, 0).await;
    reading.abort();
}
