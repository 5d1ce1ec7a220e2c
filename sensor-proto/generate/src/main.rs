//! Regenerates the checked-in Rust for sensor.proto. Usage: `run` (from proto/generate).
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = proto_dir.join("src").join("gen");
    std::fs::create_dir_all(&out_dir)?;
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .out_dir(&out_dir)
        .compile_with_config(config, &[proto_dir.join("sensor.proto")], &[proto_dir])?;
    println!("wrote {}", out_dir.join("sensor.v1.rs").display());
    Ok(())
}
