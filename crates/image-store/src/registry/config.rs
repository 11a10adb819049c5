//! The registry config file: mirrors, plain-HTTP registries, CA
//! certificates and credentials per registry host, and where docker-style
//! credentials are read from.
//!
//! ```toml
//! # Docker's credentials file (`auths`); default: $DOCKER_CONFIG/config.json,
//! # then ~/.docker/config.json. Credentials in a registry's table below win.
//! auth_file = "/root/.docker/config.json"
//!
//! [registries."docker.io"]
//! # Tried in order before the registry itself, for pulls.
//! mirrors = ["https://mirror.example.com", "http://127.0.0.1:5000"]
//!
//! [registries."registry.internal:5000"]
//! # Plain HTTP (and TLS without verification) allowed; loopback hosts
//! # (localhost, 127.0.0.0/8, ::1) always may use plain HTTP.
//! insecure = true
//! # PEM files with CA certificates to trust, on top of the system's roots.
//! ca = ["/etc/mini-runtime/certs/internal-ca.pem"]
//! username = "puller"
//! password = "secret"
//! # Or an identity (refresh) token, as `docker login` stores for some registries.
//! # identity_token = "..."
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The whole registry config. [`RegistryConfig::default`] is anonymous pulls
/// over HTTPS (plain HTTP for loopback hosts), no mirrors, and credentials
/// from the default docker config file if there is one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// A docker-style `config.json` with `auths`.
    #[serde(default)]
    pub auth_file: Option<PathBuf>,
    /// Per registry host (as in image names: `docker.io`, `localhost:5000`).
    #[serde(default)]
    pub registries: BTreeMap<String, HostConfig>,
}

/// Settings for one registry host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Mirror base URLs (`https://host[:port]`), tried in order before the
    /// registry itself. A mirror's own settings are those of its host.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Plain HTTP and unverified TLS allowed.
    #[serde(default)]
    pub insecure: bool,
    /// PEM files of CA certificates to trust for this host.
    #[serde(default)]
    pub ca: Vec<PathBuf>,
    /// User name for basic auth or a token exchange.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for basic auth or a token exchange.
    #[serde(default)]
    pub password: Option<String>,
    /// An OAuth2 refresh token, exchanged at the token server.
    #[serde(default)]
    pub identity_token: Option<String>,
}

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth2 refresh token (docker's `identitytoken`).
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(***)"),
        }
    }
}

impl RegistryConfig {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            op: "read registry config",
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let cfg: RegistryConfig = toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            reason: e.message().to_string(),
            span: e.span().map(|s| line_col(text, s.start)),
        })?;
        for (host, h) in &cfg.registries {
            for m in &h.mirrors {
                if !(m.starts_with("https://") || m.starts_with("http://")) {
                    return Err(Error::Config {
                        path: path.to_path_buf(),
                        reason: format!(
                            "registries.\"{host}\".mirrors: {m:?} is not an http:// or https:// URL"
                        ),
                        span: None,
                    });
                }
            }
        }
        Ok(cfg)
    }

    /// The settings of `host`, or the defaults.
    pub fn host(&self, host: &str) -> HostConfig {
        self.registries.get(host).cloned().unwrap_or_default()
    }

    /// The credentials for `host`: its table first, then the docker config file.
    pub fn credentials(&self, host: &str) -> Result<Option<Credentials>> {
        let h = self.host(host);
        if let Some(t) = h.identity_token {
            return Ok(Some(Credentials::IdentityToken(t)));
        }
        if let Some(u) = h.username {
            return Ok(Some(Credentials::Basic {
                username: u,
                password: h.password.unwrap_or_default(),
            }));
        }
        let path = match &self.auth_file {
            Some(p) => p.clone(),
            None => match default_auth_file() {
                Some(p) => p,
                None => return Ok(None),
            },
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.auth_file.is_none() => {
                return Ok(None);
            }
            Err(source) => {
                return Err(Error::Io {
                    op: "read credentials",
                    path,
                    source,
                });
            }
        };
        docker_credentials(&bytes, &path, host)
    }
}

fn default_auth_file() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Finds `host` in a docker `config.json`'s `auths`, whose keys may be bare
/// hosts or URLs (`https://index.docker.io/v1/` for Docker Hub).
fn docker_credentials(bytes: &[u8], path: &Path, host: &str) -> Result<Option<Credentials>> {
    let cfg: DockerConfig = serde_json::from_slice(bytes).map_err(|source| Error::Json {
        what: path.display().to_string(),
        source,
    })?;
    let key_host = |k: &str| -> String {
        let k = k
            .strip_prefix("https://")
            .or_else(|| k.strip_prefix("http://"))
            .unwrap_or(k);
        let k = k.split('/').next().unwrap_or(k);
        match k {
            "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
            other => other.to_string(),
        }
    };
    let Some((key, a)) = cfg.auths.iter().find(|(k, _)| key_host(k) == host) else {
        return Ok(None);
    };
    if let Some(t) = a.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::IdentityToken(t.clone())));
    }
    if let Some(encoded) = a.auth.as_ref().filter(|s| !s.is_empty()) {
        let bad = |reason: &str| Error::InvalidImage {
            what: format!("{}: auths.\"{key}\".auth", path.display()),
            reason: reason.to_string(),
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| bad("not base64"))?;
        let text = String::from_utf8(raw).map_err(|_| bad("not UTF-8 once decoded"))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| bad("not user:password once decoded"))?;
        return Ok(Some(Credentials::Basic {
            username: u.to_string(),
            password: p.to_string(),
        }));
    }
    if let Some(u) = &a.username {
        return Ok(Some(Credentials::Basic {
            username: u.clone(),
            password: a.password.clone().unwrap_or_default(),
        }));
    }
    Ok(None)
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Whether `host` (with an optional port) is a loopback name or address.
pub(crate) fn is_loopback(host: &str) -> bool {
    let h = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        }),
    };
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = r#"
auth_file = "/nonexistent/config.json"
[registries."docker.io"]
mirrors = ["https://mirror.example.com", "http://127.0.0.1:5000"]
[registries."registry.internal:5000"]
insecure = true
ca = ["/etc/ca.pem"]
username = "puller"
password = "secret"
"#;
        let c = RegistryConfig::parse(text, Path::new("r.toml")).unwrap();
        assert_eq!(c.host("docker.io").mirrors.len(), 2);
        assert!(c.host("registry.internal:5000").insecure);
        assert_eq!(
            c.credentials("registry.internal:5000").unwrap(),
            Some(Credentials::Basic {
                username: "puller".into(),
                password: "secret".into()
            })
        );
        // auth_file named but missing: an error, not silently anonymous.
        assert!(c.credentials("docker.io").is_err());
    }

    #[test]
    fn config_errors_say_where() {
        let e = RegistryConfig::parse("[registries.x]\nmirors = []\n", Path::new("r.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("r.toml") && e.contains("mirors") && e.contains("line 2"),
            "{e}"
        );
        let e = RegistryConfig::parse(
            "[registries.x]\nmirrors = [\"mirror:5000\"]\n",
            Path::new("r.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not an http"), "{e}");
    }

    #[test]
    fn docker_config_auths() {
        let text = br#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dTpwOnc="},
            "localhost:5000": {"identitytoken": "tok"},
            "quay.io": {"username": "a", "password": "b"},
            "bad.example": {"auth": "***"}
        }}"#;
        let p = Path::new("config.json");
        assert_eq!(
            docker_credentials(text, p, "docker.io").unwrap(),
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p:w".into()
            })
        );
        assert_eq!(
            docker_credentials(text, p, "localhost:5000").unwrap(),
            Some(Credentials::IdentityToken("tok".into()))
        );
        assert!(docker_credentials(text, p, "quay.io").unwrap().is_some());
        assert_eq!(docker_credentials(text, p, "ghcr.io").unwrap(), None);
        let e = docker_credentials(text, p, "bad.example")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.example") && e.contains("base64"), "{e}");
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["docker.io", "10.0.0.1:5000", "localhost.example.com"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
