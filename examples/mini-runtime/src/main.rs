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
    // `--version` as runc prints it (podman and containerd show it to users).
    let version = format!(
        "version {}\nspec: {}",
        env!("CARGO_PKG_VERSION"),
        oci_runtime::OCI_VERSION
    );
    let matches = Cli::command().long_version(version).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        None => {}
        Some(Command::Oci(c)) => std::process::exit(oci_cmd::run(&cli.oci, c)),
        Some(Command::Image(c)) => std::process::exit(image_cmd::run(&cli.store, c)),
        Some(Command::Demo) => std::process::exit(image_cmd::demo()),
    }
}
