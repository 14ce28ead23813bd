//! The Rollout controller against a real API (keel-api in process, Argo's
//! CRDs created at its bootstrap) with a fake kubelet marking pods Ready:
//! a canary through its steps (counts per step, pause until promoted, a
//! timed pause, Services' selectors, abort back to stable) and blue-green
//! (preview before promotion, the active Service switched on promotion,
//! abort).

use std::time::{Duration, Instant};

use keel_api::client::{ChangeKind, WatchEvent};
use keel_api::resources::{self, Resource};
use keel_api::{Loopback, Server};
use serde_json::{Value, json};

struct Running {
    api: Loopback,
    _server: Server,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(keel_api::Config {
        state_dir: dir.path().join("server"),
        listen: "127.0.0.1:0".parse().unwrap(),
        datastore: None,
    })
    .await
    .unwrap();
    let api = server.loopback();
    keel_controllers::spawn(&api);
    tokio::spawn(kubelet(api.clone()));
    Running {
        api,
        _server: server,
        _dir: dir,
    }
}

fn res(group: &str, version: &str, plural: &str) -> &'static Resource {
    resources::find(group, version, plural).unwrap()
}

async fn rollouts() -> &'static Resource {
    for _ in 0..200 {
        if let Some(r) = resources::find("argoproj.io", "v1alpha1", "rollouts") {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the Rollout CRD is not served");
}

/// Marks every new pod Running and Ready.
async fn kubelet(api: Loopback) {
    let pods = res("", "v1", "pods");
    let mut watch = api.watch(pods, 0).await.unwrap();
    while let Some(Ok(ev)) = watch.next().await {
        let WatchEvent::Change(c) = ev else { continue };
        let Some(p) = api.object(&c) else { continue };
        if c.kind != ChangeKind::Put || p["status"]["phase"] == "Running" {
            continue;
        }
        let api = api.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            let name = p["metadata"]["name"].as_str().unwrap().to_string();
            let _ = api
                .modify(
                    pods,
                    Some("default"),
                    &name,
                    Some("status"),
                    "kubelet",
                    |cur| {
                        let mut v = cur.clone();
                        v["status"]["phase"] = json!("Running");
                        v["status"]["conditions"] = json!([
                        {"type": "Ready", "status": "True", "lastTransitionTime": now}]);
                        Some(v)
                    },
                )
                .await;
        });
    }
}

async fn wait_for<F: Fn() -> Fut, Fut: Future<Output = bool>>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(api: &Loopback, r: &'static Resource, name: &str) -> Value {
    api.get(r, Some("default"), name).await.unwrap().unwrap()
}

async fn service(api: &Loopback, name: &str) {
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
    api.create(res("", "v1", "services"), svc, "test")
        .await
        .unwrap();
}

async fn selector_hash(api: &Loopback, svc: &str) -> String {
    let s = get(api, res("", "v1", "services"), svc).await;
    s["spec"]["selector"]["rollouts-pod-template-hash"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn rollout(name: &str, replicas: i64, strategy: Value) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "strategy": strategy,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "web:1"}]}}}})
}

async fn status(api: &Loopback, name: &str) -> Value {
    get(api, rollouts().await, name).await["status"].clone()
}

async fn modify(api: &Loopback, name: &str, sub: Option<&str>, f: impl Fn(&mut Value)) {
    api.modify(
        rollouts().await,
        Some("default"),
        name,
        sub,
        "test",
        |cur| {
            let mut v = cur.clone();
            f(&mut v);
            Some(v)
        },
    )
    .await
    .unwrap();
}

async fn set_image(api: &Loopback, name: &str, image: &str) {
    modify(api, name, None, |v| {
        v["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
    })
    .await;
}

/// What `kubectl argo rollouts promote` sends: the pause conditions cleared.
async fn promote(api: &Loopback, name: &str) {
    modify(api, name, Some("status"), |v| {
        v["status"]
            .as_object_mut()
            .unwrap()
            .remove("pauseConditions");
    })
    .await;
}

/// (spec, available) of the Rollout's set with `hash`.
async fn rs_counts(api: &Loopback, name: &str, hash: &str) -> (i64, i64) {
    let rs = get(
        api,
        res("apps", "v1", "replicasets"),
        &format!("{name}-{hash}"),
    )
    .await;
    (
        rs["spec"]["replicas"].as_i64().unwrap(),
        rs["status"]["availableReplicas"].as_i64().unwrap_or(0),
    )
}

async fn healthy(api: &Loopback, name: &str) -> bool {
    let st = status(api, name).await;
    st["phase"] == "Healthy" && st["stableRS"] == st["currentPodHash"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_steps_pause_promote_and_abort() {
    let k = start().await;
    let api = &k.api;
    service(api, "web-stable").await;
    service(api, "web-canary").await;
    let strategy = json!({"canary": {
        "canaryService": "web-canary", "stableService": "web-stable",
        "steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}, {"pause": {"duration": "3s"}}]}});
    api.create(rollouts().await, rollout("web", 4, strategy), "test")
        .await
        .unwrap();
    wait_for("the first revision healthy", || healthy(api, "web")).await;
    let v1 = status(api, "web").await["stableRS"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rs_counts(api, "web", &v1).await, (4, 4));
    assert_eq!(selector_hash(api, "web-stable").await, v1);

    set_image(api, "web", "web:2").await;
    wait_for("the first pause", || async {
        let st = status(api, "web").await;
        st["phase"] == "Paused" && st["currentStepIndex"] == 1
    })
    .await;
    let st = status(api, "web").await;
    let v2 = st["currentPodHash"].as_str().unwrap().to_string();
    assert_ne!(v1, v2);
    assert_eq!(st["message"], "CanaryPauseStep");
    assert_eq!(st["pauseConditions"][0]["reason"], "CanaryPauseStep");
    assert_eq!(st["controllerPause"], true);
    assert_eq!(st["stableRS"], v1.as_str());
    // 25% of 4: one canary, three stable (Argo's arithmetic).
    assert_eq!(rs_counts(api, "web", &v2).await, (1, 1));
    assert_eq!(rs_counts(api, "web", &v1).await.0, 3);
    assert_eq!(selector_hash(api, "web-canary").await, v2);
    assert_eq!(selector_hash(api, "web-stable").await, v1);
    // Still paused a while later: an indefinite pause waits for promotion.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(status(api, "web").await["currentStepIndex"], 1);

    promote(api, "web").await;
    wait_for("the timed pause at 75%", || async {
        status(api, "web").await["currentStepIndex"] == 3
    })
    .await;
    assert_eq!(rs_counts(api, "web", &v2).await, (3, 3));
    assert_eq!(rs_counts(api, "web", &v1).await.0, 1);
    wait_for("the canary promoted to stable", || healthy(api, "web")).await;
    let st = status(api, "web").await;
    assert_eq!(st["stableRS"], v2.as_str());
    assert_eq!(st["currentStepIndex"], 4);
    assert_eq!(rs_counts(api, "web", &v2).await, (4, 4));
    assert_eq!(rs_counts(api, "web", &v1).await.0, 0);
    assert_eq!(selector_hash(api, "web-stable").await, v2);

    // A third revision, aborted at its first pause.
    set_image(api, "web", "web:3").await;
    wait_for("the third revision's pause", || async {
        let st = status(api, "web").await;
        st["phase"] == "Paused" && st["currentPodHash"] != v2.as_str()
    })
    .await;
    let v3 = status(api, "web").await["currentPodHash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rs_counts(api, "web", &v3).await.0, 1);
    modify(api, "web", Some("status"), |v| {
        v["status"]["abort"] = json!(true);
    })
    .await;
    wait_for("the abort", || async {
        let st = status(api, "web").await;
        st["phase"] == "Degraded" && rs_counts(api, "web", &v3).await.0 == 0
    })
    .await;
    let st = status(api, "web").await;
    assert_eq!(
        st["message"],
        "RolloutAborted: Rollout aborted update to revision 3"
    );
    assert_eq!(st["stableRS"], v2.as_str());
    // Back to the first step, as Argo (`Step: 0/N`; a retry starts over).
    assert_eq!(st["currentStepIndex"], 0);
    wait_for("stable back to full", || async {
        rs_counts(api, "web", &v2).await == (4, 4)
    })
    .await;
    assert_eq!(selector_hash(api, "web-stable").await, v2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluegreen_preview_promote_and_abort() {
    let k = start().await;
    let api = &k.api;
    service(api, "web-active").await;
    service(api, "web-preview").await;
    let strategy = json!({"blueGreen": {
        "activeService": "web-active", "previewService": "web-preview",
        "autoPromotionEnabled": false, "scaleDownDelaySeconds": 1}});
    api.create(rollouts().await, rollout("bg", 2, strategy), "test")
        .await
        .unwrap();
    wait_for("the first revision healthy", || healthy(api, "bg")).await;
    let v1 = status(api, "bg").await["stableRS"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(selector_hash(api, "web-active").await, v1);
    assert_eq!(
        status(api, "bg").await["blueGreen"]["activeSelector"],
        v1.as_str()
    );

    set_image(api, "bg", "web:2").await;
    wait_for("the preview paused", || async {
        status(api, "bg").await["phase"] == "Paused"
    })
    .await;
    let st = status(api, "bg").await;
    let v2 = st["currentPodHash"].as_str().unwrap().to_string();
    assert_eq!(st["message"], "BlueGreenPause");
    assert_eq!(rs_counts(api, "bg", &v2).await, (2, 2));
    assert_eq!(selector_hash(api, "web-preview").await, v2);
    assert_eq!(selector_hash(api, "web-active").await, v1);
    assert_eq!(st["blueGreen"]["previewSelector"], v2.as_str());

    promote(api, "bg").await;
    wait_for("the promotion", || healthy(api, "bg")).await;
    assert_eq!(selector_hash(api, "web-active").await, v2);
    assert_eq!(
        status(api, "bg").await["blueGreen"]["activeSelector"],
        v2.as_str()
    );
    wait_for("the old set scaled down after its delay", || async {
        rs_counts(api, "bg", &v1).await.0 == 0
    })
    .await;

    set_image(api, "bg", "web:3").await;
    wait_for("the third preview", || async {
        let st = status(api, "bg").await;
        st["phase"] == "Paused" && st["currentPodHash"] != v2.as_str()
    })
    .await;
    let v3 = status(api, "bg").await["currentPodHash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(selector_hash(api, "web-preview").await, v3);
    modify(api, "bg", Some("status"), |v| {
        v["status"]["abort"] = json!(true);
    })
    .await;
    wait_for("the abort", || async {
        status(api, "bg").await["phase"] == "Degraded" && rs_counts(api, "bg", &v3).await.0 == 0
    })
    .await;
    assert_eq!(selector_hash(api, "web-preview").await, v2);
    assert_eq!(selector_hash(api, "web-active").await, v2);
}

async fn served(group: &str, version: &str, plural: &str) -> &'static Resource {
    for _ in 0..200 {
        if let Some(r) = resources::find(group, version, plural) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{group}/{plural} is not served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_weights_through_nginx_ingress_and_gateway_api_route() {
    let k = start().await;
    let api = &k.api;
    service(api, "web-stable").await;
    service(api, "web-canary").await;
    let ing = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "default",
            "annotations": {"kubernetes.io/ingress.class": "nginx"}},
        "spec": {"rules": [
            {"host": "web.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web-stable", "port": {"number": 80}}}}]}},
            {"host": "other.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "other", "port": {"number": 80}}}}]}}]}});
    let ingresses = res("networking.k8s.io", "v1", "ingresses");
    api.create(ingresses, ing, "test").await.unwrap();
    let routes = served("gateway.networking.k8s.io", "v1", "httproutes").await;
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"parentRefs": [{"name": "keel"}], "rules": [{"backendRefs": [
            {"name": "web-stable", "port": 80, "weight": 100},
            {"name": "web-canary", "port": 80, "weight": 0}]}]}});
    api.create(routes, route, "test").await.unwrap();
    let strategy = json!({"canary": {
        "canaryService": "web-canary", "stableService": "web-stable", "scaleDownDelaySeconds": 1,
        "trafficRouting": {"nginx": {"stableIngress": "web"},
            "plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "web"}}},
        "steps": [{"setWeight": 25}, {"pause": {}}]}});
    api.create(rollouts().await, rollout("tr", 2, strategy), "test")
        .await
        .unwrap();
    wait_for("the first revision healthy", || healthy(api, "tr")).await;
    let weights = || async {
        let ing = get(api, ingresses, "tr-web-canary").await;
        let a = &ing["metadata"]["annotations"];
        let route = get(api, routes, "web").await;
        let refs = &route["spec"]["rules"][0]["backendRefs"];
        (
            a["nginx.ingress.kubernetes.io/canary-weight"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            refs[0]["weight"].as_i64().unwrap_or(-1),
            refs[1]["weight"].as_i64().unwrap_or(-1),
        )
    };
    assert_eq!(weights().await, ("0".into(), 100, 0));

    set_image(api, "tr", "web:2").await;
    wait_for("the pause at 25%", || async {
        status(api, "tr").await["phase"] == "Paused"
    })
    .await;
    assert_eq!(weights().await, ("25".into(), 75, 25));
    let st = status(api, "tr").await;
    let v2 = st["currentPodHash"].as_str().unwrap().to_string();
    assert_eq!(st["canary"]["weights"]["canary"]["weight"], 25);
    assert_eq!(st["canary"]["weights"]["stable"]["weight"], 75);
    assert_eq!(
        st["canary"]["weights"]["canary"]["podTemplateHash"],
        v2.as_str()
    );
    // Routed: stable stays full, the canary gets ceil(25% of 2).
    assert_eq!(rs_counts(api, "tr", &v2).await, (1, 1));
    let ing = get(api, ingresses, "tr-web-canary").await;
    assert_eq!(
        ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary"],
        "true"
    );
    assert_eq!(
        ing["metadata"]["annotations"]["kubernetes.io/ingress.class"],
        "nginx"
    );
    assert_eq!(
        ing["spec"]["rules"].as_array().unwrap().len(),
        1,
        "only rules using the stable Service"
    );
    assert_eq!(
        ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "web-canary"
    );

    modify(api, "tr", Some("status"), |v| {
        v["status"]["abort"] = json!(true);
    })
    .await;
    wait_for("all traffic back to stable", || async {
        weights().await == ("0".into(), 100, 0)
    })
    .await;
    wait_for("Degraded", || async {
        status(api, "tr").await["phase"] == "Degraded"
    })
    .await;

    // Retry (abort cleared), then promote: 100% canary, then it is stable.
    modify(api, "tr", Some("status"), |v| {
        v["status"]["abort"] = json!(false);
    })
    .await;
    wait_for("paused again at 25%", || async {
        status(api, "tr").await["phase"] == "Paused" && weights().await.0 == "25"
    })
    .await;
    promote(api, "tr").await;
    wait_for("promoted", || healthy(api, "tr")).await;
    assert_eq!(weights().await, ("0".into(), 100, 0));
    assert_eq!(selector_hash(api, "web-stable").await, v2);
    assert_eq!(rs_counts(api, "tr", &v2).await, (2, 2));
}

/// Plays the analysis controller's part: sets a run's phase.
async fn finish_run(api: &Loopback, name: &str, phase: &str, message: &str) {
    let runs = served("argoproj.io", "v1alpha1", "analysisruns").await;
    api.modify(runs, Some("default"), name, None, "test", |cur| {
        let mut v = cur.clone();
        v["status"] = json!({"phase": phase, "message": message});
        Some(v)
    })
    .await
    .unwrap();
}

/// Fails the run `run` of revision 3 (`hash`) of Rollout `ro`; waits for
/// the abort (Degraded, the set scaled to 0) and checks Argo's message.
/// The status.
async fn fail_run_and_abort(api: &Loopback, ro: &str, run: &str, hash: &str) -> Value {
    let failure = "Metric \"rate\" assessed Failed due to failed (1) > failureLimit (0)";
    finish_run(api, run, "Failed", failure).await;
    wait_for("the abort", || async {
        status(api, ro).await["phase"] == "Degraded" && rs_counts(api, ro, hash).await.0 == 0
    })
    .await;
    let st = status(api, ro).await;
    assert_eq!(
        st["message"],
        format!("RolloutAborted: Rollout aborted update to revision 3: {failure}")
    );
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_analysis_step_continues_on_success_and_aborts_on_failure() {
    let k = start().await;
    let api = &k.api;
    // initialDelay keeps a real analysis controller from measuring: the
    // test decides each run's phase.
    let metric = |name: &str| {
        json!({"name": name, "initialDelay": "1h", "successCondition": "result == 1",
            "provider": {"web": {"url": "http://127.0.0.1:9/{{args.svc}}"}}})
    };
    let tpl = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "checks", "namespace": "default"},
        "spec": {"args": [{"name": "hash"}, {"name": "svc"}, {"name": "image"}, {"name": "limit", "value": "5"}],
            "metrics": [metric("rate")]}});
    let ctpl = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "ClusterAnalysisTemplate",
        "metadata": {"name": "global"},
        "spec": {"args": [{"name": "svc"}], "metrics": [metric("latency")]}});
    api.create(
        served("argoproj.io", "v1alpha1", "analysistemplates").await,
        tpl,
        "test",
    )
    .await
    .unwrap();
    api.create(
        served("argoproj.io", "v1alpha1", "clusteranalysistemplates").await,
        ctpl,
        "test",
    )
    .await
    .unwrap();
    let strategy = json!({"canary": {"steps": [
        {"setWeight": 50},
        {"analysis": {
            "templates": [{"templateName": "checks"}, {"templateName": "global", "clusterScope": true}],
            "args": [
                {"name": "hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
                {"name": "svc", "value": "web-canary"},
                {"name": "image", "valueFrom": {"fieldRef": {"fieldPath": "spec.template.spec.containers[0].image"}}}]}},
        {"setWeight": 75}]}});
    api.create(rollouts().await, rollout("an", 2, strategy), "test")
        .await
        .unwrap();
    wait_for("the first revision healthy", || healthy(api, "an")).await;

    set_image(api, "an", "web:2").await;
    let runs = served("argoproj.io", "v1alpha1", "analysisruns").await;
    let v2 = || async {
        status(api, "an").await["currentPodHash"]
            .as_str()
            .unwrap()
            .to_string()
    };
    wait_for("the step's AnalysisRun", || async {
        let name = format!("an-{}-2-1", v2().await);
        api.get(runs, Some("default"), &name)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let hash = v2().await;
    let run = get(api, runs, &format!("an-{hash}-2-1")).await;
    assert_eq!(run["metadata"]["labels"]["rollout-type"], "Step");
    assert_eq!(run["metadata"]["labels"]["step-index"], "1");
    assert_eq!(
        run["metadata"]["labels"]["rollouts-pod-template-hash"],
        hash.as_str()
    );
    assert_eq!(run["metadata"]["labels"]["app"], "web");
    assert_eq!(
        run["metadata"]["annotations"]["rollout.argoproj.io/revision"],
        "2"
    );
    assert_eq!(run["metadata"]["ownerReferences"][0]["kind"], "Rollout");
    assert_eq!(run["metadata"]["ownerReferences"][0]["controller"], true);
    let metrics: Vec<&str> = run["spec"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(metrics, ["rate", "latency"]);
    assert_eq!(
        run["spec"]["args"],
        json!([{"name": "hash", "value": hash}, {"name": "svc", "value": "web-canary"},
            {"name": "image", "value": "web:2"}, {"name": "limit", "value": "5"}])
    );
    // Waiting on the run: the step does not advance.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let st = status(api, "an").await;
    assert_eq!(st["currentStepIndex"], 1);
    assert_eq!(
        st["canary"]["currentStepAnalysisRunStatus"]["name"],
        format!("an-{hash}-2-1")
    );

    finish_run(api, &format!("an-{hash}-2-1"), "Successful", "").await;
    wait_for("the rollout past its analysis", || healthy(api, "an")).await;
    assert_eq!(status(api, "an").await["stableRS"], hash.as_str());

    set_image(api, "an", "web:3").await;
    wait_for("the third revision's run", || async {
        let h = v2().await;
        h != hash
            && api
                .get(runs, Some("default"), &format!("an-{h}-3-1"))
                .await
                .unwrap()
                .is_some()
    })
    .await;
    let v3 = v2().await;
    let st = fail_run_and_abort(api, "an", &format!("an-{v3}-3-1"), &v3).await;
    assert_eq!(st["abort"], true);
    wait_for("stable back to full", || async {
        rs_counts(api, "an", &hash).await == (2, 2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_ref_takes_the_deployments_template_and_scales_it_down_on_success() {
    let k = start().await;
    let api = &k.api;
    let deployments = res("apps", "v1", "deployments");
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "legacy", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "legacy"}},
            "template": {"metadata": {"labels": {"app": "legacy"}},
                "spec": {"containers": [{"name": "c", "image": "legacy:7"}]}}}});
    api.create(deployments, dep, "test").await.unwrap();
    wait_for("the Deployment up", || async {
        get(api, deployments, "legacy").await["status"]["availableReplicas"] == 2
    })
    .await;
    let ro = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "migrated", "namespace": "default"},
        "spec": {"replicas": 2, "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
            "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "legacy",
                "scaleDown": "onsuccess"}}});
    api.create(rollouts().await, ro, "test").await.unwrap();
    wait_for("the Rollout healthy", || healthy(api, "migrated")).await;
    let hash = status(api, "migrated").await["stableRS"]
        .as_str()
        .unwrap()
        .to_string();
    let rs = get(
        api,
        res("apps", "v1", "replicasets"),
        &format!("migrated-{hash}"),
    )
    .await;
    assert_eq!(
        rs["spec"]["template"]["spec"]["containers"][0]["image"],
        "legacy:7"
    );
    assert_eq!(rs["spec"]["selector"]["matchLabels"]["app"], "legacy");
    assert_eq!(rs_counts(api, "migrated", &hash).await, (2, 2));
    wait_for("the Deployment scaled to 0", || async {
        get(api, deployments, "legacy").await["spec"]["replicas"] == 0
    })
    .await;
}

/// An invalid spec is reported as Argo does (condition `InvalidSpec`, phase
/// Degraded) and nothing is created; fixing it lets the rollout proceed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_is_degraded_and_creates_nothing() {
    let k = start().await;
    let api = &k.api;
    let strategy =
        json!({"canary": {"maxSurge": 0, "maxUnavailable": 0, "steps": [{"setWeight": 50}]}});
    api.create(rollouts().await, rollout("bad", 2, strategy), "test")
        .await
        .unwrap();
    wait_for("the InvalidSpec condition", || async {
        status(api, "bad").await["phase"] == "Degraded"
    })
    .await;
    let st = status(api, "bad").await;
    let want = "The Rollout \"bad\" is invalid: spec.strategy.maxSurge: Invalid value: 0: \
                MaxSurge and MaxUnavailable both can not be zero";
    let cond = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "InvalidSpec")
        .unwrap();
    assert_eq!(cond["message"], want, "{st}");
    assert_eq!(cond["reason"], "InvalidSpec");
    assert_eq!(st["message"], format!("InvalidSpec: {want}"));
    let (rss, _) = api
        .list(res("apps", "v1", "replicasets"), Some("default"))
        .await
        .unwrap();
    assert!(rss.is_empty(), "{rss:?}");
    modify(api, "bad", None, |v| {
        v["spec"]["strategy"]["canary"]["maxSurge"] = json!(1);
    })
    .await;
    wait_for("the fixed rollout healthy", || healthy(api, "bad")).await;
    let st = status(api, "bad").await;
    assert!(
        !st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "InvalidSpec"),
        "{st}"
    );
}

/// An `AnalysisTemplate` `checks` whose only metric waits an hour before
/// measuring: the test decides each run's phase (`finish_run`).
async fn held_template(api: &Loopback) {
    let tpl = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "checks", "namespace": "default"},
        "spec": {"metrics": [{"name": "rate", "initialDelay": "1h", "successCondition": "result == 1",
            "provider": {"web": {"url": "http://127.0.0.1:9/"}}}]}});
    api.create(
        served("argoproj.io", "v1alpha1", "analysistemplates").await,
        tpl,
        "test",
    )
    .await
    .unwrap();
}

async fn run_exists(api: &Loopback, name: &str) -> bool {
    let runs = served("argoproj.io", "v1alpha1", "analysisruns").await;
    api.get(runs, Some("default"), name)
        .await
        .unwrap()
        .is_some()
}

async fn current_hash(api: &Loopback, name: &str) -> String {
    status(api, name).await["currentPodHash"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Waits for the Rollout's next template (other than `prev`) and the run
/// `<rollout>-<hash>-<revision>-<stage>`; returns the new hash.
async fn next_run(api: &Loopback, ro: &str, prev: &str, revision: u32, stage: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let h = current_hash(api, ro).await;
        if h != prev && run_exists(api, &format!("{ro}-{h}-{revision}-{stage}")).await {
            return h;
        }
        if Instant::now() > deadline {
            let runs = served("argoproj.io", "v1alpha1", "analysisruns").await;
            let (all, _) = api.list(runs, Some("default")).await.unwrap();
            let names: Vec<&Value> = all.iter().map(|r| &r["metadata"]["name"]).collect();
            panic!(
                "no {stage}-promotion run of revision {revision}: {}\nruns: {names:?}",
                status(api, ro).await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluegreen_pre_promotion_analysis_gates_the_switch_and_a_failure_aborts() {
    let k = start().await;
    let api = &k.api;
    held_template(api).await;
    service(api, "web-active").await;
    service(api, "web-preview").await;
    let strategy = json!({"blueGreen": {
        "activeService": "web-active", "previewService": "web-preview",
        "scaleDownDelaySeconds": 1,
        "prePromotionAnalysis": {"templates": [{"templateName": "checks"}]}}});
    api.create(rollouts().await, rollout("pre", 2, strategy), "test")
        .await
        .unwrap();
    wait_for("the first revision healthy", || healthy(api, "pre")).await;
    let v1 = current_hash(api, "pre").await;
    // The first revision is active at once: no analysis.
    assert!(!run_exists(api, &format!("pre-{v1}-1-pre")).await);

    set_image(api, "pre", "web:2").await;
    let v2 = next_run(api, "pre", &v1, 2, "pre").await;
    let run = get(
        api,
        served("argoproj.io", "v1alpha1", "analysisruns").await,
        &format!("pre-{v2}-2-pre"),
    )
    .await;
    assert_eq!(run["metadata"]["labels"]["rollout-type"], "PrePromotion");
    assert_eq!(
        run["metadata"]["labels"]["rollouts-pod-template-hash"],
        v2.as_str()
    );
    // autoPromotionEnabled (the default) waits for the analysis.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(selector_hash(api, "web-active").await, v1);
    assert_eq!(selector_hash(api, "web-preview").await, v2);
    let st = status(api, "pre").await;
    assert_eq!(
        st["blueGreen"]["prePromotionAnalysisRunStatus"]["name"],
        format!("pre-{v2}-2-pre")
    );
    assert_eq!(st["stableRS"], v1.as_str());

    finish_run(api, &format!("pre-{v2}-2-pre"), "Successful", "").await;
    wait_for("the promotion after the analysis", || healthy(api, "pre")).await;
    assert_eq!(selector_hash(api, "web-active").await, v2);
    assert_eq!(status(api, "pre").await["stableRS"], v2.as_str());

    set_image(api, "pre", "web:3").await;
    let v3 = next_run(api, "pre", &v2, 3, "pre").await;
    let st = fail_run_and_abort(api, "pre", &format!("pre-{v3}-3-pre"), &v3).await;
    assert_eq!(st["stableRS"], v2.as_str());
    assert_eq!(selector_hash(api, "web-active").await, v2);
    assert_eq!(selector_hash(api, "web-preview").await, v2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluegreen_post_promotion_analysis_keeps_the_old_set_and_a_failure_switches_back() {
    let k = start().await;
    let api = &k.api;
    held_template(api).await;
    service(api, "web-active").await;
    let strategy = json!({"blueGreen": {
        "activeService": "web-active", "scaleDownDelaySeconds": 1,
        "postPromotionAnalysis": {"templates": [{"templateName": "checks"}]}}});
    api.create(rollouts().await, rollout("post", 2, strategy), "test")
        .await
        .unwrap();
    wait_for("the first revision healthy", || healthy(api, "post")).await;
    let v1 = current_hash(api, "post").await;

    set_image(api, "post", "web:2").await;
    let v2 = next_run(api, "post", &v1, 2, "post").await;
    // Switched first, then analysed: v1 stays stable and keeps its pods
    // past scaleDownDelaySeconds while the analysis decides.
    assert_eq!(selector_hash(api, "web-active").await, v2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let st = status(api, "post").await;
    assert_eq!(st["stableRS"], v1.as_str());
    assert_eq!(st["phase"], "Progressing");
    assert_eq!(
        st["blueGreen"]["postPromotionAnalysisRunStatus"]["name"],
        format!("post-{v2}-2-post")
    );
    assert_eq!(rs_counts(api, "post", &v1).await, (2, 2));

    finish_run(api, &format!("post-{v2}-2-post"), "Successful", "").await;
    wait_for("v2 stable", || healthy(api, "post")).await;
    wait_for("v1 scaled down after its delay", || async {
        rs_counts(api, "post", &v1).await.0 == 0
    })
    .await;

    set_image(api, "post", "web:3").await;
    let v3 = next_run(api, "post", &v2, 3, "post").await;
    assert_eq!(selector_hash(api, "web-active").await, v3);
    let failure = "Metric \"rate\" assessed Failed due to failed (1) > failureLimit (0)";
    finish_run(api, &format!("post-{v3}-3-post"), "Failed", failure).await;
    wait_for("the active Service back on v2", || async {
        selector_hash(api, "web-active").await == v2
    })
    .await;
    wait_for("v3 scaled down", || async {
        rs_counts(api, "post", &v3).await.0 == 0
    })
    .await;
    let st = status(api, "post").await;
    assert_eq!(st["phase"], "Degraded");
    assert_eq!(
        st["message"],
        format!("RolloutAborted: Rollout aborted update to revision 3: {failure}")
    );
    assert_eq!(st["stableRS"], v2.as_str());
    assert_eq!(st["blueGreen"]["activeSelector"], v2.as_str());
    assert_eq!(rs_counts(api, "post", &v2).await, (2, 2));
}

/// What `keel rollout undo` (and `kubectl argo rollouts undo`) sends: the
/// template of the set of `revision`, without its hash label.
async fn undo_to(api: &Loopback, ro: &str, revision: &str) {
    let (rss, _) = api
        .list(res("apps", "v1", "replicasets"), Some("default"))
        .await
        .unwrap();
    let rs = rss
        .iter()
        .find(|rs| {
            rs["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{ro}-"))
                && rs["metadata"]["annotations"]["rollout.argoproj.io/revision"] == revision
        })
        .unwrap_or_else(|| panic!("no revision {revision} in {rss:?}"));
    let mut t = rs["spec"]["template"].clone();
    t["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("rollouts-pod-template-hash");
    modify(api, ro, None, |v| v["spec"]["template"] = t.clone()).await;
}

async fn rs_annotation(api: &Loopback, ro: &str, hash: &str, key: &str) -> String {
    let rs = get(
        api,
        res("apps", "v1", "replicasets"),
        &format!("{ro}-{hash}"),
    )
    .await;
    rs["metadata"]["annotations"][key]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_reuses_the_old_set_and_skips_steps_within_the_rollback_window() {
    let k = start().await;
    let api = &k.api;
    let mut ro = rollout(
        "undo",
        2,
        json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}),
    );
    ro["spec"]["rollbackWindow"] = json!({"revisions": 1});
    api.create(rollouts().await, ro, "test").await.unwrap();
    wait_for("the first revision healthy", || healthy(api, "undo")).await;
    let v1 = current_hash(api, "undo").await;
    set_image(api, "undo", "web:2").await;
    wait_for("the pause", || async {
        status(api, "undo").await["phase"] == "Paused"
    })
    .await;
    let v2 = current_hash(api, "undo").await;
    promote(api, "undo").await;
    wait_for("v2 stable", || healthy(api, "undo")).await;
    assert_eq!(status(api, "undo").await["stableRS"], v2.as_str());

    // Back to revision 1: within the window (no set between it and the
    // stable one), so no steps: straight to v1, on its own old set.
    undo_to(api, "undo", "1").await;
    wait_for("v1 stable again", || async {
        healthy(api, "undo").await && current_hash(api, "undo").await == v1
    })
    .await;
    let st = status(api, "undo").await;
    assert_eq!(st["stableRS"], v1.as_str());
    assert_eq!(st["currentStepIndex"], 2);
    let rev = "rollout.argoproj.io/revision";
    assert_eq!(rs_annotation(api, "undo", &v1, rev).await, "3");
    assert_eq!(
        rs_annotation(api, "undo", &v1, "rollout.argoproj.io/revision-history").await,
        "1"
    );
    assert_eq!(rs_counts(api, "undo", &v1).await, (2, 2));
    let (rss, _) = api
        .list(res("apps", "v1", "replicasets"), Some("default"))
        .await
        .unwrap();
    assert_eq!(rss.len(), 2, "no new set for an undo: {rss:?}");

    // Undo again: revision 2 (v2) is newer than the stable v1, so this is
    // no rollback and its steps run.
    undo_to(api, "undo", "2").await;
    wait_for("v2's first pause", || async {
        let st = status(api, "undo").await;
        st["phase"] == "Paused" && st["currentPodHash"] == v2.as_str()
    })
    .await;
    assert_eq!(status(api, "undo").await["currentStepIndex"], 1);
    assert_eq!(rs_annotation(api, "undo", &v2, rev).await, "4");
    assert_eq!(rs_counts(api, "undo", &v2).await.0, 1);
}

async fn pods_of(api: &Loopback) -> Vec<Value> {
    let (pods, _) = api
        .list(res("", "v1", "pods"), Some("default"))
        .await
        .unwrap();
    pods.into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_at_replaces_older_pods_one_at_a_time() {
    let k = start().await;
    let api = &k.api;
    let strategy = json!({"canary": {"steps": [{"setWeight": 50}]}});
    api.create(rollouts().await, rollout("rs", 3, strategy), "test")
        .await
        .unwrap();
    wait_for("healthy", || healthy(api, "rs")).await;
    let hash = current_hash(api, "rs").await;
    let before: Vec<String> = pods_of(api)
        .await
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(before.len(), 3);
    // Whole seconds, as the API has them: the next second but one is after
    // every pod's creation.
    let at = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 2).unwrap();
    let at_s = at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    modify(api, "rs", None, |v| v["spec"]["restartAt"] = json!(at_s)).await;
    // Watch the pods while the restart runs: never fewer than two of the
    // three Ready (one at a time).
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (api, done) = (api.clone(), done.clone());
        tokio::spawn(async move {
            let mut least = usize::MAX;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let ready = pods_of(&api)
                    .await
                    .iter()
                    .filter(|p| p["status"]["conditions"][0]["status"] == "True")
                    .count();
                least = least.min(ready);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            least
        })
    };
    wait_for("every pod replaced and restartedAt recorded", || async {
        status(api, "rs").await["restartedAt"] == at_s.as_str()
    })
    .await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(watcher.await.unwrap(), 2, "one pod at a time");
    let after = pods_of(api).await;
    assert_eq!(after.len(), 3);
    for p in &after {
        let name = p["metadata"]["name"].as_str().unwrap();
        assert!(!before.iter().any(|b| b == name), "{name} not restarted");
        let created: jiff::Timestamp = p["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(created >= at, "{name} created {created}, before {at}");
    }
    assert_eq!(current_hash(api, "rs").await, hash, "same template");
    wait_for("healthy after the restart", || healthy(api, "rs")).await;
    assert_eq!(rs_counts(api, "rs", &hash).await, (3, 3));
}

/// One observed change, in the store's order: a set's spec and available
/// pods, a Service's hash, the canary Ingress's weight.
#[derive(Debug, Clone)]
enum Seen {
    Set {
        hash: String,
        spec: i64,
        available: i64,
    },
    Service {
        name: String,
        hash: String,
    },
    Weight(i64),
}

type Log = std::sync::Arc<std::sync::Mutex<Vec<Seen>>>;

/// Records every change of Rollout `ro`'s sets, Services and canary
/// Ingress (`<ro>-web-canary`), in order.
fn record(api: &Loopback, ro: &str) -> Log {
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (api, ro, out) = (api.clone(), ro.to_string(), log.clone());
    tokio::spawn(async move {
        let mut watch = api.watch_all(0).await.unwrap();
        while let Some(Ok(ev)) = watch.next().await {
            let WatchEvent::Change(c) = ev else { continue };
            let Some(o) = api.object(&c) else { continue };
            if c.kind != ChangeKind::Put {
                continue;
            }
            let name = o["metadata"]["name"].as_str().unwrap_or("");
            let hash = |v: &Value| v.as_str().unwrap_or("").to_string();
            let seen = match o["kind"].as_str() {
                Some("ReplicaSet") if name.starts_with(&format!("{ro}-")) => Seen::Set {
                    hash: hash(&o["metadata"]["labels"]["rollouts-pod-template-hash"]),
                    spec: o["spec"]["replicas"].as_i64().unwrap_or(0),
                    available: o["status"]["availableReplicas"].as_i64().unwrap_or(0),
                },
                Some("Service") => Seen::Service {
                    name: name.to_string(),
                    hash: hash(&o["spec"]["selector"]["rollouts-pod-template-hash"]),
                },
                Some("Ingress") if name == format!("{ro}-web-canary") => Seen::Weight(
                    o["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"]
                        .as_str()
                        .and_then(|w| w.parse().ok())
                        .unwrap_or(-1),
                ),
                _ => continue,
            };
            out.lock().unwrap().push(seen);
        }
    });
    log
}

/// The successive distinct values of `f` over the log.
fn steps_of(log: &[Seen], f: impl Fn(&Seen) -> Option<i64>) -> Vec<i64> {
    let mut out: Vec<i64> = Vec::new();
    for v in log.iter().filter_map(f) {
        if out.last() != Some(&v) {
            out.push(v);
        }
    }
    out
}

fn spec_of(hash: &str) -> impl Fn(&Seen) -> Option<i64> + '_ {
    move |s| match s {
        Seen::Set { hash: h, spec, .. } if h == hash => Some(*spec),
        _ => None,
    }
}

/// Through the whole log: at every moment each side of the router's
/// split (the canary and stable Services' sets) had the pods available
/// for its share of `replicas`.
fn weights_always_backed(log: &[Seen], replicas: i64) {
    let mut available = std::collections::HashMap::new();
    let (mut canary, mut stable) = (String::new(), String::new());
    let mut weight = None;
    for (i, s) in log.iter().enumerate() {
        match s {
            Seen::Set {
                hash, available: a, ..
            } => {
                available.insert(hash.clone(), *a);
            }
            Seen::Service { name, hash } if name == "web-canary" => canary.clone_from(hash),
            Seen::Service { name, hash } if name == "web-stable" => stable.clone_from(hash),
            Seen::Service { .. } => {}
            Seen::Weight(w) => weight = Some(*w),
        }
        let Some(w) = weight else { continue };
        for (hash, share) in [(&canary, w), (&stable, 100 - w)] {
            if hash.is_empty() {
                continue;
            }
            let have = available.get(hash).copied().unwrap_or(0);
            assert!(
                have * 100 >= share * replicas,
                "{share}% on {hash} with {have} pods available at {i}: {:#?}",
                &log[i.saturating_sub(8)..=i]
            );
        }
    }
}
/// The stable and canary Services and the stable Ingress `web` that
/// `trafficRouting.nginx` copies.
async fn routed_services(api: &Loopback) {
    service(api, "web-stable").await;
    service(api, "web-canary").await;
    let ing = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"rules": [{"host": "web.example", "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web-stable", "port": {"number": 80}}}}]}}]}});
    api.create(res("networking.k8s.io", "v1", "ingresses"), ing, "test")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_stable_scale_shrinks_stable_with_its_weight_and_grows_it_back_on_abort() {
    let k = start().await;
    let api = &k.api;
    routed_services(api).await;
    let log = record(api, "dss");
    let strategy = json!({"canary": {
        "canaryService": "web-canary", "stableService": "web-stable", "dynamicStableScale": true,
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}]}});
    api.create(rollouts().await, rollout("dss", 4, strategy), "test")
        .await
        .unwrap();
    wait_for("the first revision healthy", || healthy(api, "dss")).await;
    let v1 = current_hash(api, "dss").await;
    let paused_at = |step: i64| async move {
        let st = status(api, "dss").await;
        st["phase"] == "Paused" && st["currentStepIndex"] == step
    };
    let weights = || async {
        let st = status(api, "dss").await;
        let w = &st["canary"]["weights"];
        (
            w["canary"]["weight"].as_i64().unwrap_or(-1),
            w["stable"]["weight"].as_i64().unwrap_or(-1),
        )
    };

    // 25%: stable gives up one of its four pods once traffic left it.
    set_image(api, "dss", "web:2").await;
    wait_for("the pause at 25%", || paused_at(1)).await;
    let v2 = current_hash(api, "dss").await;
    assert_eq!(weights().await, (25, 75));
    wait_for("stable at 3", || async {
        rs_counts(api, "dss", &v1).await.0 == 3
    })
    .await;
    assert_eq!(rs_counts(api, "dss", &v2).await, (1, 1));
    // 75%: three canary pods, one stable.
    promote(api, "dss").await;
    wait_for("the pause at 75%", || paused_at(3)).await;
    assert_eq!(weights().await, (75, 25));
    wait_for("stable at 1", || async {
        rs_counts(api, "dss", &v1).await.0 == 1
    })
    .await;
    assert_eq!(rs_counts(api, "dss", &v2).await, (3, 3));
    // Promoted: the old stable goes at once (no scaleDownDelaySeconds).
    promote(api, "dss").await;
    wait_for("v2 healthy", || healthy(api, "dss")).await;
    wait_for("v1 at 0", || async {
        rs_counts(api, "dss", &v1).await.0 == 0
    })
    .await;
    assert_eq!(rs_counts(api, "dss", &v2).await, (4, 4));
    let at_v2 = log.lock().unwrap().len();

    // v3 aborted at 75%: stable grows back before traffic returns to it,
    // the canary shrinks only after its traffic left.
    set_image(api, "dss", "web:3").await;
    wait_for("v3's pause at 25%", || async {
        paused_at(1).await && current_hash(api, "dss").await != v2
    })
    .await;
    let v3 = current_hash(api, "dss").await;
    promote(api, "dss").await;
    wait_for("v3's pause at 75%", || paused_at(3)).await;
    wait_for("v2 at 1", || async {
        rs_counts(api, "dss", &v2).await.0 == 1
    })
    .await;
    modify(api, "dss", Some("status"), |v| {
        v["status"]["abort"] = json!(true);
    })
    .await;
    wait_for("all traffic back on a full stable", || async {
        weights().await == (0, 100)
            && rs_counts(api, "dss", &v2).await == (4, 4)
            && rs_counts(api, "dss", &v3).await.0 == 0
    })
    .await;
    let st = status(api, "dss").await;
    assert_eq!(st["phase"], "Degraded", "{st}");
    let log = log.lock().unwrap().clone();
    let weight = |s: &Seen| match s {
        Seen::Weight(w) => Some(*w),
        _ => None,
    };
    // Each set's successive sizes, each weight the router got.
    assert_eq!(steps_of(&log, spec_of(&v1)), [0, 4, 3, 1, 0]);
    assert_eq!(steps_of(&log, spec_of(&v2)), [0, 1, 3, 4, 3, 1, 3, 4]);
    assert_eq!(steps_of(&log, spec_of(&v3)), [0, 1, 3, 1, 0]);
    assert_eq!(steps_of(&log[..at_v2], weight), [0, 25, 75, 100, 0]);
    assert_eq!(steps_of(&log[at_v2..], weight), [25, 75, 25, 0]);
    weights_always_backed(&log, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_scale_down_delay_keeps_the_routed_canary_then_scales_it_down() {
    let k = start().await;
    let api = &k.api;
    routed_services(api).await;
    let ingresses = res("networking.k8s.io", "v1", "ingresses");
    let strategy = json!({"canary": {
        "canaryService": "web-canary", "stableService": "web-stable",
        "abortScaleDownDelaySeconds": 3,
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "steps": [{"setCanaryScale": {"replicas": 1}}, {"setWeight": 50}, {"pause": {}}]}});
    api.create(rollouts().await, rollout("asd", 2, strategy), "test")
        .await
        .unwrap();
    wait_for("the first revision healthy", || healthy(api, "asd")).await;
    let v1 = current_hash(api, "asd").await;
    set_image(api, "asd", "web:2").await;
    let paused = || async {
        let st = status(api, "asd").await;
        st["phase"] == "Paused" && st["currentStepIndex"] == 2
    };
    wait_for("the pause at 50%", paused).await;
    let v2 = current_hash(api, "asd").await;
    assert_eq!(rs_counts(api, "asd", &v2).await, (1, 1));
    let weight = || async {
        get(api, ingresses, "asd-web-canary").await["metadata"]["annotations"]
            ["nginx.ingress.kubernetes.io/canary-weight"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(weight().await, "50");
    let abort = |on: bool| async move {
        modify(api, "asd", Some("status"), |v| {
            v["status"]["abort"] = json!(on);
        })
        .await;
    };

    // Aborted: traffic leaves the canary at once, its pods stay until the
    // deadline (3 s, whole seconds as Argo writes it) and go then.
    let t0 = jiff::Timestamp::now();
    abort(true).await;
    wait_for("Degraded with all traffic on stable", || async {
        status(api, "asd").await["phase"] == "Degraded" && weight().await == "0"
    })
    .await;
    wait_for("the deadline", || async {
        !rs_annotation(api, "asd", &v2, "scale-down-deadline")
            .await
            .is_empty()
    })
    .await;
    let deadline: jiff::Timestamp = rs_annotation(api, "asd", &v2, "scale-down-deadline")
        .await
        .parse()
        .unwrap();
    let ahead = (deadline - t0).get_seconds();
    assert!(
        (2..=4).contains(&ahead),
        "deadline {deadline}, abort at {t0}"
    );
    assert_eq!(
        rs_counts(api, "asd", &v2).await.0,
        1,
        "kept until the deadline"
    );
    assert_eq!(
        selector_hash(api, "web-canary").await,
        v1,
        "canary Service on stable"
    );
    while jiff::Timestamp::now() < deadline - jiff::SignedDuration::from_millis(300) {
        assert_eq!(rs_counts(api, "asd", &v2).await.0, 1, "scaled down early");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for("the canary scaled down after its deadline", || async {
        rs_counts(api, "asd", &v2).await.0 == 0
    })
    .await;
    assert!(jiff::Timestamp::now() >= deadline);
    assert_eq!(rs_counts(api, "asd", &v1).await, (2, 2));

    // Retried: the canary comes back without its deadline.
    abort(false).await;
    wait_for("paused again at 50%", || async {
        paused().await && weight().await == "50" && rs_counts(api, "asd", &v2).await == (1, 1)
    })
    .await;
    assert_eq!(
        rs_annotation(api, "asd", &v2, "scale-down-deadline").await,
        ""
    );
    assert_eq!(selector_hash(api, "web-canary").await, v2);

    // abortScaleDownDelaySeconds: 0 leaves the canary up (its
    // setCanaryScale stays in force).
    modify(api, "asd", None, |v| {
        v["spec"]["strategy"]["canary"]["abortScaleDownDelaySeconds"] = json!(0);
    })
    .await;
    abort(true).await;
    wait_for("Degraded again, no traffic to the canary", || async {
        status(api, "asd").await["phase"] == "Degraded" && weight().await == "0"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rs_counts(api, "asd", &v2).await, (1, 1));
    assert_eq!(status(api, "asd").await["currentStepIndex"], 0);
    assert_eq!(
        rs_annotation(api, "asd", &v2, "scale-down-deadline").await,
        ""
    );
}

async fn experiment(api: &Loopback, name: &str) -> Option<Value> {
    let r = served("argoproj.io", "v1alpha1", "experiments").await;
    api.get(r, Some("default"), name).await.unwrap()
}

/// A template's set of Experiment `ex`: (spec, available).
async fn template_set(api: &Loopback, ex: &str, template: &str) -> Option<(Value, i64, i64)> {
    let rs = api
        .get(
            res("apps", "v1", "replicasets"),
            Some("default"),
            &format!("{ex}-{template}"),
        )
        .await
        .unwrap()?;
    let (spec, avail) = (
        rs["spec"]["replicas"].as_i64().unwrap_or(-1),
        rs["status"]["availableReplicas"].as_i64().unwrap_or(0),
    );
    Some((rs, spec, avail))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_step_runs_its_templates_and_analyses_and_a_failure_aborts() {
    let k = start().await;
    let api = &k.api;
    service(api, "web-stable").await;
    service(api, "web-canary").await;
    // initialDelay keeps the analysis controller from measuring: the test
    // decides each run's phase.
    let tpl = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "compare", "namespace": "default"},
        "spec": {"args": [{"name": "canary-hash"}, {"name": "baseline"}, {"name": "image"}],
            "metrics": [{"name": "diff", "initialDelay": "1h", "successCondition": "result == 1",
                "provider": {"web": {"url": "http://127.0.0.1:9/{{args.canary-hash}}"}}}]}});
    api.create(
        served("argoproj.io", "v1alpha1", "analysistemplates").await,
        tpl,
        "test",
    )
    .await
    .unwrap();
    let strategy = json!({"canary": {
        "canaryService": "web-canary", "stableService": "web-stable",
        "steps": [{"setWeight": 50}, {"experiment": {
            "duration": "2s", "scaleDownDelaySeconds": 0,
            "templates": [
                {"name": "baseline", "specRef": "stable"},
                {"name": "canary", "specRef": "canary", "replicas": 2, "service": {},
                    "metadata": {"labels": {"role": "exp"}}}],
            "analyses": [{"name": "compare", "templateName": "compare", "args": [
                {"name": "canary-hash", "value": "{{templates.canary.podTemplateHash}}"},
                {"name": "baseline", "value": "{{templates.baseline.replicaset.name}}"},
                {"name": "image", "valueFrom": {"fieldRef": {"fieldPath": "spec.template.spec.containers[0].image"}}}]}]}},
            {"setWeight": 100}]}});
    let mut ro = rollout("ex", 2, strategy);
    ro["spec"]["template"]["spec"]["containers"][0]["ports"] =
        json!([{"name": "http", "containerPort": 8080}]);
    api.create(rollouts().await, ro, "test").await.unwrap();
    wait_for("the first revision healthy", || healthy(api, "ex")).await;
    let v1 = current_hash(api, "ex").await;

    // Revision 2: the step creates its Experiment; the analysis passes
    // and the duration ends it.
    set_image(api, "ex", "web:2").await;
    wait_for("the second revision", || async {
        current_hash(api, "ex").await != v1
    })
    .await;
    let v2 = current_hash(api, "ex").await;
    let name = format!("ex-{v2}-2-1");
    wait_for("the Experiment", || async {
        experiment(api, &name).await.is_some()
    })
    .await;
    let ex = experiment(api, &name).await.unwrap();
    assert_eq!(
        ex["metadata"]["labels"]["rollouts-pod-template-hash"],
        v2.as_str()
    );
    assert_eq!(
        ex["metadata"]["annotations"]["rollout.argoproj.io/revision"],
        "2"
    );
    assert_eq!(ex["metadata"]["ownerReferences"][0]["kind"], "Rollout");
    assert_eq!(ex["spec"]["duration"], "2s");
    assert_eq!(
        ex["spec"]["analyses"][0]["args"][2],
        json!({"name": "image", "value": "web:2"}),
        "the Rollout resolves its own args"
    );
    wait_for("both templates running", || async {
        let e = experiment(api, &name).await.unwrap();
        e["status"]["phase"] == "Running" && e["status"]["availableAt"].is_string()
    })
    .await;
    let (baseline, spec, _) = template_set(api, &name, "baseline").await.unwrap();
    assert_eq!(spec, 1, "replicas default to 1");
    assert_eq!(
        baseline["metadata"]["annotations"]["experiment.argoproj.io/name"],
        name.as_str()
    );
    assert_eq!(
        baseline["metadata"]["annotations"]["experiment.argoproj.io/template-name"],
        "baseline"
    );
    assert_eq!(
        baseline["metadata"]["ownerReferences"][0]["kind"],
        "Experiment"
    );
    assert_eq!(
        baseline["spec"]["template"]["spec"]["containers"][0]["image"], "web:1",
        "specRef stable"
    );
    let (canary, spec, avail) = template_set(api, &name, "canary").await.unwrap();
    assert_eq!((spec, avail), (2, 2));
    assert_eq!(
        canary["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:2"
    );
    assert_eq!(
        canary["spec"]["template"]["metadata"]["labels"]["role"],
        "exp"
    );
    assert_eq!(canary["spec"]["selector"]["matchLabels"]["role"], "exp");
    let canary_hash = canary["metadata"]["labels"]["rollouts-pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    // The canary template's Service, on its pods' ports.
    let services = res("", "v1", "services");
    let svc_name = format!("{name}-canary");
    wait_for("the template's Service", || async {
        api.get(services, Some("default"), &svc_name)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let svc = get(api, services, &svc_name).await;
    assert_eq!(
        svc["spec"]["selector"]["rollouts-pod-template-hash"],
        canary_hash.as_str()
    );
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["name"], "http");
    assert_eq!(svc["metadata"]["ownerReferences"][0]["kind"], "Experiment");
    wait_for("the Service in the template's status", || async {
        let e = experiment(api, &name).await.unwrap();
        e["status"]["templateStatuses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "canary" && t["serviceName"] == svc_name.as_str())
    })
    .await;
    // The run, named after the Experiment, its template args resolved.
    let run = format!("{name}-compare");
    wait_for("the analysis run", || run_exists(api, &run)).await;
    let runs = served("argoproj.io", "v1alpha1", "analysisruns").await;
    let r = get(api, runs, &run).await;
    assert_eq!(r["metadata"]["ownerReferences"][0]["kind"], "Experiment");
    let args = r["spec"]["args"].as_array().unwrap();
    let arg = |n: &str| {
        args.iter().find(|a| a["name"] == n).unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(arg("canary-hash"), canary_hash);
    assert_eq!(arg("baseline"), format!("{name}-baseline"));
    assert_eq!(
        status(api, "ex").await["canary"]["currentExperiment"],
        name.as_str()
    );
    finish_run(api, &run, "Successful", "").await;
    wait_for("the Experiment successful", || async {
        experiment(api, &name).await.unwrap()["status"]["phase"] == "Successful"
    })
    .await;
    let e = experiment(api, &name).await.unwrap();
    let available_at: jiff::Timestamp = e["status"]["availableAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        jiff::Timestamp::now() >= available_at + jiff::SignedDuration::from_secs(2),
        "ended before its duration"
    );
    for t in e["status"]["templateStatuses"].as_array().unwrap() {
        assert_eq!(t["status"], "Successful", "{e}");
    }
    assert_eq!(e["status"]["analysisRuns"][0]["phase"], "Successful");
    wait_for("v2 healthy", || healthy(api, "ex")).await;
    wait_for("the Experiment's sets scaled down", || async {
        template_set(api, &name, "baseline").await.unwrap().1 == 0
            && template_set(api, &name, "canary").await.unwrap().1 == 0
    })
    .await;
    wait_for("the template's Service gone with its pods", || async {
        api.get(services, Some("default"), &svc_name)
            .await
            .unwrap()
            .is_none()
    })
    .await;

    // Revision 3: its analysis fails, so does the Experiment, the Rollout
    // aborts with Argo's message and the Experiment's sets go.
    set_image(api, "ex", "web:3").await;
    wait_for("the third revision", || async {
        current_hash(api, "ex").await != v2
    })
    .await;
    let v3 = current_hash(api, "ex").await;
    let name = format!("ex-{v3}-3-1");
    let run = format!("{name}-compare");
    wait_for("the third revision's run", || run_exists(api, &run)).await;
    let failure = "Metric \"diff\" assessed Failed due to failed (1) > failureLimit (0)";
    finish_run(api, &run, "Failed", failure).await;
    wait_for("the abort", || async {
        status(api, "ex").await["phase"] == "Degraded" && rs_counts(api, "ex", &v3).await.0 == 0
    })
    .await;
    let e = experiment(api, &name).await.unwrap();
    assert_eq!(e["status"]["phase"], "Failed", "{e}");
    assert_eq!(e["status"]["message"], failure);
    let st = status(api, "ex").await;
    assert_eq!(
        st["message"],
        format!(
            "RolloutAborted: Rollout aborted update to revision 3: Experiment analysis phase is error/failed: {failure}"
        ),
        "{st}"
    );
    assert_eq!(st["stableRS"], v2.as_str());
    wait_for("the failed Experiment's sets scaled down", || async {
        template_set(api, &name, "baseline").await.unwrap().1 == 0
            && template_set(api, &name, "canary").await.unwrap().1 == 0
    })
    .await;
    assert_eq!(rs_counts(api, "ex", &v2).await.0, 2);
}

/// A dynamicStableScale canary `ro` of 4 behind nginx (steps 25% and 75%,
/// each paused) with `extra` in its strategy, taken to its 75% pause with
/// stable settled at 1 pod: (stable hash, canary hash, the recording).
async fn dynamic_canary_at_75(api: &Loopback, ro: &str, extra: Value) -> (String, String, Log) {
    routed_services(api).await;
    let log = record(api, ro);
    let mut strategy = json!({"canary": {
        "canaryService": "web-canary", "stableService": "web-stable", "dynamicStableScale": true,
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}]}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        strategy["canary"][k] = v.clone();
    }
    api.create(rollouts().await, rollout(ro, 4, strategy), "test")
        .await
        .unwrap();
    wait_for("the first revision healthy", || healthy(api, ro)).await;
    let v1 = current_hash(api, ro).await;
    set_image(api, ro, "web:2").await;
    let paused_at = |step: i64| async move {
        let st = status(api, ro).await;
        st["phase"] == "Paused" && st["currentStepIndex"] == step
    };
    wait_for("the pause at 25%", || paused_at(1)).await;
    let v2 = current_hash(api, ro).await;
    promote(api, ro).await;
    wait_for("the pause at 75% with stable at 1", || async {
        paused_at(3).await && rs_counts(api, ro, &v1).await == (1, 1)
    })
    .await;
    (v1, v2, log)
}

/// Argo's issue 4898: dynamic stable scaling with an explicit
/// abortScaleDownDelaySeconds keeps the canary's pods while traffic steps
/// back as stable grows, and only then starts the delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_stable_scale_with_an_abort_delay_drains_traffic_then_waits() {
    let k = start().await;
    let api = &k.api;
    let (v1, v2, log) =
        dynamic_canary_at_75(api, "dsd", json!({"abortScaleDownDelaySeconds": 2})).await;
    modify(api, "dsd", Some("status"), |v| {
        v["status"]["abort"] = json!(true);
    })
    .await;
    wait_for("all traffic back on a full stable", || async {
        let st = status(api, "dsd").await;
        st["canary"]["weights"]["canary"]["weight"] == 0
            && rs_counts(api, "dsd", &v1).await == (4, 4)
    })
    .await;
    // The canary kept its pods through the step-down (the recording below
    // shows it went from 3 straight to 0); its delay starts now. (Read here
    // it could already be 0 when this test runs slower than the 2 s delay.)
    wait_for("the deadline", || async {
        !rs_annotation(api, "dsd", &v2, "scale-down-deadline")
            .await
            .is_empty()
    })
    .await;
    wait_for("the canary scaled down after it", || async {
        rs_counts(api, "dsd", &v2).await.0 == 0
    })
    .await;
    // The recording's watch may be a step behind the read above.
    wait_for("the recording of the scale-down", || async {
        steps_of(&log.lock().unwrap(), spec_of(&v2)).last() == Some(&0)
    })
    .await;
    let log = log.lock().unwrap().clone();
    let weight = |s: &Seen| match s {
        Seen::Weight(w) => Some(*w),
        _ => None,
    };
    assert_eq!(steps_of(&log, weight), [0, 25, 75, 25, 0]);
    assert_eq!(steps_of(&log, spec_of(&v1)), [0, 4, 3, 1, 3, 4]);
    assert_eq!(steps_of(&log, spec_of(&v2)), [0, 1, 3, 0]);
    weights_always_backed(&log, 4);
}

/// Argo's dynamic rollback to stable: the template set back to stable's
/// mid-update; the previous canary keeps its traffic and pods until stable
/// is full again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_stable_scale_back_to_stable_keeps_the_canary_until_stable_is_full() {
    let k = start().await;
    let api = &k.api;
    let (v1, v2, log) = dynamic_canary_at_75(api, "dsb", json!({})).await;
    set_image(api, "dsb", "web:1").await;
    wait_for("back on a full stable", || async {
        healthy(api, "dsb").await
            && rs_counts(api, "dsb", &v1).await == (4, 4)
            && rs_counts(api, "dsb", &v2).await.0 == 0
    })
    .await;
    assert_eq!(current_hash(api, "dsb").await, v1);
    assert_eq!(selector_hash(api, "web-canary").await, v1);
    let log = log.lock().unwrap().clone();
    let weight = |s: &Seen| match s {
        Seen::Weight(w) => Some(*w),
        _ => None,
    };
    assert_eq!(steps_of(&log, weight), [0, 25, 75, 0]);
    assert_eq!(steps_of(&log, spec_of(&v1)), [0, 4, 3, 1, 4]);
    assert_eq!(steps_of(&log, spec_of(&v2)), [0, 1, 3, 0]);
    weights_always_backed(&log, 4);
}

/// A hand-made Experiment its controller cannot run gets Argo's
/// `InvalidExperimentSpec` condition and nothing else; mended, it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_experiment_gets_its_condition_and_runs_once_mended() {
    let k = start().await;
    let api = &k.api;
    let r = served("argoproj.io", "v1alpha1", "experiments").await;
    let template = |name: &str| {
        json!({"name": name, "replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "web:1"}]}}})
    };
    let ex = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Experiment",
        "metadata": {"name": "twice", "namespace": "default"},
        "spec": {"templates": [template("a"), template("a")]}});
    api.create(r, ex, "test").await.unwrap();
    let condition = || async {
        experiment(api, "twice").await.unwrap()["status"]["conditions"]
            .as_array()
            .and_then(|c| {
                c.iter()
                    .find(|c| c["type"] == "InvalidExperimentSpec")
                    .cloned()
            })
    };
    wait_for("the InvalidExperimentSpec condition", || async {
        condition().await.is_some()
    })
    .await;
    let c = condition().await.unwrap();
    assert_eq!(c["reason"], "InvalidSpec");
    assert_eq!(
        c["message"],
        "Experiment twice has repeated template name 'a' in templates"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        template_set(api, "twice", "a").await.is_none(),
        "nothing created"
    );

    api.modify(r, Some("default"), "twice", None, "test", |cur| {
        let mut v = cur.clone();
        v["spec"]["templates"][1] = template("b");
        Some(v)
    })
    .await
    .unwrap();
    wait_for("both sets", || async {
        template_set(api, "twice", "a").await.is_some()
            && template_set(api, "twice", "b").await.is_some()
    })
    .await;
    wait_for("the condition dropped", || async {
        condition().await.is_none()
    })
    .await;
}
