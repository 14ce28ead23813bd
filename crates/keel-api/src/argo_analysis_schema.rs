//! Structural schemas of Argo's analysis kinds (`AnalysisTemplate`,
//! `ClusterAnalysisTemplate`, `AnalysisRun`), built from Argo's Go types
//! (`pkg/apis/rollouts/v1alpha1/analysis_types.go`) as read: arguments,
//! metrics with their limits (int-or-string, as Argo's `IntOrString`) and
//! the `web`, `prometheus` and `job` providers typed; the other providers,
//! Job specs and status kept open. Wrongly typed fields are refused by the
//! CRD validation with Kubernetes' messages.

use serde_json::{Value, json};

pub(crate) fn string() -> Value {
    json!({"type": "string"})
}

pub(crate) fn int() -> Value {
    json!({"type": "integer", "format": "int64"})
}

pub(crate) fn boolean() -> Value {
    json!({"type": "boolean"})
}

pub(crate) fn int_or_string() -> Value {
    json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]})
}

pub(crate) fn open() -> Value {
    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

pub(crate) fn object(props: &[(&str, Value)], required: &[&str]) -> Value {
    let mut o = json!({"type": "object", "properties": props.iter().cloned().map(|(k, v)| (k.to_string(), v)).collect::<serde_json::Map<_, _>>()});
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o
}

pub(crate) fn array(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

fn headers() -> Value {
    array(object(
        &[("key", string()), ("value", string())],
        &["key", "value"],
    ))
}

fn secret_key_ref() -> Value {
    object(&[("name", string()), ("key", string())], &["key", "name"])
}

/// Analysis arguments: a Rollout's (`secrets` false) may take a pod
/// template hash, the analysis kinds' and an Experiment's a `secretKeyRef`.
pub(crate) fn args(secrets: bool) -> Value {
    let mut from = vec![(
        "fieldRef",
        object(&[("fieldPath", string())], &["fieldPath"]),
    )];
    if secrets {
        from.push(("secretKeyRef", secret_key_ref()));
    } else {
        from.push(("podTemplateHashValue", string()));
    }
    array(object(
        &[
            ("name", string()),
            ("value", string()),
            ("valueFrom", object(&from, &[])),
        ],
        &["name"],
    ))
}

fn provider() -> Value {
    let web = object(
        &[
            ("method", string()),
            ("url", string()),
            ("headers", headers()),
            ("body", string()),
            ("timeoutSeconds", int()),
            ("jsonPath", string()),
            ("insecure", boolean()),
            ("jsonBody", open()),
            ("authentication", open()),
        ],
        &["url"],
    );
    let prometheus = object(
        &[
            ("address", string()),
            ("query", string()),
            ("timeout", int()),
            ("insecure", boolean()),
            ("headers", headers()),
            ("authentication", open()),
            ("rangeQuery", open()),
        ],
        &[],
    );
    let job = object(&[("metadata", open()), ("spec", open())], &["spec"]);
    let mut props = vec![("web", web), ("prometheus", prometheus), ("job", job)];
    // Providers keel does not run: accepted as Argo's CRD accepts them.
    for other in [
        "kayenta",
        "datadog",
        "wavefront",
        "newRelic",
        "cloudWatch",
        "graphite",
        "influxdb",
        "skywalking",
        "plugin",
    ] {
        props.push((other, open()));
    }
    object(&props, &[])
}

fn metric() -> Value {
    object(
        &[
            ("name", string()),
            ("interval", string()),
            ("initialDelay", string()),
            ("count", int_or_string()),
            ("successCondition", string()),
            ("failureCondition", string()),
            ("failureLimit", int_or_string()),
            ("inconclusiveLimit", int_or_string()),
            ("consecutiveErrorLimit", int_or_string()),
            ("consecutiveSuccessLimit", int_or_string()),
            ("provider", provider()),
        ],
        &["name", "provider"],
    )
}

fn template_spec(run: bool) -> Value {
    let mut props = vec![
        ("metrics", array(metric())),
        ("args", args(true)),
        (
            "dryRun",
            array(object(&[("metricName", string())], &["metricName"])),
        ),
        (
            "measurementRetention",
            array(object(
                &[("metricName", string()), ("limit", int())],
                &["limit", "metricName"],
            )),
        ),
    ];
    if run {
        props.push(("terminate", boolean()));
        props.push(("ttlStrategy", open()));
    }
    object(&props, &["metrics"])
}

/// The `openAPIV3Schema` of one of the analysis kinds; `None` for others.
pub(crate) fn schema(kind: &str) -> Option<Value> {
    let run = match kind {
        "AnalysisRun" => true,
        "AnalysisTemplate" | "ClusterAnalysisTemplate" => false,
        _ => return None,
    };
    let mut s = object(
        &[
            ("apiVersion", string()),
            ("kind", string()),
            ("metadata", json!({"type": "object"})),
            ("spec", template_spec(run)),
        ],
        &["spec"],
    );
    if run {
        s["properties"]["status"] = open();
    }
    Some(s)
}
