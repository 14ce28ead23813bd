use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::json;

use crate::{Cluster, Event, Lookup, upstreams_from_resolv_conf};

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn rdata(l: &Lookup) -> Vec<String> {
    match l {
        Lookup::Answer { answers, .. } => answers.iter().map(|r| r.data.to_string()).collect(),
        other => vec![format!("{other:?}")],
    }
}

fn web(ip: &str) -> serde_json::Value {
    json!({"kind": "Service", "metadata": {"namespace": "ns", "name": "web"},
        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]}})
}

#[test]
fn a_changed_cluster_ip_moves_its_ptr() {
    let mut c = Cluster::new("cluster.local.");
    c.apply(Event::Put(web("10.43.0.5")));
    let ptr = |c: &Cluster, rev: &str| rdata(&c.lookup(&name(rev), RecordType::PTR));
    assert_eq!(
        ptr(&c, "5.0.43.10.in-addr.arpa."),
        ["web.ns.svc.cluster.local."]
    );
    c.apply(Event::Put(web("10.43.0.6")));
    assert_eq!(ptr(&c, "5.0.43.10.in-addr.arpa."), ["NotOurs"]);
    assert_eq!(
        ptr(&c, "6.0.43.10.in-addr.arpa."),
        ["web.ns.svc.cluster.local."]
    );
    c.apply(Event::Reset(Vec::new()));
    assert_eq!(ptr(&c, "6.0.43.10.in-addr.arpa."), ["NotOurs"]);
    assert_eq!(
        c.lookup(&name("web.ns.svc.cluster.local."), RecordType::A),
        Lookup::NxDomain
    );
}

#[test]
fn unready_endpoints_count_when_the_service_publishes_them() {
    let mut c = Cluster::new("cluster.local");
    let slice = json!({"kind": "EndpointSlice", "metadata": {"namespace": "ns", "name": "h-1", "labels": {"kubernetes.io/service-name": "h"}},
        "endpoints": [{"addresses": ["10.42.0.3"], "conditions": {"ready": false}}, {"addresses": ["10.42.0.4"]}]});
    c.apply(Event::Put(slice));
    let headless = |publish: bool, annotated: bool| {
        let mut s = json!({"kind": "Service", "metadata": {"namespace": "ns", "name": "h"},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": publish}});
        if annotated {
            s["metadata"]["annotations"] =
                json!({"service.alpha.kubernetes.io/tolerate-unready-endpoints": "true"});
        }
        s
    };
    let q = name("h.ns.svc.cluster.local.");
    c.apply(Event::Put(headless(false, false)));
    // No `ready` condition means ready.
    assert_eq!(rdata(&c.lookup(&q, RecordType::A)), ["10.42.0.4"]);
    c.apply(Event::Put(headless(true, false)));
    assert_eq!(
        rdata(&c.lookup(&q, RecordType::A)),
        ["10.42.0.3", "10.42.0.4"]
    );
    c.apply(Event::Put(headless(false, true)));
    assert_eq!(
        rdata(&c.lookup(&q, RecordType::A)),
        ["10.42.0.3", "10.42.0.4"]
    );
}

#[test]
fn external_names_are_cnames() {
    let mut c = Cluster::new("cluster.local");
    c.apply(Event::Put(
        json!({"kind": "Service", "metadata": {"namespace": "ns", "name": "ext"},
        "spec": {"type": "ExternalName", "externalName": "Db.Example.com."}}),
    ));
    let q = name("ext.ns.svc.cluster.local.");
    assert_eq!(rdata(&c.lookup(&q, RecordType::CNAME)), ["db.example.com."]);
    match c.lookup(&q, RecordType::A) {
        Lookup::Cname { record, target } => {
            assert_eq!(target.to_ascii(), "db.example.com.");
            assert!(matches!(&record.data, RData::CNAME(_)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pod_names_of_both_families() {
    let c = Cluster::new("cluster.local");
    let a = c.lookup(&name("10-42-0-5.any.pod.cluster.local."), RecordType::A);
    assert_eq!(rdata(&a), ["10.42.0.5"]);
    let aaaa = c.lookup(&name("fd00--5.any.pod.cluster.local."), RecordType::AAAA);
    assert_eq!(rdata(&aaaa), ["fd00::5"]);
    let bad = c.lookup(&name("10-42-0-256.any.pod.cluster.local."), RecordType::A);
    assert_eq!(bad, Lookup::NxDomain);
    assert_eq!(
        c.lookup(&name("example.com."), RecordType::A),
        Lookup::NotOurs
    );
    // Another zone is not ours.
    assert_eq!(
        c.lookup(&name("web.ns.svc.cluster.remote."), RecordType::A),
        Lookup::NotOurs
    );
}

#[test]
fn upstreams_are_the_nameservers_of_resolv_conf() {
    let text = "# comment\nsearch example.com\nnameserver 127.0.0.53\nnameserver  ::1\nnameserver fe80::1%eth0\noptions edns0\n";
    let got: Vec<String> = upstreams_from_resolv_conf(text)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(got, ["127.0.0.53:53", "[::1]:53"]);
}
