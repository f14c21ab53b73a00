//! One capture from start to finish: check the machine, resolve targets, load
//! and attach the programs, drain the ring buffer into segments until the
//! duration ends or a signal arrives, then detach and write the file.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use formats::wire::{CaptureConfig, KernelError};
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
    time::{interval, MissedTickBehavior},
};
use tracing::info;

use crate::{
    cli::{segment_dir, Config},
    kernel::{clock::WallClock, offsets, preflight},
    output::{
        meta::{self, CaptureInfo, Totals},
        segments::Segments,
    },
    probes::Probes,
    progress::Progress,
    recorder::{Recorder, Stats},
    targets::{
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

/// What a finished capture reports.
#[derive(Debug)]
pub struct Summary {
    pub elapsed: Duration,
    pub processes: usize,
    pub stats: Stats,
    pub kernel_errors: Vec<(&'static str, u64)>,
    pub output: PathBuf,
    pub size: u64,
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
    segments_sent: u32,
}

/// Runs a capture to completion.
pub async fn run(config: Config) -> Result<Summary> {
    preflight::check_privileges()?;
    preflight::check_btf()?;
    preflight::ensure_tracefs()?;

    // Resolve every target before anything is attached: a typo must fail fast.
    let pid_targets = local::pid_targets(&config.targets.pids)?;
    let cgroups = config
        .targets
        .cgroups
        .iter()
        .map(|p| CgroupTarget::open(p))
        .collect::<Result<Vec<_>, _>>()?;

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

    let mut targets = TargetSet::default();
    for p in pid_targets.into_iter().filter(|p| p.pid != std::process::id()) {
        probes.add_pid(p.pid)?;
        targets.add(p);
    }
    for cgroup in &cgroups {
        for id in cgroup.ids() {
            probes.add_cgroup(id)?;
        }
    }
    let clock = WallClock::measure();
    let info = CaptureInfo::new(&config, clock.now_unix_ns());
    let segment_dir = segment_dir(&config.output);
    let segments = Segments::create(&segment_dir)?;
    let writer = Writer::spawn(segments, config.output.clone())?;
    let mut session = Session {
        recorder: Recorder::new(clock),
        lost_seen: Vec::new(),
        segments_sent: 0,
        config,
        probes,
        targets,
        cgroups,
        writer,
        info,
        clock,
    };
    let started = session.start();
    if let Err(e) = started {
        // Nothing was recorded: leave no empty segment directory behind.
        let _ = std::fs::remove_dir(&segment_dir);
        return Err(e);
    }
    let events = session.probes.take_events()?;
    session.capture(events).await
}

impl Session {
    /// Registers the processes found at start and begins recording.
    fn start(&mut self) -> Result<()> {
        self.rescan()?;
        // Children forked between the /proc scan and registration.
        let roots: Vec<u32> = self.targets.processes().map(|p| p.pid).collect();
        for (pid, parent) in local::descendants(&roots) {
            self.add(Process {
                pid,
                comm: local::comm(pid),
                via: Via::Descendant,
                parent: Some(parent),
            })?;
        }
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
        Ok(())
    }

    /// Registers a new target process.
    fn add(&mut self, process: Process) -> Result<()> {
        // capture itself may descend from a target (`--pid $$`) or sit in a
        // target cgroup; it records nothing of itself.
        if self.targets.contains(process.pid) || process.pid == std::process::id() {
            return Ok(());
        }
        self.probes.add_pid(process.pid)?;
        self.targets.add(process);
        Ok(())
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
    }

    /// Picks up processes forked by targets and processes that entered a
    /// target cgroup.
    fn rescan(&mut self) -> Result<()> {
        self.note_forks();
        let mut found = Vec::new();
        for cgroup in &self.cgroups {
            found.extend(cgroup.processes()?);
            for id in cgroup.ids() {
                self.probes.add_cgroup(id)?;
            }
        }
        for pid in found {
            self.add(Process { pid, comm: local::comm(pid), via: Via::Cgroup, parent: None })?;
        }
        Ok(())
    }

    fn drain(&mut self, ring: &mut RingBuf<MapData>) {
        while let Some(item) = ring.next() {
            self.recorder.record(&item);
        }
    }

    /// Turns new ring-full counts into `lost` rows.
    fn account_lost(&mut self) -> Result<()> {
        let per_cpu = self.probes.error_per_cpu(KernelError::RingFull)?;
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

    fn totals(&self) -> Result<Totals> {
        let mut totals = Totals { lost_events: self.recorder.stats().lost, ..Totals::default() };
        for (slot, count) in KernelError::ALL.iter().zip(self.probes.error_totals()?) {
            totals.kernel_errors.insert(slot.name().into(), count.into());
        }
        Ok(totals)
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
        let meta = meta::segment(&self.info, self.segments_sent, &self.targets, &self.totals()?);
        self.writer.segment(batch, meta)
    }

    async fn capture(mut self, ring: RingBuf<MapData>) -> Result<Summary> {
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
        let mut sigterm = signal(SignalKind::terminate()).context("failed to watch SIGTERM")?;
        let mut sigint = signal(SignalKind::interrupt()).context("failed to watch SIGINT")?;
        let deadline = self.config.duration.map(|d| tokio::time::Instant::now() + d);
        let end = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(end);

        let result: Result<()> = loop {
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = match guard {
                        Ok(g) => g,
                        Err(e) => break Err(anyhow::Error::new(e).context("failed to poll the ring buffer")),
                    };
                    self.drain(guard.get_inner_mut());
                    guard.clear_ready();
                }
                _ = poll.tick() => self.drain(ring.get_mut()),
                _ = second.tick() => {
                    let step = self.account_lost().and_then(|()| self.rescan()).and_then(|()| self.cut_segment());
                    if let Err(e) = step {
                        break Err(e);
                    }
                    progress.update(started.elapsed(), self.targets.alive(), &self.recorder.stats());
                }
                _ = &mut end => break Ok(()),
                _ = sigterm.recv() => break Ok(()),
                _ = sigint.recv() => break Ok(()),
            }
            if self.recorder.rows().payload_bytes() >= SEGMENT_BYTES {
                if let Err(e) = self.cut_segment() {
                    break Err(e);
                }
            }
        };
        let elapsed = started.elapsed();
        drop(progress);

        // Stop recording, then hand over everything still in flight.
        self.probes.detach_syscalls()?;
        self.drain(ring.get_mut());
        self.account_lost()?;
        self.note_forks();
        if let Err(e) = result.and_then(|()| self.cut_segment()) {
            let detail = if self.writer.failed() { Some(self.writer.into_error()) } else { None };
            let e = match detail {
                Some(d) => d.context(e.to_string()),
                None => e,
            };
            return Err(e.context(format!(
                "capture stopped; the segments written so far are in `{}`",
                segment_dir(&self.config.output).display()
            )));
        }
        let totals = self.totals()?;
        let meta = meta::complete(&self.info, self.clock.now_unix_ns(), &self.targets, &totals);
        let kernel_errors = totals
            .kernel_errors
            .iter()
            .filter_map(|(k, v)| {
                let n = v.as_u64().unwrap_or(0);
                let name = KernelError::ALL.iter().map(|e| e.name()).find(|name| name == k)?;
                (n > 0).then_some((name, n))
            })
            .collect();
        let processes = self.targets.len();
        let stats = self.recorder.stats();
        let output = self.config.output.clone();
        let size = self.writer.finish(meta).with_context(|| {
            format!(
                "failed to write `{}`; the segments are in `{}`",
                output.display(),
                segment_dir(&output).display()
            )
        })?;
        Ok(Summary { elapsed, processes, stats, kernel_errors, output, size })
    }
}
