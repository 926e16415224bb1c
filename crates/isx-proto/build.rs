//! Compiles `proto/isx/v1/*.proto` with protox (pure Rust, no `protoc`) and
//! generates prost messages and tonic stubs. The encoded descriptor set of
//! the gateway's API (every file but the mock agency's `inspect.proto`) is
//! kept for server reflection and for the canonical JSON mapping.

use std::path::PathBuf;

use prost::Message;

/// Served by the mock agency on a local socket, not by the gateway.
const AGENCY_ONLY: &str = "isx/v1/inspect.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files =
        ["isx/v1/alert.proto", "isx/v1/exchange.proto", "isx/v1/audit.proto", "isx/v1/admin.proto", AGENCY_ONLY];
    for file in &files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let fds = protox::Compiler::new([&root])?
        .include_imports(true)
        .include_source_info(false)
        .open_files(files)?
        .file_descriptor_set();
    let mut gateway = fds.clone();
    gateway.file.retain(|f| f.name() != AGENCY_ONLY);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("isx_descriptor.bin"), gateway.encode_to_vec())?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
