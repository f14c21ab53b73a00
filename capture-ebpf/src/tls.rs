//! Uprobes on OpenSSL's `SSL_write`, `SSL_read`, `SSL_write_ex` and
//! `SSL_read_ex`: the plaintext of TLS connections, as `TlsData` records.
//!
//! The entry probe keeps the call's arguments by thread; the return probe
//! (safe here: this is C code) reads how much moved and copies it from the
//! caller's buffer. The socket is found without OpenSSL's private struct
//! layouts: the read or write syscall the call makes on the same thread is
//! seen by the syscall programs, which note its socket in the pending call
//! ([`note_syscall`]); the socket is then remembered for the `SSL *`, for
//! calls served from OpenSSL's buffers without a syscall. A plaintext offset
//! per direction is kept with it, so records lost in the ring buffer show
//! up as holes, as they do for syscall data.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, generated},
    macros::{map, uprobe, uretprobe},
    maps::{HashMap, LruHashMap},
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use formats::wire::{Direction, EventKind, FLAG_NO_CONN};

use crate::{
    emit::{self, Source},
    maps::{recording, Conn, CONNS},
    targets::is_target,
};

/// Attach cookie bit: the probed function writes (else it reads).
const COOKIE_WRITE: u64 = 1;
/// Attach cookie bit: the `_ex` form, which reports the bytes moved through
/// its fourth argument.
const COOKIE_EX: u64 = 2;

/// An SSL call in progress on a thread.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SslCall {
    ssl: u64,
    buf: u64,
    /// `_ex` forms: where the bytes moved are written.
    moved: u64,
    /// The socket the call's syscalls used, once seen.
    sk: u64,
    fd: i32,
    /// 1 for writes.
    write: u32,
}

/// What is known of one `SSL *`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SslConn {
    sk: u64,
    fd: i32,
    _pad: u32,
    /// Plaintext offsets reached: read, written.
    seq: [u64; 2],
}

/// Pending SSL calls, by thread (`pid_tgid`).
#[map]
static SSL_CALLS: HashMap<u64, SslCall> = HashMap::with_max_entries(16384, 0);

/// Sockets and plaintext offsets by `SSL *`; least recently used go first.
#[map]
static SSL_CONNS: LruHashMap<u64, SslConn> = LruHashMap::with_max_entries(65536, 0);

/// The TCP socket each thread of a target last read from, and its fd. A
/// library that decrypts from memory (Node's TLS, on a memory BIO) reads the
/// socket itself, then hands the bytes to `SSL_read`: for a read that made
/// no syscall, that socket is the one.
#[map]
static LAST_READ: LruHashMap<u64, SslConn> = LruHashMap::with_max_entries(16384, 0);

/// Entry of the four functions; the cookie says which.
#[uprobe]
pub fn ssl_entry(ctx: ProbeContext) -> u32 {
    if !recording() || !is_target() {
        return 0;
    }
    // SAFETY: the helper only reads the cookie of the running program.
    let cookie = unsafe { generated::bpf_get_attach_cookie(ctx.as_ptr()) };
    let (Some(ssl), Some(buf)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else { return 0 };
    let moved = if cookie & COOKIE_EX != 0 { ctx.arg::<u64>(3).unwrap_or(0) } else { 0 };
    let call = SslCall { ssl, buf, moved, sk: 0, fd: -1, write: (cookie & COOKIE_WRITE) as u32 };
    let _ = SSL_CALLS.insert(bpf_get_current_pid_tgid(), call, 0);
    0
}

/// `SSL_free(ssl)`: the object's address may come back for another
/// connection, which must start from nothing.
#[uprobe]
pub fn ssl_free(ctx: ProbeContext) -> u32 {
    if let Some(ssl) = ctx.arg::<u64>(0) {
        let _ = SSL_CONNS.remove(ssl);
    }
    0
}

/// Called by the syscall programs for a target's read or write on a TCP
/// socket: if an SSL call is in progress on the thread, that is its socket.
/// Reads are remembered for the calls that make none (see [`LAST_READ`]).
#[inline(always)]
pub fn note_syscall(sk: u64, fd: i32, direction: Direction) {
    let id = bpf_get_current_pid_tgid();
    if let Some(call) = SSL_CALLS.get_ptr_mut(id) {
        // SAFETY: this thread's own entry.
        unsafe {
            (*call).sk = sk;
            (*call).fd = fd;
        }
    } else if direction == Direction::Ingress && tls_loaded() {
        let _ = LAST_READ.insert(id, SslConn { sk, fd, _pad: 0, seq: [0; 2] }, 0);
    }
}

/// Slot 0 is set by userspace once the TLS probes are attached anywhere, so
/// the syscall programs do not keep [`LAST_READ`] for nothing.
#[map]
static TLS_STATE: aya_ebpf::maps::Array<u32> = aya_ebpf::maps::Array::with_max_entries(1, 0);

#[inline(always)]
fn tls_loaded() -> bool {
    // SAFETY: a plain read of the single slot.
    TLS_STATE.get_ptr(0).is_some_and(|p| unsafe { core::ptr::read_volatile(p) } != 0)
}

/// Return of the four functions: the plaintext that moved.
#[uretprobe]
pub fn ssl_return(ctx: RetProbeContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: a plain value, copied out before the entry goes.
    let Some(call) = (unsafe { SSL_CALLS.get(id) }).copied() else { return 0 };
    let _ = SSL_CALLS.remove(id);
    // All four return a C `int`: the upper half of RAX means nothing.
    let ret = ctx.ret::<u64>() as u32 as i32 as i64;
    let moved = match (call.moved, ret) {
        // SAFETY: a checked read of the caller's size_t.
        (0, ret) if ret > 0 => ret as u64,
        (ptr, 1) if ptr != 0 => unsafe { bpf_probe_read_user(ptr as *const u64) }.unwrap_or(0),
        _ => 0,
    };
    if moved == 0 || !recording() {
        return 0;
    }
    let dir = (call.write & 1) as usize;
    // The object's entry, created on first sight.
    let entry = match SSL_CONNS.get_ptr_mut(call.ssl) {
        Some(e) => e,
        None => {
            let fresh = SslConn { sk: 0, fd: -1, _pad: 0, seq: [0; 2] };
            let _ = SSL_CONNS.insert(call.ssl, fresh, 0);
            match SSL_CONNS.get_ptr_mut(call.ssl) {
                Some(e) => e,
                None => return 0,
            }
        }
    };
    // SAFETY: the map value of this `SSL *`; calls on one SSL object are
    // serialised by its user (OpenSSL objects are not thread-safe).
    let entry = unsafe { &mut *entry };
    let mut call = call;
    if call.sk == 0 && dir == 0 && entry.sk == 0 {
        // A read that made no syscall, on an object whose socket is not
        // known yet: the socket this thread read last (a memory BIO).
        // SAFETY: a plain value, copied.
        if let Some(last) = unsafe { LAST_READ.get(id) } {
            call.sk = last.sk;
            call.fd = last.fd;
        }
    }
    if call.sk != 0 && call.sk != entry.sk {
        // Another socket behind the same object (its `SSL_free` was not
        // seen): a new plaintext stream.
        if entry.sk != 0 {
            entry.seq = [0; 2];
        }
        entry.sk = call.sk;
        entry.fd = call.fd;
    }
    let seq = entry.seq[dir];
    entry.seq[dir] = seq + moved;

    let mut flags = 0;
    let empty = Conn::EMPTY;
    // SAFETY: a value of the connection map, only read.
    let conn = match unsafe { CONNS.get(entry.sk) } {
        Some(c) if entry.sk != 0 => c,
        _ => {
            flags |= FLAG_NO_CONN;
            &empty
        }
    };
    emit::record(
        EventKind::TlsData,
        conn,
        entry.fd,
        dir as u8,
        seq,
        moved,
        Source::Buffer(call.buf),
        flags,
    );
    0
}
