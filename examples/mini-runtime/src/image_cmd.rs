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

fn dispatch(opts: &StoreOpts, cmd: ImageCommand) -> Result<(), image_store::Error> {
    let store = Store::open(&opts.store)?;
    match cmd {
        ImageCommand::Import {
            path,
            name,
            platform,
        } => {
            let mut io = ImportOptions {
                name,
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
    }
    Ok(())
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
