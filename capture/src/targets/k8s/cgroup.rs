//! From a container's `containerID` (as the API reports it) to its cgroup
//! directory on this node, in any of the kubelet's layouts:
//!
//! - systemd driver: `kubepods.slice/kubepods-<qos>.slice/
//!   kubepods-<qos>-pod<uid_with_underscores>.slice/<runtime>-<id>.scope`
//!   (`cri-containerd-`, `crio-`, `docker-`);
//! - cgroupfs driver: `kubepods/<qos>/pod<uid>/<id>`;
//!
//! on the cgroup v2 hierarchy or any cgroup v1 hierarchy, possibly below a
//! prefix (`kubelet.slice/kubelet-kubepods.slice/…` in nested setups). The
//! tree is searched rather than the path built, so the QoS class, the
//! driver and the prefix need not be known; a match must sit below a
//! directory naming the pod's uid, so a container id alone never matches
//! another pod's cgroup.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

/// Container runtimes, as the `containerID` scheme names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
}

/// A container as `status.containerStatuses[].containerID` gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerId {
    pub runtime: Runtime,
    /// The runtime's id: 64 lowercase hex characters in practice.
    pub id: String,
}

impl ContainerId {
    /// Parses `containerd://<id>`, `cri-o://<id>` or `docker://<id>`.
    pub fn parse(text: &str) -> Option<Self> {
        let (scheme, id) = text.split_once("://")?;
        let runtime = match scheme {
            "containerd" => Runtime::Containerd,
            "cri-o" => Runtime::CriO,
            "docker" => Runtime::Docker,
            _ => return None,
        };
        let valid =
            !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric());
        valid.then(|| Self { runtime, id: id.to_string() })
    }

    /// Whether a cgroup directory name is this container's.
    fn names(&self, dir: &str) -> bool {
        let scoped = |prefix: &str| {
            dir.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(".scope"))
                .is_some_and(|id| id == self.id)
        };
        dir == self.id
            || match self.runtime {
                Runtime::Containerd => scoped("cri-containerd-"),
                Runtime::CriO => scoped("crio-"),
                Runtime::Docker => scoped("docker-"),
            }
    }
}

/// Whether a directory name is the pod's: `pod<uid>` (cgroupfs) or
/// `kubepods[-<qos>]-pod<uid with underscores>.slice` (systemd).
fn names_pod(dir: &str, uid: &str) -> bool {
    let underscored = uid.replace('-', "_");
    dir == format!("pod{uid}") || dir.ends_with(&format!("-pod{underscored}.slice"))
}

/// How deep below a hierarchy's root the search goes.
const MAX_DEPTH: usize = 8;

/// The mount points of the cgroup hierarchies of this machine (v2 first),
/// from `/proc/self/mountinfo`.
pub fn hierarchies() -> io::Result<Vec<PathBuf>> {
    Ok(parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo")?))
}

fn parse_mountinfo(text: &str) -> Vec<PathBuf> {
    let mut v2 = Vec::new();
    let mut v1 = Vec::new();
    for line in text.lines() {
        // "<id> <parent> <dev> <root> <mount point> <options> ... - <fstype> <source> <super options>"
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let Some(mount_point) = left.split(' ').nth(4) else { continue };
        let mount_point = PathBuf::from(unescape(mount_point));
        match right.split(' ').next() {
            Some("cgroup2") => v2.push(mount_point),
            Some("cgroup") => v1.push(mount_point),
            _ => {}
        }
    }
    v2.extend(v1);
    v2
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The container's cgroup directories below `roots` (one per hierarchy
/// that has it), for the pod with `pod_uid`.
pub fn find(roots: &[PathBuf], pod_uid: &str, container: &ContainerId) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for root in roots {
        if let Some(dir) = find_below(root, pod_uid, container) {
            found.push(dir);
        }
    }
    found
}

fn find_below(root: &Path, pod_uid: &str, container: &ContainerId) -> Option<PathBuf> {
    // (directory, depth, below a kubelet directory, below the pod's directory)
    let mut stack = vec![(root.to_path_buf(), 0usize, false, false)];
    while let Some((dir, depth, in_kube, in_pod)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if in_pod && container.names(name) {
                return Some(entry.path());
            }
            let pod = in_pod || names_pod(name, pod_uid);
            // Only the kubelet's part of the tree is worth walking.
            let kube = in_kube || pod || name.contains("kube");
            if kube && depth + 1 < MAX_DEPTH {
                stack.push((entry.path(), depth + 1, kube, pod));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "5d0f6c3e-8a2b-4c1d-9e7f-0123456789ab";
    const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";

    fn mkdirs(root: &Path, rel: &str) -> PathBuf {
        let dir = root.join(rel);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn container_ids_parse_by_runtime() {
        let c = ContainerId::parse(&format!("containerd://{ID}")).unwrap();
        assert_eq!((c.runtime, c.id.as_str()), (Runtime::Containerd, ID));
        assert_eq!(ContainerId::parse("cri-o://abc").unwrap().runtime, Runtime::CriO);
        assert_eq!(ContainerId::parse("docker://abc").unwrap().runtime, Runtime::Docker);
        assert_eq!(ContainerId::parse("rkt://abc"), None);
        assert_eq!(ContainerId::parse("containerd://"), None);
        assert_eq!(ContainerId::parse("containerd://../../etc"), None);
        assert_eq!(ContainerId::parse(ID), None);
    }

    #[test]
    fn the_systemd_layout_is_found_for_each_runtime() {
        let root = tempfile::tempdir().unwrap();
        let u = UID.replace('-', "_");
        let pod =
            format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice");
        for (scheme, scope) in
            [("containerd", "cri-containerd"), ("cri-o", "crio"), ("docker", "docker")]
        {
            let want = mkdirs(root.path(), &format!("{pod}/{scope}-{ID}.scope"));
            let c = ContainerId::parse(&format!("{scheme}://{ID}")).unwrap();
            assert_eq!(find(&[root.path().to_path_buf()], UID, &c), vec![want.clone()]);
            fs::remove_dir(&want).unwrap();
        }
    }

    #[test]
    fn the_cgroupfs_layout_is_found_on_every_hierarchy() {
        let v2 = tempfile::tempdir().unwrap();
        let v1 = tempfile::tempdir().unwrap();
        let a = mkdirs(v2.path(), &format!("kubepods/besteffort/pod{UID}/{ID}"));
        let b = mkdirs(v1.path(), &format!("kubepods/pod{UID}/{ID}"));
        let c = ContainerId::parse(&format!("containerd://{ID}")).unwrap();
        let roots = [v2.path().to_path_buf(), v1.path().to_path_buf()];
        assert_eq!(find(&roots, UID, &c), vec![a, b]);
    }

    #[test]
    fn a_nested_prefix_is_searched() {
        let root = tempfile::tempdir().unwrap();
        let u = UID.replace('-', "_");
        let want = mkdirs(
            root.path(),
            &format!(
                "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{u}.slice/cri-containerd-{ID}.scope"
            ),
        );
        let c = ContainerId::parse(&format!("containerd://{ID}")).unwrap();
        assert_eq!(find(&[root.path().to_path_buf()], UID, &c), vec![want]);
    }

    #[test]
    fn the_same_id_under_another_pod_or_outside_kubepods_does_not_match() {
        let root = tempfile::tempdir().unwrap();
        mkdirs(
            root.path(),
            &format!("kubepods/burstable/pod00000000-0000-0000-0000-000000000000/{ID}"),
        );
        mkdirs(root.path(), &format!("system.slice/{ID}"));
        mkdirs(root.path(), &format!("kubepods/burstable/pod{UID}/other"));
        let c = ContainerId::parse(&format!("containerd://{ID}")).unwrap();
        assert!(find(&[root.path().to_path_buf()], UID, &c).is_empty());
    }

    #[test]
    fn mountinfo_lists_v2_then_v1_hierarchies() {
        let text = "\
25 30 0:23 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
26 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
27 25 0:25 / /sys/fs/cgroup/with\\040space rw - cgroup cgroup rw,pids
28 30 0:26 / /proc rw - proc proc rw
";
        assert_eq!(
            parse_mountinfo(text),
            [
                PathBuf::from("/sys/fs/cgroup"),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
                PathBuf::from("/sys/fs/cgroup/with space"),
            ]
        );
    }
}
