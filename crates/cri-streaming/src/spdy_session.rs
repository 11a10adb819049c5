//! Exec and Attach over SPDY/3.1, as the kubelet's remotecommand client
//! speaks it: after the HTTP upgrade the client opens one stream per
//! channel (a `streamtype` header: error, stdin, stdout, stderr, resize);
//! the server answers each, runs the process once all it expects are open,
//! and ends with the status on the error stream. Flow control as 3.1 has
//! it: a window per stream and one for the session, both 64 KiB to start,
//! widened by WINDOW_UPDATE.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};

use crate::spdy::{Codec, FLAG_FIN, Frame, Headers};
use crate::ws::{Io, size, status, status_text};
use crate::{Backend, Streams};

const INITIAL_WINDOW: i64 = 64 * 1024;
/// Data frames are sent in pieces of at most this.
const CHUNK: usize = 16 * 1024;
/// How long the client has to open every stream it should.
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);

/// Send windows: per stream, and the session's (key 0).
#[derive(Debug, Default)]
struct Windows {
    map: Mutex<HashMap<u32, i64>>,
    initial: Mutex<i64>,
    changed: Notify,
}

impl Windows {
    fn get(&self, stream: u32) -> i64 {
        let initial = *self.initial.lock().unwrap_or_else(|e| e.into_inner());
        *self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&stream)
            .unwrap_or(&initial)
    }

    fn add(&self, stream: u32, delta: i64) {
        let initial = *self.initial.lock().unwrap_or_else(|e| e.into_inner());
        *self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(stream)
            .or_insert(initial) += delta;
        self.changed.notify_waiters();
    }
}

/// What the writer sends.
enum Out {
    Frame(Frame),
    /// Data on a stream, flow-controlled; FIN after it with `fin`.
    Data(u32, Vec<u8>, bool),
}

/// Serves `req` over the upgraded `sock`; with `v4` the status on the
/// error stream is JSON, else text (and nothing on success).
pub(crate) async fn serve(sock: TcpStream, req: Io, v4: bool, backend: Arc<dyn Backend>) {
    let (mut rd, mut wr) = sock.into_split();
    let windows = Arc::new(Windows {
        initial: Mutex::new(INITIAL_WINDOW),
        ..Default::default()
    });
    // The session's window is its own; SETTINGS do not move it.
    windows.add(0, 0);
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(64);
    let w = windows.clone();
    let writer = tokio::spawn(async move {
        let Ok(mut codec) = Codec::new() else { return };
        while let Some(o) = out_rx.recv().await {
            match o {
                Out::Frame(f) => {
                    let Ok(b) = codec.encode(&f) else { return };
                    if wr.write_all(&b).await.is_err() {
                        return;
                    }
                }
                Out::Data(stream, data, fin) => {
                    let mut rest = &data[..];
                    loop {
                        // Wait for room in both windows.
                        let room = loop {
                            let notified = w.changed.notified();
                            let room = w.get(stream).min(w.get(0));
                            if room > 0 || rest.is_empty() {
                                break room;
                            }
                            notified.await;
                        };
                        let n = rest.len().min(CHUNK).min(room.max(0) as usize);
                        let last = n == rest.len();
                        let f = Frame::Data {
                            stream,
                            flags: if last && fin { FLAG_FIN } else { 0 },
                            data: rest[..n].to_vec(),
                        };
                        w.add(stream, -(n as i64));
                        w.add(0, -(n as i64));
                        let Ok(b) = codec.encode(&f) else { return };
                        if wr.write_all(&b).await.is_err() {
                            return;
                        }
                        rest = &rest[n..];
                        if last {
                            break;
                        }
                    }
                }
            }
        }
        let _ = wr.shutdown().await;
    });

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
    let mut codec = match Codec::new() {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut streams: HashMap<String, u32> = HashMap::new();
    let mut early: Vec<Frame> = Vec::new();
    let read_frame = async |rd: &mut tokio::net::tcp::OwnedReadHalf,
                            buf: &mut Vec<u8>,
                            codec: &mut Codec|
           -> Option<Frame> {
        loop {
            match codec.decode(buf) {
                Ok(Some((f, used))) => {
                    buf.drain(..used);
                    return Some(f);
                }
                Ok(None) => {}
                Err(_) => return None,
            }
            let mut chunk = [0u8; 16 * 1024];
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let opened = tokio::time::timeout(STREAMS_TIMEOUT, async {
        while !expected.iter().all(|e| streams.contains_key(*e)) {
            let f = read_frame(&mut rd, &mut buf, &mut codec).await?;
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
                let _ = out_tx
                    .send(Out::Frame(Frame::SynReply {
                        stream,
                        flags: 0,
                        headers: Headers::new(),
                    }))
                    .await;
                streams.insert(kind, stream);
            }
        }
        Some(())
    })
    .await;
    if !matches!(opened, Ok(Some(()))) {
        let _ = out_tx
            .send(Out::Frame(Frame::GoAway {
                last_good: 0,
                status: 1,
            }))
            .await;
        drop(out_tx);
        let _ = writer.await;
        return;
    }
    let id = |k: &str| streams.get(k).copied();
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
    let (stdin_id, resize_id) = (id("stdin"), id("resize"));
    let w = windows.clone();
    let control = out_tx.clone();
    let reader = tokio::spawn(async move {
        let mut stdin_tx = stdin_tx;
        let mut resize_buf: Vec<u8> = Vec::new();
        let mut early = early.into_iter();
        loop {
            let f = match early.next() {
                Some(f) => f,
                None => match read_frame(&mut rd, &mut buf, &mut codec).await {
                    Some(f) => {
                        handle_control(&f, &w, &control).await;
                        f
                    }
                    None => break,
                },
            };
            let Frame::Data {
                stream,
                flags,
                data,
            } = f
            else {
                continue;
            };
            // What was taken is room again, for the stream and the session.
            if !data.is_empty() {
                for s in [stream, 0] {
                    let _ = control
                        .send(Out::Frame(Frame::WindowUpdate {
                            stream: s,
                            delta: data.len() as u32,
                        }))
                        .await;
                }
            }
            if Some(stream) == stdin_id {
                if let Some(t) = &stdin_tx
                    && !data.is_empty()
                    && t.send(data).await.is_err()
                {
                    stdin_tx = None;
                }
                if flags & FLAG_FIN != 0 {
                    stdin_tx = None;
                }
            } else if Some(stream) == resize_id {
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
    let _ = out_tx
        .send(Out::Frame(Frame::GoAway {
            last_good: 0,
            status: 0,
        }))
        .await;
    drop(out_tx);
    let _ = writer.await;
    reader.abort();
}

/// PING answered, windows widened, settings taken.
async fn handle_control(f: &Frame, w: &Windows, out: &mpsc::Sender<Out>) {
    match f {
        Frame::Ping { id } => {
            let _ = out.send(Out::Frame(Frame::Ping { id: *id })).await;
        }
        Frame::WindowUpdate { stream, delta } => w.add(*stream, i64::from(*delta)),
        Frame::Settings { entries, .. } => {
            for (_, id, value) in entries {
                // SETTINGS_INITIAL_WINDOW_SIZE.
                if *id == 7 {
                    let mut initial = w.initial.lock().unwrap_or_else(|e| e.into_inner());
                    let change = i64::from(*value) - *initial;
                    *initial = i64::from(*value);
                    drop(initial);
                    let mut map = w.map.lock().unwrap_or_else(|e| e.into_inner());
                    for (s, v) in map.iter_mut() {
                        if *s != 0 {
                            *v += change;
                        }
                    }
                    drop(map);
                    w.changed.notify_waiters();
                }
            }
        }
        _ => {}
    }
}
