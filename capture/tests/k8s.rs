//! `capture --ns`: pods chosen through the Kubernetes API and found on this
//! node as cgroups. The API is `scripts/peers/kube_api.py`, which serves pod
//! objects in the shape a real API server returns, through a real kubeconfig
//! file; the pods are real cgroups in the kubelet's layouts (systemd driver
//! on the cgroup v2 hierarchy, cgroupfs driver on a v1 hierarchy) holding
//! real servers.

mod common;

use std::{
    fs,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use common::*;
use serde_json::{json, Value};

/// Where a pod's containers live: the kubelet's systemd driver
/// (`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`)
/// or cgroupfs driver (`kubepods/besteffort/pod<uid>/<id>`), on the cgroup
/// v2 hierarchy or a v1 hierarchy.
#[derive(Clone, Copy, Debug)]
enum Layout {
    SystemdV2,
    SystemdV1,
    CgroupfsV2,
    CgroupfsV1,
}

/// A pod of the test: its API object, and a server per container moved
/// into that container's cgroup.
struct Pod {
    name: String,
    uid: String,
    object: Value,
    /// (container name, container id, server, server port, cgroup)
    containers: Vec<(String, String, Peer, u16, PathBuf)>,
}

impl Pod {
    fn container(&self, name: &str) -> &(String, String, Peer, u16, PathBuf) {
        self.containers.iter().find(|c| c.0 == name).unwrap()
    }
}

static NEXT: AtomicU32 = AtomicU32::new(1);

/// The pods of one test and the cgroup trees made for them (removed, with
/// their processes moved out, when the test ends).
struct Cluster {
    dir: tempfile::TempDir,
    /// A test-private top directory per hierarchy, under which the kubelet
    /// layout is built (`podtap-test-…-kubelet.slice/kubepods.slice/…`).
    tops: Vec<PathBuf>,
    pods: Vec<Pod>,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster { dir: workdir(), tops: Vec::new(), pods: Vec::new() }
    }

    fn top(&mut self, hierarchy: &Path) -> PathBuf {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let top = hierarchy.join(format!("podtap-test-{}-{n}-kubelet.slice", std::process::id()));
        fs::create_dir_all(&top).unwrap();
        self.tops.push(top.clone());
        top
    }

    /// Makes a pod: its cgroups, one running server per container, its
    /// API object. Returns its index.
    fn pod(
        &mut self,
        namespace: &str,
        name: &str,
        node: &str,
        labels: Value,
        containers: &[&str],
        layout: Layout,
    ) -> usize {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let uid = format!("{:08x}-7c1d-4e2f-9a3b-{:012x}", std::process::id(), n);
        let hierarchy = match layout {
            Layout::SystemdV2 | Layout::CgroupfsV2 => {
                mount_of("cgroup2", None).expect("a cgroup2 hierarchy")
            }
            Layout::SystemdV1 | Layout::CgroupfsV1 => v1_hierarchy(),
        };
        let top = self.top(&hierarchy);
        let mut made = Vec::new();
        let mut statuses = Vec::new();
        let mut specs = Vec::new();
        for (i, container) in containers.iter().enumerate() {
            let id = format!("{:056x}{:08x}", n, i);
            let dir = match layout {
                Layout::SystemdV2 | Layout::SystemdV1 => top.join(format!(
                    "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{id}.scope",
                    uid.replace('-', "_")
                )),
                Layout::CgroupfsV2 | Layout::CgroupfsV1 => {
                    top.join(format!("kubepods/besteffort/pod{uid}/{id}"))
                }
            };
            fs::create_dir_all(&dir).unwrap();
            let (server, port) = Peer::server(&[]);
            fs::write(dir.join("cgroup.procs"), server.pid().to_string()).unwrap();
            statuses.push(json!({
                "name": container,
                "state": {"running": {"startedAt": "2026-11-20T10:00:05Z"}},
                "lastState": {},
                "ready": true,
                "restartCount": 0,
                "image": "docker.io/library/python:3.11-slim",
                "imageID": "docker.io/library/python@sha256:4f1e6a1a7e2c9d3b",
                "containerID": format!("containerd://{id}"),
                "started": true
            }));
            specs.push(json!({
                "name": container,
                "image": "python:3.11-slim",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"
            }));
            made.push((container.to_string(), id, server, port, dir));
        }
        let object = json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": uid,
                "resourceVersion": "1",
                "creationTimestamp": "2026-11-20T10:00:00Z",
                "labels": labels,
                "managedFields": []
            },
            "spec": {
                "containers": specs,
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "serviceAccountName": "default",
                "nodeName": node,
                "schedulerName": "default-scheduler",
                "tolerations": [
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                ],
                "priority": 0,
                "enableServiceLinks": true,
                "preemptionPolicy": "PreemptLowerPriority"
            },
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-11-20T10:00:06Z"}
                ],
                "hostIP": "10.0.0.2",
                "podIP": "10.244.1.7",
                "podIPs": [{"ip": "10.244.1.7"}],
                "startTime": "2026-11-20T10:00:00Z",
                "containerStatuses": statuses,
                "qosClass": "Burstable"
            }
        });
        self.pods.push(Pod { name: name.into(), uid, object, containers: made });
        self.pods.len() - 1
    }

    /// Starts the API server with `pods` (indices) and writes a kubeconfig
    /// for it; returns both.
    fn serve(&self, pods: &[usize], extra: &[&str]) -> (Peer, PathBuf, u16) {
        let list: Vec<&Value> = pods.iter().map(|&i| &self.pods[i].object).collect();
        let path =
            self.dir.path().join(format!("pods-{}.json", NEXT.fetch_add(1, Ordering::Relaxed)));
        fs::write(&path, serde_json::to_vec(&list).unwrap()).unwrap();
        let mut args = vec![path.to_str().unwrap()];
        args.extend_from_slice(extra);
        let mut api = Peer::spawn_script("kube_api.py", &args);
        let port = api.expect_number("port ");
        let kubeconfig = self.kubeconfig(port);
        (api, kubeconfig, port)
    }

    fn kubeconfig(&self, port: u16) -> PathBuf {
        let path = self.dir.path().join(format!("kubeconfig-{port}"));
        fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: http://127.0.0.1:{port}\n\
                 contexts:\n- name: test\n  context:\n    cluster: test\n    user: podtap\n\
                 current-context: test\nusers:\n- name: podtap\n  user:\n    token: test-token\n"
            ),
        )
        .unwrap();
        path
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Servers first, then the cgroups, deepest first.
        self.pods.clear();
        for top in &self.tops {
            let mut all = Vec::new();
            let mut stack = vec![top.clone()];
            while let Some(dir) = stack.pop() {
                if let Ok(entries) = fs::read_dir(&dir) {
                    stack.extend(entries.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
                }
                all.push(dir);
            }
            all.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for dir in all {
                for _ in 0..50 {
                    if fs::remove_dir(&dir).is_ok() || !dir.exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// A POST to the stand-in API server's control endpoints.
fn post(port: u16, path: &str, body: &Value) {
    let body = serde_json::to_vec(body).unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"), "{answer}");
}

/// One request to a server; returns the client's local port.
fn traffic(port: u16) -> u16 {
    let (client, local) = Peer::client(port, &["GET /bytes/300", "GET /"]);
    client.finish();
    local
}

/// The rows of the server side of the connection from `client_port`.
fn server_rows(file: &CaptureFile, client_port: u16) -> Vec<&Row> {
    match file.conn_with_port(client_port) {
        Some(conn) => file.rows.iter().filter(|r| r.conn_id == Some(conn)).collect(),
        None => Vec::new(),
    }
}

/// Asserts that the server of `container` of `pod` was captured, with its
/// pod identity on every row.
fn assert_captured(
    file: &CaptureFile,
    pod: &Pod,
    container: &str,
    client_port: u16,
    ns: &str,
    node: &str,
) {
    let (name, id, server, _, _) = pod.container(container);
    let rows = server_rows(file, client_port);
    assert!(!rows.is_empty(), "pod {} container {name} was not captured", pod.name);
    for row in rows {
        assert_eq!(row.pid, Some(server.pid()));
        assert_eq!(
            row.k8s,
            [
                Some(ns.to_string()),
                Some(pod.name.clone()),
                Some(pod.uid.clone()),
                Some(name.clone()),
                Some(id.clone()),
                Some(node.to_string()),
            ],
            "row {row:?}"
        );
    }
}

fn capture_args<'a>(kubeconfig: &'a Path, node: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--kubeconfig", kubeconfig.to_str().unwrap(), "--node", node];
    args.extend_from_slice(extra);
    args
}

#[test]
fn ns_captures_exactly_the_selected_pods_of_this_node() {
    require_root();
    let mut cluster = Cluster::new();
    let layouts = [
        ("systemd-v2", Layout::SystemdV2),
        ("systemd-v1", Layout::SystemdV1),
        ("cgroupfs-v2", Layout::CgroupfsV2),
        ("cgroupfs-v1", Layout::CgroupfsV1),
    ];
    let ours: Vec<usize> = layouts
        .iter()
        .map(|(name, layout)| {
            cluster.pod("wyw", name, "node-a", json!({"app": "web"}), &["http"], *layout)
        })
        .collect();
    let elsewhere =
        cluster.pod("wyw", "remote", "node-b", json!({"app": "web"}), &["http"], Layout::SystemdV2);
    let other_ns =
        cluster.pod("shop", "cart", "node-a", json!({"app": "web"}), &["http"], Layout::SystemdV2);
    let mut all = ours.clone();
    all.extend([elsewhere, other_ns]);
    let (_api_server, kubeconfig, _) = cluster.serve(&all, &[]);

    let run = Run::new();
    let cap = run.capture_args(&capture_args(&kubeconfig, "node-a", &["--ns", "wyw"]));
    // A process that enters a targeted container during the capture (as
    // with `kubectl exec`), on cgroup v2: the kernel records it from its
    // first syscall, and every row of it carries the pod's identity, without
    // waiting for a rescan.
    let (late, late_port) = Peer::server(&[]);
    let late_cgroup = &cluster.pods[ours[0]].containers[0].4;
    fs::write(late_cgroup.join("cgroup.procs"), late.pid().to_string()).unwrap();
    let ports: Vec<u16> = all.iter().map(|&i| traffic(cluster.pods[i].containers[0].3)).collect();
    let late_client = traffic(late_port);
    run.stop(cap);

    let file = run.read();
    for (k, &i) in ours.iter().enumerate() {
        assert_captured(&file, &cluster.pods[i], "http", ports[k], "wyw", "node-a");
    }
    assert!(server_rows(&file, ports[4]).is_empty(), "a pod of another node was captured");
    assert!(server_rows(&file, ports[5]).is_empty(), "a pod of another namespace was captured");
    let late_rows = server_rows(&file, late_client);
    assert!(!late_rows.is_empty(), "a process started in a container was not captured");
    let pod = &cluster.pods[ours[0]];
    for row in late_rows {
        assert_eq!(row.pid, Some(late.pid()));
        assert_eq!(row.k8s[1].as_deref(), Some(pod.name.as_str()));
        assert_eq!(row.k8s[4].as_deref(), Some(pod.containers[0].1.as_str()));
    }
    // Nothing else has the pod columns, and the file lists the pods seen.
    let targets: Value = serde_json::from_str(&file.meta["podtap.targets"]).unwrap();
    let mut pods: Vec<&str> =
        targets["pods"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    pods.sort_unstable();
    assert_eq!(pods, ["cgroupfs-v1", "cgroupfs-v2", "systemd-v1", "systemd-v2"], "{targets}");
    assert_eq!(targets["kubernetes"]["namespace"], "wyw");
    for pod in targets["pods"].as_array().unwrap() {
        assert_eq!(pod["node"], "node-a");
        assert!(pod["containers"][0]["cgroup"].as_str().is_some(), "{pod}");
    }
}

#[test]
fn pod_selector_and_container_narrow_the_selection() {
    require_root();
    let mut cluster = Cluster::new();
    let web = cluster.pod(
        "wyw",
        "httpserver",
        "node-a",
        json!({"app": "web"}),
        &["http", "sidecar"],
        Layout::SystemdV2,
    );
    let api = cluster.pod(
        "wyw",
        "apiserver",
        "node-a",
        json!({"app": "api"}),
        &["api"],
        Layout::SystemdV2,
    );
    let (_api_server, kubeconfig, _) = cluster.serve(&[web, api], &[]);

    // --pod and --container: one container of one pod.
    let run = Run::new();
    let cap = run.capture_args(&capture_args(
        &kubeconfig,
        "node-a",
        &["--ns", "wyw", "--pod", "httpserver", "--container", "sidecar"],
    ));
    let sidecar = traffic(cluster.pods[web].container("sidecar").3);
    let http = traffic(cluster.pods[web].container("http").3);
    let other = traffic(cluster.pods[api].containers[0].3);
    run.stop(cap);
    let file = run.read();
    assert_captured(&file, &cluster.pods[web], "sidecar", sidecar, "wyw", "node-a");
    assert!(server_rows(&file, http).is_empty(), "a container not asked for was captured");
    assert!(server_rows(&file, other).is_empty(), "a pod not asked for was captured");

    // A label selector.
    let run = Run::new();
    let cap =
        run.capture_args(&capture_args(&kubeconfig, "node-a", &["--ns", "wyw", "-l", "app=api"]));
    let http = traffic(cluster.pods[web].container("http").3);
    let other = traffic(cluster.pods[api].containers[0].3);
    run.stop(cap);
    let file = run.read();
    assert_captured(&file, &cluster.pods[api], "api", other, "wyw", "node-a");
    assert!(server_rows(&file, http).is_empty(), "a pod the selector excludes was captured");
}

#[test]
fn a_pod_that_starts_during_the_capture_is_captured_and_one_that_ends_is_noted() {
    require_root();
    let mut cluster = Cluster::new();
    let first =
        cluster.pod("wyw", "first", "node-a", json!({"app": "web"}), &["http"], Layout::SystemdV2);
    let late =
        cluster.pod("wyw", "late", "node-a", json!({"app": "web"}), &["http"], Layout::SystemdV2);
    let (_api_server, kubeconfig, api_port) = cluster.serve(&[first], &[]);

    let run = Run::new();
    let mut cap = run.capture_args(&capture_args(&kubeconfig, "node-a", &["--ns", "wyw"]));
    let before = traffic(cluster.pods[late].containers[0].3);
    post(api_port, "/podtap/pods", &cluster.pods[late].object);
    cap.wait_for_line("pod wyw/late: capturing 1 container(s)");
    let after = traffic(cluster.pods[late].containers[0].3);
    post(api_port, &format!("/podtap/delete/{}", cluster.pods[first].uid), &json!({}));
    cap.wait_for_line("pod wyw/first ended");
    run.stop(cap);

    let file = run.read();
    assert!(server_rows(&file, before).is_empty(), "traffic from before the pod was announced");
    assert_captured(&file, &cluster.pods[late], "http", after, "wyw", "node-a");
    let targets: Value = serde_json::from_str(&file.meta["podtap.targets"]).unwrap();
    let ended: Vec<(String, bool)> = targets["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p["ended"].as_bool().unwrap()))
        .collect();
    assert_eq!(ended, [("first".to_string(), true), ("late".to_string(), false)]);
}

/// `capture ARGS` that must fail before attaching anything: its exit code
/// and its one line.
fn fails(args: &[&str]) -> (i32, String) {
    let dir = workdir();
    let out = dir.path().join("run.parquet");
    let mut all = args.to_vec();
    all.extend_from_slice(&["-o", out.to_str().unwrap()]);
    let done = Capture::spawn(&all).wait();
    assert!(!out.exists() && !dir.path().join("run.parquet.d").exists(), "a file was written");
    let lines: Vec<&str> = done.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {}", done.stderr);
    (done.status.code().unwrap(), lines[0].to_string())
}

#[test]
fn unreachable_forbidden_and_missing_give_one_line_each() {
    require_root();
    let mut cluster = Cluster::new();
    let web = cluster.pod(
        "wyw",
        "httpserver",
        "node-a",
        json!({"app": "web"}),
        &["http"],
        Layout::SystemdV2,
    );
    let (_api, kubeconfig, _) = cluster.serve(&[web], &[]);
    let (_forbidding, forbidden_config, _) = cluster.serve(&[web], &["--forbid"]);
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable_config = cluster.kubeconfig(closed);

    let (code, line) = fails(&capture_args(&unreachable_config, "node-a", &["--ns", "wyw"]));
    assert_eq!(code, 1);
    assert!(
        line.contains(&format!("API server at http://127.0.0.1:{closed}/ is unreachable")),
        "{line}"
    );

    let (code, line) = fails(&capture_args(&forbidden_config, "node-a", &["--ns", "wyw"]));
    assert_eq!(code, 1);
    assert!(line.contains("refused to list pods in namespace `wyw`: 403"), "{line}");
    assert!(line.contains("scripts/k8s/rbac.yaml"), "{line}");

    let (code, line) = fails(&capture_args(&kubeconfig, "node-z", &["--ns", "wyw"]));
    assert_eq!(code, 2);
    assert_eq!(line, "error: no pods of namespace `wyw` run on node `node-z` (--node or NODE_NAME choose the node)");

    let (code, line) =
        fails(&capture_args(&kubeconfig, "node-a", &["--ns", "wyw", "--pod", "nope"]));
    assert_eq!((code, line.as_str()), (2, "error: pod `nope` is not in namespace `wyw`"));

    let (code, line) =
        fails(&capture_args(&kubeconfig, "node-b", &["--ns", "wyw", "--pod", "httpserver"]));
    assert_eq!(code, 2);
    assert_eq!(
        line,
        "error: pod `httpserver` of namespace `wyw` runs on node `node-a`, not on `node-b`"
    );

    let (code, line) =
        fails(&capture_args(&kubeconfig, "node-a", &["--ns", "wyw", "--container", "db"]));
    assert_eq!((code, line.as_str()), (2, "error: no container named `db` in the selected pods"));

    let (code, line) = fails(&["--pod", "httpserver"]);
    assert_eq!(code, 2);
    assert!(line.contains("--pod needs --ns NAMESPACE"), "{line}");
}

/// Runs kubernetes-validate (installed by scripts/setup.sh) in strict mode.
fn validate(files: &[PathBuf]) -> (bool, String) {
    let venv = std::env::var("PODTAP_VENV").unwrap_or_else(|_| "/opt/podtap-venv".into());
    let out = std::process::Command::new(Path::new(&venv).join("bin/kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.33.0"])
        .args(files)
        .output()
        .expect("kubernetes-validate runs (scripts/setup.sh installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_manifests_pass_the_kubernetes_schemas() {
    let dir = repo_root().join("scripts/k8s");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    let (ok, text) = validate(&files);
    assert!(ok, "{text}");
    // Every object was checked: 2 namespaces, a service account, a cluster
    // role and its binding, the DaemonSet and the two demo pods.
    assert_eq!(text.matches(" passed for resource ").count(), 8, "{text}");
    for kind in ["daemonset/podtap", "clusterrole/podtap", "pod/httpserver", "pod/grpcserver"] {
        assert!(text.contains(kind), "{kind} not checked: {text}");
    }

    // And the check is real: a misspelled field fails it.
    let work = workdir();
    let broken = work.path().join("daemonset.yaml");
    let text = fs::read_to_string(dir.join("daemonset.yaml")).unwrap();
    fs::write(&broken, text.replace("hostPID: true", "hostPid: true")).unwrap();
    let (ok, text) = validate(&[broken]);
    assert!(!ok, "a misspelled field passed: {text}");
    assert!(text.contains("hostPid"), "{text}");
}

#[test]
fn the_daemonset_asks_for_what_capture_needs_and_rbac_only_reads_pods() {
    let dir = repo_root().join("scripts/k8s");
    let daemonset = fs::read_to_string(dir.join("daemonset.yaml")).unwrap();
    for needed in [
        "hostPID: true",
        "fieldPath: spec.nodeName",
        "name: NODE_NAME",
        "path: /var/lib/podtap",
        "serviceAccountName: podtap",
        "\"BPF\"",
        "\"PERFMON\"",
        "\"SYS_RESOURCE\"",
    ] {
        assert!(daemonset.contains(needed), "daemonset.yaml lacks {needed}");
    }
    let rbac = fs::read_to_string(dir.join("rbac.yaml")).unwrap();
    assert!(rbac.contains("resources: [\"pods\"]"));
    assert!(rbac.contains("verbs: [\"get\", \"list\", \"watch\"]"));
    assert_eq!(rbac.matches("verbs:").count(), 1, "RBAC grants more than reading pods");
    let demo = fs::read_to_string(dir.join("demo-pods.yaml")).unwrap();
    assert_eq!(demo.matches("namespace: wyw").count(), 2);
}
