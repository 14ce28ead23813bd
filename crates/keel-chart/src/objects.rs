//! Built-in objects with methods: `.Files` and `.Capabilities`.

use std::collections::BTreeMap;
use std::rc::Rc;

use keel_gotmpl::{Object, Value};

use crate::chart::ChartFile;

/// Helm's `engine.files`: a chart's non-template files.
#[derive(Debug, Clone, Default)]
pub struct Files {
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Files {
    pub fn new(list: &[ChartFile]) -> Files {
        Files {
            files: list
                .iter()
                .map(|f| (f.name.clone(), f.data.clone()))
                .collect(),
        }
    }
}

fn base(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn str_arg(args: &[Value], i: usize) -> Result<&str, String> {
    match args.get(i) {
        Some(Value::Str(s)) => Ok(s),
        Some(v) => Err(format!(
            "wrong type for value; expected string; got {}",
            v.type_name()
        )),
        None => Err("missing argument".into()),
    }
}

impl Object for Files {
    fn type_name(&self) -> String {
        "engine.files".into()
    }
    fn field(&self, _name: &str) -> Option<Value> {
        None
    }
    fn method_arity(&self, name: &str) -> Option<usize> {
        match name {
            "Get" | "GetBytes" | "Glob" | "Lines" => Some(1),
            "AsConfig" | "AsSecrets" => Some(0),
            _ => None,
        }
    }
    fn method(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        Some(match name {
            "Get" => str_arg(args, 0).map(|p| {
                Value::string(
                    self.files
                        .get(p)
                        .map(|d| String::from_utf8_lossy(d).into_owned())
                        .unwrap_or_default(),
                )
            }),
            "GetBytes" => str_arg(args, 0).map(|p| {
                Value::list(
                    self.files
                        .get(p)
                        .map(|d| d.iter().map(|b| Value::Int(i64::from(*b))).collect())
                        .unwrap_or_default(),
                )
            }),
            "Lines" => str_arg(args, 0).map(|p| {
                let Some(d) = self.files.get(p) else {
                    return Value::list(Vec::new());
                };
                let mut s = String::from_utf8_lossy(d).into_owned();
                if s.ends_with('\n') {
                    s.pop();
                }
                Value::typed_list(
                    s.split('\n').map(Value::str).collect(),
                    keel_gotmpl::Elem::Str,
                )
            }),
            "Glob" => str_arg(args, 0).map(|pat| {
                let files = self
                    .files
                    .iter()
                    .filter(|(k, _)| crate::glob::matches(pat, k, true))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Value::Object(Rc::new(Files { files }))
            }),
            "AsConfig" => {
                let m: BTreeMap<String, Value> = self
                    .files
                    .iter()
                    .map(|(k, v)| {
                        (
                            base(k).to_string(),
                            Value::string(String::from_utf8_lossy(v).into_owned()),
                        )
                    })
                    .collect();
                if m.is_empty() {
                    return Some(Ok(Value::str("")));
                }
                Ok(Value::string(
                    keel_gotmpl::yaml::marshal(&Value::map(m))
                        .trim_end_matches('\n')
                        .to_string(),
                ))
            }
            "AsSecrets" => {
                let m: BTreeMap<String, Value> = self
                    .files
                    .iter()
                    .map(|(k, v)| (base(k).to_string(), Value::string(keel_gotmpl::b64enc(v))))
                    .collect();
                if m.is_empty() {
                    return Some(Ok(Value::str("")));
                }
                Ok(Value::string(
                    keel_gotmpl::yaml::marshal(&Value::map(m))
                        .trim_end_matches('\n')
                        .to_string(),
                ))
            }
            _ => return None,
        })
    }
    fn entries(&self) -> Option<Vec<(String, Value)>> {
        Some(
            self.files
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Value::list(v.iter().map(|b| Value::Int(i64::from(*b))).collect()),
                    )
                })
                .collect(),
        )
    }
    fn display(&self) -> String {
        let inner: Vec<String> = self
            .files
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}:{}",
                    keel_gotmpl::gofmt::sprint_value(&Value::list(
                        v.iter().map(|b| Value::Int(i64::from(*b))).collect()
                    ))
                )
            })
            .collect();
        format!("map[{}]", inner.join(" "))
    }
}

/// `.Capabilities.APIVersions`, a list with a `Has` method.
#[derive(Debug, Clone)]
pub struct VersionSet(pub Vec<String>);

impl Object for VersionSet {
    fn type_name(&self) -> String {
        "chartutil.VersionSet".into()
    }
    fn field(&self, _name: &str) -> Option<Value> {
        None
    }
    fn method_arity(&self, name: &str) -> Option<usize> {
        (name == "Has").then_some(1)
    }
    fn method(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        if name != "Has" {
            return None;
        }
        Some(str_arg(args, 0).map(|v| Value::Bool(self.0.iter().any(|x| x == v))))
    }
    fn display(&self) -> String {
        format!("[{}]", self.0.join(" "))
    }
}

/// `.Capabilities.KubeVersion`: fields plus `String()` as its display.
#[derive(Debug, Clone)]
pub struct KubeVersion {
    pub version: String,
    pub major: String,
    pub minor: String,
}

impl Object for KubeVersion {
    fn type_name(&self) -> String {
        "*chartutil.KubeVersion".into()
    }
    fn field(&self, name: &str) -> Option<Value> {
        Some(Value::str(match name {
            "Version" | "GitVersion" => &self.version,
            "Major" => &self.major,
            "Minor" => &self.minor,
            _ => return None,
        }))
    }
    fn method_arity(&self, name: &str) -> Option<usize> {
        (name == "String").then_some(0)
    }
    fn method(&self, name: &str, _args: &[Value]) -> Option<Result<Value, String>> {
        (name == "String").then(|| Ok(Value::str(&self.version)))
    }
    fn display(&self) -> String {
        self.version.clone()
    }
}

/// `.Capabilities`.
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub kube: KubeVersion,
    pub api_versions: Vec<String>,
    pub helm_version: String,
}

impl Object for Capabilities {
    fn type_name(&self) -> String {
        "*chartutil.Capabilities".into()
    }
    fn field(&self, name: &str) -> Option<Value> {
        match name {
            "KubeVersion" => Some(Value::Object(Rc::new(self.kube.clone()))),
            "APIVersions" => Some(Value::Object(Rc::new(VersionSet(
                self.api_versions.clone(),
            )))),
            "HelmVersion" => {
                let mut m = BTreeMap::new();
                m.insert("Version".to_string(), Value::str(&self.helm_version));
                m.insert("GitCommit".to_string(), Value::str(""));
                m.insert("GitTreeState".to_string(), Value::str("clean"));
                m.insert("GoVersion".to_string(), Value::str("go1.22"));
                Some(Value::map(m))
            }
            _ => None,
        }
    }
    fn method_arity(&self, _name: &str) -> Option<usize> {
        None
    }
    fn method(&self, _name: &str, _args: &[Value]) -> Option<Result<Value, String>> {
        None
    }
    fn display(&self) -> String {
        format!(
            "&{{{} {} {}}}",
            self.kube.version,
            VersionSet(self.api_versions.clone()).display(),
            self.helm_version
        )
    }
}

/// The API versions a stock cluster serves, as group/version and
/// group/version/Kind (Helm's `DefaultVersionSet` lists both forms).
pub fn default_api_versions() -> Vec<String> {
    const KINDS: &[(&str, &[&str])] = &[
        (
            "v1",
            &[
                "Binding",
                "ComponentStatus",
                "ConfigMap",
                "Endpoints",
                "Event",
                "LimitRange",
                "Namespace",
                "Node",
                "PersistentVolume",
                "PersistentVolumeClaim",
                "Pod",
                "PodTemplate",
                "ReplicationController",
                "ResourceQuota",
                "Secret",
                "Service",
                "ServiceAccount",
            ],
        ),
        (
            "admissionregistration.k8s.io/v1",
            &[
                "MutatingWebhookConfiguration",
                "ValidatingAdmissionPolicy",
                "ValidatingAdmissionPolicyBinding",
                "ValidatingWebhookConfiguration",
            ],
        ),
        ("apiextensions.k8s.io/v1", &["CustomResourceDefinition"]),
        ("apiregistration.k8s.io/v1", &["APIService"]),
        (
            "apps/v1",
            &[
                "ControllerRevision",
                "DaemonSet",
                "Deployment",
                "ReplicaSet",
                "StatefulSet",
            ],
        ),
        (
            "authentication.k8s.io/v1",
            &["SelfSubjectReview", "TokenReview"],
        ),
        (
            "authorization.k8s.io/v1",
            &[
                "LocalSubjectAccessReview",
                "SelfSubjectAccessReview",
                "SelfSubjectRulesReview",
                "SubjectAccessReview",
            ],
        ),
        ("autoscaling/v1", &["HorizontalPodAutoscaler", "Scale"]),
        ("autoscaling/v2", &["HorizontalPodAutoscaler"]),
        ("batch/v1", &["CronJob", "Job"]),
        ("certificates.k8s.io/v1", &["CertificateSigningRequest"]),
        ("coordination.k8s.io/v1", &["Lease"]),
        ("discovery.k8s.io/v1", &["EndpointSlice"]),
        ("events.k8s.io/v1", &["Event"]),
        (
            "flowcontrol.apiserver.k8s.io/v1",
            &["FlowSchema", "PriorityLevelConfiguration"],
        ),
        (
            "networking.k8s.io/v1",
            &["Ingress", "IngressClass", "NetworkPolicy"],
        ),
        ("node.k8s.io/v1", &["RuntimeClass"]),
        ("policy/v1", &["Eviction", "PodDisruptionBudget"]),
        (
            "rbac.authorization.k8s.io/v1",
            &["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"],
        ),
        ("scheduling.k8s.io/v1", &["PriorityClass"]),
        (
            "storage.k8s.io/v1",
            &[
                "CSIDriver",
                "CSINode",
                "CSIStorageCapacity",
                "StorageClass",
                "VolumeAttachment",
            ],
        ),
    ];
    let mut out = Vec::new();
    for (gv, kinds) in KINDS {
        out.push((*gv).to_string());
        for k in *kinds {
            out.push(format!("{gv}/{k}"));
        }
    }
    out
}
