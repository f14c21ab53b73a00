#!/usr/bin/env bash
# Formatting and clippy (warnings are errors) for the userspace crates and,
# separately, for the eBPF crate on its own target.
set -euo pipefail
cd "$(dirname "$0")/.."
toolchain=$(sed -n 's/^const EBPF_TOOLCHAIN: &str = "\(.*\)";/\1/p' capture/build.rs)
cargo fmt --all -- --check
cargo clippy --workspace --exclude capture-ebpf --all-targets -- -D warnings
cargo "+$toolchain" clippy -p capture-ebpf --release --target bpfel-unknown-none \
  -Z build-std=core -- -D warnings
