//! The object rules of `helm lint` (Helm 4.1.4's `pkg/chart/v2/lint/rules`):
//! object names as the API server validates them per kind (apimachinery's
//! DNS-1123/1035 and path-segment checks, with their words), deprecated
//! APIs for the Kubernetes version linted against (the lifecycle table in
//! `deprecations.tsv`, generated from kubernetes/api by
//! `scripts/gen-k8s-deprecations.py`), `List` objects with a resource
//! policy, the files of `crds/`, and the dependencies rule.

use std::fmt::Write as _;
use std::path::Path;

use crate::Chart;
use crate::lint::LintReport;

const DNS1123_LABEL: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";

fn dns1123_subdomain_fmt() -> String {
    format!("{DNS1123_LABEL}(\\.{DNS1123_LABEL})*")
}

fn matches(fmt: &str, v: &str) -> bool {
    regex::Regex::new(&format!("^{fmt}$"))
        .expect("static regex")
        .is_match(v)
}

/// apimachinery's `RegexError`.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let ex: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{msg} (e.g. {}regex used for validation is '{fmt}')",
        ex.join(" or ")
    )
}

fn is_dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    let fmt = dns1123_subdomain_fmt();
    if !matches(&fmt, v) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            &fmt,
            &["example.com"],
        ));
    }
    errs
}

fn is_dns1123_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !matches(DNS1123_LABEL, v) {
        if matches(&dns1123_subdomain_fmt(), v) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
                DNS1123_LABEL,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

fn is_dns1035_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !matches(DNS1035_LABEL, v) {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

fn is_path_segment(v: &str) -> Vec<String> {
    if v == "." || v == ".." {
        return vec![format!("may not be '{v}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|c| v.contains(**c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

/// Helm's `validateMetadataName`: the check the API server makes for the kind.
pub(crate) fn metadata_name(kind: &str, name: &str) -> Option<String> {
    let errs = match kind.to_lowercase().as_str() {
        "service" => is_dns1035_label(name),
        "namespace" => is_dns1123_label(name),
        "certificatesigningrequest" => Vec::new(),
        "role" | "clusterrole" | "rolebinding" | "clusterrolebinding" => is_path_segment(name),
        _ => is_dns1123_subdomain(name),
    };
    if errs.is_empty() {
        return None;
    }
    let q = crate::go_quote(name);
    let mut all: Vec<String> = Vec::new();
    for e in errs {
        let e = format!("metadata.name: Invalid value: {q}: {e}");
        if !all.contains(&e) {
            all.push(e);
        }
    }
    // apimachinery's aggregate: one error alone, several in brackets
    let agg = if all.len() == 1 {
        all.remove(0)
    } else {
        format!("[{}]", all.join(", "))
    };
    Some(format!(
        "object name does not conform to Kubernetes naming requirements: {q}: {agg}"
    ))
}

/// Helm's `validateNoDeprecations`: k8s.io/apiserver's deprecation warning
/// when `api_version`/`kind` is deprecated at `major.minor`.
pub(crate) fn deprecation(api_version: &str, kind: &str, major: u64, minor: u64) -> Option<String> {
    if api_version.is_empty() || kind.is_empty() {
        return None;
    }
    let table = include_str!("deprecations.tsv");
    let ver = |s: &str| -> (u64, u64) {
        let (a, b) = s.split_once('.').unwrap_or((s, "0"));
        (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
    };
    for line in table.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split('\t').collect();
        let [gv, k, deprecated, removed, replacement] = f[..] else {
            continue;
        };
        if gv != api_version || k != kind {
            continue;
        }
        let (dmaj, dmin) = ver(deprecated);
        if (dmaj, dmin) == (0, 0) || (dmaj, dmin) > (major, minor) {
            return None;
        }
        let mut msg = format!("{api_version} {kind} is deprecated in v{dmaj}.{dmin}+");
        let (rmaj, rmin) = ver(removed);
        if (rmaj, rmin) != (0, 0) {
            let _ = write!(msg, ", unavailable in v{rmaj}.{rmin}+");
        }
        if replacement != "-" {
            let _ = write!(msg, "; use {replacement}");
        }
        return Some(msg);
    }
    None
}

/// What Go's JSON decoder says of a document that is no object.
pub(crate) fn not_an_object(v: &serde_yaml_ng::Value) -> Option<String> {
    let t = match v {
        serde_yaml_ng::Value::Sequence(_) => "array",
        serde_yaml_ng::Value::String(_) => "string",
        serde_yaml_ng::Value::Number(_) => "number",
        serde_yaml_ng::Value::Bool(_) => "bool",
        _ => return None,
    };
    Some(format!(
        "unable to parse YAML: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {t} into Go value of type rules.k8sYamlStruct"
    ))
}

fn text<'v>(v: &'v serde_yaml_ng::Value, path: &[&str]) -> &'v str {
    let mut cur = v;
    for p in path {
        match cur.get(*p) {
            Some(x) => cur = x,
            None => return "",
        }
    }
    cur.as_str().unwrap_or_default()
}

/// (`apiVersion`, kind, name) of a decoded document.
pub(crate) fn header(v: &serde_yaml_ng::Value) -> (&str, &str, &str) {
    (
        text(v, &["apiVersion"]),
        text(v, &["kind"]),
        text(v, &["metadata", "name"]),
    )
}

/// Helm's `validateListAnnotations`: it reads the file's first document.
pub(crate) fn list_annotations(content: &str) -> Option<String> {
    let first = crate::lint::documents(content).into_iter().next()?;
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&first).ok()?;
    let items = v.get("items")?.as_sequence()?;
    items
        .iter()
        .any(|i| {
            i.get("metadata")
                .and_then(|m| m.get("annotations"))
                .and_then(|a| a.get("helm.sh/resource-policy"))
                .is_some()
        })
        .then(|| "annotation 'helm.sh/resource-policy' within List objects are ignored".into())
}

/// Go's `filepath.Abs`: the working directory joined and cleaned, links kept.
fn abs(path: &Path) -> String {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut parts: Vec<String> = Vec::new();
    for c in joined.components() {
        match c {
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// Helm's dependencies rule, once the chart has loaded: subcharts named in
/// Chart.yaml and present in charts/ agree, and no name or alias twice.
pub(crate) fn dependencies(path: &Path, chart: &Chart, r: &mut LintReport) {
    let dir = abs(path);
    let declared: Vec<&str> = chart
        .metadata
        .dependencies
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    let loaded: Vec<&str> = chart.dependencies.iter().map(Chart::name).collect();
    let unlisted: Vec<&str> = loaded
        .iter()
        .copied()
        .filter(|n| !declared.contains(n))
        .collect();
    if !unlisted.is_empty() {
        r.add(
            "ERROR",
            &dir,
            format!(
                "chart metadata is missing these dependencies: {}",
                unlisted.join(",")
            ),
        );
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut twice: Vec<&str> = Vec::new();
    for d in &chart.metadata.dependencies {
        let key = if d.alias.is_empty() {
            d.name.as_str()
        } else {
            d.alias.as_str()
        };
        if seen.contains(&key) {
            twice.push(key);
        }
        seen.push(key);
    }
    if !twice.is_empty() {
        r.add(
            "ERROR",
            &dir,
            format!(
                "multiple dependencies with name or alias: {}",
                twice.join(",")
            ),
        );
    }
    let absent: Vec<&str> = declared
        .iter()
        .copied()
        .filter(|n| !loaded.contains(n))
        .collect();
    if !absent.is_empty() {
        r.add(
            "WARNING",
            &dir,
            format!(
                "chart directory is missing these dependencies: {}",
                absent.join(",")
            ),
        );
    }
}

/// Every CRD file of a chart and its subcharts (Helm's `CRDObjects`).
fn crd_files(chart: &Chart, out: &mut Vec<(String, String)>) {
    for f in &chart.crds {
        let ext = Path::new(&f.name)
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        if ["yaml", "yml", "json"].contains(&ext.as_str()) {
            out.push((
                f.name.clone(),
                String::from_utf8_lossy(&f.data).into_owned(),
            ));
        }
    }
    for d in &chart.dependencies {
        crd_files(d, out);
    }
}

/// Helm's `Crds` rule: crds/ (optional) holds only `CustomResourceDefinitions`
/// of `apiextensions.k8s.io`, as plain YAML.
pub(crate) fn crds(path: &Path, r: &mut LintReport) {
    const D: &str = "crds/";
    let dir = path.join("crds");
    if !dir.exists() {
        return;
    }
    if !dir.is_dir() {
        r.add("ERROR", D, "not a directory");
        return;
    }
    let chart = match crate::load(path) {
        Ok(c) => c,
        Err(e) => {
            r.add("ERROR", D, crate::lint::bare(&e));
            return;
        }
    };
    let mut files = Vec::new();
    crd_files(&chart, &mut files);
    for (name, content) in files {
        for doc in crate::lint::documents(&content) {
            if let Some(e) = crate::lint::yaml_error(&doc) {
                r.add("ERROR", &name, e);
                return;
            }
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&doc).unwrap_or_default();
            if v.is_null() {
                continue;
            }
            if let Some(e) = not_an_object(&v) {
                r.add("ERROR", &name, e);
                return;
            }
            let (api_version, kind, _) = header(&v);
            if !api_version.starts_with("apiextensions.k8s.io") {
                r.add(
                    "ERROR",
                    &name,
                    "apiVersion is not in 'apiextensions.k8s.io'",
                );
            }
            if kind != "CustomResourceDefinition" {
                r.add(
                    "ERROR",
                    &name,
                    "object kind is not 'CustomResourceDefinition'",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_as_the_api_server_checks_them() {
        assert_eq!(metadata_name("ConfigMap", "ok-name.x"), None);
        assert_eq!(
            metadata_name("Service", "1abc").unwrap(),
            "object name does not conform to Kubernetes naming requirements: \"1abc\": metadata.name: Invalid value: \"1abc\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        );
        assert!(
            metadata_name("Namespace", "a.b")
                .unwrap()
                .ends_with("must not contain dots")
        );
        assert_eq!(metadata_name("Role", "a:b"), None);
        assert!(
            metadata_name("Role", "a/b")
                .unwrap()
                .ends_with("may not contain '/'")
        );
        let long = "A".repeat(254);
        assert!(
            metadata_name("Pod", &long)
                .unwrap()
                .contains(": [metadata.name")
        );
    }

    #[test]
    fn deprecations_follow_the_kube_version() {
        assert_eq!(
            deprecation("batch/v1beta1", "CronJob", 1, 35).unwrap(),
            "batch/v1beta1 CronJob is deprecated in v1.21+, unavailable in v1.25+; use batch/v1 CronJob"
        );
        assert_eq!(deprecation("batch/v1beta1", "CronJob", 1, 20), None);
        assert_eq!(deprecation("batch/v1", "CronJob", 1, 35), None);
        assert_eq!(deprecation("example.com/v1", "Thing", 1, 35), None);
    }
}
