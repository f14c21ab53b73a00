//! Header redaction that keeps every byte offset: credentials are masked in
//! place, with values of the same length, before a capture row is written.
//!
//! `capture` hands each payload of a connection's stream to a [`Redactor`],
//! which follows the stream's framing just far enough to find header values:
//! HTTP/1 heads, bodies and chunks ([`http1`]), and HTTP/2 frames with their
//! HPACK header blocks ([`http2`], on the tolerant decoder of [`hpack`] that
//! `analyze` decodes with too). Values of the named headers become filler
//! that still parses (`*` for text, a Huffman string of the same encoded and
//! decoded length for HPACK), so `seq`, `size` and every frame length stay
//! true and `analyze` decodes the exchanges as before, showing `[redacted]`.
//!
//! The rule for what cannot be placed: never guess that bytes are safe.
//! When a stream's state is lost (bytes missing inside a header block, a
//! connection joined inside a message, an HPACK name from a dynamic-table
//! entry inserted before the capture), the rest of that header block is
//! masked too, and counted ([`Counts`]).
//!
//! Nothing here knows about eBPF or files: bytes in, bytes masked.

pub mod hpack;
pub mod http1;
pub mod http2;
pub mod huffman;
mod stream;

pub use stream::{BodyRanges, Redactor, StreamKey};

/// Headers redacted unless told otherwise (SPEC §9), lowercase.
pub const DEFAULT_NAMES: [&str; 4] =
    ["authorization", "cookie", "set-cookie", "proxy-authorization"];

/// What `analyze` shows for a redacted value.
pub const REDACTED: &str = "[redacted]";

/// The byte a masked text value is made of.
pub const MASK: u8 = b'*';

/// Which headers to mask, and whether to drop bodies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Header names to mask, lowercase ASCII.
    pub(crate) names: Vec<String>,
    /// Keep header blocks only: body bytes are not kept (they become
    /// ranges the caller drops, keeping their length).
    pub no_bodies: bool,
    /// The first bytes of the names (lowercase): a quick "cannot be one".
    pub(crate) first_bytes: [bool; 256],
}

impl Default for Policy {
    fn default() -> Self {
        Self::new(Vec::new(), false)
    }
}

impl Policy {
    /// Masks the values of `names` (any case) and keeps bodies unless
    /// `no_bodies`.
    pub fn new(names: Vec<String>, no_bodies: bool) -> Self {
        let names: Vec<String> =
            names.iter().filter(|n| !n.is_empty()).map(|n| n.to_ascii_lowercase()).collect();
        let mut first_bytes = [false; 256];
        for n in &names {
            if let Some(&b) = n.as_bytes().first() {
                first_bytes[b as usize] = true;
            }
        }
        Self { names, no_bodies, first_bytes }
    }

    /// The names masked, lowercase.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The default names.
    pub fn default_names() -> Vec<String> {
        DEFAULT_NAMES.map(String::from).to_vec()
    }

    /// Whether `name` (as it appears on the wire, any case) is redacted.
    pub fn redacts(&self, name: &[u8]) -> bool {
        self.names.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name))
    }

    /// Longest redacted name, in bytes.
    pub fn longest(&self) -> usize {
        self.names.iter().map(String::len).max().unwrap_or(0)
    }

    /// Whether this policy changes anything at all.
    pub fn is_active(&self) -> bool {
        !self.names.is_empty() || self.no_bodies
    }
}

/// What redaction did, for the capture's metadata and summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Header values masked because of their name.
    pub values: u64,
    /// Times bytes were masked because the stream's state was uncertain
    /// (the rest of a header block, or a whole payload of a stream that is
    /// not placed yet).
    pub uncertain: u64,
    /// Bytes masked for that reason.
    pub uncertain_bytes: u64,
    /// Body bytes not kept (`--no-bodies`).
    pub body_bytes: u64,
}

/// Masks the values of redacted fields of a header list read from a
/// process (`h2_headers` rows), in place. A field whose name was cut is
/// masked whatever it is, since its name cannot be checked.
pub fn mask_fields<'a>(
    policy: &Policy,
    fields: impl Iterator<Item = (&'a [u8], bool, &'a mut [u8])>,
    counts: &mut Counts,
) {
    for (name, name_cut, value) in fields {
        let cut_candidate = name_cut
            && policy.names.iter().any(|n| {
                n.len() >= name.len() && n.as_bytes()[..name.len()].eq_ignore_ascii_case(name)
            });
        if policy.redacts(name) || cut_candidate {
            value.fill(MASK);
            counts.values += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_in_any_case() {
        let policy = Policy::new(Policy::default_names(), false);
        assert!(policy.redacts(b"Authorization"));
        assert!(policy.redacts(b"SET-COOKIE"));
        assert!(!policy.redacts(b"authorizatio"));
        assert!(!policy.redacts(b"x-api-key"));
        assert_eq!(policy.longest(), "proxy-authorization".len());
    }

    #[test]
    fn fields_from_a_process_are_masked_by_name_and_when_the_name_was_cut() {
        let policy = Policy::new(vec!["x-api-key".into()], false);
        let mut values = [b"k3y".to_vec(), b"/path".to_vec(), b"cut".to_vec(), b"other".to_vec()];
        let names: [(&[u8], bool); 4] =
            [(b"X-Api-Key", false), (b":path", false), (b"x-api", true), (b"zz", true)];
        let mut counts = Counts::default();
        mask_fields(
            &policy,
            names.iter().zip(values.iter_mut()).map(|((n, c), v)| (*n, *c, v.as_mut_slice())),
            &mut counts,
        );
        assert_eq!(
            values,
            [b"***".to_vec(), b"/path".to_vec(), b"***".to_vec(), b"other".to_vec()]
        );
        assert_eq!(counts.values, 2);
    }
}
