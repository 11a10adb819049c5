//! Pulls: from Debian's docker-registry (images pushed to it with skopeo),
//! and from a small registry of the test's own that misbehaves on purpose
//! (429s, a dropped connection mid-blob, a wrong digest, token auth).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    Comp, put_blob, put_image, put_index, require_root, require_tool, run, sample_layers,
};
use image_store::registry::{Client, RegistryConfig};
use image_store::{Error, LayerEvent, Progress, PullOptions, Store};

fn client() -> Client {
    Client::new(RegistryConfig::default()).with_backoff(Duration::from_millis(10))
}

fn pull(store: &Store, name: &str) -> image_store::Result<image_store::Pulled> {
    store.pull(
        &client(),
        name,
        &PullOptions::default(),
        &image_store::NoProgress,
    )
}

/// Debian's docker-registry on 127.0.0.1, with its own config and storage.
struct Registry {
    _dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_registry() -> Option<Registry> {
    start_registry_with("", "http")
}

/// Starts docker-registry with `extra` YAML at the top level and, for
/// `"tls"`, `http.tls` lines naming `cert.pem`/`key.pem` beside it.
fn start_registry_with(extra: &str, http_extra: &str) -> Option<Registry> {
    if !require_tool("docker-registry", "pull tests") || !require_tool("skopeo", "pull tests") {
        return None;
    }
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n{}{extra}",
            dir.path().join("data").display(),
            if http_extra == "http" {
                String::new()
            } else {
                http_extra.to_string()
            },
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry");
        let mut reg = Registry {
            _dir: dir,
            child,
            port,
        };
        for _ in 0..200 {
            if let Ok(Some(_)) = reg.child.try_wait() {
                break; // the port was taken meanwhile: try another
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(reg);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    panic!("docker-registry did not start");
}

/// Pushes the image named `tag` of an OCI layout to `127.0.0.1:port/repo:tag`.
fn push(layout: &Path, tag: &str, port: u16, repo: &str, all: bool) {
    push_with(layout, tag, port, repo, if all { &["--all"] } else { &[] });
}

/// [`push`] with more `skopeo copy` flags (`--dest-creds user:password`).
fn push_with(layout: &Path, tag: &str, port: u16, repo: &str, flags: &[&str]) {
    let src = format!("oci:{}:{tag}", layout.display());
    let dst = format!("docker://127.0.0.1:{port}/{repo}:{tag}");
    let mut args = vec!["copy", "--quiet", "--dest-tls-verify=false"];
    args.extend(flags);
    args.extend([src.as_str(), dst.as_str()]);
    let (ok, out) = run("skopeo", &args);
    assert!(ok, "skopeo copy: {out}");
}

/// A client with `username` and `password` configured for `host`.
fn client_with(host: &str, username: &str, password: &str) -> Client {
    Client::new(
        RegistryConfig::parse(
            &format!(
                "[registries.\"{host}\"]\nusername = \"{username}\"\npassword = \"{password}\"\n"
            ),
            Path::new("test.toml"),
        )
        .unwrap(),
    )
}

#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl Progress for Events {
    fn layer(&self, e: &LayerEvent<'_>) {
        let s = match e {
            LayerEvent::Present { digest } => format!("present {digest}"),
            LayerEvent::Started { digest, .. } => format!("started {digest}"),
            LayerEvent::Verified { digest } => format!("verified {digest}"),
            LayerEvent::Done { digest } => format!("done {digest}"),
            _ => return,
        };
        self.0.lock().unwrap().push(s);
    }
}

#[test]
fn pulls_from_docker_registry_into_blobs_and_snapshots() {
    if !require_root("pulls_from_docker_registry_into_blobs_and_snapshots") {
        return;
    }
    let Some(reg) = start_registry() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let m = put_image(&layout, &sample_layers(), Comp::Gzip, "amd64");
    put_index(&layout, &[(Some("t"), m)]);
    push(&layout, "t", reg.port, "test/app", false);

    let store = Store::open(tmp.path().join("store")).unwrap();
    let name = format!("127.0.0.1:{}/test/app:t", reg.port);
    let events = Events::default();
    let got = store
        .pull(&client(), &name, &PullOptions::default(), &events)
        .unwrap();
    assert_eq!(got.name, name);
    assert_eq!(got.fetched_layers, 2);
    let image = store.image(&name).unwrap();
    for l in &image.layers {
        assert!(store.has_blob(&l.blob.digest().unwrap()));
        assert!(store.snapshot_dir(&l.chain_id).is_dir());
        let d = &l.blob.digest_str;
        let ev = events.0.lock().unwrap();
        let order: Vec<_> = ["started", "verified", "done"]
            .iter()
            .map(|k| ev.iter().position(|e| *e == format!("{k} {d}")))
            .collect();
        assert!(
            order.iter().all(Option::is_some) && order.windows(2).all(|w| w[0] < w[1]),
            "{ev:?}"
        );
    }
    let upper = store.snapshot_dir(&image.layers[1].chain_id);
    assert_eq!(
        std::fs::read(upper.join("etc/hostname")).unwrap(),
        b"upper\n"
    );
    // Nothing left in the store's temp dir.
    assert_eq!(
        std::fs::read_dir(store.root().join(".store/tmp"))
            .unwrap()
            .count(),
        0
    );
    // The store stays an OCI layout skopeo reads.
    let (ok, out) = run(
        "skopeo",
        &["inspect", &format!("oci:{}:{name}", store.root().display())],
    );
    assert!(ok, "skopeo inspect of the store: {out}");

    // Again: nothing is fetched, every layer is present.
    let events = Events::default();
    let again = store
        .pull(&client(), &name, &PullOptions::default(), &events)
        .unwrap();
    assert_eq!(again.fetched_layers, 0);
    assert!(
        events
            .0
            .lock()
            .unwrap()
            .iter()
            .all(|e| e.starts_with("present"))
    );

    // By digest, and a short name resolving to the same manifest.
    let by_digest = format!(
        "127.0.0.1:{}/test/app@{}",
        reg.port, got.manifest.digest_str
    );
    assert_eq!(
        pull(&store, &by_digest).unwrap().manifest.digest_str,
        got.manifest.digest_str
    );

    // A tag that is not there: the registry's own words.
    let err = pull(&store, &format!("127.0.0.1:{}/test/app:nope", reg.port))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("404") && err.contains("MANIFEST_UNKNOWN"),
        "{err}"
    );

    // An index without our platform names what it has.
    let multi = tmp.path().join("multi");
    let arm = put_image(&multi, &sample_layers(), Comp::Gzip, "arm64");
    let mut arm_entry = arm.clone();
    arm_entry["platform"] = serde_json::json!({"os": "linux", "architecture": "arm64"});
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [arm_entry],
    });
    let index = put_blob(
        &multi,
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&index).unwrap(),
    );
    put_index(&multi, &[(Some("m"), index)]);
    push(&multi, "m", reg.port, "test/multi", true);
    let err = pull(&store, &format!("127.0.0.1:{}/test/multi:m", reg.port)).unwrap_err();
    assert!(matches!(err, Error::NoMatchingPlatform { .. }), "{err}");
    let err = err.to_string();
    assert!(
        err.contains("linux/amd64") && err.contains("linux/arm64"),
        "{err}"
    );
    let mut arm_opts = PullOptions::default();
    arm_opts.platform.architecture = "arm64".into();
    store
        .pull(
            &client(),
            &format!("127.0.0.1:{}/test/multi:m", reg.port),
            &arm_opts,
            &image_store::NoProgress,
        )
        .unwrap();
}

#[test]
fn concurrent_pulls_of_one_image_share_the_store() {
    if !require_root("concurrent_pulls_of_one_image_share_the_store") {
        return;
    }
    let Some(reg) = start_registry() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let m = put_image(&layout, &sample_layers(), Comp::Zstd, "amd64");
    put_index(&layout, &[(Some("c"), m)]);
    push(&layout, "c", reg.port, "conc/app", false);
    let store = Store::open(tmp.path().join("store")).unwrap();
    let name = format!("127.0.0.1:{}/conc/app:c", reg.port);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..4).map(|_| s.spawn(|| pull(&store, &name))).collect();
        for h in hs {
            h.join().unwrap().unwrap();
        }
    });
    let image = store.image(&name).unwrap();
    for l in &image.layers {
        assert!(store.snapshot_dir(&l.chain_id).is_dir());
    }
    assert_eq!(
        std::fs::read_dir(store.root().join(".store/tmp"))
            .unwrap()
            .count(),
        0
    );
}

/// How the test's own registry misbehaves.
#[derive(Default, Clone)]
struct Faults {
    /// Answer this many requests with 429 first.
    too_many: usize,
    /// Cut the first response of each blob after this many bytes.
    drop_blob_after: Option<usize>,
    /// Serve these bytes for every gzip layer instead of the real ones.
    wrong_blob: Option<Vec<u8>>,
    /// Require a Bearer token from its token endpoint, given for these
    /// basic credentials.
    token_for: Option<(String, String)>,
    /// Require a Bearer token, given by an OAuth2 refresh-token exchange
    /// (POST) for this refresh token.
    refresh_token: Option<String>,
}

/// A registry serving an OCI layout over plain HTTP on 127.0.0.1, with
/// `Faults`. Counts requests.
struct FakeRegistry {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

fn fake_registry(layout: &Path, faults: Faults) -> FakeRegistry {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let layout = layout.to_path_buf();
    let seen = requests.clone();
    let counter = Arc::new(AtomicUsize::new(0));
    let dropped: Arc<Mutex<HashMap<String, bool>>> = Arc::default();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (layout, faults, seen, counter, dropped) = (
                layout.clone(),
                faults.clone(),
                seen.clone(),
                counter.clone(),
                dropped.clone(),
            );
            std::thread::spawn(move || {
                let _ = serve_one(conn, &layout, &faults, &seen, &counter, &dropped, port);
            });
        }
    });
    FakeRegistry { port, requests }
}

fn serve_one(
    mut conn: TcpStream,
    layout: &Path,
    faults: &Faults,
    seen: &Mutex<Vec<String>>,
    counter: &AtomicUsize,
    dropped: &Mutex<HashMap<String, bool>>,
    port: u16,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let method = line.split_whitespace().next().unwrap_or("GET").to_string();
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    seen.lock().unwrap().push(format!(
        "{path} range={}",
        headers.get("range").cloned().unwrap_or_default()
    ));
    let respond = |conn: &mut TcpStream, status: &str, extra: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes())?;
        conn.write_all(body)
    };
    if counter.fetch_add(1, Ordering::SeqCst) < faults.too_many {
        return respond(
            &mut conn,
            "429 Too Many Requests",
            "Retry-After: 0\r\n",
            b"slow down",
        );
    }
    if let Some(refresh) = &faults.refresh_token {
        if path.starts_with("/token") {
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            std::io::Read::read_exact(&mut reader, &mut body)?;
            let body = String::from_utf8_lossy(&body).to_string();
            let good = method == "POST"
                && body.contains("grant_type=refresh_token")
                && body.contains(&format!("refresh_token={refresh}"))
                && body.contains("scope=repository%3Aauth%2Fapp%3Apull");
            if !good {
                return respond(
                    &mut conn,
                    "401 Unauthorized",
                    "",
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad refresh token"}]}"#,
                );
            }
            return respond(
                &mut conn,
                "200 OK",
                "",
                br#"{"access_token":"tok-1","expires_in":300}"#,
            );
        }
        if headers.get("authorization").map(String::as_str) != Some("Bearer tok-1") {
            let challenge = format!(
                "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\",scope=\"repository:auth/app:pull\"\r\n"
            );
            return respond(&mut conn, "401 Unauthorized", &challenge, b"");
        }
    }
    if let Some((user, pass)) = &faults.token_for {
        use base64::Engine as _;
        if path.starts_with("/token") {
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            );
            if headers.get("authorization") != Some(&want) {
                return respond(
                    &mut conn,
                    "401 Unauthorized",
                    "Content-Type: application/json\r\n",
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad user name or password"}]}"#,
                );
            }
            assert!(
                path.contains("scope=repository%3Aauth%2Fapp%3Apull"),
                "{path}"
            );
            return respond(
                &mut conn,
                "200 OK",
                "",
                br#"{"token":"tok-1","expires_in":300}"#,
            );
        }
        if headers.get("authorization").map(String::as_str) != Some("Bearer tok-1") {
            let challenge = format!(
                "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\",scope=\"repository:auth/app:pull\"\r\n"
            );
            return respond(&mut conn, "401 Unauthorized", &challenge, b"");
        }
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return respond(&mut conn, "404 Not Found", "", b"");
    };
    if rest.is_empty() {
        return respond(&mut conn, "200 OK", "", b"{}");
    }
    let (kind, reference) = if let Some(i) = rest.find("/manifests/") {
        ("manifests", &rest[i + 11..])
    } else if let Some(i) = rest.find("/blobs/") {
        ("blobs", &rest[i + 7..])
    } else {
        return respond(&mut conn, "404 Not Found", "", b"");
    };
    let digest = if reference.starts_with("sha256:") {
        reference.to_string()
    } else {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json"))?).unwrap();
        match index["manifests"].as_array().and_then(|ms| {
            ms.iter().find(|m| {
                m["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(reference)
            })
        }) {
            Some(m) => m["digest"].as_str().unwrap_or_default().to_string(),
            None => {
                return respond(
                    &mut conn,
                    "404 Not Found",
                    "",
                    br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
                );
            }
        }
    };
    let file = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let Ok(mut body) = std::fs::read(&file) else {
        return respond(
            &mut conn,
            "404 Not Found",
            "",
            br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#,
        );
    };
    if kind == "manifests" {
        let mt = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["mediaType"]
            .as_str()
            .unwrap_or("application/vnd.oci.image.manifest.v1+json")
            .to_string();
        return respond(
            &mut conn,
            "200 OK",
            &format!("Content-Type: {mt}\r\n"),
            &body,
        );
    }
    if let Some(w) = &faults.wrong_blob
        && body.starts_with(&[0x1f, 0x8b])
    {
        body = w.clone();
    }
    let start: usize = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse().ok())
        .unwrap_or(0);
    if start > 0 {
        let part = &body[start.min(body.len())..];
        let extra = format!(
            "Content-Range: bytes {start}-{}/{}\r\n",
            body.len().saturating_sub(1),
            body.len()
        );
        return respond(&mut conn, "206 Partial Content", &extra, part);
    }
    if let Some(n) = faults.drop_blob_after {
        let first = !dropped
            .lock()
            .unwrap()
            .insert(digest.clone(), true)
            .unwrap_or(false);
        if first && body.len() > n {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes())?;
            conn.write_all(&body[..n])?;
            conn.flush()?;
            // Gone mid-blob.
            return conn.shutdown(std::net::Shutdown::Both);
        }
    }
    respond(&mut conn, "200 OK", "", &body)
}

/// A layout whose layers are big enough to be cut in the middle.
fn big_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("big");
    let mut layers = sample_layers();
    let mut l = common::Layer::new();
    let noise: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    l.dir("data", 0o755).file("data/noise", &noise);
    layers.push(l.tar());
    let m = put_image(&layout, &layers, Comp::Gzip, "amd64");
    put_index(&layout, &[(Some("v1"), m)]);
    layout
}

#[test]
fn retries_429_and_resumes_a_dropped_blob() {
    if !require_root("retries_429_and_resumes_a_dropped_blob") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = big_layout(tmp.path());
    let reg = fake_registry(
        &layout,
        Faults {
            too_many: 2,
            drop_blob_after: Some(100_000),
            ..Faults::default()
        },
    );
    let store = Store::open(tmp.path().join("store")).unwrap();
    let name = format!("127.0.0.1:{}/big/app:v1", reg.port);
    let got = pull(&store, &name).unwrap();
    assert_eq!(got.fetched_layers, 3);
    let image = store.image(&name).unwrap();
    let top = store.snapshot_dir(&image.layers[2].chain_id);
    assert_eq!(
        std::fs::metadata(top.join("data/noise")).unwrap().len(),
        3_000_000
    );
    let reqs = reg.requests.lock().unwrap();
    assert!(
        reqs.iter()
            .any(|r| r.contains("/blobs/") && r.contains("range=bytes=100000-")),
        "no resumed request: {reqs:?}"
    );
}

#[test]
fn a_blob_that_does_not_match_its_digest_stores_nothing() {
    if !require_root("a_blob_that_does_not_match_its_digest_stores_nothing") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = big_layout(tmp.path());
    // A valid gzip tar, just not the one the manifest names.
    let mut other = common::Layer::new();
    other.file("evil", b"not what was announced");
    let reg = fake_registry(
        &layout,
        Faults {
            wrong_blob: Some(other.gzip()),
            ..Faults::default()
        },
    );
    let store = Store::open(tmp.path().join("store")).unwrap();
    let name = format!("127.0.0.1:{}/big/app:v1", reg.port);
    let err = pull(&store, &name).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. }
        ),
        "{msg}"
    );
    assert!(store.list().unwrap().is_empty());
    // Only the config, which was fetched first and matched, may stay (a
    // retry reuses it); nothing of the wrong content.
    let manifest: serde_json::Value = {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let d = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string();
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(d)).unwrap())
            .unwrap()
    };
    let config = manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    for e in std::fs::read_dir(store.root().join("blobs/sha256")).unwrap() {
        let name = e.unwrap().file_name();
        assert_eq!(
            name.to_str(),
            Some(config),
            "a blob other than the config was stored"
        );
    }
    let snaps = std::fs::read_dir(store.root().join(".store/snapshots"))
        .unwrap()
        .count();
    assert_eq!(snaps, 0, "a snapshot was made");
    assert_eq!(
        std::fs::read_dir(store.root().join(".store/tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn bearer_token_auth_and_a_wrong_password() {
    if !require_root("bearer_token_auth_and_a_wrong_password") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let m = put_image(&layout, &sample_layers(), Comp::Gzip, "amd64");
    put_index(&layout, &[(Some("a"), m)]);
    let reg = fake_registry(
        &layout,
        Faults {
            token_for: Some(("alice".into(), "s3cret".into())),
            ..Faults::default()
        },
    );
    let host = format!("127.0.0.1:{}", reg.port);
    let store = Store::open(tmp.path().join("store")).unwrap();
    let name = format!("{host}/auth/app:a");
    let err = store
        .pull(
            &client_with(&host, "alice", "wrong"),
            &name,
            &PullOptions::default(),
            &image_store::NoProgress,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("401") && err.contains("bad user name or password"),
        "{err}"
    );
    let anonymous = pull(&store, &name).unwrap_err().to_string();
    assert!(anonymous.contains("401"), "{anonymous}");
    let c = client_with(&host, "alice", "s3cret");
    store
        .pull(&c, &name, &PullOptions::default(), &image_store::NoProgress)
        .unwrap();
    // The token is reused: one token request for the whole pull.
    let reqs = reg.requests.lock().unwrap();
    let tokens = reqs.iter().filter(|r| r.starts_with("/token")).count();
    assert_eq!(tokens, 3, "wrong, anonymous-less and right: {reqs:?}");
}

/// A CA and a server certificate for 127.0.0.1 it signed, made by openssl;
/// returns (CA certificate, server certificate, server key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let ext = dir.join("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test CA",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
        ],
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &p("key.pem"),
            "-out",
            &p("req.csr"),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &p("req.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p("ext.cnf"),
            "-out",
            &p("cert.pem"),
        ],
    ] {
        let (ok, out) = run("openssl", &args);
        assert!(ok, "openssl {args:?}: {out}");
    }
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

#[test]
fn mirrors_are_tried_first_and_tls_needs_the_configured_ca() {
    if !require_root("mirrors_are_tried_first_and_tls_needs_the_configured_ca")
        || !require_tool(
            "openssl",
            "mirrors_are_tried_first_and_tls_needs_the_configured_ca",
        )
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(tmp.path());
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        cert.display(),
        key.display()
    );
    let Some(secure) = start_registry_with("", &tls) else {
        return;
    };
    let Some(empty_mirror) = start_registry() else {
        return;
    };
    let layout = tmp.path().join("layout");
    let m = put_image(&layout, &sample_layers(), Comp::Gzip, "amd64");
    put_index(&layout, &[(Some("t"), m)]);
    // skopeo takes the CA as a *.crt file in a cert dir.
    let certs = tmp.path().join("certs.d");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let (ok, out) = run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-cert-dir",
            certs.to_str().unwrap(),
            &format!("oci:{}:t", layout.display()),
            &format!("docker://127.0.0.1:{}/test/app:t", secure.port),
        ],
    );
    assert!(ok, "skopeo copy over TLS: {out}");
    let store = Store::open(tmp.path().join("store")).unwrap();
    let host = format!("127.0.0.1:{}", secure.port);

    // Without the CA: the TLS error is named (plain HTTP to a TLS port
    // fails too).
    let err = pull(&store, &format!("{host}/test/app:t"))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&host) && err.contains("https"), "{err}");
    assert!(
        err.to_lowercase().contains("certificate") || err.to_lowercase().contains("issuer"),
        "{err}"
    );

    // With it, as configured for the host.
    let config = format!("[registries.\"{host}\"]\nca = [\"{}\"]\n", ca.display());
    let c = Client::new(RegistryConfig::parse(&config, Path::new("t.toml")).unwrap());
    store
        .pull(
            &c,
            &format!("{host}/test/app:t"),
            &PullOptions::default(),
            &image_store::NoProgress,
        )
        .unwrap();

    // A name on a registry that does not exist, served by its mirrors: the
    // first has nothing, the second (the TLS registry, with its CA) has it.
    let config = format!(
        "[registries.\"registry.invalid\"]\nmirrors = [\"http://127.0.0.1:{}\", \"https://{host}\"]\n\
         [registries.\"{host}\"]\nca = [\"{}\"]\n",
        empty_mirror.port,
        ca.display()
    );
    let c = Client::new(RegistryConfig::parse(&config, Path::new("t.toml")).unwrap())
        .with_backoff(Duration::from_millis(10));
    let store2 = Store::open(tmp.path().join("store2")).unwrap();
    let got = store2
        .pull(
            &c,
            "registry.invalid/test/app:t",
            &PullOptions::default(),
            &image_store::NoProgress,
        )
        .unwrap();
    assert_eq!(got.name, "registry.invalid/test/app:t");
    assert!(store2.image("registry.invalid/test/app:t").is_ok());
}

/// A token server for docker-registry's `auth.token`: JWTs signed (RS256,
/// by openssl) with the key whose certificate the registry trusts, for
/// one user and password.
fn token_server(dir: &Path, key: PathBuf, cert: &Path) -> u16 {
    use base64::Engine as _;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let pem = std::fs::read_to_string(cert).unwrap();
    let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut auth = String::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h
                    .strip_prefix("Authorization:")
                    .or_else(|| h.strip_prefix("authorization:"))
                {
                    auth = v.trim().to_string();
                }
            }
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
            );
            let reply = |conn: &mut TcpStream, status: &str, body: &str| {
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            };
            if auth != want {
                reply(
                    &mut conn,
                    "401 Unauthorized",
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"wrong user name or password"}]}"#,
                );
                continue;
            }
            let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
            let decode = |s: &str| {
                s.replace("%3A", ":")
                    .replace("%2F", "/")
                    .replace("%2C", ",")
                    .replace('+', " ")
            };
            let mut access = Vec::new();
            for pair in query.split('&') {
                if let Some(v) = pair.strip_prefix("scope=") {
                    let v = decode(v);
                    let parts: Vec<&str> = v.splitn(3, ':').collect();
                    if parts.len() == 3 {
                        access.push(serde_json::json!({"type": parts[0], "name": parts[1],
                            "actions": parts[2].split(',').collect::<Vec<_>>()}));
                    }
                }
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
            let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [der_b64]});
            let claims = serde_json::json!({"iss": "test-issuer", "sub": "alice", "aud": "test-registry",
                "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("t{n}"), "access": access});
            let signing_input = format!(
                "{}.{}",
                b64(&serde_json::to_vec(&header).unwrap()),
                b64(&serde_json::to_vec(&claims).unwrap())
            );
            let input = dir.join(format!("jwt-{n}"));
            std::fs::write(&input, &signing_input).unwrap();
            let sig = Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(&key)
                .arg(&input)
                .output()
                .unwrap();
            let token = format!("{signing_input}.{}", b64(&sig.stdout));
            reply(
                &mut conn,
                "200 OK",
                &format!(r#"{{"token":"{token}","expires_in":300}}"#),
            );
        }
    });
    port
}

#[test]
fn docker_registry_token_auth() {
    if !require_root("docker_registry_token_auth")
        || !require_tool("openssl", "docker_registry_token_auth")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (ca, _, _) = certificates(tmp.path());
    let token_port = token_server(tmp.path(), tmp.path().join("ca.key"), &ca);
    let auth = format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{token_port}/token\n    service: test-registry\n    \
         issuer: test-issuer\n    rootcertbundle: {}\n",
        ca.display()
    );
    let Some(reg) = start_registry_with(&auth, "http") else {
        return;
    };
    let layout = tmp.path().join("layout");
    let m = put_image(&layout, &sample_layers(), Comp::Gzip, "amd64");
    put_index(&layout, &[(Some("a"), m)]);
    push_with(
        &layout,
        "a",
        reg.port,
        "auth/app",
        &["--dest-creds", "alice:s3cret"],
    );
    let host = format!("127.0.0.1:{}", reg.port);
    let name = format!("{host}/auth/app:a");
    let store = Store::open(tmp.path().join("store")).unwrap();
    let with = |password: &str| client_with(&host, "alice", password);
    let err = store
        .pull(
            &with("nope"),
            &name,
            &PullOptions::default(),
            &image_store::NoProgress,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("401") && err.contains("wrong user name or password"),
        "{err}"
    );
    // Credentials from a docker config.json.
    use base64::Engine as _;
    let docker = tmp.path().join("docker.json");
    std::fs::write(
        &docker,
        format!(
            r#"{{"auths": {{"{host}": {{"auth": "{}"}}}}}}"#,
            base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
        ),
    )
    .unwrap();
    let c = Client::new(
        RegistryConfig::parse(
            &format!("auth_file = \"{}\"\n", docker.display()),
            Path::new("t.toml"),
        )
        .unwrap(),
    );
    let got = store
        .pull(&c, &name, &PullOptions::default(), &image_store::NoProgress)
        .unwrap();
    assert_eq!(got.fetched_layers, 2);
}

/// Cancels the pull on the first bytes of a layer.
struct CancelOnBytes(Arc<std::sync::atomic::AtomicBool>);

impl Progress for CancelOnBytes {
    fn layer(&self, e: &LayerEvent<'_>) {
        if matches!(e, LayerEvent::Bytes { .. }) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn a_cancelled_pull_leaves_nothing_half_made() {
    if !require_root("a_cancelled_pull_leaves_nothing_half_made") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = big_layout(tmp.path());
    let reg = fake_registry(&layout, Faults::default());
    let store = Store::open(tmp.path().join("store")).unwrap();
    let name = format!("127.0.0.1:{}/big/app:v1", reg.port);
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let opts = PullOptions {
        cancel: Some(flag.clone()),
        ..PullOptions::default()
    };
    let err = store
        .pull(&client(), &name, &opts, &CancelOnBytes(flag))
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    assert!(err.to_string().contains("cancelled"), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(store.root().join(".store/snapshots"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(store.root().join(".store/tmp"))
            .unwrap()
            .count(),
        0
    );
    // A retry completes, reusing what was verified.
    pull(&store, &name).unwrap();
}

#[test]
fn docker_registry_basic_auth() {
    if !require_root("docker_registry_basic_auth")
        || !require_tool("htpasswd", "docker_registry_basic_auth")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let htpasswd = tmp.path().join("htpasswd");
    let (ok, out) = run(
        "htpasswd",
        &["-Bbc", htpasswd.to_str().unwrap(), "bob", "pa55"],
    );
    assert!(ok, "htpasswd: {out}");
    let auth = format!(
        "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
        htpasswd.display()
    );
    let Some(reg) = start_registry_with(&auth, "http") else {
        return;
    };
    let layout = tmp.path().join("layout");
    let m = put_image(&layout, &sample_layers(), Comp::Gzip, "amd64");
    put_index(&layout, &[(Some("b"), m)]);
    push_with(
        &layout,
        "b",
        reg.port,
        "basic/app",
        &["--dest-creds", "bob:pa55"],
    );
    let host = format!("127.0.0.1:{}", reg.port);
    let name = format!("{host}/basic/app:b");
    let store = Store::open(tmp.path().join("store")).unwrap();
    let err = pull(&store, &name).unwrap_err().to_string();
    assert!(
        err.contains("401") && err.contains("basic auth") && err.contains("no credentials"),
        "{err}"
    );
    let with = |password: &str| client_with(&host, "bob", password);
    let err = store
        .pull(
            &with("wrong"),
            &name,
            &PullOptions::default(),
            &image_store::NoProgress,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("401") && err.contains("UNAUTHORIZED"), "{err}");
    let got = store
        .pull(
            &with("pa55"),
            &name,
            &PullOptions::default(),
            &image_store::NoProgress,
        )
        .unwrap();
    assert_eq!(got.fetched_layers, 2);
}

#[test]
fn identity_tokens_are_exchanged_for_access_tokens() {
    if !require_root("identity_tokens_are_exchanged_for_access_tokens") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let m = put_image(&layout, &sample_layers(), Comp::Gzip, "amd64");
    put_index(&layout, &[(Some("i"), m)]);
    let reg = fake_registry(
        &layout,
        Faults {
            refresh_token: Some("refresh-abc".into()),
            ..Faults::default()
        },
    );
    let host = format!("127.0.0.1:{}", reg.port);
    // As `docker login` stores it for registries with OAuth2.
    let docker = tmp.path().join("config.json");
    std::fs::write(
        &docker,
        format!(r#"{{"auths": {{"{host}": {{"auth": "", "identitytoken": "refresh-abc"}}}}}}"#),
    )
    .unwrap();
    let c = Client::new(
        RegistryConfig::parse(
            &format!("auth_file = \"{}\"\n", docker.display()),
            Path::new("t.toml"),
        )
        .unwrap(),
    );
    let store = Store::open(tmp.path().join("store")).unwrap();
    store
        .pull(
            &c,
            &format!("{host}/auth/app:i"),
            &PullOptions::default(),
            &image_store::NoProgress,
        )
        .unwrap();
    let reqs = reg.requests.lock().unwrap();
    assert_eq!(
        reqs.iter().filter(|r| r.starts_with("/token")).count(),
        1,
        "{reqs:?}"
    );
}

/// A proxy in front of a registry that cuts the first response for each blob
/// after `cut` bytes. Each request goes upstream with `Connection: close`,
/// so a connection carries one response.
fn cutting_proxy(upstream: u16, cut: usize) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cuts = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    let counter = cuts.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { continue };
            let (seen, counter) = (seen.clone(), counter.clone());
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut reader = BufReader::new(client.try_clone()?);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if !line.to_ascii_lowercase().starts_with("connection:") {
                        head.push_str(&line);
                    }
                }
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let first_blob = path.contains("/blobs/")
                    && !head.to_ascii_lowercase().contains("\r\nrange:")
                    && seen.lock().unwrap().insert(path);
                let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
                up.write_all(head.as_bytes())?;
                up.write_all(b"Connection: close\r\n\r\n")?;
                let mut buf = vec![0u8; 16 << 10];
                let mut sent = 0usize;
                loop {
                    let n = std::io::Read::read(&mut up, &mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    if first_blob && sent + n > cut {
                        client.write_all(&buf[..cut - sent])?;
                        counter.fetch_add(1, Ordering::SeqCst);
                        return client.shutdown(std::net::Shutdown::Both);
                    }
                    client.write_all(&buf[..n])?;
                    sent += n;
                }
            });
        }
    });
    (port, cuts)
}

#[test]
fn resumes_blobs_cut_by_a_proxy_in_front_of_docker_registry() {
    if !require_root("resumes_blobs_cut_by_a_proxy_in_front_of_docker_registry") {
        return;
    }
    let Some(reg) = start_registry() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let layout = big_layout(tmp.path());
    push(&layout, "v1", reg.port, "big/app", false);
    let (proxy, cuts) = cutting_proxy(reg.port, 200_000);
    let store = Store::open(tmp.path().join("store")).unwrap();
    let name = format!("127.0.0.1:{proxy}/big/app:v1");
    let got = pull(&store, &name).unwrap();
    assert_eq!(got.fetched_layers, 3);
    assert!(cuts.load(Ordering::SeqCst) >= 1, "the proxy cut nothing");
    let image = store.image(&name).unwrap();
    let top = store.snapshot_dir(&image.layers[2].chain_id);
    assert_eq!(
        std::fs::metadata(top.join("data/noise")).unwrap().len(),
        3_000_000
    );
}
