//! keel-dns over the wire: the Kubernetes DNS spec's examples (read from
//! ../shared/conformance/k8s-dns-spec, or $`KEEL_CONFORMANCE`), NXDOMAIN vs
//! NODATA, changes followed, truncation, forwarding to a fake upstream on
//! 127.0.0.1, and arbitrary packets.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use keel_dns::{Dns, Event, Transport};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn data_dir(sub: &str) -> PathBuf {
    let dir = std::env::var_os("KEEL_CONFORMANCE").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared/conformance").join(sub))
                .find(|d| d.is_dir())
                .unwrap_or_else(|| PathBuf::from("../shared/conformance").join(sub))
        },
        |c| PathBuf::from(c).join(sub),
    );
    assert!(
        dir.is_dir(),
        "conformance data missing at {} (set KEEL_CONFORMANCE)",
        dir.display()
    );
    dir
}

// ---------- cluster objects ----------

fn service(ns: &str, name: &str, spec: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": ns, "name": name}, "spec": spec})
}

/// An `EndpointSlice` of `svc`: endpoints as (addresses, hostname, ready).
fn slice(
    ns: &str,
    name: &str,
    svc: &str,
    eps: &[(&[&str], Option<&str>, bool)],
    ports: &Value,
) -> Value {
    let endpoints: Vec<Value> = eps
        .iter()
        .map(|(addrs, host, ready)| {
            let mut e = json!({"addresses": addrs, "conditions": {"ready": ready}});
            if let Some(h) = host {
                e["hostname"] = json!(h);
            }
            e
        })
        .collect();
    let family = if eps.first().is_some_and(|e| e.0[0].contains(':')) {
        "IPv6"
    } else {
        "IPv4"
    };
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": ns, "name": name, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": family, "endpoints": endpoints, "ports": ports})
}

fn https() -> Value {
    json!([{"name": "https", "port": 443, "protocol": "TCP"}])
}

// ---------- a fake upstream and a client ----------

/// Answers every A question with 192.0.2.53 and AAAA with `2001:db8::1`
/// (what the spec's `ExternalName` example shows for www.example.com),
/// `big.example.` with 40 A records; counts questions.
async fn fake_upstream() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                continue;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::response(q.metadata.id, q.metadata.op_code);
            r.metadata.recursion_available = true;
            r.add_queries(q.queries.clone());
            for qq in &q.queries {
                let name = qq.name().clone();
                match qq.query_type() {
                    RecordType::A => r.add_answer(Record::from_rdata(
                        name,
                        300,
                        RData::A(A([192, 0, 2, 53].into())),
                    )),
                    RecordType::AAAA => r.add_answer(Record::from_rdata(
                        name,
                        300,
                        RData::AAAA(AAAA("2001:db8::1".parse().unwrap())),
                    )),
                    _ => &mut r,
                };
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

async fn server(objects: Vec<Value>) -> (Dns, SocketAddr) {
    let up = fake_upstream().await;
    let dns = Dns::new("cluster.local", vec![up]);
    dns.apply(Event::Reset(objects));
    let addr = dns.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (dns, addr)
}

fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

async fn ask_udp(server: SocketAddr, q: &[u8]) -> (Message, usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(q, server).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("an answer within 5s")
        .unwrap();
    (Message::from_vec(&buf[..n]).unwrap(), n)
}

async fn ask_tcp(server: SocketAddr, q: &[u8]) -> Message {
    let mut c = TcpStream::connect(server).await.unwrap();
    let mut out = u16::try_from(q.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(q);
    c.write_all(&out).await.unwrap();
    let len = c.read_u16().await.unwrap();
    let mut b = vec![0u8; usize::from(len)];
    c.read_exact(&mut b).await.unwrap();
    Message::from_vec(&b).unwrap()
}

async fn ask(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    ask_udp(server, &query(name, qtype, None)).await.0
}

/// A record's shape: owner, type and rdata without TTL, priority and weight.
fn shape(r: &Record) -> String {
    let data = match &r.data {
        RData::SRV(s) => format!("{} {}", s.port, s.target.to_ascii().to_ascii_lowercase()),
        RData::TXT(t) => t
            .txt_data
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
        RData::CNAME(n) => n.0.to_ascii(),
        RData::PTR(n) => n.0.to_ascii(),
        other => other.to_string(),
    };
    format!(
        "{} {} {}",
        fqdn(&r.name.to_ascii()),
        r.record_type(),
        fqdn(&data)
    )
}

fn fqdn(s: &str) -> String {
    let s = s.to_ascii_lowercase();
    // Only names get a trailing dot; addresses and versions stay as they are.
    if s.contains(|c: char| c.is_ascii_alphabetic()) && !s.contains(':') && !s.ends_with('.') {
        format!("{s}.")
    } else {
        s
    }
}

/// The spec example's answer line, as a shape.
fn expected_shape(line: &str) -> String {
    let w: Vec<&str> = line.split_whitespace().collect();
    assert!(w.len() >= 5 && w[2] == "IN", "answer line {line:?}");
    let data = match w[3] {
        "SRV" => format!("{} {}", w[6], w[7].to_ascii_lowercase()),
        "TXT" => w[4..].join(" ").trim_matches('"').to_string(),
        _ => w[4].to_string(),
    };
    format!("{} {} {}", fqdn(w[0]), w[3], fqdn(&data))
}

/// The cluster each example's section implies (the spec's examples do
/// not agree with each other, see the data's README): 2.3 a `ClusterIP`
/// Service, 2.4 a headless one (three plain endpoints for the Service's
/// own name, pets with hostnames for the rest), 2.5 an `ExternalName`.
fn state_for(section: &str, question: &str, qtype: RecordType) -> Vec<Value> {
    let cluster_ip = || {
        service(
            "default",
            "kubernetes",
            &json!({"type": "ClusterIP", "clusterIP": "10.3.0.1", "clusterIPs": ["10.3.0.1", "2001:db8::1"], "ports": https()}),
        )
    };
    let headless = || {
        service(
            "default",
            "headless",
            &json!({"clusterIP": "None", "ports": https()}),
        )
    };
    match section.split(' ').next().unwrap_or_default() {
        s if s.starts_with("2.3") => vec![cluster_ip()],
        s if s.starts_with("2.4")
            && question.starts_with("headless.")
            && matches!(qtype, RecordType::A | RecordType::AAAA) =>
        {
            vec![
                headless(),
                slice(
                    "default",
                    "headless-v4",
                    "headless",
                    &[
                        (&["10.3.0.1"], None, true),
                        (&["10.3.0.2"], None, true),
                        (&["10.3.0.3"], None, true),
                        (&["10.3.0.9"], None, false),
                    ],
                    &https(),
                ),
                slice(
                    "default",
                    "headless-v6",
                    "headless",
                    &[
                        (&["2001:db8::1"], None, true),
                        (&["2001:db8::2"], None, true),
                        (&["2001:db8::3"], None, true),
                    ],
                    &https(),
                ),
            ]
        }
        s if s.starts_with("2.4") => vec![
            headless(),
            slice(
                "default",
                "pets-v4",
                "headless",
                &[
                    (&["10.3.0.100"], Some("my-pet"), true),
                    (&["10.3.0.101"], Some("my-pet-2"), true),
                    (&["10.3.0.102"], Some("438934893"), true),
                    (&["10.3.0.103"], Some("not-ready"), false),
                ],
                &https(),
            ),
            slice(
                "default",
                "pets-v6",
                "headless",
                &[(&["2001:db8::1"], Some("my-pet"), true)],
                &json!([]),
            ),
        ],
        s if s.starts_with("2.5") => vec![service(
            "default",
            "foo",
            &json!({"type": "ExternalName", "externalName": "www.example.com"}),
        )],
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_specs_examples_get_their_records() {
    let text = std::fs::read_to_string(data_dir("k8s-dns-spec").join("examples.tsv")).unwrap();
    let mut checked = 0;
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 4, "examples.tsv:{}: 4 columns", i + 1);
        let q: Vec<&str> = cols[2].split_whitespace().collect();
        assert_eq!(q[1], "IN", "examples.tsv:{}", i + 1);
        let qtype: RecordType = q[2].parse().unwrap();
        let (_dns, addr) = server(state_for(cols[0], q[0], qtype)).await;
        let got = ask(addr, q[0], qtype).await;
        assert_eq!(
            got.metadata.response_code,
            ResponseCode::NoError,
            "examples.tsv:{}: {}",
            i + 1,
            cols[2]
        );
        let got: BTreeSet<String> = got.answers.iter().map(shape).collect();
        let want: BTreeSet<String> = cols[3].split('|').map(expected_shape).collect();
        assert_eq!(
            got,
            want,
            "examples.tsv:{} ({}): {}",
            i + 1,
            cols[0],
            cols[2]
        );
        checked += 1;
    }
    assert_eq!(checked, 15, "the README promises 15 examples");
}

fn cluster() -> Vec<Value> {
    vec![
        service(
            "default",
            "web",
            &json!({"type": "ClusterIP", "clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 81}]}),
        ),
        service(
            "default",
            "db",
            &json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}),
        ),
        slice(
            "default",
            "db-1",
            "db",
            &[
                (&["10.42.0.7"], Some("db-0"), true),
                (&["10.42.0.8"], None, false),
            ],
            &json!([{"name": "pg", "port": 5432, "protocol": "TCP"}]),
        ),
        service("default", "empty", &json!({"clusterIP": "None"})),
        slice(
            "default",
            "empty-1",
            "empty",
            &[(&["10.42.0.9"], None, false)],
            &json!([]),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_for_missing_names_nodata_for_missing_types() {
    let (_dns, addr) = server(cluster()).await;
    let cases = [
        (
            "web.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            1,
        ),
        (
            "WEB.Default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            1,
        ),
        (
            "web.default.svc.cluster.local.",
            RecordType::AAAA,
            ResponseCode::NoError,
            0,
        ),
        (
            "web.default.svc.cluster.local.",
            RecordType::TXT,
            ResponseCode::NoError,
            0,
        ),
        (
            "nope.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
            0,
        ),
        (
            "web.other.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
            0,
        ),
        (
            "default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            0,
        ),
        (
            "other.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
            0,
        ),
        (
            "svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            0,
        ),
        ("cluster.local.", RecordType::A, ResponseCode::NoError, 0),
        ("cluster.local.", RecordType::SOA, ResponseCode::NoError, 1),
        (
            "x.y.z.w.v.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
            0,
        ),
        // Named ports only; the unnamed port 81 has no SRV.
        (
            "_http._tcp.web.default.svc.cluster.local.",
            RecordType::SRV,
            ResponseCode::NoError,
            1,
        ),
        (
            "_http._udp.web.default.svc.cluster.local.",
            RecordType::SRV,
            ResponseCode::NXDomain,
            0,
        ),
        (
            "_http._tcp.web.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            0,
        ),
        (
            "_http.web.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            0,
        ),
        // Headless: ready endpoints only; none ready is NXDOMAIN (spec 2.4.1).
        (
            "db.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            1,
        ),
        (
            "db-0.db.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            1,
        ),
        (
            "10-42-0-8.db.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
            0,
        ),
        (
            "_pg._tcp.db.default.svc.cluster.local.",
            RecordType::SRV,
            ResponseCode::NoError,
            1,
        ),
        (
            "empty.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
            0,
        ),
        (
            "db-0.web.default.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
            0,
        ),
        // Pods.
        (
            "10-42-0-5.default.pod.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            1,
        ),
        (
            "10-42-0-5.default.pod.cluster.local.",
            RecordType::AAAA,
            ResponseCode::NoError,
            0,
        ),
        (
            "not-an-ip.default.pod.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
            0,
        ),
        (
            "7.0.42.10.in-addr.arpa.",
            RecordType::PTR,
            ResponseCode::NoError,
            1,
        ),
        (
            "20.0.43.10.in-addr.arpa.",
            RecordType::PTR,
            ResponseCode::NoError,
            1,
        ),
    ];
    for (name, qtype, code, n) in cases {
        let m = ask(addr, name, qtype).await;
        assert_eq!(
            (m.metadata.response_code, m.answers.len()),
            (code, n),
            "{name} {qtype}"
        );
        if code == ResponseCode::NXDomain || n == 0 && qtype != RecordType::SOA {
            assert!(m.metadata.authoritative, "{name}: authoritative");
            assert_eq!(
                m.authorities.first().map(Record::record_type),
                Some(RecordType::SOA),
                "{name}: SOA for negative caching"
            );
        }
    }
    let m = ask(addr, "db-0.db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(
        shape(&m.answers[0]),
        "db-0.db.default.svc.cluster.local. A 10.42.0.7"
    );
    let m = ask(
        addr,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(
        shape(&m.answers[0]),
        "_pg._tcp.db.default.svc.cluster.local. SRV 5432 db-0.db.default.svc.cluster.local."
    );
    assert_eq!(
        m.additionals.iter().map(shape).collect::<Vec<_>>(),
        ["db-0.db.default.svc.cluster.local. A 10.42.0.7"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_names_go_to_the_upstream_over_udp_and_tcp() {
    let (_dns, addr) = server(cluster()).await;
    let m = ask(addr, "example.org.", RecordType::A).await;
    assert_eq!(
        m.answers.iter().map(shape).collect::<Vec<_>>(),
        ["example.org. A 192.0.2.53"]
    );
    // Reverse names of addresses the cluster does not have, too.
    let m = ask(addr, "1.2.0.192.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(!m.metadata.authoritative);
    // The fake upstream has no TCP: a TCP client gets SERVFAIL, not a hang.
    let m = ask_tcp(addr, &query("example.org.", RecordType::A, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_follow_changes_within_a_second() {
    let up = fake_upstream().await;
    let dns = Dns::new("cluster.local", vec![up]);
    let addr = dns.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let follower = dns.clone();
    tokio::spawn(async move { follower.follow(rx).await });
    tx.send(Event::Reset(cluster())).await.unwrap();
    let name = "db.default.svc.cluster.local.";
    let wait_for = |want: Vec<&'static str>| async move {
        let t = Instant::now();
        loop {
            let m = ask(addr, name, RecordType::A).await;
            let mut got: Vec<String> = m.answers.iter().map(shape).collect();
            got.sort();
            if got.iter().map(String::as_str).collect::<Vec<_>>() == want {
                return t.elapsed();
            }
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "still {got:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    wait_for(vec!["db.default.svc.cluster.local. A 10.42.0.7"]).await;
    // The unready endpoint becomes ready.
    tx.send(Event::Put(slice(
        "default",
        "db-1",
        "db",
        &[
            (&["10.42.0.7"], Some("db-0"), true),
            (&["10.42.0.8"], None, true),
        ],
        &json!([]),
    )))
    .await
    .unwrap();
    wait_for(vec![
        "db.default.svc.cluster.local. A 10.42.0.7",
        "db.default.svc.cluster.local. A 10.42.0.8",
    ])
    .await;
    let m = ask(addr, "8.0.42.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(
        m.answers.iter().map(shape).collect::<Vec<_>>(),
        ["8.0.42.10.in-addr.arpa. PTR 10-42-0-8.db.default.svc.cluster.local."]
    );
    // The slice goes: no ready endpoint, NXDOMAIN; the PTR goes to the upstream.
    tx.send(Event::Deleted(
        json!({"kind": "EndpointSlice", "metadata": {"namespace": "default", "name": "db-1"}}),
    ))
    .await
    .unwrap();
    wait_for(vec![]).await;
    assert_eq!(
        ask(addr, name, RecordType::A).await.metadata.response_code,
        ResponseCode::NXDomain
    );
    assert!(
        !ask(addr, "8.0.42.10.in-addr.arpa.", RecordType::PTR)
            .await
            .metadata
            .authoritative
    );
    // The Service goes.
    tx.send(Event::Deleted(
        json!({"kind": "Service", "metadata": {"namespace": "default", "name": "web"}}),
    ))
    .await
    .unwrap();
    let t = Instant::now();
    while ask(addr, "web.default.svc.cluster.local.", RecordType::A)
        .await
        .metadata
        .response_code
        != ResponseCode::NXDomain
    {
        assert!(t.elapsed() < Duration::from_secs(1), "web still answers");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let ips: Vec<String> = (1..=100).map(|i| format!("10.42.1.{i}")).collect();
    let endpoints: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
        .collect();
    let big = json!({"kind": "EndpointSlice", "metadata": {"namespace": "default", "name": "big-1", "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4", "endpoints": endpoints, "ports": []});
    let (_dns, addr) = server(vec![
        service("default", "big", &json!({"clusterIP": "None"})),
        big,
    ])
    .await;
    let name = "big.default.svc.cluster.local.";
    let (m, n) = ask_udp(addr, &query(name, RecordType::A, None)).await;
    assert!(m.metadata.truncation, "512-byte client: TC");
    assert!(n <= 512 && m.answers.is_empty());
    let (m, n) = ask_udp(addr, &query(name, RecordType::A, Some(4096))).await;
    assert!(
        m.metadata.truncation,
        "100 A records do not fit 1232 bytes either"
    );
    assert!(n <= 1232);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    let m = ask_tcp(addr, &query(name, RecordType::A, None)).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 100);
    // A small answer fits UDP and carries EDNS when asked with it.
    let (m, _) = ask_udp(
        addr,
        &query(
            "10-1-2-3.default.pod.cluster.local.",
            RecordType::A,
            Some(4096),
        ),
    )
    .await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.edns.map(|e| e.max_payload()), Some(1232));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_get_formerr_or_nothing() {
    let (_dns, addr) = server(cluster()).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // A header and a question cut short: FORMERR with the same ID.
    let mut q = query("web.default.svc.cluster.local.", RecordType::A, None);
    q.truncate(20);
    sock.send_to(&q, addr).await.unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, u16::from_be_bytes([q[0], q[1]]));
    // Three bytes: nothing to answer; the server still serves.
    sock.send_to(&[1, 2, 3], addr).await.unwrap();
    let m = ask(addr, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.answers.len(), 1);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn dns() -> Dns {
        // No upstreams: forwarded names fail fast with SERVFAIL.
        let d = Dns::new("cluster.local", Vec::new());
        d.apply(Event::Reset(cluster()));
        d
    }

    fn check(d: &Dns, rt: &tokio::runtime::Runtime, bytes: &[u8]) {
        for t in [Transport::Udp, Transport::Tcp] {
            if let Some(out) = rt.block_on(d.handle(bytes, t)) {
                let m = Message::from_vec(&out).expect("answers parse");
                assert_eq!(m.metadata.message_type, MessageType::Response);
                assert_eq!(m.metadata.id, u16::from_be_bytes([bytes[0], bytes[1]]));
                if t == Transport::Udp {
                    assert!(out.len() <= 1232);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn arbitrary_packets_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            check(&dns(), &rt, &bytes);
        }

        #[test]
        fn mutated_queries_never_panic(
            name in "[a-z0-9_.-]{0,40}\\.(default\\.svc|default\\.pod|svc|in-addr\\.arpa|ip6\\.arpa)?\\.?(cluster\\.local)?",
            qtype in any::<u16>(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let Ok(n) = Name::from_ascii(&name) else { return Ok(()) };
            let mut m = Message::query();
            m.add_query(Query::query(n, RecordType::from(qtype)));
            let mut bytes = m.to_vec().unwrap();
            for (i, b) in flips {
                let i = i % bytes.len();
                bytes[i] = b;
            }
            check(&dns(), &rt, &bytes);
        }
    }
}

/// A node's pod-network gateway gets its port before the bridge has the
/// address: `listen_freebind` binds an address no interface holds (where
/// `listen` is refused), on UDP and TCP at one port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_port_is_bound_before_its_address_exists() {
    let dns = Dns::new("cluster.local", Vec::new());
    // TEST-NET-1: never a local address.
    let addr: SocketAddr = "192.0.2.53:0".parse().unwrap();
    let err = dns.listen(addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrNotAvailable, "{err}");
    let bound = dns.listen_freebind(addr).unwrap();
    assert_eq!(bound.ip(), addr.ip());
    assert_ne!(bound.port(), 0);
}
