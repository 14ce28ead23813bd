//! CEL through the real kubectl (1.32 on `SQLite`, 1.33 on a 3-member etcd
//! cluster): CRD `x-kubernetes-validations`
//! (a rule refusing a create, a transition rule refusing an update,
//! `messageExpression`, `reason` and `fieldPath`, a rule that does not
//! compile refused with the CRD), a webhook skipped by its
//! `matchConditions`, and a `ValidatingAdmissionPolicy` denying through its
//! binding, with kube-apiserver's messages. Before CEL, keel refused every
//! CRD rule and every matchCondition and served no policies.

#[path = "server_common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Duration;

use common::{KeelServer, free_port, kubectls};

const CRD: &str = r"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.cel.example.com
spec:
  group: cel.example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: self.minReplicas <= self.replicas
              message: replicas must be at least minReplicas
            - rule: self.size == oldSelf.size
              message: size is immutable
            - rule: '!has(self.owner) || self.owner.startsWith(''team-'')'
              messageExpression: '''owner '' + self.owner + '' must start with team-'''
              fieldPath: .owner
              reason: FieldValueForbidden
            - rule: 'oldSelf.hasValue() || !has(self.owner) || self.owner != ''team-legacy'''
              optionalOldSelf: true
              message: team-legacy is kept, never given
            properties:
              replicas: {type: integer}
              minReplicas: {type: integer}
              size: {type: string}
              owner: {type: string}
              ports:
                type: array
                items:
                  type: integer
                  x-kubernetes-validations:
                  - rule: self > 0 && self < 65536
";

fn gadget(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: cel.example.com/v1\nkind: Gadget\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n"
    )
}

/// Retries `f` until it returns true (indexes are watch-fed).
fn eventually(what: &str, f: impl FnMut() -> bool) {
    common::eventually(what, Duration::from_secs(20), f);
}

fn crd_rules(s: &KeelServer, k: &Path) {
    s.ok_in(k, &["apply", "-f", "-"], Some(CRD));
    eventually("the CRD to be served", || {
        s.kubectl_with(k, &["get", "gadgets"], None)
            .status
            .success()
    });
    // A create the rule refuses.
    let err = s.fails(
        k,
        &["apply", "-f", "-"],
        Some(&gadget("g1", "{replicas: 1, minReplicas: 2, size: small}")),
    );
    assert!(
        // kubectl words the kind its own way: `The Gadget "g1" is invalid: ...`.
        err.contains(r#"Gadget "g1" is invalid: spec: Invalid value: "object": replicas must be at least minReplicas"#),
        "{err}"
    );
    // Rules on array items, with the default message.
    let err = s.fails(
        k,
        &["apply", "-f", "-"],
        Some(&gadget(
            "g1",
            "{replicas: 2, minReplicas: 1, size: small, ports: [80, 70000]}",
        )),
    );
    assert!(
        err.contains(
            r#"spec.ports[1]: Invalid value: "integer": failed rule: self > 0 && self < 65536"#
        ),
        "{err}"
    );
    // messageExpression, reason and fieldPath.
    let err = s.fails(
        k,
        &["apply", "-f", "-"],
        Some(&gadget(
            "g1",
            "{replicas: 2, minReplicas: 1, size: small, owner: bob}",
        )),
    );
    assert!(
        err.contains("spec.owner: Forbidden: owner bob must start with team-"),
        "{err}"
    );
    // A valid create: the transition rule does not run without an old object.
    s.ok_in(
        k,
        &["apply", "-f", "-"],
        Some(&gadget("g1", "{replicas: 2, minReplicas: 1, size: small}")),
    );
    // optionalOldSelf: that rule runs on a create too, oldSelf empty...
    let err = s.fails(
        k,
        &["apply", "-f", "-"],
        Some(&gadget(
            "g2",
            "{replicas: 2, minReplicas: 1, size: small, owner: team-legacy}",
        )),
    );
    assert!(
        err.contains(r#"spec: Invalid value: "object": team-legacy is kept, never given"#),
        "{err}"
    );
    // ...and on an update with oldSelf holding the old value.
    s.ok_in(
        k,
        &["apply", "-f", "-"],
        Some(&gadget(
            "g1",
            "{replicas: 2, minReplicas: 1, size: small, owner: team-legacy}",
        )),
    );
    // The transition rule refuses an update that changes size; others pass.
    let err = s.fails(
        k,
        &["apply", "-f", "-"],
        Some(&gadget("g1", "{replicas: 2, minReplicas: 1, size: large}")),
    );
    assert!(
        err.contains(r#"spec: Invalid value: "object": size is immutable"#),
        "{err}"
    );
    s.ok_in(
        k,
        &["apply", "-f", "-"],
        Some(&gadget("g1", "{replicas: 5, minReplicas: 1, size: small}")),
    );
    let got = s.ok(
        k,
        &[
            "get",
            "gadget",
            "g1",
            "-o",
            "jsonpath={.spec.size}/{.spec.replicas}",
        ],
    );
    assert_eq!(got.trim(), "small/5");

    // A rule that does not compile is refused with the CRD, which stays absent.
    let bad = CRD
        .replace("gadgets", "badgets")
        .replace("Gadget", "Badget")
        .replace("gadget}", "badget}")
        .replace("self.minReplicas <= self.replicas", "self.minReplicas <=");
    let err = s.fails(k, &["apply", "-f", "-"], Some(&bad));
    assert!(
        err.contains("spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value: apiextensions.ValidationRule{Rule:\"self.minReplicas <=\""),
        "{err}"
    );
    assert!(
        err.contains("compilation failed: ERROR: <input>:1:"),
        "{err}"
    );
    let err = s.fails(k, &["get", "crd", "badgets.cel.example.com"], None);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}

fn webhook_match_conditions(s: &KeelServer, k: &Path) {
    // The webhook's URL has no server behind it: calling it fails the
    // request (failurePolicy Fail), so a create succeeds only if the
    // matchConditions skip the call.
    let port = free_port();
    let config = format!(
        r"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: guarded}}
webhooks:
- name: guarded.cel.example.com
  clientConfig: {{url: 'https://127.0.0.1:{port}/validate'}}
  rules: [{{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [configmaps]}}]
  sideEffects: None
  admissionReviewVersions: [v1]
  failurePolicy: Fail
  timeoutSeconds: 2
  matchConditions:
  - name: only-checked
    expression: has(object.metadata.labels) && object.metadata.labels['check'] == 'yes'
  - name: not-kube-system
    expression: request.namespace != 'kube-system'
"
    );
    s.ok_in(k, &["apply", "-f", "-"], Some(&config));
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: checked, namespace: default, labels: {check: 'yes'}}\n";
    eventually("the webhook to be called", || {
        let out = s.kubectl_with(k, &["create", "--dry-run=server", "-f", "-"], Some(cm));
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("failed calling webhook")
    });
    // No label: the first condition is false, the webhook is skipped.
    s.ok(k, &["create", "configmap", "skipped"]);
    // A configmap labelled check=yes matches and reaches the dead webhook.
    let err = s.fails(k, &["create", "-f", "-"], Some(cm));
    assert!(
        err.contains(r#"failed calling webhook "guarded.cel.example.com""#),
        "{err}"
    );
    // A condition that does not compile is refused with the configuration.
    let bad = config
        .replace("name: guarded}", "name: guarded2}")
        .replace("request.namespace != 'kube-system'", "request.namespace !=");
    let err = s.fails(k, &["apply", "-f", "-"], Some(&bad));
    assert!(
        err.contains("webhooks[0].matchConditions[1].expression: Invalid value:")
            && err.contains("compilation failed"),
        "{err}"
    );
    s.ok(k, &["delete", "validatingwebhookconfiguration", "guarded"]);
}

const POLICY: &str = r"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: replica-limit}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments]}
  variables:
  - {name: replicas, expression: 'object.spec.replicas'}
  validations:
  - expression: variables.replicas <= 5
    messageExpression: '''replicas must be at most 5, got '' + string(variables.replicas)'
  - expression: object.metadata.name != 'forbidden'
    reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: replica-limit-binding}
spec:
  policyName: replica-limit
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {limited: 'yes'}
";

fn deployment(name: &str, ns: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: c, image: busybox}}]}}\n"
    )
}

fn admission_policy(s: &KeelServer, k: &Path) {
    s.ok(k, &["create", "namespace", "limited"]);
    s.ok(k, &["label", "namespace", "limited", "limited=yes"]);
    s.ok_in(k, &["apply", "-f", "-"], Some(POLICY));
    eventually("the policy to deny", || {
        let out = s.kubectl_with(
            k,
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&deployment("probe", "limited", 9)),
        );
        !out.status.success()
    });
    let err = s.fails(
        k,
        &["apply", "-f", "-"],
        Some(&deployment("big", "limited", 9)),
    );
    assert!(
        err.contains("ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit-binding' denied request: replicas must be at most 5, got 9"),
        "{err}"
    );
    let err = s.fails(
        k,
        &["apply", "-f", "-"],
        Some(&deployment("forbidden", "limited", 1)),
    );
    assert!(
        err.contains("denied request: failed expression: object.metadata.name != 'forbidden'"),
        "{err}"
    );
    // Within the limit, or outside the bound namespaces: admitted.
    s.ok_in(
        k,
        &["apply", "-f", "-"],
        Some(&deployment("small", "limited", 2)),
    );
    s.ok_in(
        k,
        &["apply", "-f", "-"],
        Some(&deployment("big", "default", 9)),
    );
    // An update past the limit is denied too.
    let err = s.fails(
        k,
        &[
            "patch",
            "deployment",
            "small",
            "-n",
            "limited",
            "-p",
            r#"{"spec":{"replicas":8}}"#,
        ],
        None,
    );
    assert!(err.contains("replicas must be at most 5, got 8"), "{err}");
    // A policy whose expression does not compile is refused.
    let bad = POLICY
        .split("---")
        .next()
        .unwrap()
        .replace("replica-limit}", "broken}")
        .replace("variables.replicas <= 5", "variables.replicas <=");
    let err = s.fails(k, &["apply", "-f", "-"], Some(&bad));
    assert!(
        err.contains("spec.validations[0].expression: Invalid value:")
            && err.contains("compilation failed"),
        "{err}"
    );
}

const PARAM_POLICY: &str = r"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: cm-keys}
spec:
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - {apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}
  validations:
  - expression: '!has(object.data) || size(object.data) <= int(params.data.maxKeys)'
    messageExpression: '''at most '' + params.data.maxKeys + '' keys'''
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: cm-keys-warn}
spec:
  policyName: cm-keys
  validationActions: [Warn]
  paramRef: {name: cm-limits, namespace: default, parameterNotFoundAction: Deny}
  matchResources:
    namespaceSelector:
      matchLabels: {limited: 'yes'}
";

/// `kubectl create configmap NAME` with three keys in `ns`.
fn three_keys(s: &KeelServer, k: &Path, ns: &str, name: &str) -> std::process::Output {
    s.kubectl_with(
        k,
        &[
            "-n",
            ns,
            "create",
            "configmap",
            name,
            "--from-literal=a=1",
            "--from-literal=b=2",
            "--from-literal=c=3",
        ],
        None,
    )
}

/// `paramRef` parameters and the `Warn` action: the request passes with
/// kube-apiserver's warning; without the parameter object, `Deny` refuses.
fn policy_params_and_warn(s: &KeelServer, k: &Path) {
    s.ok_in(k, &["apply", "-f", "-"], Some(PARAM_POLICY));
    let probe = |name: &str| three_keys(s, k, "limited", name);
    // No cm-limits yet: parameterNotFoundAction Deny fails the binding,
    // which (validationActions: Warn) answers with a warning.
    let mut n = 0;
    eventually("the binding to fail without params", || {
        n += 1;
        let out = probe(&format!("early-{n}"));
        String::from_utf8_lossy(&out.stderr)
            .contains("no params found for policy binding with `Deny` parameterNotFoundAction")
    });
    s.ok(
        k,
        &[
            "-n",
            "default",
            "create",
            "configmap",
            "cm-limits",
            "--from-literal=maxKeys=2",
        ],
    );
    let out = probe("three-keys");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: Validation failed for ValidatingAdmissionPolicy 'cm-keys' with binding 'cm-keys-warn': at most 2 keys"),
        "{stderr}"
    );
}

const SELECTOR_POLICY: &str = r"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: cm-keys-sel}
spec:
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - {apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}
  validations:
  - expression: '!has(object.data) || size(object.data) <= int(params.data.maxKeys)'
    messageExpression: '''at most '' + params.data.maxKeys + '' keys'''
  auditAnnotations:
  - key: keys
    valueExpression: 'has(object.data) ? string(size(object.data)) : null'
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: cm-keys-sel-deny}
spec:
  policyName: cm-keys-sel
  validationActions: [Deny, Audit]
  paramRef:
    namespace: default
    selector: {matchLabels: {cm-limit: 'yes'}}
    parameterNotFoundAction: Allow
  matchResources:
    namespaceSelector:
      matchLabels: {selected: 'yes'}
";

/// `paramRef.selector` binds every matching parameter object (the policy
/// runs once for each; none with `Allow` admits), `auditAnnotations` and
/// the `Audit` action write kube-apiserver's annotations to the audit log.
fn policy_param_selector_and_audit(s: &KeelServer, k: &Path) {
    s.ok(k, &["create", "namespace", "selected"]);
    s.ok(k, &["label", "namespace", "selected", "selected=yes"]);
    s.ok_in(k, &["apply", "-f", "-"], Some(SELECTOR_POLICY));
    let probe = |name: &str| three_keys(s, k, "selected", name);
    let limit = |name: &str, max: &str| {
        s.ok_in(
            k,
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: default, labels: {{cm-limit: 'yes'}}}}\ndata: {{maxKeys: '{max}'}}\n"
            )),
        );
    };
    // No parameter matches: Allow admits (the binding is skipped).
    assert!(probe("none-match").status.success());
    limit("lim-a", "5");
    eventually("lim-a to admit three keys with its annotation", || {
        probe("admitted").status.success()
    });
    limit("lim-b", "2");
    // lim-a admits three keys, lim-b does not: one failing param denies.
    let mut n = 0;
    eventually("the selected params to deny", || {
        n += 1;
        let out = probe(&format!("three-{n}"));
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains(
                "ValidatingAdmissionPolicy 'cm-keys-sel' with binding 'cm-keys-sel-deny' denied request: at most 2 keys",
            )
    });
    let denied = format!("three-{n}");
    let log = std::fs::read_to_string(s.state_dir().join("audit.log")).unwrap_or_default();
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // The admitted request carries the policy's annotation (a skipped
    // binding records nothing)...
    assert!(
        events
            .iter()
            .any(|e| e["objectRef"]["name"] == "admitted"
                && e["annotations"]["cm-keys-sel/keys"] == "3"),
        "{log}"
    );
    assert!(!log.contains("\"none-match\""), "{log}");
    // ...the denied one also the Audit action's failure list.
    let e = events
        .iter()
        .find(|e| e["objectRef"]["name"] == denied.as_str())
        .unwrap_or_else(|| panic!("no audit event for {denied}: {log}"));
    let failures: serde_json::Value = serde_json::from_str(
        e["annotations"]["validation.policy.admission.k8s.io/validation_failure"]
            .as_str()
            .unwrap_or("null"),
    )
    .unwrap();
    assert_eq!(
        failures,
        serde_json::json!([{
            "message": "at most 2 keys",
            "policy": "cm-keys-sel",
            "binding": "cm-keys-sel-deny",
            "expressionIndex": 0,
            "validationActions": ["Deny", "Audit"],
        }]),
        "{e}"
    );
}

const AUTHZ_POLICY: &str = r"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: deployers-only}
spec:
  matchConstraints:
    resourceRules:
    - {apiGroups: [''], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}
  validations:
  - expression: authorizer.group('apps').resource('deployments').namespace(object.metadata.namespace).check('delete').allowed()
    messageExpression: '''only who may delete deployments, not '' + request.userInfo.username'
  - expression: authorizer.requestResource.check('create').allowed() && authorizer.requestResource.check('create').reason() != 'x'
  - expression: authorizer.serviceAccount('gated', 'editor').group('apps').resource('deployments').namespace('gated').check('create').allowed()
    message: the editor account lost its rights
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: deployers-only}
spec:
  policyName: deployers-only
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {gated: 'yes'}
";

/// The `authorizer` variable: a policy admitting config maps only from who
/// may delete Deployments, asked of RBAC for the requesting user, for a
/// named service account, and for the request's own resource.
fn policy_authorizer(s: &KeelServer, k: &Path) {
    s.ok(k, &["create", "namespace", "gated"]);
    s.ok(k, &["label", "namespace", "gated", "gated=yes"]);
    for (sa, role) in [("viewer", "view"), ("editor", "edit")] {
        s.ok(k, &["-n", "gated", "create", "serviceaccount", sa]);
        s.ok(
            k,
            &[
                "-n",
                "gated",
                "create",
                "rolebinding",
                sa,
                &format!("--clusterrole={role}"),
                &format!("--serviceaccount=gated:{sa}"),
            ],
        );
    }
    // The viewer may create ConfigMaps (a Role of its own) but not delete Deployments.
    s.ok(
        k,
        &[
            "-n",
            "gated",
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
            "gated",
            "create",
            "rolebinding",
            "viewer-cm",
            "--role=cm-writer",
            "--serviceaccount=gated:viewer",
        ],
    );
    s.ok_in(k, &["apply", "-f", "-"], Some(AUTHZ_POLICY));
    let token = |sa: &str| {
        s.ok(k, &["-n", "gated", "create", "token", sa])
            .trim()
            .to_string()
    };
    let (viewer, editor) = (token("viewer"), token("editor"));
    let create = |token: &str, name: &str| {
        s.kubectl_with(
            k,
            &["--token", token, "-n", "gated", "create", "configmap", name],
            None,
        )
    };
    eventually("the policy to deny the viewer", || {
        !create(&viewer, "probe").status.success()
    });
    let out = create(&viewer, "from-viewer");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ValidatingAdmissionPolicy 'deployers-only' with binding 'deployers-only' denied request: only who may delete deployments, not system:serviceaccount:gated:viewer"),
        "{err}"
    );
    let out = create(&editor, "from-editor");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The admin (system:masters) may do anything.
    s.ok(k, &["-n", "gated", "create", "configmap", "from-admin"]);
    // Taking the editor's rights away fails the serviceAccount check for everyone.
    s.ok(k, &["-n", "gated", "delete", "rolebinding", "editor"]);
    eventually("the editor's rights to be gone", || {
        let out = s.kubectl_with(k, &["-n", "gated", "create", "configmap", "again"], None);
        String::from_utf8_lossy(&out.stderr).contains("the editor account lost its rights")
    });
    // A function no library declares is refused when the policy is written.
    let bad = AUTHZ_POLICY
        .split("---")
        .next()
        .unwrap()
        .replace("deployers-only}", "typo}")
        .replace(
            ".allowed()\n    messageExpression",
            ".alowed()\n    messageExpression",
        );
    let err = s.fails(k, &["apply", "-f", "-"], Some(&bad));
    assert!(
        err.contains("spec.validations[0].expression: Invalid value:")
            && err.contains("undeclared reference to 'alowed'"),
        "{err}"
    );
}

#[test]
fn cel_with_kubectl_1_32() {
    let s = KeelServer::start(None);
    let k = &kubectls()[0];
    crd_rules(&s, k);
    webhook_match_conditions(&s, k);
    admission_policy(&s, k);
    policy_params_and_warn(&s, k);
    policy_param_selector_and_audit(&s, k);
    policy_authorizer(&s, k);
}

#[test]
fn cel_with_kubectl_1_33_on_three_member_etcd() {
    let cluster = keel_store::testing::EtcdCluster::start(3);
    let s = KeelServer::start(Some(cluster.datastore_url()));
    let k = &kubectls()[1];
    crd_rules(&s, k);
    webhook_match_conditions(&s, k);
    admission_policy(&s, k);
    policy_params_and_warn(&s, k);
    policy_param_selector_and_audit(&s, k);
    policy_authorizer(&s, k);
}
