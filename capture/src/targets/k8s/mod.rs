//! Kubernetes pods as targets: [`api`] finds the selected pods of this node
//! and follows them; [`cgroup`] finds each container's cgroup directory,
//! which a [`CgroupTarget`] then watches like a `--cgroup`, so processes
//! started later in a container are captured too. [`Pods`] keeps what was
//! found, for the rows' pod columns and the file's metadata.

pub mod api;
pub mod cgroup;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::Serialize;

use self::api::PodTarget;
use super::local::CgroupTarget;
use crate::output::rows::Identity;

/// A pod as the capture file's metadata records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PodRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    pub containers: Vec<ContainerRecord>,
    /// Whether the pod went away during the capture.
    pub ended: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainerRecord {
    pub name: String,
    pub id: String,
    /// Where its processes were found; `None` when no cgroup matched.
    pub cgroup: Option<PathBuf>,
}

/// The selected pods seen so far and their containers.
#[derive(Debug, Default)]
pub struct Pods {
    hierarchies: Vec<PathBuf>,
    records: Vec<PodRecord>,
    containers: HashSet<String>,
}

impl Pods {
    /// Searches containers' cgroups below these hierarchies' mount points.
    pub fn new(hierarchies: Vec<PathBuf>) -> Self {
        Self { hierarchies, ..Self::default() }
    }

    pub fn records(&self) -> &[PodRecord] {
        &self.records
    }

    /// Adds the containers of `pod` not seen before; returns their cgroup
    /// targets and, for each container whose cgroup was not found (or could
    /// not be opened), a line saying so.
    pub fn add(&mut self, pod: &PodTarget) -> (Vec<CgroupTarget>, Vec<String>) {
        let mut targets = Vec::new();
        let mut problems = Vec::new();
        let index = match self.records.iter().position(|r| r.uid == pod.uid) {
            Some(i) => i,
            None => {
                self.records.push(PodRecord {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    uid: pod.uid.clone(),
                    node: pod.node.clone(),
                    containers: Vec::new(),
                    ended: false,
                });
                self.records.len() - 1
            }
        };
        for container in &pod.containers {
            if !self.containers.insert(container.id.id.clone()) {
                continue;
            }
            let found = cgroup::find(&self.hierarchies, &pod.uid, &container.id);
            // One hierarchy is enough (v2 comes first): they hold the same processes.
            let opened = found.first().map(|dir| CgroupTarget::open(dir));
            let cgroup = match opened {
                Some(Ok(mut target)) => {
                    target.identity = Some(Arc::new(Identity {
                        namespace: Some(pod.namespace.as_str().into()),
                        pod: Some(pod.name.as_str().into()),
                        pod_uid: Some(pod.uid.as_str().into()),
                        container: Some(container.name.as_str().into()),
                        container_id: Some(container.id.id.as_str().into()),
                        node: Some(pod.node.as_str().into()),
                    }));
                    let path = target.path.clone();
                    targets.push(target);
                    Some(path)
                }
                Some(Err(e)) => {
                    problems.push(format!(
                        "container `{}` of pod `{}/{}`: {e}",
                        container.name, pod.namespace, pod.name
                    ));
                    None
                }
                None => {
                    problems.push(format!(
                        "container `{}` of pod `{}/{}` ({}) has no cgroup below {}; its traffic is not captured",
                        container.name,
                        pod.namespace,
                        pod.name,
                        container.id.id,
                        describe(&self.hierarchies)
                    ));
                    None
                }
            };
            self.records[index].containers.push(ContainerRecord {
                name: container.name.clone(),
                id: container.id.id.clone(),
                cgroup,
            });
        }
        (targets, problems)
    }

    /// `dir` as `/proc/PID/cgroup` shows it: relative to the root of the
    /// hierarchy it is in.
    pub fn relative(&self, dir: &Path) -> Option<String> {
        self.hierarchies
            .iter()
            .find_map(|h| dir.strip_prefix(h).ok().map(|rest| format!("/{}", rest.display())))
    }

    /// Notes that a pod went away; returns whether it was one of ours.
    pub fn ended(&mut self, uid: &str) -> bool {
        match self.records.iter_mut().find(|r| r.uid == uid && !r.ended) {
            Some(record) => {
                record.ended = true;
                true
            }
            None => false,
        }
    }
}

fn describe(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if names.is_empty() {
        "any mounted cgroup hierarchy (none found)".into()
    } else {
        names.join(", ")
    }
}
