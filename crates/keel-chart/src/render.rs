//! Rendering: built-in objects, Helm's template parse/execute order, error
//! cleanup, manifest splitting and sorting in install order, and the text
//! `helm template` prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

use keel_gotmpl::{MissingKey, Templates, Value};

use crate::ChartError;
use crate::chart::Chart;
use crate::objects::{Capabilities, Files, KubeVersion};
use crate::values::{self, Table};

/// Options of `keel chart template`.
#[derive(Debug, Clone)]
pub struct TemplateOptions {
    pub release_name: String,
    pub namespace: String,
    /// e.g. `1.29` or `v1.29.3`; default [`DEFAULT_KUBE_VERSION`].
    pub kube_version: Option<String>,
    /// Extra API versions for `.Capabilities.APIVersions`.
    pub api_versions: Vec<String>,
    pub include_crds: bool,
    pub skip_tests: bool,
    pub show_only: Vec<String>,
    pub is_upgrade: bool,
    /// `.Release.Revision` (1 for `template` and a first install).
    pub revision: i64,
    /// Do not check values against values.schema.json (`--skip-schema-validation`).
    pub skip_schema_validation: bool,
}

impl Default for TemplateOptions {
    fn default() -> Self {
        TemplateOptions {
            release_name: "release-name".into(),
            namespace: "default".into(),
            kube_version: None,
            api_versions: Vec::new(),
            include_crds: false,
            skip_tests: false,
            show_only: Vec::new(),
            is_upgrade: false,
            skip_schema_validation: false,
            revision: 1,
        }
    }
}

/// `.Capabilities.KubeVersion` without `--kube-version`: Helm 4.1.4's (its client-go's).
pub const DEFAULT_KUBE_VERSION: &str = "v1.35.0";

/// Helm's `InstallOrder` of kinds.
pub const INSTALL_ORDER: &[&str] = &[
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// One rendered document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Source template path (`chart/templates/x.yaml`).
    pub source: String,
    pub kind: String,
    pub name: String,
    pub content: String,
    /// Hook events (`pre-install`, `test`, …); empty for plain manifests.
    pub hooks: Vec<String>,
}

/// The result of rendering a chart.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub manifests: Vec<Manifest>,
    pub hooks: Vec<Manifest>,
    /// (source path, content) of CRDs from `crds/` directories.
    pub crds: Vec<(String, String)>,
    pub notes: Option<String>,
    /// What Helm logs while coalescing values (`warning: cannot overwrite
    /// table with non table for …`); the CLI prints them as Helm does.
    pub warnings: Vec<String>,
    /// Lint mode's log lines (`level=WARN msg="missing required value" …`).
    pub lint_log: Vec<String>,
    /// Lint mode only: each template's output by its path (`chart/templates/x.yaml`).
    pub files: BTreeMap<String, String>,
}

/// Helm's `ParseKubeVersion` (k8s `ParseGeneric`: at least two numeric
/// components, anything after them ignored for comparisons).
///
/// # Errors
/// What Helm says of a version it cannot read.
pub fn parse_kube_version(v: &str) -> Result<KubeVersion, ChartError> {
    let t = v.trim_start();
    let t = t.strip_prefix('v').unwrap_or(t);
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let numbers = t[..end].trim_end_matches('.');
    let parts: Vec<&str> = numbers.split('.').collect();
    if numbers.is_empty() || parts.iter().any(|p| p.is_empty()) {
        return Err(ChartError::KubeVersion(format!(
            "could not parse {} as version",
            keel_gotmpl::gofmt::quote(v)
        )));
    }
    if parts.len() < 2 {
        return Err(ChartError::KubeVersion(format!(
            "illegal version string {}",
            keel_gotmpl::gofmt::quote(v)
        )));
    }
    let num = |p: &str| {
        p.parse::<u64>()
            .map_or_else(|_| p.to_string(), |n| n.to_string())
    };
    let normalized: Vec<String> = parts.iter().map(|p| num(p)).collect();
    Ok(KubeVersion {
        version: if v.starts_with('v') {
            v.to_string()
        } else {
            format!("v{v}")
        },
        normalized: format!("v{}", normalized.join(".")),
        major: num(parts[0]),
        minor: num(parts[1]),
    })
}

fn release_name_ok(n: &str) -> bool {
    let re =
        regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$");
    n.len() <= 53 && re.is_ok_and(|r| r.is_match(n))
}

fn str_list(v: &[String]) -> Value {
    Value::list(v.iter().map(|s| Value::str(s)).collect())
}

fn chart_object(c: &Chart, is_root: bool) -> Value {
    let m = &c.metadata;
    let mut o = BTreeMap::new();
    let s = |x: &str| Value::str(x);
    o.insert("Name".into(), s(&m.name));
    o.insert("Home".into(), s(&m.home));
    o.insert("Sources".into(), str_list(&m.sources));
    o.insert("Version".into(), s(&m.version));
    o.insert("Description".into(), s(&m.description));
    o.insert("Keywords".into(), str_list(&m.keywords));
    o.insert(
        "Maintainers".into(),
        Value::list(
            m.maintainers
                .iter()
                .map(|x| {
                    let mut mm = BTreeMap::new();
                    mm.insert("Name".to_string(), s(&x.name));
                    mm.insert("Email".to_string(), s(&x.email));
                    mm.insert("URL".to_string(), s(&x.url));
                    Value::map(mm)
                })
                .collect(),
        ),
    );
    o.insert("Icon".into(), s(&m.icon));
    o.insert("APIVersion".into(), s(&m.api_version));
    o.insert("Condition".into(), s(&m.condition));
    o.insert("Tags".into(), s(&m.tags));
    o.insert("AppVersion".into(), s(&m.app_version));
    o.insert("Deprecated".into(), Value::Bool(m.deprecated));
    o.insert(
        "Annotations".into(),
        Value::map(
            m.annotations
                .iter()
                .map(|(k, v)| (k.clone(), s(v)))
                .collect(),
        ),
    );
    o.insert("KubeVersion".into(), s(&m.kube_version));
    o.insert("Type".into(), s(&m.chart_type));
    o.insert("IsRoot".into(), Value::Bool(is_root));
    o.insert(
        "Dependencies".into(),
        Value::list(
            m.dependencies
                .iter()
                .map(|d| {
                    let mut mm = BTreeMap::new();
                    mm.insert("Name".to_string(), s(&d.name));
                    mm.insert("Version".to_string(), s(&d.version));
                    mm.insert("Repository".to_string(), s(&d.repository));
                    mm.insert("Condition".to_string(), s(&d.condition));
                    mm.insert("Alias".to_string(), s(&d.alias));
                    mm.insert(
                        "Enabled".to_string(),
                        Value::Bool(d.enabled.unwrap_or(true)),
                    );
                    Value::map(mm)
                })
                .collect(),
        ),
    );
    Value::map(o)
}

struct Renderable {
    text: String,
    vals: Value,
    base_path: String,
}

fn rec_all_tpls(
    c: &Chart,
    tpls: &mut BTreeMap<String, Renderable>,
    parent_values: &Value,
    release: &Value,
    caps: &Value,
    is_root: bool,
) -> Value {
    let values = if is_root {
        parent_values.clone()
    } else {
        match parent_values {
            Value::Map(m) => match m.borrow().get(c.name()) {
                Some(v @ Value::Map(_)) => v.clone(),
                _ => Value::map(BTreeMap::new()),
            },
            _ => Value::map(BTreeMap::new()),
        }
    };
    let mut subcharts = BTreeMap::new();
    for d in &c.dependencies {
        let child = rec_all_tpls(d, tpls, &values, release, caps, false);
        subcharts.insert(d.name().to_string(), child);
    }
    let mut next = BTreeMap::new();
    next.insert("Chart".to_string(), chart_object(c, is_root));
    next.insert(
        "Files".to_string(),
        Value::Object(Rc::new(Files::new(&c.files))),
    );
    next.insert("Release".to_string(), release.clone());
    next.insert("Capabilities".to_string(), caps.clone());
    next.insert("Values".to_string(), values);
    next.insert("Subcharts".to_string(), Value::map(subcharts));
    let next = Value::map(next);
    for t in &c.templates {
        let base = t.name.rsplit('/').next().unwrap_or(&t.name);
        if c.is_library() && !base.starts_with('_') {
            continue;
        }
        tpls.insert(
            format!("{}/{}", c.full_path, t.name),
            Renderable {
                text: String::from_utf8_lossy(&t.data).into_owned(),
                vals: next.clone(),
                base_path: format!("{}/templates", c.full_path),
            },
        );
    }
    next
}

/// Helm's sortTemplates: deepest paths first, then lexicographically descending.
fn sort_templates(keys: &mut [String]) {
    keys.sort_by(|a, b| {
        let (ca, cb) = (a.matches('/').count(), b.matches('/').count());
        cb.cmp(&ca).then_with(|| b.cmp(a))
    });
}

fn cleanup_parse_error(filename: &str, msg: &str) -> String {
    let tokens: Vec<&str> = msg.split(": ").collect();
    if tokens.len() == 1 {
        return format!("parse error in ({filename}): {msg}");
    }
    format!(
        "parse error at ({}): {}",
        tokens[1],
        tokens[tokens.len() - 1]
    )
}

/// Helm 4's `reformatExecErrorMsg`: `required`/`fail` become `execution error
/// at (…)`; a chain of template errors (an `include` inside an `include`)
/// becomes one `location / executing … at <…>: / message` block per template;
/// anything else (a function's own error) stays as Go wrote it.
fn cleanup_exec_error(filename: &str, msg: &str) -> String {
    let tokens: Vec<&str> = msg.splitn(3, ": ").collect();
    if tokens.len() != 3 {
        return format!("execution error in ({filename}): {msg}");
    }
    // warnRegex: HELM_ERR_START((?s).*)HELM_ERR_END, greedy
    if let Some(s) = tokens[2].find(keel_gotmpl::ERR_START) {
        let after = &tokens[2][s + keel_gotmpl::ERR_START.len()..];
        if let Some(e) = after.rfind(keel_gotmpl::ERR_END) {
            return format!("execution error at ({}): {}", tokens[1], &after[..e]);
        }
    }
    trace_exec_error(msg).unwrap_or_else(|| msg.to_string())
}

/// One level of Go's wrapped template errors, as Helm's `TraceableError`.
struct Traced {
    location: String,
    function: String,
    message: String,
}

/// Walks the error chain Go would unwrap. keel's errors are flat strings:
/// a nested template error follows `error calling F: ` (Go's `%w`); any other
/// error text there is a non-template error, where Helm gives up.
fn trace_exec_error(msg: &str) -> Option<String> {
    let mut levels: Vec<Traced> = Vec::new();
    let mut cur = msg;
    loop {
        let rest = cur.strip_prefix("template: ")?;
        if rest.starts_with("no template ") {
            levels.push(Traced {
                location: String::new(),
                function: String::new(),
                message: cur.to_string(),
            });
            break;
        }
        let (tr, tail) = if let Some(i) = rest.find(": executing ") {
            let location = &rest[..i];
            let after = &rest[i + ": executing ".len()..];
            let inner = after.strip_prefix('"')?;
            let q = inner.find('"')?;
            let func = &inner[..q];
            let after_at = inner[q + 1..].strip_prefix(" at <")?;
            let e = after_at.find(">: ")?;
            let at = &after_at[..e];
            let err = &after_at[e + ">: ".len()..];
            let (message, tail) = match err.find(" template:") {
                Some(c) => (&err[..c], Some(&err[c + 1..])),
                None => (err, None),
            };
            (
                Traced {
                    location: location.to_string(),
                    function: format!("executing \"{func}\" at <{at}>:"),
                    message: message.to_string(),
                },
                tail,
            )
        } else {
            let sep = rest.rfind(": ")?;
            let err = &rest[sep + 2..];
            let (message, tail) = match err.find(" template:") {
                Some(c) => (&err[..c], Some(&err[c + 1..])),
                None => (err, None),
            };
            (
                Traced {
                    location: rest[..sep].to_string(),
                    function: String::new(),
                    message: message.to_string(),
                },
                tail,
            )
        };
        let wraps_other = tail.is_none() && tr.message.starts_with("error calling ");
        let wraps_template = tail.is_some()
            && tr.message.starts_with("error calling ")
            && tr.message.ends_with(':')
            && !tr.message[..tr.message.len() - 1].contains(": ");
        levels.push(tr);
        match tail {
            // `error calling F: <non-template error>`: Go's chain leaves the templates
            None if wraps_other => return None,
            None => break,
            Some(t) if wraps_template => cur = t,
            Some(_) => return None,
        }
    }
    let mut out = String::new();
    for l in &levels {
        if !l.location.is_empty() {
            let _ = write!(out, "{}\n  ", l.location);
        }
        if !l.function.is_empty() {
            let _ = write!(out, "{}\n    ", l.function);
        }
        if !l.message.is_empty() {
            let _ = writeln!(out, "{}", l.message);
        }
    }
    Some(out.trim().to_string())
}

fn check_kube_version(c: &Chart, kube: &KubeVersion) -> Result<(), ChartError> {
    let constraint = c.metadata.kube_version.trim();
    if constraint.is_empty() {
        return Ok(());
    }
    let mut t = Templates::new();
    let text = format!(
        "{{{{ semverCompare {} {} }}}}",
        keel_gotmpl::gofmt::quote(constraint),
        keel_gotmpl::gofmt::quote(&kube.normalized)
    );
    t.parse("k", &text)
        .map_err(|e| ChartError::KubeVersion(e.to_string()))?;
    let ok = t
        .execute("k", &Value::Nil)
        .map_err(|e| ChartError::KubeVersion(e.to_string()))?;
    if ok != "true" {
        return Err(ChartError::KubeVersion(format!(
            "chart requires kubeVersion: {constraint} which is incompatible with Kubernetes {}",
            kube.version
        )));
    }
    Ok(())
}

/// Helm 4's `ValidateAgainstSchema`: the chart's schema, then each subchart
/// whose values are present.
fn validate_schemas(c: &Chart, vals: &Value, out: &mut String) {
    if let Some(schema) = &c.schema
        && let Some(errs) = crate::schema::validate(schema, &vals.to_json())
    {
        let _ = write!(out, "{}:\n{errs}", c.name());
    }
    for d in &c.dependencies {
        let sub = match vals {
            Value::Map(m) => m.borrow().get(d.name()).cloned().unwrap_or(Value::Nil),
            _ => Value::Nil,
        };
        match sub {
            Value::Nil | Value::Invalid => {}
            Value::Map(_) => validate_schemas(d, &sub, out),
            other => {
                let _ = write!(
                    out,
                    "{}:\ninvalid type for values: expected object (map), got {}\n",
                    d.name(),
                    other.type_name()
                );
            }
        }
    }
}

/// Renders every template of a chart and sorts the documents like Helm.
pub fn render(chart: &Chart, user: &Table, opts: &TemplateOptions) -> Result<Rendered, ChartError> {
    render_mode(chart, user, opts, false)
}

/// [`render`] in Helm's lint mode (`required` and `fail` log and go on,
/// their lines in [`Rendered::lint_log`]).
pub fn render_lint(
    chart: &Chart,
    user: &Table,
    opts: &TemplateOptions,
) -> Result<Rendered, ChartError> {
    render_mode(chart, user, opts, true)
}

fn render_mode(
    chart: &Chart,
    user: &Table,
    opts: &TemplateOptions,
    lint: bool,
) -> Result<Rendered, ChartError> {
    if !release_name_ok(&opts.release_name) {
        return Err(ChartError::ReleaseName(opts.release_name.clone()));
    }
    if chart.is_library() {
        return Err(ChartError::NotInstallable("library".into()));
    }
    let kube = parse_kube_version(opts.kube_version.as_deref().unwrap_or(DEFAULT_KUBE_VERSION))?;
    // lint renders whatever the chart's kubeVersion says (Helm checks it on install)
    if !lint {
        check_kube_version(chart, &kube)?;
    }
    let mut chart = chart.clone();
    let mut warnings = Vec::new();
    values::process_dependencies(&mut chart, user, &mut warnings)?;
    let vals = Value::map(values::coalesce_values_for(&chart, user, &mut warnings)?);
    let mut schema_errs = String::new();
    if !opts.skip_schema_validation {
        validate_schemas(&chart, &vals, &mut schema_errs);
    }
    if !schema_errs.is_empty() {
        return Err(ChartError::Schema(format!(
            "values don't meet the specifications of the schema(s) in the following chart(s):\n{schema_errs}"
        )));
    }
    let mut release = BTreeMap::new();
    release.insert("Name".to_string(), Value::str(&opts.release_name));
    release.insert("Namespace".to_string(), Value::str(&opts.namespace));
    release.insert("IsUpgrade".to_string(), Value::Bool(opts.is_upgrade));
    release.insert("IsInstall".to_string(), Value::Bool(!opts.is_upgrade));
    release.insert("Revision".to_string(), Value::Int(opts.revision));
    release.insert("Service".to_string(), Value::str("Helm"));
    let release = Value::map(release);
    let mut api = crate::objects::default_api_versions();
    api.extend(opts.api_versions.iter().cloned());
    let caps = Value::Object(Rc::new(Capabilities {
        kube,
        api_versions: api,
    }));
    let mut tpls = BTreeMap::new();
    rec_all_tpls(&chart, &mut tpls, &vals, &release, &caps, true);
    let mut keys: Vec<String> = tpls.keys().cloned().collect();
    sort_templates(&mut keys);
    let mut set = Templates::new();
    set.missing_key = MissingKey::Zero;
    set.helm_error_markers = true;
    set.lint_mode = lint;
    for k in &keys {
        set.parse(k, &tpls[k].text)
            .map_err(|e| ChartError::Parse(cleanup_parse_error(k, &e.to_string())))?;
    }
    let mut rendered: BTreeMap<String, String> = BTreeMap::new();
    for k in &keys {
        let base = k.rsplit('/').next().unwrap_or(k);
        if base.starts_with('_') {
            continue;
        }
        let r = &tpls[k];
        let mut top = match &r.vals {
            Value::Map(m) => m.borrow().clone(),
            _ => BTreeMap::new(),
        };
        let mut tm = BTreeMap::new();
        tm.insert("Name".to_string(), Value::str(k));
        tm.insert("BasePath".to_string(), Value::str(&r.base_path));
        top.insert("Template".to_string(), Value::map(tm));
        let out = set
            .execute(k, &Value::map(top))
            .map_err(|e| ChartError::Render(cleanup_exec_error(k, &e.to_string())))?;
        rendered.insert(k.clone(), out.replace("<no value>", ""));
    }
    let notes_key = format!("{}/templates/NOTES.txt", chart.full_path);
    let notes = rendered.get(&notes_key).cloned();
    // lint parses each file itself and reports YAML errors per file
    let (hooks, manifests) = if lint {
        sort_manifests(&rendered).unwrap_or_default()
    } else {
        sort_manifests(&rendered)?
    };
    let mut crds = Vec::new();
    collect_crds(&chart, &mut crds);
    let lint_log = set.lint_log.borrow().clone();
    let files = if lint { rendered } else { BTreeMap::new() };
    Ok(Rendered {
        manifests,
        hooks,
        crds,
        notes,
        warnings,
        lint_log,
        files,
    })
}

fn collect_crds(c: &Chart, out: &mut Vec<(String, String)>) {
    for f in &c.crds {
        out.push((
            format!("{}/{}", c.full_path, f.name),
            String::from_utf8_lossy(&f.data).into_owned(),
        ));
    }
    for d in &c.dependencies {
        collect_crds(d, out);
    }
}

fn is_re_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// Helm's `SplitManifests`: splits at matches of `(?:^|\s*\n)---\s*`
/// (leftmost-first, as Go's regexp), trimming each document. Hand-written
/// because a regex over every rendered file dominated `keel chart template`.
#[allow(clippy::many_single_char_names)]
pub fn split_manifests(big: &str) -> Vec<String> {
    let s = big.trim();
    let b = s.as_bytes();
    let n = b.len();
    let mut pieces: Vec<&str> = Vec::new();
    let mut last = 0;
    let mut pos = 0;
    let skip_ws = |mut e: usize| {
        while e < n && is_re_space(b[e]) {
            e += 1;
        }
        e
    };
    if s.starts_with("---") {
        pieces.push("");
        last = skip_ws(3);
        pos = last;
    }
    while pos < n {
        let Some(off) = s[pos..].find("\n---") else {
            break;
        };
        let j = pos + off;
        let mut p = j;
        while p > pos && is_re_space(b[p - 1]) {
            p -= 1;
        }
        pieces.push(&s[last..p]);
        last = skip_ws(j + 4);
        pos = last;
    }
    pieces.push(&s[last.min(n)..]);
    pieces
        .into_iter()
        .filter(|d| !d.is_empty())
        .map(|d| d.trim().to_string())
        .collect()
}

#[derive(Debug, serde::Deserialize, Default)]
struct Head {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Option<HeadMeta>,
}

#[derive(Debug, serde::Deserialize, Default)]
struct HeadMeta {
    #[serde(default)]
    name: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, serde_yaml_ng::Value>>,
}

const HOOK_EVENTS: &[&str] = &[
    "pre-install",
    "post-install",
    "pre-delete",
    "post-delete",
    "pre-upgrade",
    "post-upgrade",
    "pre-rollback",
    "post-rollback",
    "test",
    "test-success",
    "test-failure",
];

fn kind_rank(k: &str) -> Option<usize> {
    INSTALL_ORDER.iter().position(|x| *x == k)
}

fn sort_by_kind(v: &mut [Manifest]) {
    v.sort_by(|a, b| match (kind_rank(&a.kind), kind_rank(&b.kind)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.kind.cmp(&b.kind),
    });
}

/// libyaml's message as go-yaml (the same C parser, ported) words it:
/// `yaml: line N: problem`, where N is 1-based for scanner errors and the
/// 0-based mark for parser errors (go-yaml's `parser.fail`), and no context.
fn go_yaml_error(msg: &str) -> String {
    let Some((problem, rest)) = msg.split_once(" at line ") else {
        return format!("yaml: {msg}");
    };
    let line: usize = rest
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let scanner = !problem.starts_with("did not find expected")
        || [
            "alphabetic or numeric character",
            "whitespace or line break",
            "tag URI",
            "comment or line break",
        ]
        .iter()
        .any(|s| problem.ends_with(s));
    // go-yaml reports no line when the problem is on the first (0-based 0)
    let line = match line {
        0 | 1 => 0,
        l if scanner => l,
        l => l - 1,
    };
    if line == 0 {
        format!("yaml: {problem}")
    } else {
        format!("yaml: line {line}: {problem}")
    }
}

/// Helm's `SortManifests`: (hooks, manifests), each in install order.
fn sort_manifests(
    files: &BTreeMap<String, String>,
) -> Result<(Vec<Manifest>, Vec<Manifest>), ChartError> {
    let mut hooks = Vec::new();
    let mut generic = Vec::new();
    for (path, content) in files {
        let base = path.rsplit('/').next().unwrap_or(path);
        if base.starts_with('_') || path.ends_with("NOTES.txt") || content.trim().is_empty() {
            continue;
        }
        for doc in split_manifests(content) {
            let head: Head = serde_yaml_ng::from_str::<Option<Head>>(&doc)
                .map_err(|e| {
                    ChartError::Manifest(format!(
                        "YAML parse error on {path}: error converting YAML to JSON: {}",
                        go_yaml_error(&e.to_string())
                    ))
                })?
                .unwrap_or_default();
            let meta = head.metadata.unwrap_or_default();
            let name = match meta.name {
                Some(serde_yaml_ng::Value::String(s)) => s,
                _ => String::new(),
            };
            let hook = meta
                .annotations
                .as_ref()
                .and_then(|a| a.get("helm.sh/hook"))
                .and_then(|v| v.as_str().map(str::to_string));
            let m = Manifest {
                source: path.clone(),
                kind: head.kind.clone(),
                name,
                content: doc,
                hooks: Vec::new(),
            };
            match hook {
                None => generic.push(m),
                Some(h) => {
                    let events: Vec<String> =
                        h.split(',').map(|e| e.trim().to_lowercase()).collect();
                    if events.iter().any(|e| !HOOK_EVENTS.contains(&e.as_str())) {
                        // Helm logs and drops hooks of unknown types
                        continue;
                    }
                    hooks.push(Manifest { hooks: events, ..m });
                }
            }
        }
    }
    sort_by_kind(&mut hooks);
    sort_by_kind(&mut generic);
    Ok((hooks, generic))
}

/// The text `helm template` prints for a rendered chart.
pub fn template_text(r: &Rendered, opts: &TemplateOptions) -> Result<String, ChartError> {
    let mut main = String::new();
    if opts.include_crds {
        for (src, content) in &r.crds {
            let _ = write!(main, "---\n# Source: {src}\n{content}\n");
        }
    }
    for m in &r.manifests {
        let _ = write!(main, "---\n# Source: {}\n{}\n", m.source, m.content);
    }
    // `helm template` prints `strings.TrimSpace(rel.Manifest)` and a newline
    // (a lone newline when nothing rendered), then the hooks.
    let mut out = format!("{}\n", main.trim_matches(|c: char| c.is_whitespace()));
    for h in &r.hooks {
        let is_test = h.hooks.iter().any(|e| e.starts_with("test"));
        if opts.skip_tests && is_test {
            continue;
        }
        let _ = write!(out, "---\n# Source: {}\n{}\n", h.source, h.content);
    }
    if opts.show_only.is_empty() {
        return Ok(out);
    }
    let docs = split_manifests(&out);
    // Helm matches `# Source: [^/]+/(.+)`: the path after the chart name.
    let source_of = |d: &str| -> Option<String> {
        let i = d.find("# Source: ")?;
        let rest = &d[i + "# Source: ".len()..];
        let line = rest.lines().next().unwrap_or("");
        let (chart, path) = line.split_once('/')?;
        (!chart.is_empty() && !path.is_empty()).then(|| path.to_string())
    };
    let mut picked = Vec::new();
    for f in &opts.show_only {
        let f = f.replace('\\', "/");
        let mut missing = true;
        for d in &docs {
            let Some(c) = source_of(d) else {
                continue;
            };
            if crate::glob::matches(&f, &c, false) {
                picked.push(d.clone());
                missing = false;
            }
        }
        if missing {
            return Err(ChartError::ShowOnly(format!(
                "could not find template {f} in chart"
            )));
        }
    }
    let mut s = String::new();
    for p in picked {
        let _ = write!(s, "---\n{p}\n");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_helm() {
        assert_eq!(
            split_manifests("a: 1\n---\nb: 2\n---\n\n---\nc: 3"),
            vec!["a: 1", "b: 2", "---\nc: 3"]
        );
        assert_eq!(
            split_manifests("---\na: 1 \n \n---x\n---"),
            vec!["a: 1", "x"]
        );
        assert_eq!(split_manifests("\n\na\n---"), vec!["a"]);
        let mut k = vec![
            "c/templates/a.yaml".to_string(),
            "c/charts/s/templates/z.yaml".to_string(),
            "c/templates/b.yaml".to_string(),
        ];
        sort_templates(&mut k);
        assert_eq!(
            k,
            vec![
                "c/charts/s/templates/z.yaml",
                "c/templates/b.yaml",
                "c/templates/a.yaml"
            ]
        );
        assert_eq!(parse_kube_version("1.28").unwrap().version, "v1.28");
        assert_eq!(
            parse_kube_version("1.33.4-gke.1245000").unwrap().normalized,
            "v1.33.4"
        );
    }
}
