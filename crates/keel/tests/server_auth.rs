//! Who may do what on `keel server`, through the real kubectl: the admin
//! kubeconfig's client certificate, service account tokens from `kubectl
//! create token` (audience, expiry, pod binding, JWKS), RBAC on every request
//! (a service account bound to `view` lists but cannot create, and `kubectl
//! auth can-i` answers what the server then does), cluster role aggregation,
//! token reviews, bootstrap tokens, keel's read-only token as a `view` user,
//! and RBAC objects validated with Kubernetes' messages.

#[path = "server_common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{KeelServer, kubectls};

fn ns_setup(s: &KeelServer, k: &Path) {
    s.ok(k, &["create", "namespace", "team"]);
    s.ok(k, &["-n", "team", "create", "serviceaccount", "bot"]);
    s.ok(
        k,
        &[
            "-n",
            "team",
            "create",
            "rolebinding",
            "bot-view",
            "--clusterrole=view",
            "--serviceaccount=team:bot",
        ],
    );
}

fn token(s: &KeelServer, k: &Path, extra: &[&str]) -> String {
    let mut args = vec!["-n", "team", "create", "token", "bot"];
    args.extend_from_slice(extra);
    s.ok(k, &args).trim().to_string()
}

/// Whether kubectl with `token` succeeds at `args` (stderr when not).
fn as_token(s: &KeelServer, k: &Path, token: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["--token", token];
    all.extend_from_slice(args);
    let out = s.kubectl_with(k, &all, None);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn can_i(s: &KeelServer, k: &Path, token: &str, args: &[&str]) -> bool {
    let mut all = vec!["--token", token, "auth", "can-i"];
    all.extend_from_slice(args);
    let out = s.kubectl_with(k, &all, None);
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        said == "yes" || said == "no",
        "can-i {args:?}: {said:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    said == "yes"
}

fn jwt_part(token: &str, i: usize) -> serde_json::Value {
    use base64::Engine;
    let part = token.split('.').nth(i).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn service_accounts_and_rbac(s: &KeelServer, k: &Path) {
    // The admin kubeconfig authenticates with a client certificate.
    let kc = std::fs::read_to_string(&s.kubeconfig).unwrap();
    assert!(
        kc.contains("client-certificate-data:") && !kc.contains("token:"),
        "{kc}"
    );
    let who = s.ok(
        k,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ],
    );
    assert!(
        who.starts_with("keel:admin ") && who.contains("system:masters"),
        "{who}"
    );

    ns_setup(s, k);
    let t = token(s, k, &[]);
    let claims = jwt_part(&t, 1);
    assert_eq!(claims["sub"], "system:serviceaccount:team:bot");
    assert_eq!(
        claims["aud"],
        serde_json::json!(["https://kubernetes.default.svc.cluster.local"])
    );
    let exp = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(exp, 3600, "default lifetime");
    // The signing key is published where OIDC clients look for it.
    let jwks: serde_json::Value =
        serde_json::from_str(&s.ok(k, &["get", "--raw", "/openid/v1/jwks"])).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], jwt_part(&t, 0)["kid"]);
    let oidc: serde_json::Value =
        serde_json::from_str(&s.ok(k, &["get", "--raw", "/.well-known/openid-configuration"]))
            .unwrap();
    assert_eq!(oidc["issuer"], claims["iss"]);

    // Bound to view in `team`: reads there, writes nothing, reads nothing elsewhere.
    let who = as_token(
        s,
        k,
        &t,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    )
    .unwrap();
    assert_eq!(who, "system:serviceaccount:team:bot");
    as_token(s, k, &t, &["-n", "team", "get", "pods,deploy,cm"]).unwrap();
    let err = as_token(s, k, &t, &["-n", "team", "create", "configmap", "nope"]).unwrap_err();
    assert!(
        err.contains("configmaps is forbidden: User \"system:serviceaccount:team:bot\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"team\""),
        "{err}"
    );
    let err = as_token(s, k, &t, &["-n", "default", "get", "pods"]).unwrap_err();
    assert!(
        err.contains("Forbidden") && err.contains("in the namespace \"default\""),
        "{err}"
    );
    let err = as_token(s, k, &t, &["-n", "team", "get", "secrets"]).unwrap_err();
    assert!(err.contains("cannot list resource \"secrets\""), "{err}");

    // can-i says what the server then does.
    for (args, attempt) in [
        (
            vec!["list", "pods", "-n", "team"],
            vec!["-n", "team", "get", "pods"],
        ),
        (
            vec!["create", "configmaps", "-n", "team"],
            vec!["-n", "team", "create", "configmap", "try1"],
        ),
        (
            vec!["list", "pods", "-n", "default"],
            vec!["-n", "default", "get", "pods"],
        ),
        (
            vec!["list", "secrets", "-n", "team"],
            vec!["-n", "team", "get", "secrets"],
        ),
        (
            vec!["get", "deployments.apps", "-n", "team"],
            vec!["-n", "team", "get", "deployments"],
        ),
        (
            vec!["delete", "serviceaccounts", "-n", "team"],
            vec!["-n", "team", "delete", "sa", "bot", "--dry-run=server"],
        ),
        (vec!["list", "nodes"], vec!["get", "nodes"]),
    ] {
        let said = can_i(s, k, &t, &args);
        let did = as_token(s, k, &t, &attempt).is_ok();
        assert_eq!(said, did, "can-i {args:?} said {said}, doing it gave {did}");
    }
    let rules = as_token(s, k, &t, &["auth", "can-i", "--list", "-n", "team"]).unwrap();
    assert!(
        rules.contains("deployments.apps") && rules.contains("[get list watch]"),
        "{rules}"
    );

    // A grant takes effect at once; aggregation carries new roles into view.
    s.ok(
        k,
        &[
            "-n",
            "team",
            "create",
            "role",
            "cm-writer",
            "--verb=create",
            "--resource=configmaps",
        ],
    );
    s.ok(
        k,
        &[
            "-n",
            "team",
            "create",
            "rolebinding",
            "bot-cm",
            "--role=cm-writer",
            "--serviceaccount=team:bot",
        ],
    );
    as_token(s, k, &t, &["-n", "team", "create", "configmap", "granted"]).unwrap();
    assert!(!can_i(
        s,
        k,
        &t,
        &["list", "leases.coordination.k8s.io", "-n", "team"]
    ));
    let agg = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: leases-view\n  labels: {rbac.authorization.k8s.io/aggregate-to-view: \"true\"}\nrules:\n- {apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, list, watch]}\n";
    s.ok_in(k, &["create", "-f", "-"], Some(agg));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !can_i(
        s,
        k,
        &t,
        &["list", "leases.coordination.k8s.io", "-n", "team"],
    ) {
        assert!(
            Instant::now() < deadline,
            "view never aggregated leases-view"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let view = s.ok(
        k,
        &["get", "clusterrole", "view", "-o", "jsonpath={.rules}"],
    );
    assert!(view.contains("leases"), "{view}");

    // Tokens for another audience, too short-lived, or outliving what they
    // are bound to are refused.
    let other = token(s, k, &["--audience", "vault"]);
    let err = as_token(s, k, &other, &["-n", "team", "get", "pods"]).unwrap_err();
    assert!(err.contains("Unauthorized"), "{err}");
    let out = s.kubectl_with(
        k,
        &["-n", "team", "create", "token", "bot", "--duration", "5m"],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );
    s.ok_in(
        k,
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: holder, namespace: team}\nspec:\n  containers: [{name: c, image: busybox}]\n"),
    );
    let bound = token(
        s,
        k,
        &[
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "holder",
        ],
    );
    assert_eq!(
        jwt_part(&bound, 1)["kubernetes.io"]["pod"]["name"],
        "holder"
    );
    as_token(s, k, &bound, &["-n", "team", "get", "pods"]).unwrap();
    s.ok(k, &["-n", "team", "delete", "pod", "holder"]);
    let err = as_token(s, k, &bound, &["-n", "team", "get", "pods"]).unwrap_err();
    assert!(
        err.contains("Unauthorized"),
        "token outlived its pod: {err}"
    );

    // TokenReview answers for tokens and audiences.
    let review = |tok: &str, aud: &str| {
        let body = format!(
            "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: {tok}\n  audiences: [{aud}]\n"
        );
        s.ok_in(
            k,
            &[
                "create",
                "-f",
                "-",
                "-o",
                "jsonpath={.status.authenticated} {.status.user.username}",
            ],
            Some(&body),
        )
    };
    assert_eq!(
        review(&other, "vault"),
        "true system:serviceaccount:team:bot"
    );
    assert_eq!(
        review(&other, "https://kubernetes.default.svc.cluster.local").trim(),
        "false"
    );

    // Deleting the account ends its tokens.
    s.ok(k, &["-n", "team", "delete", "sa", "bot"]);
    let err = as_token(s, k, &t, &["-n", "team", "get", "pods"]).unwrap_err();
    assert!(err.contains("Unauthorized"), "{err}");

    // Bootstrap tokens (what nodes join with): their own user and groups.
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: bootstrap-token-abcdef, namespace: kube-system}\ntype: bootstrap.kubernetes.io/token\nstringData:\n  token-id: abcdef\n  token-secret: 0123456789abcdef\n  usage-bootstrap-authentication: \"true\"\n";
    s.ok_in(k, &["create", "-f", "-"], Some(secret));
    let boot = "abcdef.0123456789abcdef";
    let who = as_token(
        s,
        k,
        boot,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ],
    )
    .unwrap();
    assert!(
        who.starts_with("system:bootstrap:abcdef ") && who.contains("system:bootstrappers"),
        "{who}"
    );
    assert!(can_i(
        s,
        k,
        boot,
        &["create", "certificatesigningrequests.certificates.k8s.io"]
    ));
    assert!(!can_i(s, k, boot, &["list", "pods", "-A"]));
    let err = as_token(s, k, "abcdef.ffffffffffffffff", &["auth", "whoami"]).unwrap_err();
    assert!(err.contains("Unauthorized"), "{err}");

    // Bad RBAC objects are refused with Kubernetes' messages and leave nothing.
    let bad = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: bad, namespace: team}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Widget, name: x}\nsubjects:\n- {kind: Robot, name: r}\n";
    let err = s.fails(k, &["create", "-f", "-"], Some(bad));
    assert!(
        err.contains("roleRef.kind: Unsupported value: \"Widget\": supported values: \"Role\", \"ClusterRole\"")
            && err.contains("subjects[0].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\""),
        "{err}"
    );
    let out = s.kubectl_with(k, &["-n", "team", "get", "rolebinding", "bad"], None);
    assert!(!out.status.success());
    let err = s.fails(
        k,
        &[
            "-n",
            "team",
            "patch",
            "rolebinding",
            "bot-cm",
            "--type=merge",
            "-p",
            r#"{"roleRef":{"name":"other"}}"#,
        ],
        None,
    );
    assert!(err.contains("cannot change roleRef"), "{err}");
}

#[test]
fn service_accounts_and_rbac_with_kubectl_1_32() {
    let s = KeelServer::start(None);
    service_accounts_and_rbac(&s, &kubectls()[0]);
}

#[test]
fn service_accounts_and_rbac_with_kubectl_1_33_on_three_member_etcd() {
    let cluster = keel_store::testing::EtcdCluster::start(3);
    let s = KeelServer::start(Some(cluster.datastore_url()));
    service_accounts_and_rbac(&s, &kubectls()[1]);
}

#[test]
fn read_only_token_is_a_view_user() {
    let s = KeelServer::start(None);
    let k = &kubectls()[0];
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("--root")
        .arg(s.root.path())
        .args(["server", "token", "create", "--read-only"])
        .output()
        .unwrap();
    let ro = String::from_utf8(out.stdout).unwrap().trim().to_string();
    s.ok(
        k,
        &["create", "secret", "generic", "pw", "--from-literal=a=b"],
    );
    as_token(&s, k, &ro, &["get", "pods,cm,deploy", "-A"]).unwrap();
    let err = as_token(&s, k, &ro, &["get", "secrets"]).unwrap_err();
    assert!(
        err.contains("User \"keel:read-only\" cannot list resource \"secrets\""),
        "{err}"
    );
    assert!(!can_i(&s, k, &ro, &["get", "secrets"]));
    assert!(can_i(&s, k, &ro, &["watch", "deployments.apps"]));
    let who = as_token(
        &s,
        k,
        &ro,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    )
    .unwrap();
    assert_eq!(who, "keel:read-only");
}
