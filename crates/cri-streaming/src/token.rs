//! Single-use tokens for stored requests, each valid for a short while.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::Request;

/// Requests by token; a token is taken once, and only before it expires.
#[derive(Debug)]
pub struct Tokens {
    ttl: Duration,
    map: Mutex<HashMap<String, (Instant, Request)>>,
}

/// 64 random bits from the kernel, URL-safe, as the kubelet's tokens.
fn new_token() -> String {
    use std::io::Read;
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        // No /dev/urandom: the clock's low bits and a counter, still unique.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b = (t ^ N
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .rotate_left(32))
        .to_le_bytes();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl Tokens {
    /// Tokens that expire after `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `req`; its token.
    pub fn insert(&self, req: Request) -> String {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (t, _)| now.duration_since(*t) < self.ttl);
        loop {
            let token = new_token();
            if !map.contains_key(&token) {
                map.insert(token.clone(), (now, req));
                return token;
            }
        }
    }

    /// Takes the request of `token`, if it is there and not expired.
    pub fn take(&self, token: &str) -> Option<Request> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let (t, req) = map.remove(token)?;
        (t.elapsed() < self.ttl).then_some(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AttachRequest, Request};

    fn req() -> Request {
        Request::Attach(AttachRequest {
            container_id: "c".into(),
            tty: false,
            stdin: false,
            stdout: true,
            stderr: true,
        })
    }

    #[test]
    fn tokens_are_single_use_and_expire() {
        let t = Tokens::new(Duration::from_millis(50));
        let a = t.insert(req());
        let b = t.insert(req());
        assert_ne!(a, b);
        assert_eq!(a.len(), 11);
        assert_eq!(t.take(&a), Some(req()));
        assert_eq!(t.take(&a), None, "a token is used once");
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(t.take(&b), None, "an expired token is gone");
        assert_eq!(t.take("made-up"), None);
    }
}
