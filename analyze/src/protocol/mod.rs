//! Protocol decoders: HTTP/1.x and HTTP/2 (with gRPC on top), one module per
//! protocol, each a pure parser fed with stream-ordered bytes and gaps.

pub mod detect;
pub mod http1;
pub mod http2;

/// A header field. `value` is `None` when the field's value could not be
/// decoded (HPACK state from before the capture).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Option<String>,
}

impl Header {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), value: Some(value.into()) }
    }
}

/// Direction of bytes, seen from the target process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Read by the target.
    Ingress = 0,
    /// Written by the target.
    Egress = 1,
}

impl Dir {
    pub fn other(self) -> Dir {
        match self {
            Dir::Ingress => Dir::Egress,
            Dir::Egress => Dir::Ingress,
        }
    }
}

/// The target's side of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

impl Role {
    /// Direction that carries requests.
    pub fn request_dir(self) -> Dir {
        match self {
            Role::Server => Dir::Ingress,
            Role::Client => Dir::Egress,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
        }
    }
}

/// The first value of a header, by case-insensitive name.
pub fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).and_then(|h| h.value.as_deref())
}
