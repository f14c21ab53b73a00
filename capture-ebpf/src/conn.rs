//! The connection table: one entry per TCP sock a target used, holding its id,
//! addresses and where each direction's byte stream begins.
//!
//! Stream offsets (`seq`) are derived from the kernel's own TCP sequence
//! numbers rather than by adding up syscall results: bytes moved by anything
//! podtap does not trace (`sendfile`, `splice`, io_uring, another process)
//! then show up as a hole in `seq` instead of silently shifting later bytes.
//! An offset is the distance from a per-direction base that is written once,
//! unwrapped to 64 bits next to a hint of where the stream stands; no
//! read-modify-write is needed, so threads sharing a socket cannot corrupt it.

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_get_smp_processor_id};
use formats::wire::KernelError;

use crate::{
    kernel,
    maps::{count_error, Conn, CONNS, NEXT_CONN_ID},
};

const WRAP: u64 = 1 << 32;
const HALF: u64 = 1 << 31;

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

/// A fresh entry for `sk`, replacing any stale one: `connect` and `accept`
/// start a new connection.
#[inline(always)]
pub fn start(sk: u64, by_connect: bool) -> Option<*mut Conn> {
    insert(sk, by_connect as u32, None, 0)
}

/// The entry for `sk`, created on first sight for connections that were
/// already open when the capture started. `first` is the direction and start
/// sequence number of the chunk that revealed it: the stream begins there.
#[inline(always)]
pub fn get_or_insert(sk: u64, first: Option<(usize, u32)>) -> Option<*mut Conn> {
    if let Some(conn) = CONNS.get_ptr_mut(sk) {
        return Some(conn);
    }
    insert(sk, 0, first, BPF_NOEXIST as u64)
}

#[inline(always)]
fn insert(sk: u64, by_connect: u32, first: Option<(usize, u32)>, flags: u64) -> Option<*mut Conn> {
    let mut conn = Conn { conn_id: next_conn_id(), by_connect, ..Conn::EMPTY };
    kernel::read_addresses(sk, &mut conn);
    if let Some(seq) = kernel::write_seq(sk) {
        conn.base[1] = seq;
        conn.base_set |= 1 << 1;
    }
    // While connect() is in progress the receive side is not initialised;
    // its base is taken from the first read instead.
    if kernel::sk_state(sk) != kernel::TCP_SYN_SENT {
        if let Some(seq) = kernel::copied_seq(sk) {
            conn.base[0] = seq;
            conn.base_set |= 1;
        }
    }
    if let Some((dir, seq)) = first {
        conn.base[dir & 1] = seq;
        conn.base_set |= 1 << (dir & 1);
    }
    // With BPF_NOEXIST a concurrent insert by another CPU may win; then its
    // entry is used. Otherwise a failure means the table is full.
    let inserted = CONNS.insert(sk, conn, flags);
    let entry = CONNS.get_ptr_mut(sk);
    if inserted.is_err() && entry.is_none() {
        count_error(KernelError::ConnsFull);
    }
    entry
}

/// Refreshes addresses that were not known yet (a connect in progress).
#[inline(always)]
pub fn refresh_addresses(sk: u64, conn: &mut Conn) {
    if conn.remote_port == 0 {
        kernel::read_addresses(sk, conn);
    }
}

/// Stream offset of a chunk of `len` bytes that started at TCP sequence
/// number `seq32` in direction `dir` (0 ingress, 1 egress); `None` when the
/// kernel's number could not be read (the chunk is placed where the stream
/// stands). The read that consumes the peer's FIN also advances the
/// sequence number by one for the FIN itself: `fin_received` is asked (it
/// reads the socket state) only when a chunk looks one byte late.
#[inline(always)]
pub fn advance(
    conn: &mut Conn,
    dir: usize,
    seq32: Option<u32>,
    len: u64,
    fin_received: impl FnOnce() -> bool,
) -> u64 {
    let dir = dir & 1;
    let hint = conn.hint[dir];
    let start = match seq32 {
        None => hint,
        Some(seq32) => {
            if conn.base_set & (1 << dir) == 0 {
                conn.base[dir] = seq32;
                conn.base_set |= 1 << dir;
            }
            // The 32-bit distance from the base, unwrapped to the 64-bit
            // offset nearest to where the stream stands.
            let rel = seq32.wrapping_sub(conn.base[dir]) as u64;
            let mut start = (hint & !(WRAP - 1)) | rel;
            if start + HALF < hint {
                start += WRAP;
            } else if start > hint + HALF && start >= WRAP {
                start -= WRAP;
            }
            if dir == 0 && start == hint + 1 && fin_received() {
                start = hint;
            }
            start
        }
    };
    if start + len > hint {
        conn.hint[dir] = start + len;
    }
    start
}
