//! Go's function table (`.gopclntab`): every function's name and entry
//! address, which the runtime needs for stack traces and so even stripped
//! binaries keep.
//!
//! Layout (`runtime/symtab.go`'s `pcHeader`): a 4-byte magic, two zero pad
//! bytes, the minimum instruction size, the pointer size, then pointer-sized
//! words:
//!
//! - Go 1.18 and 1.19 (magic `0xfffffff0`), Go 1.20+ (`0xfffffff1`): `nfunc`,
//!   `nfiles`, `textStart`, `funcnameOffset`, `cuOffset`, `filetabOffset`,
//!   `pctabOffset`, `pclnOffset`. The function table at `pclnOffset` has
//!   `nfunc + 1` pairs of `u32` (entry offset from `textStart`, offset of
//!   the `_func` from the function table's start); each `_func` starts with
//!   `entryOff u32` and `nameOff i32` into the name table at
//!   `funcnameOffset`, whose names end with a NUL.
//! - Go 1.16 and 1.17 (`0xfffffffa`): the same without `textStart`; the
//!   pairs, and the `_func`'s entry, are pointer-sized absolute addresses.
//!
//! `textStart` is `runtime.text`; in a position-independent binary the word
//! in the file may be 0 (it is relocated at load time), and then the address
//! of `.text` stands in, as `debug/gosym` does. A non-zero `textStart` must
//! lie in `.text`. Every `_func`'s entry must agree with its function table
//! entry, which catches most corruption.

use super::elf::Elf;
use super::InspectError;

const SECTION: &str = ".gopclntab";

/// Which layout a function table has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Go 1.16 and 1.17: absolute pointer-sized entries.
    Go116,
    /// Go 1.18 and later: `u32` offsets from `textStart`.
    Go118,
}

/// A function table checked well enough to walk.
#[derive(Debug)]
pub(crate) struct Pclntab<'data> {
    pub layout: Layout,
    /// The base of entry offsets (Go 1.18+); 0 for Go 1.16.
    pub text_start: u64,
    nfunc: usize,
    ptr_size: usize,
    /// The name table (from `funcnameOffset` to the end of the section).
    funcnames: &'data [u8],
    /// The function table and the `_func`s (from `pclnOffset` on).
    pcln: &'data [u8],
}

impl<'data> Pclntab<'data> {
    /// Finds and checks the function table (`.gopclntab`, or
    /// `.data.rel.ro.gopclntab` in some position-independent binaries);
    /// `None` if there is none.
    pub fn find(elf: &Elf<'data>) -> Result<Option<Self>, InspectError> {
        let section = match elf.section(SECTION)? {
            Some(s) => s,
            None => match elf.section(".data.rel.ro.gopclntab")? {
                Some(s) => s,
                None => return Ok(None),
            },
        };
        let text = elf.text_section();
        Self::parse(section, text).map(Some).map_err(|r| InspectError::corrupt(SECTION, r))
    }

    /// Checks the header of the table in `data`; `text` is the address and
    /// size of `.text`, if known.
    pub fn parse(data: &'data [u8], text: Option<(u64, u64)>) -> Result<Self, String> {
        let header = data.get(..8).ok_or("shorter than its header")?;
        let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let layout = match magic {
            0xffff_fff0 | 0xffff_fff1 => Layout::Go118,
            0xffff_fffa => Layout::Go116,
            0xffff_fffb => return Err("Go 1.2–1.15 layout, not read".to_owned()),
            m => return Err(format!("unknown magic {m:#010x}")),
        };
        let (pad1, pad2, min_lc, ptr_size) = (header[4], header[5], header[6], header[7]);
        if pad1 != 0 || pad2 != 0 || !matches!(min_lc, 1 | 2 | 4) || !matches!(ptr_size, 4 | 8) {
            return Err("bad header bytes".to_owned());
        }
        let ptr_size = usize::from(ptr_size);
        let word = |i: usize| read_uint(data, 8 + i * ptr_size, ptr_size).ok_or("truncated header");
        let nfunc = word(0)?;
        let (text_start, funcname_off, pcln_off) = match layout {
            Layout::Go118 => (word(2)?, word(3)?, word(7)?),
            Layout::Go116 => (0, word(2)?, word(6)?),
        };
        let offset = |v: u64, what: &str| -> Result<usize, String> {
            usize::try_from(v)
                .ok()
                .filter(|&v| v <= data.len())
                .ok_or(format!("{what} {v:#x} out of range"))
        };
        let funcnames = &data[offset(funcname_off, "funcnameOffset")?..];
        let pcln = &data[offset(pcln_off, "pclnOffset")?..];

        // nfunc + 1 functab entries must fit.
        let entry_size = match layout {
            Layout::Go118 => 8,
            Layout::Go116 => 2 * ptr_size,
        };
        let nfunc = usize::try_from(nfunc)
            .ok()
            .filter(|&n| {
                n.checked_add(1)
                    .and_then(|n| n.checked_mul(entry_size))
                    .is_some_and(|len| len <= pcln.len())
            })
            .ok_or(format!("{nfunc} functions do not fit"))?;

        let text_start = match layout {
            Layout::Go116 => 0,
            Layout::Go118 if text_start == 0 => {
                text.ok_or("textStart is 0 (relocated) and there is no .text section")?.0
            }
            Layout::Go118 => {
                if let Some((addr, size)) = text {
                    if text_start < addr || text_start - addr >= size {
                        return Err(format!(
                            "textStart {text_start:#x} is outside .text ({addr:#x}, {size:#x} bytes)"
                        ));
                    }
                }
                text_start
            }
        };
        Ok(Self { layout, text_start, nfunc, ptr_size, funcnames, pcln })
    }

    /// The number of functions.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.nfunc
    }

    /// Calls `f` with every function's name and entry address.
    pub fn for_each_function(
        &self,
        mut f: impl FnMut(&'data [u8], u64),
    ) -> Result<(), InspectError> {
        for i in 0..self.nfunc {
            let (name, entry) = self
                .function(i)
                .map_err(|r| InspectError::corrupt(SECTION, format!("function {i}: {r}")))?;
            f(name, entry);
        }
        Ok(())
    }

    /// The name and entry address of function `i` (< `nfunc`).
    fn function(&self, i: usize) -> Result<(&'data [u8], u64), String> {
        let (entry, func_off) = match self.layout {
            Layout::Go118 => {
                let at = i * 8;
                let off = read_uint(self.pcln, at, 4).ok_or("truncated function table")?;
                let func = read_uint(self.pcln, at + 4, 4).ok_or("truncated function table")?;
                (self.text_start.checked_add(off).ok_or("entry overflows")?, func)
            }
            Layout::Go116 => {
                let at = i * 2 * self.ptr_size;
                let entry =
                    read_uint(self.pcln, at, self.ptr_size).ok_or("truncated function table")?;
                let func = read_uint(self.pcln, at + self.ptr_size, self.ptr_size)
                    .ok_or("truncated function table")?;
                (entry, func)
            }
        };
        let func = usize::try_from(func_off).map_err(|_| "bad _func offset")?;
        // The _func's own entry, then its name offset.
        let (own_entry, name_at) = match self.layout {
            Layout::Go118 => {
                let off = read_uint(self.pcln, func, 4).ok_or("_func out of range")?;
                (self.text_start.checked_add(off).ok_or("entry overflows")?, func.checked_add(4))
            }
            Layout::Go116 => (
                read_uint(self.pcln, func, self.ptr_size).ok_or("_func out of range")?,
                func.checked_add(self.ptr_size),
            ),
        };
        if own_entry != entry {
            return Err(format!("_func entry {own_entry:#x} differs from the table's {entry:#x}"));
        }
        let name_off =
            name_at.and_then(|at| read_uint(self.pcln, at, 4)).ok_or("_func out of range")?;
        // nameOff is an int32: a negative one is out of range.
        let name_off = usize::try_from(name_off).ok().filter(|&n| n <= i32::MAX as usize);
        let name = name_off
            .and_then(|n| self.funcnames.get(n..))
            .and_then(|s| s.iter().position(|&b| b == 0).map(|end| &s[..end]))
            .ok_or("name out of range or not NUL-terminated")?;
        Ok((name, entry))
    }
}

/// A little-endian unsigned integer of `size` (4 or 8) bytes at `at`.
fn read_uint(data: &[u8], at: usize, size: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(size)?)?;
    Some(match size {
        4 => u64::from(u32::from_le_bytes(bytes.try_into().ok()?)),
        8 => u64::from_le_bytes(bytes.try_into().ok()?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Go 1.18-layout table of `names`, entries 0x10 apart from 0x401000.
    fn table(names: &[&str], magic: u32) -> Vec<u8> {
        let mut funcnames = Vec::new();
        let mut name_offs = Vec::new();
        for n in names {
            name_offs.push(funcnames.len() as u32);
            funcnames.extend_from_slice(n.as_bytes());
            funcnames.push(0);
        }
        let header_len = 8 + 8 * 8;
        let funcname_off = header_len;
        let pcln_off = funcname_off + funcnames.len();
        let nfunc = names.len();
        let functab_len = (nfunc + 1) * 8;
        let mut pcln = Vec::new();
        for i in 0..nfunc {
            pcln.extend_from_slice(&(i as u32 * 0x10).to_le_bytes());
            pcln.extend_from_slice(&((functab_len + i * 8) as u32).to_le_bytes());
        }
        pcln.extend_from_slice(&(nfunc as u32 * 0x10).to_le_bytes());
        pcln.extend_from_slice(&0u32.to_le_bytes());
        for (i, off) in name_offs.iter().enumerate() {
            pcln.extend_from_slice(&(i as u32 * 0x10).to_le_bytes());
            pcln.extend_from_slice(&off.to_le_bytes());
        }
        let mut data = magic.to_le_bytes().to_vec();
        data.extend_from_slice(&[0, 0, 1, 8]);
        for w in [nfunc, 1, 0x401000, funcname_off, pcln_off, pcln_off, pcln_off, pcln_off] {
            data.extend_from_slice(&(w as u64).to_le_bytes());
        }
        data.extend_from_slice(&funcnames);
        data.extend_from_slice(&pcln);
        data
    }

    fn names(t: &Pclntab<'_>) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        t.for_each_function(|n, e| out.push((String::from_utf8_lossy(n).into_owned(), e))).unwrap();
        out
    }

    #[test]
    fn walks_a_synthetic_table() {
        for magic in [0xffff_fff0, 0xffff_fff1] {
            let data = table(&["main.main", "runtime.text"], magic);
            let t = Pclntab::parse(&data, Some((0x401000, 0x100))).unwrap();
            assert_eq!(t.len(), 2);
            assert_eq!(
                names(&t),
                [("main.main".to_owned(), 0x401000), ("runtime.text".to_owned(), 0x401010)]
            );
        }
    }

    #[test]
    fn text_start_is_checked_or_replaced() {
        let mut data = table(&["a"], 0xffff_fff0);
        assert!(Pclntab::parse(&data, Some((0x500000, 0x100)))
            .unwrap_err()
            .contains("outside .text"));
        assert_eq!(Pclntab::parse(&data, None).unwrap().text_start, 0x401000);
        // An unrelocated (0) textStart: .text's address instead.
        data[8 + 2 * 8..8 + 3 * 8].fill(0);
        assert_eq!(Pclntab::parse(&data, Some((0x1000, 0x100))).unwrap().text_start, 0x1000);
        assert!(Pclntab::parse(&data, None).is_err());
    }

    #[test]
    fn corrupt_tables_are_errors() {
        let data = table(&["main.main", "runtime.text"], 0xffff_fff0);
        // Truncation anywhere: an error from parse or from the walk.
        for len in 0..data.len() {
            if let Ok(t) = Pclntab::parse(&data[..len], None) {
                assert!(t.for_each_function(|_, _| ()).is_err(), "{len}");
            }
        }
        // Every single-byte change: no panic.
        for at in 0..data.len() {
            for x in [0x01, 0x80, 0xff] {
                let mut bad = data.clone();
                bad[at] ^= x;
                if let Ok(t) = Pclntab::parse(&bad, None) {
                    let _ = t.for_each_function(|_, _| ());
                }
            }
        }
        // Absurd nfunc.
        let mut bad = data.clone();
        bad[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Pclntab::parse(&bad, None).is_err());
        let mut old = data.clone();
        old[..4].copy_from_slice(&0xffff_fffbu32.to_le_bytes());
        assert!(Pclntab::parse(&old, None).unwrap_err().contains("1.2"));
    }
}
