//! Checks made before anything is loaded, each failing with one line a user
//! can act on: privileges, kernel version and BTF, the pid namespace, tracefs.

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

/// Oldest kernel the programs load on: they use `bpf_task_pt_regs` (5.15).
const MIN_KERNEL: (u32, u32) = (5, 15);

/// `(major, minor)` of a release string such as `6.1.0-18-amd64`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Fails unless the kernel is recent enough and publishes BTF, which podtap
/// reads structure offsets from.
pub fn check_kernel() -> Result<()> {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(version) = kernel_version(&release) {
        if version < MIN_KERNEL {
            bail!(
                "this kernel ({release}) is too old: podtap needs Linux {}.{} or newer",
                MIN_KERNEL.0,
                MIN_KERNEL.1
            );
        }
    }
    if Path::new(VMLINUX_BTF).exists() {
        return Ok(());
    }
    bail!(
        "this kernel has no BTF ({VMLINUX_BTF} is missing); podtap needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y"
    )
}

/// Fails unless capture sees host pids: the kernel reports host pids, and a
/// container's own pid namespace would make `--pid` and `/proc` mean other
/// processes (in Kubernetes: `hostPID: true`).
pub fn check_pid_namespace() -> Result<()> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("failed to read /proc/self/status")?;
    let levels =
        status.lines().find_map(|l| l.strip_prefix("NSpid:")).map(|v| v.split_whitespace().count());
    if levels.unwrap_or(1) > 1 {
        bail!("capture runs in a child pid namespace; run it in the host's (hostPID: true in Kubernetes)");
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_parse_from_release_strings() {
        assert_eq!(kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(kernel_version("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(kernel_version("4.19.0"), Some((4, 19)));
        assert_eq!(kernel_version("garbage"), None);
        assert!(kernel_version("5.10.0").unwrap() < MIN_KERNEL);
    }

    #[test]
    fn this_machine_passes_the_checks() {
        check_kernel().unwrap();
        check_pid_namespace().unwrap();
    }
}
