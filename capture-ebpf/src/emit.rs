//! Building records and handing them to userspace through the ring buffer.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        bpf_probe_read_user, bpf_probe_read_user_buf, generated as gen,
    },
};
use formats::wire::{
    EventHeader, EventKind, KernelError, EVENT_HEADER_LEN, FLAG_PAYLOAD_FAULT,
    FLAG_PAYLOAD_IOV_LIMIT, MAX_IOVECS, MAX_PAYLOAD_CAP,
};

use crate::maps::{config, count_error, Conn, EventBuf, EVENTS, SCRATCH};

/// `struct iovec`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Iovec {
    base: u64,
    len: u64,
}

/// Where the bytes of a data event are in the target's memory.
#[derive(Clone, Copy)]
pub enum Source {
    /// One contiguous buffer (`read`, `write`, `recvfrom`, `sendto`).
    Buffer(u64),
    /// An `iovec` array and its length (`readv`, `writev`, `recvmsg`, `sendmsg`).
    Iovec(u64, u64),
    /// No bytes to keep (discarded by the kernel, or unreadable arguments).
    Nothing,
}

/// Ring buffer wakeup policy: wake the reader only once enough data waits, it
/// polls on a timer otherwise. Saves a wakeup per event under load.
#[inline(always)]
pub fn wakeup_flags() -> u64 {
    let threshold = config!(wakeup_bytes) as u64;
    if threshold == 0 {
        return 0;
    }
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
pub fn fill_header(header: &mut EventHeader, kind: EventKind, conn: &Conn, fd: i32) {
    let id = bpf_get_current_pid_tgid();
    header.kind = kind as u32;
    header.flags = 0;
    header.ts_ns = unsafe { bpf_ktime_get_ns() };
    header.conn_id = conn.conn_id;
    header.seq = 0;
    header.size = 0;
    header.pid = (id >> 32) as u32;
    header.tid = id as u32;
    header.fd = fd;
    header.captured = 0;
    header.direction = 0;
    header.family = conn.family;
    header._pad = 0;
    header.local_port = conn.local_port;
    header.remote_port = conn.remote_port;
    copy16(&mut header.local_addr, &conn.local_addr);
    copy16(&mut header.remote_addr, &conn.remote_addr);
    // Straight into the record; an error leaves zeros.
    header.comm = [0; 16];
    // SAFETY: the helper writes at most 16 bytes into the 16-byte field.
    unsafe { gen::bpf_get_current_comm(header.comm.as_mut_ptr().cast(), 16) };
}

/// Copies 16 bytes as two 8-byte words: a plain array assignment becomes a
/// call to a byte-by-byte `memcpy` in BPF.
#[inline(always)]
fn copy16(dst: &mut [u8; 16], src: &[u8; 16]) {
    // SAFETY: both are 16 bytes; unaligned accesses are fine on BPF.
    unsafe {
        let d = dst.as_mut_ptr().cast::<u64>();
        let s = src.as_ptr().cast::<u64>();
        core::ptr::write_unaligned(d, core::ptr::read_unaligned(s));
        core::ptr::write_unaligned(d.add(1), core::ptr::read_unaligned(s.add(1)));
    }
}

/// Emits a header-only record (connect, accept, close).
#[inline(always)]
pub fn lifecycle(kind: EventKind, conn: &Conn, fd: i32) {
    match EVENTS.reserve::<EventHeader>(0) {
        Some(mut entry) => {
            // SAFETY: the entry is exactly one header; every field is written
            // by `fill_header` before submit.
            let header = unsafe { &mut *entry.as_mut_ptr() };
            fill_header(header, kind, conn, fd);
            entry.submit(wakeup_flags());
        }
        None => count_error(KernelError::RingFull),
    }
}

/// Emits a fork notice: `pid` child, `size` parent.
#[inline(always)]
pub fn fork(child_tgid: u32, parent_tgid: u32) {
    notice(EventKind::Fork, 0, child_tgid, parent_tgid as u64);
}

/// Emits an exec notice for the current process.
#[inline(always)]
pub fn exec(tgid: u32) {
    notice(EventKind::Exec, 0, tgid, 0);
}

/// Emits the end of a connection.
#[inline(always)]
pub fn conn_end(conn_id: u64) {
    notice(EventKind::ConnEnd, conn_id, 0, 0);
}

/// A header-only record that does not describe a syscall of a target.
#[inline(always)]
fn notice(kind: EventKind, conn_id: u64, pid: u32, size: u64) {
    match EVENTS.reserve::<EventHeader>(0) {
        Some(mut entry) => {
            // SAFETY: as in `lifecycle`.
            let header = unsafe { &mut *entry.as_mut_ptr() };
            *header = EventHeader {
                kind: kind as u32,
                flags: 0,
                ts_ns: unsafe { bpf_ktime_get_ns() },
                conn_id,
                seq: 0,
                size,
                pid,
                tid: pid,
                fd: -1,
                captured: 0,
                direction: 0,
                family: 0,
                _pad: 0,
                local_port: 0,
                remote_port: 0,
                local_addr: [0; 16],
                remote_addr: [0; 16],
                // Only a fork happens in the context it describes; a socket
                // may be destroyed from any context.
                comm: if kind == EventKind::Fork || kind == EventKind::Exec {
                    bpf_get_current_comm().unwrap_or([0; 16])
                } else {
                    [0; 16]
                },
            };
            entry.submit(wakeup_flags());
        }
        None => count_error(KernelError::RingFull),
    }
}

/// Emits a data record of `size` bytes moved at stream offset `seq`, copying
/// the first `min(size, max_payload)` bytes from `source`.
#[inline(always)]
pub fn data(conn: &Conn, fd: i32, direction: u8, seq: u64, size: u64, source: Source, flags: u32) {
    record(EventKind::Data, conn, fd, direction, seq, size, source, flags);
}

/// Emits a record of `kind` shaped like a data record (`TlsData`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn record(
    kind: EventKind,
    conn: &Conn,
    fd: i32,
    direction: u8,
    seq: u64,
    size: u64,
    source: Source,
    flags: u32,
) {
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(buf) = SCRATCH.get_ptr_mut(cpu) else {
        count_error(KernelError::RingFull);
        return;
    };
    // SAFETY: the per-CPU scratch entry; programs do not nest on one CPU.
    let buf: &mut EventBuf = unsafe { &mut *buf };
    fill_header(&mut buf.header, kind, conn, fd);
    buf.header.flags = flags;
    buf.header.seq = seq;
    buf.header.size = size;
    buf.header.direction = direction;

    let mut want = config!(max_payload) as u64;
    if want > size {
        want = size;
    }
    if want > MAX_PAYLOAD_CAP as u64 {
        want = MAX_PAYLOAD_CAP as u64;
    }
    let captured = match source {
        Source::Buffer(ptr) => copy_buffer(buf, ptr, want as u32),
        Source::Iovec(iov, count) => copy_iovecs(buf, iov, count, want as u32),
        Source::Nothing => 0,
    };
    buf.header.captured = captured;

    let len = (EVENT_HEADER_LEN as u32 + (captured & (2 * MAX_PAYLOAD_CAP - 1))) as usize;
    // SAFETY: `len` is at most the size of `EventBuf`.
    let bytes = unsafe { core::slice::from_raw_parts((buf as *const EventBuf).cast::<u8>(), len) };
    if EVENTS.output::<[u8]>(bytes, wakeup_flags()).is_err() {
        count_error(KernelError::RingFull);
    }
}

#[inline(always)]
fn copy_buffer(buf: &mut EventBuf, ptr: u64, want: u32) -> u32 {
    let want = want & (2 * MAX_PAYLOAD_CAP - 1);
    if want == 0 || want > MAX_PAYLOAD_CAP {
        return 0;
    }
    // SAFETY: user memory is read with a checked helper into the scratch area.
    let dst = unsafe { buf.payload.get_unchecked_mut(..want as usize) };
    match unsafe { bpf_probe_read_user_buf(ptr as *const u8, dst) } {
        Ok(()) => want,
        Err(_) => {
            buf.header.flags |= FLAG_PAYLOAD_FAULT;
            count_error(KernelError::PayloadFault);
            0
        }
    }
}

#[inline(always)]
fn copy_iovecs(buf: &mut EventBuf, iov: u64, count: u64, want: u32) -> u32 {
    let captured = &raw mut buf.header.captured;
    // SAFETY: a field of the scratch entry.
    unsafe { core::ptr::write_volatile(captured, 0) };
    for i in 0..MAX_IOVECS {
        if i as u64 >= count {
            break;
        }
        // Re-read from memory each time: the verifier then knows nothing about
        // `off` but its bounds checks below, so all iterations look alike and
        // it does not explore every combination of earlier chunk sizes.
        // SAFETY: as above.
        let off = unsafe { core::ptr::read_volatile(captured) };
        if off >= want {
            break;
        }
        // SAFETY: checked user read of one iovec.
        let Ok(v) = (unsafe { bpf_probe_read_user((iov + 16 * i as u64) as *const Iovec) }) else {
            buf.header.flags |= FLAG_PAYLOAD_FAULT;
            count_error(KernelError::PayloadFault);
            break;
        };
        let room = (want - off) as u64;
        let mut n = if v.len < room { v.len } else { room };
        if n > MAX_PAYLOAD_CAP as u64 {
            n = MAX_PAYLOAD_CAP as u64;
        }
        if n == 0 {
            continue;
        }
        // The mask is a no-op on the value (off < want <= cap) but lets the
        // verifier prove that start + n stays inside the 2 * cap payload area.
        let start = (off & (MAX_PAYLOAD_CAP - 1)) as usize;
        // SAFETY: start < cap and n <= cap.
        let dst = unsafe { buf.payload.get_unchecked_mut(start..start + n as usize) };
        if unsafe { bpf_probe_read_user_buf(v.base as *const u8, dst) }.is_err() {
            buf.header.flags |= FLAG_PAYLOAD_FAULT;
            count_error(KernelError::PayloadFault);
            break;
        }
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(captured, off + n as u32) };
    }
    // SAFETY: as above.
    let off = unsafe { core::ptr::read_volatile(captured) };
    if (MAX_IOVECS as u64) < count && off < want && buf.header.flags & FLAG_PAYLOAD_FAULT == 0 {
        buf.header.flags |= FLAG_PAYLOAD_IOV_LIMIT;
        count_error(KernelError::IovLimit);
    }
    off
}
