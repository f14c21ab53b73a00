//! The ELF file as the Go inspector needs it: sections by name (inflating
//! compressed debug sections within a size limit), the loadable segments
//! (virtual address → file offset, bytes at a virtual address), and the build
//! ids. Every access is bounds-checked and answers `None` or an error on a
//! file that does not hold what its headers claim.

use std::borrow::Cow;

use object::elf::{PF_W, PF_X};
use object::{
    Architecture, Endianness, FileKind, Object, ObjectSection, ObjectSegment, SegmentFlags,
};

use super::InspectError;

/// Largest size a compressed debug section may claim when inflated.
const MAX_DEBUG_SECTION: u64 = 512 << 20;

/// A `PT_LOAD` segment, with its file bytes checked to be in the file.
#[derive(Clone, Copy, Debug)]
struct Segment {
    vaddr: u64,
    /// Bytes present in the file (`p_filesz`, cut to what the file holds).
    filesz: u64,
    offset: u64,
    exec: bool,
    write: bool,
}

/// A parsed ELF file and its bytes.
pub(crate) struct Elf<'data> {
    data: &'data [u8],
    file: object::File<'data>,
    segments: Vec<Segment>,
}

impl<'data> Elf<'data> {
    /// Parses the ELF headers of `data`.
    pub fn parse(data: &'data [u8]) -> Result<Self, InspectError> {
        match FileKind::parse(data) {
            Ok(FileKind::Elf32 | FileKind::Elf64) => {}
            _ => return Err(InspectError::NotElf),
        }
        let file = object::File::parse(data)?;
        let len = data.len() as u64;
        let segments = file
            .segments()
            .filter_map(|s| {
                let (offset, filesz) = s.file_range();
                // Keep the part of the segment that is in the file.
                let filesz = filesz.min(len.saturating_sub(offset));
                let flags = match s.flags() {
                    SegmentFlags::Elf { p_flags } => p_flags,
                    _ => 0,
                };
                (offset < len).then_some(Segment {
                    vaddr: s.address(),
                    filesz,
                    offset,
                    exec: flags & PF_X != 0,
                    write: flags & PF_W != 0,
                })
            })
            .collect();
        Ok(Self { data, file, segments })
    }

    /// The underlying `object` file.
    pub fn file(&self) -> &object::File<'data> {
        &self.file
    }

    /// Whether the file is a 64-bit x86 one (not x32).
    pub fn is_x86_64(&self) -> bool {
        self.file.architecture() == Architecture::X86_64
    }

    /// The architecture, for messages.
    pub fn architecture_name(&self) -> String {
        format!("{:?}", self.file.architecture())
    }

    /// Whether the file has sections only the Go linker writes.
    pub fn looks_like_go(&self) -> bool {
        [".gopclntab", ".data.rel.ro.gopclntab", ".note.go.buildid", ".gosymtab"]
            .iter()
            .any(|name| self.file.section_by_name(name).is_some())
    }

    /// An uncompressed section's file bytes; `None` if there is no such
    /// section.
    pub fn section(&self, name: &'static str) -> Result<Option<&'data [u8]>, InspectError> {
        let Some(section) = self.file.section_by_name(name) else { return Ok(None) };
        let data = section
            .data()
            .map_err(|e| InspectError::corrupt(name, format!("section bytes: {e}")))?;
        Ok(Some(data))
    }

    /// A debug section's contents, inflated if it is compressed (an ELF
    /// `SHF_COMPRESSED` `.debug_*` or an old-style `.zdebug_*`); `None` if
    /// there is no such section.
    pub fn debug_section(
        &self,
        name: &'static str,
    ) -> Result<Option<Cow<'data, [u8]>>, InspectError> {
        let Some(section) = self.file.section_by_name(name) else { return Ok(None) };
        let compressed = section
            .compressed_data()
            .map_err(|e| InspectError::corrupt(name, format!("compression header: {e}")))?;
        if compressed.uncompressed_size > MAX_DEBUG_SECTION {
            return Err(InspectError::corrupt(
                name,
                format!(
                    "claims {} bytes once inflated, more than the {MAX_DEBUG_SECTION} accepted",
                    compressed.uncompressed_size
                ),
            ));
        }
        let data =
            compressed.decompress().map_err(|e| InspectError::corrupt(name, e.to_string()))?;
        Ok(Some(data))
    }

    /// The address and size of `.text`, if there is one.
    pub fn text_section(&self) -> Option<(u64, u64)> {
        let text = self.file.section_by_name(".text")?;
        Some((text.address(), text.size()))
    }

    /// The file offset of code at `vaddr`: it must lie in the file bytes of
    /// an executable `PT_LOAD` segment.
    pub fn code_file_offset(&self, vaddr: u64) -> Option<u64> {
        self.segments.iter().filter(|s| s.exec).find_map(|s| {
            let delta = vaddr.checked_sub(s.vaddr)?;
            (delta < s.filesz).then(|| s.offset + delta)
        })
    }

    /// The `len` file bytes that a `PT_LOAD` segment maps at `vaddr`.
    pub fn bytes_at(&self, vaddr: u64, len: u64) -> Option<&'data [u8]> {
        self.segments.iter().find_map(|s| {
            let delta = vaddr.checked_sub(s.vaddr)?;
            let end = delta.checked_add(len)?;
            if end > s.filesz {
                return None;
            }
            let start = usize::try_from(s.offset.checked_add(delta)?).ok()?;
            let len = usize::try_from(len).ok()?;
            self.data.get(start..start.checked_add(len)?)
        })
    }

    /// The file bytes of the non-executable `PT_LOAD` segments, with their
    /// virtual addresses; only the writable ones if `writable`.
    pub fn data_segments(&self, writable: bool) -> impl Iterator<Item = (u64, &'data [u8])> + '_ {
        self.segments.iter().filter(move |s| !s.exec && (!writable || s.write)).filter_map(|s| {
            let start = usize::try_from(s.offset).ok()?;
            let end = usize::try_from(s.offset.checked_add(s.filesz)?).ok()?;
            Some((s.vaddr, self.data.get(start..end)?))
        })
    }

    /// The Go build id from `.note.go.buildid`, else the GNU build id in hex.
    pub fn build_id(&self) -> Option<String> {
        if let Ok(Some(note)) = self.section(".note.go.buildid") {
            if let Some(id) = go_build_id(note, self.file.endianness()) {
                return Some(id);
            }
        }
        let gnu = self.file.build_id().ok()??;
        Some(gnu.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// The descriptor of the `Go` note of type 4 (`ELF_NOTE_GOBUILDID_TAG`) in a
/// note section's bytes.
fn go_build_id(mut notes: &[u8], endian: Endianness) -> Option<String> {
    let word = |b: &[u8], at: usize| -> Option<usize> {
        let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        let v = match endian {
            Endianness::Little => u32::from_le_bytes(bytes),
            Endianness::Big => u32::from_be_bytes(bytes),
        };
        usize::try_from(v).ok()
    };
    let align4 = |n: usize| n.checked_add(3).map(|n| n & !3);
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (word(notes, 0)?, word(notes, 4)?, word(notes, 8)?);
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = align4(name_end)?;
        let desc_end = desc_start.checked_add(descsz)?;
        let name = notes.get(12..name_end)?;
        let desc = notes.get(desc_start..desc_end)?;
        if kind == 4 && name.split(|&b| b == 0).next() == Some(b"Go") {
            let id = desc.split(|&b| b == 0).next()?;
            return std::str::from_utf8(id).ok().filter(|s| !s.is_empty()).map(str::to_owned);
        }
        notes = notes.get(align4(desc_end)?..).unwrap_or_default();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_note_is_found_after_another_note() {
        let mut notes = Vec::new();
        // A GNU note first: name "GNU\0", type 3, 4 bytes of id.
        notes.extend_from_slice(&4u32.to_le_bytes());
        notes.extend_from_slice(&4u32.to_le_bytes());
        notes.extend_from_slice(&3u32.to_le_bytes());
        notes.extend_from_slice(b"GNU\0\x01\x02\x03\x04");
        // Then Go's: name "Go\0\0", type 4, an unaligned descriptor.
        notes.extend_from_slice(&4u32.to_le_bytes());
        notes.extend_from_slice(&5u32.to_le_bytes());
        notes.extend_from_slice(&4u32.to_le_bytes());
        notes.extend_from_slice(b"Go\0\0abc/d\0\0\0");
        assert_eq!(go_build_id(&notes, Endianness::Little).as_deref(), Some("abc/d"));
        // Truncated anywhere: no answer, no panic.
        for len in 0..notes.len() - 3 {
            assert_eq!(go_build_id(&notes[..len], Endianness::Little), None, "{len}");
        }
        // Sizes that overflow.
        let mut bad = Vec::new();
        for w in [u32::MAX, u32::MAX, 4] {
            bad.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(go_build_id(&bad, Endianness::Little), None);
    }
}
