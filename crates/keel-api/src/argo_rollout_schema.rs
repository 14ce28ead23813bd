//! Structural schema of Argo's `Rollout` (spec and status), built from
//! Argo's Go types (`pkg/apis/rollouts/v1alpha1/types.go`) as read: the
//! strategies, steps, analysis references, traffic routing and the status
//! Argo's controller writes are typed; plugin configuration stays open as
//! in Argo's CRD. The pod template's spec is generated from the same
//! Kubernetes definitions keel serves Pods with (`k8s-openapi`), inlined as
//! controller-gen inlines them for Argo, `volumes` left open as Argo leaves
//! them. Wrongly typed fields are refused by the CRD validation with
//! Kubernetes' messages; a typed schema also prunes unknown fields, so every
//! field of Argo's CRD is here (the unit test compares them).

use serde_json::{Value, json};

use crate::argo_analysis_schema::{args, array, boolean, int_or_string, object, open, string};

fn int32() -> Value {
    json!({"type": "integer", "format": "int32"})
}

fn int64() -> Value {
    json!({"type": "integer", "format": "int64"})
}

fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

fn strings() -> Value {
    array(string())
}

fn string_map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}})
}

/// Labels and annotations (Argo's `PodTemplateMetadata`).
fn labels_and_annotations() -> Value {
    object(
        &[("annotations", string_map()), ("labels", string_map())],
        &[],
    )
}

fn label_selector() -> Value {
    let atomic = |mut v: Value| {
        v["x-kubernetes-list-type"] = json!("atomic");
        v
    };
    let mut s = object(
        &[
            (
                "matchExpressions",
                atomic(array(object(
                    &[
                        ("key", string()),
                        ("operator", string()),
                        ("values", atomic(strings())),
                    ],
                    &["key", "operator"],
                ))),
            ),
            ("matchLabels", string_map()),
        ],
        &[],
    );
    s["x-kubernetes-map-type"] = json!("atomic");
    s
}

fn dry_run() -> Value {
    array(object(&[("metricName", string())], &["metricName"]))
}

fn measurement_retention() -> Value {
    array(object(
        &[("limit", int32()), ("metricName", string())],
        &["limit", "metricName"],
    ))
}

/// `RolloutAnalysis`; the background analysis also has `startingStep`.
fn analysis(background: bool) -> Value {
    let mut props = vec![
        ("analysisRunMetadata", labels_and_annotations()),
        ("args", args(false)),
        ("dryRun", dry_run()),
        ("measurementRetention", measurement_retention()),
        (
            "templates",
            array(object(
                &[("clusterScope", boolean()), ("templateName", string())],
                &[],
            )),
        ),
    ];
    if background {
        props.push(("startingStep", int32()));
    }
    object(&props, &[])
}

fn anti_affinity() -> Value {
    object(
        &[
            (
                "preferredDuringSchedulingIgnoredDuringExecution",
                object(&[("weight", int32())], &["weight"]),
            ),
            (
                "requiredDuringSchedulingIgnoredDuringExecution",
                json!({"type": "object"}),
            ),
        ],
        &[],
    )
}

fn blue_green() -> Value {
    object(
        &[
            ("abortScaleDownDelaySeconds", int32()),
            ("activeMetadata", labels_and_annotations()),
            ("activeService", string()),
            ("antiAffinity", anti_affinity()),
            ("autoPromotionEnabled", boolean()),
            ("autoPromotionSeconds", int32()),
            ("maxUnavailable", int_or_string()),
            ("postPromotionAnalysis", analysis(false)),
            ("prePromotionAnalysis", analysis(false)),
            ("previewMetadata", labels_and_annotations()),
            ("previewReplicaCount", int32()),
            ("previewService", string()),
            ("scaleDownDelayRevisionLimit", int32()),
            ("scaleDownDelaySeconds", int32()),
        ],
        &["activeService"],
    )
}

/// An Experiment's analysis; one an `experiment` step declares takes a
/// Rollout's arguments (`secrets` false), an Experiment's own the analysis
/// kinds'.
fn experiment_analysis(secrets: bool) -> Value {
    object(
        &[
            ("args", args(secrets)),
            ("clusterScope", boolean()),
            ("name", string()),
            ("requiredForCompletion", boolean()),
            ("templateName", string()),
        ],
        &["name", "templateName"],
    )
}

/// A status condition as Argo's types have them (Rollout and Experiment).
fn condition() -> Value {
    object(
        &[
            ("lastTransitionTime", time()),
            ("lastUpdateTime", time()),
            ("message", string()),
            ("reason", string()),
            ("status", string()),
            ("type", string()),
        ],
        &[
            "lastTransitionTime",
            "lastUpdateTime",
            "message",
            "reason",
            "status",
            "type",
        ],
    )
}

fn experiment_step() -> Value {
    object(
        &[
            ("analyses", array(experiment_analysis(false))),
            ("analysisRunMetadata", labels_and_annotations()),
            ("dryRun", dry_run()),
            ("duration", string()),
            ("scaleDownDelaySeconds", int32()),
            (
                "templates",
                array(object(
                    &[
                        ("metadata", labels_and_annotations()),
                        ("name", string()),
                        ("replicas", int32()),
                        ("selector", label_selector()),
                        ("service", object(&[("name", string())], &[])),
                        ("specRef", string()),
                        ("weight", int32()),
                    ],
                    &["name", "specRef"],
                )),
            ),
        ],
        &["templates"],
    )
}

fn string_match() -> Value {
    object(
        &[
            ("exact", string()),
            ("prefix", string()),
            ("regex", string()),
        ],
        &[],
    )
}

fn step() -> Value {
    object(
        &[
            ("analysis", analysis(false)),
            ("experiment", experiment_step()),
            ("pause", object(&[("duration", int_or_string())], &[])),
            (
                "plugin",
                object(&[("config", open()), ("name", string())], &["name"]),
            ),
            (
                "setCanaryScale",
                object(
                    &[
                        ("matchTrafficWeight", boolean()),
                        ("replicas", int32()),
                        ("weight", int32()),
                    ],
                    &[],
                ),
            ),
            (
                "setHeaderRoute",
                object(
                    &[
                        (
                            "match",
                            array(object(
                                &[("headerName", string()), ("headerValue", string_match())],
                                &["headerName", "headerValue"],
                            )),
                        ),
                        ("name", string()),
                    ],
                    &[],
                ),
            ),
            (
                "setMirrorRoute",
                object(
                    &[
                        (
                            "match",
                            array(object(
                                &[
                                    (
                                        "headers",
                                        json!({"type": "object", "additionalProperties": string_match()}),
                                    ),
                                    ("method", string_match()),
                                    ("path", string_match()),
                                ],
                                &[],
                            )),
                        ),
                        ("name", string()),
                        ("percentage", int32()),
                    ],
                    &["name"],
                ),
            ),
            ("setWeight", int32()),
        ],
        &[],
    )
}

fn named(extra: &[(&str, Value)]) -> Value {
    let mut props = vec![("name", string())];
    props.extend(extra.iter().cloned());
    object(&props, &["name"])
}

fn istio_virtual_service() -> Value {
    named(&[
        ("routes", strings()),
        ("tcpRoutes", array(object(&[("port", int64())], &[]))),
        (
            "tlsRoutes",
            array(object(&[("port", int64()), ("sniHosts", strings())], &[])),
        ),
    ])
}

fn traffic_routing() -> Value {
    object(
        &[
            (
                "alb",
                object(
                    &[
                        ("annotationPrefix", string()),
                        ("ingress", string()),
                        ("ingresses", strings()),
                        ("rootService", string()),
                        ("servicePort", int32()),
                        (
                            "stickinessConfig",
                            object(
                                &[("durationSeconds", int64()), ("enabled", boolean())],
                                &["durationSeconds", "enabled"],
                            ),
                        ),
                    ],
                    &["servicePort"],
                ),
            ),
            (
                "ambassador",
                object(&[("mappings", strings())], &["mappings"]),
            ),
            (
                "apisix",
                object(&[("route", named(&[("rules", strings())]))], &[]),
            ),
            (
                "appMesh",
                object(
                    &[
                        (
                            "virtualNodeGroup",
                            object(
                                &[
                                    ("canaryVirtualNodeRef", named(&[])),
                                    ("stableVirtualNodeRef", named(&[])),
                                ],
                                &["canaryVirtualNodeRef", "stableVirtualNodeRef"],
                            ),
                        ),
                        ("virtualService", named(&[("routes", strings())])),
                    ],
                    &[],
                ),
            ),
            (
                "istio",
                object(
                    &[
                        (
                            "destinationRule",
                            object(
                                &[
                                    ("additionalSubsetNames", strings()),
                                    ("canarySubsetName", string()),
                                    ("name", string()),
                                    ("stableSubsetName", string()),
                                ],
                                &["canarySubsetName", "name", "stableSubsetName"],
                            ),
                        ),
                        ("virtualService", istio_virtual_service()),
                        ("virtualServices", array(istio_virtual_service())),
                    ],
                    &[],
                ),
            ),
            ("managedRoutes", array(named(&[]))),
            ("maxTrafficWeight", int32()),
            (
                "nginx",
                object(
                    &[
                        ("additionalIngressAnnotations", string_map()),
                        ("annotationPrefix", string()),
                        ("canaryIngressAnnotations", string_map()),
                        ("stableIngress", string()),
                        ("stableIngresses", strings()),
                    ],
                    &[],
                ),
            ),
            // keel's gateway routes are configured here, as Argo's Gateway
            // API plugin is.
            ("plugins", open()),
            (
                "smi",
                object(
                    &[("rootService", string()), ("trafficSplitName", string())],
                    &[],
                ),
            ),
            (
                "traefik",
                object(
                    &[("weightedTraefikServiceName", string())],
                    &["weightedTraefikServiceName"],
                ),
            ),
        ],
        &[],
    )
}

fn canary() -> Value {
    object(
        &[
            ("abortScaleDownDelaySeconds", int32()),
            ("analysis", analysis(true)),
            ("antiAffinity", anti_affinity()),
            ("canaryMetadata", labels_and_annotations()),
            ("canaryService", string()),
            ("dynamicStableScale", boolean()),
            ("maxSurge", int_or_string()),
            ("maxUnavailable", int_or_string()),
            ("minPodsPerReplicaSet", int32()),
            (
                "pingPong",
                object(
                    &[("pingService", string()), ("pongService", string())],
                    &["pingService", "pongService"],
                ),
            ),
            (
                "replicaProgressThreshold",
                object(
                    &[("type", string()), ("value", int32())],
                    &["type", "value"],
                ),
            ),
            ("scaleDownDelayRevisionLimit", int32()),
            ("scaleDownDelaySeconds", int32()),
            ("stableMetadata", labels_and_annotations()),
            ("stableService", string()),
            ("steps", array(step())),
            ("trafficRouting", traffic_routing()),
        ],
        &[],
    )
}

fn spec() -> Value {
    let mut selector = label_selector();
    selector["x-kubernetes-validations"] =
        json!([{"message": ".spec.selector is immutable", "rule": "self == oldSelf"}]);
    object(
        &[
            (
                "analysis",
                object(
                    &[
                        ("successfulRunHistoryLimit", int32()),
                        ("unsuccessfulRunHistoryLimit", int32()),
                    ],
                    &[],
                ),
            ),
            ("minReadySeconds", int32()),
            ("paused", boolean()),
            ("progressDeadlineAbort", boolean()),
            ("progressDeadlineSeconds", int32()),
            ("replicas", int32()),
            ("restartAt", time()),
            ("revisionHistoryLimit", int32()),
            ("rollbackWindow", object(&[("revisions", int32())], &[])),
            ("selector", selector),
            (
                "strategy",
                object(&[("blueGreen", blue_green()), ("canary", canary())], &[]),
            ),
            (
                "template",
                object(
                    &[("metadata", labels_and_annotations()), ("spec", pod_spec())],
                    &[],
                ),
            ),
            (
                "workloadRef",
                object(
                    &[
                        ("apiVersion", string()),
                        ("kind", string()),
                        ("name", string()),
                        ("scaleDown", string()),
                    ],
                    &[],
                ),
            ),
        ],
        &[],
    )
}

fn run_status() -> Value {
    object(
        &[
            ("message", string()),
            ("name", string()),
            ("status", string()),
        ],
        &["name", "status"],
    )
}

fn alb_status() -> Value {
    let group = || {
        object(
            &[
                ("arn", string()),
                ("fullName", string()),
                ("name", string()),
            ],
            &["arn", "name"],
        )
    };
    object(
        &[
            ("canaryTargetGroup", group()),
            ("ingress", string()),
            ("loadBalancer", group()),
            ("stableTargetGroup", group()),
        ],
        &[],
    )
}

fn weight_destination() -> Value {
    object(
        &[
            ("podTemplateHash", string()),
            ("serviceName", string()),
            ("weight", int32()),
        ],
        &["weight"],
    )
}

fn status() -> Value {
    let canary = object(
        &[
            ("currentBackgroundAnalysisRunStatus", run_status()),
            ("currentExperiment", string()),
            ("currentStepAnalysisRunStatus", run_status()),
            ("stablePingPong", string()),
            (
                "stepPluginStatuses",
                array(object(
                    &[
                        ("backoff", string()),
                        ("disabled", boolean()),
                        ("executions", int32()),
                        ("finishedAt", time()),
                        ("index", int32()),
                        ("message", string()),
                        ("name", string()),
                        ("operation", string()),
                        ("phase", string()),
                        ("startedAt", time()),
                        ("status", open()),
                        ("updatedAt", time()),
                    ],
                    &["index", "name", "operation"],
                )),
            ),
            (
                "weights",
                object(
                    &[
                        ("additional", array(weight_destination())),
                        ("canary", weight_destination()),
                        ("stable", weight_destination()),
                        ("verified", boolean()),
                    ],
                    &["canary", "stable"],
                ),
            ),
        ],
        &[],
    );
    let blue_green = object(
        &[
            ("activeSelector", string()),
            ("postPromotionAnalysisRunStatus", run_status()),
            ("prePromotionAnalysisRunStatus", run_status()),
            ("previewSelector", string()),
            ("scaleUpPreviewCheckPoint", boolean()),
        ],
        &[],
    );
    object(
        &[
            ("HPAReplicas", int32()),
            ("abort", boolean()),
            ("abortedAt", time()),
            ("alb", alb_status()),
            ("albs", array(alb_status())),
            ("availableReplicas", int32()),
            ("blueGreen", blue_green),
            ("canary", canary),
            ("collisionCount", int32()),
            ("conditions", array(condition())),
            ("controllerPause", boolean()),
            ("currentPodHash", string()),
            ("currentStepHash", string()),
            ("currentStepIndex", int32()),
            (
                "duration",
                object(
                    &[
                        ("completionStatus", string()),
                        ("finishedAt", time()),
                        ("manualPauseStartedAt", time()),
                        ("rolloutStartedAt", time()),
                        ("totalManualPauseDurationSeconds", int64()),
                    ],
                    &[],
                ),
            ),
            ("message", string()),
            // A string in Argo's types, unlike Kubernetes' kinds.
            ("observedGeneration", string()),
            (
                "pauseConditions",
                array(object(
                    &[("reason", string()), ("startTime", time())],
                    &["reason", "startTime"],
                )),
            ),
            ("phase", string()),
            ("promoteFull", boolean()),
            ("readyReplicas", int32()),
            ("replicas", int32()),
            ("restartedAt", time()),
            ("selector", string()),
            ("stableRS", string()),
            ("updatedReplicas", int32()),
            ("workloadObservedGeneration", string()),
        ],
        &[],
    )
}

/// The pod template's spec: Kubernetes' `PodSpec` definition made
/// structural, `volumes` open (Argo's CRD leaves them open to stay small).
fn pod_spec() -> Value {
    let defs = &crate::openapi::SCHEMAS;
    let def = defs
        .defs
        .get("io.k8s.api.core.v1.PodSpec")
        .expect("PodSpec is served");
    let mut s = structural(def, 0);
    let open = || json!({"x-kubernetes-preserve-unknown-fields": true});
    s["properties"]["volumes"] = open();
    // Containers' requests and limits are open in Argo's CRD: a malformed
    // quantity there makes the Rollout InvalidSpec instead of a refusal
    // (Argo's e2e `expectedfailures/malformed-rollout.yaml`).
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        let resources = &mut s["properties"][list]["items"]["properties"]["resources"];
        for f in ["limits", "requests"] {
            resources["properties"][f] = open();
        }
    }
    s
}

/// Kubernetes' quantity syntax, as controller-gen writes it for `Quantity`.
const QUANTITY: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// One definition with its references inlined and only what a structural
/// schema validates kept (types, formats, properties, items, maps,
/// required); int-or-string in the `anyOf` form apiextensions requires.
fn structural(s: &Value, depth: usize) -> Value {
    let name = s
        .get("$ref")
        .or_else(|| s.pointer("/allOf/0/$ref"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let s = crate::openapi::SCHEMAS.resolve(s);
    if s.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
        let mut v = int_or_string();
        if name.ends_with(".api.resource.Quantity") {
            v["pattern"] = json!(QUANTITY);
        }
        return v;
    }
    // Pod specs are not recursive; the bound only guards a future cycle.
    if depth > 32 {
        return json!({"x-kubernetes-preserve-unknown-fields": true});
    }
    let mut out = serde_json::Map::new();
    let ty = match s.get("type") {
        Some(Value::Array(types)) => types.iter().find(|t| *t != "null").cloned(),
        other => other.cloned(),
    };
    if let Some(ty) = ty {
        out.insert("type".into(), ty);
    }
    if let Some(f) = s.get("format") {
        out.insert("format".into(), f.clone());
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        let props: serde_json::Map<String, Value> = props
            .iter()
            .map(|(k, p)| (k.clone(), structural(p, depth + 1)))
            .collect();
        out.insert("properties".into(), Value::Object(props));
    }
    if let Some(items) = s.get("items") {
        out.insert("items".into(), structural(items, depth + 1));
    }
    if let Some(extra) = s.get("additionalProperties").filter(|a| a.is_object()) {
        out.insert("additionalProperties".into(), structural(extra, depth + 1));
    }
    if let Some(req) = s.get("required") {
        out.insert("required".into(), req.clone());
    }
    if DEFAULT_NAME.iter().any(|d| name.ends_with(d)) {
        default_name(&mut out);
    }
    Value::Object(out)
}

/// References whose `name` Kubernetes defaults to "" (`+default=""`)
/// where k8s-openapi, with a plain `String`, makes it required.
const DEFAULT_NAME: [&str; 5] = [
    ".core.v1.LocalObjectReference",
    ".core.v1.ConfigMapKeySelector",
    ".core.v1.SecretKeySelector",
    ".core.v1.ConfigMapEnvSource",
    ".core.v1.SecretEnvSource",
];

fn default_name(out: &mut serde_json::Map<String, Value>) {
    if let Some(Value::Array(req)) = out.get_mut("required") {
        req.retain(|f| f != "name");
        if req.is_empty() {
            out.remove("required");
        }
    }
    if let Some(n) = out.get_mut("properties").and_then(|p| p.get_mut("name")) {
        n["default"] = json!("");
    }
}

/// The Rollout's `openAPIV3Schema`.
pub(crate) fn schema() -> Value {
    object(
        &[
            ("apiVersion", string()),
            ("kind", string()),
            ("metadata", json!({"type": "object"})),
            ("spec", spec()),
            ("status", status()),
        ],
        &["spec"],
    )
}

/// The Experiment's `openAPIV3Schema` (Argo's `experiment_types.go`): its
/// templates carry a whole pod template, as a Rollout's does.
pub(crate) fn experiment_schema() -> Value {
    let template = object(
        &[
            ("minReadySeconds", int32()),
            ("name", string()),
            ("replicas", int32()),
            ("selector", label_selector()),
            ("service", object(&[("name", string())], &[])),
            (
                "template",
                object(
                    &[("metadata", labels_and_annotations()), ("spec", pod_spec())],
                    &[],
                ),
            ),
        ],
        &["name", "selector", "template"],
    );
    let spec = object(
        &[
            ("analyses", array(experiment_analysis(true))),
            ("analysisRunMetadata", labels_and_annotations()),
            ("dryRun", dry_run()),
            ("duration", string()),
            ("measurementRetention", measurement_retention()),
            ("progressDeadlineSeconds", int32()),
            ("scaleDownDelaySeconds", int32()),
            ("templates", array(template)),
            ("terminate", boolean()),
        ],
        &["templates"],
    );
    let template_status = object(
        &[
            ("availableReplicas", int32()),
            ("collisionCount", int32()),
            ("lastTransitionTime", time()),
            ("message", string()),
            ("name", string()),
            ("podTemplateHash", string()),
            ("readyReplicas", int32()),
            ("replicas", int32()),
            ("serviceName", string()),
            ("status", string()),
            ("updatedReplicas", int32()),
        ],
        &[
            "availableReplicas",
            "name",
            "readyReplicas",
            "replicas",
            "updatedReplicas",
        ],
    );
    let run_status = object(
        &[
            ("analysisRun", string()),
            ("message", string()),
            ("name", string()),
            ("phase", string()),
        ],
        &["analysisRun", "name", "phase"],
    );
    let status = object(
        &[
            ("analysisRuns", array(run_status)),
            ("availableAt", time()),
            ("conditions", array(condition())),
            ("message", string()),
            ("phase", string()),
            ("templateStatuses", array(template_status)),
        ],
        &[],
    );
    object(
        &[
            ("apiVersion", string()),
            ("kind", string()),
            ("metadata", json!({"type": "object"})),
            ("spec", spec),
            ("status", status),
        ],
        &["spec"],
    )
}

#[cfg(test)]
mod tests;
