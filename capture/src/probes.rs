//! Loading the eBPF object, configuring it, attaching its programs and giving
//! typed access to its maps.

use std::{collections::HashSet, path::Path};

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
        ProgramError, RawTracePoint, TracePoint, UProbe,
    },
    Ebpf, EbpfLoader,
};
use formats::wire::{
    CaptureConfig, GoOffsets, KernelError, KERNEL_ERROR_SLOTS, MAX_GO_BINARIES, TARGET_EXPLICIT,
};

/// The kernel's counters of what was not (fully) recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Every slot summed over CPUs, indexed by [`KernelError`].
    pub totals: [u64; KERNEL_ERROR_SLOTS as usize],
    /// Events dropped because the ring buffer was full, per CPU.
    pub ring_full_per_cpu: Vec<u64>,
}

/// The compiled programs, embedded at build time by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/capture-ebpf"));

/// Tracepoint programs that follow process and socket lifetimes, attached
/// (with the fork program) before targets are registered.
const LIFECYCLE: &[(&str, &str, &[&str])] = &[
    ("sched_process_exit", "sched", &["sched_process_exit"]),
    ("sched_process_exec", "sched", &["sched_process_exec"]),
    ("tcp_destroy_sock", "tcp", &["tcp_destroy_sock"]),
];

/// The data and connection programs and the syscall tracepoints each serves.
const SYSCALLS: &[(&str, &[&str])] = &[
    ("sys_exit_read", &["sys_exit_read"]),
    ("sys_exit_recvfrom", &["sys_exit_recvfrom"]),
    ("sys_exit_readv", &["sys_exit_readv"]),
    ("sys_exit_recvmsg", &["sys_exit_recvmsg"]),
    ("sys_exit_write", &["sys_exit_write"]),
    ("sys_exit_sendto", &["sys_exit_sendto"]),
    ("sys_exit_writev", &["sys_exit_writev"]),
    ("sys_exit_sendmsg", &["sys_exit_sendmsg"]),
    ("sys_exit_connect", &["sys_exit_connect"]),
    ("sys_exit_accept", &["sys_exit_accept", "sys_exit_accept4"]),
    ("sys_enter_close", &["sys_enter_close"]),
];

/// The Go header probes: server and client `operateHeaders`, and
/// `loopyWriter.writeHeader`.
const GO_PROGRAMS: [&str; 3] =
    ["go_server_operate_headers", "go_client_operate_headers", "go_loopy_write_header"];

/// The OpenSSL plaintext probes: one entry and one return program, attached
/// to each function with a cookie saying which it is.
const TLS_PROGRAMS: [&str; 2] = ["ssl_entry", "ssl_return"];
/// Forgets what was known of an `SSL *` when it is freed.
const TLS_FREE: &str = "ssl_free";
/// Cookie bits of the TLS probes (see `capture-ebpf/src/tls.rs`).
const TLS_WRITE: u64 = 1;
const TLS_EX: u64 = 2;

/// The loaded programs and their maps.
pub struct Probes {
    ebpf: Ebpf,
    targets: HashMap<MapData, u32, u32>,
    cgroups: HashMap<MapData, u64, u32>,
    /// The ids already in `cgroups`, so rescans cost no map lookups.
    cgroup_ids: HashSet<u64>,
    /// Bumped after every change of the target maps; the programs cache
    /// their answer per CPU until it changes.
    generation: Array<MapData, u64>,
    errors: PerCpuArray<MapData, u64>,
    /// Per-binary offsets of the Go header probes, by attach cookie.
    go_offsets: Array<MapData, GoOffsets>,
    /// Slots of `go_offsets` in use.
    go_binaries: u32,
    tls_loaded: bool,
}

/// Formats a load failure with the verifier's explanation, which is the only
/// useful part when a program is rejected.
fn describe(err: ProgramError) -> anyhow::Error {
    match err {
        ProgramError::LoadError { io_error, verifier_log } => {
            anyhow!("{io_error}; verifier log:\n{verifier_log}")
        }
        other => anyhow::Error::new(other),
    }
}

impl Probes {
    /// Loads the object with `config`, a ring buffer of `ring_bytes`, and
    /// cgroup matching switched on when `use_cgroups`.
    pub fn load(config: &CaptureConfig, ring_bytes: u32, use_cgroups: bool) -> Result<Self> {
        let cpus =
            aya::util::nr_cpus().map_err(|(_, e)| e).context("failed to count possible CPUs")?;
        let use_cgroups = u32::from(use_cgroups);
        let mut ebpf = EbpfLoader::new()
            .override_global("CONFIG", config, true)
            .override_global("USE_CGROUPS", &use_cgroups, true)
            .map_max_entries("EVENTS", ring_bytes)
            .map_max_entries("SCRATCH", cpus as u32)
            .load(OBJECT)
            .context("failed to load the eBPF object")?;
        let mut map = |name: &str| {
            ebpf.take_map(name).ok_or_else(|| anyhow!("eBPF object has no map {name}"))
        };
        let targets = HashMap::try_from(map("TARGET_PIDS")?)?;
        let cgroups = HashMap::try_from(map("TARGET_CGROUPS")?)?;
        let errors = PerCpuArray::try_from(map("ERRORS")?)?;
        let go_offsets = Array::try_from(map("GO_OFFSETS")?)?;
        let mut generation = Array::try_from(map("TARGET_GEN")?)?;
        generation.set(0, 1, 0).context("failed to initialise the target generation")?;
        // Verify every program now, before anything is attached or written.
        for (name, prog) in ebpf.programs_mut() {
            let loaded = match prog {
                aya::programs::Program::TracePoint(p) => p.load(),
                aya::programs::Program::RawTracePoint(p) => p.load(),
                // The Go header probes take the verifier a quarter of a
                // second each: they are loaded once a Go binary needs them.
                _ => continue,
            };
            loaded
                .map_err(describe)
                .with_context(|| format!("the kernel rejected eBPF program {name}"))?;
        }
        Ok(Self {
            ebpf,
            targets,
            cgroups,
            cgroup_ids: HashSet::new(),
            generation,
            errors,
            go_offsets,
            go_binaries: 0,
            tls_loaded: false,
        })
    }

    fn tracepoint(&mut self, name: &str) -> Result<&mut TracePoint> {
        let prog: &mut TracePoint = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("eBPF object has no program {name}"))?
            .try_into()?;
        Ok(prog)
    }

    /// Attaches the programs that follow process and socket lifetimes. Call
    /// before registering targets.
    pub fn attach_lifecycle(&mut self) -> Result<()> {
        let fork: &mut RawTracePoint = self
            .ebpf
            .program_mut("sched_process_fork")
            .ok_or_else(|| anyhow!("eBPF object has no program sched_process_fork"))?
            .try_into()?;
        fork.attach("sched_process_fork").context("failed to attach to sched_process_fork")?;
        for (name, category, points) in LIFECYCLE {
            let prog = self.tracepoint(name)?;
            for point in *points {
                prog.attach(category, point)
                    .with_context(|| format!("failed to attach to {category}:{point}"))?;
            }
        }
        Ok(())
    }

    /// Attaches the syscall programs and starts recording in all of them at
    /// once.
    pub fn attach_syscalls(&mut self) -> Result<()> {
        for (name, points) in SYSCALLS {
            let prog = self.tracepoint(name)?;
            for point in *points {
                prog.attach("syscalls", point)
                    .with_context(|| format!("failed to attach to syscalls:{point}"))?;
            }
        }
        self.set_recording(true)
    }

    fn set_recording(&mut self, on: bool) -> Result<()> {
        let mut control: Array<&mut MapData, u32> = Array::try_from(
            self.ebpf
                .map_mut("CONTROL")
                .ok_or_else(|| anyhow!("eBPF object has no map CONTROL"))?,
        )?;
        control.set(0, u32::from(on), 0).context("failed to switch recording")
    }

    /// Stops recording in all programs at once, then detaches them.
    pub fn detach_syscalls(&mut self) -> Result<()> {
        self.set_recording(false)?;
        for (name, _) in SYSCALLS {
            if let Some(prog) = self.ebpf.program_mut(name) {
                let prog: &mut TracePoint = prog.try_into()?;
                prog.unload().with_context(|| format!("failed to detach {name}"))?;
            }
        }
        Ok(())
    }

    /// Attaches the Go header probes to the binary at `path` (one attach
    /// serves every process running it; the programs skip non-targets).
    /// `points` are file offsets in the order of [`GO_PROGRAMS`] (a program
    /// that is only a client or only a server lacks the other side's), each
    /// with whether it is the function's stack-check branch.
    pub fn attach_go(
        &mut self,
        path: &Path,
        points: [Option<(u64, bool)>; 3],
        offsets: &GoOffsets,
    ) -> Result<()> {
        if self.go_binaries == 0 {
            self.load_programs(&GO_PROGRAMS)?;
        }
        let slot = self.go_binaries;
        anyhow::ensure!(slot < MAX_GO_BINARIES, "more than {MAX_GO_BINARIES} Go binaries");
        self.go_offsets.set(slot, *offsets, 0).context("failed to store the binary's offsets")?;
        // The slot is used up even if an attach below fails: a probe attached
        // already must keep reading these offsets.
        self.go_binaries += 1;
        for (name, point) in GO_PROGRAMS.into_iter().zip(points) {
            let Some((offset, at_branch)) = point else { continue };
            let cookie = u64::from(slot) | u64::from(at_branch) << 32;
            self.attach_uprobe(name, path, offset, cookie)?;
        }
        Ok(())
    }

    /// Attaches program `name` at file offset `offset` of `path`, for every
    /// process, with `cookie`.
    fn attach_uprobe(&mut self, name: &str, path: &Path, offset: u64, cookie: u64) -> Result<()> {
        let prog: &mut UProbe = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("eBPF object has no program {name}"))?
            .try_into()?;
        let point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(offset),
            cookie: Some(cookie),
        };
        prog.attach(point, path, UProbeScope::AllProcesses)
            .map_err(describe)
            .with_context(|| format!("failed to attach {name} at offset {offset:#x}"))?;
        Ok(())
    }

    /// Attaches the plaintext probes to OpenSSL's functions in the library at
    /// `path` (one attach serves every process mapping it; the programs skip
    /// non-targets).
    pub fn attach_openssl(&mut self, path: &Path, f: &crate::tls::OpenSslFunctions) -> Result<()> {
        if !self.tls_loaded {
            self.load_programs(&TLS_PROGRAMS)?;
            self.load_programs(&[TLS_FREE])?;
            let mut state: Array<&mut MapData, u32> = Array::try_from(
                self.ebpf
                    .map_mut("TLS_STATE")
                    .ok_or_else(|| anyhow!("eBPF object has no map TLS_STATE"))?,
            )?;
            state.set(0, 1, 0).context("failed to switch the TLS socket tracking on")?;
            self.tls_loaded = true;
        }
        if let Some(offset) = f.ssl_free {
            self.attach_uprobe(TLS_FREE, path, offset, 0)?;
        }
        for (offset, cookie) in [
            (f.ssl_write, TLS_WRITE),
            (f.ssl_read, 0),
            (f.ssl_write_ex, TLS_WRITE | TLS_EX),
            (f.ssl_read_ex, TLS_EX),
        ] {
            let Some(offset) = offset else { continue };
            for name in TLS_PROGRAMS {
                self.attach_uprobe(name, path, offset, cookie)?;
            }
        }
        Ok(())
    }

    fn load_programs(&mut self, names: &[&str]) -> Result<()> {
        for name in names {
            let prog: &mut UProbe = self
                .ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("eBPF object has no program {name}"))?
                .try_into()?;
            prog.load()
                .map_err(describe)
                .with_context(|| format!("the kernel rejected eBPF program {name}"))?;
        }
        Ok(())
    }

    /// Makes a process a target.
    pub fn add_pid(&mut self, pid: u32) -> Result<()> {
        self.targets
            .insert(pid, TARGET_EXPLICIT, 0)
            .with_context(|| format!("failed to target pid {pid}"))?;
        self.bump_generation()
    }

    /// Makes every process of a cgroup v2 id a target.
    pub fn add_cgroup(&mut self, id: u64) -> Result<()> {
        if self.cgroup_ids.contains(&id) {
            return Ok(());
        }
        self.cgroups
            .insert(id, 1, 0)
            .with_context(|| format!("failed to target cgroup id {id}"))?;
        self.cgroup_ids.insert(id);
        self.bump_generation()
    }

    fn bump_generation(&mut self) -> Result<()> {
        let now = self.generation.get(&0, 0).context("failed to read the target generation")?;
        self.generation.set(0, now + 1, 0).context("failed to bump the target generation")
    }

    /// The ring buffer, handed to the reader once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let map =
            self.ebpf.take_map("EVENTS").ok_or_else(|| anyhow!("eBPF object has no map EVENTS"))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// Every error counter, per CPU, in one read.
    pub fn errors(&self) -> Result<ErrorCounts> {
        let mut counts = ErrorCounts::default();
        for slot in KernelError::ALL {
            let values =
                self.errors.get(&(slot as u32), 0).context("failed to read the error counters")?;
            counts.totals[slot as usize] = values.iter().sum();
            if slot == KernelError::RingFull {
                counts.ring_full_per_cpu = values.iter().copied().collect();
            }
        }
        Ok(counts)
    }
}
