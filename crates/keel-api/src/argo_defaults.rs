//! Argo Rollouts' kinds (`argoproj.io/v1alpha1` `Rollout`, `AnalysisTemplate`,
//! `ClusterAnalysisTemplate`, `AnalysisRun`, `Experiment`), created as CRDs at
//! bootstrap so Argo's manifests, `kubectl get rollouts` and the Argo
//! kubectl plugin work without installing Argo: keel-controllers' rollout
//! and analysis controllers play Argo's part. Names, scopes, subresources
//! and printer columns are Argo's own (its CRDs in `manifests/crds`).

use serde_json::{Value, json};

use crate::resources::{self, Resource};

pub const GROUP: &str = "argoproj.io";

struct Kind {
    name: &'static str,
    plural: &'static str,
    short: &'static str,
    namespaced: bool,
    /// Rollouts have status and scale subresources; the analysis kinds have
    /// none (Argo's controller writes their status with plain updates).
    subresources: Value,
    columns: Value,
}

fn age() -> Value {
    json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
        "description": "Time since resource was created"})
}

fn phase(what: &str) -> Value {
    json!({"name": "Status", "type": "string", "jsonPath": ".status.phase",
        "description": format!("{what} status")})
}

fn kinds() -> Vec<Kind> {
    let int = |name: &str, path: &str, description: &str| json!({"name": name, "type": "integer", "jsonPath": path, "description": description});
    vec![
        Kind {
            name: "Rollout",
            plural: "rollouts",
            short: "ro",
            namespaced: true,
            subresources: json!({"status": {}, "scale": {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.HPAReplicas",
                "labelSelectorPath": ".status.selector"}}),
            columns: json!([
                int("Desired", ".spec.replicas", "Number of desired pods"),
                int(
                    "Current",
                    ".status.replicas",
                    "Total number of non-terminated pods targeted by this rollout"
                ),
                int(
                    "Up-to-date",
                    ".status.updatedReplicas",
                    "Total number of non-terminated pods targeted by this rollout that have the desired template spec"
                ),
                int(
                    "Available",
                    ".status.availableReplicas",
                    "Total number of available pods (ready for at least minReadySeconds) targeted by this rollout"
                ),
                age(),
            ]),
        },
        Kind {
            name: "AnalysisTemplate",
            plural: "analysistemplates",
            short: "at",
            namespaced: true,
            subresources: json!({}),
            columns: json!([age()]),
        },
        Kind {
            name: "ClusterAnalysisTemplate",
            plural: "clusteranalysistemplates",
            short: "cat",
            namespaced: false,
            subresources: json!({}),
            columns: json!([age()]),
        },
        Kind {
            name: "AnalysisRun",
            plural: "analysisruns",
            short: "ar",
            namespaced: true,
            subresources: json!({}),
            columns: json!([phase("AnalysisRun"), age()]),
        },
        Kind {
            name: "Experiment",
            plural: "experiments",
            short: "exp",
            namespaced: true,
            subresources: json!({}),
            columns: json!([phase("Experiment"), age()]),
        },
    ]
}

fn crd(k: &Kind) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.{GROUP}", k.plural),
            "annotations": {"keel.dev/provided-by": "keel-controllers"}},
        "spec": {
            "group": GROUP,
            "names": {"kind": k.name, "listKind": format!("{}List", k.name), "plural": k.plural,
                "singular": k.name.to_ascii_lowercase(), "shortNames": [k.short]},
            "scope": if k.namespaced { "Namespaced" } else { "Cluster" },
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "subresources": k.subresources,
                "additionalPrinterColumns": k.columns,
                "schema": {"openAPIV3Schema": schema(k.name)},
            }],
        },
    })
}

/// The kind's structural schema.
fn schema(kind: &str) -> Value {
    match kind {
        "Rollout" => crate::argo_rollout_schema::schema(),
        "Experiment" => crate::argo_rollout_schema::experiment_schema(),
        other => crate::argo_analysis_schema::schema(other).expect("an analysis kind"),
    }
}

/// `(resource, objects)` created at bootstrap when missing.
pub(crate) fn objects() -> Vec<(&'static Resource, Vec<Value>)> {
    let crds =
        resources::find("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("served");
    vec![(crds, kinds().iter().map(crd).collect())]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names, scope, subresources and columns as Argo's own CRDs declare
    /// them (read from ../shared/conformance/argo-rollouts).
    #[test]
    fn crds_match_argos_own() {
        let dir = crate::conformance("argo-rollouts/manifests/crds");
        for k in kinds() {
            let file = match k.name {
                "ClusterAnalysisTemplate" => "cluster-analysis-template-crd.yaml".to_string(),
                "AnalysisTemplate" => "analysis-template-crd.yaml".to_string(),
                "AnalysisRun" => "analysis-run-crd.yaml".to_string(),
                other => format!("{}-crd.yaml", other.to_ascii_lowercase()),
            };
            let theirs: Value =
                serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join(&file)).unwrap())
                    .unwrap();
            let ours = crd(&k);
            assert_eq!(
                ours["metadata"]["name"], theirs["metadata"]["name"],
                "{file}"
            );
            for f in ["group", "names", "scope"] {
                assert_eq!(ours["spec"][f], theirs["spec"][f], "{file}: {f}");
            }
            let (ov, tv) = (&ours["spec"]["versions"][0], &theirs["spec"]["versions"][0]);
            for f in ["name", "subresources", "additionalPrinterColumns"] {
                assert_eq!(ov[f], tv[f], "{file}: {f}");
            }
        }
    }

    use serde::Deserialize as _;

    fn version_of(kind: &str) -> crate::crd::Version {
        let k = kinds().into_iter().find(|k| k.name == kind).unwrap();
        let c = crd(&k);
        crate::crd::Version {
            resource: crate::resources::find("", "v1", "configmaps").unwrap(),
            schema: c["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone(),
            columns: Vec::new(),
        }
    }

    /// Every analysis object of Argo's examples passes the schemas, and the
    /// CRDs are structural.
    #[test]
    fn analysis_schemas_accept_argos_examples() {
        for k in kinds() {
            let mut c = crd(&k);
            crate::crd::apply_defaults(&mut c);
            assert!(
                crate::crd::validate(&c).is_empty(),
                "{}: {:?}",
                k.name,
                crate::crd::validate(&c)
            );
        }
        let dir = crate::conformance("argo-rollouts/examples");
        let mut seen = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_none_or(|x| x != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let Ok(mut obj) = Value::deserialize(doc) else {
                    continue;
                };
                let kind = obj["kind"].as_str().unwrap_or_default().to_string();
                if crate::argo_analysis_schema::schema(&kind).is_none() {
                    continue;
                }
                let before = obj.clone();
                let causes = crate::crd::admit(&version_of(&kind), &mut obj);
                assert!(causes.is_empty(), "{}: {kind}: {causes:?}", path.display());
                assert_eq!(obj["spec"], before["spec"], "{}: pruned", path.display());
                seen += 1;
            }
        }
        assert!(seen >= 3, "{seen} analysis objects in {}", dir.display());
    }

    #[test]
    fn wrongly_typed_analysis_fields_are_refused() {
        let mut bad = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": "x"}, "spec": {"metrics": [{"name": "m", "count": 1.5,
                "provider": {"web": {"url": "http://x", "timeoutSeconds": "ten"}}}],
                "terminate": "yes"}});
        let causes = crate::crd::admit(&version_of("AnalysisRun"), &mut bad);
        let msg = |f: &str| {
            let c = causes.iter().find(|c| c.field == f);
            c.unwrap_or_else(|| panic!("{f} not refused: {causes:?}"))
                .message
                .clone()
        };
        assert_eq!(
            msg("spec.metrics[0].provider.web.timeoutSeconds"),
            "Invalid value: \"string\": spec.metrics[0].provider.web.timeoutSeconds in body must be of type integer: \"string\""
        );
        assert_eq!(
            msg("spec.terminate"),
            "Invalid value: \"string\": spec.terminate in body must be of type boolean: \"string\""
        );
        assert!(
            causes.iter().any(|c| c.field == "spec.metrics[0].count"),
            "{causes:?}"
        );
        let mut missing = json!({"spec": {"metrics": [{"name": "m"}]}});
        let causes = crate::crd::admit(&version_of("AnalysisTemplate"), &mut missing);
        assert_eq!(causes[0].field, "spec.metrics[0].provider");
        assert_eq!(causes[0].message, "Required value");
    }
}
