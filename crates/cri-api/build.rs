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
    name_unimplemented(&out_dir.join("runtime.v1.rs"))?;
    Ok(())
}

/// The generated default bodies say only "Not yet implemented". Name the
/// RPC in each, so a client learns which call this runtime does not support:
/// `runtime.v1.RuntimeService/CheckpointContainer is not implemented by this
/// runtime`.
fn name_unimplemented(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = String::with_capacity(text.len() + 8192);
    let mut service = String::new();
    let mut method = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("pub trait ") {
            service = rest.split([':', ' ', '<']).next().unwrap_or("").to_string();
        }
        if let Some(rest) = t.strip_prefix("async fn ") {
            method = rest.split(['(', '<', ' ']).next().unwrap_or("").to_string();
        }
        if t == r#"Err(tonic::Status::unimplemented("Not yet implemented"))"# && !method.is_empty()
        {
            let rpc: String = method
                .split('_')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                        .unwrap_or_default()
                })
                .collect();
            let indent = &line[..line.len() - t.len()];
            out.push_str(&format!(
                "{indent}Err(tonic::Status::unimplemented(\"runtime.v1.{service}/{rpc} is not implemented by this runtime\"))"
            ));
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    std::fs::write(path, out)?;
    Ok(())
}
