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
                        .map(|d| keel_gotmpl::go_string(d))
                        .unwrap_or_default(),
                )
            }),
            "GetBytes" => {
                str_arg(args, 0).map(|p| bytes(self.files.get(p).map_or(&[][..], |d| &d[..])))
            }
            "Lines" => str_arg(args, 0).map(|p| {
                let Some(d) = self.files.get(p) else {
                    return Value::list(Vec::new());
                };
                let mut s = keel_gotmpl::go_string(d);
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
                            Value::string(keel_gotmpl::go_string(v)),
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
                .map(|(k, v)| (k.clone(), bytes(v)))
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

/// A Go `[]byte`.
fn bytes(d: &[u8]) -> Value {
    Value::typed_list(
        d.iter().map(|b| Value::Int(i64::from(*b))).collect(),
        keel_gotmpl::Elem::Byte,
    )
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
    fn items(&self) -> Option<Vec<Value>> {
        Some(self.0.iter().map(|s| Value::str(s)).collect())
    }
    fn kind(&self) -> &'static str {
        "slice"
    }
}

/// `.Capabilities.KubeVersion`: fields plus `String()` as its display.
#[derive(Debug, Clone)]
pub struct KubeVersion {
    /// As given, with a `v` prefix (`v1.33.4-gke.1245000`): `.Version`, `.GitVersion`.
    pub version: String,
    /// `v` + the numeric components (`v1.33.4`): what `String()` prints and
    /// what `kubeVersion` constraints are checked against.
    pub normalized: String,
    pub major: String,
    pub minor: String,
}

impl Object for KubeVersion {
    fn type_name(&self) -> String {
        "common.KubeVersion".into()
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
        (name == "String").then(|| Ok(Value::str(&self.normalized)))
    }
    fn display(&self) -> String {
        self.normalized.clone()
    }
}

/// `.Capabilities`.
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub kube: KubeVersion,
    pub api_versions: Vec<String>,
}

/// `.Capabilities.HelmVersion`: the build of Helm whose rendering keel
/// reproduces (Helm 4.1.4), so charts that print or compare it see Helm's.
#[derive(Debug, Clone)]
pub struct HelmVersion;

impl HelmVersion {
    const FIELDS: [(&'static str, &'static str); 5] = [
        ("Version", "v4.1.4"),
        ("GitCommit", "05fa37973dc9e42b76e1d2883494c87174b6074f"),
        ("GitTreeState", "clean"),
        ("GoVersion", "go1.25.9"),
        ("KubeClientVersion", "v1.35"),
    ];
}

impl Object for HelmVersion {
    fn type_name(&self) -> String {
        "version.BuildInfo".into()
    }
    fn field(&self, name: &str) -> Option<Value> {
        Self::FIELDS
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| Value::str(v))
    }
    fn method_arity(&self, _name: &str) -> Option<usize> {
        None
    }
    fn method(&self, _name: &str, _args: &[Value]) -> Option<Result<Value, String>> {
        None
    }
    fn display(&self) -> String {
        let v: Vec<&str> = Self::FIELDS.iter().map(|(_, v)| *v).collect();
        format!("{{{}}}", v.join(" "))
    }
    fn kind(&self) -> &'static str {
        "struct"
    }
}

impl Object for Capabilities {
    fn type_name(&self) -> String {
        "*common.Capabilities".into()
    }
    fn field(&self, name: &str) -> Option<Value> {
        match name {
            "KubeVersion" => Some(Value::Object(Rc::new(self.kube.clone()))),
            "APIVersions" => Some(Value::Object(Rc::new(VersionSet(
                self.api_versions.clone(),
            )))),
            "HelmVersion" => Some(Value::Object(Rc::new(HelmVersion))),
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
            self.kube.normalized,
            VersionSet(self.api_versions.clone()).display(),
            HelmVersion.display()
        )
    }
}

/// Helm 4.1.4's `DefaultVersionSet`: the group/versions of client-go's
/// scheme, in its order, without kinds (so `Has "policy/v1/PodDisruptionBudget"`
/// is false unless `--api-versions` adds it, as with Helm).
pub fn default_api_versions() -> Vec<String> {
    [
        "v1",
        "admissionregistration.k8s.io/v1",
        "admissionregistration.k8s.io/v1alpha1",
        "admissionregistration.k8s.io/v1beta1",
        "internal.apiserver.k8s.io/v1alpha1",
        "apps/v1",
        "apps/v1beta1",
        "apps/v1beta2",
        "authentication.k8s.io/v1",
        "authentication.k8s.io/v1alpha1",
        "authentication.k8s.io/v1beta1",
        "authorization.k8s.io/v1",
        "authorization.k8s.io/v1beta1",
        "autoscaling/v1",
        "autoscaling/v2",
        "autoscaling/v2beta1",
        "autoscaling/v2beta2",
        "batch/v1",
        "batch/v1beta1",
        "certificates.k8s.io/v1",
        "certificates.k8s.io/v1beta1",
        "certificates.k8s.io/v1alpha1",
        "coordination.k8s.io/v1alpha2",
        "coordination.k8s.io/v1beta1",
        "coordination.k8s.io/v1",
        "discovery.k8s.io/v1",
        "discovery.k8s.io/v1beta1",
        "events.k8s.io/v1",
        "events.k8s.io/v1beta1",
        "extensions/v1beta1",
        "flowcontrol.apiserver.k8s.io/v1",
        "flowcontrol.apiserver.k8s.io/v1beta1",
        "flowcontrol.apiserver.k8s.io/v1beta2",
        "flowcontrol.apiserver.k8s.io/v1beta3",
        "networking.k8s.io/v1",
        "networking.k8s.io/v1beta1",
        "node.k8s.io/v1",
        "node.k8s.io/v1alpha1",
        "node.k8s.io/v1beta1",
        "policy/v1",
        "policy/v1beta1",
        "rbac.authorization.k8s.io/v1",
        "rbac.authorization.k8s.io/v1beta1",
        "rbac.authorization.k8s.io/v1alpha1",
        "resource.k8s.io/v1",
        "resource.k8s.io/v1beta2",
        "resource.k8s.io/v1beta1",
        "resource.k8s.io/v1alpha3",
        "scheduling.k8s.io/v1alpha1",
        "scheduling.k8s.io/v1beta1",
        "scheduling.k8s.io/v1",
        "storage.k8s.io/v1beta1",
        "storage.k8s.io/v1",
        "storage.k8s.io/v1alpha1",
        "storagemigration.k8s.io/v1beta1",
        "apiextensions.k8s.io/v1beta1",
        "apiextensions.k8s.io/v1",
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}
