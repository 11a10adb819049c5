//! Registry authentication: `WWW-Authenticate` challenges, Bearer tokens
//! from the token server (cached per registry and scope until they expire),
//! and basic auth.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

use super::config::Credentials;

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// `Bearer realm=...,service=...,scope=...`
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// `Basic realm=...`
    Basic,
}

/// Parses the first challenge this client can answer from a
/// `WWW-Authenticate` header value; `None` if there is none.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest)?;
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
    })
}

/// `k=v` and `k="v, with \"escapes\""` pairs separated by commas.
fn parse_params(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return None;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim_end().to_string();
        }
        out.push((key, value));
    }
}

/// The `Authorization` value for basic auth.
pub(crate) fn basic(username: &str, password: &str) -> String {
    let raw = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// What a token server answers.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TokenReply {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    /// Seconds; the distribution spec's default is 60.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenReply {
    pub(crate) fn token(&self) -> Option<&str> {
        self.token
            .as_deref()
            .or(self.access_token.as_deref())
            .filter(|t| !t.is_empty())
    }

    /// How long the token may be used: its lifetime less a margin, so a
    /// token is never sent in its last seconds.
    pub(crate) fn lifetime(&self) -> Duration {
        let secs = self.expires_in.unwrap_or(60).max(1);
        Duration::from_secs(secs.saturating_sub(secs.min(10) / 2).max(1))
    }
}

/// `Authorization` values (a Bearer token, or basic credentials a registry
/// asked for) by (registry host, scope), until they expire.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
}

impl TokenCache {
    pub(crate) fn get(&self, host: &str, scope: &str) -> Option<String> {
        let map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(host.to_string(), scope.to_string()))
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(t, _)| t.clone())
    }

    pub(crate) fn put(&self, host: &str, scope: &str, token: String, lifetime: Duration) {
        let mut map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(
            (host.to_string(), scope.to_string()),
            (token, Instant::now() + lifetime),
        );
    }
}

/// The form a token server takes for an OAuth2 refresh-token exchange.
pub(crate) fn refresh_form(
    creds: &Credentials,
    service: Option<&str>,
    scope: &str,
) -> Option<Vec<(&'static str, String)>> {
    let Credentials::IdentityToken(t) = creds else {
        return None;
    };
    let mut form = vec![
        ("grant_type", "refresh_token".to_string()),
        ("refresh_token", t.clone()),
        ("client_id", "mini-runtime".to_string()),
        ("scope", scope.to_string()),
    ];
    if let Some(s) = service {
        form.push(("service", s.to_string()));
    }
    Some(form)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"bearer realm = "http://127.0.0.1:9/t" , scope="a:b:pull,push""#),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:9/t".into(),
                service: None,
                scope: Some("a:b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge(r#"Bearer realm="unterminated"#), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge(""), None);
    }

    #[test]
    fn tokens_expire() {
        let c = TokenCache::default();
        c.put("h", "s", "t".into(), Duration::from_secs(60));
        assert_eq!(c.get("h", "s").as_deref(), Some("t"));
        assert_eq!(c.get("h", "other"), None);
        c.put("h", "s", "t2".into(), Duration::ZERO);
        assert_eq!(c.get("h", "s"), None);
        let r: TokenReply =
            serde_json::from_str(r#"{"access_token":"a","expires_in":300}"#).unwrap();
        assert_eq!(r.token(), Some("a"));
        assert_eq!(r.lifetime(), Duration::from_secs(295));
    }

    #[test]
    fn basic_header() {
        assert_eq!(basic("u", "p"), "Basic dTpw");
    }
}
