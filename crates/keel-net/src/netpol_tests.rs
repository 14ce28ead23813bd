use std::sync::Mutex;

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn labels(l: &[(&str, &str)]) -> BTreeMap<String, String> {
    l.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
}

fn pod(ns: &str, name: &str, ip: [u8; 4], l: &[(&str, &str)]) -> PodInfo {
    PodInfo {
        namespace: ns.into(),
        name: name.into(),
        labels: labels(l),
        ip: Ipv4Addr::from(ip),
        ports: vec![("http".into(), "TCP".into(), 8080)],
    }
}

fn policy(v: serde_json::Value) -> Policy {
    Policy::from_json(&v).unwrap()
}

fn cluster(policies: Vec<Policy>) -> Cluster {
    Cluster {
        pods: vec![
            pod("default", "web", [10, 42, 0, 5], &[("app", "web")]),
            pod("default", "client", [10, 42, 1, 6], &[("app", "client")]),
            pod("other", "spy", [10, 42, 1, 7], &[("app", "client")]),
        ],
        namespaces: BTreeMap::from([
            ("default".into(), labels(&[("team", "a")])),
            ("other".into(), labels(&[("team", "b")])),
        ]),
        policies,
    }
}

const WEB: [Ipv4Addr; 1] = [Ipv4Addr::new(10, 42, 0, 5)];

#[test]
fn unselected_pods_are_unrestricted() {
    let c = cluster(vec![]);
    assert_eq!(
        c.compile(&WEB),
        vec![
            "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
            "-j MARK --set-xmark 0x0/0x30000"
        ]
    );
}

#[test]
fn default_deny_ingress_then_allow_from_pods_on_a_named_port() {
    let deny = policy(json!({"metadata": {"namespace": "default", "name": "deny"},
        "spec": {"podSelector": {}}}));
    let c = cluster(vec![deny.clone()]);
    let r = c.compile(&WEB);
    assert_eq!(
        r[1],
        "-d 10.42.0.5/32 -m mark ! --mark 0x20000/0x20000 -j DROP"
    );
    assert_eq!(r.len(), 3);
    let allow = policy(
        json!({"metadata": {"namespace": "default", "name": "allow"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                              "ports": [{"port": "http"}]}]}}),
    );
    let r = cluster(vec![deny, allow]).compile(&WEB);
    // Only the client of the policy's namespace: "spy" has the label but lives elsewhere.
    assert_eq!(
        r[1],
        "-d 10.42.0.5/32 -s 10.42.1.6/32 -p tcp -m tcp --dport 8080 -j MARK --set-xmark 0x20000/0x20000"
    );
    assert_eq!(r.len(), 4);
}

#[test]
fn namespace_selector_ip_block_except_and_end_port() {
    let p = policy(json!({"metadata": {"namespace": "default", "name": "p"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}},
          "policyTypes": ["Ingress", "Egress"],
          "ingress": [{"from": [{"namespaceSelector": {"matchExpressions":
                 [{"key": "team", "operator": "In", "values": ["b"]}]}}]}],
          "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.42.0.0/16"]}}],
                      "ports": [{"protocol": "UDP", "port": 53, "endPort": 54}]}]}}));
    let r = cluster(vec![p]).compile(&WEB);
    let egress: Vec<&String> = r
        .iter()
        .filter(|l| l.starts_with("-s 10.42.0.5/32 -d"))
        .collect();
    // 10.0.0.0/8 less 10.42.0.0/16: 8 CIDRs from /9 down to /16.
    assert_eq!(egress.len(), 8, "{r:#?}");
    assert!(egress.iter().all(|l| l.ends_with(
        "-p udp -m udp --dport 53:54 -j MARK --set-xmark 0x10000/0x10000"
    )));
    assert!(!egress.iter().any(|l| l.contains("10.42.0.0/16")));
    assert!(r.contains(
        &"-d 10.42.0.5/32 -s 10.42.1.7/32 -j MARK --set-xmark 0x20000/0x20000".to_string()
    ));
    assert!(r.contains(&"-s 10.42.0.5/32 -m mark ! --mark 0x10000/0x10000 -j DROP".to_string()));
}

#[test]
fn egress_only_policy_leaves_ingress_open() {
    let p = policy(json!({"metadata": {"namespace": "default", "name": "p"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}));
    let r = cluster(vec![p]).compile(&WEB);
    assert!(r.iter().any(|l| l.starts_with("-s 10.42.0.5/32 -m mark")));
    assert!(!r.iter().any(|l| l.starts_with("-d 10.42.0.5/32")));
}

#[test]
fn subtract_covers_exactly_the_rest() {
    let n: Ipv4Net = "10.0.0.0/24".parse().unwrap();
    let ex: Vec<Ipv4Net> = vec![
        "10.0.0.128/25".parse().unwrap(),
        "10.0.0.4/30".parse().unwrap(),
    ];
    let got = subtract(n, &ex);
    for a in n.hosts() {
        let inside = got.iter().any(|g| g.contains(&a));
        let excluded = ex.iter().any(|e| e.contains(&a));
        assert_eq!(inside, !excluded, "{a}");
    }
    assert!(subtract(n, &["10.0.0.0/16".parse().unwrap()]).is_empty());
}

#[test]
fn bad_policies_are_refused_with_a_reason() {
    for (spec, want) in [
        (
            json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}}),
            "unknown selector operator",
        ),
        (
            json!({"podSelector": {}, "ingress": [{"from": [{}]}]}),
            "needs podSelector",
        ),
        (
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}),
            "endPort 80 is below",
        ),
        (
            json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "x"}}]}]}),
            "ipBlock.cidr",
        ),
    ] {
        let e = Policy::from_json(&json!({"spec": spec})).unwrap_err();
        assert!(e.contains(want), "{e}");
    }
}

#[derive(Default)]
struct FakeChains(Mutex<BTreeMap<String, Vec<String>>>);

impl Chains for FakeChains {
    fn set_chain(&self, t: &str, h: &str, c: &str, rules: &[String]) -> Result<(), NetError> {
        self.0
            .lock()
            .unwrap()
            .insert(format!("{t}/{h}/{c}"), rules.to_vec());
        Ok(())
    }
    fn delete_chain(&self, t: &str, h: &str, c: &str) -> Result<(), NetError> {
        self.0.lock().unwrap().remove(&format!("{t}/{h}/{c}"));
        Ok(())
    }
}

#[test]
fn apply_and_cleanup_own_one_forward_chain() {
    let k = FakeChains::default();
    apply(&k, &cluster(vec![]).compile(&WEB)).unwrap();
    assert_eq!(
        k.0.lock().unwrap().keys().collect::<Vec<_>>(),
        ["filter/FORWARD/KEEL-NETPOL"]
    );
    cleanup(&k).unwrap();
    assert!(k.0.lock().unwrap().is_empty());
}

fn arb_labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map("[abc]", "[xyz]", 0..3)
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(|b| json!(b)),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-zA-Z]{0,6}".prop_map(|s| json!(s)),
        Just(json!("In")),
        Just(json!("Exists")),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("matchLabels".to_string()),
                    Just("matchExpressions".to_string()),
                    Just("key".to_string()),
                    Just("operator".to_string()),
                    Just("values".to_string()),
                    Just("podSelector".to_string()),
                    Just("ingress".to_string()),
                    Just("from".to_string()),
                    Just("ports".to_string()),
                    Just("ipBlock".to_string()),
                    "[a-z]{1,4}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// The parsers take any JSON without panicking.
    #[test]
    fn parsers_never_panic(v in arb_json()) {
        let _ = Selector::from_json(&v);
        let _ = Policy::from_json(&json!({"spec": v}));
    }

    /// matchLabels selects exactly the label sets that contain it; an
    /// equivalent `In` expression selects the same.
    #[test]
    fn match_labels_is_subset_and_equals_in(want in arb_labels(), have in arb_labels()) {
        let s = Selector { labels: want.clone(), exprs: vec![] };
        let subset = want.iter().all(|(k, v)| have.get(k) == Some(v));
        prop_assert_eq!(s.matches(&have), subset);
        let exprs = want.iter().map(|(k, v)| Requirement { key: k.clone(), op: Op::In, values: vec![v.clone()] }).collect();
        prop_assert_eq!(Selector { labels: BTreeMap::new(), exprs }.matches(&have), subset);
    }

    /// NotIn is In's complement and DoesNotExist is Exists'.
    #[test]
    fn negations_complement(key in "[abc]", vals in proptest::collection::vec("[xyz]", 1..3), have in arb_labels()) {
        let r = |op, values: Vec<String>| Selector { labels: BTreeMap::new(), exprs: vec![Requirement { key: key.clone(), op, values }] };
        prop_assert_eq!(r(Op::In, vals.clone()).matches(&have), !r(Op::NotIn, vals).matches(&have));
        prop_assert_eq!(r(Op::Exists, vec![]).matches(&have), !r(Op::DoesNotExist, vec![]).matches(&have));
    }
}
