//! HTTP/1.x: message framing per direction ([`parse`]) and pairing of requests
//! with responses on a connection (this module). Responses come back in the
//! order of their requests (RFC 9112 §9.3.2, pipelining included), so pairing
//! is a queue.

pub mod parse;

use std::collections::VecDeque;

use self::parse::{Context, Kind, Message, Output, Parser};
use super::Dir;

/// A request and the response that answered it, either possibly unseen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    pub request: Option<Message>,
    pub response: Option<Message>,
}

/// What one connection's HTTP/1 traffic produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Pair(Pair),
    /// Direction `dir` switched protocols: `replay` (bytes held from earlier
    /// inputs) and the current input from `offset` are not HTTP/1. `upgrade`
    /// is the request that asked for it (an `Upgrade: h2c` answered by 101).
    Switched {
        dir: Dir,
        offset: usize,
        replay: Vec<u8>,
        upgrade: Option<Message>,
    },
    Skipped {
        dir: Dir,
        bytes: u64,
        reason: &'static str,
    },
}

/// Requests waiting for their responses, seen by the response parser.
struct Waiting<'a>(&'a VecDeque<Message>);

impl Context for Waiting<'_> {
    fn request_method(&self) -> Option<&str> {
        self.0.front().and_then(|m| m.head.method.as_deref())
    }
}

/// HTTP/1 on one connection.
pub struct Http1Conn {
    request_dir: Dir,
    requests: Parser,
    responses: Parser,
    waiting: VecDeque<Message>,
    scratch: Vec<Output>,
}

impl Http1Conn {
    /// `at_start`: both directions begin at a message boundary; otherwise the
    /// parsers first look for one.
    pub fn new(request_dir: Dir, at_start: bool) -> Self {
        let make = |kind| if at_start { Parser::new(kind) } else { Parser::resyncing(kind) };
        Self {
            request_dir,
            requests: make(Kind::Request),
            responses: make(Kind::Response),
            waiting: VecDeque::new(),
            scratch: Vec::new(),
        }
    }

    /// Feeds bytes of direction `dir` seen at `ts`.
    pub fn data(&mut self, dir: Dir, bytes: &[u8], ts: i64, out: &mut Vec<Event>) {
        let mut outputs = std::mem::take(&mut self.scratch);
        let mut pos = 0;
        while pos < bytes.len() {
            let rest = &bytes[pos..];
            let used = if dir == self.request_dir {
                self.requests.data(rest, ts, &parse::NoContext, &mut outputs)
            } else {
                self.responses.data(rest, ts, &Waiting(&self.waiting), &mut outputs)
            };
            // Offsets of a switch are relative to what the parser was given.
            for output in outputs.iter_mut() {
                if let Output::Switched { offset, .. } = output {
                    *offset += pos;
                }
            }
            self.collect(dir, &mut outputs, out);
            if used == 0 {
                break;
            }
            pos += used;
        }
        self.scratch = outputs;
    }

    /// Notes `len` unseen bytes of direction `dir`.
    pub fn gap(&mut self, dir: Dir, len: u64, ts: i64, cut: bool, out: &mut Vec<Event>) {
        let mut outputs = std::mem::take(&mut self.scratch);
        self.parser(dir).gap(len, ts, cut, &mut outputs);
        self.collect(dir, &mut outputs, out);
        self.scratch = outputs;
    }

    /// The connection (`closed`) or the capture ended: everything pending
    /// comes out, unanswered requests included.
    pub fn finish(&mut self, ts: i64, closed: bool, out: &mut Vec<Event>) {
        for dir in [self.request_dir, self.request_dir.other()] {
            let mut outputs = std::mem::take(&mut self.scratch);
            self.parser(dir).close(ts, closed, &mut outputs);
            self.collect(dir, &mut outputs, out);
            self.scratch = outputs;
        }
        while let Some(request) = self.waiting.pop_front() {
            out.push(Event::Pair(Pair { request: Some(request), response: None }));
        }
    }

    fn parser(&mut self, dir: Dir) -> &mut Parser {
        if dir == self.request_dir {
            &mut self.requests
        } else {
            &mut self.responses
        }
    }

    fn collect(&mut self, dir: Dir, outputs: &mut Vec<Output>, out: &mut Vec<Event>) {
        for output in outputs.drain(..) {
            match output {
                Output::Message(msg) if dir == self.request_dir => self.waiting.push_back(msg),
                Output::Message(msg) => {
                    let status = msg.head.status.unwrap_or(0);
                    if (100..200).contains(&status) && status != 101 {
                        // Informational: the final response is still to come.
                        continue;
                    }
                    let request = self.waiting.pop_front();
                    out.push(Event::Pair(Pair { request, response: Some(msg) }));
                }
                Output::Switched { offset, replay } => {
                    // The request that asked for an h2c upgrade continues as
                    // HTTP/2 stream 1; it is not an HTTP/1 exchange of its own.
                    let upgrade = if dir == self.request_dir { None } else { out.pop_if_upgrade() };
                    out.push(Event::Switched { dir, offset, replay, upgrade });
                }
                Output::Skipped { bytes, reason } => {
                    out.push(Event::Skipped { dir, bytes, reason })
                }
            }
        }
    }
}

trait PopUpgrade {
    fn pop_if_upgrade(&mut self) -> Option<Message>;
}

impl PopUpgrade for Vec<Event> {
    /// Takes back the pair just emitted for a 101 answer to an h2c upgrade and
    /// returns its request.
    fn pop_if_upgrade(&mut self) -> Option<Message> {
        let is_upgrade = matches!(self.last(), Some(Event::Pair(Pair { request: Some(req), response: Some(resp) }))
            if resp.head.status == Some(101)
                && req.head.header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("h2c")));
        if !is_upgrade {
            return None;
        }
        match self.pop() {
            Some(Event::Pair(Pair { request, .. })) => request,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(events: &[Event]) -> Vec<(Option<String>, Option<u16>, Vec<&'static str>)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Pair(p) => Some((
                    p.request.as_ref().and_then(|r| r.head.target.clone()),
                    p.response.as_ref().and_then(|r| r.head.status),
                    p.response.as_ref().map(|r| r.issues.clone()).unwrap_or_default(),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_response_body_cut_at_max_payload_does_not_derail_the_next_exchange() {
        let mut c = Http1Conn::new(Dir::Ingress, true);
        let mut out = Vec::new();
        c.data(Dir::Ingress, b"GET /big HTTP/1.1\r\n\r\n", 1, &mut out);
        c.data(Dir::Egress, b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n", 2, &mut out);
        c.data(Dir::Egress, &[7u8; 4096], 3, &mut out);
        c.gap(Dir::Egress, 12288, 3, true, &mut out);
        c.data(Dir::Egress, &[7u8; 3616], 4, &mut out);
        let mut post = b"POST /echo HTTP/1.1\r\nContent-Length: 3000\r\n\r\n".to_vec();
        post.extend_from_slice(&[1u8; 3000]);
        c.data(Dir::Ingress, &post, 5, &mut out);
        c.data(Dir::Egress, b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc", 6, &mut out);
        assert_eq!(
            pairs(&out),
            vec![
                (Some("/big".into()), Some(200), vec!["body cut by --max-payload"]),
                (Some("/echo".into()), Some(201), vec![]),
            ]
        );
    }

    #[test]
    fn pipelined_requests_pair_in_order() {
        let mut c = Http1Conn::new(Dir::Ingress, true);
        let mut out = Vec::new();
        c.data(
            Dir::Ingress,
            b"GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n",
            1,
            &mut out,
        );
        // HEAD's response has a Content-Length but no body.
        c.data(
            Dir::Egress,
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nAHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            2,
            &mut out,
        );
        assert_eq!(
            pairs(&out),
            vec![
                (Some("/a".into()), Some(200), vec![]),
                (Some("/b".into()), Some(200), vec![]),
                (Some("/c".into()), Some(404), vec![]),
            ]
        );
    }

    #[test]
    fn a_100_continue_is_not_the_final_response() {
        let mut c = Http1Conn::new(Dir::Ingress, true);
        let mut out = Vec::new();
        c.data(
            Dir::Ingress,
            b"PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
            1,
            &mut out,
        );
        c.data(Dir::Egress, b"HTTP/1.1 100 Continue\r\n\r\n", 2, &mut out);
        c.data(Dir::Ingress, b"ok", 3, &mut out);
        c.data(Dir::Egress, b"HTTP/1.1 204 No Content\r\n\r\n", 4, &mut out);
        assert_eq!(pairs(&out), vec![(Some("/f".into()), Some(204), vec![])]);
    }

    #[test]
    fn an_h2c_upgrade_hands_over_both_directions() {
        let mut c = Http1Conn::new(Dir::Ingress, true);
        let mut out = Vec::new();
        c.data(Dir::Ingress, b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n", 1, &mut out);
        let mut resp =
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                .to_vec();
        resp.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        c.data(Dir::Egress, &resp, 2, &mut out);
        let mut preface = crate::protocol::detect::PREFACE.to_vec();
        preface.extend_from_slice(&[0, 0, 0, 4, 1, 0, 0, 0, 0]);
        c.data(Dir::Ingress, &preface, 3, &mut out);
        match &out[..] {
            [Event::Switched { dir: Dir::Egress, offset, upgrade: Some(req), .. }, Event::Switched { dir: Dir::Ingress, offset: 0, upgrade: None, .. }] =>
            {
                assert_eq!(*offset, resp.len() - 9);
                assert_eq!(req.head.target.as_deref(), Some("/"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unanswered_requests_come_out_at_the_end() {
        let mut c = Http1Conn::new(Dir::Ingress, true);
        let mut out = Vec::new();
        c.data(Dir::Ingress, b"GET /slow HTTP/1.1\r\n\r\n", 1, &mut out);
        c.finish(2, false, &mut out);
        assert_eq!(pairs(&out), vec![(Some("/slow".into()), None, vec![])]);
    }
}
