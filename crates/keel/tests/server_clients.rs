//! `keel server` with other clients: the official Python client, raw HTTPS
//! requests with bad input, and kube-rs (watcher across a restart, crash
//! durability of acknowledged creates).

#[path = "server_common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Duration;

use common::KeelServer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};

/// Debian's python3 (with python3-kubernetes), not a pyenv shim.
const PYTHON: &str = "/usr/bin/python3";

fn script(name: &str) -> String {
    format!("{}/tests/python/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// (status, body) of one raw request; `token`: "admin", "-" (none) or a token.
fn raw(
    s: &KeelServer,
    method: &str,
    path: &str,
    ctype: &str,
    body: Option<&[u8]>,
    token: &str,
) -> (u16, String) {
    let file = s.root.path().join("body");
    let arg = match body {
        Some(b) => {
            std::fs::write(&file, b).unwrap();
            file.display().to_string()
        }
        None => "-".into(),
    };
    let out = Command::new(PYTHON)
        .arg(script("raw.py"))
        .arg(&s.kubeconfig)
        .args([method, path, ctype, &arg, token])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (code, body) = text.split_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

fn python_client(s: &KeelServer) {
    let out = Command::new(PYTHON)
        .arg(script("client.py"))
        .env("KUBECONFIG", &s.kubeconfig)
        .env("HOME", s.home.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python client ok"));
}

#[test]
fn python_client_crud_and_watch() {
    python_client(&KeelServer::start(None));
}

#[test]
fn python_client_on_three_member_etcd() {
    let cluster = keel_store::testing::EtcdCluster::start(3);
    python_client(&KeelServer::start(Some(cluster.datastore_url())));
}

#[test]
fn bad_input_gets_kubernetes_errors_and_changes_nothing() {
    bad_input(&KeelServer::start(None));
}

#[test]
fn bad_input_on_three_member_etcd() {
    let cluster = keel_store::testing::EtcdCluster::start(3);
    bad_input(&KeelServer::start(Some(cluster.datastore_url())));
}

/// Every bad request gets a Kubernetes Status and leaves the store as it was.
#[allow(clippy::many_single_char_names)]
fn bad_input(s: &KeelServer) {
    let cms = "/api/v1/namespaces/default/configmaps";
    let json = "application/json";
    let (code, _) = raw(s, "POST", cms, json, Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ok","labels":{"a":"b"}},"data":{"k":"v"}}"#), "admin");
    assert_eq!(code, 201);
    // The objects, each with its resourceVersion. Not the list's own
    // revision: that is the whole store's, which the controllers' Lease
    // renewals move on (leader election is on with etcd).
    let list = |s: &KeelServer| {
        let body = raw(s, "GET", cms, json, None, "admin").1;
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["items"].clone()
    };
    let (c, _) = raw(s, "POST", cms, json, Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"frozen"},"immutable":true,"data":{"k":"v"}}"#), "admin");
    assert_eq!(c, 201);
    let before = list(s);

    let check = |code: u16, body: &str, want_code: u16, want_reason: &str| {
        assert_eq!(code, want_code, "{body}");
        let v: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|_| panic!("Status JSON: {body}"));
        assert_eq!(v["kind"], "Status", "{body}");
        assert_eq!(v["reason"], want_reason, "{body}");
        assert_eq!(v["code"], want_code, "{body}");
        v
    };
    // No token, wrong token.
    let (c, b) = raw(s, "GET", cms, json, None, "-");
    check(c, &b, 401, "Unauthorized");
    let (c, b) = raw(
        s,
        "POST",
        cms,
        json,
        Some(br#"{"metadata":{"name":"x"}}"#),
        "not-a-token",
    );
    check(c, &b, 401, "Unauthorized");
    // Malformed JSON and YAML.
    let (c, b) = raw(
        s,
        "POST",
        cms,
        json,
        Some(b"{\"metadata\": {\"name\": "),
        "admin",
    );
    check(c, &b, 400, "BadRequest");
    let (c, b) = raw(
        s,
        "POST",
        cms,
        "application/yaml",
        Some(b"metadata:\n  name: [unclosed\n"),
        "admin",
    );
    check(c, &b, 400, "BadRequest");
    let (c, b) = raw(
        s,
        "PATCH",
        &format!("{cms}/ok?fieldManager=t"),
        "application/apply-patch+yaml",
        Some(b"kind: ConfigMap\n  bad: indent\n"),
        "admin",
    );
    check(c, &b, 400, "BadRequest");
    // Wrong kind for the URL; wrong field type.
    let (c, b) = raw(
        s,
        "POST",
        cms,
        json,
        Some(br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#),
        "admin",
    );
    let v = check(c, &b, 400, "BadRequest");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("does not match the expected API version"),
        "{b}"
    );
    let (c, b) = raw(
        s,
        "POST",
        cms,
        json,
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"k":5}}"#),
        "admin",
    );
    check(c, &b, 400, "BadRequest");
    // Unknown field with strict validation.
    let (c, b) = raw(
        s,
        "POST",
        &format!("{cms}?fieldValidation=Strict"),
        json,
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"dta":{}}"#),
        "admin",
    );
    let v = check(c, &b, 400, "BadRequest");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"dta\""),
        "{b}"
    );
    // Names that are not DNS-1123: 422 with a cause naming the field.
    for name in ["Bad_Name", "-lead", "a..b", &"x".repeat(254)] {
        let body =
            format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}}}}"#);
        let (c, b) = raw(s, "POST", cms, json, Some(body.as_bytes()), "admin");
        let v = check(c, &b, 422, "Invalid");
        assert_eq!(v["details"]["causes"][0]["field"], "metadata.name", "{b}");
    }
    let (c, b) = raw(
        s,
        "POST",
        "/api/v1/namespaces",
        json,
        Some(br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"dots.not.allowed"}}"#),
        "admin",
    );
    check(c, &b, 422, "Invalid");
    // Objects over 1.5 MB.
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"k":"{}"}}}}"#,
        "x".repeat(1_600_000)
    );
    let (c, b) = raw(s, "POST", cms, json, Some(big.as_bytes()), "admin");
    check(c, &b, 413, "RequestEntityTooLarge");
    // Immutable fields: a ConfigMap marked immutable, a Deployment's selector.
    let (c, b) = raw(
        s,
        "PATCH",
        &format!("{cms}/frozen"),
        "application/merge-patch+json",
        Some(br#"{"data":{"k":"changed"}}"#),
        "admin",
    );
    let v = check(c, &b, 422, "Invalid");
    assert!(v["message"].as_str().unwrap().contains("immutable"), "{b}");
    // Optimistic concurrency: a stale resourceVersion is a 409 Conflict.
    let (c, b) = raw(s, "PUT", &format!("{cms}/ok"), json, Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ok","resourceVersion":"1"},"data":{"k":"stale"}}"#), "admin");
    check(c, &b, 409, "Conflict");
    // Not found, unknown resource, unsupported patch type.
    let (c, b) = raw(s, "GET", &format!("{cms}/nope"), json, None, "admin");
    check(c, &b, 404, "NotFound");
    let (c, b) = raw(
        s,
        "GET",
        "/api/v1/namespaces/default/widgets",
        json,
        None,
        "admin",
    );
    check(c, &b, 404, "NotFound");
    let (c, b) = raw(
        s,
        "PATCH",
        &format!("{cms}/ok"),
        "text/plain",
        Some(b"{}"),
        "admin",
    );
    check(c, &b, 415, "UnsupportedMediaType");
    // Validation of built-in fields: 422 with one cause per field.
    let pod = |spec: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p","labels":{{"app":"x"}}}},"spec":{spec}}}"#
        )
    };
    let pods = "/api/v1/namespaces/default/pods";
    for (spec, field, message) in [
        (
            r#"{"containers":[{"name":"c"}]}"#,
            "spec.containers[0].image",
            "Required value",
        ),
        (
            r#"{"containers":[{"name":"c","image":"i","ports":[{"containerPort":70000}]}]}"#,
            "spec.containers[0].ports[0].containerPort",
            "Invalid value: 70000: must be between 1 and 65535, inclusive",
        ),
        (
            r#"{"containers":[{"name":"c","image":"i"},{"name":"c","image":"j"}]}"#,
            "spec.containers[1].name",
            "Duplicate value: \"c\"",
        ),
        (
            r#"{"containers":[{"name":"c","image":"i","env":[{"name":"A=B"}]}]}"#,
            "spec.containers[0].env[0].name",
            "Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
        ),
    ] {
        let (c, b) = raw(s, "POST", pods, json, Some(pod(spec).as_bytes()), "admin");
        let v = check(c, &b, 422, "Invalid");
        let causes = v["details"]["causes"].as_array().unwrap();
        assert!(
            causes
                .iter()
                .any(|c| c["field"] == field && c["message"] == message),
            "{b}"
        );
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .starts_with("Pod \"p\" is invalid: "),
            "{b}"
        );
    }
    let (c, b) = raw(s, "POST", pods, json, Some(pod(r#"{"containers":[{"name":"c","image":"i","resources":{"limits":{"memory":"lots"}}}]}"#).as_bytes()), "admin");
    let v = check(c, &b, 400, "BadRequest");
    assert_eq!(
        v["message"],
        "Pod in version \"v1\" cannot be handled as a Pod: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        "{b}"
    );
    let (c, b) = raw(s, "POST", cms, json, Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"l","labels":{"app":"a b"}}}"#), "admin");
    let v = check(c, &b, 422, "Invalid");
    assert_eq!(v["details"]["causes"][0]["field"], "metadata.labels", "{b}");
    // After all of that, the objects are exactly as before.
    assert_eq!(list(s), before);
    // Server-side apply: a conflicting apply is a 409 with one
    // FieldManagerConflict cause per field and changes nothing; force wins.
    let ok = format!("{cms}/owned");
    let apply = |manager: &str, value: &str, force: bool| {
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"owned"}},"data":{{"k":"{value}","{manager}":"x"}}}}"#
        );
        let q = if force { "&force=true" } else { "" };
        raw(
            s,
            "PATCH",
            &format!("{ok}?fieldManager={manager}{q}"),
            "application/apply-patch+yaml",
            Some(body.as_bytes()),
            "admin",
        )
    };
    assert_eq!(apply("alice", "v", false).0, 201);
    let (c, b) = apply("bob", "w", false);
    let v = check(c, &b, 409, "Conflict");
    assert_eq!(
        v["message"], "Apply failed with 1 conflict: conflict with \"alice\": .data.k",
        "{b}"
    );
    assert_eq!(
        v["details"]["causes"],
        serde_json::json!([{"reason": "FieldManagerConflict", "message": "conflict with \"alice\"", "field": ".data.k"}]),
        "{b}"
    );
    let get_ok = || raw(s, "GET", &ok, json, None, "admin").1;
    let unchanged = get_ok();
    assert!(
        unchanged.contains(r#""k":"v""#) && !unchanged.contains("bob"),
        "{unchanged}"
    );
    // A non-apply update takes ownership (operation Update, its manager).
    let (c, b) = raw(
        s,
        "PATCH",
        &format!("{ok}?fieldManager=editor"),
        "application/merge-patch+json",
        Some(br#"{"data":{"k":"edited"}}"#),
        "admin",
    );
    assert_eq!(c, 200, "{b}");
    let (c, b) = apply("alice", "v", false);
    let v = check(c, &b, 409, "Conflict");
    assert_eq!(
        v["message"], "Apply failed with 1 conflict: conflict with \"editor\" using v1: .data.k",
        "{b}"
    );
    let (c, b) = raw(
        s,
        "PATCH",
        &format!("{ok}?fieldManager=x&force=true"),
        "application/merge-patch+json",
        Some(b"{}"),
        "admin",
    );
    check(c, &b, 422, "Invalid");
    let (c, b) = apply("bob", "w", true);
    assert_eq!(c, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["data"]["k"], "w");
    let mf = v["metadata"]["managedFields"].as_array().unwrap();
    let owner_of_k: Vec<&str> = mf
        .iter()
        .filter(|e| e["fieldsV1"]["f:data"].get("f:k").is_some())
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(owner_of_k, ["bob"], "{b}");
    let dep = br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"app":"a"}},"template":{"metadata":{"labels":{"app":"a"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}"#;
    let (c, _) = raw(
        s,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        json,
        Some(dep),
        "admin",
    );
    assert_eq!(c, 201);
    let (c, b) = raw(s, "PATCH", "/apis/apps/v1/namespaces/default/deployments/d", "application/merge-patch+json", Some(br#"{"spec":{"selector":{"matchLabels":{"app":"b"}},"template":{"metadata":{"labels":{"app":"b"}}}}}"#), "admin");
    let v = check(c, &b, 422, "Invalid");
    assert_eq!(v["details"]["causes"][0]["field"], "spec.selector", "{b}");
    let (c, b) = raw(
        s,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        json,
        Some(dep),
        "admin",
    );
    check(c, &b, 409, "AlreadyExists");
    // Streaming lists: initial events, then a bookmark marking their end.
    let (c, b) = raw(
        s,
        "GET",
        &format!(
            "{cms}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"
        ),
        json,
        None,
        "admin",
    );
    assert_eq!(c, 200);
    let events: Vec<serde_json::Value> = b
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "ADDED" && e["object"]["metadata"]["name"] == "ok"),
        "{b}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["type"], "BOOKMARK", "{b}");
    assert_eq!(
        last["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true",
        "{b}"
    );
    let (c, b) = raw(
        s,
        "GET",
        &format!("{cms}?watch=true&sendInitialEvents=true"),
        json,
        None,
        "admin",
    );
    check(c, &b, 422, "Invalid");
    // Health endpoints answer without a token.
    assert_eq!(raw(s, "GET", "/readyz", json, None, "-").0, 200);
}

async fn wait_for(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    name: &str,
) -> Result<(), tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_mins(1), async {
        loop {
            if rx.recv().await.as_deref() == Some(name) {
                return;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kube_rs_watcher_survives_server_restart() {
    let mut s = tokio::task::spawn_blocking(|| KeelServer::start(None))
        .await
        .unwrap();
    let client = s.kube_client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // As users run it: with backoff between reconnect attempts.
    let stream = kube::runtime::WatchStreamExt::default_backoff(kube::runtime::watcher(
        api.clone(),
        kube::runtime::watcher::Config::default(),
    ));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if let Ok(
                kube::runtime::watcher::Event::Apply(cm)
                | kube::runtime::watcher::Event::InitApply(cm),
            ) = ev
            {
                let _ = tx.send(cm.metadata.name.unwrap_or_default());
            }
        }
    });
    let cm = |name: &str| {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c
    };
    api.create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();
    wait_for(&mut rx, "before")
        .await
        .expect("event before restart");
    let mut s2 = tokio::task::spawn_blocking(move || {
        s.restart();
        s
    })
    .await
    .unwrap();
    let client2 = s2.kube_client().await;
    let api2: Api<ConfigMap> = Api::namespaced(client2, "default");
    api2.create(&PostParams::default(), &cm("after"))
        .await
        .unwrap();
    wait_for(&mut rx, "after")
        .await
        .expect("the watcher reconnects and sees the new object");
    // Stop the watcher before its server goes away for good.
    watcher.abort();
    tokio::task::spawn_blocking(move || s2.kill())
        .await
        .unwrap();
}

/// `kill -9` during concurrent creates: every create that was answered 201
/// is present after restart, and every stored object is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_creates_survive_kill_9() {
    let s = tokio::task::spawn_blocking(|| KeelServer::start(None))
        .await
        .unwrap();
    let client = s.kube_client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    // The issue's count: 10,000 concurrent creates, killed after ~1,500
    // (a few seconds); KEEL_KILL9_CREATES overrides it.
    let total: usize = std::env::var("KEEL_KILL9_CREATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let kill_after = total * 3 / 20;
    for w in 0..16 {
        let api = api.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..total.div_ceil(16) {
                let name = format!("cm-{w}-{i}");
                let mut c = ConfigMap::default();
                c.metadata.name = Some(name.clone());
                c.data = Some([("payload".to_string(), name.repeat(20))].into());
                match api.create(&PostParams::default(), &c).await {
                    Ok(_) => acked.lock().unwrap().push(name),
                    Err(_) => return,
                }
            }
        }));
    }
    // Let a good number of creates through, then crash the server. Bounded:
    // a server that stops answering (or writers that all gave up) fails
    // the test instead of hanging it.
    let deadline = tokio::time::Instant::now() + Duration::from_mins(2);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = acked.lock().unwrap().len();
        if n >= kill_after {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {n} of {kill_after} creates acknowledged in 2 minutes"
        );
        assert!(
            !tasks.iter().all(tokio::task::JoinHandle::is_finished),
            "every writer stopped after {n} acknowledged creates"
        );
    }
    let mut s = tokio::task::spawn_blocking(move || {
        let mut s = s;
        s.kill();
        s
    })
    .await
    .unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 600 && acked.len() < 4000,
        "{} acked",
        acked.len()
    );
    s = tokio::task::spawn_blocking(move || {
        s.restart();
        s
    })
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(s.kube_client().await, "default");
    let list = api.list(&ListParams::default()).await.unwrap();
    let present: std::collections::HashSet<String> = list
        .items
        .iter()
        .map(|c| {
            let name = c.metadata.name.clone().unwrap();
            if name.starts_with("cm-") {
                assert_eq!(
                    c.data.as_ref().unwrap()["payload"],
                    name.repeat(20),
                    "object {name} is whole"
                );
                assert!(c.metadata.uid.is_some() && c.metadata.creation_timestamp.is_some());
            }
            name
        })
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|n| !present.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged creates lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    tokio::task::spawn_blocking(move || drop(s)).await.unwrap();
}

/// A watch from a compacted resourceVersion ends with a 410 Expired event, and
/// a list continue token from before the compaction is refused with 410.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_compacted_revision_is_expired() {
    let cluster = tokio::task::spawn_blocking(|| keel_store::testing::EtcdCluster::start(1))
        .await
        .unwrap();
    let url = cluster.datastore_url();
    let s = tokio::task::spawn_blocking(move || KeelServer::start(Some(url)))
        .await
        .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(s.kube_client().await, "default");
    let mut c = ConfigMap::default();
    c.metadata.name = Some("a".into());
    let first = api.create(&PostParams::default(), &c).await.unwrap();
    let old_rv = first.metadata.resource_version.unwrap();
    for i in 0..3 {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(format!("b{i}"));
        api.create(&PostParams::default(), &c).await.unwrap();
    }
    let page = api.list(&ListParams::default().limit(1)).await.unwrap();
    let token = page.metadata.continue_.clone().expect("a continue token");
    let mut c = ConfigMap::default();
    c.metadata.name = Some("later".into());
    api.create(&PostParams::default(), &c).await.unwrap();
    let store = keel_store::EtcdStore::connect(&cluster.urls())
        .await
        .unwrap();
    let now = keel_store::Store::current_revision(&store).await.unwrap();
    keel_store::Store::compact(&store, now).await.unwrap();
    let s = std::sync::Arc::new(s);
    let s2 = s.clone();
    let (code, body) = tokio::task::spawn_blocking(move || {
        raw(&s2, "GET", &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={old_rv}&timeoutSeconds=2"), "application/json", None, "admin")
    })
    .await
    .unwrap();
    assert_eq!(code, 200);
    let ev: serde_json::Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(ev["type"], "ERROR", "{body}");
    assert_eq!(ev["object"]["code"], 410, "{body}");
    assert_eq!(ev["object"]["reason"], "Expired", "{body}");
    let err = api
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 410),
        e => panic!("expected 410, got {e}"),
    }
    tokio::task::spawn_blocking(move || drop((s, cluster)))
        .await
        .unwrap();
}

/// Node ports and cluster IPs are allocated against the stored Services,
/// also after a restart (regression: the allocator only remembered what
/// this process had handed out, so a restarted server accepted a taken
/// node port, gave a Service's port to another, and an update that left
/// `nodePort` out moved the port).
#[test]
fn a_restarted_server_never_hands_out_a_node_port_twice() {
    let mut s = KeelServer::start(None);
    let k = common::kubectls().pop().expect("a kubectl");
    let svc = |name: &str, node_port: Option<u16>, ip: Option<&str>| {
        let np = node_port
            .map(|p| format!(", \"nodePort\": {p}"))
            .unwrap_or_default();
        let ip = ip
            .map(|i| format!("\"clusterIP\": \"{i}\", "))
            .unwrap_or_default();
        format!(
            r#"{{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "{name}"}},
  "spec": {{"type": "NodePort", {ip}"selector": {{"app": "x"}}, "ports": [{{"port": 80{np}}}]}}}}"#
        )
    };
    let jp = |s: &KeelServer, name: &str, path: &str| {
        s.ok(&k, &["get", "svc", name, "-o", &format!("jsonpath={path}")])
    };
    s.ok_in(
        &k,
        &["create", "-f", "-"],
        Some(&svc("a", Some(30_111), None)),
    );
    let a_ip = jp(&s, "a", "{.spec.clusterIP}");
    s.restart();
    let err = s.fails(
        &k,
        &["create", "-f", "-"],
        Some(&svc("b", Some(30_111), None)),
    );
    assert!(
        err.contains("spec.ports[0].nodePort")
            && err.contains("provided port is already allocated"),
        "{err}"
    );
    let err = s.fails(
        &k,
        &["create", "-f", "-"],
        Some(&svc("c", None, Some(&a_ip))),
    );
    assert!(err.contains("provided IP is already allocated"), "{err}");
    // A replace that leaves the node port out keeps it.
    s.ok_in(
        &k,
        &["replace", "-f", "-"],
        Some(&svc("a", None, Some(&a_ip))),
    );
    assert_eq!(jp(&s, "a", "{.spec.ports[0].nodePort}"), "30111");
    // Fresh allocations avoid it and each other.
    let mut seen = std::collections::BTreeSet::from(["30111".to_string()]);
    for i in 0..10 {
        let name = format!("d{i}");
        s.ok_in(&k, &["create", "-f", "-"], Some(&svc(&name, None, None)));
        let port = jp(&s, &name, "{.spec.ports[0].nodePort}");
        assert!(seen.insert(port.clone()), "{name} got {port} twice");
    }
}

/// A Service that leaves `NodePort` for `ClusterIP` drops the node ports
/// and traffic policy the API server gave it, as Kubernetes >= 1.20 does
/// (regression: keel refused the update, `nodePort: Forbidden`); one that
/// names a new node port on a `ClusterIP` Service is still refused.
#[test]
fn a_service_leaving_node_port_drops_its_node_ports() {
    let s = KeelServer::start(None);
    let k = common::kubectls().pop().expect("a kubectl");
    let svc = |ty: &str| {
        format!(
            r#"{{"apiVersion": "v1", "kind": "Service", "metadata": {{"name": "np"}},
  "spec": {{"type": "{ty}", "selector": {{"app": "x"}}, "ports": [{{"port": 80}}]}}}}"#
        )
    };
    let jp = |path: &str| s.ok(&k, &["get", "svc", "np", "-o", &format!("jsonpath={path}")]);
    let helm_apply = [
        "apply",
        "--server-side",
        "--field-manager",
        "helm",
        "-f",
        "-",
    ];
    s.ok_in(&k, &helm_apply, Some(&svc("NodePort")));
    let port = jp("{.spec.ports[0].nodePort}");
    assert!(!port.is_empty() && jp("{.spec.externalTrafficPolicy}") == "Cluster");
    // server-side apply, as Helm 4 changes it
    s.ok_in(&k, &helm_apply, Some(&svc("ClusterIP")));
    assert_eq!(jp("{.spec.type}"), "ClusterIP");
    assert_eq!(jp("{.spec.ports[0].nodePort}"), "");
    assert_eq!(jp("{.spec.externalTrafficPolicy}"), "");
    // back to NodePort: a fresh node port; a merge patch naming a new one
    // on the way to ClusterIP is refused
    s.ok(
        &k,
        &[
            "patch",
            "svc",
            "np",
            "-p",
            r#"{"spec":{"type":"NodePort"}}"#,
        ],
    );
    let again = jp("{.spec.ports[0].nodePort}");
    assert!(
        !again.is_empty(),
        "no node port after going back to NodePort"
    );
    let err = s.fails(
        &k,
        &[
            "patch",
            "svc",
            "np",
            "--type",
            "json",
            "-p",
            r#"[{"op":"replace","path":"/spec/type","value":"ClusterIP"},{"op":"replace","path":"/spec/ports/0/nodePort","value":30999}]"#,
        ],
        None,
    );
    assert!(
        err.contains("spec.ports[0].nodePort") && err.contains("Forbidden"),
        "{err}"
    );
}
