//! Discovery documents: `/version`, the legacy format (`/api`, `/apis`,
//! `/api/v1`, `/apis/G/V`) and the aggregated one (`apidiscovery.k8s.io/v2`
//! `APIGroupDiscoveryList` for `/api` and `/apis`, which kubectl 1.30+ asks
//! for first and which saves it one request per group version).

use serde_json::{Value, json};

use crate::metrics;
use crate::resources::{Resource, groups};

/// The Kubernetes version keel's API reports.
pub const GIT_VERSION: &str = "v1.33.0+keel";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": GIT_VERSION,
        "gitCommit": "keel",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH).replace("x86_64", "amd64").replace("aarch64", "arm64"),
    })
}

pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    })
}

fn group_doc(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({
        "name": group,
        "versions": [gv.clone()],
        "preferredVersion": gv,
    })
}

pub fn api_groups() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups().into_iter().chain([(metrics::GROUP, metrics::VERSION)]).map(|(g, v)| group_doc(g, v)).collect::<Vec<_>>(),
    })
}

pub fn api_group(group: &str) -> Option<Value> {
    let (g, v) = groups()
        .into_iter()
        .chain([(metrics::GROUP, metrics::VERSION)])
        .find(|(g, _)| *g == group)?;
    let mut doc = group_doc(g, v);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// One subresource: name, kind of what it returns (group, version, kind)
/// and verbs.
pub type Subresource = (
    &'static str,
    (&'static str, &'static str, &'static str),
    &'static [&'static str],
);

/// A resource's subresources.
pub fn subresources(r: &Resource) -> Vec<Subresource> {
    const RW: &[&str] = &["get", "patch", "update"];
    let own = (r.group, r.version, r.kind);
    let mut out = Vec::new();
    if r.status {
        out.push(("status", own, RW));
    }
    if r.scale {
        out.push(("scale", ("autoscaling", "v1", "Scale"), RW));
    }
    match r.kind {
        "Namespace" if r.group.is_empty() => out.push(("finalize", own, &["update"][..])),
        "ServiceAccount" => out.push((
            "token",
            ("authentication.k8s.io", "v1", "TokenRequest"),
            &["create"][..],
        )),
        "Pod" => {
            out.push(("binding", ("", "v1", "Binding"), &["create"][..]));
            out.push(("eviction", ("policy", "v1", "Eviction"), &["create"][..]));
        }
        _ => {}
    }
    out.sort_by_key(|s| s.0);
    out
}

fn resource_entries(r: &Resource) -> Vec<Value> {
    let mut out = vec![json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs.names(),
        "shortNames": r.short_names,
        "categories": r.categories,
    })];
    for (name, (g, v, k), verbs) in subresources(r) {
        let mut e = json!({
            "name": format!("{}/{name}", r.plural),
            "singularName": "",
            "namespaced": r.namespaced,
            "kind": k,
            "verbs": verbs,
        });
        if (g, v) != (r.group, r.version) {
            e["group"] = json!(g);
            e["version"] = json!(v);
        }
        out.push(e);
    }
    out
}

/// `APIResourceList` of one group version, if served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    if (group, version) == (metrics::GROUP, metrics::VERSION) {
        return Some(metrics::resource_list());
    }
    let rs = crate::resources::in_group_version(group, version);
    if rs.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": rs.iter().flat_map(|r| resource_entries(r)).collect::<Vec<_>>(),
    }))
}

/// The media type of an aggregated discovery answer.
pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an Accept header asks for aggregated discovery (v2; kubectl also
/// offers v2beta1 and plain JSON after it).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| {
        first.contains("as=APIGroupDiscoveryList")
            && first.contains("v=v2")
            && !first.contains("v=v2beta1")
    })
}

fn discovery_resource(r: &Resource) -> Value {
    let subs: Vec<Value> = subresources(r)
        .into_iter()
        .map(|(name, (g, v, k), verbs)| {
            json!({"subresource": name, "responseKind": {"group": g, "version": v, "kind": k}, "verbs": verbs})
        })
        .collect();
    let mut e = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs.names(),
    });
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    if !subs.is_empty() {
        e["subresources"] = json!(subs);
    }
    e
}

fn discovery_group(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = crate::resources::in_group_version(group, v)
                .into_iter()
                .map(discovery_resource)
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut meta = json!({"creationTimestamp": null});
    if !group.is_empty() {
        meta["name"] = json!(group);
    }
    json!({"metadata": meta, "versions": versions})
}

/// `APIGroupDiscoveryList` of the core group (`/api`) or of every other
/// group (`/apis`).
pub fn aggregated(core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![discovery_group("", &["v1"])]
    } else {
        let mut by_group: Vec<(&str, Vec<&str>)> = Vec::new();
        for (g, v) in groups() {
            match by_group.iter_mut().find(|(x, _)| *x == g) {
                Some((_, vs)) => vs.push(v),
                None => by_group.push((g, vec![v])),
            }
        }
        by_group
            .iter()
            .map(|(g, vs)| discovery_group(g, vs))
            .chain([metrics::aggregated_group()])
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_lists_subresources() {
        let apps = resource_list("apps", "v1").unwrap();
        let names: Vec<&str> = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"deployments/scale"));
        assert!(names.contains(&"deployments/status"));
        assert!(resource_list("nope", "v1").is_none());
        let core = aggregated(true);
        let pods = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["scope"], "Namespaced");
        let apps = aggregated(false)["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == "apps")
            .cloned()
            .unwrap();
        let deploy = &apps["versions"][0]["resources"][0];
        assert!(
            deploy["subresources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["subresource"] == "scale")
        );
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json"));
    }
}
