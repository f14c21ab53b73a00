//! One capture from start to finish: check the machine, resolve targets, load
//! and attach the programs, drain the ring buffer into segments until the
//! duration ends or a signal arrives, then detach and write the file.
//!
//! Once recording has begun, nothing that goes wrong loses what was already
//! recorded: a vanished cgroup or a full map is a warning, and even a failure
//! in the loop still ends with the buffered rows written and the file merged.

use std::{
    collections::HashSet,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use formats::wire::{CaptureConfig, KernelError};
use futures::StreamExt;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, Signal, SignalKind},
    time::{interval, MissedTickBehavior},
};
use tracing::{info, warn};

use crate::{
    cli::{segment_dir, Config},
    instrument::Instrumenter,
    kernel::{clock::WallClock, offsets, preflight},
    output::{
        merge,
        meta::{self, CaptureInfo, Totals},
        segments::Segments,
    },
    probes::{ErrorCounts, Probes},
    progress::Progress,
    recorder::{Recorder, Stats},
    targets::{
        k8s::{
            self,
            api::{self, PodChange},
        },
        local::{self, CgroupTarget},
        Process, TargetSet, Via,
    },
    writer::Writer,
};

/// How often the ring buffer is drained when the kernel did not wake us: it
/// only wakes the reader once a quarter of the buffer is full.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// Segments are cut this often (the crash-safety bound of SPEC §3)…
const SEGMENT_EVERY: Duration = Duration::from_secs(1);
/// …or as soon as this much payload is buffered.
const SEGMENT_BYTES: usize = 32 << 20;
/// Records handled per drain before the loop looks at timers and signals.
const DRAIN_BATCH: usize = 16384;
/// Every this many ticks (seconds), the libraries of running targets are
/// looked at again…
const LIBRARY_RECHECK_TICKS: u64 = 2;
/// …for at most this many processes.
const LIBRARY_RECHECK_MAX: usize = 512;

/// What a finished capture reports.
#[derive(Debug)]
pub struct Summary {
    pub elapsed: Duration,
    pub processes: usize,
    pub stats: Stats,
    pub kernel_errors: Vec<(&'static str, u64)>,
    pub output: PathBuf,
    pub size: u64,
    /// Set when recording stopped before the duration or a signal ended it;
    /// the file holds everything recorded until then.
    pub stopped_early: Option<anyhow::Error>,
}

/// SIGINT and SIGTERM, watched from the very start so that a Ctrl-C while the
/// programs load still ends in a clean, complete file.
pub struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    pub fn watch() -> Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("failed to watch SIGINT")?,
            term: signal(SignalKind::terminate()).context("failed to watch SIGTERM")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// Live state of a running capture.
struct Session {
    config: Config,
    probes: Probes,
    targets: TargetSet,
    cgroups: Vec<CgroupTarget>,
    recorder: Recorder,
    writer: Writer,
    info: CaptureInfo,
    clock: WallClock,
    /// Ring-full counters per CPU already turned into `lost` rows.
    lost_seen: Vec<u64>,
    /// The kernel's error counters as last read.
    errors: ErrorCounts,
    segments_sent: u32,
    /// Problems already reported once (a cgroup that vanished, a full map).
    warned: HashSet<String>,
    /// The selected pods (`--ns`), and their changes from the API's watch.
    pods: Option<k8s::Pods>,
    pod_changes: Option<UnboundedReceiver<PodChange>>,
    /// Uprobes on the programs targets run.
    instrumenter: Instrumenter,
    /// Set once recording began: programs found from then on are inspected
    /// in the background.
    recording: bool,
    /// Ticks so far, for the work done every few seconds.
    ticks: u64,
}

/// Runs a capture to completion.
pub async fn run(config: Config, mut signals: Signals) -> Result<Summary> {
    preflight::check_privileges()?;
    preflight::check_kernel()?;
    preflight::check_pid_namespace()?;
    preflight::ensure_tracefs()?;

    // Resolve every target before anything is attached: a typo must fail fast.
    let roots = local::pid_targets(&config.targets.pids)?;
    let mut cgroups = config
        .targets
        .cgroups
        .iter()
        .map(|p| CgroupTarget::open(p))
        .collect::<Result<Vec<_>, _>>()?;
    let (pods, pod_changes) = match &config.targets.pods {
        Some(selection) => {
            let anything_else = !(cgroups.is_empty() && config.targets.pids.is_empty());
            let (book, targets, changes) = select_pods(selection, anything_else).await?;
            cgroups.extend(targets);
            (Some(book), Some(changes))
        }
        None => (None, None),
    };

    let offsets = offsets::from_btf_file(std::path::Path::new(offsets::VMLINUX_BTF))
        .context("failed to read kernel structure offsets")?;
    let program_config = CaptureConfig {
        max_payload: config.max_payload,
        wakeup_bytes: config.ring_buffer_size / 4,
        offsets,
    };
    let mut probes =
        Probes::load(&program_config, config.ring_buffer_size, cgroups.iter().any(|c| c.v2))?;
    // Fork tracking first, so a target forking while we register is seen.
    probes.attach_lifecycle()?;

    let clock = WallClock::measure();
    let info = CaptureInfo::new(&config, clock.now_unix_ns());
    let segment_dir = segment_dir(&config.output);
    let segments = Segments::create(&segment_dir)?;
    let writer = Writer::spawn(segments, config.output.clone())?;
    let mut session = Session {
        recorder: Recorder::new(clock, config.redaction.clone()),
        lost_seen: Vec::new(),
        errors: ErrorCounts::default(),
        segments_sent: 0,
        warned: HashSet::new(),
        pods,
        pod_changes,
        instrumenter: Instrumenter::new(config.uprobes, config.grpc_go_version.clone()),
        recording: false,
        ticks: 0,
        config,
        probes,
        targets: TargetSet::default(),
        cgroups,
        writer,
        info,
        clock,
    };
    session.register_containers(0);
    session.note_pods();
    let events = match session.start(roots) {
        Ok(events) => events,
        Err(e) => {
            // Nothing was recorded: leave no empty segment directory behind.
            let _ = std::fs::remove_dir(&segment_dir);
            return Err(e);
        }
    };
    session.capture(events, &mut signals).await
}

/// The selected pods now, their containers as cgroup targets, and a channel
/// of their changes from then on. Fails when no container of theirs can be
/// captured and nothing else is targeted.
async fn select_pods(
    selection: &api::Selection,
    anything_else: bool,
) -> Result<(k8s::Pods, Vec<CgroupTarget>, UnboundedReceiver<PodChange>)> {
    let (client, url) = api::connect(selection).await?;
    let found = api::list(&client, &url, selection).await?;
    let hierarchies = k8s::cgroup::hierarchies().context("failed to read the cgroup mounts")?;
    let mut book = k8s::Pods::new(hierarchies);
    let mut cgroups = Vec::new();
    let mut problems = Vec::new();
    for pod in &found {
        let (targets, mut trouble) = book.add(pod);
        cgroups.extend(targets);
        problems.append(&mut trouble);
    }
    if cgroups.is_empty() && !anything_else {
        anyhow::bail!(
            "found {} pod(s) of namespace `{}` on node `{}`, but {}",
            found.len(),
            selection.namespace,
            selection.node,
            problems.first().map_or("none has a running container".into(), |p| p.clone())
        );
    }
    for problem in problems {
        warn!("{problem}");
    }
    // Pods that start (or restart a container) during the capture.
    let (tx, rx) = unbounded_channel();
    let mut changes = Box::pin(api::watch(client, selection.clone()));
    tokio::spawn(async move {
        while let Some(change) = changes.next().await {
            if tx.send(change).is_err() {
                break;
            }
        }
    });
    Ok((book, cgroups, rx))
}

impl Session {
    /// Registers the processes found at start and begins recording.
    fn start(&mut self, roots: Vec<Process>) -> Result<RingBuf<MapData>> {
        for root in roots {
            self.add(root.pid, Via::Pid, None);
        }
        self.rescan();
        // Descendants that existed at start. A second pass catches children
        // forked between the first /proc scan and their parent's registration
        // (from then on the fork program sees every new child).
        for _ in 0..2 {
            let known: Vec<u32> = self.targets.processes().iter().map(|p| p.pid).collect();
            for (pid, parent) in local::descendants(&known) {
                self.add(pid, Via::Descendant, Some(parent));
            }
        }
        // The programs running now are inspected before recording begins, so
        // the headers of their first calls are read too.
        for pid in self.targets.processes().iter().map(|p| p.pid).collect::<Vec<_>>() {
            self.instrumenter.consider_now(pid, &mut self.probes);
        }
        self.publish_binaries();
        self.recording = true;
        let events = self.probes.take_events()?;
        self.probes.attach_syscalls()?;
        info!(
            "capturing {} process(es){} into {}",
            self.targets.len(),
            match self.config.duration {
                Some(d) => format!(" for {}", humantime::format_duration(d)),
                None => " until Ctrl-C".into(),
            },
            self.config.output.display()
        );
        Ok(events)
    }

    /// Reports a problem that does not stop the capture, once.
    fn warn_once(&mut self, key: String, message: impl FnOnce() -> String) {
        if self.warned.insert(key) {
            warn!("{}", message());
        }
    }

    /// Registers a target process unless it already is one. `in_kernel`
    /// is false for members of a cgroup v2 target: the kernel matches those by
    /// cgroup id already.
    fn add_with(&mut self, pid: u32, via: Via, parent: Option<u32>, in_kernel: bool) {
        // capture itself may descend from a target (`--pid $$`) or sit in a
        // target cgroup; it records nothing of itself.
        if pid == std::process::id() || self.targets.is_live(pid) {
            return;
        }
        if in_kernel {
            if let Err(e) = self.probes.add_pid(pid) {
                self.warn_once("add_pid".into(), || {
                    format!("{e:#}; some processes are not captured")
                });
                return;
            }
        }
        self.targets.add(Process { pid, comm: local::comm(pid), via, parent });
        if self.recording {
            self.instrumenter.consider(pid, &mut self.probes);
        }
    }

    fn add(&mut self, pid: u32, via: Via, parent: Option<u32>) {
        self.add_with(pid, via, parent, true);
    }

    /// Notes processes forked by targets (the kernel already targets them;
    /// this keeps the list for the metadata).
    fn note_forks(&mut self) {
        for fork in self.recorder.take_forks() {
            let comm = match local::comm(fork.pid) {
                c if c.is_empty() => fork.comm,
                c => c,
            };
            self.targets.add(Process {
                pid: fork.pid,
                comm,
                via: Via::Fork,
                parent: Some(fork.parent),
            });
        }
        // A new program in a target process may be a Go binary, or map a
        // TLS library.
        for pid in self.recorder.take_execs() {
            self.instrumenter.consider(pid, &mut self.probes);
        }
        self.publish_binaries();
    }

    /// Attaches to the programs whose inspection finished, and puts what was
    /// found into the metadata of the segments to come.
    fn publish_binaries(&mut self) {
        if self.instrumenter.collect(&mut self.probes) {
            self.info.binaries = self.instrumenter.notes();
        }
    }

    /// Picks up processes forked by targets and processes that entered a
    /// target cgroup.
    fn rescan(&mut self) {
        self.note_forks();
        let mut found = Vec::new();
        let mut problems = Vec::new();
        for cgroup in &self.cgroups {
            match cgroup.scan() {
                Ok(scan) => {
                    for id in scan.ids {
                        if let Err(e) = self.probes.add_cgroup(id) {
                            problems.push(("add_cgroup".into(), format!("{e:#}")));
                        }
                    }
                    found.extend(
                        scan.pids.into_iter().map(|pid| (pid, cgroup.v2, cgroup.identity.clone())),
                    );
                }
                Err(e) => problems.push((cgroup.path.display().to_string(), format!("{e:#}"))),
            }
        }
        for (key, message) in problems {
            self.warn_once(key, || message);
        }
        for (pid, v2, identity) in found {
            self.add_with(pid, Via::Cgroup, None, !v2);
            if let Some(identity) = identity {
                self.recorder.set_identity(pid, identity);
            }
        }
    }

    /// Handles up to a batch of records; returns whether more may be waiting.
    /// Bounded so that segments, timers and signals are never starved.
    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> bool {
        for _ in 0..DRAIN_BATCH {
            let Some(item) = ring.next() else { return false };
            self.recorder.record(&item);
            drop(item);
            if self.recorder.rows().payload_bytes() >= SEGMENT_BYTES {
                return true;
            }
        }
        true
    }

    /// Reads the kernel's error counters and turns new ring-full counts into
    /// `lost` rows.
    fn account_lost(&mut self) -> Result<()> {
        self.errors = self.probes.errors()?;
        let per_cpu = &self.errors.ring_full_per_cpu;
        self.lost_seen.resize(per_cpu.len(), 0);
        let now = self.clock.now_unix_ns();
        for (cpu, (&count, seen)) in per_cpu.iter().zip(self.lost_seen.iter_mut()).enumerate() {
            if count > *seen {
                self.recorder.lost(cpu as u32, count - *seen, now);
                *seen = count;
            }
        }
        Ok(())
    }

    fn totals(&self) -> Totals {
        let stats = self.recorder.stats();
        Totals {
            lost_events: stats.lost,
            malformed_records: stats.malformed,
            rejected_header_blocks: stats.h2_rejected,
            kernel_errors: self.errors.totals,
            redaction: self.recorder.redaction(),
        }
    }

    /// Hands the buffered rows to the writer as one segment.
    fn cut_segment(&mut self) -> Result<()> {
        if self.recorder.rows().is_empty() {
            return Ok(());
        }
        if self.writer.failed() {
            anyhow::bail!("the capture file could not be written");
        }
        let batch = self.recorder.rows().finish().context("failed to assemble rows")?;
        self.segments_sent += 1;
        let totals = self.totals();
        let meta =
            meta::segment(&self.info, self.segments_sent, self.targets.take_unreported(), &totals);
        self.writer.segment(batch, meta)
    }

    /// Tells the recorder where the containers among `cgroups[from..]` are,
    /// so their new processes are labelled from their first row.
    fn register_containers(&mut self, from: usize) {
        let Some(pods) = &self.pods else { return };
        for target in &self.cgroups[from..] {
            if let (Some(identity), Some(relative)) =
                (&target.identity, pods.relative(&target.path))
            {
                self.recorder.add_container(relative, identity.clone());
            }
        }
    }

    /// Follows the selected pods: new ones (and restarted containers) become
    /// targets, ended ones are noted.
    fn follow_pods(&mut self) {
        let (Some(changes), Some(pods)) = (self.pod_changes.as_mut(), self.pods.as_mut()) else {
            return;
        };
        let mut notes = Vec::new();
        let first_new = self.cgroups.len();
        let mut changed = false;
        while let Ok(change) = changes.try_recv() {
            changed = true;
            match change {
                PodChange::Seen(pod) => {
                    let (targets, problems) = pods.add(&pod);
                    if !targets.is_empty() {
                        notes.push((
                            None,
                            format!(
                                "pod {}/{}: capturing {} container(s)",
                                pod.namespace,
                                pod.name,
                                targets.len()
                            ),
                        ));
                    }
                    self.cgroups.extend(targets);
                    notes.extend(problems.into_iter().map(|p| (Some(p.clone()), p)));
                }
                PodChange::Gone { namespace, name, uid } => {
                    if pods.ended(&uid) {
                        notes.push((None, format!("pod {namespace}/{name} ended")));
                    }
                }
                PodChange::Trouble(e) => {
                    notes.push((Some("watch".into()), format!("watching pods: {e}; retrying")))
                }
            }
        }
        if !changed {
            return;
        }
        self.register_containers(first_new);
        for (key, note) in notes {
            match key {
                Some(key) => self.warn_once(key, || note),
                None => info!("{note}"),
            }
        }
        self.note_pods();
    }

    /// Puts the pods seen into the metadata of the segments to come.
    fn note_pods(&mut self) {
        if let Some(pods) = &self.pods {
            self.info.pods = serde_json::to_value(pods.records()).unwrap_or_default();
        }
    }

    /// The once-a-second housekeeping.
    fn tick(&mut self) -> Result<()> {
        self.follow_pods();
        if let Err(e) = self.account_lost() {
            self.warn_once("account_lost".into(), || format!("{e:#}"));
        }
        self.ticks += 1;
        if self.ticks.is_multiple_of(LIBRARY_RECHECK_TICKS) {
            // Libraries loaded after a process was first seen (Python loads
            // libssl when it first imports ssl); the rescan publishes them.
            let live: Vec<u32> = self.targets.live().take(LIBRARY_RECHECK_MAX).collect();
            for pid in live {
                self.instrumenter.libraries(pid, &mut self.probes);
            }
        }
        self.rescan();
        self.cut_segment()
    }

    async fn capture(mut self, ring: RingBuf<MapData>, signals: &mut Signals) -> Result<Summary> {
        let started = Instant::now();
        let progress = Progress::start(self.config.quiet, self.config.duration);
        // SAFETY: the ring buffer owns its fd and keeps it open for as long as
        // the AsyncFd holds it.
        let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .context("failed to watch the ring buffer")?;
        let mut poll = interval(POLL_EVERY);
        poll.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut second = interval(SEGMENT_EVERY);
        second.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let deadline = self.config.duration.map(|d| tokio::time::Instant::now() + d);
        let end = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(end);

        let mut backlog = false;
        let outcome: Result<()> = loop {
            tokio::select! {
                biased;
                _ = signals.recv() => break Ok(()),
                _ = &mut end => break Ok(()),
                _ = second.tick() => {
                    if let Err(e) = self.tick() {
                        break Err(e);
                    }
                    progress.update(started.elapsed(), self.targets.prune(), &self.recorder.stats());
                }
                _ = std::future::ready(()), if backlog => backlog = self.drain(ring.get_mut()),
                guard = ring.readable_mut() => {
                    let mut guard = match guard {
                        Ok(g) => g,
                        Err(e) => break Err(anyhow::Error::new(e).context("failed to poll the ring buffer")),
                    };
                    backlog = self.drain(guard.get_inner_mut());
                    if !backlog {
                        guard.clear_ready();
                    }
                }
                _ = poll.tick() => backlog = self.drain(ring.get_mut()),
            }
            if self.recorder.rows().payload_bytes() >= SEGMENT_BYTES {
                if let Err(e) = self.cut_segment() {
                    break Err(e);
                }
            }
        };
        let elapsed = started.elapsed();
        drop(progress);
        self.stop_recording(ring.get_mut()).await;
        self.finish(elapsed, outcome.err(), signals).await
    }

    /// Detaches the programs and hands over every event already recorded.
    async fn stop_recording(&mut self, ring: &mut RingBuf<MapData>) {
        if let Err(e) = self.probes.detach_syscalls() {
            warn!("{e:#}");
        }
        // Programs that were running on other CPUs may still commit records;
        // the ring is empty only once it stays empty.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut quiet = 0;
        while quiet < 2 {
            if self.drain(ring) {
                if self.recorder.rows().payload_bytes() >= SEGMENT_BYTES {
                    if let Err(e) = self.cut_segment() {
                        warn!("{e:#}");
                        break;
                    }
                }
            } else {
                quiet += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        if let Err(e) = self.account_lost() {
            warn!("{e:#}");
        }
        self.note_forks();
    }

    /// Writes the last segment and merges the file. A second Ctrl-C while
    /// merging gives up on the merge and leaves the segments.
    async fn finish(
        mut self,
        elapsed: Duration,
        stopped_early: Option<anyhow::Error>,
        signals: &mut Signals,
    ) -> Result<Summary> {
        let output = self.config.output.clone();
        let segments_left =
            || format!("the segments recorded so far are in `{}`", segment_dir(&output).display());
        if let Err(e) = self.cut_segment() {
            let e = if self.writer.failed() {
                self.writer.into_error().context(e.to_string())
            } else {
                e
            };
            let e = match stopped_early {
                Some(first) => e.context(format!("{first:#}")),
                None => e,
            };
            return Err(e.context(segments_left()));
        }
        let totals = self.totals();
        let meta =
            meta::complete(&self.info, self.clock.now_unix_ns(), self.targets.processes(), &totals);
        let kernel_errors = KernelError::ALL
            .iter()
            .filter(|e| totals.kernel_errors[**e as usize] > 0)
            .map(|e| (e.name(), totals.kernel_errors[*e as usize]))
            .collect();
        let processes = self.targets.len();
        let stats = self.recorder.stats();
        let writer = self.writer;
        let merging = tokio::task::spawn_blocking(move || writer.finish(meta));
        let size = tokio::select! {
            joined = merging => joined.context("the writer thread panicked")?,
            _ = signals.recv() => {
                let _ = std::fs::remove_file(merge::temporary(&output));
                eprintln!("interrupted while writing `{}`; {}", output.display(), segments_left());
                std::process::exit(130);
            }
        }
        .with_context(|| format!("failed to write `{}`; {}", output.display(), segments_left()))?;
        Ok(Summary { elapsed, processes, stats, kernel_errors, output, size, stopped_early })
    }
}
