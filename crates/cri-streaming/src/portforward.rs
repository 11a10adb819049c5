//! Port forwarding over WebSocket, as the kubelet serves it: the ports come
//! from the URL's `port` query parameters (else the request's); port `i`
//! has a data channel `2i` and an error channel `2i + 1`, and the server
//! opens each with the port number (16 bits, little-endian). Bytes on a data
//! channel go to a TCP connection to that port in the pod's network
//! namespace and back; a failure to connect is told on the error channel.

use std::sync::Arc;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::http::Head;
use crate::ws::normal_close;
use crate::{Backend, PortForwardRequest};

fn frame(b64: bool, ch: u8, data: &[u8]) -> Message {
    if b64 {
        let mut s = String::new();
        s.push(char::from(b'0' + ch % 10));
        s.push_str(&base64::engine::general_purpose::STANDARD.encode(data));
        Message::Text(s.into())
    } else {
        let mut v = vec![ch];
        v.extend_from_slice(data);
        Message::Binary(v.into())
    }
}

/// The ports of the `port=` query parameters.
pub(crate) fn query_ports(path: &str) -> Result<Vec<u16>, String> {
    let Some((_, q)) = path.split_once('?') else {
        return Ok(Vec::new());
    };
    q.split('&')
        .filter_map(|kv| kv.strip_prefix("port="))
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("port {p:?} is not a TCP port"))
        })
        .collect()
}

pub(crate) async fn serve(
    ws: WebSocketStream<TcpStream>,
    b64: bool,
    req: PortForwardRequest,
    head: &Head,
    stall: std::time::Duration,
    backend: Arc<dyn Backend>,
) {
    let (mut sink, mut source) = ws.split();
    let ports = match query_ports(&head.path) {
        Ok(q) if !q.is_empty() => q,
        Ok(_) => req.ports.clone(),
        Err(e) => {
            let _ = sink.send(frame(b64, 1, e.as_bytes())).await;
            let _ = sink.close().await;
            return;
        }
    };
    if ports.is_empty() || ports.len() > 100 {
        let msg = "a port forward needs 1 to 100 ports (the port query parameter)";
        let _ = sink.send(frame(b64, 1, msg.as_bytes())).await;
        let _ = sink.close().await;
        return;
    }
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Vec<u8>)>(64);
    let writer = tokio::spawn(async move {
        while let Some((ch, data)) = out_rx.recv().await {
            let sent = tokio::time::timeout(stall, sink.send(frame(b64, ch, &data))).await;
            if !matches!(sent, Ok(Ok(()))) {
                break;
            }
        }
        let _ = sink.send(normal_close()).await;
        let _ = sink.close().await;
    });
    // Per port: the write half of its connection, fed from the client.
    let mut inputs: Vec<Option<mpsc::Sender<Vec<u8>>>> = Vec::new();
    let mut tasks = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (data, error) = ((2 * i) as u8, (2 * i + 1) as u8);
        for ch in [data, error] {
            let _ = out_tx.send((ch, port.to_le_bytes().to_vec())).await;
        }
        match backend.port_forward(&req.pod_sandbox_id, *port).await {
            Ok(conn) => {
                let (mut r, mut w) = conn.into_split();
                let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
                inputs.push(Some(tx));
                tokio::spawn(async move {
                    while let Some(b) = rx.recv().await {
                        if w.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    let _ = w.shutdown().await;
                });
                let out = out_tx.clone();
                tasks.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    loop {
                        match r.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if out.send((data, buf[..n].to_vec())).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }));
            }
            Err(e) => {
                inputs.push(None);
                let _ = out_tx
                    .send((error, format!("port {port}: {e}").into_bytes()))
                    .await;
            }
        }
    }
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = source.next().await {
            let (ch, data) = match m {
                Message::Close(_) => break,
                Message::Binary(b) if !b.is_empty() => (b[0], b[1..].to_vec()),
                Message::Text(t) if b64 && !t.is_empty() => {
                    let b = t.as_bytes();
                    let Some(ch) = b[0].checked_sub(b'0') else {
                        continue;
                    };
                    let Ok(d) = base64::engine::general_purpose::STANDARD.decode(&b[1..]) else {
                        continue;
                    };
                    (ch, d)
                }
                _ => continue,
            };
            if ch % 2 == 0
                && let Some(Some(tx)) = inputs.get(usize::from(ch / 2))
            {
                let _ = tx.send(data).await;
            }
        }
    });
    for t in tasks {
        let _ = t.await;
    }
    drop(out_tx);
    let _ = writer.await;
    reader.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_the_query() {
        assert_eq!(
            query_ports("/portforward/t?port=80&port=443").unwrap(),
            [80, 443]
        );
        assert_eq!(query_ports("/portforward/t").unwrap(), Vec::<u16>::new());
        assert!(query_ports("/portforward/t?port=0").is_err());
        assert!(query_ports("/portforward/t?port=x").is_err());
    }
}
