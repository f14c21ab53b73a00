//! podtap's kernel side: syscall tracepoints that record the TCP traffic of
//! target processes into a ring buffer for `capture`.
//!
//! Data syscalls are handled at their *exit* tracepoint only: the return value
//! says how many bytes moved, and the arguments are read back from the user
//! registers the kernel saved at syscall entry (`bpf_task_pt_regs`). That keeps
//! one program per syscall instead of an enter/exit pair with a table between
//! them, and it records syscalls that were already blocked when the capture
//! started (a keep-alive connection idle in `read()` is the common case).
//!
//! Targets are processes in `TARGET_PIDS` (explicit pids and everything they
//! fork) or in a cgroup of `TARGET_CGROUPS`. Whether an fd is a TCP socket is
//! read from the task's fd table, so sockets opened before the capture, passed
//! over unix sockets or duplicated are all recognised without /proc seeding.
//!
//! x86_64 only: the saved-register layout and syscall ABI are architecture
//! specific.
#![no_std]
#![no_main]

mod conn;
mod emit;
mod golang;
mod kernel;
mod maps;
mod targets;
mod tls;

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_probe_read_user, bpf_task_pt_regs,
    },
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
    EbpfContext,
};
use formats::wire::{
    Direction, EventKind, KernelError, FLAG_PAYLOAD_DISCARDED, FLAG_PAYLOAD_FAULT,
    FLAG_SEQ_ESTIMATED,
};

use crate::{emit::Source, maps::count_error, targets::is_target};

/// Offset of `ret` in every `syscalls:sys_exit_*` record.
const EXIT_RET: usize = 16;
/// Offset of the first argument in every `syscalls:sys_enter_*` record.
const ENTER_ARG0: usize = 16;

const EINPROGRESS: i64 = 115;
const MSG_PEEK: u64 = 2;
const MSG_TRUNC: u64 = 0x20;

/// Offsets in x86_64 `struct pt_regs` of the syscall argument registers.
const REG_DI: u64 = 14 * 8;
const REG_SI: u64 = 13 * 8;
const REG_DX: u64 = 12 * 8;
const REG_R10: u64 = 7 * 8;

/// The first four syscall arguments as the user passed them.
#[inline(always)]
fn syscall_args() -> Option<[u64; 4]> {
    // SAFETY: the helpers return the current task and its saved user
    // registers; each register is fetched with a checked read.
    unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as u64;
        if regs == 0 {
            return None;
        }
        // A BTF-typed pointer: the verifier turns these plain loads into
        // fault-safe ones, far cheaper than a helper call per register.
        let reg = |off: u64| core::ptr::read_volatile((regs + off) as *const u64);
        Some([reg(REG_DI), reg(REG_SI), reg(REG_DX), reg(REG_R10)])
    }
}

/// A field of the tracepoint record: the context is the record itself, and the
/// verifier allows plain loads from it (no helper call needed).
#[inline(always)]
fn field<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: callers pass offsets from the tracepoint's recorded format.
    unsafe { core::ptr::read_unaligned((ctx.as_ptr() as *const u8).add(offset).cast::<T>()) }
}

#[inline(always)]
fn exit_ret(ctx: &TracePointContext) -> i64 {
    field(ctx, EXIT_RET)
}

/// How the payload of a data syscall is described by its arguments.
#[derive(Clone, Copy)]
enum Args {
    /// `(fd, buf, len)`: read, write, recvfrom, sendto.
    Buffer,
    /// `(fd, iov, iovcnt)`: readv, writev.
    Iovec,
    /// `(fd, msghdr, flags)`: recvmsg, sendmsg.
    Msghdr,
}

/// Records a finished data syscall of a target on a TCP socket. `flags_arg`
/// is the index of the syscall's `flags` argument (recvfrom, recvmsg).
#[inline(always)]
fn on_data_exit(
    ctx: &TracePointContext,
    direction: Direction,
    args: Args,
    flags_arg: Option<usize>,
) {
    let ret = exit_ret(ctx);
    if ret <= 0 || !maps::recording() || !is_target() {
        return;
    }
    let Some(a) = syscall_args() else { return };
    let recv_flags = match flags_arg {
        Some(i) => a[i & 3],
        None => 0,
    };
    // A peek does not consume bytes; the read that follows records them.
    if recv_flags & MSG_PEEK != 0 {
        return;
    }
    let fd = a[0] as i32;
    let Some(sk) = kernel::tcp_sock_of_fd(fd) else { return };
    tls::note_syscall(sk, fd, direction);

    let size = ret as u64;
    let dir = direction as usize;
    // The kernel advanced its sequence number by `size` during the syscall,
    // so the chunk started `size` bytes before where it stands now.
    let now = match direction {
        Direction::Ingress => kernel::copied_seq(sk),
        Direction::Egress => kernel::write_seq(sk),
    };
    let start = now.map(|seq| seq.wrapping_sub(size as u32));
    let Some(conn) = conn::get_or_insert(sk, start.map(|s| (dir, s))) else { return };
    // SAFETY: a value of the LRU map; see `conn::advance` for why threads
    // sharing the socket may update it concurrently.
    let conn = unsafe { &mut *conn };
    conn::refresh_addresses(sk, conn);
    let seq = conn::advance(conn, dir, start, size, || kernel::fin_received(kernel::sk_state(sk)));

    let mut flags = if start.is_none() { FLAG_SEQ_ESTIMATED } else { 0 };
    let source = if recv_flags & MSG_TRUNC != 0 {
        // The bytes were dropped by the kernel, not copied to the target.
        flags |= FLAG_PAYLOAD_DISCARDED;
        Source::Nothing
    } else {
        match args {
            Args::Buffer => Source::Buffer(a[1]),
            Args::Iovec => Source::Iovec(a[1], a[2]),
            Args::Msghdr => {
                // struct user_msghdr: msg_iov at 16, msg_iovlen at 24.
                let msg = a[1];
                // SAFETY: checked user reads.
                let iov = unsafe { bpf_probe_read_user((msg + 16) as *const u64) };
                let len = unsafe { bpf_probe_read_user((msg + 24) as *const u64) };
                match (iov, len) {
                    (Ok(iov), Ok(len)) => Source::Iovec(iov, len),
                    _ => {
                        flags |= FLAG_PAYLOAD_FAULT;
                        count_error(KernelError::PayloadFault);
                        Source::Nothing
                    }
                }
            }
        }
    };
    emit::data(conn, fd, direction as u8, seq, size, source, flags);
}

// syscalls:sys_exit_{read,recvfrom,readv,recvmsg}: `long ret` at 16.

#[tracepoint]
pub fn sys_exit_read(ctx: TracePointContext) -> u32 {
    on_data_exit(&ctx, Direction::Ingress, Args::Buffer, None);
    0
}

#[tracepoint]
pub fn sys_exit_recvfrom(ctx: TracePointContext) -> u32 {
    // recvfrom(fd, buf, len, flags, ...)
    on_data_exit(&ctx, Direction::Ingress, Args::Buffer, Some(3));
    0
}

#[tracepoint]
pub fn sys_exit_readv(ctx: TracePointContext) -> u32 {
    on_data_exit(&ctx, Direction::Ingress, Args::Iovec, None);
    0
}

#[tracepoint]
pub fn sys_exit_recvmsg(ctx: TracePointContext) -> u32 {
    // recvmsg(fd, msg, flags)
    on_data_exit(&ctx, Direction::Ingress, Args::Msghdr, Some(2));
    0
}

// syscalls:sys_exit_{write,sendto,writev,sendmsg}: `long ret` at 16.

#[tracepoint]
pub fn sys_exit_write(ctx: TracePointContext) -> u32 {
    on_data_exit(&ctx, Direction::Egress, Args::Buffer, None);
    0
}

#[tracepoint]
pub fn sys_exit_sendto(ctx: TracePointContext) -> u32 {
    on_data_exit(&ctx, Direction::Egress, Args::Buffer, None);
    0
}

#[tracepoint]
pub fn sys_exit_writev(ctx: TracePointContext) -> u32 {
    on_data_exit(&ctx, Direction::Egress, Args::Iovec, None);
    0
}

#[tracepoint]
pub fn sys_exit_sendmsg(ctx: TracePointContext) -> u32 {
    on_data_exit(&ctx, Direction::Egress, Args::Msghdr, None);
    0
}

/// syscalls:sys_exit_connect: `long ret` at 16; `connect(fd, addr, len)`.
/// Success or `EINPROGRESS` (non-blocking) starts a new connection.
#[tracepoint]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let ret = exit_ret(&ctx);
    if (ret == 0 || ret == -EINPROGRESS) && maps::recording() && is_target() {
        if let Some(a) = syscall_args() {
            let fd = a[0] as i32;
            if let Some(sk) = kernel::tcp_sock_of_fd(fd) {
                // A connect() that returns 0 after a non-blocking one finished
                // confirms the same connection; it does not start another.
                // SAFETY: read of a plain value.
                let known = unsafe { maps::CONNS.get(sk) }.is_some_and(|c| c.by_connect != 0);
                if !(ret == 0 && known) {
                    if let Some(conn) = conn::start(sk, true) {
                        // SAFETY: map value owned by this connection.
                        emit::lifecycle(EventKind::Connect, unsafe { &*conn }, fd);
                    }
                }
            }
        }
    }
    0
}

/// syscalls:sys_exit_accept and sys_exit_accept4: `long ret` (the new fd) at 16.
#[tracepoint]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    let ret = exit_ret(&ctx);
    if ret >= 0 && maps::recording() && is_target() {
        let fd = ret as i32;
        if let Some(sk) = kernel::tcp_sock_of_fd(fd) {
            if let Some(conn) = conn::start(sk, false) {
                // SAFETY: map value owned by this connection.
                emit::lifecycle(EventKind::Accept, unsafe { &*conn }, fd);
            }
        }
    }
    0
}

/// syscalls:sys_enter_close: `unsigned int fd` at 16. Handled on entry: after
/// the syscall the fd no longer leads to the socket.
#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    if !maps::recording() || !is_target() {
        return 0;
    }
    // SAFETY: fixed offset of the tracepoint record.
    let fd = field::<u64>(&ctx, ENTER_ARG0) as i32;
    if let Some(sk) = kernel::tcp_sock_of_fd(fd) {
        if let Some(conn) = maps::CONNS.get_ptr(sk) {
            // SAFETY: map value, read only.
            emit::lifecycle(EventKind::Close, unsafe { &*conn }, fd);
        }
    }
    0
}

/// raw_tracepoint sched_process_fork(struct task_struct *parent, struct
/// task_struct *child): children of targets become targets. Raw, because the
/// child's tgid (thread or process?) is not in the classic tracepoint record.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> u32 {
    if !is_target() {
        return 0;
    }
    let child: u64 = ctx.arg(1);
    let Some((pid, tgid)) = kernel::task_ids(child) else {
        return 0;
    };
    if pid != tgid {
        // A new thread of a target: already covered by its tgid.
        return 0;
    }
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    if targets::add_forked(tgid) {
        emit::fork(tgid, parent);
    }
    0
}

/// sched:sched_process_exit, in the context of the exiting thread. When the
/// last thread of a target is gone (`signal->live` already dropped to zero;
/// the record's `group_dead` field only exists on recent kernels), forget the
/// process so its pid, once reused, is not a target by accident.
#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    if kernel::current_group_dead() {
        targets::remove((bpf_get_current_pid_tgid() >> 32) as u32);
    }
    0
}

/// sched:sched_process_exec: a target runs a new program, which may be a Go
/// binary to instrument.
#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    if is_target() {
        emit::exec((bpf_get_current_pid_tgid() >> 32) as u32);
    }
    0
}

/// tcp:tcp_destroy_sock: `skaddr` at 8. The sock is about to be freed (the
/// last file referring to it is closed and the protocol is done with it);
/// dropping its entry keeps a later sock at the same address from inheriting
/// a stale connection. Not TCP_CLOSE: a reset or a half-closed socket reaches
/// that state while the application may still read queued bytes.
#[tracepoint]
pub fn tcp_destroy_sock(ctx: TracePointContext) -> u32 {
    let sk: u64 = field(&ctx, 8);
    // SAFETY: the value is copied out before the entry is removed.
    if let Some(conn_id) = unsafe { maps::CONNS.get(sk) }.map(|c| c.conn_id) {
        let _ = maps::CONNS.remove(sk);
        emit::conn_end(conn_id);
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects programs that could reach a panic.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
