//! Checks on what a header probe read, before it becomes a row: a probe
//! that read the wrong register or a moved field would report a wrong
//! header, which is worse than none, so a block that does not look like
//! what grpc-go handles is dropped (and counted) instead.
//!
//! A block passes when:
//! - its stream id is odd: gRPC streams are opened by the client, and
//!   grpc-go never pushes (RFC 9113 §5.1.1); 0 is the connection itself;
//! - it claims at most [`MAX_FIELDS`] fields (grpc-go's default header list
//!   limit is 16 KiB, and every field costs 32 bytes of it);
//! - every name read is a valid HTTP/2 field name: lowercase token
//!   characters (RFC 9113 §8.2.1, RFC 9110 §5.6.2), or a pseudo-header
//!   (`:` and lowercase letters) before every regular field (§8.3);
//! - no value read holds NUL, CR or LF (§8.2.1).
//!
//! Fields that could not be read, or were cut, are not judged on what is
//! missing: the kernel flags them, and the block says so.

use formats::{
    wire::{H2_FIELD_FAULT, H2_FIELD_NAME_CUT},
    H2Field,
};

/// Most fields a block may claim.
pub const MAX_FIELDS: u64 = 16 * 1024 / 32;

/// Why a header block was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    StreamId,
    FieldCount,
    Name,
    PseudoAfterRegular,
    Value,
}

impl Rejected {
    /// For the log line.
    pub fn describe(self) -> &'static str {
        match self {
            Self::StreamId => "an even or zero stream id",
            Self::FieldCount => "an implausible field count",
            Self::Name => "a field name that is not a lowercase token",
            Self::PseudoAfterRegular => "a pseudo-header after a regular field",
            Self::Value => "a value with NUL, CR or LF",
        }
    }
}

/// Whether a block read by a header probe is plausible; `count` is the
/// number of fields the frame had (the record's `size`).
pub fn check(stream_id: u32, count: u64, fields: &[H2Field<'_>]) -> Result<(), Rejected> {
    if stream_id.is_multiple_of(2) {
        return Err(Rejected::StreamId);
    }
    if count > MAX_FIELDS || (fields.len() as u64) > count {
        return Err(Rejected::FieldCount);
    }
    let mut regular_seen = false;
    for field in fields {
        if field.flags & H2_FIELD_FAULT != 0 {
            continue;
        }
        let cut = field.flags & H2_FIELD_NAME_CUT != 0;
        match field.name.split_first() {
            None => return Err(Rejected::Name),
            Some((b':', rest)) => {
                if regular_seen {
                    return Err(Rejected::PseudoAfterRegular);
                }
                if (rest.is_empty() && !cut) || !rest.iter().all(u8::is_ascii_lowercase) {
                    return Err(Rejected::Name);
                }
            }
            Some(_) => {
                regular_seen = true;
                if !field.name.iter().all(|&b| is_name_char(b)) {
                    return Err(Rejected::Name);
                }
            }
        }
        if field.value.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n')) {
            return Err(Rejected::Value);
        }
    }
    Ok(())
}

/// RFC 9110 `tchar`, without uppercase letters.
fn is_name_char(b: u8) -> bool {
    b.is_ascii_lowercase()
        || b.is_ascii_digit()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f<'a>(name: &'a str, value: &'a str) -> H2Field<'a> {
        H2Field { name: name.as_bytes(), value: value.as_bytes(), flags: 0 }
    }

    #[test]
    fn grpc_blocks_pass() {
        let request = [
            f(":method", "POST"),
            f(":scheme", "http"),
            f(":path", "/helloworld.Greeter/SayHello"),
            f(":authority", "127.0.0.1:50051"),
            f("content-type", "application/grpc"),
            f("user-agent", "grpc-go/1.85.0"),
            f("te", "trailers"),
            f("grpc-timeout", "29999916u"),
        ];
        assert_eq!(check(1, 8, &request), Ok(()));
        let trailers = [f("grpc-status", "5"), f("grpc-message", "no greeting for x: 100% gone")];
        assert_eq!(check(2_147_483_647, 2, &trailers), Ok(()));
        // More fields than were copied.
        assert_eq!(check(3, 40, &request), Ok(()));
        assert_eq!(check(3, 0, &[]), Ok(()));
    }

    #[test]
    fn wrong_reads_are_rejected() {
        let ok = [f(":status", "200")];
        assert_eq!(check(0, 1, &ok), Err(Rejected::StreamId));
        assert_eq!(check(4, 1, &ok), Err(Rejected::StreamId));
        assert_eq!(check(1, MAX_FIELDS + 1, &ok), Err(Rejected::FieldCount));
        assert_eq!(check(1, 0, &ok), Err(Rejected::FieldCount));
        assert_eq!(check(1, 1, &[f("Content-Type", "x")]), Err(Rejected::Name));
        assert_eq!(check(1, 1, &[f("", "x")]), Err(Rejected::Name));
        assert_eq!(check(1, 1, &[f("a b", "x")]), Err(Rejected::Name));
        assert_eq!(check(1, 1, &[f(":", "x")]), Err(Rejected::Name));
        assert_eq!(check(1, 1, &[f(":Path", "x")]), Err(Rejected::Name));
        assert_eq!(check(1, 1, &[f("\u{1}\u{2}", "x")]), Err(Rejected::Name));
        assert_eq!(
            check(1, 2, &[f("te", "trailers"), f(":path", "/")]),
            Err(Rejected::PseudoAfterRegular)
        );
        assert_eq!(check(1, 1, &[f("x", "a\r\nb")]), Err(Rejected::Value));
        assert_eq!(check(1, 1, &[f("x", "a\0")]), Err(Rejected::Value));
    }

    #[test]
    fn unread_fields_are_not_judged() {
        let fault = H2Field { name: b"", value: b"", flags: H2_FIELD_FAULT };
        assert_eq!(check(1, 2, &[f(":status", "200"), fault]), Ok(()));
        let cut = H2Field { name: b":", value: b"", flags: H2_FIELD_NAME_CUT };
        assert_eq!(check(1, 1, &[cut]), Ok(()));
    }
}
