//! `mini-runtime`: a runc-compatible OCI runtime, image commands and a CRI server,
//! composed only from the crates of this workspace.

use clap::Parser;

/// A small container runtime built from the cri-api, oci-runtime and image-store crates.
#[derive(Debug, Parser)]
#[command(name = "mini-runtime", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
