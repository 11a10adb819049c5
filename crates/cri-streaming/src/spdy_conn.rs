//! One SPDY/3.1 connection's plumbing, shared by the exec/attach and the
//! port-forward sessions: a writer task that keeps 3.1's flow control (a
//! send window per stream and one for the session, 64 KiB to start, widened
//! by the peer's WINDOW_UPDATE and SETTINGS), a frame reader, the answers
//! to PING, WINDOW_UPDATE and SETTINGS, and the queue of what the peer
//! sends on a stream, whose window opens as it is used.
//!
//! Not every peer keeps to windows: Go's spdystream, under kubectl, crictl
//! and the kubelet, sends no WINDOW_UPDATE and no SETTINGS and ignores
//! ours; TCP alone holds it back. So windows bind this side only once the
//! peer has sent one of those (spdy-transport does, first thing); until
//! then data goes as TCP takes it, and a stream whose queue is full stops
//! the reading, as spdystream itself does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::spdy::{Codec, FLAG_FIN, Frame, data_header};

const INITIAL_WINDOW: i64 = 64 * 1024;
/// Data frames are sent in pieces of at most this.
const CHUNK: usize = 64 * 1024;
/// What the writer gathers before a write.
const WRITE_BUFFER: usize = 256 * 1024;
/// SETTINGS_INITIAL_WINDOW_SIZE.
const SETTINGS_INITIAL_WINDOW: u32 = 7;

/// Send windows: per stream, and the session's (key 0).
#[derive(Debug)]
pub(crate) struct Windows {
    map: Mutex<HashMap<u32, i64>>,
    initial: Mutex<i64>,
    changed: Notify,
    /// Whether the peer does flow control (it sent WINDOW_UPDATE or
    /// SETTINGS_INITIAL_WINDOW_SIZE).
    enforced: AtomicBool,
}

impl Windows {
    fn new() -> Self {
        let w = Windows {
            map: Mutex::new(HashMap::new()),
            initial: Mutex::new(INITIAL_WINDOW),
            changed: Notify::new(),
            enforced: AtomicBool::new(false),
        };
        // The session's window is its own; SETTINGS do not move it.
        w.add(0, 0);
        w
    }

    fn get(&self, stream: u32) -> i64 {
        let initial = *self.initial.lock().unwrap_or_else(|e| e.into_inner());
        *self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&stream)
            .unwrap_or(&initial)
    }

    fn enforced(&self) -> bool {
        self.enforced.load(Ordering::SeqCst)
    }

    fn enforce(&self) {
        self.enforced.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
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

    /// A new initial window for every stream but the session.
    fn set_initial(&self, value: u32) {
        let mut initial = self.initial.lock().unwrap_or_else(|e| e.into_inner());
        let change = i64::from(value) - *initial;
        *initial = i64::from(value);
        drop(initial);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for (s, v) in map.iter_mut() {
            if *s != 0 {
                *v += change;
            }
        }
        drop(map);
        self.changed.notify_waiters();
    }

    /// Forgets a stream that is done with.
    fn forget(&self, stream: u32) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&stream);
    }
}

/// What the writer sends.
pub(crate) enum Out {
    Frame(Frame),
    /// Data on a stream, flow-controlled; FIN after it with the flag.
    Data(u32, Vec<u8>, bool),
    /// The stream is done with: its window is forgotten (after what was
    /// queued before is sent).
    Forget(u32),
}

/// A connection: where to send frames, its windows, and a signal that
/// the writer is gone (the peer left, or took no data for the stall time).
pub(crate) struct Conn {
    pub out: mpsc::Sender<Out>,
    pub windows: Arc<Windows>,
    pub closed: watch::Receiver<bool>,
    pub writer: JoinHandle<()>,
}

impl Conn {
    /// Starts the writer on `wr`. It gives up when the peer leaves no room
    /// in a window, or TCP takes nothing, for `stall`.
    pub(crate) fn start<W>(wr: W, stall: Duration) -> Conn
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let windows = Arc::new(Windows::new());
        let (out, mut rx) = mpsc::channel::<Out>(64);
        let (closed_tx, closed) = watch::channel(false);
        let w = windows.clone();
        let writer = tokio::spawn(async move {
            let _closed = CloseOnDrop(closed_tx);
            let Ok(mut codec) = Codec::new() else { return };
            // Frames are gathered and go out when nothing more is queued
            // (or before waiting on a window).
            let mut wr = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, wr);
            macro_rules! put {
                ($bytes:expr) => {
                    if !matches!(timeout(stall, wr.write_all($bytes)).await, Ok(Ok(()))) {
                        return;
                    }
                };
            }
            macro_rules! flush {
                () => {
                    if !matches!(timeout(stall, wr.flush()).await, Ok(Ok(()))) {
                        return;
                    }
                };
            }
            while let Some(o) = rx.recv().await {
                match o {
                    Out::Frame(f) => {
                        let Ok(b) = codec.encode(&f) else { return };
                        put!(&b);
                    }
                    Out::Forget(stream) => w.forget(stream),
                    Out::Data(stream, data, fin) => {
                        let mut rest = &data[..];
                        loop {
                            // Wait for room in both windows.
                            let room = loop {
                                let notified = w.changed.notified();
                                let room = if w.enforced() {
                                    w.get(stream).min(w.get(0))
                                } else {
                                    rest.len() as i64
                                };
                                if room > 0 || rest.is_empty() {
                                    break room;
                                }
                                flush!();
                                if timeout(stall, notified).await.is_err() {
                                    let _ = wr.shutdown().await;
                                    return;
                                }
                            };
                            let n = rest.len().min(CHUNK).min(room.max(0) as usize);
                            let last = n == rest.len();
                            let flags = if last && fin { FLAG_FIN } else { 0 };
                            w.add(stream, -(n as i64));
                            w.add(0, -(n as i64));
                            put!(&data_header(stream, flags, n));
                            put!(&rest[..n]);
                            rest = &rest[n..];
                            if last {
                                break;
                            }
                        }
                    }
                }
                if rx.is_empty() {
                    flush!();
                }
            }
            let _ = wr.shutdown().await;
        });
        Conn {
            out,
            windows,
            closed,
            writer,
        }
    }

    /// Sends a GOAWAY (`last_good`: the newest stream of the client's this
    /// side took), lets the writer drain and waits for it.
    pub(crate) async fn finish(self, last_good: u32, status: u32) {
        let _ = self
            .out
            .send(Out::Frame(Frame::GoAway { last_good, status }))
            .await;
        drop(self.out);
        let _ = self.writer.await;
    }
}

/// Marks the connection closed when the writer ends, however it ends.
struct CloseOnDrop(watch::Sender<bool>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

/// Reads frames off a connection.
pub(crate) struct Reader<R> {
    rd: R,
    buf: Vec<u8>,
    codec: Codec,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub(crate) fn new(rd: R) -> Result<Self, String> {
        Ok(Reader {
            rd,
            buf: Vec::new(),
            codec: Codec::new()?,
        })
    }

    /// The next frame; `None` at the end of the connection or on a frame
    /// that does not parse.
    pub(crate) async fn next(&mut self) -> Option<Frame> {
        loop {
            match self.codec.decode(&self.buf) {
                Ok(Some((f, used))) => {
                    self.buf.drain(..used);
                    return Some(f);
                }
                Ok(None) => {}
                Err(_) => return None,
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// PING answered, windows widened, settings taken.
pub(crate) async fn handle_control(f: &Frame, w: &Windows, out: &mpsc::Sender<Out>) {
    match f {
        Frame::Ping { id } => {
            let _ = out.send(Out::Frame(Frame::Ping { id: *id })).await;
        }
        Frame::WindowUpdate { stream, delta } => {
            w.add(*stream, i64::from(*delta));
            w.enforce();
        }
        Frame::Settings { entries, .. } => {
            for (_, id, value) in entries {
                if *id == SETTINGS_INITIAL_WINDOW {
                    w.set_initial(*value);
                    w.enforce();
                }
            }
        }
        _ => {}
    }
}

/// The SYN_REPLY that accepts a client's stream. HTTP's `:status` and
/// `:version` are there because HTTP-minded clients (spdy-transport)
/// reset a reply without them.
pub(crate) fn accept(stream: u32) -> Out {
    let mut headers = crate::spdy::Headers::new();
    headers.insert(":status".into(), vec!["200".into()]);
    headers.insert(":version".into(), vec!["HTTP/1.1".into()]);
    Out::Frame(Frame::SynReply {
        stream,
        flags: 0,
        headers,
    })
}

/// Gives back the room `len` bytes of data took: the session's, and the
/// stream's unless the client has ended it (`None`), when there is nothing
/// more to come on it.
pub(crate) async fn give_back(out: &mpsc::Sender<Out>, stream: Option<u32>, len: usize) {
    if len == 0 {
        return;
    }
    for s in stream.into_iter().chain([0]) {
        let _ = out
            .send(Out::Frame(Frame::WindowUpdate {
                stream: s,
                delta: len as u32,
            }))
            .await;
    }
}

/// What the peer may have sent on a stream that is not used yet: the
/// receive window this side gives (SPDY's default; it sends no SETTINGS).
pub(crate) const RECEIVE_WINDOW: i64 = 64 * 1024;
/// A peer that keeps to windows and sends past this much is reset: room
/// for spdy-transport, which may send a whole window into one that has
/// just reopened a little.
const OVERRUN: i64 = 2 * RECEIVE_WINDOW + CHUNK as i64;

/// A stream's receive side, shared by its two ends.
#[derive(Debug, Default)]
struct InState {
    outstanding: AtomicI64,
    ended: AtomicBool,
    gone: AtomicBool,
    drained: Notify,
}

/// The reading end's side of a stream's queue.
pub(crate) struct Inbound {
    tx: Option<mpsc::UnboundedSender<Vec<u8>>>,
    state: Arc<InState>,
    windows: Arc<Windows>,
}

/// The using end: what the peer sent, in order; room given back as used.
pub(crate) struct InboundRx {
    stream: u32,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    state: Arc<InState>,
    out: mpsc::Sender<Out>,
}

/// The peer overran a window it keeps to.
#[derive(Debug)]
pub(crate) struct Overrun;

/// A queue for what the peer sends on `stream`.
pub(crate) fn inbound(stream: u32, conn: &Conn) -> (Inbound, InboundRx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(InState::default());
    (
        Inbound {
            tx: Some(tx),
            state: state.clone(),
            windows: conn.windows.clone(),
        },
        InboundRx {
            stream,
            rx,
            state,
            out: conn.out.clone(),
        },
    )
}

impl Inbound {
    /// Queues data from the peer (`fin`: the last). With a peer that does
    /// no flow control, waits while the queue holds a window's worth.
    pub(crate) async fn push(&mut self, data: Vec<u8>, fin: bool) -> Result<(), Overrun> {
        let n = data.len() as i64;
        if n > 0 {
            let now = self.state.outstanding.fetch_add(n, Ordering::SeqCst) + n;
            if self.windows.enforced() && now > OVERRUN {
                return Err(Overrun);
            }
            if let Some(tx) = &self.tx
                && tx.send(data).is_err()
            {
                self.tx = None;
            }
        }
        if fin {
            self.state.ended.store(true, Ordering::SeqCst);
            self.tx = None;
        }
        loop {
            let drained = self.state.drained.notified();
            let full = self.state.outstanding.load(Ordering::SeqCst) > RECEIVE_WINDOW;
            if self.windows.enforced() || !full || self.state.gone.load(Ordering::SeqCst) {
                return Ok(());
            }
            drained.await;
        }
    }
}

impl InboundRx {
    /// The next piece; `None` once the peer ended the stream.
    pub(crate) async fn recv(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }

    /// `n` bytes were used: room for that much more.
    pub(crate) async fn used(&self, n: usize) {
        self.state.outstanding.fetch_sub(n as i64, Ordering::SeqCst);
        self.state.drained.notify_waiters();
        let open = !self.state.ended.load(Ordering::SeqCst);
        give_back(&self.out, open.then_some(self.stream), n).await;
    }
}

impl Drop for InboundRx {
    fn drop(&mut self) {
        self.state.gone.store(true, Ordering::SeqCst);
        self.state.drained.notify_waiters();
    }
}

/// Returns once the connection's writer is gone.
pub(crate) async fn closed(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|c| *c).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data frames' payload bytes a peer got until the end of `rd`.
    async fn data_until_eof(rd: impl AsyncRead + Unpin) -> usize {
        let mut r = Reader::new(rd).unwrap();
        let mut n = 0;
        while let Some(f) = r.next().await {
            if let Frame::Data { data, .. } = f {
                n += data.len();
            }
        }
        n
    }

    #[tokio::test]
    async fn the_writer_keeps_to_the_window_and_gives_up_on_a_peer_that_never_widens_it() {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let conn = Conn::start(ours, Duration::from_millis(200));
        conn.windows.enforce();
        conn.out
            .send(Out::Data(1, vec![7; 200 * 1024], true))
            .await
            .unwrap();
        let mut closed = conn.closed.clone();
        let got = tokio::time::timeout(Duration::from_secs(20), data_until_eof(theirs))
            .await
            .expect("the session ends");
        assert_eq!(got as i64, INITIAL_WINDOW);
        tokio::time::timeout(Duration::from_secs(5), super::closed(&mut closed))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn without_flow_control_data_goes_as_tcp_takes_it_and_a_reader_that_stops_is_dropped() {
        // A peer that never sent a WINDOW_UPDATE: no window holds data
        // back.
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let conn = Conn::start(ours, Duration::from_secs(60));
        conn.out
            .send(Out::Data(1, vec![7; 200 * 1024], true))
            .await
            .unwrap();
        let (got, ()) = tokio::join!(data_until_eof(theirs), conn.finish(1, 0));
        assert_eq!(got, 200 * 1024);
        // One that reads nothing: the write stalls, the session goes.
        let (ours, _theirs) = tokio::io::duplex(4096);
        let conn = Conn::start(ours, Duration::from_millis(200));
        conn.out
            .send(Out::Data(1, vec![7; 200 * 1024], true))
            .await
            .unwrap();
        let mut closed = conn.closed.clone();
        tokio::time::timeout(Duration::from_secs(20), super::closed(&mut closed))
            .await
            .expect("the writer gives up");
    }

    #[tokio::test]
    async fn a_peer_without_flow_control_is_held_back_at_a_window_and_one_with_it_reset_past_it() {
        let (ours, _theirs) = tokio::io::duplex(1 << 20);
        let conn = Conn::start(ours, Duration::from_secs(60));
        let (mut tx, mut rx) = inbound(1, &conn);
        // Not enforced: the push that fills the window waits for use.
        tx.push(vec![1; RECEIVE_WINDOW as usize], false)
            .await
            .unwrap();
        let mut more = Box::pin(tx.push(vec![2; 10], false));
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut more)
                .await
                .is_err()
        );
        let first = rx.recv().await.unwrap();
        rx.used(first.len()).await;
        tokio::time::timeout(Duration::from_secs(5), more)
            .await
            .unwrap()
            .unwrap();
        // Enforced: no waiting, but a reset past the overrun allowance.
        conn.windows.enforce();
        let (mut tx, _rx) = inbound(3, &conn);
        tx.push(vec![0; OVERRUN as usize], false).await.unwrap();
        assert!(tx.push(vec![0; 1], false).await.is_err());
    }

    #[tokio::test]
    async fn window_updates_and_settings_let_the_rest_through() {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let conn = Conn::start(ours, Duration::from_secs(60));
        let (w, out) = (conn.windows.clone(), conn.out.clone());
        out.send(Out::Data(1, vec![7; 200 * 1024], true))
            .await
            .unwrap();
        // A bigger initial window for streams, and the session widened.
        handle_control(
            &Frame::Settings {
                flags: 0,
                entries: vec![(0, SETTINGS_INITIAL_WINDOW, 256 * 1024)],
            },
            &w,
            &out,
        )
        .await;
        handle_control(
            &Frame::WindowUpdate {
                stream: 0,
                delta: 200 * 1024,
            },
            &w,
            &out,
        )
        .await;
        drop(out);
        let conn_done = conn.finish(1, 0);
        let (got, ()) = tokio::join!(data_until_eof(theirs), conn_done);
        assert_eq!(got, 200 * 1024);
    }
}
