//! Which processes are targets, and why.
//!
//! `local` turns `--pid` and `--cgroup` into process ids (and cgroup v2 ids the
//! kernel can match directly); [`TargetSet`] keeps the list current while the
//! capture runs, from fork notices and cgroup rescans, and ends up in the file
//! metadata.

pub mod local;

use std::collections::BTreeMap;

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
#[derive(Debug, Default)]
pub struct TargetSet {
    processes: BTreeMap<u32, Process>,
}

impl TargetSet {
    /// Adds a process; returns true if it was not known yet.
    pub fn add(&mut self, process: Process) -> bool {
        if self.processes.contains_key(&process.pid) {
            return false;
        }
        self.processes.insert(process.pid, process);
        true
    }

    pub fn contains(&self, pid: u32) -> bool {
        self.processes.contains_key(&pid)
    }

    pub fn len(&self) -> usize {
        self.processes.len()
    }

    /// Processes that are still running.
    pub fn alive(&self) -> usize {
        self.processes.keys().filter(|pid| local::is_alive(**pid)).count()
    }

    pub fn processes(&self) -> impl Iterator<Item = &Process> {
        self.processes.values()
    }
}
