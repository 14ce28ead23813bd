//! The routing table: built from Ingresses and `HTTPRoutes` ([`crate::build`]),
//! asked once per request. Pure: no I/O, the random draw is passed in.
//!
//! Hosts: an exact host wins over a wildcard (`*.example.com` covers one
//! DNS label: `a.example.com`, not `example.com` nor `a.b.example.com`),
//! which wins over rules without a host; when none of a host's paths
//! matches, the next tier is tried, then the default backend.
//!
//! Paths, as Kubernetes defines them for Ingress: `Exact` matches the path
//! exactly (case-sensitive); `Prefix` element by element on `/`, ignoring a
//! trailing `/` (`/aaa/bbb` matches `/aaa/bbb`, `/aaa/bbb/` and
//! `/aaa/bbb/ccc`, not `/aaa/bbbxyz`); `ImplementationSpecific` is `Prefix`
//! here (as ingress-nginx without its regex annotation). Among the paths that
//! match, the longest wins and `Exact` beats `Prefix` at equal length; then
//! (Gateway API's order) a method match, more header matches, more query
//! matches, the oldest object.

use std::collections::HashMap;

use hyper::HeaderMap;
use regex::Regex;

/// The object a route came from (metrics labels, logs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    pub namespace: String,
    /// The Ingress or `HTTPRoute`.
    pub name: String,
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    /// Stored without its trailing `/` (`""` matches every path).
    Prefix(String),
    Regex(Regex),
}

impl PathMatch {
    pub fn prefix(p: &str) -> Self {
        PathMatch::Prefix(p.trim_end_matches('/').to_string())
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => {
                p.is_empty()
                    || path
                        .strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            PathMatch::Regex(r) => r
                .find(path)
                .is_some_and(|m| m.start() == 0 && m.end() == path.len()),
        }
    }

    fn len(&self) -> usize {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p.len(),
            PathMatch::Regex(r) => r.as_str().len(),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            PathMatch::Exact(_) => 0,
            PathMatch::Prefix(_) => 1,
            PathMatch::Regex(_) => 2,
        }
    }
}

#[derive(Debug, Clone)]
pub enum StrMatch {
    Exact(String),
    Regex(Regex),
}

impl StrMatch {
    fn matches(&self, v: &str) -> bool {
        match self {
            StrMatch::Exact(s) => s == v,
            StrMatch::Regex(r) => r.is_match(v),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    Number(i32),
    Name(String),
}

/// A pod endpoint of a backend Service (ready, not terminating).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: std::net::SocketAddr,
    pub pod: String,
}

/// A Service port to send to, resolved to its ready endpoints when the
/// table is built.
#[derive(Debug, Clone)]
pub struct Backend {
    pub namespace: String,
    pub service: String,
    pub port: PortRef,
    pub weight: u32,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone)]
pub enum PathRewrite {
    Full(String),
    Prefix(String),
}

#[derive(Debug, Clone)]
pub enum Filter {
    RequestHeader {
        set: Vec<(String, String)>,
        add: Vec<(String, String)>,
        remove: Vec<String>,
    },
    Redirect {
        scheme: Option<String>,
        hostname: Option<String>,
        path: Option<PathRewrite>,
        port: Option<u16>,
        status: u16,
    },
    Rewrite {
        hostname: Option<String>,
        path: Option<PathRewrite>,
    },
}

/// ingress-nginx's canary: a second Ingress for the same host and path.
#[derive(Debug, Clone)]
pub struct Canary {
    pub source: Source,
    pub backend: Backend,
    pub header: Option<String>,
    pub header_value: Option<String>,
    pub header_pattern: Option<Regex>,
    pub cookie: Option<String>,
    pub weight: u32,
    pub total: u32,
}

impl Canary {
    /// ingress-nginx's order (balancer.lua): the header (`always`/`never`,
    /// or the configured value or pattern), then the cookie
    /// (`always`/`never`), then the weight. Other values fall through.
    pub fn chosen(&self, headers: &HeaderMap, draw: &mut dyn FnMut(u32) -> u32) -> bool {
        if let Some(v) = self
            .header
            .as_deref()
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok())
        {
            if let Some(want) = self.header_value.as_deref().filter(|w| !w.is_empty()) {
                if v == want {
                    return true;
                }
            } else if let Some(re) = &self.header_pattern {
                if re.is_match(v) {
                    return true;
                }
            } else if v == "always" {
                return true;
            } else if v == "never" {
                return false;
            }
        }
        if let Some(v) = self.cookie.as_deref().and_then(|c| cookie(headers, c)) {
            if v == "always" {
                return true;
            }
            if v == "never" {
                return false;
            }
        }
        // Lua's math.random(total) is 1..=total; the canary takes <= weight.
        self.total > 0 && draw(self.total) < self.weight
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[derive(Debug, Clone)]
pub struct Route {
    pub source: Source,
    pub path: PathMatch,
    pub method: Option<String>,
    pub headers: Vec<(String, StrMatch)>,
    pub query: Vec<(String, StrMatch)>,
    pub filters: Vec<Filter>,
    pub backends: Vec<Backend>,
    pub canary: Option<Canary>,
    /// Plain HTTP gets a 308 to HTTPS (the host has TLS on an Ingress).
    pub ssl_redirect: bool,
    /// Creation time then `namespace/name`: older wins ties.
    pub order: (String, String),
}

impl Route {
    fn matches(&self, r: &Req) -> bool {
        self.path.matches(r.path)
            && self.method.as_deref().is_none_or(|m| m == r.method)
            && self.headers.iter().all(|(name, m)| {
                r.headers
                    .get(name.as_str())
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| m.matches(v))
            })
            && self
                .query
                .iter()
                .all(|(name, m)| query_param(r.query, name).is_some_and(|v| m.matches(&v)))
    }

    fn precedence(&self) -> impl Ord + '_ {
        (
            std::cmp::Reverse(self.path.len()),
            self.path.rank(),
            self.method.is_none(),
            std::cmp::Reverse(self.headers.len()),
            std::cmp::Reverse(self.query.len()),
            &self.order,
        )
    }
}

/// The first value of query parameter `name` (percent-decoded).
fn query_param(q: Option<&str>, name: &str) -> Option<String> {
    q?.split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .find(|(k, _)| decode(k) == name)
        .map(|(_, v)| decode(v))
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    out.push(v);
                    i += 3;
                } else {
                    out.push(b'%');
                    i += 1;
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path a request is matched on: `.`/`..` segments resolved and `//`
/// merged, as nginx matches `$uri` (the request goes upstream unchanged).
/// Most paths have nothing to resolve and are returned as they are.
pub fn normalize(path: &str) -> std::borrow::Cow<'_, str> {
    let plain = path.starts_with('/')
        && !path.contains("//")
        && !path.contains("/./")
        && !path.contains("/../")
        && !path.ends_with("/.")
        && !path.ends_with("/..");
    if plain {
        std::borrow::Cow::Borrowed(path)
    } else {
        std::borrow::Cow::Owned(resolve(path))
    }
}

fn resolve(path: &str) -> String {
    let mut segs: Vec<&str> = Vec::new();
    for s in path.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty()
        || (path.ends_with('/') && !segs.is_empty())
        || path.ends_with("/.")
        || path.ends_with("/..")
    {
        out.push('/');
    }
    out
}

/// What the table is asked.
#[derive(Debug)]
pub struct Req<'a> {
    /// Lowercase, without port.
    pub host: &'a str,
    /// Normalized ([`normalize`]).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a str,
    pub headers: &'a HeaderMap,
    /// Came in over HTTPS.
    pub tls: bool,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Decision<'a> {
    /// No rule matched and there is no default backend.
    NotFound,
    /// Plain HTTP to a host with TLS: 308 to HTTPS.
    HttpsRedirect(&'a Route),
    Forward {
        route: &'a Route,
        /// The canary's source when the canary was picked.
        source: &'a Source,
        backend: &'a Backend,
    },
}

/// Routes by host tier, each list sorted by precedence.
#[derive(Debug, Default)]
pub struct Table {
    exact: HashMap<String, Vec<Route>>,
    /// Keyed by what follows `*.`.
    wildcard: HashMap<String, Vec<Route>>,
    any: Vec<Route>,
    default: Option<Route>,
}

impl Table {
    /// Adds a route for `host` (`None`: every host).
    pub fn add(&mut self, host: Option<&str>, route: Route) {
        let list = match host.map(str::to_ascii_lowercase) {
            None => &mut self.any,
            Some(h) if h.is_empty() => &mut self.any,
            Some(h) => match h.strip_prefix("*.") {
                Some(rest) => self.wildcard.entry(rest.to_string()).or_default(),
                None => self.exact.entry(h).or_default(),
            },
        };
        list.push(route);
    }

    /// The default backend (the oldest Ingress's wins: call in order).
    pub fn set_default(&mut self, route: Route) {
        if self.default.is_none() {
            self.default = Some(route);
        }
    }

    /// Sorts every list by precedence; call once after the last [`Table::add`].
    pub fn finish(&mut self) {
        for list in self
            .exact
            .values_mut()
            .chain(self.wildcard.values_mut())
            .chain(std::iter::once(&mut self.any))
        {
            list.sort_by(|a, b| a.precedence().cmp(&b.precedence()));
        }
    }

    /// Every route (for status and tests).
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .flatten()
            .chain(&self.any)
            .chain(&self.default)
    }

    pub fn route_for(&self, r: &Req) -> Option<&Route> {
        let wild = r
            .host
            .split_once('.')
            .and_then(|(_, rest)| self.wildcard.get(rest));
        [self.exact.get(r.host), wild, Some(&self.any)]
            .into_iter()
            .flatten()
            .find_map(|list| list.iter().find(|route| route.matches(r)))
            .or(self.default.as_ref())
    }

    /// Routes `r`; `draw(n)` returns a uniform number in `0..n`.
    pub fn decide(&self, r: &Req, draw: &mut dyn FnMut(u32) -> u32) -> Decision<'_> {
        let Some(route) = self.route_for(r) else {
            return Decision::NotFound;
        };
        if route.ssl_redirect && !r.tls {
            return Decision::HttpsRedirect(route);
        }
        if let Some(c) = &route.canary
            && c.chosen(r.headers, draw)
        {
            return Decision::Forward {
                route,
                source: &c.source,
                backend: &c.backend,
            };
        }
        match pick_weighted(&route.backends, draw) {
            Some(backend) => Decision::Forward {
                route,
                source: &route.source,
                backend,
            },
            // Only a redirect filter, or every weight 0: the proxy answers.
            None => Decision::Forward {
                route,
                source: &route.source,
                backend: &NO_BACKEND,
            },
        }
    }
}

/// A backend with no endpoints (answered 500 when no filter redirects).
pub static NO_BACKEND: Backend = Backend {
    namespace: String::new(),
    service: String::new(),
    port: PortRef::Number(0),
    weight: 0,
    endpoints: Vec::new(),
};

fn pick_weighted<'a>(
    backends: &'a [Backend],
    draw: &mut dyn FnMut(u32) -> u32,
) -> Option<&'a Backend> {
    match backends {
        [] => None,
        [one] if one.weight > 0 => Some(one),
        _ => {
            let total: u32 = backends
                .iter()
                .map(|b| b.weight)
                .fold(0, u32::saturating_add);
            if total == 0 {
                return None;
            }
            let mut n = draw(total);
            for b in backends {
                if n < b.weight {
                    return Some(b);
                }
                n -= b.weight;
            }
            backends.last()
        }
    }
}

/// The host of a request: the URI's authority (HTTP/2) or `Host`,
/// lowercased, without port.
pub fn request_host(uri: &hyper::Uri, headers: &HeaderMap) -> String {
    let raw = uri
        .host()
        .or_else(|| {
            headers
                .get(hyper::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("");
    let host = if raw.starts_with('[') {
        raw.split_inclusive(']').next().unwrap_or(raw)
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
