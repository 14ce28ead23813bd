//! kube-scheduler's `VolumeBinding` and `VolumeRestrictions` for claims:
//! a pod whose claim is missing or unbound with `Immediate` binding waits;
//! a claim bound to a volume with node affinity (a local volume) keeps the
//! pod on the nodes it allows; an unbound `WaitForFirstConsumer` claim
//! gets the chosen node in `volume.kubernetes.io/selected-node` before the
//! pod is bound, for the provisioner ([`crate::volumes`]).
//!
//! Claims are read from the API when a pod that has some is scheduled
//! (they are few; the node and pod caches stay as they are).

use keel_api::Loopback;
use serde_json::Value;

use super::cache::{NodeInfo, NodeTerm, PodInfo};
use crate::volumes::{SELECTED_NODE, claims, classes, volumes};

pub(crate) const ERR_CONFLICT: &str = "node(s) had volume node affinity conflict";
const ERR_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// What a pod's claims require of a node.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Per bound volume with node affinity: its terms (one must match).
    pinned: Vec<Vec<NodeTerm>>,
    /// Unbound `WaitForFirstConsumer` claims, to annotate with the node.
    pub select: Vec<String>,
}

impl Plan {
    pub fn allows(&self, node: &NodeInfo) -> bool {
        self.pinned
            .iter()
            .all(|terms| terms.iter().any(|t| t.matches(node)))
    }
}

/// The claim names of a pod's volumes (ephemeral volumes' claims are
/// `<pod>-<volume>`).
pub(crate) fn claim_names(pod: &Value) -> Vec<String> {
    let pod_name = crate::objects::meta_str(pod, "name");
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| {
            if let Some(c) = v
                .pointer("/persistentVolumeClaim/claimName")
                .and_then(Value::as_str)
            {
                return Some(c.to_string());
            }
            v.get("ephemeral")
                .map(|_| format!("{pod_name}-{}", v["name"].as_str().unwrap_or_default()))
        })
        .collect()
}

/// Reads the pod's claims; `Err` is why no node can take it now.
pub(crate) async fn plan(api: &Loopback, pod: &PodInfo) -> Result<Plan, String> {
    let mut plan = Plan::default();
    for c in &pod.claims {
        let pvc = api
            .get(claims(), Some(&pod.ns), c)
            .await
            .map_err(|e| e.message)?
            .ok_or_else(|| format!("persistentvolumeclaim \"{c}\" not found"))?;
        if crate::objects::is_deleting(&pvc) {
            return Err(format!("persistentvolumeclaim \"{c}\" is being deleted"));
        }
        let bound_to = pvc
            .pointer("/spec/volumeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !bound_to.is_empty() {
            let pv = api
                .get(volumes(), None, bound_to)
                .await
                .map_err(|e| e.message)?
                .ok_or_else(|| format!("pvc(s) bound to non-existent pv(s) {bound_to}"))?;
            if let Some(terms) = pv
                .pointer("/spec/nodeAffinity/required/nodeSelectorTerms")
                .and_then(Value::as_array)
            {
                plan.pinned
                    .push(terms.iter().map(NodeTerm::from_json).collect());
            }
            continue;
        }
        let class = pvc
            .pointer("/spec/storageClassName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let wait = match api.get(classes(), None, class).await {
            Ok(Some(sc)) => {
                sc.get("volumeBindingMode").and_then(Value::as_str) == Some("WaitForFirstConsumer")
            }
            _ => false,
        };
        if !wait {
            return Err(ERR_IMMEDIATE.into());
        }
        plan.select.push(c.clone());
    }
    Ok(plan)
}

/// Writes the chosen node into the pod's unbound `WaitForFirstConsumer`
/// claims.
pub(crate) async fn select_node(
    api: &Loopback,
    ns: &str,
    claims_to_select: &[String],
    node: &str,
) -> Result<(), keel_api::ClientError> {
    for c in claims_to_select {
        api.modify(claims(), Some(ns), c, None, super::SCHEDULER_NAME, |cur| {
            let unbound = cur
                .pointer("/spec/volumeName")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            let have = cur
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(SELECTED_NODE))
                .and_then(Value::as_str);
            (unbound && have != Some(node)).then(|| {
                let mut v = cur.clone();
                v["metadata"]["annotations"][SELECTED_NODE] = Value::from(node);
                v
            })
        })
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_of_a_pod() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"volumes": [
            {"name": "a", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {}}}]}});
        assert_eq!(claim_names(&pod), ["data", "p-scratch"]);
    }
}
