//! Which processes are targets, and why.
//!
//! `local` turns `--pid` and `--cgroup` into process ids (and cgroup v2 ids the
//! kernel can match directly); [`TargetSet`] keeps the list current while the
//! capture runs, from fork notices and cgroup rescans, and ends up in the file
//! metadata.

pub mod k8s;
pub mod local;

use std::collections::BTreeSet;

use serde::Serialize;

/// Why a process is a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Named with `--pid`.
    Pid,
    /// A child (at any depth) of a `--pid` target that existed at start.
    Descendant,
    /// A member of a `--cgroup` target.
    Cgroup,
    /// Forked by a target during the capture.
    Fork,
}

/// One target process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Process {
    pub pid: u32,
    pub comm: String,
    pub via: Via,
    /// The target it was forked from or descends from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
}

/// Every process that was a target at some point of the capture.
///
/// Processes are kept in the order they were found; a pid reused by a new
/// target after the first one ended gets a second entry. Checking which are
/// still running only looks at the live ones, and segments record only the
/// processes found since the previous segment, so a fork-heavy target costs
/// neither quadratic time nor metadata.
#[derive(Debug, Default)]
pub struct TargetSet {
    processes: Vec<Process>,
    live: BTreeSet<u32>,
    reported: usize,
}

impl TargetSet {
    /// Adds a process unless it is already a live target; returns whether it
    /// was added.
    pub fn add(&mut self, process: Process) -> bool {
        if !self.live.insert(process.pid) {
            return false;
        }
        self.processes.push(process);
        true
    }

    /// Whether `pid` is a target that has not been seen ending.
    pub fn is_live(&self, pid: u32) -> bool {
        self.live.contains(&pid)
    }

    /// Processes that were targets, ended ones included.
    pub fn len(&self) -> usize {
        self.processes.len()
    }

    /// Forgets the targets that ended; returns how many are still running.
    pub fn prune(&mut self) -> usize {
        self.live.retain(|pid| local::is_alive(*pid));
        self.live.len()
    }

    /// The targets still running (as of the last [`Self::prune`]).
    pub fn live(&self) -> impl Iterator<Item = u32> + '_ {
        self.live.iter().copied()
    }

    pub fn processes(&self) -> &[Process] {
        &self.processes
    }

    /// Processes found since the last call.
    pub fn take_unreported(&mut self) -> &[Process] {
        let from = self.reported;
        self.reported = self.processes.len();
        &self.processes[from..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: u32) -> Process {
        Process { pid, comm: "x".into(), via: Via::Pid, parent: None }
    }

    #[test]
    fn a_live_pid_is_added_once_and_segments_get_only_new_processes() {
        let mut set = TargetSet::default();
        assert!(set.add(process(std::process::id())));
        assert!(!set.add(process(std::process::id())));
        assert_eq!(set.take_unreported().len(), 1);
        assert!(set.take_unreported().is_empty());
        assert!(set.add(process(u32::MAX - 3)));
        assert_eq!(
            set.take_unreported().iter().map(|p| p.pid).collect::<Vec<_>>(),
            vec![u32::MAX - 3]
        );
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn ended_processes_are_pruned_and_a_reused_pid_is_a_new_entry() {
        let mut set = TargetSet::default();
        set.add(process(std::process::id()));
        set.add(process(u32::MAX - 3));
        assert_eq!(set.prune(), 1, "the made-up pid is not running");
        assert!(!set.is_live(u32::MAX - 3));
        assert!(set.add(process(u32::MAX - 3)), "a pid seen ending can be a target again");
        assert_eq!(set.len(), 3);
    }
}
