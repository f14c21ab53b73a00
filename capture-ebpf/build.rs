//! Rebuild the eBPF object when the linker changes, as aya's template does.

fn main() {
    let linker = which::which("bpf-linker").unwrap_or_default();
    println!("cargo:rerun-if-changed={}", linker.display());
}
