//! The HTTP/2 frame reader on arbitrary bytes, with and without a preface,
//! aligned or lost, with gaps.
#![no_main]

use analyze::protocol::http2::frame::Reader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&control, bytes)) = data.split_first() else { return };
    let mut reader = match control % 3 {
        0 => Reader::new(true, 64),
        1 => Reader::new(false, 64),
        _ => Reader::lost(64),
    };
    let mut out = Vec::new();
    let step = 1 + (control as usize >> 2);
    for (i, piece) in bytes.chunks(step).enumerate() {
        if i % 5 == 2 {
            reader.gap(piece.len() as u64 * 3, 0, control & 1 == 0, &mut out);
        } else {
            reader.data(piece, 0, &mut out);
        }
    }
});
