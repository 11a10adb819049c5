//! `mini-runtime serve`: the CRI server, composed from cri-api (the gRPC
//! service on a unix socket), image-store (ImageService) and, as pods and
//! containers land, oci-runtime.
//!
//! The config file (TOML, `--config`, default `/etc/mini-runtime/serve.toml`,
//! optional); every key may be left out, and a flag given on the command
//! line wins over it:
//!
//! ```toml
//! # Where the kubelet connects: a unix socket (0660, root only). No TCP.
//! listen = "unix:///run/mini-runtime/cri.sock"
//! # The image store (an OCI layout).
//! store = "/var/lib/mini-runtime/images"
//! # Runtime state of containers (tmpfs; gone after a reboot).
//! root = "/run/mini-runtime"
//! # What the kubelet told about pods and containers (survives reboots).
//! state_dir = "/var/lib/mini-runtime/cri"
//! # Registry mirrors, insecure hosts, CAs and credentials (see image-store).
//! registry_config = "/etc/mini-runtime/registries.toml"
//! # Pod networks: CNI config lists (the first in lexical order is used)
//! # and the dirs the plugins are looked up in, in order.
//! cni_conf_dir = "/etc/cni/net.d"
//! cni_bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]
//! # CDI device specs (JSON or YAML) for CDIDevices; a later dir wins.
//! cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"]
//! # Where Exec and Attach URLs lead (HTTP; loopback unless told).
//! stream_address = "127.0.0.1:0"
//! # error, warn, info or debug; text or json, on stderr.
//! log_level = "info"
//! log_format = "text"
//! ```

mod containers;
mod events;
mod images;
mod pods;
mod records;
mod runtime;
mod spec;
mod stats;
mod streaming;

pub(crate) use pods::pause;
mod status;

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

/// `serve` flags; each overrides the config file's key of the same name.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Config file (TOML).
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Socket to serve on, as unix:///path (or a bare path).
    #[arg(long)]
    listen: Option<String>,
    /// Registry config for PullImage.
    #[arg(long)]
    registry_config: Option<PathBuf>,
    /// Persistent dir for pod and container metadata.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Dir of CNI network configs.
    #[arg(long)]
    cni_conf_dir: Option<PathBuf>,
    /// Dir of CNI plugins (repeat for several, searched in order).
    #[arg(long = "cni-bin-dir")]
    cni_bin_dirs: Vec<PathBuf>,
    /// Dir of CDI device specs (repeat for several; a later one wins).
    #[arg(long = "cdi-spec-dir")]
    cdi_spec_dirs: Vec<PathBuf>,
    /// Address of the streaming server (Exec and Attach URLs), host:port.
    #[arg(long)]
    stream_address: Option<String>,
    /// Log level: error, warn, info or debug.
    #[arg(long, value_parser = ["error", "warn", "info", "debug"])]
    log_level: Option<String>,
    /// Log format: text or json.
    #[arg(long, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

const DEFAULT_CONFIG: &str = "/etc/mini-runtime/serve.toml";

/// How long RPCs in flight may take after SIGTERM.
const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The config file's keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    store: Option<PathBuf>,
    root: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    registry_config: Option<PathBuf>,
    cni_conf_dir: Option<PathBuf>,
    cni_bin_dirs: Option<Vec<PathBuf>>,
    cdi_spec_dirs: Option<Vec<PathBuf>>,
    stream_address: Option<String>,
    log_level: Option<String>,
    log_format: Option<String>,
}

/// What `serve` runs with, once flags, file and defaults are merged.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub listen: PathBuf,
    pub store: PathBuf,
    pub root: PathBuf,
    pub state_dir: PathBuf,
    pub registry_config: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
    pub cdi_spec_dirs: Vec<PathBuf>,
    pub stream_address: std::net::SocketAddr,
    pub log: Logger,
}

/// Log lines on stderr, as text or JSON, at or above a level.
#[derive(Debug, Clone)]
pub(crate) struct Logger {
    level: u8,
    json: bool,
}

impl Logger {
    fn rank(level: &str) -> u8 {
        match level {
            "error" => 0,
            "warn" => 1,
            "info" => 2,
            _ => 3,
        }
    }

    pub(crate) fn log(&self, level: &str, msg: &str) {
        if Self::rank(level) > self.level {
            return;
        }
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        if self.json {
            eprintln!(
                "{}",
                serde_json::json!({"time": time, "level": level, "msg": msg})
            );
        } else {
            eprintln!("{time:.3} {level} {msg}");
        }
    }
}

/// Values the global `--store` and `--root` flags had, and whether they were
/// given on the command line (else the config file's win).
#[derive(Debug)]
pub(crate) struct Globals {
    pub store: (PathBuf, bool),
    pub root: (PathBuf, bool),
}

fn settings(args: &ServeArgs, globals: &Globals) -> Result<Settings, String> {
    let file = match std::fs::read_to_string(&args.config) {
        Ok(text) => toml::from_str::<FileConfig>(&text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    format!(
                        " line {} column {}",
                        before.matches('\n').count() + 1,
                        before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1
                    )
                })
                .unwrap_or_default();
            format!("{}{at}: {}", args.config.display(), e.message())
        })?,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && args.config == Path::new(DEFAULT_CONFIG) =>
        {
            FileConfig::default()
        }
        Err(e) => return Err(format!("reading {}: {e}", args.config.display())),
    };
    let listen = args
        .listen
        .clone()
        .or(file.listen)
        .unwrap_or_else(|| "unix:///run/mini-runtime/cri.sock".into());
    let listen = match listen.strip_prefix("unix://") {
        Some(p) => PathBuf::from(p),
        None if listen.starts_with('/') => PathBuf::from(&listen),
        None => {
            return Err(format!(
                "listen {listen:?}: only unix:///path sockets are served (no TCP)"
            ));
        }
    };
    let pick = |flag: &(PathBuf, bool), file: Option<PathBuf>| -> PathBuf {
        if flag.1 {
            flag.0.clone()
        } else {
            file.unwrap_or_else(|| flag.0.clone())
        }
    };
    let level = args
        .log_level
        .clone()
        .or(file.log_level)
        .unwrap_or_else(|| "info".into());
    if !["error", "warn", "info", "debug"].contains(&level.as_str()) {
        return Err(format!("log_level {level:?}: error, warn, info or debug"));
    }
    let format = args
        .log_format
        .clone()
        .or(file.log_format)
        .unwrap_or_else(|| "text".into());
    if !["text", "json"].contains(&format.as_str()) {
        return Err(format!("log_format {format:?}: text or json"));
    }
    Ok(Settings {
        listen,
        store: pick(&globals.store, file.store),
        root: pick(&globals.root, file.root),
        state_dir: args
            .state_dir
            .clone()
            .or(file.state_dir)
            .unwrap_or_else(|| "/var/lib/mini-runtime/cri".into()),
        registry_config: args
            .registry_config
            .clone()
            .or(file.registry_config)
            .unwrap_or_else(|| crate::image_cmd::DEFAULT_REGISTRY_CONFIG.into()),
        cni_conf_dir: args
            .cni_conf_dir
            .clone()
            .or(file.cni_conf_dir)
            .unwrap_or_else(|| "/etc/cni/net.d".into()),
        cni_bin_dirs: if !args.cni_bin_dirs.is_empty() {
            args.cni_bin_dirs.clone()
        } else {
            file.cni_bin_dirs
                .unwrap_or_else(|| vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()])
        },
        stream_address: {
            let a = args
                .stream_address
                .clone()
                .or(file.stream_address)
                .unwrap_or_else(|| "127.0.0.1:0".into());
            a.parse()
                .map_err(|_| format!("stream_address {a:?}: not an IP:port"))?
        },
        cdi_spec_dirs: if !args.cdi_spec_dirs.is_empty() {
            args.cdi_spec_dirs.clone()
        } else {
            file.cdi_spec_dirs.unwrap_or_else(|| {
                oci_runtime::cdi::DEFAULT_DIRS
                    .iter()
                    .map(PathBuf::from)
                    .collect()
            })
        },
        log: Logger {
            level: Logger::rank(&level),
            json: format == "json",
        },
    })
}

/// Where this binary's path on disk is kept across the re-exec of
/// [`oci_runtime::protect_exe`] (which runs it from a detached mount).
const EXE_ENV: &str = "MINI_RUNTIME_SERVE_EXE";

/// This binary on disk (pods bind it read-only as their pause process).
pub(crate) fn exe_path() -> Result<PathBuf, String> {
    match std::env::var_os(EXE_ENV) {
        Some(p) => Ok(PathBuf::from(p)),
        None => std::env::current_exe().map_err(|e| format!("finding this binary: {e}")),
    }
}

/// Runs the server until SIGTERM or SIGINT; returns the exit code.
pub(crate) fn run(args: ServeArgs, globals: Globals) -> i32 {
    let s = match settings(&args, &globals) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mini-runtime: serve: {e}");
            return 1;
        }
    };
    // Containers join pods' pid namespaces and ExecSync joins containers':
    // the binary they start as must not be writable (CVE-2019-5736). Done
    // once, before any thread starts; the re-exec comes back here.
    if std::env::var_os(EXE_ENV).is_none()
        && let Ok(p) = std::env::current_exe()
    {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var(EXE_ENV, p) };
    }
    if let Err(e) = oci_runtime::protect_exe(&s.root.join(".exe-lower")) {
        eprintln!("mini-runtime: serve: {e}");
        return 1;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mini-runtime: serve: starting the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(serve(s)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mini-runtime: serve: {e}");
            1
        }
    }
}

async fn serve(s: Settings) -> Result<(), String> {
    let store =
        image_store::Store::open(&s.store).map_err(|e| format!("opening the image store: {e}"))?;
    let registry =
        crate::image_cmd::registry_config_at(&s.registry_config).map_err(|e| e.to_string())?;
    let log = s.log.clone();
    let images = images::Images::new(store.clone(), registry, log.clone());
    let network = pods::Network {
        conf_dir: s.cni_conf_dir.clone(),
        cni: cni::Cni::new(s.cni_bin_dirs.clone(), s.state_dir.join("cni")),
    };
    let pods = pods::Pods::open(&s.state_dir, &s.root, network, log.clone())?;
    let ctrs =
        containers::Containers::open(&s.state_dir, &s.root, store, pods.clone(), log.clone())?
            .with_cdi_dirs(s.cdi_spec_dirs.clone());
    let streams = cri_streaming::Server::start(
        s.stream_address,
        std::time::Duration::from_secs(60),
        std::sync::Arc::new(streaming::StreamBackend {
            ctrs: ctrs.clone(),
            pods: pods.clone(),
        }),
    )
    .await
    .map_err(|e| e.to_string())?;
    log.log(
        "info",
        &format!("streaming server on http://{}", streams.local_addr()),
    );
    let runtime = runtime::Runtime::new(s.root.clone(), log.clone(), pods, ctrs, streams);
    let bound = cri_api::transport::bind(&s.listen).map_err(|e| e.to_string())?;
    log.log(
        "info",
        &format!("serving CRI on unix://{}", s.listen.display()),
    );
    // SIGTERM or SIGINT stops accepting; RPCs in flight get a grace period,
    // then open connections (the kubelet keeps one) are closed.
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = tx.send(true);
    });
    let mut stopping = rx.clone();
    let shutdown = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    // Every request passes the CRI's rules before the services see it.
    let server = bound.serve(
        cri_api::validate::Validated(runtime),
        cri_api::validate::Validated(images),
        shutdown,
    );
    tokio::pin!(server);
    let mut stopping = rx;
    let res = tokio::select! {
        res = &mut server => res.map_err(|e| e.to_string()),
        _ = async {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(GRACE).await;
        } => {
            log.log("info", "grace period over: closing open connections");
            Ok(())
        }
    };
    log.log("info", "stopped");
    res
}
