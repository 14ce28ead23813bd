//! The built-in resource types the server serves: their group/version/kind,
//! URL names, scope and subresources. Discovery, `OpenAPI`, routing and storage
//! keys all derive from this one table.

/// One served resource type.
// Flags of a static table, not a state machine.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Resource {
    /// API group; "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// URL name (plural, lowercase).
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Whether `status` is a subresource (main-resource writes keep status).
    pub status: bool,
    /// Whether `scale` is a subresource (`spec.replicas`).
    pub scale: bool,
    /// Whether the object has a `spec` whose changes bump `metadata.generation`.
    pub has_spec: bool,
}

impl Resource {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// URL prefix of the group version: `/api/v1` or `/apis/g/v`.
    pub fn gv_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// Store key prefix of all objects of this type (ends with `/`).
    pub fn key_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("{REGISTRY}{group}/{}/", self.plural)
    }

    /// Store key prefix of one namespace's objects, or all when `ns` is None.
    pub fn list_prefix(&self, ns: Option<&str>) -> String {
        match ns {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }

    /// Store key of one object.
    pub fn key(&self, ns: Option<&str>, name: &str) -> String {
        match ns {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

// A positional constructor keeps the table below one readable line per type.
#[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
const fn r(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    status: bool,
    scale: bool,
    has_spec: bool,
) -> Resource {
    Resource {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        status,
        scale,
        has_spec,
    }
}

/// Every served resource type.
pub static RESOURCES: &[Resource] = &[
    r(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        &["ns"],
        true,
        false,
        true,
    ),
    r(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        true,
        &["po"],
        true,
        false,
        true,
    ),
    r(
        "",
        "v1",
        "Service",
        "services",
        "service",
        true,
        &["svc"],
        true,
        false,
        true,
    ),
    r(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        &["ep"],
        false,
        false,
        false,
    ),
    r(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        &["cm"],
        false,
        false,
        false,
    ),
    r(
        "",
        "v1",
        "Secret",
        "secrets",
        "secret",
        true,
        &[],
        false,
        false,
        false,
    ),
    r(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
        false,
        false,
        false,
    ),
    r(
        "",
        "v1",
        "Event",
        "events",
        "event",
        true,
        &["ev"],
        false,
        false,
        false,
    ),
    r(
        "",
        "v1",
        "Node",
        "nodes",
        "node",
        false,
        &["no"],
        true,
        false,
        true,
    ),
    r(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
        true,
        true,
        true,
    ),
    r(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        &["rs"],
        true,
        true,
        true,
    ),
    r(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        true,
        &["sts"],
        true,
        true,
        true,
    ),
    r(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        true,
        &["ds"],
        true,
        false,
        true,
    ),
    r(
        "batch",
        "v1",
        "Job",
        "jobs",
        "job",
        true,
        &[],
        true,
        false,
        true,
    ),
    r(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        "ingress",
        true,
        &["ing"],
        true,
        false,
        true,
    ),
    r(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        true,
        &["hpa"],
        true,
        false,
        true,
    ),
    r(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        true,
        &[],
        false,
        false,
        true,
    ),
    r(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        &[],
        false,
        false,
        false,
    ),
];

/// Store key prefix under which every object lives.
pub const REGISTRY: &str = "/registry/";

/// The resource whose objects are stored under `key`
/// (`/registry/{group or core}/{plural}/…`).
pub fn from_key(key: &str) -> Option<&'static Resource> {
    let mut parts = key.strip_prefix(REGISTRY)?.splitn(3, '/');
    let group = parts.next()?;
    let plural = parts.next()?;
    let group = if group == "core" { "" } else { group };
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural)
}

/// The resource served at `group`/`version` under URL name `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of an `apiVersion` + `kind` pair.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

/// Served groups (without the core group), in a stable order, with versions.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_namespaces() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(pods.key(Some("a"), "p"), "/registry/core/pods/a/p");
        assert_eq!(pods.list_prefix(Some("a")), "/registry/core/pods/a/");
        let ns = find("", "v1", "namespaces").unwrap();
        assert_eq!(
            ns.key(Some("ignored"), "kube-system"),
            "/registry/core/namespaces/kube-system"
        );
        assert_eq!(
            by_kind("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
        assert!(groups().contains(&("apps", "v1")));
        assert_eq!(from_key("/registry/core/pods/a/p"), Some(pods));
        assert_eq!(from_key("/registry/core/namespaces/x"), Some(ns));
        assert_eq!(
            from_key("/registry/apps/deployments/a/d").unwrap().kind,
            "Deployment"
        );
        assert!(from_key("/registry/nope/x/y").is_none());
    }
}
