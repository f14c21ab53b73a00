//! The HPACK decoder on arbitrary header blocks, from an empty table and from
//! an unknown one, several blocks in a row on the same decoder.
#![no_main]

use analyze::protocol::http2::hpack::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for mut decoder in [Decoder::new(), Decoder::joining()] {
        for block in data.split(|&b| b == 0xfe) {
            let (fields, _) = decoder.decode(block);
            assert!(fields.len() <= block.len());
        }
    }
});
