//! Kubernetes pods as targets: a pod's containers are found on this node
//! as cgroup directories, which [`super::local::CgroupTarget`] then watches.

pub mod api;
pub mod cgroup;
