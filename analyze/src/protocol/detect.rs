//! Telling what a connection speaks, and which side is the client, from the
//! first bytes seen in each direction.
//!
//! A connection seen from its start usually says it in its first bytes (an
//! HTTP/2 preface, a request line). One that was already open may start in
//! the middle of a message; then a request or status line later in the bytes,
//! or a run of well-formed HTTP/2 frames, decides.

use super::{
    http1::parse::{self, Kind},
    http2::frame,
    Dir, Role,
};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bytes of one direction looked at before giving up.
pub const LIMIT: usize = 16 * 1024;

/// What the first bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not enough bytes yet.
    NeedMore,
    /// HTTP/1; `at_start` when both directions begin at a message boundary.
    Http1 { role: Role, at_start: bool },
    /// HTTP/2; `preface` when the client's preface was seen. The role may
    /// only become known from the headers.
    Http2 { role: Option<Role>, preface: bool },
    /// TLS records: encrypted, nothing to decode (the plaintext, when the
    /// uprobes read it, comes in `tls_data` rows).
    Tls,
    /// Neither.
    Unknown,
}

/// Whether `bytes` start with a TLS record header: a content type
/// (ChangeCipherSpec, Alert, Handshake, ApplicationData), version 3.x and a
/// length a record may have.
fn tls_record(bytes: &[u8]) -> bool {
    match bytes {
        [kind, 3, minor, hi, lo, ..] => {
            (20..=23).contains(kind)
                && *minor <= 4
                && u16::from_be_bytes([*hi, *lo]) as usize <= 16384 + 2048
        }
        _ => false,
    }
}

fn role_for_requests_in(dir: Dir) -> Role {
    match dir {
        Dir::Ingress => Role::Server,
        Dir::Egress => Role::Client,
    }
}

/// Classifies a connection from the first bytes of each direction.
/// `known_role` comes from an accept or connect row; `done` means no more
/// bytes will come.
pub fn classify(ingress: &[u8], egress: &[u8], known_role: Option<Role>, done: bool) -> Verdict {
    let dirs = [(Dir::Ingress, ingress), (Dir::Egress, egress)];
    // An HTTP/2 preface, or the beginning of one.
    for (dir, bytes) in dirs {
        let n = bytes.len().min(PREFACE.len());
        if n > 0 && bytes[..n] == PREFACE[..n] {
            if n == PREFACE.len() {
                return Verdict::Http2 { role: Some(role_for_requests_in(dir)), preface: true };
            }
            if !done {
                return Verdict::NeedMore;
            }
        }
    }
    // TLS at the start of a direction (a handshake, or records of a
    // connection joined late).
    if dirs.iter().any(|(_, bytes)| tls_record(bytes)) {
        return Verdict::Tls;
    }
    // A request or status line at the very start of a direction.
    for (dir, bytes) in dirs {
        if starts(Kind::Request, bytes) {
            return Verdict::Http1 {
                role: known_role.unwrap_or(role_for_requests_in(dir)),
                at_start: true,
            };
        }
        if starts(Kind::Response, bytes) {
            return Verdict::Http1 {
                role: known_role.unwrap_or(role_for_requests_in(dir.other())),
                at_start: true,
            };
        }
    }
    // Well-formed HTTP/2 frames from the first byte. A connection whose
    // accept or connect was seen started during the capture: its client
    // preface is still to come (servers may send SETTINGS first).
    for (_, bytes) in dirs {
        if frame::looks_like_frames(bytes) {
            return Verdict::Http2 { role: known_role, preface: known_role.is_some() };
        }
    }
    // A message start further in: the capture began mid-message.
    for (dir, bytes) in dirs {
        if parse::contains_start(Kind::Request, bytes) {
            return Verdict::Http1 {
                role: known_role.unwrap_or(role_for_requests_in(dir)),
                at_start: false,
            };
        }
        if parse::contains_start(Kind::Response, bytes) {
            return Verdict::Http1 {
                role: known_role.unwrap_or(role_for_requests_in(dir.other())),
                at_start: false,
            };
        }
    }
    if done || ingress.len() >= LIMIT || egress.len() >= LIMIT {
        Verdict::Unknown
    } else {
        Verdict::NeedMore
    }
}

/// Whether `bytes` begin with a complete enough HTTP/1 start line.
fn starts(kind: Kind, bytes: &[u8]) -> bool {
    parse::starts_message(kind, bytes)
}

#[cfg(test)]
mod tests {

    #[test]
    fn tls_records_are_told_apart() {
        // A ClientHello, and application data of a connection joined late.
        let hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00];
        assert_eq!(classify(&hello, b"", None, false), Verdict::Tls);
        let data = [0x17, 0x03, 0x03, 0x00, 0x45, 0xaa];
        assert_eq!(classify(b"", &data, None, false), Verdict::Tls);
        // Not TLS: a record type out of range, or an absurd length.
        assert!(!tls_record(&[0x18, 0x03, 0x03, 0x00, 0x10]));
        assert!(!tls_record(&[0x17, 0x03, 0x03, 0xff, 0xff]));
        assert!(!tls_record(b"GET / HTTP/1.1"));
    }
    use super::*;

    #[test]
    fn a_preface_makes_http2_and_names_the_client() {
        let v = classify(PREFACE, b"", None, false);
        assert_eq!(v, Verdict::Http2 { role: Some(Role::Server), preface: true });
        let v = classify(b"", PREFACE, None, false);
        assert_eq!(v, Verdict::Http2 { role: Some(Role::Client), preface: true });
        assert_eq!(classify(&PREFACE[..10], b"", None, false), Verdict::NeedMore);
    }

    #[test]
    fn request_and_status_lines_make_http1() {
        let v = classify(b"GET / HTTP/1.1\r\n", b"", None, false);
        assert_eq!(v, Verdict::Http1 { role: Role::Server, at_start: true });
        let v = classify(b"HTTP/1.1 200 OK\r\n", b"", None, false);
        assert_eq!(v, Verdict::Http1 { role: Role::Client, at_start: true });
        let v = classify(b"", b"POST /x HTTP/1.1\r\n", None, false);
        assert_eq!(v, Verdict::Http1 { role: Role::Client, at_start: true });
    }

    #[test]
    fn a_start_further_in_means_the_capture_began_mid_message() {
        let v = classify(b"tail of a body\r\nGET /next HTTP/1.1\r\n", b"", None, false);
        assert_eq!(v, Verdict::Http1 { role: Role::Server, at_start: false });
    }

    #[test]
    fn an_accept_decides_the_role() {
        let v = classify(b"", b"GET / HTTP/1.1\r\n", Some(Role::Server), false);
        assert_eq!(v, Verdict::Http1 { role: Role::Server, at_start: true });
    }

    #[test]
    fn unknown_bytes_wait_then_give_up() {
        assert_eq!(classify(b"\x00\x01binary", b"", None, false), Verdict::NeedMore);
        assert_eq!(classify(b"\x00\x01binary", b"", None, true), Verdict::Unknown);
    }
}
