//! The maps shared by the programs, and the configuration userspace writes into
//! `.rodata` before loading.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use formats::wire::{CaptureConfig, EventHeader, KernelError, KERNEL_ERROR_SLOTS, MAX_PAYLOAD_CAP};

/// Offsets and limits, overridden by the loader (`EbpfLoader::override_global`).
#[unsafe(no_mangle)]
pub static CONFIG: CaptureConfig = CaptureConfig::ZERO;

/// Whether `TARGET_CGROUPS` is in use; when not, the target check skips
/// reading the current cgroup id.
#[unsafe(no_mangle)]
pub static USE_CGROUPS: u32 = 0;

/// Reads one field of [`CONFIG`]; the volatile read keeps LLVM from folding the
/// compiled-in zero.
macro_rules! config {
    ($($field:ident).+) => {
        {
            #[allow(unused_unsafe)]
            // SAFETY: a field of a static that is never written at run time.
            let value = unsafe { core::ptr::read_volatile(&raw const $crate::maps::CONFIG.$($field).+) };
            value
        }
    };
}
pub(crate) use config;

/// Slot 0: whether the syscall programs record (1) or return at once (0).
/// Attaching and detaching a dozen programs takes a while; flipping this
/// starts and stops recording in all of them at the same instant, so no
/// request is recorded without the program for its response in place.
#[map]
pub static CONTROL: Array<u32> = Array::with_max_entries(1, 0);

/// Whether the syscall programs should record now.
#[inline(always)]
pub fn recording() -> bool {
    // SAFETY: a plain read of the single slot.
    CONTROL.get_ptr(0).is_some_and(|p| unsafe { core::ptr::read_volatile(p) } != 0)
}

/// Every record for userspace. Its size is set by the loader.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Target processes by tgid (value: `TARGET_EXPLICIT` or `TARGET_FORKED`).
#[map]
pub static TARGET_PIDS: HashMap<u32, u32> = HashMap::with_max_entries(65536, 0);

/// Target cgroup v2 ids: every process whose cgroup is listed is a target.
#[map]
pub static TARGET_CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(16384, 0);

/// Per-connection state, keyed by the `struct sock *`, so a socket shared by
/// several processes (or fds) is one connection with one byte stream.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Conn {
    pub conn_id: u64,
    /// Stream offset reached so far, per direction (ingress, egress): only a
    /// hint to unwrap 32-bit sequence numbers, so racing writers are harmless.
    pub hint: [u64; 2],
    /// TCP sequence number of stream offset 0, per direction; set once.
    pub base: [u32; 2],
    /// Bit 0/1: `base[0]`/`base[1]` is set.
    pub base_set: u32,
    /// 1 if the connection began with a target's `connect()`.
    pub by_connect: u32,
    pub family: u8,
    pub _pad: [u8; 1],
    pub local_port: u16,
    pub remote_port: u16,
    pub _pad2: [u8; 2],
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
}

const _: () = assert!(core::mem::size_of::<Conn>() == 80);

impl Conn {
    /// No connection: id 0 and no addresses.
    pub const EMPTY: Self = Self {
        conn_id: 0,
        hint: [0; 2],
        base: [0; 2],
        base_set: 0,
        by_connect: 0,
        family: 0,
        _pad: [0; 1],
        local_port: 0,
        remote_port: 0,
        _pad2: [0; 2],
        local_addr: [0; 16],
        remote_addr: [0; 16],
    };
}

/// A plain hash map, not an LRU one: evicting a live connection would restart
/// its offsets silently, while a full table is counted (`conns_full`).
/// Entries go when the socket is destroyed (`tcp_destroy_sock`).
#[map]
pub static CONNS: HashMap<u64, Conn> = HashMap::with_max_entries(65536, 0);

/// Per-CPU sources of connection ids (the BPF target has no atomic
/// fetch-add): an id is `cpu << 48 | counter`, unique within one capture.
/// Userspace renumbers them densely.
#[map]
pub static NEXT_CONN_ID: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU counters of everything that was not (fully) recorded.
#[map]
pub static ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(KERNEL_ERROR_SLOTS, 0);

/// Room to assemble one record before it is copied into the ring buffer.
///
/// The payload area is twice the cap so that "offset < cap" plus "length <=
/// cap" is provably in bounds for the verifier. It is a plain array indexed by
/// CPU (one entry per possible CPU, sized by the loader) because per-CPU maps
/// cannot hold values this large.
#[repr(C)]
pub struct EventBuf {
    pub header: EventHeader,
    pub payload: [u8; 2 * MAX_PAYLOAD_CAP as usize],
}

#[map]
pub static SCRATCH: Array<EventBuf> = Array::with_max_entries(1, 0);

/// Counts one unrecorded thing.
#[inline(always)]
pub fn count_error(slot: KernelError) {
    if let Some(p) = ERRORS.get_ptr_mut(slot as u32) {
        // SAFETY: per-CPU slot, valid for the lifetime of the program.
        unsafe { *p += 1 };
    }
}
