//! The HTTP/1.1 side: one GET per connection, upgraded to a stream
//! protocol or answered with an error status and a line saying why.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Request, Shared, ws};

/// The remotecommand protocols served over SPDY, newest first.
const SPDY_PROTOCOLS: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// Port forwarding's, over SPDY.
const SPDY_PORTFORWARD: [&str; 1] = ["portforward.k8s.io"];

/// A request head larger than this is refused.
const MAX_HEAD: usize = 16 * 1024;

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Head {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Comma-separated values of every `name` header, trimmed.
    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// Parses a request head (request line and headers, without the blank line).
pub(crate) fn parse_head(text: &str) -> Result<Head, String> {
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let mut parts = first.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line".into());
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("{version}: only HTTP/1.1"));
    }
    let mut headers = Vec::new();
    for l in lines {
        if l.is_empty() {
            continue;
        }
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| "malformed header line".to_string())?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(Head {
        method: method.to_string(),
        path: path.to_string(),
        headers,
    })
}

pub(crate) async fn respond(sock: &mut TcpStream, status: &str, body: &str) {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(msg.as_bytes()).await;
    let _ = sock.shutdown().await;
}

/// Reads the head, looks up the token and hands the connection to the
/// protocol it asks for.
pub(crate) async fn serve_connection(
    mut sock: TcpStream,
    shared: &Arc<Shared>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), sock.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HEAD {
            respond(
                &mut sock,
                "431 Request Header Fields Too Large",
                "request head too large\n",
            )
            .await;
            return Ok(());
        }
    };
    let head = match std::str::from_utf8(&buf[..end])
        .map_err(|_| "not UTF-8".to_string())
        .and_then(parse_head)
    {
        Ok(h) => h,
        Err(e) => {
            respond(&mut sock, "400 Bad Request", &format!("{e}\n")).await;
            return Ok(());
        }
    };
    if head.method != "GET" && head.method != "POST" {
        respond(&mut sock, "405 Method Not Allowed", "only GET and POST\n").await;
        return Ok(());
    }
    let path = head.path.split('?').next().unwrap_or("");
    let mut seg = path.trim_start_matches('/').splitn(2, '/');
    let (kind, token) = (seg.next().unwrap_or(""), seg.next().unwrap_or(""));
    if !matches!(kind, "exec" | "attach" | "portforward") || token.is_empty() {
        respond(&mut sock, "404 Not Found", "no such stream endpoint\n").await;
        return Ok(());
    }
    let Some(req) = shared.tokens.take(token) else {
        respond(
            &mut sock,
            "404 Not Found",
            "unknown, used or expired token\n",
        )
        .await;
        return Ok(());
    };
    if req.kind() != kind {
        respond(
            &mut sock,
            "404 Not Found",
            "the token is not for this endpoint\n",
        )
        .await;
        return Ok(());
    }
    let upgrade = head.header("Upgrade").unwrap_or("").to_ascii_lowercase();
    match upgrade.as_str() {
        "websocket" => ws::serve(sock, &head, req, shared).await,
        "spdy/3.1" => {
            let served: &[&str] = match req {
                Request::PortForward(_) => &SPDY_PORTFORWARD,
                _ => &SPDY_PROTOCOLS,
            };
            let offered = head.list("X-Stream-Protocol-Version");
            // An old client that names no protocol gets the oldest.
            let chosen = if offered.is_empty() {
                Some(served[served.len() - 1])
            } else {
                offered
                    .iter()
                    .find_map(|o| served.iter().find(|p| **p == o.as_str()).copied())
            };
            let Some(chosen) = chosen else {
                let msg = format!(
                    "none of the offered stream protocols ({}) is served; this endpoint speaks {}\n",
                    offered.join(", "),
                    served.join(", ")
                );
                respond(&mut sock, "403 Forbidden", &msg).await;
                return Ok(());
            };
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {chosen}\r\n\r\n"
            );
            sock.write_all(resp.as_bytes()).await?;
            let (stall, backend) = (shared.stall, shared.backend.clone());
            let io = match req {
                Request::Exec(e) => ws::Io::Exec(e),
                Request::Attach(a) => ws::Io::Attach(a),
                Request::PortForward(pf) => {
                    crate::spdy_portforward::serve(sock, pf.pod_sandbox_id, stall, backend).await;
                    return Ok(());
                }
            };
            let v4 = chosen == SPDY_PROTOCOLS[0];
            crate::spdy_session::serve(sock, io, v4, stall, backend).await;
            Ok(())
        }
        u if u.starts_with("spdy/") => {
            respond(
                &mut sock,
                "400 Bad Request",
                &format!("{u}: only SPDY/3.1\n"),
            )
            .await;
            Ok(())
        }
        _ => {
            respond(
                &mut sock,
                "400 Bad Request",
                "this endpoint needs an Upgrade to websocket\n",
            )
            .await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_and_bad_ones_are_refused() {
        let h = parse_head(
            "GET /exec/abc?x=1 HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Protocol: v5.channel.k8s.io, v4.channel.k8s.io\r\nsec-websocket-protocol: channel.k8s.io",
        )
        .unwrap();
        assert_eq!(h.path, "/exec/abc?x=1");
        assert_eq!(
            h.list("Sec-WebSocket-Protocol"),
            ["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"]
        );
        assert!(parse_head("GET /x").is_err());
        assert!(parse_head("GET /x HTTP/2\r\n").is_err());
        assert!(parse_head("GET /x HTTP/1.1\r\nno colon").is_err());
    }
}
