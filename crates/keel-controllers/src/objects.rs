//! Small readers of object metadata the controllers share.

use keel_api::resources::{self, Resource};
use serde_json::Value;

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

pub(crate) fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

pub(crate) fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == f))
}

/// `obj` without finalizer `f`; `None` when it does not have it.
pub(crate) fn without_finalizer(obj: &Value, f: &str) -> Option<Value> {
    without_list_entry(obj, "/metadata/finalizers", f)
}

/// `obj` without the string `entry` in the list at `pointer`; `None` when
/// the list does not hold it.
pub(crate) fn without_list_entry(obj: &Value, pointer: &str, entry: &str) -> Option<Value> {
    if !obj.pointer(pointer)?.as_array()?.iter().any(|x| x == entry) {
        return None;
    }
    let mut v = obj.clone();
    v.pointer_mut(pointer)?
        .as_array_mut()?
        .retain(|x| x != entry);
    Some(v)
}

/// Where an object lives: enough to get, update or delete it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ObjRef {
    pub resource: &'static Resource,
    pub ns: Option<String>,
    pub name: String,
}

impl ObjRef {
    pub fn of(resource: &'static Resource, obj: &Value) -> Self {
        let ns = meta_str(obj, "namespace");
        ObjRef {
            resource,
            ns: (resource.namespaced && !ns.is_empty()).then(|| ns.to_string()),
            name: meta_str(obj, "name").to_string(),
        }
    }

    pub fn key(&self) -> String {
        self.resource.key(self.ns.as_deref(), &self.name)
    }

    pub fn ns(&self) -> Option<&str> {
        self.ns.as_deref()
    }
}

impl std::fmt::Display for ObjRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ns {
            Some(ns) => write!(f, "{}/{}/{}", self.resource.plural, ns, self.name),
            None => write!(f, "{}/{}", self.resource.plural, self.name),
        }
    }
}

/// One entry of `metadata.ownerReferences`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub block: bool,
}

impl OwnerRef {
    /// Where the owner of a dependent at `dependent` lives: in the
    /// dependent's namespace when the owner's kind is namespaced. `None` for a
    /// kind the server does not serve.
    pub fn locate(&self, dependent: &ObjRef) -> Option<ObjRef> {
        let r = resources::by_kind(&self.api_version, &self.kind)
            // An owner named with another served version of its group.
            .or_else(|| {
                let group = self.api_version.rsplit_once('/').map_or("", |(g, _)| g);
                resources::RESOURCES
                    .iter()
                    .find(|r| r.group == group && r.kind == self.kind)
            })?;
        Some(ObjRef {
            resource: r,
            ns: if r.namespaced {
                dependent.ns.clone()
            } else {
                None
            },
            name: self.name.clone(),
        })
    }
}

pub(crate) fn owner_refs(obj: &Value) -> Vec<OwnerRef> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|o| {
                    let s = |k: &str| o.get(k).and_then(Value::as_str).map(String::from);
                    Some(OwnerRef {
                        api_version: s("apiVersion")?,
                        kind: s("kind")?,
                        name: s("name")?,
                        uid: s("uid")?,
                        block: o
                            .get("blockOwnerDeletion")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `obj` without the owner references whose uid is in `uids`; `None` when
/// it has none of them.
pub(crate) fn without_owners(obj: &Value, uids: &[String]) -> Option<Value> {
    let refs = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?;
    let keep: Vec<Value> = refs
        .iter()
        .filter(|o| {
            !o.get("uid")
                .and_then(Value::as_str)
                .is_some_and(|u| uids.iter().any(|x| x == u))
        })
        .cloned()
        .collect();
    if keep.len() == refs.len() {
        return None;
    }
    let mut v = obj.clone();
    let m = v.get_mut("metadata")?.as_object_mut()?;
    if keep.is_empty() {
        m.remove("ownerReferences");
    } else {
        m.insert("ownerReferences".into(), Value::Array(keep));
    }
    Some(v)
}

/// The owner reference with `controller: true`, if any.
pub(crate) fn controller_ref(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
}

/// The uid of the controller owning `obj` when it is a `kind`.
pub(crate) fn controller_uid<'a>(obj: &'a Value, kind: &str) -> Option<&'a str> {
    controller_ref(obj)
        .filter(|o| o.get("kind").and_then(Value::as_str) == Some(kind))
        .and_then(|o| o.get("uid")?.as_str())
}

/// An owner reference making `owner` (of resource `r`) the controller.
pub(crate) fn controller_of(r: &Resource, owner: &Value) -> Value {
    serde_json::json!({
        "apiVersion": r.api_version(),
        "kind": r.kind,
        "name": meta_str(owner, "name"),
        "uid": meta_str(owner, "uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// An integer field (0 when absent).
pub(crate) fn int(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

pub(crate) fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

pub(crate) fn timestamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub(crate) fn parse_time(v: Option<&Value>) -> Option<jiff::Timestamp> {
    v?.as_str()?.parse().ok()
}

/// A pod that counts towards its controller: not being deleted, not
/// finished.
pub(crate) fn pod_active(pod: &Value) -> bool {
    !is_deleting(pod)
        && !matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        )
}

/// The pod's `Ready` condition when it is `True`.
fn ready_condition(pod: &Value) -> Option<&Value> {
    pod.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")
}

pub(crate) fn pod_ready(pod: &Value) -> bool {
    ready_condition(pod).is_some()
}

/// Since when the pod is ready, when it is.
pub(crate) fn ready_since(pod: &Value) -> Option<jiff::Timestamp> {
    ready_condition(pod)
        .map(|c| parse_time(c.get("lastTransitionTime")).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

/// How long until a pod is available (ready for `min_ready` seconds):
/// `Some(ZERO)` when it is, `None` when it is not ready.
pub(crate) fn until_available(
    pod: &Value,
    min_ready: i64,
    now: jiff::Timestamp,
) -> Option<std::time::Duration> {
    let since = ready_since(pod)?;
    if min_ready <= 0 {
        return Some(std::time::Duration::ZERO);
    }
    let at = since.as_second().saturating_add(min_ready);
    let left = at - now.as_second();
    Some(std::time::Duration::from_secs(
        u64::try_from(left.max(0)).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn owner_references_are_read_and_removed() {
        let obj = json!({"metadata": {"name": "c", "namespace": "n", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "u1", "blockOwnerDeletion": true},
            {"apiVersion": "v1", "kind": "Namespace", "name": "n", "uid": "u2"},
            {"kind": "broken"}
        ]}});
        let refs = owner_refs(&obj);
        assert_eq!(refs.len(), 2);
        assert!(refs[0].block && !refs[1].block);
        let cm = resources::find("", "v1", "configmaps").unwrap();
        let me = ObjRef::of(cm, &obj);
        assert_eq!(me.to_string(), "configmaps/n/c");
        let owner = refs[0].locate(&me).unwrap();
        assert_eq!(owner.key(), "/registry/apps/deployments/n/d");
        assert_eq!(refs[1].locate(&me).unwrap().ns, None);
        let unknown = OwnerRef {
            kind: "Widget".into(),
            api_version: "example.com/v1".into(),
            ..refs[0].clone()
        };
        assert!(unknown.locate(&me).is_none());
        let v = without_owners(&obj, &["u1".into()]).unwrap();
        assert_eq!(owner_refs(&v).len(), 1);
        assert!(without_owners(&obj, &["zz".into()]).is_none());
        let v = without_owners(&obj, &["u1".into(), "u2".into()]).unwrap();
        assert!(v["metadata"].get("ownerReferences").unwrap()[0]["kind"] == "broken");
    }

    #[test]
    fn finalizers() {
        let obj = json!({"metadata": {"finalizers": ["a", "orphan"]}});
        assert!(has_finalizer(&obj, "orphan"));
        let v = without_finalizer(&obj, "orphan").unwrap();
        assert_eq!(v["metadata"]["finalizers"], json!(["a"]));
        assert!(without_finalizer(&v, "orphan").is_none());
    }
}
