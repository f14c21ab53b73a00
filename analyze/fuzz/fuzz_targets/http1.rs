//! The HTTP/1 parser on arbitrary bytes, cut into arbitrary pieces with gaps
//! between some of them, as requests and as responses.
#![no_main]

use analyze::protocol::http1::parse::{Context, Kind, NoContext, Parser};
use libfuzzer_sys::fuzz_target;

struct Head;

impl Context for Head {
    fn request_method(&self) -> Option<&str> {
        Some("HEAD")
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, bytes)) = data.split_first() else { return };
    for kind in [Kind::Request, Kind::Response] {
        let mut parser = if control & 1 == 0 { Parser::new(kind) } else { Parser::resyncing(kind) };
        let ctx: &dyn Context = if control & 2 == 0 { &NoContext } else { &Head };
        let mut out = Vec::new();
        let step = 1 + (control as usize >> 2);
        for (i, piece) in bytes.chunks(step).enumerate() {
            if i % 7 == 3 {
                parser.gap(piece.len() as u64, i as i64, i % 2 == 0, &mut out);
                continue;
            }
            let mut used = 0;
            while used < piece.len() {
                let n = parser.data(&piece[used..], i as i64, ctx, &mut out);
                assert!(n <= piece.len() - used);
                if n == 0 {
                    break;
                }
                used += n;
            }
        }
        parser.close(0, control & 4 == 0, &mut out);
    }
});
