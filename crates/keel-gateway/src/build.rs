//! From the watched objects to a routing [`Table`] and the TLS certificates
//! to serve: which Ingresses and `HTTPRoutes` are keel's, their rules as
//! routes, canary Ingresses attached to the routes they shadow, and each
//! backend Service port resolved to its ready endpoints.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use regex::Regex;
use serde_json::Value;

use crate::route::{
    Backend, Canary, Endpoint, Filter, PathMatch, PathRewrite, PortRef, Route, Source, StrMatch,
    Table,
};

/// `spec.controller` of the `IngressClasses` keel serves.
pub const INGRESS_CONTROLLER: &str = "keel.dev/ingress-controller";
/// `spec.controllerName` of the `GatewayClasses` keel serves.
pub const GATEWAY_CONTROLLER: &str = "keel.dev/gateway-controller";
/// The `IngressClass` keel's server creates (the default class).
pub const INGRESS_CLASS: &str = "keel";
const NGINX: &str = "nginx.ingress.kubernetes.io/";

/// What the gateway watches.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    pub ingresses: Vec<Arc<Ingress>>,
    pub classes: Vec<Arc<IngressClass>>,
    pub services: Vec<Arc<Service>>,
    pub slices: Vec<Arc<EndpointSlice>>,
    pub gateway_classes: Vec<Arc<Value>>,
    pub gateways: Vec<Arc<Value>>,
    pub routes: Vec<Arc<Value>>,
}

/// A certificate to serve for some hosts: a `kubernetes.io/tls` Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRef {
    pub hosts: Vec<String>,
    pub namespace: String,
    pub secret: String,
}

#[derive(Debug, Default)]
pub struct Built {
    pub table: Table,
    pub tls: Vec<TlsRef>,
    /// `(namespace, name)` of the Ingresses served (their status gets the
    /// node's address).
    pub ingresses: Vec<(String, String)>,
    /// `(namespace, name)` of the Gateways served.
    pub gateways: Vec<(String, String)>,
}

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn ann<'a>(ing: &'a Ingress, key: &str) -> Option<&'a str> {
    ing.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&format!("{NGINX}{key}")))
        .map(String::as_str)
}

/// Whether keel serves this Ingress: its class is one of keel's, or it has
/// none (nor the legacy `kubernetes.io/ingress.class` annotation naming
/// another controller).
pub fn ingress_served(ing: &Ingress, classes: &[Arc<IngressClass>]) -> bool {
    let name = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref());
    match name {
        Some(c) => classes.iter().any(|k| {
            k.metadata.name.as_deref() == Some(c)
                && k.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(INGRESS_CONTROLLER)
        }),
        None => ing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("kubernetes.io/ingress.class"))
            .is_none_or(|c| c == INGRESS_CLASS),
    }
}

/// Ready endpoints of Services, by `(namespace, service)`.
struct Endpoints<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
}

impl<'a> Endpoints<'a> {
    fn new(o: &'a Objects) -> Self {
        let services = o
            .services
            .iter()
            .map(|s| {
                let m = &s.metadata;
                (
                    (
                        m.namespace.as_deref().unwrap_or(""),
                        m.name.as_deref().unwrap_or(""),
                    ),
                    &**s,
                )
            })
            .collect();
        let mut slices: HashMap<_, Vec<_>> = HashMap::new();
        for s in &o.slices {
            let m = &s.metadata;
            if let Some(svc) = m
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
            {
                slices
                    .entry((m.namespace.as_deref().unwrap_or(""), svc.as_str()))
                    .or_default()
                    .push(&**s);
            }
        }
        Endpoints { services, slices }
    }

    /// The ready, not terminating endpoints of a Service port.
    fn resolve(&self, ns: &str, name: &str, port: &PortRef) -> Vec<Endpoint> {
        let Some(svc) = self.services.get(&(ns, name)) else {
            return Vec::new();
        };
        let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
        let Some(sp) = ports.into_iter().flatten().find(|p| match port {
            PortRef::Number(n) => p.port == *n,
            PortRef::Name(s) => p.name.as_deref() == Some(s.as_str()),
        }) else {
            return Vec::new();
        };
        let want = sp.name.as_deref().unwrap_or("");
        let mut out = Vec::new();
        for slice in self.slices.get(&(ns, name)).into_iter().flatten() {
            let Some(p) = slice
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref().unwrap_or("") == want)
                .and_then(|p| p.port)
            else {
                continue;
            };
            for ep in &slice.endpoints {
                let c = ep.conditions.as_ref();
                // Kubernetes: a nil `ready` means ready.
                let ready = c.and_then(|c| c.ready).unwrap_or(true);
                let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
                if !ready || terminating {
                    continue;
                }
                let pod = ep
                    .target_ref
                    .as_ref()
                    .and_then(|t| t.name.clone())
                    .unwrap_or_default();
                for a in &ep.addresses {
                    if let Ok(ip) = a.parse::<std::net::IpAddr>() {
                        let e = Endpoint {
                            addr: std::net::SocketAddr::new(ip, p as u16),
                            pod: pod.clone(),
                        };
                        if !out.contains(&e) {
                            out.push(e);
                        }
                    }
                }
            }
        }
        out
    }

    fn backend(&self, ns: &str, service: &str, port: PortRef, weight: u32) -> Backend {
        Backend {
            endpoints: self.resolve(ns, service, &port),
            namespace: ns.to_string(),
            service: service.to_string(),
            port,
            weight,
        }
    }

    fn ingress_backend(&self, ns: &str, b: &IngressBackend) -> Option<Backend> {
        let s = b.service.as_ref()?;
        let port = s.port.as_ref()?;
        let port = match (&port.name, port.number) {
            (Some(n), _) if !n.is_empty() => PortRef::Name(n.clone()),
            (_, Some(n)) => PortRef::Number(n),
            _ => return None,
        };
        Some(self.backend(ns, &s.name, port, 1))
    }
}

fn order_of(created: Option<String>, ns: &str, name: &str) -> (String, String) {
    (created.unwrap_or_default(), format!("{ns}/{name}"))
}

fn ingress_order(i: &Ingress) -> (String, String) {
    let m = &i.metadata;
    order_of(
        m.creation_timestamp.as_ref().map(|t| t.0.to_string()),
        m.namespace.as_deref().unwrap_or(""),
        m.name.as_deref().unwrap_or(""),
    )
}

fn path_match(path_type: &str, path: &str) -> PathMatch {
    if path_type == "Exact" {
        PathMatch::Exact(path.to_string())
    } else {
        PathMatch::prefix(path)
    }
}

fn host_has_tls(tls_hosts: &HashSet<String>, host: &str) -> bool {
    tls_hosts.contains(host)
        || host
            .split_once('.')
            .is_some_and(|(_, rest)| tls_hosts.contains(&format!("*.{rest}")))
}

fn canary_of(ing: &Ingress, src: Source, backend: Backend) -> Canary {
    let num = |k: &str| ann(ing, k).and_then(|v| v.trim().parse::<u32>().ok());
    let nonempty = |k: &str| ann(ing, k).filter(|v| !v.is_empty()).map(str::to_string);
    Canary {
        source: src,
        backend,
        header: nonempty("canary-by-header").map(|h| h.to_ascii_lowercase()),
        header_value: nonempty("canary-by-header-value"),
        header_pattern: nonempty("canary-by-header-pattern").and_then(|p| Regex::new(&p).ok()),
        cookie: nonempty("canary-by-cookie"),
        weight: num("canary-weight").unwrap_or(0),
        total: num("canary-weight-total").filter(|t| *t > 0).unwrap_or(100),
    }
}

/// Compiles what is watched.
pub fn build(o: &Objects) -> Built {
    let eps = Endpoints::new(o);
    let mut out = Built::default();
    let mut ingresses: Vec<&Ingress> = o
        .ingresses
        .iter()
        .map(|i| &**i)
        .filter(|i| ingress_served(i, &o.classes))
        .collect();
    ingresses.sort_by_key(|i| ingress_order(i));
    let is_canary = |i: &Ingress| ann(i, "canary") == Some("true");
    let mut tls_hosts = HashSet::new();
    for ing in ingresses.iter().filter(|i| !is_canary(i)) {
        let ns = ing.metadata.namespace.clone().unwrap_or_default();
        for t in ing.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
            let hosts: Vec<String> = t
                .hosts
                .iter()
                .flatten()
                .map(|h| h.to_ascii_lowercase())
                .collect();
            tls_hosts.extend(hosts.iter().cloned());
            if let Some(secret) = t.secret_name.clone().filter(|s| !s.is_empty()) {
                out.tls.push(TlsRef {
                    hosts,
                    namespace: ns.clone(),
                    secret,
                });
            }
        }
    }
    // (host, path type, path) → route, so canaries find what they shadow.
    let mut routes: BTreeMap<(String, String, String), (Option<String>, Route)> = BTreeMap::new();
    for ing in ingresses.iter().filter(|i| !is_canary(i)) {
        let ns = ing.metadata.namespace.as_deref().unwrap_or("");
        let name = ing.metadata.name.as_deref().unwrap_or("");
        out.ingresses.push((ns.to_string(), name.to_string()));
        let source = Source {
            namespace: ns.to_string(),
            name: name.to_string(),
        };
        let redirect_on = ann(ing, "ssl-redirect") != Some("false");
        let force = ann(ing, "force-ssl-redirect") == Some("true");
        let Some(spec) = ing.spec.as_ref() else {
            continue;
        };
        for rule in spec.rules.iter().flatten() {
            let host = rule
                .host
                .as_deref()
                .filter(|h| !h.is_empty())
                .map(str::to_ascii_lowercase);
            let Some(http) = rule.http.as_ref() else {
                continue;
            };
            let ssl_redirect = force
                || (redirect_on && host.as_deref().is_some_and(|h| host_has_tls(&tls_hosts, h)));
            for p in &http.paths {
                let path = p.path.clone().unwrap_or_else(|| "/".into());
                let key = (
                    host.clone().unwrap_or_default(),
                    p.path_type.clone(),
                    path.clone(),
                );
                if routes.contains_key(&key) {
                    // ingress-nginx: the oldest Ingress keeps a host+path.
                    continue;
                }
                let Some(backend) = eps.ingress_backend(ns, &p.backend) else {
                    continue;
                };
                let route = Route {
                    source: source.clone(),
                    path: path_match(&p.path_type, &path),
                    method: None,
                    headers: Vec::new(),
                    query: Vec::new(),
                    filters: Vec::new(),
                    backends: vec![backend],
                    canary: None,
                    ssl_redirect,
                    order: ingress_order(ing),
                };
                routes.insert(key, (host.clone(), route));
            }
        }
        if let Some(b) = spec
            .default_backend
            .as_ref()
            .and_then(|b| eps.ingress_backend(ns, b))
        {
            out.table.set_default(Route {
                source: source.clone(),
                path: PathMatch::prefix("/"),
                method: None,
                headers: Vec::new(),
                query: Vec::new(),
                filters: Vec::new(),
                backends: vec![b],
                canary: None,
                ssl_redirect: false,
                order: ingress_order(ing),
            });
        }
    }
    for ing in ingresses.iter().filter(|i| is_canary(i)) {
        let ns = ing.metadata.namespace.as_deref().unwrap_or("");
        let src = Source {
            namespace: ns.to_string(),
            name: ing.metadata.name.clone().unwrap_or_default(),
        };
        for rule in ing.spec.iter().flat_map(|s| s.rules.iter().flatten()) {
            let host = rule.host.clone().unwrap_or_default().to_ascii_lowercase();
            for p in rule.http.iter().flat_map(|h| &h.paths) {
                let path = p.path.clone().unwrap_or_else(|| "/".into());
                let Some((_, main)) = routes.get_mut(&(host.clone(), p.path_type.clone(), path))
                else {
                    continue;
                };
                if main.canary.is_some() || main.source.namespace != ns {
                    continue;
                }
                if let Some(b) = eps.ingress_backend(ns, &p.backend) {
                    main.canary = Some(canary_of(ing, src.clone(), b));
                }
            }
        }
    }
    for (_, (host, route)) in routes {
        out.table.add(host.as_deref(), route);
    }
    gateway_api(o, &eps, &mut out);
    out.table.finish();
    out
}

fn regex(s: &str) -> Option<Regex> {
    Regex::new(&format!("^(?:{s})$")).ok()
}

fn str_match(m: &Value) -> Option<StrMatch> {
    let v = str_at(m, "/value").to_string();
    match str_at(m, "/type") {
        "" | "Exact" => Some(StrMatch::Exact(v)),
        "RegularExpression" => regex(&v).map(StrMatch::Regex),
        _ => None,
    }
}

fn rewrite(p: &Value) -> Option<PathRewrite> {
    match str_at(p, "/type") {
        "ReplaceFullPath" => Some(PathRewrite::Full(str_at(p, "/replaceFullPath").to_string())),
        "ReplacePrefixMatch" => Some(PathRewrite::Prefix(
            str_at(p, "/replacePrefixMatch").to_string(),
        )),
        _ => None,
    }
}

fn opt(v: &Value, p: &str) -> Option<String> {
    Some(str_at(v, p).to_string()).filter(|s| !s.is_empty())
}

fn pairs(v: &Value, p: &str) -> Vec<(String, String)> {
    v.pointer(p)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|h| {
            (
                str_at(h, "/name").to_ascii_lowercase(),
                str_at(h, "/value").to_string(),
            )
        })
        .collect()
}

fn filter(f: &Value) -> Option<Filter> {
    match str_at(f, "/type") {
        "RequestHeaderModifier" => {
            let m = &f["requestHeaderModifier"];
            Some(Filter::RequestHeader {
                set: pairs(m, "/set"),
                add: pairs(m, "/add"),
                remove: m["remove"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_ascii_lowercase)
                    .collect(),
            })
        }
        "RequestRedirect" => {
            let r = &f["requestRedirect"];
            Some(Filter::Redirect {
                scheme: opt(r, "/scheme"),
                hostname: opt(r, "/hostname"),
                path: r.get("path").and_then(rewrite),
                port: r["port"].as_u64().map(|p| p as u16),
                status: r["statusCode"].as_u64().map_or(302, |c| c as u16),
            })
        }
        "URLRewrite" => {
            let r = &f["urlRewrite"];
            Some(Filter::Rewrite {
                hostname: opt(r, "/hostname"),
                path: r.get("path").and_then(rewrite),
            })
        }
        _ => None,
    }
}

/// Gateway API: `HTTPRoutes` attached to Gateways of a keel `GatewayClass`.
fn gateway_api(o: &Objects, eps: &Endpoints, out: &mut Built) {
    let classes: HashSet<&str> = o
        .gateway_classes
        .iter()
        .filter(|c| str_at(c, "/spec/controllerName") == GATEWAY_CONTROLLER)
        .map(|c| str_at(c, "/metadata/name"))
        .collect();
    let gateways: HashMap<(&str, &str), &Value> = o
        .gateways
        .iter()
        .filter(|g| classes.contains(str_at(g, "/spec/gatewayClassName")))
        .map(|g| {
            (
                (
                    str_at(g, "/metadata/namespace"),
                    str_at(g, "/metadata/name"),
                ),
                &**g,
            )
        })
        .collect();
    let mut served: Vec<_> = gateways
        .keys()
        .map(|(ns, n)| ((*ns).to_string(), (*n).to_string()))
        .collect();
    served.sort();
    out.gateways = served;
    for g in gateways.values() {
        let ns = str_at(g, "/metadata/namespace");
        for l in g["spec"]["listeners"].as_array().into_iter().flatten() {
            if str_at(l, "/protocol") != "HTTPS" {
                continue;
            }
            let hosts: Vec<String> = opt(l, "/hostname").into_iter().collect();
            for c in l
                .pointer("/tls/certificateRefs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !matches!(str_at(c, "/kind"), "" | "Secret") {
                    continue;
                }
                out.tls.push(TlsRef {
                    hosts: hosts.clone(),
                    namespace: opt(c, "/namespace").unwrap_or_else(|| ns.to_string()),
                    secret: str_at(c, "/name").to_string(),
                });
            }
        }
    }
    for r in &o.routes {
        let ns = str_at(r, "/metadata/namespace");
        let name = str_at(r, "/metadata/name");
        let mut listener_hosts = Vec::new();
        let mut attached = false;
        for p in r["spec"]["parentRefs"].as_array().into_iter().flatten() {
            if !matches!(str_at(p, "/kind"), "" | "Gateway") {
                continue;
            }
            let pns = opt(p, "/namespace").unwrap_or_else(|| ns.to_string());
            let Some(g) = gateways.get(&(pns.as_str(), str_at(p, "/name"))) else {
                continue;
            };
            // Attached through HTTP(S) listeners the sectionName names (as
            // crate::status reports it).
            let section = str_at(p, "/sectionName");
            for l in g["spec"]["listeners"].as_array().into_iter().flatten() {
                if matches!(str_at(l, "/protocol"), "HTTP" | "HTTPS")
                    && (section.is_empty() || str_at(l, "/name") == section)
                {
                    attached = true;
                    listener_hosts.push(opt(l, "/hostname"));
                }
            }
        }
        if !attached {
            continue;
        }
        let mut hosts: Vec<Option<String>> = r["spec"]["hostnames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|h| Some(h.to_ascii_lowercase()))
            .collect();
        if hosts.is_empty() {
            hosts = if listener_hosts.iter().any(Option::is_none) {
                vec![None]
            } else {
                listener_hosts
            };
        }
        hosts.sort();
        hosts.dedup();
        let source = Source {
            namespace: ns.to_string(),
            name: name.to_string(),
        };
        let order = order_of(opt(r, "/metadata/creationTimestamp"), ns, name);
        let default_match = [serde_json::json!({"path": {"type": "PathPrefix", "value": "/"}})];
        for rule in r["spec"]["rules"].as_array().into_iter().flatten() {
            let filters: Vec<Filter> = rule["filters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(filter)
                .collect();
            let backends: Vec<Backend> = rule["backendRefs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|b| matches!(str_at(b, "/kind"), "" | "Service"))
                .map(|b| {
                    let bns = opt(b, "/namespace").unwrap_or_else(|| ns.to_string());
                    let port = PortRef::Number(b["port"].as_i64().unwrap_or(0) as i32);
                    let weight = b["weight"].as_u64().map_or(1, |w| w as u32);
                    eps.backend(&bns, str_at(b, "/name"), port, weight)
                })
                .collect();
            let matches = rule["matches"].as_array().filter(|m| !m.is_empty());
            for m in matches.map_or(&default_match[..], Vec::as_slice) {
                let value = opt(m, "/path/value").unwrap_or_else(|| "/".into());
                let path = match str_at(m, "/path/type") {
                    "Exact" => PathMatch::Exact(value),
                    "RegularExpression" => match regex(&value) {
                        Some(re) => PathMatch::Regex(re),
                        None => continue,
                    },
                    _ => PathMatch::prefix(&value),
                };
                let named = |key: &str, lower: bool| -> Option<Vec<(String, StrMatch)>> {
                    m[key]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|h| {
                            let n = str_at(h, "/name");
                            Some((
                                if lower {
                                    n.to_ascii_lowercase()
                                } else {
                                    n.to_string()
                                },
                                str_match(h)?,
                            ))
                        })
                        .collect()
                };
                let (Some(headers), Some(query)) =
                    (named("headers", true), named("queryParams", false))
                else {
                    continue;
                };
                for host in &hosts {
                    out.table.add(
                        host.as_deref(),
                        Route {
                            source: source.clone(),
                            path: path.clone(),
                            method: opt(m, "/method"),
                            headers: headers.clone(),
                            query: query.clone(),
                            filters: filters.clone(),
                            backends: backends.clone(),
                            canary: None,
                            ssl_redirect: false,
                            order: order.clone(),
                        },
                    );
                }
            }
        }
    }
}
