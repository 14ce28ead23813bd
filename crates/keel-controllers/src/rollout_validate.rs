//! Argo Rollouts' validation of a `Rollout` spec and of the Services and
//! Ingresses it names, with Argo's field paths and messages (`kubectl argo rollouts
//! lint` prints them; Argo's controller marks a Rollout that fails them
//! `InvalidSpec` instead of refusing it at admission, and so should keel's).
//! Pure functions over the object as JSON, so `keel rollout lint` and the
//! rollout controller share them. Not covered: the full Kubernetes pod
//! template validation Argo borrows from the API server (keel's API server
//! validates pod templates where they become `ReplicaSets`), Istio
//! `VirtualServices` and analysis-template references.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value as J;

/// One problem, as Kubernetes' `field.Error` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `spec.strategy.maxSurge`.
    pub field: String,
    pub kind: ErrorKind,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// `Invalid value: <value>` (the value as Go's `%#v`-like rendering).
    Invalid(String),
    Required,
    Internal,
}

impl FieldError {
    fn invalid(field: impl Into<String>, value: &J, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: ErrorKind::Invalid(render(value)),
            detail: detail.into(),
        }
    }

    fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind: ErrorKind::Required,
            detail: detail.into(),
        }
    }

    /// The message without the field path (`ErrorBody` in Go).
    #[must_use]
    pub fn body(&self) -> String {
        match &self.kind {
            ErrorKind::Invalid(v) => format!("Invalid value: {v}: {}", self.detail),
            ErrorKind::Required => format!("Required value: {}", self.detail),
            ErrorKind::Internal => format!("Internal error: {}", self.detail),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// A value as Kubernetes' field errors print it: strings quoted, numbers bare.
fn render(v: &J) -> String {
    match v {
        J::String(s) => format!("{s:?}"),
        J::Null => "null".to_string(),
        other => other.to_string(),
    }
}

const MISSING: &str = "Rollout has missing field";
const MAX_SURGE_UNAVAILABLE: &str = "MaxSurge and MaxUnavailable both can not be zero";
const DUP_BLUE_GREEN: &str = "This rollout uses the same service for the active and preview services, but two different services are required.";
const DUP_CANARY: &str = "This rollout uses the same service for the stable and canary services, but two different services are required.";
const TRAFFIC_SERVICES: &str =
    "Canary service and Stable service must to be set to use Traffic Routing";
const STEP_KIND: &str = "Step must have one of the following set: experiment, setWeight, setCanaryScale, plugin or pause";

/// The keys Argo's Go types accept at the levels it decodes strictly: an
/// unknown one there fails the whole file, as `yaml.UnmarshalStrict` does.
fn known_keys(level: &str) -> &'static [&'static str] {
    match level {
        "rollout" => &["apiVersion", "kind", "metadata", "spec", "status"],
        "spec" => &[
            "replicas",
            "selector",
            "template",
            "workloadRef",
            "minReadySeconds",
            "rollbackWindow",
            "strategy",
            "revisionHistoryLimit",
            "paused",
            "progressDeadlineSeconds",
            "progressDeadlineAbort",
            "restartAt",
            "analysis",
        ],
        "strategy" => &["blueGreen", "canary"],
        "canary" => &[
            "canaryService",
            "stableService",
            "steps",
            "trafficRouting",
            "maxUnavailable",
            "maxSurge",
            "analysis",
            "antiAffinity",
            "canaryMetadata",
            "stableMetadata",
            "scaleDownDelaySeconds",
            "scaleDownDelayRevisionLimit",
            "abortScaleDownDelaySeconds",
            "dynamicStableScale",
            "pingPong",
            "minPodsPerReplicaSet",
            "replicaProgressThreshold",
        ],
        "blueGreen" => &[
            "activeService",
            "previewService",
            "previewReplicaCount",
            "autoPromotionEnabled",
            "autoPromotionSeconds",
            "maxUnavailable",
            "scaleDownDelaySeconds",
            "scaleDownDelayRevisionLimit",
            "prePromotionAnalysis",
            "antiAffinity",
            "postPromotionAnalysis",
            "previewMetadata",
            "activeMetadata",
            "abortScaleDownDelaySeconds",
        ],
        "step" => &[
            "setWeight",
            "pause",
            "experiment",
            "analysis",
            "setCanaryScale",
            "setHeaderRoute",
            "setMirrorRoute",
            "plugin",
        ],
        _ => &[],
    }
}

fn unknown_in(obj: &J, level: &str) -> Option<String> {
    let keys = known_keys(level);
    obj.as_object()?
        .keys()
        .find(|k| !keys.contains(&k.as_str()))
        .cloned()
}

/// Argo's strict decoding of a Rollout: `Err` names the first field its Go
/// types do not have, with Go's message.
///
/// # Errors
/// The first unknown field, as `encoding/json` reports it.
pub fn check_fields(rollout: &J) -> Result<(), String> {
    let spec = &rollout["spec"];
    let strategy = &spec["strategy"];
    let mut levels = vec![
        (rollout, "rollout"),
        (spec, "spec"),
        (strategy, "strategy"),
        (&strategy["canary"], "canary"),
        (&strategy["blueGreen"], "blueGreen"),
    ];
    for step in strategy["canary"]["steps"].as_array().into_iter().flatten() {
        levels.push((step, "step"));
    }
    for (obj, level) in levels {
        if let Some(k) = unknown_in(obj, level) {
            return Err(format!(
                "error unmarshaling JSON: while decoding JSON: json: unknown field {k:?}"
            ));
        }
    }
    Ok(())
}

/// An int-or-percent's number (`"25%"` → 25), as Argo compares them to zero.
fn int_or_percent(v: &J) -> Option<i64> {
    match v {
        J::Number(n) => n.as_i64(),
        J::String(s) => s.trim_end_matches('%').parse().ok(),
        _ => None,
    }
}

/// The largest weight a step may set (`trafficRouting.maxTrafficWeight`, else 100).
#[must_use]
pub fn max_traffic_weight(rollout: &J) -> i64 {
    rollout["spec"]["strategy"]["canary"]["trafficRouting"]["maxTrafficWeight"]
        .as_i64()
        .unwrap_or(100)
}

fn non_empty(v: &J) -> Option<&str> {
    v.as_str().filter(|s| !s.is_empty())
}

/// Argo's `ValidateRollout`: every problem of the spec, in Argo's order.
#[must_use]
pub fn validate(rollout: &J) -> Vec<FieldError> {
    let spec = &rollout["spec"];
    let mut errs = Vec::new();
    for (name, default) in [
        ("replicas", 1),
        ("minReadySeconds", 0),
        ("revisionHistoryLimit", 10),
    ] {
        let v = spec[name].as_i64().unwrap_or(default);
        if v < 0 {
            errs.push(FieldError::invalid(
                format!("spec.{name}"),
                &J::from(v),
                "must be greater than or equal to 0",
            ));
        }
    }
    let workload_ref = spec.get("workloadRef").is_some_and(|w| !w.is_null());
    let selector = &spec["selector"];
    if !workload_ref {
        if selector.is_null() {
            errs.push(FieldError::required(
                "spec.selector",
                format!("{MISSING} '.spec.selector'"),
            ));
        } else {
            let labels = selector["matchLabels"]
                .as_object()
                .map_or(0, serde_json::Map::len);
            let exprs = selector["matchExpressions"].as_array().map_or(0, Vec::len);
            if labels + exprs == 0 {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    selector,
                    "empty selector is invalid for deployment",
                ));
            } else if !selects(selector, &spec["template"]["metadata"]["labels"]) {
                errs.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    &spec["template"]["metadata"]["labels"],
                    "`selector` does not match template `labels`",
                ));
            }
        }
    } else if spec["template"].as_object().is_some_and(|t| {
        t.values()
            .any(|v| !v.is_null() && v != &J::Object(serde_json::Map::new()))
    }) {
        errs.push(FieldError {
            field: "spec.template".into(),
            kind: ErrorKind::Internal,
            detail: "template must be empty for workload reference rollout".into(),
        });
    }
    let min_ready = spec["minReadySeconds"].as_i64().unwrap_or(0);
    let deadline = spec["progressDeadlineSeconds"].as_i64().unwrap_or(600);
    if deadline <= min_ready {
        errs.push(FieldError::invalid(
            "spec.progressDeadlineSeconds",
            &J::from(deadline),
            "must be greater than minReadySeconds",
        ));
    }
    errs.extend(validate_strategy(rollout));
    errs
}

/// Whether a label selector's `matchLabels` and `matchExpressions` select `labels`.
fn selects(selector: &J, labels: &J) -> bool {
    let get = |k: &str| labels.get(k).and_then(J::as_str);
    let ok_labels = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| get(k) == v.as_str());
    let ok_exprs = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or_default();
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(J::as_str)
                .collect();
            match e["operator"].as_str().unwrap_or_default() {
                "In" => get(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => get(key).is_none_or(|v| !values.contains(&v)),
                "Exists" => get(key).is_some(),
                "DoesNotExist" => get(key).is_none(),
                _ => false,
            }
        });
    ok_labels && ok_exprs
}

fn validate_strategy(rollout: &J) -> Vec<FieldError> {
    let strategy = &rollout["spec"]["strategy"];
    let bg = &strategy["blueGreen"];
    let canary = &strategy["canary"];
    let mut errs = Vec::new();
    match (bg.is_object(), canary.is_object()) {
        (false, false) => errs.push(FieldError::required(
            "spec.strategy.strategy",
            format!("{MISSING} '.spec.strategy.canary or .spec.strategy.blueGreen'"),
        )),
        (true, true) => errs.push(FieldError::invalid(
            "spec.strategy.strategy",
            &J::from("blueGreen: true canary: true"),
            "Multiple Strategies can not be listed",
        )),
        (true, false) => {
            if bg["activeService"].as_str().unwrap_or_default()
                == bg["previewService"].as_str().unwrap_or_default()
            {
                errs.push(FieldError::invalid(
                    "spec.strategy.activeService",
                    &bg["activeService"],
                    DUP_BLUE_GREEN,
                ));
            }
            let limit = rollout["spec"]["revisionHistoryLimit"]
                .as_i64()
                .unwrap_or(10);
            if let Some(sd) = bg["scaleDownDelayRevisionLimit"].as_i64()
                && limit < sd
            {
                errs.push(FieldError::invalid(
                    "spec.strategy.scaleDownDelayRevisionLimit",
                    &J::from(sd),
                    "This rollout's revision history limit can not be smaller than the rollout's scale down limit",
                ));
            }
        }
        (false, true) => errs.extend(validate_canary(rollout, canary)),
    }
    errs
}

fn validate_canary(rollout: &J, canary: &J) -> Vec<FieldError> {
    let p = "spec.strategy";
    let mut errs = Vec::new();
    let surge = canary.get("maxSurge").filter(|v| !v.is_null());
    let unavailable = canary.get("maxUnavailable").filter(|v| !v.is_null());
    let surge_v = surge.map_or(Some(25), int_or_percent);
    let unavailable_v = unavailable.map_or(Some(25), int_or_percent);
    if surge_v == Some(0) && unavailable_v == Some(0) {
        errs.push(FieldError::invalid(
            format!("{p}.maxSurge"),
            surge.unwrap_or(&J::Null),
            MAX_SURGE_UNAVAILABLE,
        ));
    }
    let canary_svc = non_empty(&canary["canaryService"]);
    let stable_svc = non_empty(&canary["stableService"]);
    if canary_svc.is_some() && canary_svc == stable_svc {
        errs.push(FieldError::invalid(
            format!("{p}.stableService"),
            &canary["stableService"],
            DUP_CANARY,
        ));
    }
    let routing = canary.get("trafficRouting").filter(|v| v.is_object());
    let has = |k: &str| routing.is_some_and(|r| r.get(k).is_some_and(|v| !v.is_null()));
    let plugins = routing.is_some_and(|r| r["plugins"].as_object().is_some_and(|m| !m.is_empty()));
    if let Some(pp) = canary.get("pingPong").filter(|v| v.is_object()) {
        if routing.is_some() && !has("alb") && !has("istio") && !plugins {
            errs.push(FieldError::invalid(
                format!("{p}.trafficRouting.alb"),
                &J::Null,
                "Ping-pong feature works with the ALB, Istio, and plugin-based traffic routers only",
            ));
        }
        let ping = pp["pingService"].as_str().unwrap_or_default();
        let pong = pp["pongService"].as_str().unwrap_or_default();
        for (name, v) in [("pingService", ping), ("pongService", pong)] {
            if v.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{p}.pingPong.{name}"),
                    &J::from(v),
                    "Ping service and Pong service must to be set to use Ping-Pong feature",
                ));
            }
        }
        if ping == pong {
            errs.push(FieldError::invalid(
                format!("{p}.pingPong.pingService"),
                &J::from(ping),
                "This rollout uses the same service for the ping and pong services, but two different services are required.",
            ));
        }
    }
    // Argo requires both Services for the routers that split between them.
    let ping_pong = canary.get("pingPong").is_some_and(|v| !v.is_null());
    let istio_dr = routing.is_some_and(|r| !r["istio"]["destinationRule"].is_null());
    let needs_services = (has("alb") && !ping_pong)
        || (has("istio") && !istio_dr && !ping_pong)
        || ["smi", "apisix", "ambassador", "nginx", "appMesh", "traefik"]
            .iter()
            .any(|k| has(k));
    if needs_services {
        for (name, v) in [("stableService", stable_svc), ("canaryService", canary_svc)] {
            if v.is_none() {
                errs.push(FieldError::invalid(
                    format!("{p}.{name}"),
                    &J::from(""),
                    TRAFFIC_SERVICES,
                ));
            }
        }
    }
    if routing.is_none() {
        if let Some(d) = canary.get("scaleDownDelaySeconds").filter(|v| !v.is_null()) {
            errs.push(FieldError::invalid(
                format!("{p}.scaleDownDelaySeconds"),
                d,
                "Canary scaleDownDelaySeconds can only be used with traffic routing",
            ));
        }
        if canary["dynamicStableScale"].as_bool() == Some(true) {
            errs.push(FieldError::invalid(
                format!("{p}.dynamicStableScale"),
                &J::Bool(true),
                "Canary dynamicStableScale can only be used with traffic routing",
            ));
        }
    } else {
        if canary
            .get("scaleDownDelaySeconds")
            .is_some_and(|v| !v.is_null())
            && canary["dynamicStableScale"].as_bool() == Some(true)
        {
            errs.push(FieldError::invalid(
                format!("{p}.dynamicStableScale"),
                &J::Bool(true),
                "Canary dynamicStableScale cannot be used with scaleDownDelaySeconds",
            ));
        }
        if has("maxTrafficWeight") && !has("nginx") && !plugins {
            errs.push(FieldError::invalid(
                format!("{p}.trafficRouting.maxTrafficWeight"),
                &routing.map_or(J::Null, |r| r["maxTrafficWeight"].clone()),
                "Canary maxTrafficWeight in traffic routing only supported in Nginx and Plugins",
            ));
        }
    }
    let max_weight = max_traffic_weight(rollout);
    for (i, step) in canary["steps"].as_array().into_iter().flatten().enumerate() {
        let sp = format!("{p}.steps[{i}]");
        let kinds = known_keys("step");
        let set: Vec<&str> = kinds
            .iter()
            .copied()
            .filter(|k| step.get(*k).is_some_and(|v| !v.is_null()))
            .collect();
        if set.is_empty() {
            errs.push(FieldError::invalid(
                sp.clone(),
                &J::from("step.Experiment: true step.Pause: true step.SetWeight: true step.Analysis: true step.SetCanaryScale: true step.SetHeaderRoute: true step.SetMirrorRoute: true step.Plugin: true"),
                STEP_KIND,
            ));
        }
        let one_of = ["setWeight", "pause", "experiment", "analysis"];
        if one_of.iter().filter(|k| set.contains(k)).count() > 1 {
            let is = |k: &str| set.contains(&k);
            errs.push(FieldError::invalid(
                sp.clone(),
                &J::from(format!(
                    "step.Experiment: {} step.Pause: {} step.SetWeight: {} step.Analysis: {}",
                    is("experiment"),
                    is("pause"),
                    is("setWeight"),
                    is("analysis")
                )),
                STEP_KIND,
            ));
        }
        if let Some(w) = step["setWeight"].as_i64()
            && !(0..=max_weight).contains(&w)
        {
            errs.push(FieldError::invalid(
                format!("{sp}.setWeight"),
                &J::from(w),
                format!("SetWeight needs to be between 0 and {max_weight}"),
            ));
        }
        if step.get("setCanaryScale").is_some_and(|v| !v.is_null()) && routing.is_none() {
            errs.push(FieldError::required(
                format!("{p}.trafficRouting"),
                "SetCanaryScale requires TrafficRouting to be set",
            ));
        }
        for (t, tmpl) in step["experiment"]["templates"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(w) = tmpl.get("weight").filter(|v| !v.is_null()) else {
                continue;
            };
            let f = format!("{sp}.experiment.templates[{t}].weight");
            if routing.is_none() {
                errs.push(FieldError::invalid(
                    f,
                    w,
                    "Experiment template weight cannot be set unless TrafficRouting is enabled",
                ));
            } else if !has("alb") && !has("smi") && !has("istio") && !plugins {
                errs.push(FieldError::invalid(
                    f,
                    w,
                    "Experiment template weight is only available for TrafficRouting with SMI, ALB, Istio and Plugins at this time",
                ));
            }
        }
    }
    errs
}

/// Argo's checks of the Services a Rollout names (found among `services`
/// by name): their selectors must match the pod template's labels, except
/// for `rollouts-pod-template-hash`.
#[must_use]
pub fn validate_services(rollout: &J, services: &[J]) -> Vec<FieldError> {
    let strategy = &rollout["spec"]["strategy"];
    let roles = [
        ("canary.canaryService", &strategy["canary"]["canaryService"]),
        ("canary.stableService", &strategy["canary"]["stableService"]),
        (
            "canary.pingPong.pingService",
            &strategy["canary"]["pingPong"]["pingService"],
        ),
        (
            "canary.pingPong.pongService",
            &strategy["canary"]["pingPong"]["pongService"],
        ),
        (
            "blueGreen.activeService",
            &strategy["blueGreen"]["activeService"],
        ),
        (
            "blueGreen.previewService",
            &strategy["blueGreen"]["previewService"],
        ),
    ];
    let labels = &rollout["spec"]["template"]["metadata"]["labels"];
    let mut errs = Vec::new();
    for svc in services {
        let name = svc["metadata"]["name"].as_str().unwrap_or_default();
        // The last role naming the Service wins, as in Argo's lint.
        let Some((role, _)) = roles
            .iter()
            .rev()
            .find(|(_, v)| v.as_str() == Some(name) && !name.is_empty())
        else {
            continue;
        };
        let selector: BTreeMap<&str, &str> = svc["spec"]["selector"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
            .collect();
        for (k, v) in selector {
            if k == "rollouts-pod-template-hash" {
                continue;
            }
            if labels.get(k).and_then(J::as_str) != Some(v) {
                errs.push(FieldError::invalid(
                    format!("spec.strategy.{role}"),
                    &J::from(name),
                    format!("Service {name:?} has unmatch label {k:?} in rollout"),
                ));
            }
        }
    }
    errs
}

/// Whether an Ingress (`networking.k8s.io/v1` or `extensions/v1beta1`) has
/// a rule whose backend is Service `svc`.
fn ingress_uses(ingress: &J, svc: &str) -> bool {
    ingress["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["http"]["paths"].as_array().into_iter().flatten())
        .any(|p| {
            let b = &p["backend"];
            b["service"]["name"].as_str() == Some(svc) || b["serviceName"].as_str() == Some(svc)
        })
}

/// Argo's checks of the Ingresses a canary's nginx or ALB routing names
/// (found among `ingresses` by name): each must route to the stable
/// Service (ALB: its `rootService` when set). Argo's lint matches
/// Ingresses to Rollouts by that same rule, so only the controller
/// (`InvalidSpec`) ever reports these.
#[must_use]
pub fn validate_ingresses(rollout: &J, ingresses: &[J]) -> Vec<FieldError> {
    let canary = &rollout["spec"]["strategy"]["canary"];
    let routing = &canary["trafficRouting"];
    let stable = canary["stableService"].as_str().unwrap_or_default();
    let names = |v: &J| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect()
    };
    let mut errs = Vec::new();
    for ing in ingresses {
        let name = ing["metadata"]["name"].as_str().unwrap_or_default();
        let nginx = &routing["nginx"];
        let alb = &routing["alb"];
        let (field, svc) = if nginx.is_object()
            && (nginx["stableIngress"].as_str() == Some(name)
                || names(&nginx["stableIngresses"]).iter().any(|n| n == name))
        {
            if names(&nginx["stableIngresses"]).iter().any(|n| n == name) {
                ("nginx.stableIngresses", stable)
            } else {
                ("nginx.stableIngress", stable)
            }
        } else if alb.is_object()
            && (alb["ingress"].as_str() == Some(name)
                || names(&alb["ingresses"]).iter().any(|n| n == name))
        {
            let svc = non_empty(&alb["rootService"]).unwrap_or(stable);
            if names(&alb["ingresses"]).iter().any(|n| n == name) {
                ("alb.ingresses", svc)
            } else {
                ("alb.ingress", svc)
            }
        } else {
            continue;
        };
        if !ingress_uses(ing, svc) {
            errs.push(FieldError::invalid(
                format!("spec.strategy.canary.trafficRouting.{field}"),
                &J::from(name),
                format!("ingress `{name}` has no rules using service {svc} backend"),
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn zero_surge_and_unavailable_is_argo_message() {
        let ro = json!({"spec": {"selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}},
            "strategy": {"canary": {"maxSurge": 0, "maxUnavailable": "0%"}}}});
        let errs = validate(&ro);
        assert_eq!(
            errs[0].to_string(),
            "spec.strategy.maxSurge: Invalid value: 0: MaxSurge and MaxUnavailable both can not be zero"
        );
        assert_eq!(errs.len(), 1);
    }

    #[test]
    fn defaults_are_valid_and_unknown_fields_named() {
        let ro = json!({"spec": {"selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}},
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}], "x": 1}}}});
        assert!(validate(&ro).is_empty());
        assert_eq!(
            check_fields(&ro).unwrap_err(),
            "error unmarshaling JSON: while decoding JSON: json: unknown field \"x\""
        );
    }

    #[test]
    fn selector_must_select_template() {
        let ro = json!({"spec": {"selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "c"}}},
            "strategy": {"blueGreen": {"activeService": "x", "previewService": "y"}}}});
        assert_eq!(validate(&ro)[0].field, "spec.template.metadata.labels");
    }

    #[test]
    fn nginx_stable_ingress_must_route_to_stable_service() {
        let ro = json!({"spec": {"strategy": {"canary": {"stableService": "web-stable",
            "canaryService": "web-canary", "trafficRouting": {"nginx": {"stableIngress": "web"}}}}}});
        let ing = |svc: &str| {
            json!({"metadata": {"name": "web"}, "spec": {"rules": [{"http": {"paths": [
            {"path": "/", "backend": {"service": {"name": svc, "port": {"number": 80}}}}]}}]}})
        };
        assert!(validate_ingresses(&ro, &[ing("web-stable")]).is_empty());
        assert_eq!(
            validate_ingresses(&ro, &[ing("other")])[0].to_string(),
            "spec.strategy.canary.trafficRouting.nginx.stableIngress: Invalid value: \"web\": ingress `web` has no rules using service web-stable backend"
        );
    }
}
