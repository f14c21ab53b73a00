//! Which processes are targets, answered for every traced syscall of every
//! process on the machine, so the common answer ("no") must be cheap.
//!
//! The truth is in `TARGET_PIDS` (and `TARGET_CGROUPS`), hash maps. In front
//! of them sits a one-entry per-CPU cache of the last answer: consecutive
//! syscalls on a CPU mostly come from the same process, and a per-CPU array
//! lookup is a few instructions where a hash lookup is a cache miss. Every
//! change to the target maps bumps `TARGET_GEN`, which invalidates all cached
//! answers.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid},
    macros::map,
    maps::{Array, PerCpuArray},
};
use formats::wire::{KernelError, TARGET_FORKED};

use crate::maps::{count_error, TARGET_CGROUPS, TARGET_PIDS, USE_CGROUPS};

/// The last answer on this CPU.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Cached {
    pub generation: u64,
    pub cgroup: u64,
    pub tgid: u32,
    pub is_target: u32,
}

#[map]
static TARGET_CACHE: PerCpuArray<Cached> = PerCpuArray::with_max_entries(1, 0);

/// Bumped after every change of the target maps (by userspace and by the
/// fork and exit programs). Starts at 1 so a zeroed cache entry never matches.
#[map]
pub static TARGET_GEN: Array<u64> = Array::with_max_entries(1, 0);

#[inline(always)]
fn generation() -> u64 {
    // SAFETY: a plain read of the single slot.
    TARGET_GEN.get_ptr(0).map_or(0, |p| unsafe { core::ptr::read_volatile(p) })
}

#[inline(always)]
fn bump_generation() {
    if let Some(p) = TARGET_GEN.get_ptr_mut(0) {
        // SAFETY: the single slot. Two CPUs bumping at once may write the same
        // value; what matters is that it differs from what caches hold, which
        // it does. A new child cannot run before its fork handler finished.
        unsafe { core::ptr::write_volatile(p, core::ptr::read_volatile(p) + 1) };
    }
}

/// Whether the current process is a target.
#[inline(always)]
pub fn is_target() -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: volatile read of a loader-written constant.
    let use_cgroups = unsafe { core::ptr::read_volatile(&raw const USE_CGROUPS) } != 0;
    let cgroup = if use_cgroups { unsafe { bpf_get_current_cgroup_id() } } else { 0 };
    // Read before the lookups: a change racing with them leaves the cached
    // answer stale-marked.
    let generation = generation();
    let cache = TARGET_CACHE.get_ptr_mut(0);
    if let Some(c) = cache {
        // SAFETY: this CPU's entry.
        let c = unsafe { &*c };
        if c.generation == generation && c.tgid == tgid && c.cgroup == cgroup {
            return c.is_target != 0;
        }
    }
    // SAFETY: read-only lookups of plain values.
    let answer = unsafe { TARGET_PIDS.get(tgid) }.is_some()
        || (use_cgroups && unsafe { TARGET_CGROUPS.get(cgroup) }.is_some());
    if let Some(c) = cache {
        // SAFETY: this CPU's entry.
        unsafe { *c = Cached { generation, cgroup, tgid, is_target: answer as u32 } };
    }
    answer
}

/// Makes a forked child a target.
#[inline(always)]
pub fn add_forked(tgid: u32) -> bool {
    if TARGET_PIDS.insert(tgid, TARGET_FORKED, 0).is_err() {
        count_error(KernelError::TargetsFull);
        return false;
    }
    bump_generation();
    true
}

/// Forgets a process that ended.
#[inline(always)]
pub fn remove(tgid: u32) {
    if TARGET_PIDS.remove(tgid).is_ok() {
        bump_generation();
    }
}
