//! Userspace side of the wire structs: `aya::Pod` impls and safe parsing of
//! ring buffer records (never a transmute of kernel bytes into an enum).

use crate::wire::{
    CaptureConfig, Direction, EventHeader, EventKind, GoOffsets, H2FieldHeader, KernelOffsets,
    EVENT_HEADER_LEN, H2_FIELD_HEADER_LEN,
};

// SAFETY: plain `#[repr(C)]` structs of integers with explicit padding; every
// bit pattern is a valid value.
unsafe impl aya::Pod for EventHeader {}
// SAFETY: as above.
unsafe impl aya::Pod for KernelOffsets {}
// SAFETY: as above.
unsafe impl aya::Pod for CaptureConfig {}
// SAFETY: as above.
unsafe impl aya::Pod for GoOffsets {}

/// A ring buffer record that was checked field by field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: EventKind,
    /// `None` for events without a direction (connect, accept, close).
    pub direction: Option<Direction>,
    pub header: EventHeader,
    pub payload: &'a [u8],
}

/// Why a ring buffer record was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than a header.
    Short { len: usize },
    /// An event kind this build does not know.
    UnknownKind { kind: u32 },
    /// A data event with an invalid direction byte.
    BadDirection { direction: u8 },
    /// The header promises more payload than the record holds.
    PayloadOverrun { captured: u32, available: usize },
    /// A header field of an `H2Headers` record runs past the payload.
    FieldOverrun { index: usize },
}

impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Short { len } => write!(f, "record of {len} bytes is shorter than a header"),
            Self::UnknownKind { kind } => write!(f, "unknown event kind {kind}"),
            Self::BadDirection { direction } => write!(f, "invalid direction {direction}"),
            Self::PayloadOverrun { captured, available } => {
                write!(f, "header promises {captured} payload bytes, record holds {available}")
            }
            Self::FieldOverrun { index } => {
                write!(f, "header field {index} runs past the end of the record")
            }
        }
    }
}

impl std::error::Error for ParseError {}

impl<'a> Record<'a> {
    /// Parses one ring buffer record.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        if bytes.len() < EVENT_HEADER_LEN {
            return Err(ParseError::Short { len: bytes.len() });
        }
        // SAFETY: the length was checked and every bit pattern is a valid
        // `EventHeader`; `read_unaligned` copes with any alignment.
        let header: EventHeader =
            unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<EventHeader>()) };
        let kind =
            EventKind::try_from(header.kind).map_err(|kind| ParseError::UnknownKind { kind })?;
        let direction = match kind {
            EventKind::Data | EventKind::H2Headers | EventKind::TlsData => Some(
                Direction::try_from(header.direction)
                    .map_err(|direction| ParseError::BadDirection { direction })?,
            ),
            _ => None,
        };
        let rest = &bytes[EVENT_HEADER_LEN..];
        let captured = header.captured as usize;
        if captured > rest.len() {
            return Err(ParseError::PayloadOverrun {
                captured: header.captured,
                available: rest.len(),
            });
        }
        Ok(Self { kind, direction, header, payload: &rest[..captured] })
    }

    /// The header fields of an `H2Headers` record, in frame order.
    pub fn h2_fields(&self) -> Result<Vec<H2Field<'a>>, ParseError> {
        let mut fields = Vec::new();
        let mut rest = self.payload;
        while !rest.is_empty() {
            let index = fields.len();
            if rest.len() < H2_FIELD_HEADER_LEN {
                return Err(ParseError::FieldOverrun { index });
            }
            // SAFETY: the length was checked; any bit pattern is valid.
            let head: H2FieldHeader =
                unsafe { core::ptr::read_unaligned(rest.as_ptr().cast::<H2FieldHeader>()) };
            let (name_len, value_len) = (head.name_len as usize, head.value_len as usize);
            let body = &rest[H2_FIELD_HEADER_LEN..];
            if body.len() < name_len + value_len {
                return Err(ParseError::FieldOverrun { index });
            }
            fields.push(H2Field {
                name: &body[..name_len],
                value: &body[name_len..name_len + value_len],
                flags: head.flags,
            });
            rest = &body[name_len + value_len..];
        }
        Ok(fields)
    }
}

/// One header field of an `H2Headers` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
    /// `H2_FIELD_*` bits.
    pub flags: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u32, direction: u8, payload: &[u8]) -> Vec<u8> {
        let header = EventHeader {
            kind,
            flags: 0,
            ts_ns: 7,
            conn_id: 3,
            seq: 100,
            size: payload.len() as u64 + 10,
            pid: 42,
            tid: 43,
            fd: 5,
            captured: payload.len() as u32,
            direction,
            family: crate::wire::AF_INET,
            _pad: 0,
            local_port: 80,
            remote_port: 5000,
            local_addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            remote_addr: [127, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            comm: *b"server\0\0\0\0\0\0\0\0\0\0",
        };
        let mut bytes = vec![0u8; EVENT_HEADER_LEN];
        // SAFETY: the buffer holds exactly one header.
        unsafe { core::ptr::write_unaligned(bytes.as_mut_ptr().cast::<EventHeader>(), header) };
        bytes.extend_from_slice(payload);
        // The ring buffer pads records to 8 bytes; the parser must ignore it.
        bytes.extend_from_slice(&[0xAA; 3]);
        bytes
    }

    #[test]
    fn parses_a_data_record() {
        let bytes = record(1, 1, b"GET / HTTP/1.1\r\n");
        let rec = Record::parse(&bytes).unwrap();
        assert_eq!(rec.kind, EventKind::Data);
        assert_eq!(rec.direction, Some(Direction::Egress));
        assert_eq!(rec.payload, b"GET / HTTP/1.1\r\n");
        assert_eq!(rec.header.seq, 100);
        assert_eq!(rec.header.size, 26);
    }

    #[test]
    fn lifecycle_records_have_no_direction() {
        let bytes = record(3, 0, b"");
        let rec = Record::parse(&bytes).unwrap();
        assert_eq!(rec.kind, EventKind::Accept);
        assert_eq!(rec.direction, None);
    }

    fn field(name: &[u8], value: &[u8], flags: u8) -> Vec<u8> {
        let mut out = (name.len() as u16).to_le_bytes().to_vec();
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(&[flags, 0, 0, 0]);
        out.extend_from_slice(name);
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn parses_the_fields_of_an_h2_headers_record() {
        let mut payload = field(b":path", b"/helloworld.Greeter/SayHello", 0);
        payload.extend(field(b"grpc-message", b"", crate::wire::H2_FIELD_SENSITIVE));
        let bytes = record(7, 0, &payload);
        let rec = Record::parse(&bytes).unwrap();
        assert_eq!(rec.kind, EventKind::H2Headers);
        assert_eq!(rec.direction, Some(Direction::Ingress));
        let fields = rec.h2_fields().unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(
            (fields[0].name, fields[0].value),
            (&b":path"[..], &b"/helloworld.Greeter/SayHello"[..])
        );
        assert_eq!(fields[1].value, b"");
        assert_eq!(fields[1].flags, crate::wire::H2_FIELD_SENSITIVE);

        // A field that claims more bytes than the record holds.
        let mut bad = field(b"a", b"b", 0);
        bad[2] = 200;
        let bytes = record(7, 1, &bad);
        assert_eq!(
            Record::parse(&bytes).unwrap().h2_fields(),
            Err(ParseError::FieldOverrun { index: 0 })
        );
        let bytes = record(7, 1, &[1, 0, 0]);
        assert_eq!(
            Record::parse(&bytes).unwrap().h2_fields(),
            Err(ParseError::FieldOverrun { index: 0 })
        );
    }

    #[test]
    fn rejects_short_unknown_and_overrunning_records() {
        assert_eq!(Record::parse(&[0u8; 10]), Err(ParseError::Short { len: 10 }));
        assert_eq!(Record::parse(&record(77, 0, b"x")), Err(ParseError::UnknownKind { kind: 77 }));
        assert_eq!(
            Record::parse(&record(1, 9, b"x")),
            Err(ParseError::BadDirection { direction: 9 })
        );
        let mut bytes = record(1, 0, b"abc");
        bytes.truncate(EVENT_HEADER_LEN + 1);
        assert_eq!(
            Record::parse(&bytes),
            Err(ParseError::PayloadOverrun { captured: 3, available: 1 })
        );
    }
}
