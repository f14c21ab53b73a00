//! `http_route`: a request path with its ids collapsed, so that metrics
//! group `/users/42` and `/users/43` together and their label sets stay few.
//!
//! A segment is an id when it is a number, a UUID, a hex string of 8 or
//! more characters with a digit in it, or a long token mixing letters and
//! digits. Each target (pod, or process when there is no pod) keeps at most
//! [`MAX_ROUTES`] distinct routes; later ones are counted under `{other}`, so
//! a scanner probing random paths cannot blow up the series count.

use std::collections::{HashMap, HashSet};

use crate::exchange::{Exchange, GRPC};

/// Distinct routes kept per target.
pub const MAX_ROUTES: usize = 200;

/// What an id segment becomes.
pub const ID: &str = "{id}";
/// The route of paths past the per-target cap.
pub const OTHER: &str = "{other}";

/// The path of `target` with ids collapsed, query and fragment dropped.
pub fn normalize(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    // Absolute form (`GET http://host/x` to a proxy): keep the path part.
    let path = match path.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => path,
    };
    if !path.starts_with('/') {
        // `*` (OPTIONS) or garbage: kept short and as is.
        return path.chars().take(64).collect();
    }
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').skip(1) {
        out.push('/');
        out.push_str(if is_id(segment) { ID } else { segment });
    }
    out
}

fn is_id(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    if digits == bytes.len() {
        return true;
    }
    if is_uuid(bytes) {
        return true;
    }
    if bytes.len() >= 8 && digits > 0 && bytes.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    // Tokens: base64-ish ids, slugs with long numbers.
    let token = bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='));
    token && bytes.len() >= 16 && digits >= 2 && digits < bytes.len()
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Routes seen so far, per target.
#[derive(Debug, Default)]
pub struct Routes {
    seen: HashMap<String, HashSet<String>>,
    /// Exchanges whose route became `{other}`.
    pub capped: u64,
}

impl Routes {
    /// The route of `x`: its normalised path, or `{other}` once its target
    /// has [`MAX_ROUTES`] others. gRPC paths name a method and are kept whole.
    pub fn route(&mut self, x: &Exchange) -> Option<String> {
        let path = x.path.as_deref()?;
        let route = if x.protocol == GRPC {
            path.split('?').next().unwrap_or_default().to_string()
        } else {
            normalize(path)
        };
        let target = x.conn.pod.as_deref().or(x.conn.process.as_deref()).unwrap_or_default();
        let seen = self.seen.entry(target.to_string()).or_default();
        if seen.contains(&route) {
            return Some(route);
        }
        if seen.len() >= MAX_ROUTES {
            self.capped += 1;
            return Some(OTHER.to_string());
        }
        seen.insert(route.clone());
        Some(route)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        exchange::{ConnInfo, Exchange, HTTP1},
        protocol::Role,
    };

    #[test]
    fn ids_collapse_and_words_stay() {
        for (path, route) in [
            ("/", "/"),
            ("/users/42", "/users/{id}"),
            ("/users/42/orders/7?x=1#top", "/users/{id}/orders/{id}"),
            ("/o/3fa85f64-5717-4562-b3fc-2c963f66afa6", "/o/{id}"),
            ("/blobs/deadbeef01", "/blobs/{id}"),
            ("/t/aGVsbG8gd29ybGQ1234567", "/t/{id}"),
            ("/api/v2/status", "/api/v2/status"),
            ("/static/app.js", "/static/app.js"),
            ("/cafe", "/cafe"),
            ("/bytes/20000", "/bytes/{id}"),
            ("http://example.com/a/1", "/a/{id}"),
            ("http://example.com", "/"),
            ("*", "*"),
            ("/a//b/", "/a//b/"),
        ] {
            assert_eq!(normalize(path), route, "{path}");
        }
    }

    fn exchange(pod: &str, path: &str) -> Exchange {
        let conn = ConnInfo { pod: Some(pod.into()), ..Default::default() };
        let mut x = Exchange::empty(HTTP1, Arc::new(conn), Role::Server, 0);
        x.path = Some(path.into());
        x
    }

    #[test]
    fn routes_per_target_are_capped() {
        let mut routes = Routes::default();
        for i in 0..MAX_ROUTES {
            let route = routes.route(&exchange("a", &format!("/page-{}", char_name(i))));
            assert_ne!(route.as_deref(), Some(OTHER));
        }
        assert_eq!(routes.route(&exchange("a", "/one-more")).as_deref(), Some(OTHER));
        // A route seen before the cap keeps its name; other targets have their own cap.
        assert_eq!(routes.route(&exchange("a", "/page-a")).as_deref(), Some("/page-a"));
        assert_eq!(routes.route(&exchange("b", "/one-more")).as_deref(), Some("/one-more"));
        assert_eq!(routes.capped, 1);
    }

    /// Distinct letter-only names, so none is taken for an id.
    fn char_name(mut i: usize) -> String {
        let mut s = String::new();
        loop {
            s.push((b'a' + (i % 26) as u8) as char);
            i /= 26;
            if i == 0 {
                return s;
            }
        }
    }
}
