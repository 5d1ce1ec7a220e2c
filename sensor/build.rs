//! Builds the eBPF object with the pinned nightly toolchain and embeds it (why that toolchain:
//! docs/ARCHITECTURE.md#build-toolchain).
//! `AYA_BUILD_SKIP=1` skips it (clippy, docs); the binary then refuses eBPF mode at run time.
use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=SENSOR_EBPF_TOOLCHAIN");
    println!("cargo:rerun-if-changed=../sensor-common/src");
    let toolchain =
        std::env::var("SENSOR_EBPF_TOOLCHAIN").unwrap_or_else(|_| "nightly-2026-05-20".into());
    // Read at run time, not with env!(): a build script compiled once can be reused for
    // another checkout sharing the target dir, and must build that checkout's eBPF crate.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest)
        .join("../sensor-ebpf")
        .canonicalize()
        .context("sensor-ebpf directory")?;
    let root = root
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", root.display()))?;
    let skip = std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v == "true");
    if skip {
        // Provide an empty object so include_bytes! compiles; loading it fails with a clear error.
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("sensor-ebpf");
        if !out.exists() {
            std::fs::write(&out, b"")?;
        }
    }
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "sensor-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}
