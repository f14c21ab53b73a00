//! Exchanges: one request and its response, as SPEC §4 describes them, built
//! from what the HTTP/1 and HTTP/2 decoders produced plus the identity of the
//! connection they were seen on.

use std::sync::Arc;

use crate::protocol::{
    header, http1,
    http2::{uprobe, Side, Stream},
    Header, Role,
};

/// Where an exchange was seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnInfo {
    pub conn_id: u64,
    pub pid: Option<u32>,
    /// The target process's name (the thread's `comm` when unknown).
    pub process: Option<String>,
    /// The machine the capture ran on.
    pub host: Option<String>,
    pub comm: Option<String>,
    pub local_addr: Option<String>,
    pub remote_addr: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub pod_uid: Option<String>,
    pub container: Option<String>,
    pub node: Option<String>,
    /// Decoded from the plaintext of a TLS connection (`tls_data` rows).
    pub tls: bool,
}

/// One exchange (SPEC §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub protocol: &'static str,
    pub conn: Arc<ConnInfo>,
    pub role: Role,
    /// First byte of the request (or of whatever was seen first).
    pub start_ts: i64,
    /// Last byte of the response, when it was seen.
    pub end_ts: Option<i64>,
    pub stream_id: Option<u32>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub authority: Option<String>,
    pub status: Option<u16>,
    pub grpc_status: Option<i32>,
    pub grpc_message: Option<String>,
    pub content_type: Option<String>,
    pub request_body_size: Option<u64>,
    pub response_body_size: Option<u64>,
    pub request_headers: Option<Vec<Header>>,
    pub response_headers: Option<Vec<Header>>,
    pub response_trailers: Option<Vec<Header>>,
    pub response_body: Option<Vec<u8>>,
    /// What was not seen or not decoded; empty for a complete exchange.
    pub issues: Vec<String>,
    /// gRPC: service and method from `:path`.
    pub rpc_service: Option<String>,
    pub rpc_method: Option<String>,
    /// gRPC: the deadline the client set (`grpc-timeout`).
    pub grpc_timeout_ns: Option<i64>,
    /// HTTP/2: the weight the request's HEADERS gave the stream.
    pub request_weight: Option<u16>,
    /// The path with ids collapsed, for grouping (set by [`crate::route`]).
    pub route: Option<String>,
    /// HTTP/2: where the headers came from: `wire`, `uprobe` (some from
    /// the Go gRPC uprobes) or `both` (the uprobes confirmed the wire).
    pub headers_source: Option<&'static str>,
}

/// Headers redacted unless `--redact-header` says otherwise (SPEC §9): the
/// same as capture's.
pub const DEFAULT_REDACTED: [&str; 4] = redact::DEFAULT_NAMES;

/// What a redacted header value becomes (`--redact-header`).
pub const REDACTED: &str = redact::REDACTED;

impl Exchange {
    /// Replaces the values of the headers and trailers named in `names`
    /// (lowercase) with [`REDACTED`].
    pub fn redact(&mut self, names: &[String]) {
        if names.is_empty() {
            return;
        }
        let lists =
            [&mut self.request_headers, &mut self.response_headers, &mut self.response_trailers];
        for header in lists.into_iter().flatten().flatten() {
            if header.value.is_some() && names.iter().any(|n| header.name.eq_ignore_ascii_case(n)) {
                header.value = Some(REDACTED.to_string());
            }
        }
    }

    pub fn complete(&self) -> bool {
        self.issues.is_empty()
    }

    pub fn duration_ns(&self) -> Option<i64> {
        self.end_ts.map(|end| (end - self.start_ts).max(0))
    }

    fn note(&mut self, issue: impl Into<String>) {
        let issue = issue.into();
        if !self.issues.contains(&issue) {
            self.issues.push(issue);
        }
    }

    pub(crate) fn empty(
        protocol: &'static str,
        conn: Arc<ConnInfo>,
        role: Role,
        start_ts: i64,
    ) -> Self {
        Self {
            protocol,
            conn,
            role,
            start_ts,
            end_ts: None,
            stream_id: None,
            method: None,
            path: None,
            authority: None,
            status: None,
            grpc_status: None,
            grpc_message: None,
            content_type: None,
            request_body_size: None,
            response_body_size: None,
            request_headers: None,
            response_headers: None,
            response_trailers: None,
            response_body: None,
            issues: Vec::new(),
            rpc_service: None,
            rpc_method: None,
            grpc_timeout_ns: None,
            request_weight: None,
            route: None,
            headers_source: None,
        }
    }
}

/// `protocol` values (SPEC §4).
pub const HTTP1: &str = formats::schema::protocol::HTTP1;
pub const HTTP2: &str = formats::schema::protocol::HTTP2;
pub const GRPC: &str = formats::schema::protocol::GRPC;

/// An HTTP/1 request/response pair as an exchange.
pub fn from_http1(pair: http1::Pair, conn: Arc<ConnInfo>, role: Role) -> Exchange {
    let start = pair.request.as_ref().or(pair.response.as_ref()).map_or(0, |m| m.start_ts);
    let mut x = Exchange::empty(HTTP1, conn, role, start);
    match pair.request {
        Some(req) => {
            for issue in &req.issues {
                x.note(format!("request: {issue}"));
            }
            x.method = req.head.method.clone();
            x.path = req.head.target.clone();
            x.authority = req.head.header("host").map(str::to_string);
            x.request_body_size = Some(req.body_size);
            x.request_headers = Some(req.head.headers);
        }
        None => x.note("request not seen"),
    }
    match pair.response {
        Some(resp) => {
            for issue in &resp.issues {
                x.note(format!("response: {issue}"));
            }
            x.end_ts = Some(resp.end_ts);
            x.status = resp.head.status;
            x.content_type = resp.head.header("content-type").map(str::to_string);
            x.response_body_size = Some(resp.body_size);
            x.response_body = Some(resp.body);
            if !resp.trailers.is_empty() {
                x.response_trailers = Some(resp.trailers);
            }
            x.response_headers = Some(resp.head.headers);
        }
        None => x.note("response not seen"),
    }
    x
}

/// Decodes grpc-message's percent-encoding (gRPC over HTTP/2, "Responses").
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn side_issues(x: &mut Exchange, what: &str, side: &Side) {
    for issue in &side.issues {
        x.note(format!("{what}: {issue}"));
    }
    if side.unknown_fields > 0 {
        x.note(format!(
            "{what}: {} header field(s) refer to HPACK state from before the capture",
            side.unknown_fields
        ));
    }
}

/// Whether `body` (the first bytes of a side's DATA, `len` in all) is a run
/// of gRPC length-prefixed messages: a flag byte of 0 or 1, a 4-byte length,
/// the message, again, ending exactly at `len`.
fn grpc_framed(body: &[u8], len: u64) -> bool {
    if len < 5 {
        return false;
    }
    let mut pos = 0u64;
    while pos + 5 <= body.len() as u64 {
        let p = pos as usize;
        if body[p] > 1 {
            return false;
        }
        let n = u32::from_be_bytes([body[p + 1], body[p + 2], body[p + 3], body[p + 4]]) as u64;
        pos += 5 + n;
        if pos == len {
            return true;
        }
        if pos > len {
            return false;
        }
    }
    // Ran past the bytes kept without a contradiction.
    pos > body.len() as u64 && pos <= len
}

/// Whether a stream is gRPC: its content type says so, a grpc-* header is
/// there, or both bodies are length-prefixed messages (the signals that
/// survive when HPACK state from before the capture hides the headers).
pub fn is_grpc(stream: &Stream) -> bool {
    let headers =
        stream.sides.iter().flat_map(|s| s.headers.iter().chain(s.trailers.iter())).flatten();
    let mut any_grpc_header = false;
    for h in headers {
        let grpc_type = h.name == "content-type"
            && h.value.as_deref().is_some_and(|c| c.starts_with("application/grpc"));
        if grpc_type || h.name.starts_with("grpc-") {
            any_grpc_header = true;
        }
    }
    any_grpc_header
        || stream.sides.iter().filter(|s| s.data_len > 0).count() > 0
            && stream
                .sides
                .iter()
                .filter(|s| s.data_len > 0)
                .all(|s| grpc_framed(&s.body, s.data_len))
}

/// An HTTP/2 stream as an exchange; `grpc` when the stream (or its
/// connection) is known to carry gRPC.
pub fn from_http2(stream: Stream, conn: Arc<ConnInfo>, role: Role, grpc: bool) -> Exchange {
    let req_dir = role.request_dir();
    let Stream { id, sides: [a, b], reset, upgrade, abandoned, headers_source } = stream;
    let (mut req, mut resp) = if req_dir as usize == 0 { (a, b) } else { (b, a) };
    let start = match &upgrade {
        Some(m) => m.start_ts,
        None => req.start_ts.or(resp.start_ts).unwrap_or(0),
    };
    let mut x = Exchange::empty(HTTP2, conn, role, start);
    x.stream_id = Some(id);
    x.headers_source = Some(headers_source.unwrap_or(uprobe::source::WIRE));

    if let Some(upgrade) = upgrade {
        x.authority = upgrade.head.header("host").map(str::to_string);
        x.method = upgrade.head.method;
        x.path = upgrade.head.target;
        x.request_body_size = Some(upgrade.body_size);
        x.request_headers = Some(upgrade.head.headers);
    } else if let Some(headers) = req.headers.take() {
        x.method = header(&headers, ":method").map(str::to_string);
        x.path = header(&headers, ":path").map(str::to_string);
        x.authority =
            header(&headers, ":authority").or_else(|| header(&headers, "host")).map(str::to_string);
        x.request_body_size = Some(req.data_len);
        x.request_headers = Some(headers);
        x.request_weight = req.weight;
    } else if req.start_ts.is_some() {
        x.request_body_size = Some(req.data_len);
        x.note("request headers not seen");
    } else {
        x.note("request not seen");
    }
    side_issues(&mut x, "request", &req);

    if grpc {
        x.protocol = GRPC;
    }

    if let Some(headers) = resp.headers.take() {
        x.status = header(&headers, ":status").and_then(|s| s.parse().ok());
        x.content_type = header(&headers, "content-type").map(str::to_string);
        x.response_headers = Some(headers);
    } else if resp.start_ts.is_some() {
        x.note("response headers not seen");
    } else if reset.is_none() {
        x.note("response not seen");
    }
    if resp.start_ts.is_some() {
        x.end_ts = Some(resp.end_ts);
        x.response_body_size = Some(resp.data_len);
        x.response_body = Some(std::mem::take(&mut resp.body));
    }
    x.response_trailers = resp.trailers.take();
    side_issues(&mut x, "response", &resp);

    if x.protocol == GRPC {
        if let Some((service, method)) = x.path.as_deref().and_then(rpc_parts) {
            x.rpc_service = Some(service);
            x.rpc_method = Some(method);
        }
        x.grpc_timeout_ns = x
            .request_headers
            .as_deref()
            .and_then(|h| header(h, "grpc-timeout"))
            .and_then(grpc_timeout_ns);
        // grpc-status comes in trailers, or in the headers of a trailers-only
        // response.
        let status_from = |h: &Option<Vec<Header>>| {
            h.as_deref().and_then(|h| header(h, "grpc-status")).map(str::to_string)
        };
        let message_from = |h: &Option<Vec<Header>>| {
            h.as_deref().and_then(|h| header(h, "grpc-message")).map(str::to_string)
        };
        let status = status_from(&x.response_trailers).or_else(|| status_from(&x.response_headers));
        x.grpc_status = status.and_then(|s| s.trim().parse().ok());
        // An empty grpc-message is no message.
        x.grpc_message = message_from(&x.response_trailers)
            .or_else(|| message_from(&x.response_headers))
            .filter(|m| !m.is_empty())
            .map(|m| percent_decode(&m));
        if x.grpc_status.is_none() && resp.ended && resp.unknown_fields == 0 {
            x.note("grpc-status not seen");
        }
    }

    if let Some((by, code)) = reset {
        let who = if by == req_dir { "client" } else { "server" };
        x.note(format!("reset by the {who} ({})", error_name(code)));
        x.end_ts = Some(x.end_ts.unwrap_or(start).max(req.end_ts).max(resp.end_ts));
    }
    if abandoned {
        if !req.ended && req.start_ts.is_some() {
            x.note("request not finished");
        }
        if !resp.ended {
            x.note("response not finished");
        }
    }
    x
}

/// `/package.Service/Method` → (`package.Service`, `Method`).
fn rpc_parts(path: &str) -> Option<(String, String)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then(|| (service.to_string(), method.to_string()))
}

/// A `grpc-timeout` value (up to 8 digits and a unit: H M S m u n) in ns.
fn grpc_timeout_ns(value: &str) -> Option<i64> {
    let value = value.trim();
    let unit_at = value.char_indices().last()?.0;
    let (digits, unit) = value.split_at(unit_at);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    let scale = match unit {
        "H" => 3_600_000_000_000,
        "M" => 60_000_000_000,
        "S" => 1_000_000_000,
        "m" => 1_000_000,
        "u" => 1_000,
        "n" => 1,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// Names of HTTP/2 error codes (RFC 9113 §7).
fn error_name(code: u32) -> String {
    let name = match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        _ => return format!("error {code:#x}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Header;

    #[test]
    fn default_redaction_covers_credentials_in_any_case() {
        let mut x = crate::red::tests::exchange("web", HTTP1, Some(200), Some(1), 1);
        x.request_headers = Some(vec![
            Header::new("Authorization", "Bearer secret"),
            Header::new("cookie", "sid=1"),
            Header::new("accept", "*/*"),
        ]);
        x.response_headers = Some(vec![Header::new("Set-Cookie", "sid=2")]);
        x.response_trailers = Some(vec![Header::new("proxy-authorization", "Basic x")]);
        let names: Vec<String> = DEFAULT_REDACTED.map(String::from).to_vec();
        x.redact(&names);
        let values = |h: &Option<Vec<Header>>| -> Vec<String> {
            h.iter().flatten().map(|h| h.value.clone().unwrap_or_default()).collect()
        };
        assert_eq!(values(&x.request_headers), [REDACTED, REDACTED, "*/*"]);
        assert_eq!(values(&x.response_headers), [REDACTED]);
        assert_eq!(values(&x.response_trailers), [REDACTED]);
    }

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(percent_decode("not%20found%3A%20x"), "not found: x");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
        assert_eq!(percent_decode("%é%"), "%é%", "multi-byte characters after a % are kept");
    }

    #[test]
    fn grpc_paths_and_timeouts_parse() {
        assert_eq!(
            rpc_parts("/helloworld.Greeter/SayHello"),
            Some(("helloworld.Greeter".into(), "SayHello".into()))
        );
        assert_eq!(rpc_parts("/"), None);
        assert_eq!(rpc_parts("/a/b/c"), None);
        assert_eq!(grpc_timeout_ns("100m"), Some(100_000_000));
        assert_eq!(grpc_timeout_ns("2S"), Some(2_000_000_000));
        assert_eq!(grpc_timeout_ns("1H"), Some(3_600_000_000_000));
        assert_eq!(grpc_timeout_ns("123456789S"), None, "at most 8 digits");
        assert_eq!(grpc_timeout_ns("5x"), None);
        assert_eq!(grpc_timeout_ns(""), None);
        assert_eq!(grpc_timeout_ns("é"), None);
        assert_eq!(grpc_timeout_ns("1é"), None);
    }

    #[test]
    fn error_codes_have_names() {
        assert_eq!(error_name(8), "CANCEL");
        assert_eq!(error_name(0x99), "error 0x99");
    }
}
