//! Kernel structure offsets for the eBPF programs, read from the running
//! kernel's BTF.
//!
//! Rust eBPF programs cannot carry CO-RE relocations, so the loader resolves
//! every field the programs read (task → fd table → file → socket → sock →
//! tcp_sock) here and passes the numbers in through `.rodata`. Fields nested in
//! anonymous structs and unions (most of `sock_common`) are found by searching
//! through them, and each field's size is checked so a layout change is an
//! error at start-up, not garbage at run time.

use std::path::Path;

use btf_rs::{Btf, Type};
use formats::wire::KernelOffsets;

/// Where the kernel publishes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Why the offsets could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error("failed to read kernel BTF from `{path}`")]
    Read {
        path: String,
        #[source]
        source: anyhow::Error,
    },
    #[error("kernel BTF has no struct `{name}`")]
    MissingStruct { name: String },
    #[error("kernel BTF has no field `{path}`")]
    MissingField { path: String },
    #[error("kernel field `{path}` is {size} bytes, podtap expects {expected}")]
    UnexpectedSize { path: String, size: usize, expected: usize },
    #[error("kernel field `{path}` is a bitfield, podtap expects a plain field")]
    Bitfield { path: String },
}

/// Location of a struct member: bit offset from the start of the outer struct,
/// bitfield width if any, and byte size of its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Location {
    bit_offset: u32,
    bitfield: Option<u32>,
    size: usize,
}

struct Resolver {
    btf: Btf,
}

impl Resolver {
    /// Strips typedefs and qualifiers.
    fn concrete(&self, mut ty: Type) -> Type {
        for _ in 0..32 {
            let next = match &ty {
                Type::Typedef(t) => self.btf.resolve_chained_type(t).ok(),
                Type::Const(t) => self.btf.resolve_chained_type(t).ok(),
                Type::Volatile(t) => self.btf.resolve_chained_type(t).ok(),
                Type::Restrict(t) => self.btf.resolve_chained_type(t).ok(),
                Type::TypeTag(t) => self.btf.resolve_chained_type(t).ok(),
                _ => None,
            };
            match next {
                Some(next) => ty = next,
                None => break,
            }
        }
        ty
    }

    fn size_of(&self, ty: &Type) -> usize {
        match self.concrete(ty.clone()) {
            Type::Int(i) => i.size(),
            Type::Ptr(_) => 8,
            Type::Struct(s) | Type::Union(s) => s.size(),
            Type::Enum(e) => e.size(),
            Type::Enum64(e) => e.size(),
            Type::Array(a) => {
                let elem = self.btf.resolve_chained_type(&a).map(|t| self.size_of(&t)).unwrap_or(0);
                elem * a.len()
            }
            _ => 0,
        }
    }

    fn find_struct(&self, name: &str) -> Result<btf_rs::Struct, OffsetError> {
        let types = self
            .btf
            .resolve_types_by_name(name)
            .map_err(|_| OffsetError::MissingStruct { name: name.to_string() })?;
        types
            .into_iter()
            .find_map(|t| match t {
                Type::Struct(s) if s.size() > 0 => Some(s),
                _ => None,
            })
            .ok_or_else(|| OffsetError::MissingStruct { name: name.to_string() })
    }

    /// Finds `name` among the members of `st`, descending into anonymous
    /// structs and unions. Returns its bit offset, bitfield width and type.
    fn member(
        &self,
        st: &btf_rs::Struct,
        name: &str,
        depth: u32,
    ) -> Option<(u32, Option<u32>, Type)> {
        if depth > 8 {
            return None;
        }
        for m in &st.members {
            let member_name = self.btf.resolve_name(m).unwrap_or_default();
            let ty = self.btf.resolve_chained_type(m).ok()?;
            if member_name == name {
                return Some((m.bit_offset(), m.bitfield_size().filter(|&b| b > 0), ty));
            }
            if member_name.is_empty() {
                if let Type::Struct(inner) | Type::Union(inner) = self.concrete(ty) {
                    if let Some((off, bits, ty)) = self.member(&inner, name, depth + 1) {
                        return Some((m.bit_offset() + off, bits, ty));
                    }
                }
            }
        }
        None
    }

    /// Resolves `struct_name.a.b.c`.
    fn locate(&self, struct_name: &str, path: &str) -> Result<Location, OffsetError> {
        let full = format!("{struct_name}.{path}");
        let missing = || OffsetError::MissingField { path: full.clone() };
        let mut st = self.find_struct(struct_name)?;
        let mut bit_offset = 0;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let (off, bits, ty) = self.member(&st, part, 0).ok_or_else(missing)?;
            bit_offset += off;
            if parts.peek().is_none() {
                return Ok(Location { bit_offset, bitfield: bits, size: self.size_of(&ty) });
            }
            st = match self.concrete(ty) {
                Type::Struct(s) | Type::Union(s) => s,
                _ => return Err(missing()),
            };
        }
        Err(missing())
    }

    /// Byte offset of a plain (non-bitfield) field of exactly `size` bytes.
    fn offset(&self, struct_name: &str, path: &str, size: usize) -> Result<u32, OffsetError> {
        let loc = self.locate(struct_name, path)?;
        let full = || format!("{struct_name}.{path}");
        if loc.bitfield.is_some() {
            return Err(OffsetError::Bitfield { path: full() });
        }
        if loc.size != size {
            return Err(OffsetError::UnexpectedSize {
                path: full(),
                size: loc.size,
                expected: size,
            });
        }
        Ok(loc.bit_offset / 8)
    }
}

/// Reads the offsets from the kernel's BTF file.
pub fn from_btf_file(path: &Path) -> Result<KernelOffsets, OffsetError> {
    let btf = Btf::from_file(path)
        .map_err(|source| OffsetError::Read { path: path.display().to_string(), source })?;
    resolve(&Resolver { btf })
}

fn resolve(r: &Resolver) -> Result<KernelOffsets, OffsetError> {
    // `struct sock` starts with `struct sock_common __sk_common`; the programs
    // add field offsets to the sock pointer, so include the base.
    let common = r.offset("sock", "__sk_common", r.find_struct("sock_common")?.size())?;
    let sk = |field: &str, size: usize| -> Result<u32, OffsetError> {
        Ok(common + r.offset("sock_common", field, size)?)
    };

    // sk_protocol is a u16 since Linux 5.6 and a bitfield before; read the
    // aligned 32-bit unit that contains it and shift.
    let proto = r.locate("sock", "sk_protocol")?;
    let (unit, shift, mask) = match proto.bitfield {
        None => (proto.bit_offset / 32 * 4, proto.bit_offset % 32, (1u64 << (proto.size * 8)) - 1),
        Some(bits) => (proto.bit_offset / 32 * 4, proto.bit_offset % 32, (1u64 << bits) - 1),
    };
    if shift as u64 + mask.count_ones() as u64 > 32 {
        return Err(OffsetError::UnexpectedSize {
            path: "sock.sk_protocol".into(),
            size: proto.size,
            expected: 2,
        });
    }

    Ok(KernelOffsets {
        task_files: r.offset("task_struct", "files", 8)?,
        task_pid: r.offset("task_struct", "pid", 4)?,
        task_tgid: r.offset("task_struct", "tgid", 4)?,
        task_signal: r.offset("task_struct", "signal", 8)?,
        signal_live: r.offset("signal_struct", "live", 4)?,
        files_fdt: r.offset("files_struct", "fdt", 8)?,
        fdtable_max_fds: r.offset("fdtable", "max_fds", 4)?,
        fdtable_fd: r.offset("fdtable", "fd", 8)?,
        file_inode: r.offset("file", "f_inode", 8)?,
        file_private_data: r.offset("file", "private_data", 8)?,
        inode_mode: r.offset("inode", "i_mode", 2)?,
        socket_type: r.offset("socket", "type", 2)?,
        socket_sk: r.offset("socket", "sk", 8)?,
        sk_family: sk("skc_family", 2)?,
        sk_state: sk("skc_state", 1)?,
        sk_daddr: sk("skc_daddr", 4)?,
        sk_rcv_saddr: sk("skc_rcv_saddr", 4)?,
        sk_dport: sk("skc_dport", 2)?,
        sk_num: sk("skc_num", 2)?,
        sk_v6_daddr: sk("skc_v6_daddr", 16)?,
        sk_v6_rcv_saddr: sk("skc_v6_rcv_saddr", 16)?,
        sk_protocol: unit,
        sk_protocol_shift: shift,
        sk_protocol_mask: mask as u32,
        tcp_write_seq: r.offset("tcp_sock", "write_seq", 4)?,
        tcp_copied_seq: r.offset("tcp_sock", "copied_seq", 4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets() -> KernelOffsets {
        from_btf_file(Path::new(VMLINUX_BTF)).expect("kernel BTF of this machine resolves")
    }

    #[test]
    fn resolves_every_field_on_this_kernel() {
        let o = offsets();
        // Fields at the very start of their struct are legitimately 0; the
        // others must have been found somewhere inside.
        assert!(o.task_files > 0 && o.task_pid > 0 && o.task_tgid == o.task_pid + 4);
        assert!(o.file_inode > 0 && o.file_private_data > 0);
        assert!(o.socket_sk > o.socket_type);
        assert!(o.tcp_write_seq > 0 && o.tcp_copied_seq > 0);
        assert_ne!(o.sk_daddr, o.sk_rcv_saddr);
        assert_eq!(o.sk_rcv_saddr, o.sk_daddr + 4, "addrpair layout");
        assert_eq!(o.sk_num, o.sk_dport + 2, "portpair layout");
    }

    #[test]
    fn sk_protocol_is_a_plain_u16_on_modern_kernels() {
        let o = offsets();
        assert_eq!(o.sk_protocol_mask, 0xffff);
        assert_eq!(o.sk_protocol % 4, 0);
        assert!(o.sk_protocol_shift == 0 || o.sk_protocol_shift == 16);
    }

    #[test]
    fn a_missing_file_is_a_read_error_naming_it() {
        let err = from_btf_file(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/vmlinux"), "{err}");
    }

    #[test]
    fn unknown_fields_and_structs_are_named_in_the_error() {
        let r = Resolver { btf: Btf::from_file(VMLINUX_BTF).unwrap() };
        let err = r.offset("task_struct", "no_such_field", 8).unwrap_err();
        assert_eq!(err.to_string(), "kernel BTF has no field `task_struct.no_such_field`");
        let err = r.offset("no_such_struct", "x", 8).unwrap_err();
        assert_eq!(err.to_string(), "kernel BTF has no struct `no_such_struct`");
        let err = r.offset("task_struct", "pid", 8).unwrap_err();
        assert!(matches!(err, OffsetError::UnexpectedSize { size: 4, expected: 8, .. }), "{err}");
    }
}
