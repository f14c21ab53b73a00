//! Local targets: processes by pid (with their descendants) and cgroup
//! directories (v1 or v2), resolved through /proc and /sys/fs/cgroup.

use std::{
    collections::{HashMap, HashSet},
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{Process, Via};
use crate::output::rows::Identity;

/// `statfs` magic of cgroup2 file systems.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Why a target could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("no such process: pid {pid}")]
    NoSuchPid { pid: u32 },
    #[error("not a cgroup directory: `{path}` (it has no cgroup.procs)")]
    NotACgroup { path: PathBuf },
    #[error("failed to read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Reads `/proc/PID/comm`, or an empty string if the process is gone.
pub fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// Whether a process still exists (and is not a zombie).
pub fn is_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_fields(&stat).is_some_and(|(state, _)| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// State and parent pid from a `/proc/PID/stat` line. The command name in
/// parentheses may itself contain spaces and parentheses, so parse after the
/// last `)`.
fn stat_fields(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The process (thread group) a pid belongs to; a thread id resolves to its
/// process.
pub fn resolve_pid(pid: u32) -> Result<u32, TargetError> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|_| TargetError::NoSuchPid { pid })?;
    let tgid = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(TargetError::NoSuchPid { pid })?;
    Ok(tgid)
}

/// Parent of every running process.
fn parents() -> HashMap<u32, u32> {
    let mut map = HashMap::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return map;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(stat) = fs::read_to_string(entry.path().join("stat")) {
            if let Some((_, ppid)) = stat_fields(&stat) {
                map.insert(pid, ppid);
            }
        }
    }
    map
}

/// Processes that descend from any of `roots` (not including the roots), each
/// with the root-side parent it was found under.
pub fn descendants(roots: &[u32]) -> Vec<(u32, u32)> {
    let parents = parents();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &ppid) in &parents {
        children.entry(ppid).or_default().push(pid);
    }
    let mut seen: HashSet<u32> = roots.iter().copied().collect();
    let mut out = Vec::new();
    let mut stack: Vec<u32> = roots.to_vec();
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            if seen.insert(c) {
                out.push((c, p));
                stack.push(c);
            }
        }
    }
    out.sort_unstable();
    out
}

/// Resolves `--pid` values to the processes they name (a thread id names its
/// process); their descendants are found once they are registered.
pub fn pid_targets(pids: &[u32]) -> Result<Vec<Process>, TargetError> {
    let mut roots: Vec<u32> = Vec::new();
    for &pid in pids {
        let tgid = resolve_pid(pid)?;
        if !roots.contains(&tgid) {
            roots.push(tgid);
        }
    }
    Ok(roots
        .into_iter()
        .map(|pid| Process { pid, comm: comm(pid), via: Via::Pid, parent: None })
        .collect())
}

/// A cgroup directory given with `--cgroup`.
#[derive(Clone, Debug)]
pub struct CgroupTarget {
    pub path: PathBuf,
    /// On the cgroup v2 hierarchy: the kernel can match its processes by
    /// cgroup id, the instant they enter it.
    pub v2: bool,
    /// The pod and container it is, for a Kubernetes container.
    pub identity: Option<Arc<Identity>>,
}

impl CgroupTarget {
    pub fn open(path: &Path) -> Result<Self, TargetError> {
        if !path.join("cgroup.procs").is_file() {
            return Err(TargetError::NotACgroup { path: path.to_path_buf() });
        }
        let v2 = nix::sys::statfs::statfs(path)
            .map(|s| s.filesystem_type().0 == CGROUP2_SUPER_MAGIC)
            .unwrap_or(false);
        Ok(Self { path: path.to_path_buf(), v2, identity: None })
    }

    /// The processes in the cgroup or any sub-cgroup, and (on cgroup v2)
    /// the ids of those cgroups, from one walk of the tree.
    pub fn scan(&self) -> Result<CgroupScan, TargetError> {
        let mut scan = CgroupScan::default();
        let mut dirs = vec![self.path.clone()];
        while let Some(dir) = dirs.pop() {
            let procs = dir.join("cgroup.procs");
            match fs::read_to_string(&procs) {
                Ok(text) => {
                    scan.pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()))
                }
                // A sub-cgroup removed while walking is not an error.
                Err(e) if e.kind() == io::ErrorKind::NotFound && dir != self.path => continue,
                Err(source) => return Err(TargetError::Read { path: procs, source }),
            }
            if self.v2 {
                if let Ok(meta) = fs::metadata(&dir) {
                    scan.ids.push(meta.ino());
                }
            }
            if let Ok(entries) = fs::read_dir(&dir) {
                dirs.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
        scan.pids.sort_unstable();
        scan.pids.dedup();
        Ok(scan)
    }
}

/// What one walk of a cgroup tree found.
#[derive(Debug, Default)]
pub struct CgroupScan {
    pub pids: Vec<u32>,
    /// cgroup v2 ids (directory inode numbers); empty on v1.
    pub ids: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_parentheses_in_the_command_name() {
        let stat = "1234 (evil) name (x)) S 77 1234 1234 0 -1 4194560";
        assert_eq!(stat_fields(stat), Some(('S', 77)));
    }

    #[test]
    fn resolves_this_process_and_rejects_a_missing_one() {
        let me = std::process::id();
        assert_eq!(resolve_pid(me).unwrap(), me);
        let err = resolve_pid(u32::MAX - 1).unwrap_err();
        assert_eq!(err.to_string(), format!("no such process: pid {}", u32::MAX - 1));
    }

    #[test]
    fn a_thread_id_resolves_to_its_process() {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(200));
        });
        let tid = rx.recv().unwrap();
        assert_eq!(resolve_pid(tid).unwrap(), std::process::id());
        handle.join().unwrap();
    }

    #[test]
    fn finds_children_and_grandchildren() {
        let mut child =
            std::process::Command::new("sh").args(["-c", "sleep 5 & wait"]).spawn().unwrap();
        let sh = child.id();
        // Give the shell a moment to fork its sleep.
        let mut found = Vec::new();
        for _ in 0..50 {
            found = descendants(&[std::process::id()]);
            if found.iter().any(|&(_, parent)| parent == sh) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.contains(&(sh, std::process::id())), "{found:?}");
        assert!(found.iter().any(|&(_, parent)| parent == sh), "grandchild missing: {found:?}");
    }

    #[test]
    fn a_plain_directory_is_not_a_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let err = CgroupTarget::open(dir.path()).unwrap_err();
        assert!(err.to_string().starts_with("not a cgroup directory"), "{err}");
    }
}
