//! A client for registries that speak the OCI distribution API: manifests
//! and blobs by digest or tag, Bearer-token and basic auth, mirrors,
//! plain HTTP only where allowed, retries with backoff, and blob downloads
//! that resume with `Range` after a dropped connection.
//!
//! Built on `ureq` (blocking, streaming bodies): the store's pull runs a
//! thread per layer, each streaming its blob straight into the unpacker.

pub(crate) mod auth;
mod config;

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Mutex;
use std::time::Duration;

pub use config::{Credentials, HostConfig, RegistryConfig};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use auth::{Challenge, TokenCache, TokenReply};

/// The manifest media types a pull accepts, best first.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Manifests and indexes larger than this are refused (containerd's limit).
const MANIFEST_LIMIT: u64 = 4 << 20;

/// Attempts per request on 429, 5xx and dropped connections.
const ATTEMPTS: u32 = 5;

/// A registry client; share one per process (it caches tokens and
/// connections). Cheap to use from many threads at once.
#[derive(Debug)]
pub struct Client {
    config: RegistryConfig,
    agents: Mutex<HashMap<String, ureq::Agent>>,
    /// The scheme that worked for a host that may use either.
    schemes: Mutex<HashMap<String, &'static str>>,
    tokens: TokenCache,
    backoff: Duration,
}

/// One place images can be fetched from: a mirror or the registry itself.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `host[:port]` to connect to.
    pub authority: String,
    /// The schemes to try, in order.
    schemes: Vec<&'static str>,
    /// Whose settings (credentials, CAs, insecure) apply.
    config_host: String,
    /// The user-facing registry name, for messages.
    pub label: String,
}

/// A fetched manifest or index.
#[derive(Debug, Clone)]
pub(crate) struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

impl Client {
    /// A client with `config`.
    pub fn new(config: RegistryConfig) -> Self {
        Self {
            config,
            agents: Mutex::new(HashMap::new()),
            schemes: Mutex::new(HashMap::new()),
            tokens: TokenCache::default(),
            backoff: Duration::from_millis(200),
        }
    }

    /// Sets the first retry's delay (doubled for each further one).
    pub fn with_backoff(mut self, first: Duration) -> Self {
        self.backoff = first;
        self
    }

    /// The config in use.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Where `r` may be pulled from, in order: its mirrors, then itself.
    pub(crate) fn endpoints(&self, r: &Reference) -> Vec<Endpoint> {
        let host = self.config.host(&r.registry);
        let mut out = Vec::new();
        for m in &host.mirrors {
            let (scheme, rest) = match m.split_once("://") {
                Some(("http", rest)) => ("http", rest),
                Some((_, rest)) => ("https", rest),
                None => ("https", m.as_str()),
            };
            let authority = rest.trim_end_matches('/').to_string();
            let allowed_http =
                config::is_loopback(&authority) || self.config.host(&authority).insecure;
            let schemes = if scheme == "http" && !allowed_http {
                // Named http:// but neither loopback nor insecure: TLS only.
                vec!["https"]
            } else {
                vec![scheme]
            };
            out.push(Endpoint {
                config_host: authority.clone(),
                label: format!("{} (mirror of {})", authority, r.registry),
                authority,
                schemes,
            });
        }
        let authority = if r.registry == "docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            r.registry.clone()
        };
        let schemes = if host.insecure || config::is_loopback(&r.registry) {
            vec!["https", "http"]
        } else {
            vec!["https"]
        };
        out.push(Endpoint {
            authority,
            schemes,
            config_host: r.registry.clone(),
            label: r.registry.clone(),
        });
        out
    }

    fn agent(&self, config_host: &str) -> Result<ureq::Agent> {
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = agents.get(config_host) {
            return Ok(a.clone());
        }
        let host = self.config.host(config_host);
        let mut tls = ureq::tls::TlsConfig::builder().disable_verification(host.insecure);
        if !host.ca.is_empty() {
            let mut certs = Vec::new();
            for path in &host.ca {
                let pem = std::fs::read(path).map_err(|source| Error::Io {
                    op: "read CA certificates",
                    path: path.clone(),
                    source,
                })?;
                for item in ureq::tls::parse_pem(&pem) {
                    match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                        Ok(_) => {}
                        Err(e) => {
                            return Err(Error::Config {
                                path: path.clone(),
                                reason: format!("not PEM certificates: {e}"),
                                span: None,
                            });
                        }
                    }
                }
            }
            if certs.is_empty() {
                return Err(Error::Config {
                    path: host.ca[0].clone(),
                    reason: "holds no certificate".into(),
                    span: None,
                });
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("mini-runtime/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .tls_config(tls.build())
            .build()
            .into();
        agents.insert(config_host.to_string(), agent.clone());
        Ok(agent)
    }

    /// GET `path` from `ep`, with auth, scheme choice and retries. Returns
    /// the response if it is 2xx; any other status is an error naming it.
    pub(crate) fn get(
        &self,
        ep: &Endpoint,
        path: &str,
        headers: &[(&str, String)],
        scope: &str,
        what: &str,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let agent = self.agent(&ep.config_host)?;
        let mut delay = self.backoff;
        let mut authed_once = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let auth = self.tokens.get(&ep.authority, scope);
            let result = self.send(&agent, ep, path, headers, auth.as_deref());
            let (resp, earlier) = match result {
                Ok(r) => r,
                Err(_) if attempt < ATTEMPTS => {
                    std::thread::sleep(delay);
                    delay *= 2;
                    continue;
                }
                Err(e) => {
                    return Err(Error::Registry {
                        registry: ep.label.clone(),
                        what: what.to_string(),
                        reason: e,
                    });
                }
            };
            let status = resp.status().as_u16();
            if status == 401 && !authed_once {
                authed_once = true;
                let challenge = resp
                    .headers()
                    .get_all("www-authenticate")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(auth::parse_challenge);
                self.authenticate(&agent, ep, challenge, scope, what)?;
                continue;
            }
            if (200..300).contains(&status) {
                return Ok(resp);
            }
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if matches!(status, 429 | 500 | 502 | 503 | 504) && attempt < ATTEMPTS {
                let wait = retry_after
                    .map(Duration::from_secs)
                    .unwrap_or(delay)
                    .min(Duration::from_secs(10));
                std::thread::sleep(wait);
                delay *= 2;
                continue;
            }
            let mut reason = status_reason(resp);
            if let Some(e) = earlier {
                // Plain HTTP answered after TLS failed: the TLS error is
                // most likely the one to fix.
                reason = format!("{e}; then over plain HTTP: {reason}");
            }
            return Err(Error::Registry {
                registry: ep.label.clone(),
                what: what.to_string(),
                reason,
            });
        }
    }

    /// One request, over the schemes `ep` allows; a transport error is a
    /// retryable `Err` with its text.
    fn send(
        &self,
        agent: &ureq::Agent,
        ep: &Endpoint,
        path: &str,
        headers: &[(&str, String)],
        auth: Option<&str>,
    ) -> std::result::Result<(ureq::http::Response<ureq::Body>, Option<String>), String> {
        let learned = self
            .schemes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ep.authority)
            .copied();
        let schemes: Vec<&'static str> = match learned {
            Some(s) => vec![s],
            None => ep.schemes.clone(),
        };
        let mut last: Option<String> = None;
        for scheme in schemes {
            let url = format!("{scheme}://{}{path}", ep.authority);
            let mut req = agent.get(&url);
            for (k, v) in headers {
                req = req.header(*k, v.as_str());
            }
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            match req.call() {
                Ok(r) => {
                    let ok = r.status().is_success() || r.status().as_u16() == 401;
                    if ep.schemes.len() > 1 && ok {
                        self.schemes
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(ep.authority.clone(), scheme);
                    }
                    return Ok((r, last));
                }
                Err(e) => last = Some(format!("{url}: {e}")),
            }
        }
        Err(last.unwrap_or_default())
    }

    /// Answers a 401's challenge: fetches a token, or checks that basic
    /// credentials exist (sent on the retry), or fails with a clear error.
    fn authenticate(
        &self,
        agent: &ureq::Agent,
        ep: &Endpoint,
        challenge: Option<Challenge>,
        scope: &str,
        what: &str,
    ) -> Result<()> {
        let creds = self.config.credentials(&ep.config_host)?;
        let unauthorized = |reason: String| Error::Registry {
            registry: ep.label.clone(),
            what: what.to_string(),
            reason,
        };
        match challenge {
            None => Err(unauthorized(
                "401 Unauthorized, with no challenge this client can answer".into(),
            )),
            Some(Challenge::Basic) => match creds {
                Some(Credentials::Basic { username, password }) => {
                    // Sent with every further request of this scope.
                    self.tokens.put(
                        &ep.authority,
                        scope,
                        auth::basic(&username, &password),
                        Duration::from_secs(24 * 3600),
                    );
                    Ok(())
                }
                _ => Err(unauthorized(
                    "401 Unauthorized: the registry wants basic auth and no credentials are configured for it".into(),
                )),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope: wanted,
            }) => {
                let scope_param = wanted.unwrap_or_else(|| scope.to_string());
                let reply = self.fetch_token(
                    agent,
                    &realm,
                    service.as_deref(),
                    &scope_param,
                    creds.as_ref(),
                )
                .map_err(unauthorized)?;
                let token = reply.token().ok_or_else(|| {
                    unauthorized(format!("token server {realm} answered without a token"))
                })?;
                self.tokens
                    .put(&ep.authority, scope, format!("Bearer {token}"), reply.lifetime());
                Ok(())
            }
        }
    }

    fn fetch_token(
        &self,
        agent: &ureq::Agent,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> std::result::Result<TokenReply, String> {
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(format!("token realm {realm:?} is not an http(s) URL"));
        }
        if let Some(form) = creds.and_then(|c| auth::refresh_form(c, service, scope)) {
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let resp = agent
                .post(realm)
                .send_form(pairs)
                .map_err(|e| format!("token server {realm}: {e}"))?;
            return token_reply(realm, resp);
        }
        let mut req = agent.get(realm);
        if let Some(s) = service {
            req = req.query("service", s);
        }
        req = req.query("scope", scope);
        if let Some(Credentials::Basic { username, password }) = creds {
            req = req.header("Authorization", auth::basic(username, password));
        }
        let resp = req
            .call()
            .map_err(|e| format!("token server {realm}: {e}"))?;
        token_reply(realm, resp)
    }

    /// Fetches the manifest or index `reference` names, from its first
    /// mirror that has it or from the registry: its bytes, media type and
    /// digest (checked against the reference's digest, if it has one).
    pub fn fetch_manifest(&self, reference: &Reference) -> Result<(Vec<u8>, String, Digest)> {
        let (_, m) = self.first_manifest(&self.endpoints(reference), reference)?;
        Ok((m.bytes, m.media_type, m.digest))
    }

    /// A reader of blob `digest` (`size` bytes) of `reference`'s
    /// repository, from the first endpoint that serves it, resuming after a
    /// dropped connection. The caller checks what it reads (the store does).
    pub fn fetch_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
    ) -> Result<impl Read + Send + '_> {
        self.first_blob(&self.endpoints(reference), reference, digest, size)
    }

    /// The manifest `reference` names from the first of `endpoints` that
    /// has it, and that endpoint's index; else the last endpoint's error.
    pub(crate) fn first_manifest(
        &self,
        endpoints: &[Endpoint],
        reference: &Reference,
    ) -> Result<(usize, FetchedManifest)> {
        let mut last = None;
        for (i, ep) in endpoints.iter().enumerate() {
            match self.manifest(ep, &reference.repository, &reference.locator()) {
                Ok(m) => return Ok((i, m)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::InvalidReference {
            name: reference.name(),
            reason: "no registry to pull from",
        }))
    }

    /// Blob `digest` of `reference`'s repository from the first of
    /// `endpoints` that serves it; else the last endpoint's error.
    pub(crate) fn first_blob<'c>(
        &'c self,
        endpoints: &[Endpoint],
        reference: &Reference,
        digest: &Digest,
        size: u64,
    ) -> Result<BlobReader<'c>> {
        let mut last = None;
        for ep in endpoints {
            match self.blob(ep, &reference.repository, digest, size) {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::MissingBlob {
            digest: digest.to_string(),
            source_name: reference.registry.clone(),
        }))
    }

    /// Fetches a manifest or index by tag or digest, checking its digest.
    pub(crate) fn manifest(
        &self,
        ep: &Endpoint,
        repository: &str,
        locator: &str,
    ) -> Result<FetchedManifest> {
        let what = format!("manifest {repository}:{locator}");
        let resp = self.get(
            ep,
            &format!("/v2/{repository}/manifests/{locator}"),
            &[("Accept", MANIFEST_ACCEPT.to_string())],
            &pull_scope(repository),
            &what,
        )?;
        let header_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp
            .into_body()
            .with_config()
            .limit(MANIFEST_LIMIT)
            .read_to_vec()
            .map_err(|e| Error::Registry {
                registry: ep.label.clone(),
                what: what.clone(),
                reason: format!("reading the body: {e}"),
            })?;
        let digest = Digest::of(&bytes);
        let bad = |reason: String| Error::Registry {
            registry: ep.label.clone(),
            what: what.clone(),
            reason,
        };
        if let Ok(want) = Digest::parse(locator)
            && want != digest
        {
            return Err(bad(format!(
                "content hashes to {digest}, not the digest asked for"
            )));
        }
        if let Some(h) = header_digest
            && h.starts_with("sha256:")
            && h != digest.to_string()
        {
            return Err(bad(format!(
                "Docker-Content-Digest says {h}, but the content hashes to {digest}"
            )));
        }
        // The document's own mediaType wins over the header (some servers
        // answer application/json).
        #[derive(serde::Deserialize)]
        struct Head {
            #[serde(rename = "mediaType", default)]
            media_type: Option<String>,
            #[serde(default)]
            manifests: Option<serde_json::Value>,
        }
        let head: Head = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: what.clone(),
            source,
        })?;
        let media_type = head
            .media_type
            .or(header_type.filter(|t| t != "application/json"))
            .unwrap_or_else(|| {
                if head.manifests.is_some() {
                    crate::store::oci::OCI_INDEX.to_string()
                } else {
                    crate::store::oci::OCI_MANIFEST.to_string()
                }
            });
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// A reader of blob `digest` (`size` bytes) that resumes where it was
    /// after a dropped connection.
    pub(crate) fn blob<'c>(
        &'c self,
        ep: &Endpoint,
        repository: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<BlobReader<'c>> {
        let mut r = BlobReader {
            client: self,
            ep: ep.clone(),
            repository: repository.to_string(),
            digest: digest.clone(),
            size,
            offset: 0,
            body: None,
            resumes: 0,
            wrong_size: false,
        };
        r.open()?;
        Ok(r)
    }
}

/// A blob download that reopens with `Range: bytes=<offset>-` when the
/// connection drops, up to a bounded number of times.
pub(crate) struct BlobReader<'c> {
    client: &'c Client,
    ep: Endpoint,
    repository: String,
    digest: Digest,
    size: u64,
    offset: u64,
    body: Option<Box<dyn Read + Send + 'static>>,
    resumes: u32,
    /// The server announced another size than the descriptor's: its
    /// (complete) answer is read as it is, for the size check to refuse,
    /// and never resumed.
    wrong_size: bool,
}

const RESUMES: u32 = 8;

impl BlobReader<'_> {
    fn open(&mut self) -> Result<()> {
        let mut headers = Vec::new();
        if self.offset > 0 {
            headers.push(("Range", format!("bytes={}-", self.offset)));
        }
        let what = format!("blob {}", self.digest);
        let resp = self.client.get(
            &self.ep,
            &format!("/v2/{}/blobs/{}", self.repository, self.digest),
            &headers,
            &pull_scope(&self.repository),
            &what,
        )?;
        let status = resp.status().as_u16();
        let length = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let total = if status == 206 {
            resp.headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit('/').next())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .or(length.map(|l| l + self.offset))
        } else {
            length
        };
        if total.is_some_and(|t| t != self.size) {
            self.wrong_size = true;
        }
        let mut body: Box<dyn Read + Send> = Box::new(resp.into_body().into_reader());
        if self.offset > 0 && status != 206 {
            // The server ignored the range: skip what we already have.
            let skipped =
                io::copy(&mut (&mut body).take(self.offset), &mut io::sink()).map_err(|e| {
                    Error::Registry {
                        registry: self.ep.label.clone(),
                        what: what.clone(),
                        reason: format!("resuming at byte {}: {e}", self.offset),
                    }
                })?;
            if skipped != self.offset {
                return Err(Error::Registry {
                    registry: self.ep.label.clone(),
                    what,
                    reason: format!("shorter than the {} bytes already read", self.offset),
                });
            }
        }
        self.body = Some(body);
        Ok(())
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(body) = self.body.as_mut() else {
                return Ok(0);
            };
            let res = body.read(buf);
            match res {
                Ok(0) if self.offset >= self.size || self.wrong_size => return Ok(0),
                Ok(n) if n > 0 => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A short body or a dropped connection: resume.
                Ok(_) | Err(_) if self.resumes < RESUMES => {
                    self.resumes += 1;
                    self.body = None;
                    std::thread::sleep(self.client.backoff * self.resumes);
                    if let Err(e) = self.open() {
                        return Err(io::Error::other(e.to_string()));
                    }
                }
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "blob {} ended after {} of {} bytes, {} resumes",
                            self.digest, self.offset, self.size, self.resumes
                        ),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The scope of a pull from `repository`.
pub(crate) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

fn token_reply(
    realm: &str,
    resp: ureq::http::Response<ureq::Body>,
) -> std::result::Result<TokenReply, String> {
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(format!("token server {realm}: {}", status_reason(resp)));
    }
    let bytes = resp
        .into_body()
        .with_config()
        .limit(1 << 20)
        .read_to_vec()
        .map_err(|e| format!("token server {realm}: reading the reply: {e}"))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("token server {realm}: the reply is not a token: {e}"))
}

/// `404 Not Found: MANIFEST_UNKNOWN: manifest unknown`, from the status and
/// the registry's error body (printable text only, bounded).
fn status_reason(resp: ureq::http::Response<ureq::Body>) -> String {
    let status = resp.status();
    let head = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let body = resp
        .into_body()
        .with_config()
        .limit(64 << 10)
        .read_to_vec()
        .unwrap_or_default();
    let detail = error_detail(&body);
    if detail.is_empty() {
        head.trim().to_string()
    } else {
        format!("{}: {detail}", head.trim())
    }
}

/// What a registry's error body says: the `errors` of the distribution
/// spec, else the start of the body; control characters blanked, at most
/// 300 characters.
pub(crate) fn error_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let detail = match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => e
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::from_utf8_lossy(&body[..body.len().min(200)])
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .trim()
            .to_string(),
    };
    detail
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}
