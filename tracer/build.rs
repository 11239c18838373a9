//! Builds the eBPF object (tracer-ebpf) with aya-build and leaves it in
//! OUT_DIR for `include_bytes_aligned!`.
//!
//! `DAXTRACE_EBPF=stub` writes an empty object instead, so `cargo check`,
//! clippy and the host-only unit tests need neither bpf-linker nor nightly.
//! Loading programs from a stub build fails with a clear message.

use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=DAXTRACE_EBPF");
    let stub = std::env::var("DAXTRACE_EBPF").is_ok_and(|v| v == "stub");
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR")?);

    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "tracer-ebpf")
        .ok_or_else(|| anyhow!("tracer-ebpf package not found"))?;
    let root = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent"))?;
    let common = root.parent().map(|p| p.join("tracer-common"));
    println!("cargo:rerun-if-changed={root}");
    if let Some(c) = common {
        println!("cargo:rerun-if-changed={c}");
    }

    if stub {
        std::fs::write(out_dir.join("tracer-ebpf"), [])?;
        return Ok(());
    }
    let pkg = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([pkg], aya_build::Toolchain::default())
}
