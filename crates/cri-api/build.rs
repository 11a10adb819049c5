//! Compiles `proto/runtime/v1/api.proto` with protox (pure Rust, no system `protoc`)
//! and generates prost messages plus tonic client and server stubs into `OUT_DIR`.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "runtime/v1/api.proto";
    println!("cargo:rerun-if-changed=proto/{proto}");
    // protox never runs protoc; rerunning when PROTOC changes lets CI prove it.
    println!("cargo:rerun-if-env-changed=PROTOC");

    let fds = protox::compile([proto], ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Kept so tests and embedders (gRPC reflection) can see exactly what was compiled.
    std::fs::write(out_dir.join("runtime.v1.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_transport(false)
        // Embedders implement the RPCs they support; the rest answer UNIMPLEMENTED.
        .generate_default_stubs(true)
        .client_mod_attribute("runtime.v1", r#"#[cfg(feature = "client")]"#)
        .server_mod_attribute("runtime.v1", r#"#[cfg(feature = "server")]"#)
        .compile_fds(fds)?;
    Ok(())
}
