//! Builds the eBPF programs of `capture-ebpf` with bpf-linker and embeds the
//! object in the `capture` binary (aya's template layout).

use std::path::PathBuf;

use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

/// Nightly toolchain the eBPF crate is built with. Its LLVM must match the one
/// bpf-linker links against (LLVM 22); `scripts/setup.sh` installs it.
const EBPF_TOOLCHAIN: &str = "nightly-2026-05-19";

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let workspace = PathBuf::from(manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("capture has no parent directory"))?
        .to_path_buf();
    let root = workspace.join("capture-ebpf");
    let root = root.to_str().ok_or_else(|| anyhow!("non-UTF-8 path {}", root.display()))?;
    // The programs include the shared wire structs.
    println!("cargo:rerun-if-changed={}", workspace.join("formats/src").display());
    aya_build::build_ebpf(
        [Package { name: "capture-ebpf", root_dir: root, ..Default::default() }],
        Toolchain::Custom(EBPF_TOOLCHAIN),
    )
}
