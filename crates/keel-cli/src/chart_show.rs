//! `keel chart list|history|status|get`: Helm 4's read-only release
//! commands, printed as Helm prints them (its `uitable` tables, Go time
//! formats, `-o json|yaml`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use keel_chart::release::{self, Release, status};
use serde_json::Value as J;

use crate::chart_release::{Ctx, KubeFlags};

/// `keel chart list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub kube: KubeFlags,
    /// Show all releases without any filter applied (Helm 3's flag; Helm 4 shows all by default).
    #[arg(short = 'a', long = "all", hide = true)]
    pub all: bool,
    /// Maximum number of releases to fetch.
    #[arg(short = 'm', long = "max", default_value_t = 256)]
    pub max: usize,
    /// Next release index in the list, used to offset from start value.
    #[arg(long = "offset", default_value_t = 0)]
    pub offset: usize,
    /// List releases across all namespaces.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// Show deployed releases.
    #[arg(long)]
    pub deployed: bool,
    /// Show failed releases.
    #[arg(long)]
    pub failed: bool,
    /// Show pending releases.
    #[arg(long)]
    pub pending: bool,
    /// Show superseded releases.
    #[arg(long)]
    pub superseded: bool,
    /// Show uninstalled releases (if `uninstall --keep-history` was used).
    #[arg(long)]
    pub uninstalled: bool,
    /// Show releases that are being uninstalled.
    #[arg(long)]
    pub uninstalling: bool,
    /// Output format: table, json or yaml.
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
    /// Output short (quiet) listing format.
    #[arg(short = 'q', long = "short")]
    pub short: bool,
    /// Don't print headers in the table.
    #[arg(long = "no-headers")]
    pub no_headers: bool,
    /// A regular expression: only releases whose names match are shown.
    #[arg(short = 'f', long = "filter")]
    pub filter: Option<String>,
    /// Reverse the sort order.
    #[arg(short = 'r', long = "reverse")]
    pub reverse: bool,
    /// Sort by release date.
    #[arg(short = 'd', long = "date")]
    pub date: bool,
    /// Format times with a Go layout, e.g. "2006-01-02 15:04:05Z0700".
    #[arg(long = "time-format")]
    pub time_format: Option<String>,
}

/// `keel chart history NAME`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    pub name: String,
    #[command(flatten)]
    pub kube: KubeFlags,
    /// Maximum number of revisions to include.
    #[arg(long = "max", default_value_t = 256)]
    pub max: usize,
    /// Output format: table, json or yaml.
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
}

/// `keel chart status NAME`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    pub name: String,
    #[command(flatten)]
    pub kube: KubeFlags,
    /// Show the status of this revision.
    #[arg(long = "revision")]
    pub revision: Option<i64>,
    /// Output format: table, json or yaml.
    #[arg(short = 'o', long = "output", default_value = "table")]
    pub output: String,
}

/// `keel chart get …`.
#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// The values of a release.
    Values {
        name: String,
        #[command(flatten)]
        kube: KubeFlags,
        /// Dump all (computed) values.
        #[arg(short = 'a', long = "all")]
        all: bool,
        #[arg(long = "revision")]
        revision: Option<i64>,
        #[arg(short = 'o', long = "output", default_value = "table")]
        output: String,
    },
    /// The manifest of a release.
    Manifest {
        name: String,
        #[command(flatten)]
        kube: KubeFlags,
        #[arg(long = "revision")]
        revision: Option<i64>,
    },
    /// The notes of a release.
    Notes {
        name: String,
        #[command(flatten)]
        kube: KubeFlags,
        #[arg(long = "revision")]
        revision: Option<i64>,
    },
    /// The hooks of a release.
    Hooks {
        name: String,
        #[command(flatten)]
        kube: KubeFlags,
        #[arg(long = "revision")]
        revision: Option<i64>,
    },
    /// Everything about a release.
    All {
        name: String,
        #[command(flatten)]
        kube: KubeFlags,
        #[arg(long = "revision")]
        revision: Option<i64>,
        /// A Go template over `.Release` (Helm's field names: `.Release.Chart.Metadata.Version`).
        #[arg(long = "template")]
        template: Option<String>,
    },
    /// The metadata of a release: chart, labels, status, when and how deployed.
    Metadata {
        name: String,
        #[command(flatten)]
        kube: KubeFlags,
        #[arg(long = "revision")]
        revision: Option<i64>,
        #[arg(short = 'o', long = "output", default_value = "table")]
        output: String,
    },
}

/// One chart dependency as Helm's `chart.Dependency` marshals it (its field order).
#[derive(serde::Serialize)]
struct DepJson {
    name: J,
    #[serde(skip_serializing_if = "is_empty_json")]
    version: J,
    repository: J,
    #[serde(skip_serializing_if = "is_empty_json")]
    condition: J,
    #[serde(skip_serializing_if = "is_empty_json")]
    tags: J,
    #[serde(skip_serializing_if = "is_empty_json")]
    enabled: J,
    #[serde(rename = "import-values", skip_serializing_if = "is_empty_json")]
    import_values: J,
    #[serde(skip_serializing_if = "is_empty_json")]
    alias: J,
}

fn is_empty_json(v: &J) -> bool {
    match v {
        J::Null => true,
        J::Bool(b) => !b,
        J::String(s) => s.is_empty(),
        J::Array(a) => a.is_empty(),
        J::Object(o) => o.is_empty(),
        J::Number(_) => false,
    }
}

/// Helm's `action.Metadata`, field for field.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct MetadataJson {
    name: String,
    chart: String,
    version: String,
    app_version: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dependencies: Vec<DepJson>,
    namespace: String,
    revision: i64,
    status: String,
    deployed_at: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    apply_method: String,
}

/// The labels a user gave the release record (Helm's own left out).
fn record_labels(ctx: &Ctx, rel: &Release) -> anyhow::Result<BTreeMap<String, String>> {
    let path = format!(
        "/api/v1/namespaces/{}/secrets/{}",
        ctx.ns,
        release::key(&rel.name, rel.version)
    );
    let secret = ctx.kube.get(&path)?.unwrap_or(J::Null);
    let system = [
        "name",
        "owner",
        "status",
        "version",
        "createdAt",
        "modifiedAt",
    ];
    Ok(secret["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !system.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect())
}

/// `helm get metadata`.
fn metadata(ctx: &Ctx, rel: &Release, output: &str) -> anyhow::Result<String> {
    let m = &rel.chart["metadata"];
    let text = |v: &J| v.as_str().unwrap_or_default().to_string();
    let annotations: BTreeMap<String, String> = m["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), text(v)))
        .collect();
    let dependencies: Vec<DepJson> = m["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| DepJson {
            name: d["name"].clone(),
            version: d["version"].clone(),
            repository: d
                .get("repository")
                .cloned()
                .unwrap_or(J::String(String::new())),
            condition: d["condition"].clone(),
            tags: d["tags"].clone(),
            enabled: d["enabled"].clone(),
            import_values: d["import-values"].clone(),
            alias: d["alias"].clone(),
        })
        .collect();
    // Helm formats the stored time in the local zone with RFC 3339
    let deployed_at = rel.info.last_deployed.as_deref().map_or_else(
        || "0001-01-01T00:00:00Z".to_string(),
        |t| go_time_format(t, "2006-01-02T15:04:05Z07:00"),
    );
    let md = MetadataJson {
        name: rel.name.clone(),
        chart: text(&m["name"]),
        version: text(&m["version"]),
        app_version: text(&m["appVersion"]),
        annotations,
        labels: record_labels(ctx, rel)?,
        dependencies,
        namespace: rel.namespace.clone(),
        revision: rel.version,
        status: rel.info.status.clone(),
        deployed_at,
        apply_method: rel.apply_method.clone(),
    };
    if output != "table" {
        return encode(&md, output);
    }
    let kv = |m: &BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut deps: Vec<String> = md.dependencies.iter().map(|d| text(&d.name)).collect();
    deps.sort();
    let apply = match md.apply_method.as_str() {
        "" => "client-side apply (defaulted)".to_string(),
        "csa" => "client-side apply".to_string(),
        "ssa" => "server-side apply".to_string(),
        o => format!("unknown ({o:?})"),
    };
    Ok(format!(
        "NAME: {}\nCHART: {}\nVERSION: {}\nAPP_VERSION: {}\nANNOTATIONS: {}\nLABELS: {}\nDEPENDENCIES: {}\nNAMESPACE: {}\nREVISION: {}\nSTATUS: {}\nDEPLOYED_AT: {}\nAPPLY_METHOD: {apply}\n",
        md.name,
        md.chart,
        md.version,
        md.app_version,
        kv(&md.annotations),
        kv(&md.labels),
        deps.join(","),
        md.namespace,
        md.revision,
        md.status,
        md.deployed_at,
    ))
}

/// A stored JSON key as the Go field it comes from (`first_deployed` ->
/// `FirstDeployed`, `apiVersion` -> `APIVersion`), for `--template`.
fn go_field(k: &str) -> String {
    match k {
        "apiVersion" => "APIVersion".into(),
        "import-values" => "ImportValues".into(),
        _ => k
            .split(['_', '-'])
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect::<String>())
                    .unwrap_or_default()
            })
            .collect(),
    }
}

fn go_fields(v: &J) -> J {
    match v {
        J::Object(m) => J::Object(m.iter().map(|(k, v)| (go_field(k), go_fields(v))).collect()),
        J::Array(a) => J::Array(a.iter().map(go_fields).collect()),
        o => o.clone(),
    }
}

/// Go's `Time.String()` of a stored time: `2006-01-02 15:04:05.999999999 -0700 MST`.
pub fn go_time_string(t: &str) -> String {
    let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) else {
        return t.to_string();
    };
    let frac = t
        .split_once('.')
        .map(|(_, f)| {
            f.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .trim_end_matches('0')
                .to_string()
        })
        .unwrap_or_default();
    let mut out = d.format("%Y-%m-%d %H:%M:%S").to_string();
    if !frac.is_empty() {
        out.push('.');
        out.push_str(&frac);
    }
    let off = d.format("%z").to_string();
    let zone = if t.ends_with('Z') {
        "UTC".to_string()
    } else {
        off.clone()
    };
    format!("{out} {off} {zone}")
}

/// Go's `Time.Format(layout)` of a stored time, in the local zone (TZ) as
/// Helm's `--time-format`: the reference time's elements (2006, 01, Jan,
/// 02, _2, 15, 03, 04, 05, PM, MST, Z0700, -07:00, .000, …) are replaced.
pub fn go_time_format(t: &str, layout: &str) -> String {
    let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) else {
        return t.to_string();
    };
    let d = d.with_timezone(&chrono::Local);
    // longest elements first, as Go's nextStdChunk prefers them
    let elems: &[(&str, &str)] = &[
        ("January", "%B"),
        ("Monday", "%A"),
        ("Z07:00", "Z07:00"),
        ("-07:00", "%:z"),
        ("Z0700", "Z0700"),
        ("-0700", "%z"),
        ("2006", "%Y"),
        ("Jan", "%b"),
        ("Mon", "%a"),
        ("MST", "%Z"),
        (".000000000", "%.9f"),
        (".000000", "%.6f"),
        (".000", "%.3f"),
        ("_2", "%e"),
        ("01", "%m"),
        ("02", "%d"),
        ("03", "%I"),
        ("04", "%M"),
        ("05", "%S"),
        ("06", "%y"),
        ("15", "%H"),
        ("PM", "%p"),
        ("pm", "%P"),
        ("1", "%-m"),
        ("2", "%-d"),
        ("3", "%-I"),
        ("4", "%-M"),
        ("5", "%-S"),
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        for (go, fmt) in elems {
            if let Some(r) = rest.strip_prefix(go) {
                let piece = match *fmt {
                    "Z07:00" | "Z0700" if d.offset().local_minus_utc() == 0 => "Z".to_string(),
                    "Z07:00" => d.format("%:z").to_string(),
                    "Z0700" => d.format("%z").to_string(),
                    f => d.format(f).to_string(),
                };
                out.push_str(&piece);
                rest = r;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Go's `time.ANSIC` layout: `Mon Jan _2 15:04:05 2006`.
pub fn ansic(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t).map_or_else(
        |_| t.to_string(),
        |d| d.format("%a %b %e %H:%M:%S %Y").to_string(),
    )
}

/// A table cell at most `width` characters (0: any), cut with `...` as
/// uitable's `MaxColWidth` does.
pub fn truncate(s: &str, width: usize) -> String {
    if width > 0 && s.chars().count() > width {
        let keep: String = s.chars().take(width.saturating_sub(3)).collect();
        format!("{keep}...")
    } else {
        s.to_string()
    }
}

/// `gosuri/uitable` as Helm uses it: every cell padded to its column's
/// width, cells joined by a tab; Helm's `EncodeTable` adds a newline.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let lines: Vec<String> = rows
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect();
    format!("{}\n", lines.join("\n"))
}

/// `-o json` keeps the struct's field order (Go's); `-o yaml` sorts keys (sigs.k8s.io/yaml).
pub(crate) fn encode<T: serde::Serialize>(v: &T, output: &str) -> anyhow::Result<String> {
    match output {
        // Go's encoding/json escapes <, > and & (and U+2028/9) in strings
        "json" => Ok(format!(
            "{}\n",
            serde_json::to_string(v)?
                .replace('<', "\\u003c")
                .replace('>', "\\u003e")
                .replace('&', "\\u0026")
                .replace('\u{2028}', "\\u2028")
                .replace('\u{2029}', "\\u2029")
        )),
        "yaml" => Ok(keel_chart::json_to_yaml(&serde_json::to_value(v)?)),
        o => bail!("invalid format type {o:?}"),
    }
}

/// One row of `helm list -o json`.
#[derive(serde::Serialize)]
struct ListElement<'a> {
    name: &'a str,
    namespace: &'a str,
    revision: &'a str,
    updated: &'a str,
    status: &'a str,
    chart: &'a str,
    app_version: &'a str,
}

/// One row of `helm history -o json`.
#[derive(serde::Serialize)]
struct HistoryElement {
    revision: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated: Option<String>,
    status: String,
    chart: String,
    app_version: String,
    description: String,
}

/// `keel chart list`.
pub fn list(a: &ListArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&a.kube)?;
    let filter = a
        .filter
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("invalid --filter")?;
    let mut rels = ctx.all(a.all_namespaces)?;
    rels.retain(|r| filter.as_ref().is_none_or(|f| f.is_match(&r.name)));
    let mut mask: Vec<&str> = Vec::new();
    for (on, states) in [
        (a.deployed, &[status::DEPLOYED][..]),
        (a.failed, &[status::FAILED][..]),
        (
            a.pending,
            &[
                status::PENDING_INSTALL,
                status::PENDING_UPGRADE,
                status::PENDING_ROLLBACK,
            ][..],
        ),
        (a.superseded, &[status::SUPERSEDED][..]),
        (a.uninstalled, &[status::UNINSTALLED][..]),
        (a.uninstalling, &[status::UNINSTALLING][..]),
    ] {
        if on && !a.all {
            mask.extend(states);
        }
    }
    let only_superseded = mask == [status::SUPERSEDED];
    if !only_superseded {
        // the newest record of each release
        let mut latest: std::collections::BTreeMap<(String, String), Release> =
            std::collections::BTreeMap::new();
        for r in rels {
            let k = (r.namespace.clone(), r.name.clone());
            if latest.get(&k).is_none_or(|o| o.version < r.version) {
                latest.insert(k, r);
            }
        }
        rels = latest.into_values().collect();
    }
    if !mask.is_empty() {
        rels.retain(|r| mask.contains(&r.info.status.as_str()));
    }
    if a.date {
        rels.sort_by(|x, y| x.info.last_deployed.cmp(&y.info.last_deployed));
    } else {
        rels.sort_by(|x, y| x.name.cmp(&y.name));
    }
    if a.reverse {
        rels.reverse();
    }
    let rels: Vec<Release> = rels
        .into_iter()
        .skip(a.offset)
        .take(if a.max == 0 { usize::MAX } else { a.max })
        .collect();
    if a.short {
        let names: Vec<&str> = rels.iter().map(|r| r.name.as_str()).collect();
        if a.output == "table" {
            for n in names {
                println!("{n}");
            }
        } else {
            print!("{}", encode(&names, &a.output)?);
        }
        return Ok(());
    }
    let elems: Vec<[String; 7]> = rels
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.namespace.clone(),
                r.version.to_string(),
                r.info.last_deployed.as_deref().map_or_else(
                    || "-".to_string(),
                    |t| match &a.time_format {
                        Some(layout) if !layout.is_empty() => go_time_format(t, layout),
                        _ => go_time_string(t),
                    },
                ),
                r.info.status.clone(),
                r.chart_name_version(),
                r.app_version(),
            ]
        })
        .collect();
    if a.output == "table" {
        let mut rows = Vec::new();
        if !a.no_headers {
            rows.push(
                [
                    "NAME",
                    "NAMESPACE",
                    "REVISION",
                    "UPDATED",
                    "STATUS",
                    "CHART",
                    "APP VERSION",
                ]
                .map(String::from)
                .to_vec(),
            );
        }
        rows.extend(elems.iter().map(|e| e.to_vec()));
        print!("{}", table(&rows));
        return Ok(());
    }
    let v: Vec<ListElement> = elems
        .iter()
        .map(|e| ListElement {
            name: &e[0],
            namespace: &e[1],
            revision: &e[2],
            updated: &e[3],
            status: &e[4],
            chart: &e[5],
            app_version: &e[6],
        })
        .collect();
    print!("{}", encode(&v, &a.output)?);
    Ok(())
}

fn not_found() -> anyhow::Error {
    anyhow::anyhow!("release: not found")
}

/// `keel chart history`.
pub fn history(a: &HistoryArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&a.kube)?;
    let mut h = ctx.history(&a.name)?;
    if h.is_empty() {
        return Err(not_found());
    }
    if a.max > 0 && h.len() > a.max {
        h.drain(..h.len() - a.max);
    }
    if a.output == "table" {
        let mut rows = vec![
            [
                "REVISION",
                "UPDATED",
                "STATUS",
                "CHART",
                "APP VERSION",
                "DESCRIPTION",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for r in &h {
            rows.push(vec![
                r.version.to_string(),
                // Go formats the zero time when a record has none
                r.info
                    .last_deployed
                    .as_deref()
                    .map_or_else(|| "Mon Jan  1 00:00:00 0001".to_string(), ansic),
                r.info.status.clone(),
                r.chart_name_version(),
                r.app_version(),
                r.info.description.clone(),
            ]);
        }
        print!("{}", table(&rows));
        return Ok(());
    }
    let v: Vec<HistoryElement> = h
        .iter()
        .map(|r| HistoryElement {
            revision: r.version,
            updated: r.info.last_deployed.clone(),
            status: r.info.status.clone(),
            chart: r.chart_name_version(),
            app_version: r.app_version(),
            description: r.info.description.clone(),
        })
        .collect();
    print!("{}", encode(&v, &a.output)?);
    Ok(())
}

fn pick(ctx: &Ctx, name: &str, revision: Option<i64>) -> anyhow::Result<Release> {
    let h = ctx.history(name)?;
    match revision.filter(|&r| r > 0) {
        Some(v) => h.into_iter().find(|r| r.version == v).ok_or_else(not_found),
        None => h.into_iter().last().ok_or_else(not_found),
    }
}

/// Helm's `KubeClient.Get(resources, related)`: each object of the
/// manifest by `version/Kind`, plus the pods a workload selects under
/// `v1/Pod(related)`; as server-side Tables for the table output.
fn live_resources(ctx: &Ctx, rel: &Release, table: bool) -> anyhow::Result<Vec<(String, Vec<J>)>> {
    let mut groups: std::collections::BTreeMap<String, Vec<J>> = std::collections::BTreeMap::new();
    let mut selectors: Vec<J> = Vec::new();
    for o in crate::chart_release::objects(&rel.manifest)? {
        let Ok((path, _)) = ctx.kube.object_path(&o, &rel.namespace) else {
            continue;
        };
        let live = if table {
            ctx.kube.get_table(&path)
        } else {
            ctx.kube.get(&path)
        };
        let Ok(Some(live)) = live else {
            continue;
        };
        let av = o["apiVersion"].as_str().unwrap_or_default();
        let kind = o["kind"].as_str().unwrap_or_default();
        let version = av.rsplit('/').next().unwrap_or(av);
        groups
            .entry(format!("{version}/{kind}"))
            .or_default()
            .push(live);
        let sel = match kind {
            "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => {
                o["spec"]["selector"]["matchLabels"].clone()
            }
            "ReplicationController" => o["spec"]["selector"].clone(),
            _ => continue,
        };
        let Some(m) = sel.as_object().filter(|m| !m.is_empty()) else {
            continue;
        };
        if selectors.contains(&sel) {
            continue;
        }
        selectors.push(sel.clone());
        let query: Vec<String> = m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        let ns = o["metadata"]["namespace"]
            .as_str()
            .unwrap_or(&rel.namespace);
        let col = format!("/api/v1/namespaces/{ns}/pods");
        let pods = groups.entry("v1/Pod(related)".into()).or_default();
        // one list (or Table) for all of them, as Helm's builder returns it
        if let Ok(Some(l)) = ctx.kube.list_object(&col, &query.join(","), table) {
            pods.push(l);
        }
    }
    Ok(groups.into_iter().filter(|(_, v)| !v.is_empty()).collect())
}

/// kubectl's table printer as Helm's status drives it: one printer for all
/// tables (headers again only when the columns change), each table through
/// its own tabwriter (minwidth 6, padding 3), priority-0 columns only.
fn print_tables(groups: &[(String, Vec<J>)]) -> String {
    let mut out = String::new();
    let mut last_columns: Option<J> = None;
    let mut printed_headers = false;
    for (key, tables) in groups {
        let _ = writeln!(out, "==> {key}");
        for t in tables {
            let mut defs = t["columnDefinitions"].clone();
            let empty = defs.as_array().is_none_or(Vec::is_empty);
            let no_headers = printed_headers && (empty || Some(&defs) == last_columns.as_ref());
            if empty {
                defs = last_columns.clone().unwrap_or(J::Null);
            } else if !no_headers {
                last_columns = Some(defs.clone());
                printed_headers = false;
            }
            let rows = t["rows"].as_array().cloned().unwrap_or_default();
            if !rows.is_empty() {
                printed_headers = true;
            }
            let shown: Vec<usize> = defs
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .filter(|(_, c)| c["priority"].as_i64().unwrap_or(0) == 0)
                .map(|(i, _)| i)
                .collect();
            let mut lines: Vec<Vec<String>> = Vec::new();
            if !no_headers {
                if rows.is_empty() {
                    continue;
                }
                lines.push(
                    shown
                        .iter()
                        .map(|&i| defs[i]["name"].as_str().unwrap_or_default().to_uppercase())
                        .collect(),
                );
            }
            for r in &rows {
                lines.push(
                    shown
                        .iter()
                        .map(|&i| match &r["cells"][i] {
                            J::String(s) => s.clone(),
                            J::Null => "<none>".to_string(),
                            v => v.to_string(),
                        })
                        .collect(),
                );
            }
            out.push_str(&tabwriter(&lines));
        }
        out.push('\n');
    }
    out
}

/// Go's text/tabwriter (minwidth 6, padding 3, flags 0) over rows whose
/// cells end in tabs except the last.
fn tabwriter(lines: &[Vec<String>]) -> String {
    let cols = lines.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for l in lines {
        for (i, c) in l.iter().enumerate().take(l.len().saturating_sub(1)) {
            widths[i] = widths[i].max(c.chars().count() + 3).max(6);
        }
    }
    let mut out = String::new();
    for l in lines {
        for (i, c) in l.iter().enumerate() {
            if i + 1 < l.len() {
                let _ = write!(out, "{c:<w$}", w = widths[i]);
            } else {
                out.push_str(c);
            }
        }
        out.push('\n');
    }
    out
}

/// `keel chart status`.
pub fn status_cmd(a: &StatusArgs) -> anyhow::Result<()> {
    let ctx = Ctx::new(&a.kube)?;
    let mut rel = pick(&ctx, &a.name, a.revision)?;
    // Helm strips the chart from status output
    rel.chart = J::Null;
    let table = a.output == "table";
    let groups = live_resources(&ctx, &rel, table)?;
    if groups.is_empty() {
        return print_status(&rel, &a.output, false);
    }
    if table {
        return print_status_with(&rel, &a.output, false, Some(&print_tables(&groups)));
    }
    rel.info.resources = Some(groups.into_iter().map(|(k, v)| (k, J::Array(v))).collect());
    print_status(&rel, &a.output, false)
}

fn computed_values(rel: &Release) -> J {
    let chart = rel.chart["values"].clone();
    let base: keel_chart::Table = match keel_chart::GoValue::from_json(&chart, true) {
        v @ keel_chart::GoValue::Map(_) => keel_chart::values::table(&v),
        _ => keel_chart::Table::new(),
    };
    let user: keel_chart::Table = rel
        .config
        .iter()
        .map(|(k, v)| (k.clone(), keel_chart::GoValue::from_json(v, true)))
        .collect();
    let merged = keel_chart::values::merge_maps(&base, &user);
    J::Object(
        merged
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect(),
    )
}

fn config_json(rel: &Release) -> J {
    if rel.config.is_empty() {
        J::Null
    } else {
        J::Object(rel.config.clone())
    }
}

/// Helm's `statusPrinter`: `debug` adds values, hooks and the manifest
/// (`get all`); a dry run shows hooks and manifest too.
pub fn print_status(rel: &Release, output: &str, debug: bool) -> anyhow::Result<()> {
    print_status_with(rel, output, debug, None)
}

/// [`print_status`] with the RESOURCES block `status` shows.
fn print_status_with(
    rel: &Release,
    output: &str,
    debug: bool,
    resources: Option<&str>,
) -> anyhow::Result<()> {
    if output != "table" {
        print!("{}", encode(rel, output)?);
        return Ok(());
    }
    let mut s = format!("NAME: {}\n", rel.name);
    if let Some(t) = &rel.info.last_deployed {
        let _ = writeln!(s, "LAST DEPLOYED: {}", ansic(t));
    }
    let _ = writeln!(s, "NAMESPACE: {}", rel.namespace);
    let _ = writeln!(s, "STATUS: {}", rel.info.status);
    let _ = writeln!(s, "REVISION: {}", rel.version);
    if debug {
        let m = &rel.chart["metadata"];
        for (k, f) in [
            ("CHART", "name"),
            ("VERSION", "version"),
            ("APP_VERSION", "appVersion"),
        ] {
            let _ = writeln!(s, "{k}: {}", m[f].as_str().unwrap_or_default());
        }
    }
    let _ = writeln!(s, "DESCRIPTION: {}", rel.info.description);
    if let Some(r) = resources {
        let _ = writeln!(s, "RESOURCES:\n{r}");
    }
    let tests: Vec<_> = rel
        .hooks
        .iter()
        .filter(|h| h.events.iter().any(|e| e == "test"))
        .collect();
    if tests.is_empty() {
        s.push_str("TEST SUITE: None\n");
    } else {
        for h in tests {
            let Some(start) = &h.last_run.started_at else {
                continue;
            };
            let _ = writeln!(
                s,
                "TEST SUITE:     {}\nLast Started:   {}\nLast Completed: {}\nPhase:          {}",
                h.name,
                ansic(start),
                h.last_run
                    .completed_at
                    .as_deref()
                    .map_or_else(String::new, ansic),
                h.last_run.phase
            );
        }
    }
    if debug {
        s.push_str("USER-SUPPLIED VALUES:\n");
        s.push_str(&keel_chart::json_to_yaml(&config_json(rel)));
        s.push_str("\nCOMPUTED VALUES:\n");
        s.push_str(&keel_chart::json_to_yaml(&computed_values(rel)));
        s.push('\n');
    }
    if debug
        || rel
            .info
            .description
            .eq_ignore_ascii_case("Dry run complete")
    {
        s.push_str("HOOKS:\n");
        for h in &rel.hooks {
            let _ = writeln!(s, "---\n# Source: {}\n{}", h.path, h.manifest);
        }
        let _ = writeln!(s, "MANIFEST:\n{}", rel.manifest);
    }
    if !rel.info.notes.is_empty() {
        let _ = writeln!(s, "NOTES:\n{}", rel.info.notes.trim());
    }
    print!("{s}");
    Ok(())
}

/// `keel chart get …`.
pub fn get(c: &GetCommand) -> anyhow::Result<()> {
    match c {
        GetCommand::Values {
            name,
            kube,
            all,
            revision,
            output,
        } => {
            let rel = pick(&Ctx::new(kube)?, name, *revision)?;
            let v = if *all {
                computed_values(&rel)
            } else {
                config_json(&rel)
            };
            if output == "table" {
                println!(
                    "{}",
                    if *all {
                        "COMPUTED VALUES:"
                    } else {
                        "USER-SUPPLIED VALUES:"
                    }
                );
                print!("{}", keel_chart::json_to_yaml(&v));
            } else {
                print!("{}", encode(&v, output)?);
            }
        }
        GetCommand::Manifest {
            name,
            kube,
            revision,
        } => {
            let rel = pick(&Ctx::new(kube)?, name, *revision)?;
            println!("{}", rel.manifest);
        }
        GetCommand::Notes {
            name,
            kube,
            revision,
        } => {
            let rel = pick(&Ctx::new(kube)?, name, *revision)?;
            if !rel.info.notes.is_empty() {
                println!("NOTES:\n{}", rel.info.notes);
            }
        }
        GetCommand::Hooks {
            name,
            kube,
            revision,
        } => {
            let rel = pick(&Ctx::new(kube)?, name, *revision)?;
            for h in &rel.hooks {
                println!("---\n# Source: {}\n{}", h.path, h.manifest);
            }
        }
        GetCommand::All {
            name,
            kube,
            revision,
            template,
        } => {
            let rel = pick(&Ctx::new(kube)?, name, *revision)?;
            if let Some(t) = template {
                let mut set = keel_gotmpl::Templates::new();
                set.parse("_", t).map_err(|e| anyhow::anyhow!("{e}"))?;
                let data =
                    serde_json::json!({ "Release": go_fields(&serde_json::to_value(&rel)?) });
                let out = set
                    .execute("_", &keel_chart::GoValue::from_json(&data, false))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                print!("{out}");
            } else {
                print_status(&rel, "table", true)?;
            }
        }
        GetCommand::Metadata {
            name,
            kube,
            revision,
            output,
        } => {
            let ctx = Ctx::new(kube)?;
            let rel = pick(&ctx, name, *revision)?;
            print!("{}", metadata(&ctx, &rel, output)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_formats() {
        assert_eq!(
            go_time_string("2026-12-07T05:50:12.1234Z"),
            "2026-12-07 05:50:12.1234 +0000 UTC"
        );
        assert_eq!(
            go_time_string("2026-12-07T05:50:12Z"),
            "2026-12-07 05:50:12 +0000 UTC"
        );
        assert_eq!(
            ansic("2026-12-07T05:50:12.1234Z"),
            "Mon Dec  7 05:50:12 2026"
        );
    }

    proptest::proptest! {
        /// Stored times come from any writer: formatting never panics.
        #[test]
        fn time_formats_never_panic(t in ".{0,40}") {
            let _ = go_time_string(&t);
            let _ = ansic(&t);
        }

        /// `--timeout` is user input: parsed or refused, never a panic.
        #[test]
        fn durations_never_panic(t in "[0-9.a-zµ]{0,12}") {
            let _ = crate::chart_release::parse_duration(&t);
        }
    }

    #[test]
    fn durations_parse_as_go_does() {
        use std::time::Duration;
        let p = crate::chart_release::parse_duration;
        assert_eq!(p("5m0s").unwrap(), Duration::from_mins(5));
        assert_eq!(p("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(p("300ms").unwrap(), Duration::from_millis(300));
        assert!(p("5").is_err() && p("").is_err() && p("m").is_err());
    }

    #[test]
    fn tables_pad_every_cell_and_join_with_tabs() {
        let t = table(&[
            vec!["NAME".into(), "REV".into()],
            vec!["a".into(), "10".into()],
        ]);
        assert_eq!(t, "NAME\tREV\na   \t10 \n");
    }
}
