//! Reading kernel structures: from a file descriptor of the current task to its
//! `struct sock`, and from a sock to its addresses and TCP sequence numbers.
//!
//! Offsets come from the running kernel's BTF through [`CONFIG`](crate::maps::CONFIG).
//! Pointers reached from the current task through BTF-typed fields (task ->
//! files -> fdt, task -> signal) are read with plain loads, which the verifier
//! makes fault-safe; everything past the fd array goes through
//! `bpf_probe_read_kernel`. Either way a stale pointer (an fd closed by another
//! thread meanwhile) yields an error or zero, never a fault.

use aya_ebpf::helpers::{bpf_get_current_task_btf, bpf_probe_read_kernel};
use formats::wire::{AF_INET, AF_INET6};

use crate::maps::{config, Conn};

const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;
const SOCK_STREAM: u16 = 1;
const IPPROTO_TCP: u32 = 6;
/// `TCP_SYN_SENT`: connect() in progress, the receive sequence is not known yet.
pub const TCP_SYN_SENT: u8 = 2;

/// A direct load through a BTF-typed kernel pointer.
#[inline(always)]
unsafe fn load<T>(base: u64, offset: u32) -> T {
    unsafe { core::ptr::read_volatile((base + offset as u64) as *const T) }
}

#[inline(always)]
unsafe fn read<T>(base: u64, offset: u32) -> Result<T, i32> {
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T) }
}

/// The `struct sock *` behind `fd` of the current task, if `fd` is a TCP socket
/// (IPv4 or IPv6).
#[inline(always)]
pub fn tcp_sock_of_fd(fd: i32) -> Option<u64> {
    if fd < 0 {
        return None;
    }
    // SAFETY: every dereference is a BTF-checked load or a checked probe read.
    unsafe {
        // task -> files -> fdt are BTF-typed pointers from the current task:
        // plain loads, which the verifier makes fault-safe, instead of one
        // helper call each.
        let task = bpf_get_current_task_btf() as u64;
        let files: u64 = load(task, config!(offsets.task_files));
        if files == 0 {
            return None;
        }
        let fdt: u64 = load(files, config!(offsets.files_fdt));
        if fdt == 0 {
            return None;
        }
        let max_fds: u32 = load(fdt, config!(offsets.fdtable_max_fds));
        if fd as u32 >= max_fds {
            return None;
        }
        let fd_array: u64 = load(fdt, config!(offsets.fdtable_fd));
        let file: u64 = bpf_probe_read_kernel((fd_array + 8 * fd as u64) as *const u64).ok()?;
        if file == 0 {
            return None;
        }
        let inode: u64 = read(file, config!(offsets.file_inode)).ok()?;
        let mode: u16 = read(inode, config!(offsets.inode_mode)).ok()?;
        if mode & S_IFMT != S_IFSOCK {
            return None;
        }
        let socket: u64 = read(file, config!(offsets.file_private_data)).ok()?;
        let sock_type: u16 = read(socket, config!(offsets.socket_type)).ok()?;
        if sock_type != SOCK_STREAM {
            return None;
        }
        let sk: u64 = read(socket, config!(offsets.socket_sk)).ok()?;
        if sk == 0 {
            return None;
        }
        let family: u16 = read(sk, config!(offsets.sk_family)).ok()?;
        if family != AF_INET as u16 && family != AF_INET6 as u16 {
            return None;
        }
        let unit: u32 = read(sk, config!(offsets.sk_protocol)).ok()?;
        let protocol =
            (unit >> config!(offsets.sk_protocol_shift)) & config!(offsets.sk_protocol_mask);
        if protocol != IPPROTO_TCP {
            return None;
        }
        Some(sk)
    }
}

/// Whether a sock in this TCP state has received its peer's FIN
/// (TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, CLOSING).
#[inline(always)]
pub fn fin_received(state: u8) -> bool {
    matches!(state, 6 | 7 | 8 | 9 | 11)
}

/// TCP state of a sock (`skc_state`).
#[inline(always)]
pub fn sk_state(sk: u64) -> u8 {
    // SAFETY: checked probe read.
    unsafe { read(sk, config!(offsets.sk_state)).unwrap_or(0) }
}

/// Next sequence number the application will write (`tcp_sock.write_seq`).
#[inline(always)]
pub fn write_seq(sk: u64) -> Option<u32> {
    // SAFETY: checked probe read.
    unsafe { read(sk, config!(offsets.tcp_write_seq)).ok() }
}

/// Next sequence number the application will read (`tcp_sock.copied_seq`).
#[inline(always)]
pub fn copied_seq(sk: u64) -> Option<u32> {
    // SAFETY: checked probe read.
    unsafe { read(sk, config!(offsets.tcp_copied_seq)).ok() }
}

/// Fills the address fields of `conn` from the sock.
#[inline(always)]
pub fn read_addresses(sk: u64, conn: &mut Conn) {
    // SAFETY: checked probe reads; on failure the fields stay zero.
    unsafe {
        let family: u16 = read(sk, config!(offsets.sk_family)).unwrap_or(0);
        conn.family = family as u8;
        let dport: u16 = read(sk, config!(offsets.sk_dport)).unwrap_or(0);
        conn.remote_port = u16::from_be(dport);
        conn.local_port = read(sk, config!(offsets.sk_num)).unwrap_or(0);
        if family == AF_INET as u16 {
            let daddr: [u8; 4] = read(sk, config!(offsets.sk_daddr)).unwrap_or([0; 4]);
            let saddr: [u8; 4] = read(sk, config!(offsets.sk_rcv_saddr)).unwrap_or([0; 4]);
            conn.remote_addr[..4].copy_from_slice(&daddr);
            conn.local_addr[..4].copy_from_slice(&saddr);
        } else {
            conn.remote_addr = read(sk, config!(offsets.sk_v6_daddr)).unwrap_or([0; 16]);
            conn.local_addr = read(sk, config!(offsets.sk_v6_rcv_saddr)).unwrap_or([0; 16]);
        }
    }
}

/// pid and tgid of a task.
#[inline(always)]
pub fn task_ids(task: u64) -> Option<(u32, u32)> {
    // SAFETY: checked probe reads.
    unsafe {
        let pid: u32 = read(task, config!(offsets.task_pid)).ok()?;
        let tgid: u32 = read(task, config!(offsets.task_tgid)).ok()?;
        Some((pid, tgid))
    }
}

/// Whether the current thread is the last of its process to exit (called
/// from sched_process_exit, after the kernel decremented `signal->live`).
#[inline(always)]
pub fn current_group_dead() -> bool {
    // SAFETY: BTF-typed pointers from the current task, plain loads.
    unsafe {
        let task = bpf_get_current_task_btf() as u64;
        let signal: u64 = load(task, config!(offsets.task_signal));
        if signal == 0 {
            return false;
        }
        let live: i32 = load(signal, config!(offsets.signal_live));
        live == 0
    }
}
