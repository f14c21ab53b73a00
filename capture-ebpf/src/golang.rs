//! Entry uprobes on grpc-go's transport: the HTTP/2 header fields of every
//! frame a Go gRPC program receives or sends, read from its memory.
//!
//! On a connection opened before the capture, the wire alone cannot tell the
//! headers: HPACK refers to a dynamic table built from frames nobody saw. grpc-go
//! has the decoded fields at hand, so they are read where it handles them:
//!
//! - `(*http2Server).operateHeaders(frame *http2.MetaHeadersFrame, ...)` and
//!   `(*http2Client).operateHeaders(frame)`: every HEADERS frame received;
//! - `(*loopyWriter).writeHeader(streamID uint32, endStream bool,
//!   hf []hpack.HeaderField, onWrite func())`: every HEADERS frame sent.
//!
//! Only entry probes: a return probe rewrites the return address on the
//! goroutine stack, which Go moves when it grows, and the program crashes.
//! Arguments are in registers (Go's register ABI: RAX, RBX, RCX, RDI, RSI, …),
//! which ones depending on the function's signature in that grpc-go version.
//! Struct layouts differ between grpc-go versions too, so every register and
//! offset comes from
//! [`GO_OFFSETS`], one slot per binary, the slot being the probe's attach
//! cookie. The connection is found through the transport's `net.Conn` down to
//! the socket's file descriptor, so the rows carry the same `conn_id` as the
//! syscalls on that socket.

use aya_ebpf::{
    helpers::{bpf_get_smp_processor_id, bpf_probe_read_user, bpf_probe_read_user_buf, generated},
    macros::{map, uprobe},
    maps::{Array, PerCpuArray},
    programs::ProbeContext,
    EbpfContext,
};
use formats::wire::{
    Direction, EventKind, GoOffsets, H2FieldHeader, KernelError, EVENT_HEADER_LEN,
    FLAG_H2_END_STREAM, FLAG_H2_FIELDS_TRUNCATED, FLAG_H2_LIST_TRUNCATED, FLAG_NO_CONN, GO_REG_R10,
    GO_REG_R11, GO_REG_R8, GO_REG_R9, GO_REG_RAX, GO_REG_RBX, GO_REG_RCX, GO_REG_RDI, GO_REG_RSI,
    H2_FIELD_FAULT, H2_FIELD_HEADER_LEN, H2_FIELD_NAME_CUT, H2_FIELD_SENSITIVE, H2_FIELD_VALUE_CUT,
    MAX_GO_BINARIES, MAX_H2_FIELDS, MAX_H2_NAME, MAX_H2_VALUE, MAX_PAYLOAD_CAP,
};

use crate::{
    conn, emit, kernel,
    maps::{count_error, recording, Conn, EventBuf, EVENTS, SCRATCH},
    targets::is_target,
};

/// Field offsets per instrumented binary, written by userspace before the
/// binary's probes are attached.
#[map]
pub static GO_OFFSETS: Array<GoOffsets> = Array::with_max_entries(MAX_GO_BINARIES, 0);

/// `END_STREAM` in an HTTP/2 frame's flags.
const END_STREAM: u8 = 0x1;

/// Largest `hpack.HeaderField` handled (40 bytes in every grpc-go so far).
const MAX_FIELD_SIZE: u64 = 64;
/// Room for the field array: the masks below keep every read of a string
/// header (offset below `FIELDS_MASK + 1`, 16 bytes) inside it.
const FIELDS_MASK: u64 = 2047;

/// A copy of the frame's `[]hpack.HeaderField`, taken with one read instead
/// of three per field: helper calls are most of a probe's cost.
#[repr(C)]
pub struct FieldsBuf {
    bytes: [u8; 2 * (FIELDS_MASK as usize + 1)],
}

#[map]
static GO_FIELDS: PerCpuArray<FieldsBuf> = PerCpuArray::with_max_entries(1, 0);

/// Go strings and slices start with a data pointer and a length.
#[repr(C)]
#[derive(Clone, Copy)]
struct GoSlice {
    ptr: u64,
    len: u64,
}

#[inline(always)]
fn user<T>(addr: u64) -> Option<T> {
    // SAFETY: a checked read of the target's memory.
    unsafe { bpf_probe_read_user(addr as *const T) }.ok()
}

/// `CF` and `ZF` in RFLAGS: `jbe` jumps when either is set.
const CF_ZF: u64 = 1 | 1 << 6;

/// The offsets of the binary whose probe fired, unless the probe sits on
/// the function's stack-check branch and the branch is about to be taken:
/// the stack grows, the function starts over and the probe fires again.
///
/// The attach cookie holds the binary's slot in its low half and, in bit 32,
/// whether the probe is on that branch rather than the entry.
#[inline(always)]
fn offsets(ctx: &ProbeContext) -> Option<&'static GoOffsets> {
    // SAFETY: the helper only reads the cookie of the running program.
    let cookie = unsafe { generated::bpf_get_attach_cookie(ctx.as_ptr()) };
    // SAFETY: the context of a uprobe is the user registers.
    if cookie >> 32 != 0 && unsafe { (*ctx.regs).eflags } & CF_ZF != 0 {
        return None;
    }
    GO_OFFSETS.get(cookie as u32)
}

/// The file descriptor behind a `net.Conn` whose data word is `conn`, taken
/// as a `*net.TCPConn` (what grpc-go uses for plain TCP). Anything else yields
/// a number that [`kernel::tcp_sock_of_fd`] does not accept.
#[inline(always)]
fn fd_of_conn(o: &GoOffsets, conn: u64) -> Option<i32> {
    let netfd: u64 = user(conn + o.tcpconn_fd as u64)?;
    let sysfd: i64 = user(netfd + o.netfd_sysfd as u64)?;
    (0..=i32::MAX as i64).contains(&sysfd).then_some(sysfd as i32)
}

/// The argument register with DWARF number `dwarf` (see [`GoArgs`]), one
/// of the nine integer registers of Go's register ABI.
#[inline(always)]
fn reg(ctx: &ProbeContext, dwarf: u8) -> Option<u64> {
    let r = ctx.regs;
    // Every register is loaded at its own constant offset, and the value
    // chosen afterwards: chosen first, the compiler computes the offset, and
    // the verifier refuses a load from a moved context pointer.
    // SAFETY: the context of a uprobe is the user registers.
    let [rax, rbx, rcx, rdi, rsi, r8, r9, r10, r11] = unsafe {
        [
            core::ptr::read_volatile(&raw const (*r).rax),
            core::ptr::read_volatile(&raw const (*r).rbx),
            core::ptr::read_volatile(&raw const (*r).rcx),
            core::ptr::read_volatile(&raw const (*r).rdi),
            core::ptr::read_volatile(&raw const (*r).rsi),
            core::ptr::read_volatile(&raw const (*r).r8),
            core::ptr::read_volatile(&raw const (*r).r9),
            core::ptr::read_volatile(&raw const (*r).r10),
            core::ptr::read_volatile(&raw const (*r).r11),
        ]
    };
    Some(match dwarf {
        GO_REG_RAX => rax,
        GO_REG_RBX => rbx,
        GO_REG_RCX => rcx,
        GO_REG_RDI => rdi,
        GO_REG_RSI => rsi,
        GO_REG_R8 => r8,
        GO_REG_R9 => r9,
        GO_REG_R10 => r10,
        GO_REG_R11 => r11,
        _ => return None,
    })
}

/// `(*http2Server).operateHeaders`: the transport and the frame, in the
/// registers [`GoArgs`] names (RAX and RBX before grpc-go 1.60, RAX and RDI
/// since its `ctx` argument came first).
#[uprobe]
pub fn go_server_operate_headers(ctx: ProbeContext) -> u32 {
    operate_headers(&ctx, |o| (o.server_conn, o.args.server_transport, o.args.server_frame));
    0
}

/// `(*http2Client).operateHeaders`: the transport and the frame (RAX, RBX).
#[uprobe]
pub fn go_client_operate_headers(ctx: ProbeContext) -> u32 {
    operate_headers(&ctx, |o| (o.client_conn, o.args.client_transport, o.args.client_frame));
    0
}

/// `layout` gives the transport's `conn` field and the registers of the
/// transport and the frame.
#[inline(always)]
fn operate_headers(ctx: &ProbeContext, layout: impl Fn(&GoOffsets) -> (u32, u8, u8)) {
    if !recording() || !is_target() {
        return;
    }
    let Some(o) = offsets(ctx) else { return };
    let (conn_field, transport_reg, frame_reg) = layout(o);
    let (Some(transport), Some(frame)) = (reg(ctx, transport_reg), reg(ctx, frame_reg)) else {
        count_error(KernelError::GoArgs);
        return;
    };
    // The interface's second word is its data pointer.
    let fd = user::<u64>(transport + conn_field as u64 + 8).and_then(|c| fd_of_conn(o, c));
    let Some(headers) = user::<u64>(frame + o.meta_headers as u64) else { return };
    let frame_flags: u8 = user(headers + o.frame_flags as u64).unwrap_or(0);
    let stream_id: u32 = user(headers + o.frame_stream_id as u64).unwrap_or(0);
    let Some(fields) = user::<GoSlice>(frame + o.meta_fields as u64) else { return };
    let mut flags = 0;
    if frame_flags & END_STREAM != 0 {
        flags |= FLAG_H2_END_STREAM;
    }
    if user::<u8>(frame + o.meta_truncated as u64).unwrap_or(0) != 0 {
        flags |= FLAG_H2_LIST_TRUNCATED;
    }
    emit_headers(o, fd, Direction::Ingress, stream_id, fields, flags);
}

/// `(*loopyWriter).writeHeader`: the writer, the stream id, end-of-stream
/// and the field slice's pointer and length, in the registers [`GoArgs`]
/// names (RAX, RBX, RCX, RDI and RSI in every grpc-go so far).
#[uprobe]
pub fn go_loopy_write_header(ctx: ProbeContext) -> u32 {
    if !recording() || !is_target() {
        return 0;
    }
    let Some(o) = offsets(&ctx) else { return 0 };
    let a = &o.args;
    let (Some(loopy), Some(stream_id), Some(end_stream), Some(ptr), Some(len)) = (
        reg(&ctx, a.loopy_writer),
        reg(&ctx, a.loopy_stream_id),
        reg(&ctx, a.loopy_end_stream),
        reg(&ctx, a.loopy_fields_ptr),
        reg(&ctx, a.loopy_fields_len),
    ) else {
        count_error(KernelError::GoArgs);
        return 0;
    };
    let (stream_id, end_stream) = (stream_id as u32, end_stream as u8);
    let fd = user::<u64>(loopy + o.loopy_framer as u64)
        .and_then(|framer| user::<u64>(framer + o.framer_writer as u64))
        .and_then(|writer| user::<u64>(writer + o.bufwriter_conn as u64 + 8))
        .and_then(|c| fd_of_conn(o, c));
    let flags = if end_stream != 0 { FLAG_H2_END_STREAM } else { 0 };
    emit_headers(o, fd, Direction::Egress, stream_id, GoSlice { ptr, len }, flags);
    0
}

/// Emits one `H2Headers` record: the connection of `fd`, and the fields of the
/// `[]hpack.HeaderField` slice.
#[inline(always)]
fn emit_headers(
    o: &GoOffsets,
    fd: Option<i32>,
    direction: Direction,
    stream_id: u32,
    fields: GoSlice,
    mut flags: u32,
) {
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(buf) = SCRATCH.get_ptr_mut(cpu) else {
        count_error(KernelError::RingFull);
        return;
    };
    // SAFETY: the per-CPU scratch entry; programs do not nest on one CPU.
    let buf: &mut EventBuf = unsafe { &mut *buf };

    let sk = fd.and_then(kernel::tcp_sock_of_fd);
    let found = sk.and_then(|sk| conn::get_or_insert(sk, None));
    let none = Conn::EMPTY;
    let conn = match found {
        // SAFETY: a value of the connection map, only read.
        Some(c) => unsafe { &*c },
        None => {
            flags |= FLAG_NO_CONN;
            &none
        }
    };
    emit::fill_header(&mut buf.header, EventKind::H2Headers, conn, fd.unwrap_or(-1));
    buf.header.seq = stream_id as u64;
    buf.header.size = fields.len;
    buf.header.direction = direction as u8;

    let captured = &raw mut buf.header.captured;
    // SAFETY: a field of the scratch entry.
    unsafe { core::ptr::write_volatile(captured, 0) };
    if fields.len > MAX_H2_FIELDS as u64 {
        flags |= FLAG_H2_FIELDS_TRUNCATED;
    }
    let field_size = o.field_size as u64;
    let count = if fields.len > MAX_H2_FIELDS as u64 { MAX_H2_FIELDS as u64 } else { fields.len };
    let array = GO_FIELDS.get_ptr_mut(0);
    let copied = match array {
        Some(array) if field_size <= MAX_FIELD_SIZE && count > 0 => {
            let len = (count * field_size) as usize & FIELDS_MASK as usize;
            // SAFETY: this CPU's entry; `len` is below its size.
            let dst = unsafe { (*array).bytes.get_unchecked_mut(..len) };
            unsafe { bpf_probe_read_user_buf(fields.ptr as *const u8, dst) }.is_ok()
        }
        _ => false,
    };
    let count = if copied {
        count
    } else {
        if fields.len > 0 {
            flags |= FLAG_H2_FIELDS_TRUNCATED;
        }
        0
    };
    for i in 0..MAX_H2_FIELDS {
        if i as u64 >= count {
            break;
        }
        let Some(array) = array else { break };
        let at = |offset: u32| ((i as u64 * field_size + offset as u64) & FIELDS_MASK) as usize;
        // SAFETY: offsets are masked into the first half of the entry, and
        // a string header (16 bytes) or a bool read there stays inside it.
        let (name, value, sensitive) = unsafe {
            let bytes = (*array).bytes.as_ptr();
            (
                core::ptr::read_unaligned(bytes.add(at(o.field_name)).cast::<GoSlice>()),
                core::ptr::read_unaligned(bytes.add(at(o.field_value)).cast::<GoSlice>()),
                *bytes.add(at(o.field_sensitive)),
            )
        };
        // Re-read from memory: the verifier then treats every iteration alike
        // instead of following each combination of earlier lengths.
        // SAFETY: as above.
        let off = unsafe { core::ptr::read_volatile(captured) };
        let mut field = H2FieldHeader::default();
        let name_len = if name.len > MAX_H2_NAME as u64 {
            field.flags |= H2_FIELD_NAME_CUT;
            MAX_H2_NAME
        } else {
            name.len as u32
        };
        let value_len = if value.len > MAX_H2_VALUE as u64 {
            field.flags |= H2_FIELD_VALUE_CUT;
            MAX_H2_VALUE
        } else {
            value.len as u32
        };
        if sensitive != 0 {
            field.flags |= H2_FIELD_SENSITIVE;
        }
        // Offsets stay far below the cap (see the assertion in `formats`);
        // the masks only let the verifier prove that every write stays inside
        // the payload area, which is twice the cap.
        // A part that cannot be read is kept empty and flagged.
        let name_at = (off + H2_FIELD_HEADER_LEN as u32) & (MAX_PAYLOAD_CAP - 1);
        let mut name_len = name_len;
        if !copy_user(buf, name_at, name.ptr, name_len) {
            field.flags |= H2_FIELD_FAULT;
            name_len = 0;
        }
        let value_at = (name_at + name_len) & (MAX_PAYLOAD_CAP - 1);
        let mut value_len = value_len;
        if !copy_user(buf, value_at, value.ptr, value_len) {
            field.flags |= H2_FIELD_FAULT;
            value_len = 0;
        }
        if field.flags & (H2_FIELD_NAME_CUT | H2_FIELD_VALUE_CUT | H2_FIELD_FAULT) != 0 {
            flags |= FLAG_H2_FIELDS_TRUNCATED;
        }
        field.name_len = name_len as u16;
        field.value_len = value_len as u16;
        let at = (off & (MAX_PAYLOAD_CAP - 1)) as usize;
        // SAFETY: `at` < cap and the header is 8 bytes of a 2 * cap area.
        unsafe {
            core::ptr::write_unaligned(
                buf.payload.as_mut_ptr().add(at).cast::<H2FieldHeader>(),
                field,
            )
        };
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(captured, value_at + value_len) };
    }
    buf.header.flags = flags;
    // SAFETY: as above.
    let captured = unsafe { core::ptr::read_volatile(captured) } & (MAX_PAYLOAD_CAP - 1);
    let len = EVENT_HEADER_LEN + captured as usize;
    // SAFETY: `len` is at most the size of `EventBuf`.
    let bytes = unsafe { core::slice::from_raw_parts((buf as *const EventBuf).cast::<u8>(), len) };
    if EVENTS.output::<[u8]>(bytes, emit::wakeup_flags()).is_err() {
        count_error(KernelError::RingFull);
    }
}

/// Copies `len` bytes of user memory at `src` into the payload at `at`;
/// false if they could not be read.
#[inline(always)]
fn copy_user(buf: &mut EventBuf, at: u32, src: u64, len: u32) -> bool {
    let at = (at & (MAX_PAYLOAD_CAP - 1)) as usize;
    let len = (len & (MAX_H2_VALUE * 2 - 1)) as usize;
    if len == 0 {
        return true;
    }
    // SAFETY: at < cap and len < 2 * MAX_H2_VALUE, inside the 2 * cap area.
    let dst = unsafe { buf.payload.get_unchecked_mut(at..at + len) };
    unsafe { bpf_probe_read_user_buf(src as *const u8, dst) }.is_ok()
}
