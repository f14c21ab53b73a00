//! `--cgroup`: every process of a cgroup directory, on the cgroup v2 hierarchy
//! (matched in the kernel by cgroup id) and on a v1 hierarchy (matched through
//! cgroup.procs rescans), including processes that join after the start.

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use common::*;

/// A cgroup made for one test, emptied and removed afterwards.
struct TestCgroup {
    path: PathBuf,
}

impl TestCgroup {
    fn new(hierarchy: &Path, name: &str) -> Self {
        let path = hierarchy.join(format!("podtap-test-{}-{name}", std::process::id()));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create cgroup {}: {e}", path.display()));
        TestCgroup { path }
    }

    fn add(&self, pid: u32) {
        fs::write(self.path.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let parent = self.path.parent().unwrap().join("cgroup.procs");
        if let Ok(procs) = fs::read_to_string(self.path.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = fs::write(&parent, pid);
            }
        }
        for _ in 0..50 {
            if fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn traffic(port: u16) -> u16 {
    let (client, local) = Peer::client(port, &["GET /bytes/500", "GET /"]);
    client.finish();
    local
}

fn check(hierarchy: PathBuf, name: &str, settle: Duration) {
    let run = Run::new();
    let cg = TestCgroup::new(&hierarchy, name);
    let (early, early_port) = Peer::server(&[]);
    cg.add(early.pid());
    let (_outside, outside_port) = Peer::server(&[]);
    let cap = run.capture_args(&["--cgroup", cg.path.to_str().unwrap()]);
    // A process that joins the cgroup while the capture runs.
    let (late, late_port) = Peer::server(&[]);
    cg.add(late.pid());
    std::thread::sleep(settle);
    let early_client = traffic(early_port);
    let late_client = traffic(late_port);
    let outside_client = traffic(outside_port);
    run.stop(cap);

    let file = run.read();
    for (server, client) in [(&early, early_client), (&late, late_client)] {
        let conn = file.conn_with_port(client).expect("a cgroup member's connection was captured");
        let (egress, holes) = file.stream(conn, "egress");
        assert!(holes.is_empty());
        assert!(egress.starts_with(b"HTTP/1.1 200 OK"));
        assert!(file.chunks(conn, "egress").iter().all(|r| r.pid == Some(server.pid())));
    }
    assert_eq!(
        file.conn_with_port(outside_client),
        None,
        "a process outside the cgroup was captured"
    );
    let targets = &file.meta["podtap.targets"];
    assert!(targets.contains(&format!("\"pid\":{},\"via\":\"cgroup\"", early.pid())), "{targets}");
}

#[test]
fn cgroup_v2_members_and_late_joiners_are_captured() {
    require_root();
    let hierarchy = mount_of("cgroup2", None).expect("a cgroup2 hierarchy is mounted");
    // Matched in the kernel by cgroup id: no wait needed for the late joiner.
    check(hierarchy, "v2", Duration::from_millis(0));
}

#[test]
fn cgroup_v1_members_and_late_joiners_are_captured() {
    require_root();
    // Matched by cgroup.procs rescans, once a second.
    check(v1_hierarchy(), "v1", Duration::from_millis(1500));
}
