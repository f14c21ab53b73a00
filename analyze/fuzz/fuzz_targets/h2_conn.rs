//! A whole HTTP/2 connection: arbitrary bytes in both directions, frames,
//! header blocks, streams and exchanges, with gaps.
#![no_main]

use analyze::protocol::{http2::Http2Conn, Dir, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&control, bytes)) = data.split_first() else { return };
    let role = match control % 3 {
        0 => Some(Role::Server),
        1 => Some(Role::Client),
        _ => None,
    };
    let mut conn = Http2Conn::new(role, control & 4 != 0, 128);
    let mut out = Vec::new();
    for (i, piece) in bytes.chunks(1 + (control as usize >> 3)).enumerate() {
        let dir = if i % 2 == 0 { Dir::Ingress } else { Dir::Egress };
        if i % 9 == 4 {
            conn.gap(dir, piece.len() as u64, i as i64, false, &mut out);
        } else {
            conn.data(dir, piece, i as i64, &mut out);
        }
    }
    conn.finish(&mut out);
});
