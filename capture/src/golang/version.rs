//! Versions: the Go release of a toolchain version string, grpc-go versions
//! (`v1.33.3`, `1.34.0-dev`), and grpc-go's version as it survives in a
//! binary without a module list: `grpc.Version` is a constant concatenated
//! into the `grpc-go/<version>` user agent at compile time, so a client keeps
//! the whole string among its read-only data.

use std::fmt;

use super::elf::Elf;

const USER_AGENT: &[u8] = b"grpc-go/";

/// The minor release of Go 1 named by a toolchain version (`go1.19.8` → 19,
/// `go1.21rc2` → 21, `devel go1.22-abc...` → 22); `None` if it names none.
pub(crate) fn go_minor(version: &str) -> Option<u32> {
    let at = version.find("go1.")?;
    let digits: &str = &version[at + 4..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// A grpc-go version: `major.minor[.patch][-pre]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcVersion {
    /// 1 for every grpc-go release so far.
    pub major: u32,
    /// The minor release, which the offset table is keyed by.
    pub minor: u32,
    /// The patch release, if given.
    pub patch: Option<u32>,
    /// A pre-release suffix without its dash (`dev`), if any.
    pub pre: Option<String>,
}

impl GrpcVersion {
    /// Parses `v1.33.3`, `1.33.3`, `1.34.0-dev`, `1.33`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let (numbers, pre) = match s.split_once('-') {
            Some((n, p)) if !p.is_empty() => (n, Some(p.to_owned())),
            Some(_) => return None,
            None => (s, None),
        };
        let mut parts = numbers.split('.');
        let number = |p: Option<&str>| -> Option<u32> {
            let p = p?;
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse().ok())?
        };
        let major = number(parts.next())?;
        let minor = number(parts.next())?;
        let patch = match parts.next() {
            Some(p) => Some(number(Some(p))?),
            None => None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Self { major, minor, patch, pre })
    }
}

impl fmt::Display for GrpcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(patch) = self.patch {
            write!(f, ".{patch}")?;
        }
        if let Some(pre) = &self.pre {
            write!(f, "-{pre}")?;
        }
        Ok(())
    }
}

/// grpc-go's version from a `grpc-go/<version>` string among the read-only
/// data (`.rodata`, where Go keeps string constants, else every
/// non-executable segment); `None` if there is none, or the ones there
/// disagree.
pub(crate) fn user_agent_version(elf: &Elf<'_>) -> Option<GrpcVersion> {
    let regions: Vec<&[u8]> = match elf.section(".rodata") {
        Ok(Some(rodata)) => vec![rodata],
        _ => elf.data_segments(false).map(|(_, bytes)| bytes).collect(),
    };
    let mut found: Option<GrpcVersion> = None;
    for bytes in regions {
        for at in find_all(bytes, USER_AGENT) {
            let Some(v) = bytes.get(at + USER_AGENT.len()..).and_then(user_agent_tail) else {
                continue;
            };
            match &found {
                None => found = Some(v),
                Some(seen) if *seen == v => {}
                Some(seen) => {
                    tracing::debug!(%seen, other = %v, "two grpc-go user agent versions");
                    return None;
                }
            }
        }
    }
    found
}

/// The version at the start of `tail`, the bytes after `grpc-go/`. Go packs
/// string constants without separators, so the version is cut where it
/// stops looking like one: digits and dots, then an optional `-dev` (the
/// only suffix grpc-go's `Version` constants use). A patch number could run
/// into a following string that starts with a digit; the offset table is
/// keyed by major and minor only.
fn user_agent_tail(tail: &[u8]) -> Option<GrpcVersion> {
    let end = tail.iter().position(|b| !(b.is_ascii_digit() || *b == b'.')).unwrap_or(tail.len());
    let numbers = std::str::from_utf8(&tail[..end]).ok()?.trim_end_matches('.');
    let mut v = GrpcVersion::parse(numbers)?;
    if tail[end..].starts_with(b"-dev") {
        v.pre = Some("dev".to_owned());
    }
    Some(v)
}

/// Offsets of every occurrence of `needle` in `haystack`.
fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    let mut from = 0;
    std::iter::from_fn(move || {
        let (&first, rest) = needle.split_first()?;
        while let Some(skip) = haystack.get(from..)?.iter().position(|&b| b == first) {
            let at = from + skip;
            from = at + 1;
            if haystack.get(at + 1..)?.starts_with(rest) {
                return Some(at);
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_minors() {
        assert_eq!(go_minor("go1.19.8"), Some(19));
        assert_eq!(go_minor("go1.21rc2"), Some(21));
        assert_eq!(go_minor("go1.16"), Some(16));
        assert_eq!(go_minor("devel go1.22-2a3b4c5 Tue Jan 1 00:00:00 2024 +0000"), Some(22));
        assert_eq!(go_minor("devel +abcdef"), None);
        assert_eq!(go_minor("go1."), None);
        assert_eq!(go_minor(""), None);
    }

    #[test]
    fn grpc_versions() {
        let v = GrpcVersion::parse("v1.33.3").unwrap();
        assert_eq!((v.major, v.minor, v.patch, v.pre.as_deref()), (1, 33, Some(3), None));
        assert_eq!(v.to_string(), "1.33.3");
        let v = GrpcVersion::parse("1.33.3-dev").unwrap();
        assert_eq!((v.minor, v.patch, v.pre.as_deref()), (33, Some(3), Some("dev")));
        assert_eq!(v.to_string(), "1.33.3-dev");
        let v = GrpcVersion::parse("1.33").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 33, None));
        assert_eq!(v.to_string(), "1.33");
        for bad in ["", "v", "1", "1.", "1.x", "1.33.", "1.33.3.4", "1.33.3-", "+1.2", "1.-2"] {
            assert_eq!(GrpcVersion::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn user_agent_tails() {
        let v = |s: &[u8]| user_agent_tail(s).map(|v| v.to_string());
        assert_eq!(v(b"1.33.3grpc-trace-bin").as_deref(), Some("1.33.3"));
        assert_eq!(v(b"1.33.3 is unavailable").as_deref(), Some("1.33.3"));
        assert_eq!(v(b"1.34.0-devgrpc-message").as_deref(), Some("1.34.0-dev"));
        assert_eq!(v(b"1.33.").as_deref(), Some("1.33"));
        assert_eq!(v(b"1.33.3").as_deref(), Some("1.33.3"));
        assert_eq!(v(b"x"), None);
        assert_eq!(v(b""), None);
        assert_eq!(v(b"1..3"), None);
    }

    #[test]
    fn finds_all() {
        let hits: Vec<_> = find_all(b"grpc-go/grpc-go/xgrpc-go", b"grpc-go/").collect();
        assert_eq!(hits, [0, 8]);
        let hits: Vec<_> = find_all(b"aaa", b"aa").collect();
        assert_eq!(hits, [0, 1]);
        assert_eq!(find_all(b"abc", b"").count(), 0);
        assert_eq!(find_all(b"grp", b"grpc-go/").count(), 0);
    }
}
