//! Canonical forms, the way compose-go normalizes a service: short syntaxes
//! turned into long ones (ports, volumes, `depends_on`, networks, secrets,
//! configs, `env_file`, build), lists of `K=V` turned into mappings, relative
//! paths made absolute, durations formatted like Go's `time.Duration`.
//! `canonical_service` runs per file before merging, so that merge rules can
//! key sequences by target; `to_output` renders the final project.

use std::path::{Component, Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use crate::yaml::{Entry, Kind, Node, Pos, Scalar};

/// A short-syntax problem: message for the node at hand.
pub type Problem = String;

/// A Go duration (`1m30s`, `500ms`, `1.5h`: `time.ParseDuration`, as
/// compose-go reads them) or a plain number of seconds, surrounding blanks
/// ignored, in nanoseconds; like Go's `time.Duration`, within an `i64`.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        let ns = secs * 1e9;
        // 2^63 ns is the first value out of Go's range.
        return (secs.is_finite() && secs >= 0.0 && ns < 9_223_372_036_854_775_808.0)
            .then_some(ns as i64);
    }
    keel_go::parse_duration(s).ok()
}

/// Go's `time.Duration.String()`.
pub fn format_duration(ns: i64) -> String {
    keel_go::format_duration(ns)
}

/// One published port in long form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub host_ip: Option<String>,
    pub target: u32,
    pub published: Option<String>,
    pub protocol: String,
}

fn port_range(s: &str) -> Option<(u32, u32)> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, b),
        None => (s, s),
    };
    let a: u32 = a.parse().ok()?;
    let b: u32 = b.parse().ok()?;
    (a <= b && b <= 65535 && a.to_string().len() <= 5).then_some((a, b))
}

/// Parses `[IP:][HOST[-RANGE]:]CTR[-RANGE][/PROTO]`.
pub fn parse_port(spec: &str) -> Result<Vec<PortSpec>, Problem> {
    let bad = || format!("invalid port {spec:?}");
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid protocol in port {spec:?}"));
    }
    // An IPv6 host address is written in brackets.
    let (ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, after) = r.split_once("]:").ok_or_else(bad)?;
        (Some(ip.to_string()), after)
    } else {
        (None, rest)
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, ctr) = match (ip, parts.as_slice()) {
        (None, [c]) => (None, None, *c),
        (None, [h, c]) => (None, Some(*h), *c),
        (None, [i, h, c]) => (Some((*i).to_string()), Some(*h), *c),
        (Some(i), [h, c]) => (Some(i), Some(*h), *c),
        _ => return Err(bad()),
    };
    let ip = ip.filter(|i| !i.is_empty());
    if let Some(i) = &ip
        && i.parse::<std::net::IpAddr>().is_err()
    {
        return Err(format!("invalid IP address {i:?} in port {spec:?}"));
    }
    let (c0, c1) = port_range(ctr).ok_or_else(bad)?;
    if c0 == 0 {
        return Err(bad());
    }
    let host = host.filter(|h| !h.is_empty());
    let mut out = Vec::new();
    match host {
        None => {
            for t in c0..=c1 {
                out.push(PortSpec {
                    host_ip: ip.clone(),
                    target: t,
                    published: None,
                    protocol: proto.clone(),
                });
            }
        }
        Some(h) => {
            let (h0, h1) = port_range(h).ok_or_else(bad)?;
            if c0 == c1 && h0 != h1 {
                // One container port, a host range: any free port of the range.
                out.push(PortSpec {
                    host_ip: ip,
                    target: c0,
                    published: Some(format!("{h0}-{h1}")),
                    protocol: proto,
                });
            } else if h1 - h0 != c1 - c0 {
                return Err(format!("invalid port {spec:?}: ranges differ in size"));
            } else {
                for k in 0..=(c1 - c0) {
                    out.push(PortSpec {
                        host_ip: ip.clone(),
                        target: c0 + k,
                        published: Some((h0 + k).to_string()),
                        protocol: proto.clone(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Expands `~` and makes `p` absolute against `base`, cleaning `.`/`..`.
pub fn abs_path(p: &str, base: &Path, home: Option<&str>) -> String {
    let pb = if let Some(rest) = p
        .strip_prefix("~/")
        .or(if p == "~" { Some("") } else { None })
        && let Some(h) = home
    {
        Path::new(h).join(rest)
    } else if Path::new(p).is_absolute() {
        PathBuf::from(p)
    } else {
        base.join(p)
    };
    let mut out = PathBuf::new();
    for c in pb.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out.to_string_lossy().into_owned()
}

fn is_remote_context(s: &str) -> bool {
    s.starts_with("http://")
        || s.starts_with("https://")
        || s.starts_with("git@")
        || s.starts_with("git://")
        || s.starts_with("github.com/")
        || s.contains("://")
}

/// What canonicalization needs to know about the file being loaded.
pub struct Ctx<'a> {
    /// Relative paths resolve against this directory.
    pub base: &'a Path,
    pub home: Option<&'a str>,
}

fn s_node(s: impl Into<String>, pos: &Pos) -> Node {
    Node::str(s, pos.clone())
}
fn entry(key: &str, value: Node) -> Entry {
    Entry {
        key: key.to_string(),
        key_pos: value.pos.clone(),
        value,
    }
}

/// `[K=V, K]` or `{K: V}` into a mapping of strings (null where no value).
pub fn list_or_dict(n: &Node, sep: char) -> Node {
    let mut out: Vec<Entry> = Vec::new();
    let mut put = |k: String, v: Node, kp: Pos| {
        if let Some(e) = out.iter_mut().find(|e| e.key == k) {
            e.value = v;
        } else {
            out.push(Entry {
                key: k,
                key_pos: kp,
                value: v,
            });
        }
    };
    match &n.kind {
        Kind::Seq(items) => {
            for it in items {
                let s = it.scalar_text().unwrap_or_default();
                match s.split_once(sep) {
                    Some((k, v)) => put(k.to_string(), s_node(v, &it.pos), it.pos.clone()),
                    None => put(s.clone(), Node::null(it.pos.clone()), it.pos.clone()),
                }
            }
        }
        Kind::Map(m) => {
            for e in m {
                let v = if e.value.is_null() {
                    e.value.clone()
                } else {
                    s_node(e.value.scalar_text().unwrap_or_default(), &e.value.pos)
                };
                put(e.key.clone(), v, e.key_pos.clone());
            }
        }
        Kind::Scalar(_) => {}
    }
    let mut node = Node::map(out, n.pos.clone());
    node.tag = n.tag;
    node
}

/// `list_or_dict` for compose-go's `map[string]string` fields (labels,
/// annotations, sysctls, driver options): a key without a value is `""`.
pub fn string_map(n: &Node) -> Node {
    let mut m = list_or_dict(n, '=');
    if let Some(es) = m.as_map_mut() {
        for e in es {
            if e.value.is_null() {
                e.value = s_node("", &e.value.pos);
            }
        }
    }
    m
}

fn str_list(n: &Node) -> Node {
    let mut out = match &n.kind {
        Kind::Seq(_) => n.clone(),
        _ => Node::new(Kind::Seq(vec![n.clone()]), n.pos.clone()),
    };
    out.tag = n.tag;
    out
}

fn port_node(p: &PortSpec, pos: &Pos) -> Node {
    let mut e = vec![entry("mode", s_node("ingress", pos))];
    if let Some(ip) = &p.host_ip {
        e.push(entry("host_ip", s_node(ip, pos)));
    }
    e.push(entry(
        "target",
        Node::new(Kind::Scalar(Scalar::Int(i64::from(p.target))), pos.clone()),
    ));
    if let Some(pb) = &p.published {
        e.push(entry("published", s_node(pb, pos)));
    }
    e.push(entry("protocol", s_node(&p.protocol, pos)));
    Node::map(e, pos.clone())
}

/// Ports into long form (short specs may expand to several entries).
fn ports(n: &Node) -> Result<Node, (Pos, Problem)> {
    let Some(items) = n.as_seq() else {
        return Ok(n.clone());
    };
    let mut out = Vec::new();
    for it in items {
        if it.as_map().is_some() {
            let mut m = it.clone();
            if m.get("mode").is_none() {
                m.as_map_mut()
                    .unwrap()
                    .insert(0, entry("mode", s_node("ingress", &it.pos)));
            }
            if let Some(t) = m.get("target").and_then(Node::scalar_text) {
                let t: u32 = t
                    .trim()
                    .parse()
                    .ok()
                    .filter(|v| *v > 0 && *v <= 65535)
                    .ok_or_else(|| (it.pos.clone(), format!("invalid port target {t:?}")))?;
                m.set(
                    "target",
                    Node::new(Kind::Scalar(Scalar::Int(i64::from(t))), it.pos.clone()),
                );
            }
            if let Some(p) = m.get("published").and_then(Node::scalar_text) {
                port_range(&p)
                    .ok_or_else(|| (it.pos.clone(), format!("invalid published port {p:?}")))?;
                m.set("published", s_node(p, &it.pos));
            }
            if m.get("protocol").is_none() {
                m.set("protocol", s_node("tcp", &it.pos));
            }
            out.push(reorder(m, &PORT_ORDER));
            continue;
        }
        let spec = it.scalar_text().unwrap_or_default();
        for p in parse_port(&spec).map_err(|e| (it.pos.clone(), e))? {
            out.push(port_node(&p, &it.pos));
        }
    }
    let mut node = Node::new(Kind::Seq(out), n.pos.clone());
    node.tag = n.tag;
    Ok(node)
}

const PROPAGATION: [&str; 6] = [
    "shared", "rshared", "slave", "rslave", "private", "rprivate",
];

/// A short volume spec `SRC:DST[:MODE]` or `DST` into long form.
fn volume_short(spec: &str, pos: &Pos, ctx: &Ctx) -> Result<Node, Problem> {
    let bad = || format!("invalid volume specification {spec:?}");
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [d] => (None, *d, None),
        [s, d] => (Some(*s), *d, None),
        [s, d, m] => (Some(*s), *d, Some(*m)),
        _ => return Err(bad()),
    };
    if dst.is_empty() || src.is_some_and(str::is_empty) {
        return Err(bad());
    }
    let mut e = Vec::new();
    let is_bind =
        src.is_some_and(|s| s.starts_with('.') || s.starts_with('/') || s.starts_with('~'));
    e.push(entry(
        "type",
        s_node(if is_bind { "bind" } else { "volume" }, pos),
    ));
    if let Some(s) = src {
        let s = if is_bind {
            abs_path(s, ctx.base, ctx.home)
        } else {
            s.to_string()
        };
        e.push(entry("source", s_node(s, pos)));
    }
    e.push(entry("target", s_node(dst, pos)));
    let mut read_only = false;
    let mut bind: Vec<Entry> = Vec::new();
    let mut volume: Vec<Entry> = Vec::new();
    for opt in mode.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => read_only = true,
            // compose-go drops the macOS-only consistency modes.
            "rw" | "cached" | "delegated" | "consistent" => {}
            "z" | "Z" if is_bind => bind.push(entry("selinux", s_node(opt, pos))),
            "nocopy" if !is_bind => volume.push(entry(
                "nocopy",
                Node::new(Kind::Scalar(Scalar::Bool(true)), pos.clone()),
            )),
            p if is_bind && PROPAGATION.contains(&p) => {
                bind.push(entry("propagation", s_node(p, pos)));
            }
            _ => return Err(format!("invalid volume mode {opt:?} in {spec:?}")),
        }
    }
    if read_only {
        e.push(entry(
            "read_only",
            Node::new(Kind::Scalar(Scalar::Bool(true)), pos.clone()),
        ));
    }
    if is_bind {
        bind.push(entry(
            "create_host_path",
            Node::new(Kind::Scalar(Scalar::Bool(true)), pos.clone()),
        ));
        e.push(entry("bind", Node::map(bind, pos.clone())));
    } else {
        e.push(entry("volume", Node::map(volume, pos.clone())));
    }
    Ok(Node::map(e, pos.clone()))
}

fn volumes(n: &Node, ctx: &Ctx) -> Result<Node, (Pos, Problem)> {
    let Some(items) = n.as_seq() else {
        return Ok(n.clone());
    };
    let mut out = Vec::new();
    for it in items {
        if let Some(s) = it.as_str() {
            out.push(volume_short(s, &it.pos, ctx).map_err(|e| (it.pos.clone(), e))?);
            continue;
        }
        let mut m = it.clone();
        if m.get("type").and_then(Node::as_str) == Some("bind")
            && let Some(src) = m.get("source").and_then(Node::as_str)
        {
            let abs = abs_path(src, ctx.base, ctx.home);
            m.set("source", s_node(abs, &it.pos));
        }
        if m.get("target").is_none() && m.get("type").and_then(Node::as_str) != Some("npipe") {
            return Err((it.pos.clone(), "volume has no target".into()));
        }
        out.push(reorder(m, &MOUNT_ORDER));
    }
    let mut node = Node::new(Kind::Seq(out), n.pos.clone());
    node.tag = n.tag;
    Ok(node)
}

fn refs(n: &Node) -> Node {
    let Some(items) = n.as_seq() else {
        return n.clone();
    };
    let out = items
        .iter()
        .map(|it| match it.as_str() {
            Some(s) => Node::map(vec![entry("source", s_node(s, &it.pos))], it.pos.clone()),
            None => it.clone(),
        })
        .collect();
    let mut node = Node::new(Kind::Seq(out), n.pos.clone());
    node.tag = n.tag;
    node
}

fn bool_node(b: bool, pos: &Pos) -> Node {
    Node::new(Kind::Scalar(Scalar::Bool(b)), pos.clone())
}

fn depends_on(n: &Node) -> Node {
    let mut out = Vec::new();
    match &n.kind {
        Kind::Seq(items) => {
            for it in items {
                let name = it.scalar_text().unwrap_or_default();
                out.push(Entry {
                    key: name,
                    key_pos: it.pos.clone(),
                    value: Node::map(
                        vec![
                            entry("condition", s_node("service_started", &it.pos)),
                            entry("required", bool_node(true, &it.pos)),
                        ],
                        it.pos.clone(),
                    ),
                });
            }
        }
        Kind::Map(m) => {
            for e in m {
                let mut v = e.value.clone();
                if v.is_null() {
                    v = Node::map(Vec::new(), e.value.pos.clone());
                }
                if v.get("condition").is_none() {
                    v.set("condition", s_node("service_started", &e.value.pos));
                }
                if v.get("required").is_none() {
                    v.set("required", bool_node(true, &e.value.pos));
                }
                cast_bool(&mut v, "restart");
                cast_bool(&mut v, "required");
                out.push(Entry {
                    key: e.key.clone(),
                    key_pos: e.key_pos.clone(),
                    value: reorder(v, &["condition", "restart", "required"]),
                });
            }
        }
        Kind::Scalar(_) => {}
    }
    let mut node = Node::map(out, n.pos.clone());
    node.tag = n.tag;
    node
}

fn networks(n: &Node) -> Node {
    let mut node = match &n.kind {
        Kind::Seq(items) => Node::map(
            items
                .iter()
                .map(|it| Entry {
                    key: it.scalar_text().unwrap_or_default(),
                    key_pos: it.pos.clone(),
                    value: Node::null(it.pos.clone()),
                })
                .collect(),
            n.pos.clone(),
        ),
        _ => n.clone(),
    };
    node.tag = n.tag;
    node
}

fn cast_bool(m: &mut Node, key: &str) {
    if let Some(v) = m.get(key)
        && let Some(s) = v.as_str()
        && let Some(b) = crate::schema::parse_bool(s)
    {
        let pos = v.pos.clone();
        m.set(key, bool_node(b, &pos));
    }
}

fn cast_int(m: &mut Node, key: &str) {
    if let Some(v) = m.get(key)
        && let Some(s) = v.as_str()
        && let Ok(i) = s.trim().parse::<i64>()
    {
        let pos = v.pos.clone();
        m.set(key, Node::new(Kind::Scalar(Scalar::Int(i)), pos));
    }
}

fn cast_float(m: &mut Node, key: &str) {
    if let Some(v) = m.get(key)
        && let Some(t) = v.scalar_text()
        && let Ok(f) = t.trim().parse::<f64>()
    {
        let pos = v.pos.clone();
        m.set(key, Node::new(Kind::Scalar(Scalar::Float(f)), pos));
    }
}

/// Docker's `RAMInBytes` (`512`, `64k`, `256MiB`, `1.5g`: binary units),
/// surrounding blanks ignored; `None` for what docker refuses and for
/// negatives (go-units' overflow comes out negative).
pub fn parse_bytes(s: &str) -> Option<i64> {
    keel_go::ram_in_bytes(s.trim()).ok().filter(|b| *b >= 0)
}

/// Byte sizes print as a decimal string, as compose-go's `UnitBytes` does.
fn cast_bytes(m: &mut Node, key: &str) -> Result<(), Problem> {
    if let Some(v) = m.get(key)
        && let Some(t) = v.scalar_text()
    {
        let b = parse_bytes(&t).ok_or_else(|| format!("invalid size {t:?}"))?;
        let pos = v.pos.clone();
        m.set(key, s_node(b.to_string(), &pos));
    }
    Ok(())
}

fn cast_duration(m: &mut Node, key: &str) {
    if let Some(v) = m.get(key)
        && let Some(t) = v.scalar_text()
        && let Some(ns) = parse_duration(&t)
    {
        let pos = v.pos.clone();
        m.set(key, s_node(format_duration(ns), &pos));
    }
}

/// Service keys whose values compose casts to booleans.
const BOOL_KEYS: [&str; 8] = [
    "attach",
    "init",
    "oom_kill_disable",
    "privileged",
    "read_only",
    "stdin_open",
    "tty",
    "use_api_socket",
];

/// Canonicalizes one service (after interpolation and schema validation).
pub fn canonical_service(svc: &Node, ctx: &Ctx) -> Result<Node, (Pos, Problem)> {
    if svc.is_null() {
        return Ok(Node::map(Vec::new(), svc.pos.clone()));
    }
    let mut s = svc.clone();
    let keys: Vec<String> = s
        .as_map()
        .map(|m| m.iter().map(|e| e.key.clone()).collect())
        .unwrap_or_default();
    for key in keys {
        let v = s.get(&key).unwrap().clone();
        let nv = match key.as_str() {
            "build" => {
                let mut b = if let Some(c) = v.as_str() {
                    Node::map(vec![entry("context", s_node(c, &v.pos))], v.pos.clone())
                } else {
                    v.clone()
                };
                b.tag = v.tag;
                if let Some(c) = b.get("context").and_then(Node::as_str).map(str::to_string)
                    && !is_remote_context(&c)
                {
                    b.set("context", s_node(abs_path(&c, ctx.base, ctx.home), &v.pos));
                }
                for k in ["args", "labels", "ssh", "additional_contexts"] {
                    if let Some(x) = b.get(k) {
                        let nx = if k == "labels" {
                            string_map(x)
                        } else {
                            list_or_dict(x, '=')
                        };
                        b.set(k, nx);
                    }
                }
                // compose-go's absContextPath: local additional contexts are
                // paths (not `service:`, `docker-image://` or remote ones).
                if let Some(m) = b.get_mut("additional_contexts").and_then(Node::as_map_mut) {
                    for e in m {
                        if let Some(p) = e.value.as_str().map(str::to_string)
                            && !p.starts_with("service:")
                            && !is_remote_context(&p)
                        {
                            e.value = s_node(abs_path(&p, ctx.base, ctx.home), &e.value.pos);
                        }
                    }
                }
                // compose-go's SSHConfig: a list of `id` or `id=path`.
                if let Some(m) = b.get("ssh").and_then(Node::as_map) {
                    let list = m
                        .iter()
                        .map(|e| match e.value.scalar_text() {
                            Some(p) if !e.value.is_null() => {
                                s_node(format!("{}={p}", e.key), &e.key_pos)
                            }
                            _ => s_node(e.key.clone(), &e.key_pos),
                        })
                        .collect();
                    let pos = b.get("ssh").map(|x| x.pos.clone()).unwrap_or(v.pos.clone());
                    b.set("ssh", Node::new(Kind::Seq(list), pos));
                }
                cast_bool(&mut b, "no_cache");
                cast_bool(&mut b, "pull");
                cast_bool(&mut b, "privileged");
                b
            }
            "environment" => list_or_dict(&v, '='),
            "labels" | "annotations" | "sysctls" => string_map(&v),
            "extra_hosts" => extra_hosts(&v),
            "depends_on" => depends_on(&v),
            "networks" => networks(&v),
            "ports" => ports(&v)?,
            "volumes" => volumes(&v, ctx)?,
            "secrets" | "configs" => refs(&v),
            "dns" | "dns_search" | "tmpfs" => str_list(&v),
            // Paths from the file's directory, as compose-go resolves them.
            "label_file" => {
                let mut l = str_list(&v);
                if let Kind::Seq(items) = &mut l.kind {
                    for it in items {
                        if let Some(p) = it.as_str().map(str::to_string) {
                            *it = s_node(abs_path(&p, ctx.base, ctx.home), &it.pos);
                        }
                    }
                }
                l
            }
            "command" | "entrypoint" => match v.as_str() {
                Some(cmd) => {
                    let words = split_shell(cmd).map_err(|e| (v.pos.clone(), e))?;
                    let mut n = Node::new(
                        Kind::Seq(words.into_iter().map(|w| s_node(w, &v.pos)).collect()),
                        v.pos.clone(),
                    );
                    n.tag = v.tag;
                    n
                }
                None => v.clone(),
            },
            "env_file" => {
                let items = str_list(&v);
                let list = items
                    .as_seq()
                    .map(|xs| {
                        xs.iter()
                            .map(|it| {
                                let (path, req) = match it.as_str() {
                                    Some(p) => (p.to_string(), true),
                                    None => (
                                        it.get("path")
                                            .and_then(Node::as_str)
                                            .unwrap_or_default()
                                            .to_string(),
                                        it.get("required")
                                            .and_then(|r| match &r.kind {
                                                Kind::Scalar(Scalar::Bool(b)) => Some(*b),
                                                _ => r.as_str().and_then(crate::schema::parse_bool),
                                            })
                                            .unwrap_or(true),
                                    ),
                                };
                                Node::map(
                                    vec![
                                        entry(
                                            "path",
                                            s_node(abs_path(&path, ctx.base, ctx.home), &it.pos),
                                        ),
                                        entry("required", bool_node(req, &it.pos)),
                                    ],
                                    it.pos.clone(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let mut n = Node::new(Kind::Seq(list), v.pos.clone());
                n.tag = v.tag;
                n
            }
            "healthcheck" => {
                let mut h = v.clone();
                if let Some(t) = h.get("test")
                    && let Some(cmd) = t.as_str()
                {
                    let pos = t.pos.clone();
                    h.set(
                        "test",
                        Node::new(
                            Kind::Seq(vec![s_node("CMD-SHELL", &pos), s_node(cmd, &pos)]),
                            pos.clone(),
                        ),
                    );
                }
                for k in ["interval", "timeout", "start_period", "start_interval"] {
                    cast_duration(&mut h, k);
                }
                cast_bool(&mut h, "disable");
                cast_int(&mut h, "retries");
                reorder(h, &HEALTH_ORDER)
            }
            "stop_grace_period" => {
                let mut tmp = Node::map(vec![entry("x", v.clone())], v.pos.clone());
                cast_duration(&mut tmp, "x");
                tmp.remove("x").unwrap()
            }
            "deploy" if v.as_map().is_some() => {
                let mut d = v.clone();
                cast_int(&mut d, "replicas");
                if let Some(r) = d.get_mut("resources") {
                    for k in ["limits", "reservations"] {
                        if let Some(l) = r.get_mut(k) {
                            cast_float(l, "cpus");
                            cast_bytes(l, "memory").map_err(|m| (l.pos.clone(), m))?;
                            cast_int(l, "pids");
                        }
                    }
                }
                if let Some(l) = d.get("labels") {
                    let nl = string_map(l);
                    d.set("labels", nl);
                }
                // compose-go's types.Duration: printed as Go prints durations.
                for (section, keys) in [
                    ("restart_policy", &["delay", "window"][..]),
                    ("update_config", &["delay", "monitor"][..]),
                    ("rollback_config", &["delay", "monitor"][..]),
                ] {
                    if let Some(x) = d.get_mut(section) {
                        for k in keys {
                            cast_duration(x, k);
                        }
                    }
                }
                d
            }
            "mem_limit" | "mem_reservation" | "memswap_limit" | "shm_size" => {
                let mut tmp = Node::map(vec![entry("x", v.clone())], v.pos.clone());
                cast_bytes(&mut tmp, "x").map_err(|m| (v.pos.clone(), m))?;
                tmp.remove("x").unwrap()
            }
            "cpus" => {
                let mut tmp = Node::map(vec![entry("x", v.clone())], v.pos.clone());
                cast_float(&mut tmp, "x");
                tmp.remove("x").unwrap()
            }
            "scale" => {
                let mut tmp = Node::map(vec![entry("x", v.clone())], v.pos.clone());
                cast_int(&mut tmp, "x");
                tmp.remove("x").unwrap()
            }
            "expose" => match v.as_seq() {
                Some(xs) => Node::new(
                    Kind::Seq(
                        xs.iter()
                            .map(|x| s_node(x.scalar_text().unwrap_or_default(), &x.pos))
                            .collect(),
                    ),
                    v.pos.clone(),
                ),
                None => v.clone(),
            },
            k if BOOL_KEYS.contains(&k) => {
                let mut tmp = Node::map(vec![entry("x", v.clone())], v.pos.clone());
                cast_bool(&mut tmp, "x");
                tmp.remove("x").unwrap()
            }
            _ => continue,
        };
        let mut nv = nv;
        if nv.tag.is_none() {
            nv.tag = v.tag;
        }
        s.set(&key, nv);
    }
    Ok(s)
}

fn extra_hosts(n: &Node) -> Node {
    let mut out = Vec::new();
    match &n.kind {
        Kind::Seq(items) => {
            for it in items {
                let s = it.scalar_text().unwrap_or_default();
                // `host:ip` and `host=ip` are both accepted; compose prints `host=ip`.
                let v = match s.split_once('=') {
                    Some(_) => s,
                    None => match s.split_once(':') {
                        Some((h, ip)) => format!("{h}={ip}"),
                        None => s,
                    },
                };
                out.push(s_node(v, &it.pos));
            }
        }
        Kind::Map(m) => {
            for e in m {
                let ip = e.value.scalar_text().unwrap_or_default();
                out.push(s_node(format!("{}={ip}", e.key), &e.value.pos));
            }
        }
        Kind::Scalar(_) => {}
    }
    let mut node = Node::new(Kind::Seq(out), n.pos.clone());
    node.tag = n.tag;
    node
}

/// Splits a command line the way compose-go's shellwords does (quotes and
/// backslashes; no expansion).
pub fn split_shell(s: &str) -> Result<Vec<String>, Problem> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = it.next() {
                    cur.push(n);
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match it.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err(format!("unterminated quote in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match it.next() {
                        Some('"') => break,
                        Some('\\') => match it.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err(format!("unterminated quote in {s:?}")),
                        },
                        Some(x) => cur.push(x),
                        None => return Err(format!("unterminated quote in {s:?}")),
                    }
                }
            }
            x => {
                in_word = true;
                cur.push(x);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

const PORT_ORDER: [&str; 7] = [
    "name",
    "mode",
    "host_ip",
    "target",
    "published",
    "protocol",
    "app_protocol",
];
const MOUNT_ORDER: [&str; 9] = [
    "type",
    "source",
    "target",
    "read_only",
    "consistency",
    "bind",
    "volume",
    "tmpfs",
    "image",
];
const HEALTH_ORDER: [&str; 7] = [
    "test",
    "timeout",
    "interval",
    "retries",
    "start_period",
    "start_interval",
    "disable",
];

/// compose-go's `ServiceConfig` field order, which `docker compose config` prints.
pub const SERVICE_ORDER: &[&str] = &[
    "profiles",
    "annotations",
    "attach",
    "build",
    "develop",
    "blkio_config",
    "cap_add",
    "cap_drop",
    "cgroup_parent",
    "cgroup",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpus",
    "cpuset",
    "cpu_shares",
    "command",
    "configs",
    "container_name",
    "credential_spec",
    "depends_on",
    "deploy",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "entrypoint",
    "environment",
    "env_file",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "group_add",
    "gpus",
    "hostname",
    "healthcheck",
    "image",
    "init",
    "ipc",
    "isolation",
    "labels",
    "label_file",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "privileged",
    "pull_policy",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "use_api_socket",
    "user",
    "userns_mode",
    "uts",
    "volumes",
    "volumes_from",
    "working_dir",
    "post_start",
    "pre_stop",
];
pub const BUILD_ORDER: &[&str] = &[
    "context",
    "dockerfile",
    "dockerfile_inline",
    "entitlements",
    "args",
    "ssh",
    "labels",
    "cache_from",
    "cache_to",
    "no_cache",
    "additional_contexts",
    "network",
    "provenance",
    "sbom",
    "pull",
    "target",
    "shm_size",
    "extra_hosts",
    "isolation",
    "privileged",
    "secrets",
    "tags",
    "ulimits",
    "platforms",
];
pub const NETWORK_ORDER: &[&str] = &[
    "name",
    "driver",
    "driver_opts",
    "ipam",
    "external",
    "internal",
    "attachable",
    "labels",
    "enable_ipv4",
    "enable_ipv6",
];
pub const VOLUME_ORDER: &[&str] = &["name", "driver", "driver_opts", "external", "labels"];
pub const SECRET_ORDER: &[&str] = &[
    "name",
    "file",
    "environment",
    "content",
    "external",
    "labels",
    "driver",
    "driver_opts",
    "template_driver",
];
pub const PROJECT_ORDER: &[&str] = &[
    "name", "services", "networks", "volumes", "secrets", "configs",
];

/// Reorders a mapping's keys by `order`; unknown keys (extensions) keep
/// their relative order at the end.
pub fn reorder(mut n: Node, order: &[&str]) -> Node {
    if let Some(m) = n.as_map_mut() {
        m.sort_by_key(|e| order.iter().position(|k| *k == e.key).unwrap_or(usize::MAX));
    }
    n
}

/// The output value of a node: scalars as YAML scalars, mappings in their
/// (already canonical) order.
pub fn to_value(n: &Node) -> Value {
    match &n.kind {
        Kind::Scalar(Scalar::Null) => Value::Null,
        Kind::Scalar(Scalar::Bool(b)) => Value::Bool(*b),
        Kind::Scalar(Scalar::Int(i)) => Value::Number((*i).into()),
        Kind::Scalar(Scalar::Float(f)) => Value::Number((*f).into()),
        Kind::Scalar(Scalar::Str(s)) => Value::String(s.clone()),
        Kind::Seq(items) => Value::Sequence(items.iter().map(to_value).collect()),
        Kind::Map(m) => {
            let mut out = Mapping::new();
            for e in m {
                out.insert(Value::String(e.key.clone()), to_value(&e.value));
            }
            Value::Mapping(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_go() {
        for (i, o) in [
            ("1m30s", "1m30s"),
            ("90s", "1m30s"),
            ("1h", "1h0m0s"),
            ("500ms", "500ms"),
            ("1.5s", "1.5s"),
            ("10", "10s"),
            ("0", "0s"),
            ("2h3m4s", "2h3m4s"),
        ] {
            assert_eq!(format_duration(parse_duration(i).unwrap()), o, "{i}");
        }
        assert!(parse_duration("5x").is_none());
        assert!(parse_duration("s").is_none());
    }

    /// Regression: durations were summed in an f64 up to 9.3e18 ns, so
    /// Go's largest duration printed one nanosecond off and values past
    /// Go's range (which compose-go refuses) were accepted.
    #[test]
    fn durations_exact_and_in_go_range() {
        let max = "2562047h47m16.854775807s";
        assert_eq!(parse_duration(max), Some(i64::MAX));
        assert_eq!(format_duration(parse_duration(max).unwrap()), max);
        assert_eq!(parse_duration("2562048h"), None);
        assert_eq!(parse_duration("9300000000"), None);
    }

    /// Regression: `512MiB` and `1p` (docker's `RAMInBytes` accepts both,
    /// compose-go reads sizes with it) were refused.
    #[test]
    fn sizes_like_docker() {
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("1p"), Some(1 << 50));
        assert_eq!(parse_bytes(" 64m "), Some(64 << 20));
        assert_eq!(parse_bytes("1.5g"), Some(3 << 29));
        assert_eq!(parse_bytes("-1m"), None);
        assert_eq!(parse_bytes("1e30"), None);
        assert_eq!(parse_bytes("5kbb"), None);
    }

    #[test]
    fn port_specs() {
        let p = parse_port("127.0.0.1:8000-8001:80-81/udp").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].target, 81);
        assert_eq!(p[1].published.as_deref(), Some("8001"));
        assert_eq!(p[1].protocol, "udp");
        let p = parse_port("8000-8010:80").unwrap();
        assert_eq!(p[0].published.as_deref(), Some("8000-8010"));
        let p = parse_port("[::1]:53:53/udp").unwrap();
        assert_eq!(p[0].host_ip.as_deref(), Some("::1"));
        for bad in [
            "80:80:80:80",
            "abc",
            "70000",
            "80/foo",
            "1-3:1-2",
            "0",
            "x.y:80:80",
        ] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            split_shell(r#"sh -c "echo \"hi\" $X" 'a b' c\ d"#).unwrap(),
            vec!["sh", "-c", "echo \"hi\" $X", "a b", "c d"]
        );
        assert!(split_shell("echo 'x").is_err());
    }
}

/// How a mapping of the output is ordered: compose-go struct field order for
/// its struct types, sorted keys for Go maps (what go-yaml does).
#[derive(Clone, Copy)]
pub enum Shape {
    /// A Go map: keys sorted, values of shape `Any`.
    Any,
    /// A Go map whose values have the given struct shape.
    MapOf(&'static str),
    /// A list whose items have the given struct shape.
    ListOf(&'static str),
    Struct(&'static str),
}

fn struct_def(name: &str) -> (&'static [&'static str], fn(&str) -> Shape) {
    fn any(_: &str) -> Shape {
        Shape::Any
    }
    match name {
        "project" => (PROJECT_ORDER, |k| match k {
            "services" => Shape::MapOf("service"),
            "networks" => Shape::MapOf("network"),
            "volumes" => Shape::MapOf("volume"),
            "secrets" | "configs" => Shape::MapOf("secret"),
            _ => Shape::Any,
        }),
        "service" => (SERVICE_ORDER, |k| match k {
            "build" => Shape::Struct("build"),
            "depends_on" => Shape::MapOf("dep"),
            "deploy" => Shape::Struct("deploy"),
            "healthcheck" => Shape::Struct("health"),
            "logging" => Shape::Struct("logging"),
            "networks" => Shape::MapOf("svcnet"),
            "ports" => Shape::ListOf("port"),
            "volumes" => Shape::ListOf("mount"),
            "secrets" | "configs" => Shape::ListOf("ref"),
            _ => Shape::Any,
        }),
        "build" => (BUILD_ORDER, any),
        "dep" => (&["condition", "restart", "required"], any),
        "deploy" => (
            &[
                "mode",
                "replicas",
                "labels",
                "update_config",
                "rollback_config",
                "resources",
                "restart_policy",
                "placement",
                "endpoint_mode",
            ],
            |k| match k {
                "resources" => Shape::Struct("resources"),
                "restart_policy" => Shape::Struct("restart_policy"),
                _ => Shape::Any,
            },
        ),
        "resources" => (&["limits", "reservations"], |_| Shape::Struct("resource")),
        "resource" => (
            &["cpus", "memory", "pids", "devices", "generic_resources"],
            any,
        ),
        "restart_policy" => (&["condition", "delay", "max_attempts", "window"], any),
        "health" => (&HEALTH_ORDER, any),
        "logging" => (&["driver", "options"], any),
        "svcnet" => (
            &[
                "priority",
                "gw_priority",
                "aliases",
                "ipv4_address",
                "ipv6_address",
                "link_local_ips",
                "mac_address",
                "driver_opts",
            ],
            any,
        ),
        "port" => (&PORT_ORDER, any),
        "mount" => (&MOUNT_ORDER, |k| match k {
            "bind" => Shape::Struct("bind"),
            "volume" => Shape::Struct("volopts"),
            "tmpfs" => Shape::Struct("tmpfs"),
            _ => Shape::Any,
        }),
        "bind" => (
            &["propagation", "create_host_path", "recursive", "selinux"],
            any,
        ),
        "volopts" => (&["labels", "nocopy", "subpath"], any),
        "tmpfs" => (&["size", "mode"], any),
        "ref" => (&["source", "target", "uid", "gid", "mode"], any),
        "network" => (NETWORK_ORDER, |k| match k {
            "ipam" => Shape::Struct("ipam"),
            _ => Shape::Any,
        }),
        "ipam" => (&["driver", "config", "options"], any),
        "volume" => (VOLUME_ORDER, any),
        "secret" => (SECRET_ORDER, any),
        _ => (&[], any),
    }
}

/// Orders every mapping of `n` as docker compose prints it.
pub fn order(n: &mut Node, shape: Shape) {
    match shape {
        Shape::Any => match &mut n.kind {
            Kind::Map(m) => {
                m.sort_by(|a, b| a.key.cmp(&b.key));
                for e in m {
                    order(&mut e.value, Shape::Any);
                }
            }
            Kind::Seq(items) => {
                for i in items {
                    order(i, Shape::Any);
                }
            }
            Kind::Scalar(_) => {}
        },
        Shape::MapOf(s) => {
            if let Kind::Map(m) = &mut n.kind {
                m.sort_by(|a, b| a.key.cmp(&b.key));
                for e in m {
                    let sh = if e.key.starts_with("x-") {
                        Shape::Any
                    } else {
                        Shape::Struct(s)
                    };
                    order(&mut e.value, sh);
                }
            }
        }
        Shape::ListOf(s) => {
            if let Kind::Seq(items) = &mut n.kind {
                for i in items {
                    order(i, Shape::Struct(s));
                }
            }
        }
        Shape::Struct(name) => {
            let (fields, child) = struct_def(name);
            if let Kind::Map(m) = &mut n.kind {
                // Extensions (`x-…`) come last, sorted, as compose-go inlines them.
                m.sort_by(|a, b| {
                    let ka = fields
                        .iter()
                        .position(|k| *k == a.key)
                        .unwrap_or(usize::MAX);
                    let kb = fields
                        .iter()
                        .position(|k| *k == b.key)
                        .unwrap_or(usize::MAX);
                    ka.cmp(&kb).then_with(|| a.key.cmp(&b.key))
                });
                for e in m {
                    order(&mut e.value, child(&e.key));
                }
            }
        }
    }
}
