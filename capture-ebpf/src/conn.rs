//! The connection table: one entry per TCP sock a target used, holding its id,
//! addresses and where each direction's byte stream stands.
//!
//! Stream offsets (`seq`) are derived from the kernel's own TCP sequence
//! numbers rather than by adding up syscall results: bytes moved by anything
//! podtap does not trace (`sendfile`, `splice`, io_uring, another process)
//! then show up as a hole in `seq` instead of silently shifting later bytes.

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_get_smp_processor_id};
use formats::wire::KernelError;

use crate::{
    kernel,
    maps::{count_error, Conn, CONNS, NEXT_CONN_ID},
};

const BASE_INGRESS: u32 = 1;
const BASE_EGRESS: u32 = 2;

#[inline(always)]
fn next_conn_id() -> u64 {
    let cpu = unsafe { bpf_get_smp_processor_id() } as u64;
    match NEXT_CONN_ID.get_ptr_mut(0) {
        // SAFETY: this CPU's slot, valid for the lifetime of the program.
        Some(p) => unsafe {
            *p += 1;
            (cpu << 48) | *p
        },
        None => 0,
    }
}

/// A fresh entry for `sk`, replacing any stale one (`connect`/`accept` always
/// start a new connection).
#[inline(always)]
pub fn start(sk: u64) -> Option<*mut Conn> {
    insert(sk, 0)
}

/// The entry for `sk`, created on first sight for connections that were
/// already open when the capture started.
#[inline(always)]
pub fn get_or_insert(sk: u64) -> Option<*mut Conn> {
    if let Some(conn) = CONNS.get_ptr_mut(sk) {
        return Some(conn);
    }
    insert(sk, BPF_NOEXIST as u64)
}

#[inline(always)]
fn insert(sk: u64, flags: u64) -> Option<*mut Conn> {
    let mut conn = Conn {
        conn_id: next_conn_id(),
        pos: [0; 2],
        last: [0; 2],
        base_set: 0,
        family: 0,
        _pad: [0; 1],
        local_port: 0,
        remote_port: 0,
        _pad2: [0; 6],
        local_addr: [0; 16],
        remote_addr: [0; 16],
    };
    kernel::read_addresses(sk, &mut conn);
    if let Some(seq) = kernel::write_seq(sk) {
        conn.last[1] = seq;
        conn.base_set |= BASE_EGRESS;
    }
    // While connect() is in progress the receive side is not initialised;
    // its base is taken from the first read instead.
    if kernel::sk_state(sk) != kernel::TCP_SYN_SENT {
        if let Some(seq) = kernel::copied_seq(sk) {
            conn.last[0] = seq;
            conn.base_set |= BASE_INGRESS;
        }
    }
    // With BPF_NOEXIST a concurrent insert by another CPU wins; use its entry.
    if CONNS.insert(sk, conn, flags).is_err() && flags == 0 {
        count_error(KernelError::ConnsFull);
        return None;
    }
    CONNS.get_ptr_mut(sk)
}

/// Refreshes addresses that were not known yet (a connect in progress).
#[inline(always)]
pub fn refresh_addresses(sk: u64, conn: &mut Conn) {
    if conn.remote_port == 0 {
        kernel::read_addresses(sk, conn);
    }
}

/// Stream offset of a chunk of `len` bytes that started at TCP sequence
/// `seq32` in direction `dir` (0 ingress, 1 egress), and advances the stream.
#[inline(always)]
pub fn advance(conn: &mut Conn, dir: usize, seq32: u32, len: u64) -> u64 {
    let dir = dir & 1;
    let bit = 1u32 << dir;
    if conn.base_set & bit == 0 {
        conn.last[dir] = seq32;
        conn.pos[dir] = 0;
        conn.base_set |= bit;
    }
    // Sequence numbers wrap at 2^32; a signed 32-bit difference from the last
    // known point is exact as long as less than 2 GiB moved in between.
    let diff = seq32.wrapping_sub(conn.last[dir]) as i32 as i64;
    let mut start = conn.pos[dir] as i64 + diff;
    if start < 0 {
        start = 0;
    }
    let start = start as u64;
    let end = start + len;
    if end > conn.pos[dir] {
        conn.pos[dir] = end;
        conn.last[dir] = seq32.wrapping_add(len as u32);
    }
    start
}

/// The sequence number to use when the kernel's could not be read: right where
/// the direction stands.
#[inline(always)]
pub fn current_seq32(conn: &Conn, dir: usize) -> u32 {
    conn.last[dir & 1]
}
