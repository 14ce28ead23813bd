//! Volumes: kube-controller-manager's persistent-volume binder and a
//! built-in dynamic provisioner for the default `StorageClass`
//! `local-path` (as k3s ships one).
//!
//! - A pending claim binds to the smallest `Available` volume that has its
//!   `storageClassName`, `volumeMode`, every access mode it asks, at least
//!   the storage it requests and the labels its selector wants (or the one
//!   its `volumeName` names). Binding writes the volume's `claimRef` and
//!   phase `Bound`, then the claim's `volumeName`, the
//!   `pv.kubernetes.io/bind-completed` annotation and phase `Bound`.
//! - For a `WaitForFirstConsumer` class nothing happens until the scheduler
//!   has placed a pod using the claim and written
//!   `volume.kubernetes.io/selected-node`; then a volume on that node is
//!   bound, or the provisioner makes one: a `hostPath` directory under the
//!   node's root (`<nodePath>/pvc-<uid>_<namespace>_<claim>`, created by the
//!   node when the pod starts) with node affinity to that node, so the
//!   scheduler keeps the claim's pods there.
//! - A volume whose claim is gone becomes `Released`; with reclaim policy
//!   `Delete` it is deleted, with `Retain` it stays.
//!
//! `local-path` is created when the controller starts and is missing.

use std::time::Duration;

use keel_api::ClientError;
use keel_api::resources::{self, Resource};
use keel_api::selectors::LabelSelector;
use serde_json::{Value, json};

use crate::events::Recorder;
use crate::informer::{Cache, Queue, Reconciler, key_of, split_key};
use crate::objects::{is_deleting, meta_str};

/// The provisioner name of the built-in class.
pub const LOCAL_PATH_PROVISIONER: &str = "keel.dev/local-path";
/// The built-in class.
pub const LOCAL_PATH_CLASS: &str = "local-path";
/// Where volumes of the built-in class live on a node, unless the class's
/// `nodePath` parameter says otherwise.
pub const DEFAULT_NODE_PATH: &str = "/var/lib/keel/storage";
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

pub(crate) fn claims() -> &'static Resource {
    resources::find("", "v1", "persistentvolumeclaims").expect("pvcs are served")
}

pub(crate) fn volumes() -> &'static Resource {
    resources::find("", "v1", "persistentvolumes").expect("pvs are served")
}

pub(crate) fn classes() -> &'static Resource {
    resources::find("storage.k8s.io", "v1", "storageclasses").expect("storageclasses are served")
}

/// The binder and provisioner (see the module docs). Keys are
/// `namespace/claim`, or `/volume` for a volume.
#[derive(Debug)]
pub struct VolumeController {
    events: Recorder,
}

impl VolumeController {
    pub fn new(api: &keel_api::Loopback) -> Self {
        VolumeController {
            events: Recorder::new(api.clone(), "persistentvolume-controller"),
        }
    }

    /// Creates the default class when missing, then runs until the
    /// runtime stops.
    pub async fn run(self, api: keel_api::Loopback) {
        let class = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": LOCAL_PATH_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": LOCAL_PATH_PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
        });
        match api.get(classes(), None, LOCAL_PATH_CLASS).await {
            Ok(None) => {
                if let Err(e) = api.create(classes(), class, crate::MANAGER).await
                    && e.code != 409
                {
                    tracing::warn!(error = %e, "default storage class not created");
                }
            }
            Ok(Some(_)) => {}
            Err(e) => tracing::warn!(error = %e, "default storage class not read"),
        }
        crate::informer::run(api, self).await;
    }
}

impl Reconciler for VolumeController {
    const NAME: &'static str = "persistentvolume";

    fn resources(&self) -> Vec<&'static Resource> {
        vec![claims(), volumes(), classes(), crate::scheduler::nodes()]
    }

    fn keys_for(&self, cache: &Cache, r: &'static Resource, obj: &Value, queue: &mut Queue) {
        if std::ptr::eq(r, claims()) {
            queue.add(key_of(obj));
            if let Some(v) = obj.pointer("/spec/volumeName").and_then(Value::as_str) {
                queue.add(format!("/{v}"));
            }
        } else if std::ptr::eq(r, volumes()) {
            queue.add(format!("/{}", meta_str(obj, "name")));
            // A volume freed or added may be what a pending claim waits for.
            for c in cache.list_all(claims()) {
                if !bound(c) {
                    queue.add(key_of(c));
                }
            }
        }
    }

    async fn reconcile(
        &mut self,
        cache: &mut Cache,
        key: &str,
    ) -> Result<Option<Duration>, ClientError> {
        let (ns, name) = split_key(key);
        if ns.is_empty() {
            return self.sync_volume(cache, name).await;
        }
        let Some(pvc) = cache.get(claims(), ns, name).cloned() else {
            return Ok(None);
        };
        if is_deleting(&pvc) {
            return Ok(None);
        }
        self.sync_claim(cache, &pvc).await
    }
}

fn bound(pvc: &Value) -> bool {
    pvc.pointer("/status/phase").and_then(Value::as_str) == Some("Bound")
}

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn quantity(v: &Value, p: &str) -> f64 {
    v.pointer(p)
        .and_then(Value::as_str)
        .and_then(|s| keel_api::validate::parse_quantity(s).ok())
        .unwrap_or(0.0)
}

fn modes(v: &Value) -> Vec<&str> {
    v.pointer("/spec/accessModes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn volume_mode(v: &Value) -> &str {
    match str_at(v, "/spec/volumeMode") {
        "" => "Filesystem",
        m => m,
    }
}

/// Whether `pv`'s node affinity allows `node` (by its labels and name).
fn volume_allows(pv: &Value, node: &Value) -> bool {
    let Some(terms) = pv
        .pointer("/spec/nodeAffinity/required/nodeSelectorTerms")
        .and_then(Value::as_array)
    else {
        return true;
    };
    let mut c = crate::scheduler::cache::Cache::default();
    c.set_node(node);
    let Some(info) = c.nodes.get(meta_str(node, "name")) else {
        return false;
    };
    terms
        .iter()
        .any(|t| crate::scheduler::cache::NodeTerm::from_json(t).matches(info))
}

/// Whether `pv` can hold `pvc` (upstream's `findMatchingVolume` checks).
fn fits(pvc: &Value, pv: &Value) -> bool {
    let claim_ref = pv.pointer("/spec/claimRef");
    let mine = claim_ref.is_some_and(|r| {
        r["name"] == meta_str(pvc, "name")
            && r["namespace"] == meta_str(pvc, "namespace")
            && r.get("uid")
                .and_then(Value::as_str)
                .is_none_or(|u| u.is_empty() || u == meta_str(pvc, "uid"))
    });
    if is_deleting(pv) || (claim_ref.is_some() && !mine) {
        return false;
    }
    if !mine && !matches!(str_at(pv, "/status/phase"), "Available" | "") {
        return false;
    }
    let want = str_at(pvc, "/spec/volumeName");
    if !want.is_empty() && want != meta_str(pv, "name") {
        return false;
    }
    let sel = pvc.pointer("/spec/selector").filter(|s| !s.is_null());
    str_at(pvc, "/spec/storageClassName") == str_at(pv, "/spec/storageClassName")
        && volume_mode(pvc) == volume_mode(pv)
        && modes(pvc).iter().all(|m| modes(pv).contains(m))
        && quantity(pv, "/spec/capacity/storage")
            >= quantity(pvc, "/spec/resources/requests/storage")
        && sel.is_none_or(|s| LabelSelector::from_json(s).matches(pv.pointer("/metadata/labels")))
}

impl VolumeController {
    async fn sync_claim(
        &mut self,
        cache: &mut Cache,
        pvc: &Value,
    ) -> Result<Option<Duration>, ClientError> {
        let bound_to = str_at(pvc, "/spec/volumeName").to_string();
        if !bound_to.is_empty() && bound(pvc) {
            return Ok(None);
        }
        if str_at(pvc, "/status/phase").is_empty() {
            // New claims are Pending until bound.
            let uid = meta_str(pvc, "uid");
            cache
                .modify(
                    claims(),
                    meta_str(pvc, "namespace"),
                    meta_str(pvc, "name"),
                    Some("status"),
                    |cur| {
                        (meta_str(cur, "uid") == uid && str_at(cur, "/status/phase").is_empty())
                            .then(|| {
                                let mut v = cur.clone();
                                v["status"]["phase"] = json!("Pending");
                                v
                            })
                    },
                )
                .await?;
        }
        let class_name = str_at(pvc, "/spec/storageClassName").to_string();
        let class = cache.get(classes(), "", &class_name).cloned();
        let wait = class
            .as_ref()
            .is_some_and(|c| str_at(c, "/volumeBindingMode") == "WaitForFirstConsumer");
        let selected = pvc
            .pointer(&format!(
                "/metadata/annotations/{}",
                SELECTED_NODE.replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .map(String::from);
        if wait && selected.is_none() && bound_to.is_empty() {
            self.events.normal(
                claims(),
                pvc,
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding".into(),
            );
            return Ok(None);
        }
        let node = selected
            .as_deref()
            .and_then(|n| cache.get(crate::scheduler::nodes(), "", n).cloned());
        let mut candidates: Vec<Value> = cache
            .list_all(volumes())
            .filter(|pv| fits(pvc, pv))
            .filter(|pv| !wait || node.as_ref().is_some_and(|n| volume_allows(pv, n)))
            .cloned()
            .collect();
        candidates.sort_by(|a, b| {
            quantity(a, "/spec/capacity/storage").total_cmp(&quantity(b, "/spec/capacity/storage"))
        });
        // A volume already naming this claim (one provisioned for it) first.
        candidates.sort_by_key(|pv| pv.pointer("/spec/claimRef").is_none());
        if let Some(pv) = candidates.first().cloned() {
            return self.bind(cache, pvc, &pv).await.map(|()| None);
        }
        if !bound_to.is_empty() {
            // Its volume is not there (yet): a later volume event retries.
            return Ok(None);
        }
        match class {
            Some(c) if str_at(&c, "/provisioner") == LOCAL_PATH_PROVISIONER => {
                if let Some(node) = node {
                    let pv = self.provision(cache, pvc, &c, &node).await?;
                    return self.bind(cache, pvc, &pv).await.map(|()| None);
                }
                let msg = match selected {
                    Some(n) => format!("selected node {n} not found"),
                    None => format!(
                        "{LOCAL_PATH_PROVISIONER} makes volumes on a node: use volumeBindingMode WaitForFirstConsumer so the scheduler picks one"
                    ),
                };
                self.events
                    .warning(claims(), pvc, "ProvisioningFailed", msg);
                Ok(None)
            }
            Some(c) => {
                self.events.normal(
                    claims(),
                    pvc,
                    "ExternalProvisioning",
                    format!("Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator.", str_at(&c, "/provisioner")),
                );
                Ok(None)
            }
            None => {
                let msg = if class_name.is_empty() {
                    "no persistent volumes available for this claim and no storage class is set"
                        .to_string()
                } else {
                    format!("storageclass.storage.k8s.io \"{class_name}\" not found")
                };
                self.events.warning(claims(), pvc, "FailedBinding", msg);
                Ok(None)
            }
        }
    }

    async fn provision(
        &mut self,
        cache: &mut Cache,
        pvc: &Value,
        class: &Value,
        node: &Value,
    ) -> Result<Value, ClientError> {
        let (ns, name, uid) = (
            meta_str(pvc, "namespace"),
            meta_str(pvc, "name"),
            meta_str(pvc, "uid"),
        );
        let pv_name = format!("pvc-{uid}");
        if let Some(pv) = cache.get(volumes(), "", &pv_name) {
            return Ok(pv.clone());
        }
        let base = match str_at(class, "/parameters/nodePath") {
            "" => DEFAULT_NODE_PATH,
            p => p,
        };
        let node_name = meta_str(node, "name");
        let host = node
            .pointer("/metadata/labels/kubernetes.io~1hostname")
            .and_then(Value::as_str)
            .unwrap_or(node_name);
        let reclaim = match str_at(class, "/reclaimPolicy") {
            "" => "Delete",
            p => p,
        };
        let storage = pvc
            .pointer("/spec/resources/requests/storage")
            .cloned()
            .unwrap_or_else(|| json!("0"));
        let access = pvc
            .pointer("/spec/accessModes")
            .cloned()
            .unwrap_or_else(|| json!(["ReadWriteOnce"]));
        let pv = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "annotations": {PROVISIONED_BY: LOCAL_PATH_PROVISIONER}},
            "spec": {
                "capacity": {"storage": storage},
                "accessModes": access,
                "persistentVolumeReclaimPolicy": reclaim,
                "storageClassName": meta_str(class, "name"),
                "volumeMode": volume_mode(pvc),
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "namespace": ns, "name": name, "uid": uid},
                "hostPath": {"path": format!("{base}/{pv_name}_{ns}_{name}"), "type": "DirectoryOrCreate"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [host]}]}]}},
            },
        });
        let made = match cache.create(volumes(), pv).await {
            Ok(v) => v,
            Err(e) if e.code == 409 => match cache.api.get(volumes(), None, &pv_name).await? {
                Some(v) => v,
                None => return Err(e),
            },
            Err(e) => {
                self.events
                    .warning(claims(), pvc, "ProvisioningFailed", e.message.clone());
                return Err(e);
            }
        };
        self.events.normal(
            claims(),
            pvc,
            "ProvisioningSucceeded",
            format!("Successfully provisioned volume {pv_name} on node {node_name}"),
        );
        Ok(made)
    }

    /// Binds `pvc` to `pv`: the volume first, so a crash in between leaves a
    /// volume reserved for the claim, which the next pass completes.
    async fn bind(
        &mut self,
        cache: &mut Cache,
        pvc: &Value,
        pv: &Value,
    ) -> Result<(), ClientError> {
        let (ns, name, uid) = (
            meta_str(pvc, "namespace"),
            meta_str(pvc, "name"),
            meta_str(pvc, "uid"),
        );
        let pv_name = meta_str(pv, "name").to_string();
        let claim_ref = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "namespace": ns, "name": name, "uid": uid,
            "resourceVersion": meta_str(pvc, "resourceVersion")});
        let had_ref = pv.pointer("/spec/claimRef").is_some();
        cache
            .modify(volumes(), "", &pv_name, None, |cur| {
                if cur.pointer("/spec/claimRef/uid").and_then(Value::as_str) == Some(uid) {
                    return None;
                }
                let mut v = cur.clone();
                v["spec"]["claimRef"] = claim_ref.clone();
                if !had_ref {
                    v["metadata"]["annotations"][BOUND_BY_CONTROLLER] = json!("yes");
                }
                Some(v)
            })
            .await?;
        cache
            .modify(volumes(), "", &pv_name, Some("status"), |cur| {
                (str_at(cur, "/status/phase") != "Bound").then(|| {
                    let mut v = cur.clone();
                    v["status"] = json!({"phase": "Bound"});
                    v
                })
            })
            .await?;
        let by_controller = str_at(pvc, "/spec/volumeName").is_empty();
        cache
            .modify(claims(), ns, name, None, |cur| {
                if meta_str(cur, "uid") != uid {
                    return None;
                }
                let mut v = cur.clone();
                v["spec"]["volumeName"] = json!(pv_name);
                v["metadata"]["annotations"][BIND_COMPLETED] = json!("yes");
                if by_controller {
                    v["metadata"]["annotations"][BOUND_BY_CONTROLLER] = json!("yes");
                }
                (v != *cur).then_some(v)
            })
            .await?;
        let access = pv
            .pointer("/spec/accessModes")
            .cloned()
            .unwrap_or_else(|| json!([]));
        let capacity = pv
            .pointer("/spec/capacity")
            .cloned()
            .unwrap_or_else(|| json!({}));
        cache
            .modify(claims(), ns, name, Some("status"), |cur| {
                (meta_str(cur, "uid") == uid && !bound(cur)).then(|| {
                    let mut v = cur.clone();
                    v["status"] =
                        json!({"phase": "Bound", "accessModes": access, "capacity": capacity});
                    v
                })
            })
            .await?;
        Ok(())
    }

    /// A volume: `Available` when free, `Released` when its claim is gone
    /// (then deleted under reclaim policy `Delete`).
    async fn sync_volume(
        &mut self,
        cache: &mut Cache,
        name: &str,
    ) -> Result<Option<Duration>, ClientError> {
        let Some(pv) = cache.get(volumes(), "", name).cloned() else {
            return Ok(None);
        };
        if is_deleting(&pv) {
            return Ok(None);
        }
        let phase = str_at(&pv, "/status/phase").to_string();
        let Some(r) = pv.pointer("/spec/claimRef").filter(|r| !r.is_null()) else {
            if phase != "Available" {
                set_phase(cache, name, "Available").await?;
            }
            return Ok(None);
        };
        let (cns, cname, cuid) = (
            str_at(r, "/namespace"),
            str_at(r, "/name"),
            str_at(r, "/uid"),
        );
        let claim = cache.get(claims(), cns, cname);
        let gone = match claim {
            None => !cuid.is_empty(),
            Some(c) => !cuid.is_empty() && meta_str(c, "uid") != cuid,
        };
        if !gone {
            if phase.is_empty() {
                set_phase(
                    cache,
                    name,
                    if cuid.is_empty() {
                        "Available"
                    } else {
                        "Bound"
                    },
                )
                .await?;
            }
            return Ok(None);
        }
        if phase != "Released" && phase != "Failed" {
            set_phase(cache, name, "Released").await?;
        }
        if str_at(&pv, "/spec/persistentVolumeReclaimPolicy") == "Delete" {
            cache
                .delete(volumes(), "", name, meta_str(&pv, "uid"))
                .await?;
            self.events.normal(
                volumes(),
                &pv,
                "VolumeDelete",
                format!("persistentvolume {name} deleted: its claim {cns}/{cname} is gone"),
            );
        }
        Ok(None)
    }
}

async fn set_phase(cache: &mut Cache, name: &str, phase: &str) -> Result<(), ClientError> {
    let r = cache
        .modify(volumes(), "", name, Some("status"), |cur| {
            (str_at(cur, "/status/phase") != phase).then(|| {
                let mut v = cur.clone();
                v["status"]["phase"] = json!(phase);
                v
            })
        })
        .await;
    match r {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pvc(extra: Value) -> Value {
        let mut c = json!({"metadata": {"name": "c", "namespace": "n", "uid": "u1"},
            "spec": {"storageClassName": "slow", "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}});
        if let (Some(m), Some(e)) = (c["spec"].as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        c
    }

    fn pv(size: &str, class: &str, modes: Value) -> Value {
        json!({"metadata": {"name": "v", "labels": {"tier": "a"}},
            "spec": {"storageClassName": class, "capacity": {"storage": size}, "accessModes": modes},
            "status": {"phase": "Available"}})
    }

    #[test]
    fn matching_follows_class_size_modes_mode_and_selector() {
        let rwo = json!(["ReadWriteOnce", "ReadOnlyMany"]);
        assert!(fits(&pvc(json!({})), &pv("2Gi", "slow", rwo.clone())));
        assert!(!fits(&pvc(json!({})), &pv("512Mi", "slow", rwo.clone())));
        assert!(!fits(&pvc(json!({})), &pv("2Gi", "fast", rwo.clone())));
        assert!(!fits(
            &pvc(json!({})),
            &pv("2Gi", "slow", json!(["ReadOnlyMany"]))
        ));
        assert!(!fits(
            &pvc(json!({"volumeMode": "Block"})),
            &pv("2Gi", "slow", rwo.clone())
        ));
        assert!(fits(
            &pvc(json!({"selector": {"matchLabels": {"tier": "a"}}})),
            &pv("2Gi", "slow", rwo.clone())
        ));
        assert!(!fits(
            &pvc(json!({"selector": {"matchLabels": {"tier": "b"}}})),
            &pv("2Gi", "slow", rwo.clone())
        ));
        let mut taken = pv("2Gi", "slow", rwo);
        taken["spec"]["claimRef"] = json!({"namespace": "n", "name": "other", "uid": "u2"});
        assert!(!fits(&pvc(json!({})), &taken));
        taken["spec"]["claimRef"] = json!({"namespace": "n", "name": "c", "uid": "u1"});
        assert!(fits(&pvc(json!({})), &taken));
    }

    #[test]
    fn a_volume_pinned_to_a_node_allows_only_it() {
        let pv = json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}});
        let node =
            |n: &str| json!({"metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}}});
        assert!(volume_allows(&pv, &node("n1")));
        assert!(!volume_allows(&pv, &node("n2")));
        assert!(volume_allows(&json!({"spec": {}}), &node("n2")));
    }
}
