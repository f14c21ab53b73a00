//! Checks made before anything is loaded, each failing with one line a user
//! can act on: privileges, BTF, tracefs.

use std::path::Path;

use anyhow::{bail, Context as _, Result};

use super::offsets::VMLINUX_BTF;

/// Capability numbers (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capability set of this process.
fn effective_caps() -> Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("failed to read /proc/self/status")?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .context("no CapEff line in /proc/self/status")?;
    u64::from_str_radix(line.trim(), 16).context("unreadable CapEff in /proc/self/status")
}

/// Fails unless the process may load tracing programs.
pub fn check_privileges() -> Result<()> {
    let caps = effective_caps()?;
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    bail!("capture must run as root (or with CAP_BPF and CAP_PERFMON) to load eBPF programs")
}

/// Fails unless the kernel publishes BTF, which podtap reads structure offsets from.
pub fn check_btf() -> Result<()> {
    if Path::new(VMLINUX_BTF).exists() {
        return Ok(());
    }
    bail!(
        "this kernel has no BTF ({VMLINUX_BTF} is missing); podtap needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (Linux 5.8 or newer)"
    )
}

/// Makes sure tracefs is mounted: tracepoints are attached through it.
pub fn ensure_tracefs() -> Result<()> {
    for dir in ["/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"] {
        if Path::new(dir).is_dir() {
            return Ok(());
        }
    }
    nix::mount::mount(
        Some("nodev"),
        "/sys/kernel/tracing",
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .context("tracefs is not mounted and mounting it on /sys/kernel/tracing failed")
}
