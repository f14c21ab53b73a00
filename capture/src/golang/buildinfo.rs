//! Go's build info (`.go.buildinfo`): the toolchain version and the module
//! list (`runtime/debug.BuildInfo` in text form) that `go version -m` shows.
//!
//! The blob starts with the 14-byte magic `"\xff Go buildinf:"`, a pointer
//! size byte and a flags byte, padded to 16 bytes. From Go 1.18 on
//! (`flags & 2`) the version and the module info follow at offset 32 as
//! varint-length-prefixed strings; before, two pointers at offset 16 point to
//! Go string headers (data pointer, length) elsewhere in the data segments.
//! The module info is wrapped in two 16-byte sentinels, dropped here. When
//! the section header is gone, the writable segments are searched for the
//! magic at 16-byte-aligned addresses, as `debug/buildinfo` does.

use super::elf::Elf;
use super::InspectError;

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const SECTION: &str = ".go.buildinfo";
/// Longest version or module info string accepted.
const MAX_STRING: u64 = 1 << 20;

/// What the build info says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BuildInfo {
    /// `go1.19.8`, `devel go1.22-abcdef ...`.
    pub go_version: String,
    /// The module info lines (`path`, `mod`, `dep`, `=>`, `build`), without
    /// sentinels; empty in GOPATH builds.
    pub modinfo: String,
}

/// Finds and reads the build info; `None` if the binary has none (not Go,
/// or Go older than 1.13).
pub(crate) fn find(elf: &Elf<'_>) -> Result<Option<BuildInfo>, InspectError> {
    let blob = match elf.section(SECTION)? {
        Some(section) => Some(section),
        None => elf.data_segments(true).find_map(|(vaddr, bytes)| {
            // Aligned to 16 in memory: step through the file bytes from the
            // first 16-aligned address.
            let skip = usize::try_from(vaddr.wrapping_neg() % 16).ok()?;
            let bytes = bytes.get(skip..)?;
            let at = bytes.chunks(16).position(|chunk| chunk.starts_with(MAGIC))?;
            bytes.get(at * 16..)
        }),
    };
    let Some(blob) = blob else { return Ok(None) };
    if !blob.starts_with(MAGIC) {
        return Err(InspectError::corrupt(SECTION, "no build info magic"));
    }
    parse(blob, |vaddr, len| elf.bytes_at(vaddr, len))
        .map(Some)
        .map_err(|reason| InspectError::corrupt(SECTION, reason))
}

/// Parses a build info blob that starts with the magic; `read` gives the
/// bytes at a virtual address (for the pre-1.18 pointer form).
pub(crate) fn parse<'a>(
    blob: &'a [u8],
    read: impl Fn(u64, u64) -> Option<&'a [u8]>,
) -> Result<BuildInfo, String> {
    let header = blob.get(..32).ok_or("shorter than its 32-byte header")?;
    let ptr_size = header[14];
    let flags = header[15];
    let (version, modinfo) = if flags & 2 != 0 {
        let mut rest = &blob[32..];
        let version = varint_string(&mut rest).ok_or("bad Go version string")?;
        let modinfo = varint_string(&mut rest).ok_or("bad module info string")?;
        (version, modinfo)
    } else {
        let big_endian = flags & 1 != 0;
        let width = match ptr_size {
            4 | 8 => usize::from(ptr_size),
            n => return Err(format!("pointer size {n}")),
        };
        let word = |bytes: &[u8], at: usize| -> Option<u64> {
            let b = bytes.get(at..at.checked_add(width)?)?;
            let mut v = 0u64;
            for i in 0..width {
                let byte = if big_endian { b[i] } else { b[width - 1 - i] };
                v = v << 8 | u64::from(byte);
            }
            Some(v)
        };
        // A pointer to a Go string header: data pointer, then length.
        let go_string = |ptr: u64| -> Option<&'a [u8]> {
            let header = read(ptr, 2 * width as u64)?;
            let (data, len) = (word(header, 0)?, word(header, width)?);
            if len == 0 {
                return Some(&[]);
            }
            read(data, len.min(MAX_STRING + 1)).filter(|_| len <= MAX_STRING)
        };
        let version = word(header, 16).and_then(go_string).ok_or("bad Go version pointer")?;
        let modinfo =
            word(header, 16 + width).and_then(go_string).ok_or("bad module info pointer")?;
        (version, modinfo)
    };
    if version.is_empty() {
        return Err("empty Go version".to_owned());
    }
    Ok(BuildInfo {
        go_version: String::from_utf8_lossy(version).into_owned(),
        modinfo: String::from_utf8_lossy(strip_sentinels(modinfo)).into_owned(),
    })
}

/// Reads a uvarint-length-prefixed string and advances past it.
fn varint_string<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut len = 0u64;
    let mut shift = 0;
    let mut used = 0;
    loop {
        let byte = *rest.get(used)?;
        used += 1;
        if shift > 63 {
            return None;
        }
        len |= u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            break;
        }
    }
    if len > MAX_STRING {
        return None;
    }
    let end = used.checked_add(usize::try_from(len).ok()?)?;
    let s = rest.get(used..end)?;
    *rest = rest.get(end..)?;
    Some(s)
}

/// The module info without the 16-byte sentinels `cmd/go` wraps it in.
fn strip_sentinels(modinfo: &[u8]) -> &[u8] {
    // As debug/buildinfo: long enough, and a newline before the end sentinel.
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        modinfo
    }
}

/// The version of module `path` in the module info: the `dep` line's, or its
/// `=>` replacement's. `None` if it is not listed, or replaced by a directory
/// (no version).
pub(crate) fn module_version(modinfo: &str, path: &str) -> Option<String> {
    let mut found: Option<Option<String>> = None;
    let mut last_was_match = false;
    for line in modinfo.lines() {
        let mut fields = line.split('\t');
        match fields.next() {
            Some("dep" | "mod") => {
                last_was_match = fields.next() == Some(path);
                if last_was_match {
                    let version = fields.next().filter(|v| !v.is_empty() && *v != "(devel)");
                    found = Some(version.map(str::to_owned));
                }
            }
            Some("=>") if last_was_match => {
                // "=>\tNEWPATH\tNEWVERSION\tSUM"; a directory has no version.
                let version = fields.nth(1).filter(|v| !v.is_empty());
                found = Some(version.map(str::to_owned));
                last_was_match = false;
            }
            _ => last_was_match = false,
        }
    }
    found.flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push(n as u8 | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    const START: &[u8; 16] = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6";
    const END: &[u8; 16] = b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2";

    fn wrapped(modinfo: &str) -> Vec<u8> {
        [&START[..], modinfo.as_bytes(), &END[..]].concat()
    }

    #[test]
    fn go118_inline_strings() {
        let modinfo = "path\tex\nmod\tex\t(devel)\t\ndep\tgoogle.golang.org/grpc\tv1.33.3\th1:x=\n";
        let mut blob = MAGIC.to_vec();
        blob.extend_from_slice(&[8, 2]);
        blob.resize(32, 0);
        varint(8, &mut blob);
        blob.extend_from_slice(b"go1.19.8");
        let m = wrapped(modinfo);
        varint(m.len(), &mut blob);
        blob.extend_from_slice(&m);
        let info = parse(&blob, |_, _| None).unwrap();
        assert_eq!(info.go_version, "go1.19.8");
        assert_eq!(info.modinfo, modinfo);
        assert_eq!(
            module_version(&info.modinfo, "google.golang.org/grpc").as_deref(),
            Some("v1.33.3")
        );
        // Every truncation is an error, never a panic.
        for len in 0..blob.len() {
            assert!(parse(&blob[..len], |_, _| None).is_err(), "{len}");
        }
        // A huge varint.
        let mut huge = blob[..32].to_vec();
        huge.extend_from_slice(&[0xff; 12]);
        assert!(parse(&huge, |_, _| None).is_err());
    }

    #[test]
    fn pre118_pointers() {
        // Go 1.17 and older: pointers to string headers at 0x1000 and 0x1010.
        let modinfo = wrapped("path\tex\nmod\tex\t(devel)\t\n");
        let mut mem = vec![0u8; 0x100];
        let put = |mem: &mut Vec<u8>, at: usize, v: u64| {
            mem[at..at + 8].copy_from_slice(&v.to_le_bytes());
        };
        put(&mut mem, 0x00, 0x1020); // version data
        put(&mut mem, 0x08, 9);
        put(&mut mem, 0x10, 0x1040); // modinfo data
        put(&mut mem, 0x18, modinfo.len() as u64);
        mem[0x20..0x29].copy_from_slice(b"go1.17.13");
        mem[0x40..0x40 + modinfo.len()].copy_from_slice(&modinfo);
        let mut blob = MAGIC.to_vec();
        blob.extend_from_slice(&[8, 0]);
        blob.extend_from_slice(&0x1000u64.to_le_bytes());
        blob.extend_from_slice(&0x1010u64.to_le_bytes());
        let read = |vaddr: u64, len: u64| {
            let start = usize::try_from(vaddr.checked_sub(0x1000)?).ok()?;
            mem.get(start..start.checked_add(usize::try_from(len).ok()?)?)
        };
        let info = parse(&blob, read).unwrap();
        assert_eq!(info.go_version, "go1.17.13");
        assert_eq!(info.modinfo, "path\tex\nmod\tex\t(devel)\t\n");
        // Pointers into nowhere.
        let mut bad = blob.clone();
        bad[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse(&bad, read).is_err());
        let mut bad_size = blob.clone();
        bad_size[14] = 3;
        assert!(parse(&bad_size, read).is_err());
    }

    #[test]
    fn module_versions() {
        let m = "path\tcmd\nmod\tcmd\t(devel)\t\n\
                 dep\tgolang.org/x/net\tv0.1.0\th1:a=\n\
                 dep\tgoogle.golang.org/grpc\tv1.33.3\th1:b=\n\
                 =>\tgithub.com/fork/grpc\tv1.33.4-fork\th1:c=\n\
                 dep\tgoogle.golang.org/grpc/examples\tv0.0.0\th1:d=\n";
        assert_eq!(module_version(m, "google.golang.org/grpc").as_deref(), Some("v1.33.4-fork"));
        assert_eq!(module_version(m, "golang.org/x/net").as_deref(), Some("v0.1.0"));
        assert_eq!(module_version(m, "google.golang.org/protobuf"), None);
        let local = "dep\tgoogle.golang.org/grpc\tv1.33.3\t\n=>\t../grpc\t\t\n";
        assert_eq!(module_version(local, "google.golang.org/grpc"), None);
        assert_eq!(
            module_version("mod\tgoogle.golang.org/grpc\t(devel)\t\n", "google.golang.org/grpc"),
            None
        );
        assert_eq!(module_version("", "google.golang.org/grpc"), None);
    }
}
