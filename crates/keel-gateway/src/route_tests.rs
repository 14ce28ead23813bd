use super::*;

fn backend(service: &str) -> Backend {
    Backend {
        namespace: "default".into(),
        service: service.into(),
        port: PortRef::Number(80),
        weight: 1,
        endpoints: Vec::new(),
    }
}

fn route(name: &str, path: PathMatch, service: &str) -> Route {
    Route {
        source: Source {
            namespace: "default".into(),
            name: name.into(),
        },
        path,
        method: None,
        headers: Vec::new(),
        query: Vec::new(),
        filters: Vec::new(),
        backends: vec![backend(service)],
        canary: None,
        ssl_redirect: false,
        order: (String::new(), name.into()),
    }
}

fn path_of(kind: &str, p: &str) -> PathMatch {
    match kind {
        "Exact" => PathMatch::Exact(p.into()),
        _ => PathMatch::prefix(p),
    }
}

fn service_for(t: &Table, host: &str, path: &str) -> Option<String> {
    let headers = HeaderMap::new();
    let path = normalize(path);
    let r = Req {
        host,
        path: &path,
        query: None,
        method: "GET",
        headers: &headers,
        tls: true,
    };
    match t.decide(&r, &mut |_| 0) {
        Decision::Forward { backend, .. } => Some(backend.service.clone()),
        _ => None,
    }
}

/// Kubernetes' documented examples (concepts/services-networking/ingress,
/// "Examples"): (path type, paths, request path, matched path or none).
#[test]
fn kubernetes_path_examples() {
    let cases: &[(&str, &[&str], &str, Option<&str>)] = &[
        ("Prefix", &["/"], "/anything/at/all", Some("/")),
        ("Exact", &["/foo"], "/foo", Some("/foo")),
        ("Exact", &["/foo"], "/bar", None),
        ("Exact", &["/foo"], "/foo/", None),
        ("Exact", &["/foo/"], "/foo", None),
        ("Prefix", &["/foo"], "/foo", Some("/foo")),
        ("Prefix", &["/foo"], "/foo/", Some("/foo")),
        ("Prefix", &["/foo/"], "/foo", Some("/foo/")),
        ("Prefix", &["/foo/"], "/foo/", Some("/foo/")),
        ("Prefix", &["/aaa/bb"], "/aaa/bbb", None),
        ("Prefix", &["/aaa/bbb"], "/aaa/bbb", Some("/aaa/bbb")),
        ("Prefix", &["/aaa/bbb/"], "/aaa/bbb", Some("/aaa/bbb/")),
        ("Prefix", &["/aaa/bbb"], "/aaa/bbb/", Some("/aaa/bbb")),
        ("Prefix", &["/aaa/bbb"], "/aaa/bbb/ccc", Some("/aaa/bbb")),
        ("Prefix", &["/aaa/bbb"], "/aaa/bbbxyz", None),
        ("Prefix", &["/", "/aaa"], "/aaa/ccc", Some("/aaa")),
        (
            "Prefix",
            &["/", "/aaa", "/aaa/bbb"],
            "/aaa/bbb",
            Some("/aaa/bbb"),
        ),
        ("Prefix", &["/", "/aaa", "/aaa/bbb"], "/ccc", Some("/")),
        ("Prefix", &["/aaa"], "/ccc", None),
        ("ImplementationSpecific", &["/aaa"], "/aaa/x", Some("/aaa")),
    ];
    for (kind, paths, req, want) in cases {
        let mut t = Table::default();
        for p in *paths {
            t.add(Some("foo.bar.com"), route(p, path_of(kind, p), p));
        }
        t.finish();
        assert_eq!(
            service_for(&t, "foo.bar.com", req).as_deref(),
            *want,
            "{kind} {paths:?} for {req}"
        );
    }
}

#[test]
fn exact_beats_prefix_and_longest_wins() {
    let mut t = Table::default();
    t.add(None, route("p", PathMatch::prefix("/foo"), "prefix"));
    t.add(None, route("e", PathMatch::Exact("/foo".into()), "exact"));
    t.add(None, route("l", PathMatch::prefix("/foo/bar"), "longer"));
    t.finish();
    assert_eq!(service_for(&t, "x", "/foo").as_deref(), Some("exact"));
    assert_eq!(service_for(&t, "x", "/foo/x").as_deref(), Some("prefix"));
    assert_eq!(
        service_for(&t, "x", "/foo/bar/baz").as_deref(),
        Some("longer")
    );
    // Dot segments are resolved before matching, as nginx matches $uri.
    assert_eq!(
        service_for(&t, "x", "/foo/bar/../x").as_deref(),
        Some("prefix")
    );
    assert_eq!(service_for(&t, "x", "//foo").as_deref(), Some("exact"));
}

/// Kubernetes' host examples: `*.foo.com` matches `bar.foo.com`, not
/// `baz.bar.foo.com` nor `foo.com`; exact hosts beat wildcards, which beat
/// rules without a host; then the default backend.
#[test]
fn hosts_and_wildcards() {
    let mut t = Table::default();
    t.add(
        Some("foo.bar.com"),
        route("a", PathMatch::prefix("/"), "exact"),
    );
    t.add(
        Some("*.foo.com"),
        route("b", PathMatch::prefix("/"), "wild"),
    );
    t.add(
        Some("Bar.Foo.com"),
        route("c", PathMatch::prefix("/only"), "exact-only"),
    );
    t.add(None, route("d", PathMatch::prefix("/any"), "any"));
    t.set_default(route("e", PathMatch::prefix("/"), "default"));
    t.finish();
    let cases = [
        ("foo.bar.com", "/", "exact"),
        ("bar.foo.com", "/", "wild"),
        ("bar.foo.com", "/only/x", "exact-only"),
        ("baz.bar.foo.com", "/", "default"),
        ("foo.com", "/", "default"),
        ("foo.com", "/any", "any"),
        ("bar.foo.com", "/any", "wild"),
    ];
    for (host, path, want) in cases {
        assert_eq!(
            service_for(&t, host, path).as_deref(),
            Some(want),
            "{host}{path}"
        );
    }
    let mut empty = Table::default();
    empty.finish();
    assert_eq!(service_for(&empty, "x", "/"), None);
}

#[test]
fn request_hosts_drop_ports_and_case() {
    let h = |host: &str| {
        let mut m = HeaderMap::new();
        m.insert(hyper::header::HOST, host.parse().unwrap());
        request_host(&"/".parse().unwrap(), &m)
    };
    assert_eq!(h("Foo.Example.com:8080"), "foo.example.com");
    assert_eq!(h("example.com."), "example.com");
    assert_eq!(h("[::1]:80"), "[::1]");
    assert_eq!(
        request_host(&"https://A.b/x".parse().unwrap(), &HeaderMap::new()),
        "a.b"
    );
}

fn canary(
    header: Option<&str>,
    value: Option<&str>,
    pattern: Option<&str>,
    cookie: Option<&str>,
    weight: u32,
) -> Canary {
    Canary {
        source: Source {
            namespace: "default".into(),
            name: "canary".into(),
        },
        backend: backend("canary"),
        header: header.map(str::to_string),
        header_value: value.map(str::to_string),
        header_pattern: pattern.map(|p| Regex::new(p).unwrap()),
        cookie: cookie.map(str::to_string),
        weight,
        total: 100,
    }
}

/// ingress-nginx's precedence: header, then cookie, then weight; values
/// other than `always`/`never` (or the configured value) fall through.
#[test]
fn canary_precedence_like_ingress_nginx() {
    let hm = |pairs: &[(&str, &str)]| {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    };
    let c = canary(Some("x-canary"), None, None, Some("canary"), 0);
    let mut never_draw = |_| 99;
    assert!(c.chosen(&hm(&[("x-canary", "always")]), &mut never_draw));
    assert!(!c.chosen(
        &hm(&[("x-canary", "never"), ("cookie", "canary=always")]),
        &mut never_draw
    ));
    assert!(c.chosen(
        &hm(&[("x-canary", "other"), ("cookie", "a=b; canary=always")]),
        &mut never_draw
    ));
    assert!(!c.chosen(&hm(&[("cookie", "canary=never")]), &mut |_| 0));
    assert!(
        !c.chosen(&hm(&[]), &mut |_| 0),
        "weight 0 never picks the canary"
    );
    let v = canary(Some("x-canary"), Some("blue"), None, None, 0);
    assert!(v.chosen(&hm(&[("x-canary", "blue")]), &mut never_draw));
    assert!(
        !v.chosen(&hm(&[("x-canary", "always")]), &mut never_draw),
        "with a value, always is just another value"
    );
    let p = canary(Some("x-canary"), None, Some("^(a|b)$"), None, 0);
    assert!(p.chosen(&hm(&[("x-canary", "b")]), &mut never_draw));
    assert!(!p.chosen(&hm(&[("x-canary", "c")]), &mut never_draw));
    let w = canary(None, None, None, None, 30);
    let picked = (0..100).filter(|n| w.chosen(&hm(&[]), &mut |_| *n)).count();
    assert_eq!(picked, 30);
    let all = canary(None, None, None, None, 100);
    assert!((0..100).all(|n| all.chosen(&hm(&[]), &mut |_| n)));
}

#[test]
fn weighted_backends_split_by_weight() {
    let mut r = route("r", PathMatch::prefix("/"), "a");
    r.backends = vec![backend("a"), backend("b")];
    r.backends[0].weight = 3;
    r.backends[1].weight = 1;
    let mut t = Table::default();
    t.add(None, r);
    t.finish();
    let headers = HeaderMap::new();
    let req = Req {
        host: "x",
        path: "/",
        query: None,
        method: "GET",
        headers: &headers,
        tls: false,
    };
    let mut got = Vec::new();
    for n in 0..4 {
        if let Decision::Forward { backend, .. } = t.decide(&req, &mut |total| {
            assert_eq!(total, 4);
            n
        }) {
            got.push(backend.service.clone());
        }
    }
    assert_eq!(got, ["a", "a", "a", "b"]);
}

/// Gateway API precedence after paths: method, header count, query count.
#[test]
fn httproute_matches_and_precedence() {
    let mut t = Table::default();
    let mut by_header = route("h", PathMatch::prefix("/"), "header");
    by_header.headers = vec![("x-env".into(), StrMatch::Exact("canary".into()))];
    let mut by_query = route("q", PathMatch::prefix("/"), "query");
    by_query.query = vec![("v".into(), StrMatch::Regex(Regex::new("^[0-9]+$").unwrap()))];
    let mut by_method = route("m", PathMatch::prefix("/"), "method");
    by_method.method = Some("POST".into());
    t.add(
        Some("a.example"),
        route("plain", PathMatch::prefix("/"), "plain"),
    );
    t.add(Some("a.example"), by_header);
    t.add(Some("a.example"), by_query);
    t.add(Some("a.example"), by_method);
    t.add(
        Some("a.example"),
        route(
            "re",
            PathMatch::Regex(Regex::new("^(?:/img/[a-z]+\\.png)$").unwrap()),
            "regex",
        ),
    );
    t.finish();
    let ask = |method: &str, path: &str, query: Option<&str>, headers: &[(&str, &str)]| {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let r = Req {
            host: "a.example",
            path,
            query,
            method,
            headers: &h,
            tls: false,
        };
        match t.decide(&r, &mut |_| 0) {
            Decision::Forward { backend, .. } => backend.service.clone(),
            _ => String::new(),
        }
    };
    assert_eq!(ask("GET", "/", None, &[]), "plain");
    assert_eq!(
        ask("POST", "/", Some("v=1"), &[("x-env", "canary")]),
        "method"
    );
    assert_eq!(
        ask("GET", "/", Some("v=1"), &[("x-env", "canary")]),
        "header"
    );
    assert_eq!(
        ask("GET", "/", Some("a=b&v=12"), &[("x-env", "prod")]),
        "query"
    );
    assert_eq!(ask("GET", "/", Some("v=x"), &[]), "plain");
    assert_eq!(ask("GET", "/img/cat.png", None, &[]), "regex");
    assert_eq!(ask("GET", "/img/cat.png/x", None, &[]), "plain");
}

#[test]
fn tls_hosts_redirect_plain_http() {
    let mut r = route("r", PathMatch::prefix("/"), "a");
    r.ssl_redirect = true;
    let mut t = Table::default();
    t.add(Some("secure.example"), r);
    t.finish();
    let headers = HeaderMap::new();
    let mut req = Req {
        host: "secure.example",
        path: "/",
        query: None,
        method: "GET",
        headers: &headers,
        tls: false,
    };
    assert!(matches!(
        t.decide(&req, &mut |_| 0),
        Decision::HttpsRedirect(_)
    ));
    req.tls = true;
    assert!(matches!(
        t.decide(&req, &mut |_| 0),
        Decision::Forward { .. }
    ));
}

#[test]
fn normalize_resolves_dots_and_slashes() {
    for (raw, want) in [
        ("/", "/"),
        ("", "/"),
        ("/a/b/", "/a/b/"),
        ("/a/./b", "/a/b"),
        ("/a/../../b", "/b"),
        ("//a//b", "/a/b"),
        ("/a/..", "/"),
        ("/a/b/..", "/a/"),
    ] {
        assert_eq!(normalize(raw), want, "{raw}");
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary hosts, paths, queries and headers never panic the table.
        #[test]
        fn routing_never_panics(
            host in ".{0,40}",
            path in "(/|[a-z.%]{0,3}){0,12}",
            query in proptest::option::of(".{0,30}"),
            rule_paths in proptest::collection::vec("(/[a-z.]{0,3}){0,4}/?", 0..6),
            cookie in ".{0,30}",
        ) {
            let mut t = Table::default();
            for (i, p) in rule_paths.iter().enumerate() {
                let kind = if i % 2 == 0 { PathMatch::prefix(p) } else { PathMatch::Exact(p.clone()) };
                let mut r = route(p, kind, p);
                r.query = vec![("q".into(), StrMatch::Exact("1".into()))];
                r.canary = Some(canary(Some("x"), None, None, Some("c"), 50));
                t.add(Some(if i % 3 == 0 { "*.a.b" } else { host.as_str() }), r);
            }
            t.finish();
            let mut headers = HeaderMap::new();
            if let Ok(v) = cookie.parse() {
                headers.insert(hyper::header::COOKIE, v);
            }
            let norm = normalize(&path);
            prop_assert!(norm.starts_with('/'));
            // The shortcut for paths with nothing to resolve changes nothing.
            let resolved = resolve(&path);
            prop_assert_eq!(&*norm, resolved.as_str());
            let h = host.to_ascii_lowercase();
            let r = Req { host: &h, path: &norm, query: query.as_deref(), method: "GET", headers: &headers, tls: false };
            let _ = t.decide(&r, &mut |n| n / 2);
            let mut hm = HeaderMap::new();
            if let Ok(v) = host.parse() {
                hm.insert(hyper::header::HOST, v);
            }
            let _ = request_host(&"/".parse().unwrap(), &hm);
        }
    }
}
