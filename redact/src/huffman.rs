//! Filler for Huffman-coded HPACK strings (RFC 7541 §5.2, Appendix B).
//!
//! A masked value must keep its encoded length, so that every offset and
//! frame length around it stays true, and should keep its decoded length
//! too: that length counts in the dynamic table's size, and a decoder that
//! sizes an entry differently from the peers evicts entries at other times.
//! [`filler`] builds a string of printable symbols whose code lengths add up
//! to the same number of bytes, with a valid EOS-prefix padding.

use httlib_huffman::encoder::table::ENCODE_TABLE;

/// The byte every position of a value is masked with when its decoded
/// length cannot be kept: `*` has the 8-bit code `11111001`, so any number
/// of these bytes decodes, one `*` each.
pub const STAR_BYTE: u8 = 0xf9;

/// Two symbols for each code length (index = bits), preferring printable
/// ASCII, then any byte, and how many of the two were found.
const fn symbols() -> ([[u8; 2]; 31], [usize; 31]) {
    let mut out = [[0u8; 2]; 31];
    let mut found = [0usize; 31];
    let mut pass = 0;
    while pass < 2 {
        // Printable ASCII first, so a filler reads as text where it can.
        let (mut sym, end) = if pass == 0 { (0x21, 0x7f) } else { (0, 256) };
        while sym < end {
            let bits = ENCODE_TABLE[sym].0 as usize;
            let printable = sym >= 0x21 && sym < 0x7f;
            if found[bits] < 2 && (pass == 0 || !printable) {
                out[bits][found[bits]] = sym as u8;
                found[bits] += 1;
            }
            sym += 1;
        }
        pass += 1;
    }
    (out, found)
}

const SYMBOLS: ([[u8; 2]; 31], [usize; 31]) = symbols();

fn has(bits: usize) -> bool {
    SYMBOLS.1[bits] > 0
}

/// `symbols` symbols whose Huffman encoding takes exactly `bytes` bytes and
/// differs from `original` (the code being replaced), `None` when no such
/// string exists (more symbols than 5-bit codes fit, or fewer than 30-bit
/// codes fill).
pub fn filler(bytes: usize, symbols: usize, original: &[u8]) -> Option<Vec<u8>> {
    let bits = bytes * 8;
    if symbols * 5 > bits || symbols * 30 + 7 < bits {
        return None;
    }
    // Start every symbol at 5 bits and lengthen them one by one, as long as
    // more than the last byte's padding (at most 7 bits) is left to fill.
    let mut lengths = vec![5usize; symbols];
    let mut left = bits - symbols * 5;
    for length in lengths.iter_mut() {
        if left <= 7 {
            break;
        }
        let want = (*length + left).min(30);
        let mut take = want;
        while !has(take) {
            take -= 1;
        }
        left -= take - *length;
        *length = take;
    }
    if left > 7 {
        return None;
    }
    // The second symbol of each length differs from the first, so one of
    // the two strings differs from the original.
    for variant in 0..2 {
        let text: Vec<u8> =
            lengths.iter().map(|&l| SYMBOLS.0[l][variant.min(SYMBOLS.1[l] - 1)]).collect();
        let mut out = Vec::with_capacity(bytes);
        httlib_huffman::encode(&text, &mut out).ok()?;
        if out.len() == bytes && out != original {
            return Some(out);
        }
    }
    None
}

/// How many symbols a Huffman-coded string decodes to; `None` when it is
/// not valid Huffman code.
pub fn decoded_len(code: &[u8], scratch: &mut Vec<u8>) -> Option<usize> {
    scratch.clear();
    httlib_huffman::decode(code, scratch, httlib_huffman::DecoderSpeed::FourBits).ok()?;
    Some(scratch.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(code: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        httlib_huffman::decode(code, &mut out, httlib_huffman::DecoderSpeed::FourBits).unwrap();
        out
    }

    #[test]
    fn a_filler_keeps_both_lengths_for_every_real_string() {
        let mut scratch = Vec::new();
        for text in [
            &b"Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"[..],
            b"a",
            b"session=0123456789abcdef; theme=dark",
            b"\xff\xfe\x00\x01 binary",
            b"~~~~~~~~~~~~~",
            b"0000000000000000000000000",
        ] {
            let mut code = Vec::new();
            httlib_huffman::encode(text, &mut code).unwrap();
            let symbols = decoded_len(&code, &mut scratch).unwrap();
            assert_eq!(symbols, text.len());
            let fill = filler(code.len(), symbols, &code).expect("a filler exists");
            assert_eq!(fill.len(), code.len(), "{text:?}");
            assert_eq!(decode(&fill).len(), text.len(), "{text:?}");
            assert_ne!(decode(&fill), text);
        }
    }

    #[test]
    fn every_feasible_pair_of_lengths_has_a_filler() {
        for bytes in 1..40 {
            for symbols in 0..80 {
                let feasible = symbols * 5 <= bytes * 8 && symbols * 30 + 7 >= bytes * 8;
                match filler(bytes, symbols, &[]) {
                    Some(fill) => {
                        assert!(feasible);
                        assert_eq!((fill.len(), decode(&fill).len()), (bytes, symbols));
                    }
                    None => assert!(!feasible, "{bytes} bytes, {symbols} symbols"),
                }
            }
        }
    }

    #[test]
    fn star_bytes_decode_to_stars() {
        assert_eq!(decode(&[STAR_BYTE; 5]), b"*****");
    }
}
