//! Which programs of target processes get uprobes: every binary a target runs,
//! and every TLS library it maps, is looked at once (by device and inode, so
//! many pods of one image cost one look and one attach). grpc-go binaries get
//! the header probes, OpenSSL's `libssl` the plaintext probes.
//!
//! The programs found when the capture starts are inspected before recording
//! begins, so their headers are read from the first call on. Programs found
//! later (new pods, forks that exec) are inspected on a worker thread: reading
//! DWARF from a large binary takes a while, and the ring buffer must keep
//! being drained meanwhile.

use std::{
    collections::HashSet,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::mpsc::{channel, Receiver, Sender},
};

use serde::Serialize;
use tracing::{info, warn};

use crate::{
    golang::{self, InspectOptions, Inspection},
    probes::Probes,
    targets::local,
    tls,
};

/// What was done with one binary, for the file metadata.
#[derive(Clone, Debug, Serialize)]
pub struct BinaryNote {
    /// The program's path as the process sees it.
    pub path: String,
    /// The first target process seen running it.
    pub pid: u32,
    pub comm: String,
    /// `grpc_headers` (probes attached), `not_go`, `no_grpc`, `unsupported`
    /// or `failed` (inspected, but the attach failed); for TLS libraries,
    /// `tls_plaintext` (OpenSSL probes attached) or `tls_unsupported`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Build id, Go and grpc-go versions, function and field offsets and
    /// where they came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub go: Option<serde_json::Value>,
    /// A TLS library: which, and where its functions are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<serde_json::Value>,
}

/// A binary to look at: its identity and a path that leads to it.
struct Candidate {
    key: (u64, u64),
    pid: u32,
    comm: String,
    path: String,
}

struct Inspected {
    candidate: Candidate,
    result: Result<Inspection, golang::InspectError>,
    /// A TLS library built into the program.
    built_in_tls: Option<&'static str>,
    /// Where OpenSSL's functions are in it, when it is OpenSSL and they
    /// can be found.
    built_in_openssl: Option<tls::OpenSslFunctions>,
}

/// Looks at the program `pid` runs: Go and grpc-go, and a TLS library of
/// its own.
fn examine(candidate: Candidate, options: &InspectOptions) -> Inspected {
    let data = match golang::read_file(&exe_of(candidate.pid)) {
        Ok(data) => data,
        Err(e) => {
            return Inspected {
                candidate,
                result: Err(e),
                built_in_tls: None,
                built_in_openssl: None,
            }
        }
    };
    let result = golang::inspect_bytes(&data, options);
    let mut built_in_openssl = None;
    let built_in_tls = match &result {
        Ok(Inspection::NotGo) => {
            let found = tls::built_in(&data);
            if found == Some(tls::BUILT_IN_OPENSSL) {
                built_in_openssl = tls::functions_in(&data, candidate.path.clone()).ok();
            }
            found
        }
        Ok(_) if golang::has_function(&data, "crypto/tls.(*Conn).Read") => Some("Go's crypto/tls"),
        _ => None,
    };
    Inspected { candidate, result, built_in_tls, built_in_openssl }
}

/// Looks at the binaries of target processes and attaches what fits.
pub struct Instrumenter {
    enabled: bool,
    options: InspectOptions,
    /// Binaries looked at or being looked at.
    seen: HashSet<(u64, u64)>,
    /// TLS libraries looked at.
    seen_libraries: HashSet<(u64, u64)>,
    notes: Vec<BinaryNote>,
    /// Notes already handed out by [`Self::collect`].
    reported: usize,
    done_tx: Sender<Inspected>,
    done_rx: Receiver<Inspected>,
}

impl Instrumenter {
    /// `grpc_go_version`: the version to assume for binaries that name none
    /// (`--grpc-go-version`).
    pub fn new(enabled: bool, grpc_go_version: Option<String>) -> Self {
        let (done_tx, done_rx) = channel();
        let options = InspectOptions { fallback_grpc_version: grpc_go_version };
        Self {
            enabled,
            options,
            seen: HashSet::new(),
            seen_libraries: HashSet::new(),
            notes: Vec::new(),
            reported: 0,
            done_tx,
            done_rx,
        }
    }

    /// What was found so far, for the metadata.
    pub fn notes(&self) -> serde_json::Value {
        serde_json::to_value(&self.notes).unwrap_or_default()
    }

    /// The binary `pid` runs, unless it was looked at already. A process that
    /// is gone, or a kernel thread, has none.
    fn candidate(&mut self, pid: u32) -> Option<Candidate> {
        if !self.enabled {
            return None;
        }
        let exe = format!("/proc/{pid}/exe");
        let meta = std::fs::metadata(&exe).ok()?;
        let key = (meta.dev(), meta.ino());
        if !self.seen.insert(key) {
            return None;
        }
        let path = std::fs::read_link(&exe)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| exe.clone());
        Some(Candidate { key, pid, comm: local::comm(pid), path })
    }

    /// Inspects the binary of `pid` now and attaches to it; for the targets
    /// found at start.
    pub fn consider_now(&mut self, pid: u32, probes: &mut Probes) {
        self.libraries(pid, probes);
        if let Some(candidate) = self.candidate(pid) {
            let inspected = examine(candidate, &self.options);
            self.settle(inspected, probes);
        }
    }

    /// Inspects the binary of `pid` on a worker thread; [`Self::collect`]
    /// attaches once it is done. Its TLS libraries are handled at once.
    pub fn consider(&mut self, pid: u32, probes: &mut Probes) {
        self.libraries(pid, probes);
        let Some(candidate) = self.candidate(pid) else { return };
        let done = self.done_tx.clone();
        let options = self.options.clone();
        let spawned = std::thread::Builder::new().name("inspect".into()).spawn(move || {
            let _ = done.send(examine(candidate, &options));
        });
        if let Err(e) = spawned {
            warn!("cannot inspect a program: {e}; its traffic is captured by syscalls only");
        }
    }

    /// Attaches to the binaries whose inspection finished; returns whether
    /// the notes changed.
    pub fn collect(&mut self, probes: &mut Probes) -> bool {
        while let Ok(done) = self.done_rx.try_recv() {
            self.settle(done, probes);
        }
        let changed = self.notes.len() != self.reported;
        self.reported = self.notes.len();
        changed
    }

    /// Attaches the plaintext probes to the OpenSSL libraries `pid` maps, and
    /// names the TLS libraries podtap cannot read, each once. Called again
    /// for running targets: they may load one later.
    pub fn libraries(&mut self, pid: u32, probes: &mut Probes) {
        if !self.enabled {
            return;
        }
        for lib in tls::libraries(pid) {
            if !self.seen_libraries.insert(lib.key) {
                continue;
            }
            let comm = local::comm(pid);
            let who = format!("pid {pid} ({comm})");
            let mut note = BinaryNote {
                path: lib.path.clone(),
                pid,
                comm,
                outcome: "tls_unsupported",
                reason: None,
                go: None,
                tls: Some(serde_json::json!({ "library": lib.kind.name() })),
            };
            if lib.kind != tls::Kind::OpenSsl {
                warn!(
                    "{who}: uses {} ({}), which podtap does not read; its TLS traffic is recorded encrypted",
                    lib.kind.name(),
                    lib.path
                );
                note.reason = Some(format!("{} is not supported", lib.kind.name()));
                self.notes.push(note);
                continue;
            }
            let attached = tls::openssl_functions(&lib).map_err(anyhow::Error::new).and_then(|f| {
                probes.attach_openssl(&lib.open_path, &f)?;
                Ok(f)
            });
            match attached {
                Ok(f) => {
                    info!("{who}: reading TLS plaintext from {}", lib.path);
                    note.outcome = "tls_plaintext";
                    note.tls = Some(serde_json::json!({
                        "library": "OpenSSL",
                        "functions": f,
                        // No struct offsets: the socket is the one the call's
                        // own read or write syscall used, on its thread.
                        "socket_from": "syscall",
                    }));
                }
                Err(e) => {
                    warn!("{who}: cannot read TLS plaintext from {}: {e:#}", lib.path);
                    note.outcome = "failed";
                    note.reason = Some(format!("{e:#}"));
                }
            }
            self.notes.push(note);
        }
    }

    fn settle(&mut self, done: Inspected, probes: &mut Probes) {
        let Inspected { candidate: c, result, built_in_tls, built_in_openssl } = done;
        let who = format!("pid {} ({})", c.pid, c.comm);
        let mut tls_note = built_in_tls
            .map(|library| serde_json::json!({ "library": library, "plaintext": false }));
        match (built_in_tls, built_in_openssl) {
            (_, Some(f)) => match probes.attach_openssl(&exe_of(c.pid), &f) {
                Ok(()) => {
                    info!("{who}: reading TLS plaintext from the OpenSSL built into {}", c.path);
                    tls_note = Some(serde_json::json!({
                        "library": "OpenSSL (built in)",
                        "plaintext": true,
                        "functions": f,
                        "socket_from": "syscall, else the thread's last read",
                    }));
                }
                Err(e) => warn!("{who}: cannot read TLS plaintext from {}: {e:#}", c.path),
            },
            (Some(library), None) => info!(
                "{who}: {} uses {library}, which podtap does not read: its TLS connections are recorded encrypted",
                c.path
            ),
            (None, None) => {}
        }
        let mut note = BinaryNote {
            path: c.path.clone(),
            pid: c.pid,
            comm: c.comm.clone(),
            outcome: "unsupported",
            reason: None,
            go: None,
            tls: tls_note,
        };
        match result {
            // The process ended before its binary was read or attached to;
            // another process running it will be looked at again.
            Err(_) if gone(c.pid) => {
                self.seen.remove(&c.key);
                return;
            }
            Err(e) => {
                warn!("{who}: cannot inspect {}: {e}; captured by syscalls only", c.path);
                note.reason = Some(e.to_string());
            }
            Ok(Inspection::NotGo) => {
                info!("{who}: not a Go program; HTTP/2 headers come from the wire only");
                note.outcome = "not_go";
            }
            Ok(Inspection::NoGrpc { go_version }) => {
                info!(
                    "{who}: a Go program ({go_version}) without grpc-go; captured by syscalls only"
                );
                note.outcome = "no_grpc";
                note.go = Some(serde_json::json!({ "go_version": go_version }));
            }
            Ok(Inspection::Unsupported { go_version, grpc_version, reason }) => {
                warn!(
                    "{who}: cannot read gRPC headers from {}: {reason}; captured by syscalls only",
                    c.path
                );
                note.reason = Some(reason);
                note.go = Some(serde_json::json!({
                    "go_version": go_version,
                    "grpc_version": grpc_version,
                }));
            }
            Ok(Inspection::Instrumentable(binary)) => {
                note.go = Some(serde_json::to_value(&binary).unwrap_or_default());
                match probes.attach_go(&exe_of(c.pid), binary.probe_points(), &binary.offsets) {
                    Ok(()) => {
                        info!(
                            "{who}: reading gRPC headers from grpc-go {} ({}, offsets from {})",
                            binary.grpc_version.as_deref().unwrap_or("of unknown version"),
                            binary.go_version,
                            binary.offsets_source,
                        );
                        note.outcome = "grpc_headers";
                    }
                    Err(_) if gone(c.pid) => {
                        self.seen.remove(&c.key);
                        return;
                    }
                    Err(e) => {
                        warn!("{who}: {e:#}; captured by syscalls only");
                        note.outcome = "failed";
                        note.reason = Some(format!("{e:#}"));
                    }
                }
            }
        }
        self.notes.push(note);
    }
}

/// Whether process `pid` has ended.
fn gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A path to the program `pid` runs that works from any mount namespace.
fn exe_of(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/exe"))
}
