//! The built-in resource types the server serves: their group/version/kind,
//! URL names, scope, verbs and subresources, generated from the
//! `k8s-openapi` types (group, version, kind, plural, scope) plus what the
//! types do not say (short names, categories, subresources). Discovery,
//! `OpenAPI`, routing, decoding and storage keys all derive from this table.

use std::sync::LazyLock;

use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Which verbs a resource serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verbs {
    /// Stored objects: create, delete, deletecollection, get, list, patch,
    /// update, watch.
    All,
    /// All but deletecollection (namespaces).
    NoCollection,
    /// Computed on request, never stored: create (reviews, bindings).
    CreateOnly,
    /// Computed lists: get, list (componentstatuses).
    ReadOnly,
}

impl Verbs {
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Verbs::All => &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
            Verbs::NoCollection => &[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ],
            Verbs::CreateOnly => &["create"],
            Verbs::ReadOnly => &["get", "list"],
        }
    }

    /// Whether objects of the resource live in the store.
    pub fn stored(self) -> bool {
        matches!(self, Verbs::All | Verbs::NoCollection)
    }
}

/// One served resource type.
// Flags of a static table, not a state machine.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Copy)]
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
    pub categories: &'static [&'static str],
    pub verbs: Verbs,
    /// Whether `status` is a subresource (main-resource writes keep status).
    pub status: bool,
    /// Whether `scale` is a subresource (`spec.replicas`).
    pub scale: bool,
    /// Whether the object has a `spec` whose changes bump `metadata.generation`.
    pub has_spec: bool,
    /// Decodes an object into its `k8s-openapi` struct and encodes it again:
    /// `Err` is a decoding error (a field of the wrong type).
    pub typed: fn(&Value) -> Result<Value, String>,
    /// Adds the kind's `OpenAPI` schema (and those it refers to) to a generator.
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

// A resource type is named by its group, version and plural.
impl PartialEq for Resource {
    fn eq(&self, o: &Self) -> bool {
        (self.group, self.version, self.plural) == (o.group, o.version, o.plural)
    }
}
impl Eq for Resource {}
impl std::hash::Hash for Resource {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (self.group, self.version, self.plural).hash(h);
    }
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

/// The scope of a `k8s-openapi` resource type as a flag.
trait Scope {
    const NAMESPACED: bool;
}
impl Scope for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl Scope for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&t).map_err(|e| e.to_string())
}

fn schema_of<T: schemars::JsonSchema>(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

/// What the types do not say about a resource.
#[derive(Clone, Copy)]
struct Extra {
    short: &'static [&'static str],
    categories: &'static [&'static str],
    verbs: Verbs,
    status: bool,
    scale: bool,
    spec: bool,
}

const PLAIN: Extra = Extra {
    short: &[],
    categories: &[],
    verbs: Verbs::All,
    status: false,
    scale: false,
    spec: false,
};

fn of<T>(x: Extra) -> Resource
where
    T: k8s_openapi::Resource + DeserializeOwned + Serialize + schemars::JsonSchema,
    T::Scope: Scope,
{
    Resource {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        plural: T::URL_PATH_SEGMENT,
        // Leaked once: the table lives as long as the process.
        singular: Box::leak(T::KIND.to_lowercase().into_boxed_str()),
        namespaced: <T::Scope as Scope>::NAMESPACED,
        short_names: x.short,
        categories: x.categories,
        verbs: x.verbs,
        status: x.status,
        scale: x.scale,
        has_spec: x.spec,
        typed: roundtrip::<T>,
        schema: schema_of::<T>,
    }
}

/// `kinds!(Type { field: value, .. }, ..)`: one table row per type; fields
/// not named are [`PLAIN`]'s.
macro_rules! kinds {
    ($( $ty:ty $({ $($f:ident : $v:expr),* $(,)? })? ),* $(,)?) => {
        vec![$( of::<$ty>(Extra { $($($f: $v,)*)? ..PLAIN }) ),*]
    };
}

const ALL: &[&str] = &["all"];
const EXT: &[&str] = &["api-extensions"];

/// Every served resource type (Kubernetes 1.32's built-in groups, as a
/// cluster serves them by default).
pub static RESOURCES: LazyLock<Vec<Resource>> = LazyLock::new(|| {
    use k8s_openapi::api::{
        admissionregistration::v1 as admission, apps::v1 as apps, authentication::v1 as authn,
        authorization::v1 as authz, autoscaling::v2 as autoscaling, batch::v1 as batch,
        certificates::v1 as certificates, coordination::v1 as coordination, core::v1 as core,
        discovery::v1 as discovery, events::v1 as events, flowcontrol::v1 as flowcontrol,
        networking::v1 as networking, node::v1 as node, policy::v1 as policy, rbac::v1 as rbac,
        scheduling::v1 as scheduling, storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
    kinds![
        core::Namespace {
            short: &["ns"],
            verbs: Verbs::NoCollection,
            status: true,
            spec: true
        },
        core::Pod {
            short: &["po"],
            categories: ALL,
            status: true,
            spec: true
        },
        core::Service {
            short: &["svc"],
            categories: ALL,
            status: true,
            spec: true
        },
        core::Endpoints { short: &["ep"] },
        core::ConfigMap { short: &["cm"] },
        core::Secret,
        core::ServiceAccount { short: &["sa"] },
        core::Event { short: &["ev"] },
        core::Node {
            short: &["no"],
            status: true,
            spec: true
        },
        core::PersistentVolume {
            short: &["pv"],
            status: true,
            spec: true
        },
        core::PersistentVolumeClaim {
            short: &["pvc"],
            status: true,
            spec: true
        },
        core::ResourceQuota {
            short: &["quota"],
            status: true,
            spec: true
        },
        core::LimitRange {
            short: &["limits"],
            spec: true
        },
        core::PodTemplate,
        core::ReplicationController {
            short: &["rc"],
            categories: ALL,
            status: true,
            scale: true,
            spec: true
        },
        core::Binding {
            verbs: Verbs::CreateOnly
        },
        core::ComponentStatus {
            short: &["cs"],
            verbs: Verbs::ReadOnly
        },
        apps::Deployment {
            short: &["deploy"],
            categories: ALL,
            status: true,
            scale: true,
            spec: true
        },
        apps::ReplicaSet {
            short: &["rs"],
            categories: ALL,
            status: true,
            scale: true,
            spec: true
        },
        apps::StatefulSet {
            short: &["sts"],
            categories: ALL,
            status: true,
            scale: true,
            spec: true
        },
        apps::DaemonSet {
            short: &["ds"],
            categories: ALL,
            status: true,
            spec: true
        },
        apps::ControllerRevision,
        batch::Job {
            categories: ALL,
            status: true,
            spec: true
        },
        batch::CronJob {
            short: &["cj"],
            categories: ALL,
            status: true,
            spec: true
        },
        autoscaling::HorizontalPodAutoscaler {
            short: &["hpa"],
            categories: ALL,
            status: true,
            spec: true
        },
        networking::Ingress {
            short: &["ing"],
            status: true,
            spec: true
        },
        networking::IngressClass { spec: true },
        networking::NetworkPolicy {
            short: &["netpol"],
            spec: true
        },
        policy::PodDisruptionBudget {
            short: &["pdb"],
            status: true,
            spec: true
        },
        coordination::Lease { spec: true },
        discovery::EndpointSlice,
        events::Event { short: &["ev"] },
        rbac::ClusterRole,
        rbac::ClusterRoleBinding,
        rbac::Role,
        rbac::RoleBinding,
        storage::StorageClass { short: &["sc"] },
        storage::CSIDriver { spec: true },
        storage::CSINode { spec: true },
        storage::CSIStorageCapacity,
        storage::VolumeAttachment {
            status: true,
            spec: true
        },
        scheduling::PriorityClass { short: &["pc"] },
        node::RuntimeClass,
        certificates::CertificateSigningRequest {
            short: &["csr"],
            status: true,
            spec: true
        },
        admission::MutatingWebhookConfiguration {
            categories: EXT,
            spec: true
        },
        admission::ValidatingWebhookConfiguration {
            categories: EXT,
            spec: true
        },
        admission::ValidatingAdmissionPolicy {
            categories: EXT,
            status: true,
            spec: true
        },
        admission::ValidatingAdmissionPolicyBinding {
            categories: EXT,
            spec: true
        },
        apiextensions::CustomResourceDefinition {
            short: &["crd", "crds"],
            categories: EXT,
            status: true,
            spec: true
        },
        apiregistration::APIService {
            categories: EXT,
            status: true,
            spec: true
        },
        flowcontrol::FlowSchema {
            status: true,
            spec: true
        },
        flowcontrol::PriorityLevelConfiguration {
            status: true,
            spec: true
        },
        authn::TokenReview {
            verbs: Verbs::CreateOnly
        },
        authn::SelfSubjectReview {
            verbs: Verbs::CreateOnly
        },
        authz::SubjectAccessReview {
            verbs: Verbs::CreateOnly
        },
        authz::SelfSubjectAccessReview {
            verbs: Verbs::CreateOnly
        },
        authz::SelfSubjectRulesReview {
            verbs: Verbs::CreateOnly
        },
        authz::LocalSubjectAccessReview {
            verbs: Verbs::CreateOnly
        },
    ]
});

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

/// The resources of one group version, in table order.
pub fn in_group_version(group: &str, version: &str) -> Vec<&'static Resource> {
    RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect()
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
    for r in RESOURCES.iter() {
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
