//! HPACK header decoding (RFC 7541) that survives not knowing the whole
//! dynamic table.
//!
//! podtap often starts watching a connection long after it opened, or loses a
//! header block to a gap; the entries inserted meanwhile are unknown. This
//! decoder models the dynamic table as the entries it saw inserted (newest
//! first) followed by an "unknown tail" of entries from before. An index into
//! the known part decodes exactly; an index past it is reported as unknown
//! instead of guessed, and the rest of the block still decodes. Because the
//! oldest entries are evicted first, the unknown tail disappears by itself
//! once the known entries fill the table, or at a size update to zero.
//!
//! No published Rust HPACK decoder tolerates unknown dynamic-table state (they
//! reject the block, or the whole connection), hence this one. Huffman
//! strings are decoded with the `httlib-huffman` crate.

use std::collections::VecDeque;

/// Default SETTINGS_HEADER_TABLE_SIZE (RFC 9113 §6.5.2).
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// Per-entry overhead counted in the table size (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// Largest string accepted in a header block.
pub(crate) const MAX_STRING: usize = 1 << 20;

/// The static table (RFC 7541 Appendix A), index 1 first.
pub const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// A decoded field; `None` parts refer to table entries from before the
/// decoder's knowledge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: Option<String>,
    pub value: Option<String>,
}

/// Why a header block could not be decoded (from the offending byte on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("header block ends inside a field")]
    Truncated,
    #[error("integer too large")]
    IntegerOverflow,
    #[error("index 0 or past the table")]
    BadIndex,
    #[error("invalid Huffman string")]
    Huffman,
    #[error("string too long")]
    StringTooLong,
    #[error("table size update larger than allowed")]
    SizeUpdate,
}

#[derive(Clone, Debug)]
struct Entry {
    name: Option<String>,
    value: Option<String>,
    /// Bytes counted in the table size, when known.
    size: Option<usize>,
}

/// Decoder state for one direction of a connection.
#[derive(Clone, Debug)]
pub struct Decoder {
    /// Entries whose content (or at least position) is known, newest first.
    known: VecDeque<Entry>,
    /// Sum of `size` of `known`.
    known_size: usize,
    /// There may be older entries we never saw.
    unknown_tail: bool,
    max_size: usize,
    /// Fields that referred to unknown entries, over the decoder's life.
    pub unknown_fields: u64,
}

impl Decoder {
    /// A decoder that saw the connection from its start: the table is empty.
    pub fn new() -> Self {
        Self {
            known: VecDeque::new(),
            known_size: 0,
            unknown_tail: false,
            max_size: DEFAULT_TABLE_SIZE,
            unknown_fields: 0,
        }
    }

    /// A decoder joining a connection already in progress.
    pub fn joining() -> Self {
        Self { unknown_tail: true, ..Self::new() }
    }

    /// Forgets certainty about older entries: a header block was lost.
    pub fn lost_block(&mut self) {
        self.unknown_tail = true;
    }

    /// Whether every entry of the table is known.
    pub fn fully_known(&self) -> bool {
        !self.unknown_tail && self.known.iter().all(|e| e.size.is_some())
    }

    /// Decodes one complete header block. On an error the fields decoded
    /// before it are returned with it; the table is marked uncertain, since
    /// the rest of the block may have inserted entries.
    pub fn decode(&mut self, block: &[u8]) -> (Vec<Field>, Option<HpackError>) {
        let mut fields = Vec::new();
        let mut pos = 0;
        while pos < block.len() {
            match self.field(block, &mut pos) {
                Ok(Some(field)) => {
                    if field.name.is_none() || field.value.is_none() {
                        self.unknown_fields += 1;
                    }
                    fields.push(field);
                }
                Ok(None) => {}
                Err(e) => {
                    self.unknown_tail = true;
                    return (fields, Some(e));
                }
            }
        }
        (fields, None)
    }

    /// Decodes one representation at `pos`; `None` for a size update.
    pub(crate) fn field(
        &mut self,
        block: &[u8],
        pos: &mut usize,
    ) -> Result<Option<Field>, HpackError> {
        let first = block[*pos];
        if first & 0x80 != 0 {
            // Indexed header field (§6.1).
            let index = integer(block, pos, 7)?;
            let (name, value) = self.lookup(index)?;
            return Ok(Some(Field { name, value }));
        }
        if first & 0xc0 == 0x40 {
            // Literal with incremental indexing (§6.2.1).
            let field = self.literal(block, pos, 6)?;
            self.insert(field.name.clone(), field.value.clone());
            return Ok(Some(field));
        }
        if first & 0xe0 == 0x20 {
            // Dynamic table size update (§6.3).
            let size = integer(block, pos, 5)?;
            if size > u32::MAX as usize {
                return Err(HpackError::SizeUpdate);
            }
            self.resize(size);
            return Ok(None);
        }
        // Literal without indexing (§6.2.2) or never indexed (§6.2.3).
        Ok(Some(self.literal(block, pos, 4)?))
    }

    fn literal(&mut self, block: &[u8], pos: &mut usize, prefix: u8) -> Result<Field, HpackError> {
        let index = integer(block, pos, prefix)?;
        let name = if index == 0 { Some(string(block, pos)?) } else { self.lookup(index)?.0 };
        let value = Some(string(block, pos)?);
        Ok(Field { name, value })
    }

    /// The name at `index` (1-based; static first); `None` for an entry
    /// from before the decoder's knowledge.
    pub(crate) fn name_at(&self, index: usize) -> Result<Option<String>, HpackError> {
        self.lookup(index).map(|(name, _)| name)
    }

    /// Name and value at `index` (1-based; static first).
    fn lookup(&self, index: usize) -> Result<(Option<String>, Option<String>), HpackError> {
        if index == 0 {
            return Err(HpackError::BadIndex);
        }
        if let Some((name, value)) = STATIC_TABLE.get(index - 1) {
            return Ok((Some((*name).to_string()), Some((*value).to_string())));
        }
        let dynamic = index - STATIC_TABLE.len() - 1;
        match self.known.get(dynamic) {
            Some(entry) => Ok((entry.name.clone(), entry.value.clone())),
            None if self.unknown_tail => Ok((None, None)),
            None => Err(HpackError::BadIndex),
        }
    }

    fn insert(&mut self, name: Option<String>, value: Option<String>) {
        let size = match (&name, &value) {
            (Some(n), Some(v)) => Some(n.len() + v.len() + ENTRY_OVERHEAD),
            _ => None,
        };
        match size {
            Some(size) if size > self.max_size => {
                // An entry larger than the table empties it (§4.4).
                self.known.clear();
                self.known_size = 0;
                self.unknown_tail = false;
                return;
            }
            Some(size) => {
                self.known.push_front(Entry { name, value, size: Some(size) });
                self.known_size += size;
            }
            None => {
                // Its size is unknown, so which older entries it evicted is
                // too: only it stays certain.
                self.known.clear();
                self.known_size = 0;
                self.known.push_front(Entry { name, value, size: None });
                self.unknown_tail = true;
            }
        }
        self.evict();
    }

    fn resize(&mut self, size: usize) {
        self.max_size = size;
        if size == 0 {
            self.known.clear();
            self.known_size = 0;
            self.unknown_tail = false;
        }
        self.evict();
    }

    /// Evicts the oldest known entries beyond the table size. Unknown older
    /// entries go first; once no entry could fit beside the known ones, none
    /// is left.
    fn evict(&mut self) {
        while self.known_size > self.max_size {
            match self.known.pop_back() {
                Some(entry) => self.known_size -= entry.size.unwrap_or(0),
                None => break,
            }
        }
        let sizes_known = self.known.iter().all(|e| e.size.is_some());
        if self.unknown_tail && sizes_known && self.known_size + ENTRY_OVERHEAD > self.max_size {
            self.unknown_tail = false;
        }
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Decodes an integer with an N-bit prefix (§5.1).
pub(crate) fn integer(block: &[u8], pos: &mut usize, prefix: u8) -> Result<usize, HpackError> {
    let mask = (1u16 << prefix) as usize - 1;
    let first = *block.get(*pos).ok_or(HpackError::Truncated)? as usize & mask;
    *pos += 1;
    if first < mask {
        return Ok(first);
    }
    let mut value = mask;
    let mut shift = 0u32;
    loop {
        let byte = *block.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
        value += ((byte & 0x7f) as usize) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
}

/// Decodes a string literal (§5.2).
pub(crate) fn string(block: &[u8], pos: &mut usize) -> Result<String, HpackError> {
    let huffman = *block.get(*pos).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(block, pos, 7)?;
    if len > MAX_STRING {
        return Err(HpackError::StringTooLong);
    }
    let end = pos.checked_add(len).ok_or(HpackError::Truncated)?;
    let raw = block.get(*pos..end).ok_or(HpackError::Truncated)?;
    *pos = end;
    if !huffman {
        return Ok(String::from_utf8_lossy(raw).into_owned());
    }
    let mut out = Vec::with_capacity(raw.len() * 8 / 5 + 1);
    httlib_huffman::decode(raw, &mut out, httlib_huffman::DecoderSpeed::FourBits)
        .map_err(|_| HpackError::Huffman)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn pairs(fields: &[Field]) -> Vec<(String, String)> {
        fields.iter().map(|f| (f.name.clone().unwrap(), f.value.clone().unwrap())).collect()
    }

    fn p(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    fn table(d: &Decoder) -> Vec<(String, String)> {
        d.known.iter().map(|e| (e.name.clone().unwrap(), e.value.clone().unwrap())).collect()
    }

    #[test]
    fn rfc7541_c1_integers() {
        let mut pos = 0;
        assert_eq!(integer(&[0b0000_1010], &mut pos, 5), Ok(10));
        let mut pos = 0;
        assert_eq!(integer(&[0b0001_1111, 0b1001_1010, 0b0000_1010], &mut pos, 5), Ok(1337));
        assert_eq!(pos, 3);
        let mut pos = 0;
        assert_eq!(integer(&[42], &mut pos, 8), Ok(42));
    }

    #[test]
    fn rfc7541_c2_literals_and_indexed() {
        // C.2.1 literal with indexing
        let mut d = Decoder::new();
        let (f, e) =
            d.decode(&hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"));
        assert_eq!(e, None);
        assert_eq!(pairs(&f), p(&[("custom-key", "custom-header")]));
        assert_eq!(d.known_size, 55);
        // C.2.2 literal without indexing
        let mut d = Decoder::new();
        let (f, _) = d.decode(&hex("040c 2f73 616d 706c 652f 7061 7468"));
        assert_eq!(pairs(&f), p(&[(":path", "/sample/path")]));
        assert!(d.known.is_empty());
        // C.2.3 never indexed
        let (f, _) = d.decode(&hex("1008 7061 7373 776f 7264 0673 6563 7265 74"));
        assert_eq!(pairs(&f), p(&[("password", "secret")]));
        assert!(d.known.is_empty());
        // C.2.4 indexed
        let (f, _) = d.decode(&hex("82"));
        assert_eq!(pairs(&f), p(&[(":method", "GET")]));
    }

    #[test]
    fn rfc7541_c3_requests_without_huffman() {
        let mut d = Decoder::new();
        let (f, e) = d.decode(&hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"));
        assert_eq!(e, None);
        assert_eq!(
            pairs(&f),
            p(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ])
        );
        assert_eq!(d.known_size, 57);
        let (f, _) = d.decode(&hex("8286 84be 5808 6e6f 2d63 6163 6865"));
        assert_eq!(
            pairs(&f),
            p(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache")
            ])
        );
        assert_eq!(d.known_size, 110);
        let (f, _) = d.decode(&hex(
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ));
        assert_eq!(
            pairs(&f),
            p(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value")
            ])
        );
        assert_eq!(
            table(&d),
            p(&[
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache"),
                (":authority", "www.example.com")
            ])
        );
        assert_eq!(d.known_size, 164);
    }

    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        let mut d = Decoder::new();
        let (f, _) = d.decode(&hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"));
        assert_eq!(
            pairs(&f),
            p(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ])
        );
        let (f, _) = d.decode(&hex("8286 84be 5886 a8eb 1064 9cbf"));
        assert_eq!(pairs(&f)[4], ("cache-control".to_string(), "no-cache".to_string()));
        let (f, e) = d.decode(&hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"));
        assert_eq!(e, None);
        assert_eq!(pairs(&f)[4], ("custom-key".to_string(), "custom-value".to_string()));
        assert_eq!(d.known_size, 164);
    }

    /// C.5: responses with a 256-byte table, so entries get evicted.
    #[test]
    fn rfc7541_c5_responses_with_eviction() {
        let mut d = Decoder::new();
        d.resize(256);
        let (f, _) = d.decode(&hex(
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 \
             3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        ));
        assert_eq!(
            pairs(&f),
            p(&[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com")
            ])
        );
        assert_eq!(d.known_size, 222);
        let (f, _) = d.decode(&hex("4803 3330 37c1 c0bf"));
        assert_eq!(pairs(&f)[0], (":status".to_string(), "307".to_string()));
        assert_eq!(d.known_size, 222);
        assert_eq!(table(&d)[0], (":status".to_string(), "307".to_string()));
        let (f, e) = d.decode(&hex(
            "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a \
             6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d \
             6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
        ));
        assert_eq!(e, None);
        assert_eq!(
            pairs(&f),
            p(&[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
                ("location", "https://www.example.com"),
                ("content-encoding", "gzip"),
                ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1")
            ])
        );
        assert_eq!(d.known_size, 215);
        assert_eq!(d.known.len(), 3);
    }

    #[test]
    fn rfc7541_c6_responses_with_huffman() {
        let mut d = Decoder::new();
        d.resize(256);
        let (f, _) = d.decode(&hex(
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d \
             29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        ));
        assert_eq!(pairs(&f)[0], (":status".to_string(), "302".to_string()));
        let (_, _) = d.decode(&hex("4883 640e ffc1 c0bf"));
        let (f, e) = d.decode(&hex(
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d \
             d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 \
             3d50 07",
        ));
        assert_eq!(e, None);
        assert_eq!(
            pairs(&f)[5],
            (
                "set-cookie".to_string(),
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1".to_string()
            )
        );
        assert_eq!(d.known_size, 215);
    }

    #[test]
    fn indices_into_entries_from_before_are_unknown_but_the_rest_decodes() {
        let mut d = Decoder::joining();
        // :method GET (static), an unknown dynamic entry, then a new literal
        // with indexing, then a reference to that new entry.
        let block =
            hex("82 c5 400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572 be");
        let (f, e) = d.decode(&block);
        assert_eq!(e, None);
        assert_eq!(f.len(), 4);
        assert_eq!(f[0].value.as_deref(), Some("GET"));
        assert_eq!(f[1], Field { name: None, value: None });
        assert_eq!(f[2].value.as_deref(), Some("custom-header"));
        // Index 62 is the entry just inserted: known exactly.
        assert_eq!(f[3].value.as_deref(), Some("custom-header"));
        assert_eq!(d.unknown_fields, 1);
    }

    #[test]
    fn a_name_from_an_unknown_entry_keeps_the_literal_value() {
        let mut d = Decoder::joining();
        // Literal without indexing, name index 70 (dynamic, unknown).
        let block = [&[0x0f, 0x37][..], &[0x03], b"abc"].concat();
        let (f, e) = d.decode(&block);
        assert_eq!(e, None);
        assert_eq!(f, vec![Field { name: None, value: Some("abc".into()) }]);
    }

    #[test]
    fn the_unknown_tail_goes_once_known_entries_fill_the_table() {
        let mut d = Decoder::joining();
        d.resize(100);
        assert!(!d.fully_known());
        // One entry of 32 + 10 + 50 = 92 bytes: no room for another.
        let name = "n".repeat(10);
        let value = "v".repeat(50);
        d.insert(Some(name), Some(value));
        assert!(d.fully_known());
        let (f, e) = d.decode(&hex("bf"));
        assert_eq!(e, Some(HpackError::BadIndex), "index 63 does not exist: {f:?}");
    }

    #[test]
    fn a_size_update_to_zero_empties_an_unknown_table() {
        let mut d = Decoder::joining();
        let (_, e) = d.decode(&hex("20"));
        assert_eq!(e, None);
        assert!(d.fully_known());
    }

    #[test]
    fn malformed_blocks_are_errors_not_panics() {
        let fresh = |block: &str| Decoder::new().decode(&hex(block)).1;
        assert_eq!(fresh("80"), Some(HpackError::BadIndex));
        assert_eq!(fresh("c0"), Some(HpackError::BadIndex), "index 64 in an empty table");
        assert_eq!(fresh("40 05 61"), Some(HpackError::Truncated));
        assert_eq!(fresh("ff ff ff ff"), Some(HpackError::Truncated));
        assert_eq!(fresh("ff ff ff ff ff ff ff ff 01"), Some(HpackError::IntegerOverflow));
        assert_eq!(fresh("3f e1 ff ff ff 0f"), Some(HpackError::SizeUpdate));
        let mut d = Decoder::new();
        d.decode(&hex("80"));
        assert!(!d.fully_known(), "a broken block leaves the table uncertain");
    }
}
