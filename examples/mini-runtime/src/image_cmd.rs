//! `mini-runtime image ...`: the image store on the command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use image_store::{ImportOptions, NoProgress, Platform, Progress, Store};

/// Where the image store lives.
#[derive(Debug, Args)]
pub(crate) struct StoreOpts {
    /// Image store directory (an OCI image layout).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "MINI_RUNTIME_STORE",
        default_value = "/var/lib/mini-runtime/images"
    )]
    store: PathBuf,
}

impl StoreOpts {
    /// The store directory.
    pub(crate) fn path(&self) -> &Path {
        &self.store
    }
}

/// Where the registry config is read from unless another file is named.
pub(crate) const DEFAULT_REGISTRY_CONFIG: &str = "/etc/mini-runtime/registries.toml";

/// The registry config at `path`. The default file is optional; any other
/// is read, and its absence reported.
pub(crate) fn registry_config_at(
    path: &Path,
) -> Result<image_store::registry::RegistryConfig, image_store::Error> {
    if path == Path::new(DEFAULT_REGISTRY_CONFIG) && !path.exists() {
        return Ok(image_store::registry::RegistryConfig::default());
    }
    image_store::registry::RegistryConfig::load(path)
}

/// Image commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Import an OCI layout dir, an oci-archive or a docker-save tarball.
    Import {
        /// The layout directory or tarball.
        path: PathBuf,
        /// Name the image (only for a source holding one image).
        #[arg(long)]
        name: Option<String>,
        /// Platform to take from an image index, as os/arch[/variant].
        #[arg(long)]
        platform: Option<String>,
        /// Also unpack every layer into its snapshot, in the same pass that
        /// copies and verifies it (a later mount or bundle reads no blob).
        #[arg(long)]
        snapshots: bool,
    },
    /// Pull an image from a registry, with snapshots of its layers.
    Pull {
        /// Image reference (`busybox`, `localhost:5000/app:1`, `name@sha256:...`).
        name: String,
        /// Platform to take from an image index, as os/arch[/variant].
        #[arg(long)]
        platform: Option<String>,
        /// Registry config (mirrors, insecure hosts, CAs, credentials; TOML).
        #[arg(
            long,
            env = "MINI_RUNTIME_REGISTRY_CONFIG",
            default_value = DEFAULT_REGISTRY_CONFIG
        )]
        registry_config: PathBuf,
        /// Layers fetched at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
    },
    /// List images.
    Ls,
    /// Show an image's manifest, config and layers as JSON.
    Inspect {
        /// Image name.
        name: String,
    },
    /// Remove an image name (content goes with the next gc).
    Rm {
        /// Image name.
        name: String,
    },
    /// Remove blobs and snapshots no image or mounted rootfs uses.
    Gc,
    /// Unpack an image into a flattened directory.
    Unpack {
        /// Image name.
        name: String,
        /// Target directory (absent or empty).
        dir: PathBuf,
    },
    /// Mount an image as an overlayfs rootfs.
    Mount {
        /// Image name.
        name: String,
        /// Mount point.
        dir: PathBuf,
    },
    /// Unmount a rootfs mounted with `image mount`.
    Umount {
        /// Mount point.
        dir: PathBuf,
    },
    /// Write an OCI bundle (rootfs + config.json from the image config)
    /// that `mini-runtime run` and runc run.
    Bundle {
        /// Image name.
        name: String,
        /// Bundle directory (absent or empty).
        dir: PathBuf,
    },
}

/// What an image command can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CmdError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] image_store::Error),
    /// The container runtime failed.
    #[error(transparent)]
    Runtime(#[from] oci_runtime::Error),
    /// Building the runtime spec failed.
    #[error("building config.json: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    /// A file operation of the command failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// To which path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Runs an image command; returns the process exit code.
pub(crate) fn run(opts: &StoreOpts, cmd: ImageCommand) -> i32 {
    match dispatch(opts, cmd) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mini-runtime: {e}");
            1
        }
    }
}

fn dispatch(opts: &StoreOpts, cmd: ImageCommand) -> Result<(), CmdError> {
    let store = Store::open(&opts.store)?;
    match cmd {
        ImageCommand::Import {
            path,
            name,
            platform,
            snapshots,
        } => {
            let mut io = ImportOptions {
                name,
                snapshots,
                ..ImportOptions::default()
            };
            if let Some(p) = platform {
                io.platform = parse_platform(&p)?;
            }
            let bar = Bar::new("importing");
            let done = store.import(&path, &io, bar.progress())?;
            bar.finish();
            for imp in done {
                println!("{} {}", imp.name, imp.manifest.digest_str);
            }
        }
        ImageCommand::Pull {
            name,
            platform,
            registry_config,
            jobs,
        } => {
            let config = registry_config_at(&registry_config)?;
            let client = image_store::registry::Client::new(config);
            let mut po = image_store::PullOptions {
                jobs: jobs.max(1),
                ..image_store::PullOptions::default()
            };
            if let Some(p) = platform {
                po.platform = parse_platform(&p)?;
            }
            let progress = PullProgress::new();
            let pulled = store.pull(&client, &name, &po, &progress);
            progress.finish();
            let pulled = pulled?;
            println!("{} {}", pulled.name, pulled.manifest.digest_str);
        }
        ImageCommand::Ls => {
            let list = store.list()?;
            println!("{:<50} {:<20} {:>10}", "NAME", "DIGEST", "SIZE");
            for (name, desc) in list {
                let size = store
                    .image(&name)
                    .map(|img| {
                        img.layers.iter().map(|l| l.blob.size).sum::<u64>()
                            + img.config.size
                            + desc.size
                    })
                    .unwrap_or(desc.size);
                let short = desc.digest_str.get(7..19).unwrap_or(&desc.digest_str);
                println!("{name:<50} {short:<20} {:>10}", human(size));
            }
        }
        ImageCommand::Inspect { name } => {
            let img = store.image(&name)?;
            let config = store.read_blob(&img.config.digest()?)?;
            let config: serde_json::Value =
                serde_json::from_slice(&config).unwrap_or(serde_json::Value::Null);
            let layers: Vec<_> = img
                .layers
                .iter()
                .map(|l| {
                    serde_json::json!({
                        "digest": l.blob.digest_str, "size": l.blob.size, "mediaType": l.blob.media_type,
                        "diffId": l.diff_id.to_string(), "chainId": l.chain_id.to_string(),
                    })
                })
                .collect();
            let out = serde_json::json!({
                "name": img.name, "manifest": img.manifest.digest_str, "config": config, "layers": layers,
            });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        }
        ImageCommand::Rm { name } => store.remove(&name)?,
        ImageCommand::Gc => {
            let s = store.gc()?;
            println!(
                "removed {} blobs ({}), {} snapshots",
                s.blobs_removed,
                human(s.bytes_freed),
                s.snapshots_removed
            );
        }
        ImageCommand::Unpack { name, dir } => {
            let bar = Bar::new("unpacking");
            store.unpack(&name, &dir, bar.progress())?;
            bar.finish();
        }
        ImageCommand::Mount { name, dir } => {
            let bar = Bar::new("unpacking layers");
            let target = store.mount(&name, &dir, bar.progress())?;
            bar.finish();
            println!("{}", target.display());
        }
        ImageCommand::Umount { dir } => store.umount(Path::new(&dir))?,
        ImageCommand::Bundle { name, dir } => {
            let bar = Bar::new("unpacking");
            let res = bundle(&store, &name, &dir, bar.progress());
            bar.finish();
            res?;
            println!("{}", dir.display());
        }
    }
    Ok(())
}

/// Writes an OCI bundle for image `name` into `dir`: a flattened rootfs
/// and a `config.json` whose process comes from the image config.
pub(crate) fn bundle(
    store: &Store,
    name: &str,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<(), CmdError> {
    let rootfs = dir.join("rootfs");
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|source| CmdError::Io {
                op: "read dir",
                path: dir.to_path_buf(),
                source,
            })?
            .next()
            .is_some()
    {
        return Err(image_store::Error::TargetNotEmpty {
            path: dir.to_path_buf(),
        }
        .into());
    }
    let image = store.unpack(name, &rootfs, progress)?;
    let res = write_config(store, &image, dir, &rootfs);
    if res.is_err() {
        let _ = std::fs::remove_dir_all(dir);
    }
    res
}

fn write_config(
    store: &Store,
    image: &image_store::Image,
    dir: &Path,
    rootfs: &Path,
) -> Result<(), CmdError> {
    let config = store.config(image)?;
    let process = oci_runtime::ImageProcess::resolve(
        &config,
        rootfs,
        &oci_runtime::ImageOverrides::default(),
    )
    .map_err(|e| match e {
        oci_runtime::Error::ImageConfig { what, reason } => oci_runtime::Error::ImageConfig {
            what: format!("{}: {what}", image.name),
            reason,
        },
        other => other,
    })?;
    let mut spec = oci_spec::runtime::Spec::default();
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(false));
    }
    process.apply_to_spec(&mut spec);
    if let Some(root) = spec.root_mut() {
        root.set_path(PathBuf::from("rootfs"));
        // The rootfs is this bundle's own copy.
        root.set_readonly(Some(false));
    }
    spec.set_hostname(Some(hostname_for(&image.name)));
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.insert(
        "org.opencontainers.image.ref.name".to_string(),
        image.name.clone(),
    );
    spec.set_annotations(Some(annotations));
    spec.save(dir.join("config.json"))?;
    Ok(())
}

/// A hostname from the image's repository: `docker.io/library/nginx:1`
/// gives `nginx`.
fn hostname_for(name: &str) -> String {
    let repo = name.split(['@']).next().unwrap_or(name);
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let last = last.split(':').next().unwrap_or(last);
    let h: String = last
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    let h = h.trim_matches('-').to_string();
    if h.is_empty() { "container".into() } else { h }
}

fn parse_platform(s: &str) -> Result<Platform, image_store::Error> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts[..] {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: parts.get(2).map(|v| v.to_string()),
        }),
        _ => Err(image_store::Error::InvalidImage {
            what: format!("platform {s:?}"),
            reason: "expected os/arch[/variant]".into(),
        }),
    }
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A progress bar on stderr when it is a terminal; nothing otherwise.
struct Bar {
    bar: Option<BarProgress>,
}

struct BarProgress(indicatif::ProgressBar);

impl Progress for BarProgress {
    fn total(&self, bytes: u64) {
        self.0.inc_length(bytes);
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

impl Bar {
    fn new(what: &'static str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { bar: None };
        }
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what);
        Self {
            bar: Some(BarProgress(bar)),
        }
    }

    fn progress(&self) -> &dyn Progress {
        match &self.bar {
            Some(b) => b,
            None => &NoProgress,
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.0.finish_and_clear();
        }
    }
}

/// A pull's progress: a bar per layer when stderr is a terminal, a line per
/// layer event otherwise.
struct PullProgress {
    bars: Option<(
        indicatif::MultiProgress,
        std::sync::Mutex<std::collections::HashMap<String, indicatif::ProgressBar>>,
    )>,
}

impl PullProgress {
    fn new() -> Self {
        let bars = std::io::stderr().is_terminal().then(|| {
            (
                indicatif::MultiProgress::new(),
                std::sync::Mutex::new(std::collections::HashMap::new()),
            )
        });
        Self { bars }
    }

    fn finish(&self) {
        if let Some((multi, _)) = &self.bars {
            let _ = multi.clear();
        }
    }
}

impl Progress for PullProgress {
    fn layer(&self, event: &image_store::LayerEvent<'_>) {
        use image_store::LayerEvent;
        let short = |d: &image_store::Digest| d.hex().get(..12).unwrap_or(d.hex()).to_string();
        let Some((multi, bars)) = &self.bars else {
            match event {
                LayerEvent::Present { digest } => {
                    eprintln!("layer {} already present", short(digest))
                }
                LayerEvent::Started { digest, size } => {
                    eprintln!("layer {} fetching {}", short(digest), human(*size))
                }
                LayerEvent::Verified { digest } => eprintln!("layer {} verified", short(digest)),
                LayerEvent::Done { digest } => eprintln!("layer {} done", short(digest)),
                _ => {}
            }
            return;
        };
        let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            LayerEvent::Started { digest, size } => {
                let bar = multi.add(indicatif::ProgressBar::new(*size));
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_message(short(digest));
                bars.insert(digest.to_string(), bar);
            }
            LayerEvent::Bytes { digest, bytes } => {
                if let Some(b) = bars.get(&digest.to_string()) {
                    b.inc(*bytes);
                }
            }
            LayerEvent::Verified { digest } => {
                if let Some(b) = bars.get(&digest.to_string()) {
                    b.set_message(format!("{} verified", short(digest)));
                }
            }
            LayerEvent::Done { digest } => {
                if let Some(b) = bars.remove(&digest.to_string()) {
                    b.finish_and_clear();
                }
                let _ = multi.println(format!("layer {} done", short(digest)));
            }
            LayerEvent::Present { digest } => {
                let _ = multi.println(format!("layer {} already present", short(digest)));
            }
            _ => {}
        }
    }
}

/// `mini-runtime demo`: builds a small image offline from the host's
/// static busybox, imports it, bundles it, runs a container from it and
/// cleans up, saying what happens at each step.
pub(crate) fn demo() -> i32 {
    let work = std::env::temp_dir().join(format!("mini-runtime-demo-{}", std::process::id()));
    // The demo runs a container: first re-execute from a protected binary (the
    // pid, and so `work`, stay the same).
    let res = oci_runtime::protect_exe(&work.join("exe-lower"))
        .map_err(CmdError::from)
        .and_then(|_| demo_in(&work));
    let _ = std::fs::remove_dir_all(&work);
    match res {
        Ok(code) => {
            println!("==> cleaned up {}", work.display());
            code
        }
        Err(e) => {
            eprintln!("mini-runtime: demo: {e}");
            1
        }
    }
}

fn demo_in(work: &Path) -> Result<i32, CmdError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| CmdError::Io { op, path, source }
    };
    std::fs::create_dir_all(work).map_err(io("create", work))?;
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or_else(|| CmdError::Io {
            op: "find busybox (apt-get install busybox-static)",
            path: PathBuf::from("/bin/busybox"),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
    let t = std::time::Instant::now();
    let layout = work.join("demo-image");
    write_demo_layout(&layout, busybox).map_err(io("write image layout", &layout))?;
    println!(
        "==> built an OCI image from {} in {} ({:.0?})",
        busybox.display(),
        layout.display(),
        t.elapsed()
    );

    let store = Store::open(work.join("store"))?;
    let t = std::time::Instant::now();
    let imported = store.import(&layout, &ImportOptions::default(), &NoProgress)?;
    let name = imported.first().map(|i| i.name.clone()).unwrap_or_default();
    let image = store.image(&name)?;
    println!(
        "==> imported {name} ({}, {} layer, verified) into {} ({:.0?})",
        &image.manifest.digest_str[..19],
        image.layers.len(),
        store.root().display(),
        t.elapsed()
    );

    let t = std::time::Instant::now();
    let bundle_dir = work.join("bundle");
    bundle(&store, &name, &bundle_dir, &NoProgress)?;
    println!(
        "==> wrote bundle {} (rootfs + config.json from the image config) ({:.0?})",
        bundle_dir.display(),
        t.elapsed()
    );

    let rt = oci_runtime::Runtime::new(work.join("state"));
    let id = format!("demo-{}", std::process::id());
    let t = std::time::Instant::now();
    println!("==> running container {id}:");
    rt.create(&id, &bundle_dir, &oci_runtime::CreateOptions::default())?;
    let started = rt.start(&id);
    let code = match started {
        Ok(_) => rt.wait(&id),
        Err(e) => Err(e),
    };
    let _ = rt.delete(&id, true);
    let code = code?;
    println!(
        "==> container exited with status {code} ({:.0?}) and was deleted",
        t.elapsed()
    );
    store.remove(&name)?;
    let gc = store.gc()?;
    println!(
        "==> removed the image; gc freed {} blobs ({})",
        gc.blobs_removed,
        human(gc.bytes_freed)
    );
    Ok(code)
}

/// Writes a one-layer OCI layout: busybox, its applet links, passwd and
/// group, and a command that says hello.
fn write_demo_layout(layout: &Path, busybox: &Path) -> std::io::Result<()> {
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |data: &[u8], media_type: &str| -> std::io::Result<serde_json::Value> {
        let d = image_store::Digest::of(data);
        std::fs::write(blobs.join(d.hex()), data)?;
        Ok(
            serde_json::json!({"mediaType": media_type, "digest": d.to_string(), "size": data.len()}),
        )
    };
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    for (d, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("root", 0o700),
        ("tmp", 0o1777),
    ] {
        b.append_data(
            &mut header(tar::EntryType::Directory, mode, 0),
            d,
            std::io::empty(),
        )?;
    }
    let exe = std::fs::read(busybox)?;
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o755, exe.len() as u64),
        "bin/busybox",
        &exe[..],
    )?;
    for applet in ["sh", "echo", "cat", "hostname", "uname", "id", "ls", "pwd"] {
        b.append_link(
            &mut header(tar::EntryType::Symlink, 0o777, 0),
            format!("bin/{applet}"),
            "busybox",
        )?;
    }
    for (path, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
        ("etc/hostname", "demo\n"),
    ] {
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o644, text.len() as u64),
            path,
            text.as_bytes(),
        )?;
    }
    let layer = b.into_inner()?;
    let layer_desc = put(&layer, "application/vnd.oci.image.layer.v1.tar")?;
    let platform = Platform::host();
    let script = "echo \"Hello from container $(hostname): an image built offline, imported, unpacked and run.\"; \
                  echo \"kernel $(uname -r), user $(id -u):$(id -g), cwd $(pwd), $(ls / | wc -w) entries in /\"";
    let config = serde_json::json!({
        "architecture": platform.architecture, "os": platform.os,
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh", "-c", script], "WorkingDir": "/root", "User": "root", "StopSignal": "SIGTERM"},
        "rootfs": {"type": "layers", "diff_ids": [image_store::Digest::of(&layer).to_string()]},
    });
    let config_desc = put(
        &serde_json::to_vec(&config)?,
        "application/vnd.oci.image.config.v1+json",
    )?;
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc, "layers": [layer_desc],
    });
    let mut m = put(
        &serde_json::to_vec(&manifest)?,
        "application/vnd.oci.image.manifest.v1+json",
    )?;
    m["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "latest"});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [m]}))?,
    )?;
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
}
