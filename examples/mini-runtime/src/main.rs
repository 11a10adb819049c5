//! `mini-runtime`: a runc-compatible OCI runtime and image commands,
//! composed only from the crates of this workspace.

mod events_cmd;
mod image_cmd;
mod oci_cmd;
mod terminal;
mod update_cmd;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// A small container runtime built from the oci-runtime and image-store crates.
#[derive(Debug, Parser)]
#[command(
    name = "mini-runtime",
    version,
    about,
    arg_required_else_help = true,
    subcommand_required = true
)]
struct Cli {
    #[command(flatten)]
    oci: oci_cmd::GlobalOpts,
    #[command(flatten)]
    store: image_cmd::StoreOpts,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Oci(oci_cmd::OciCommand),
    /// Manage images in the local store.
    #[command(subcommand)]
    Image(image_cmd::ImageCommand),
    /// Build a small image offline, import, bundle and run it, then clean up.
    Demo,
}

fn main() {
    // MINI_RUNTIME_TIMELINE=FILE: where this run's start time goes (see
    // oci_runtime::timeline and benches/start_breakdown.py).
    let timeline = std::env::var_os("MINI_RUNTIME_TIMELINE");
    if timeline.is_some() && oci_runtime::timeline::enable().is_ok() {
        oci_runtime::timeline::mark("main entered (exec, dynamic loading, Rust start-up)");
    }
    // `--version` as runc prints it (podman and containerd show it to users).
    let version = format!(
        "version {}\nspec: {}",
        env!("CARGO_PKG_VERSION"),
        oci_runtime::OCI_VERSION
    );
    let matches = Cli::command().long_version(version).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    oci_runtime::timeline::mark("command line parsed");
    let code = match cli.command {
        None => 0,
        Some(Command::Oci(c)) => oci_cmd::run(&cli.oci, c),
        Some(Command::Image(c)) => image_cmd::run(&cli.store, c),
        Some(Command::Demo) => image_cmd::demo(),
    };
    if let Some(path) = timeline {
        write_timeline(&path);
    }
    std::process::exit(code)
}

/// Appends this run's marks to `path`, one JSON object per line:
/// `{"pid": ..., "marks": [[nanos, pid, name], ...]}`.
fn write_timeline(path: &std::ffi::OsStr) {
    use std::io::Write;
    let marks: Vec<_> = oci_runtime::timeline::marks()
        .into_iter()
        .map(|m| serde_json::json!([m.nanos, m.pid, m.name]))
        .collect();
    let line = serde_json::json!({"pid": std::process::id(), "marks": marks});
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        eprintln!(
            "mini-runtime: writing the timeline to {}: {e}",
            std::path::Path::new(path).display()
        );
    }
}
