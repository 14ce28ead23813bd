//! `DefaultPreemption`: when no node fits a pod, find a node where
//! removing pods of lower priority would make it fit, keeping as many of
//! them as possible (highest priority first), and pick the node whose
//! victims matter least (lowest highest priority, then lowest sum, then
//! fewest). Nodes that failed for a reason preemption cannot change are
//! skipped. The pod relation state of the cycle is reused as is (victims
//! are not subtracted from spread and affinity counts).

use std::sync::Arc;

use super::cache::{Cache, NodeInfo, PodInfo};
use super::plugins::{CycleState, Diagnosis};

/// The node to nominate and the pods to delete there.
#[derive(Debug)]
pub(crate) struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
}

/// A candidate, or the message kube-scheduler's post-filter gives.
pub(crate) fn preempt(
    pod: &PodInfo,
    cache: &Cache,
    st: &CycleState,
    diag: &Diagnosis,
) -> Result<Candidate, String> {
    if pod.preempt_never {
        return Err("not eligible due to preemptionPolicy=Never.".into());
    }
    let mut best: Option<((i64, i64, usize), Candidate)> = None;
    let mut helpless = 0usize;
    let mut no_victims = 0usize;
    for (name, f) in &diag.failed {
        if f.unresolvable {
            helpless += 1;
            continue;
        }
        let Some(node) = cache.nodes.get(name) else {
            no_victims += 1;
            continue;
        };
        match victims_on(pod, node, st) {
            Some(victims) if !victims.is_empty() => {
                let rank = (
                    victims.iter().map(|v| v.priority).max().unwrap_or(i64::MIN),
                    victims.iter().map(|v| v.priority).sum(),
                    victims.len(),
                );
                if best.as_ref().is_none_or(|(r, _)| rank < *r) {
                    best = Some((
                        rank,
                        Candidate {
                            node: name.clone(),
                            victims,
                        },
                    ));
                }
            }
            _ => no_victims += 1,
        }
    }
    if let Some((_, c)) = best {
        return Ok(c);
    }
    let mut parts = Vec::new();
    if helpless > 0 {
        parts.push(format!(
            "{helpless} Preemption is not helpful for scheduling"
        ));
    }
    if no_victims > 0 {
        parts.push(format!(
            "{no_victims} No preemption victims found for incoming pod"
        ));
    }
    parts.sort();
    Err(format!(
        "0/{} nodes are available: {}.",
        diag.nodes,
        parts.join(", ")
    ))
}

/// The fewest lower-priority pods whose removal lets `pod` fit on `node`.
fn victims_on(pod: &PodInfo, node: &NodeInfo, st: &CycleState) -> Option<Vec<Arc<PodInfo>>> {
    let mut trial = node.clone();
    let mut lower: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if lower.is_empty() {
        return None;
    }
    for v in &lower {
        trial.remove(&v.key());
    }
    st.filter(pod, &trial).ok()?;
    // Reprieve the most important first.
    lower.sort_by_key(|v| std::cmp::Reverse(v.priority));
    let mut victims = Vec::new();
    for v in lower {
        trial.add(v.clone());
        if st.filter(pod, &trial).is_err() {
            trial.remove(&v.key());
            victims.push(v);
        }
    }
    Some(victims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i64, cpu: &str) -> PodInfo {
        PodInfo::from_json(
            &json!({"metadata": {"name": name, "namespace": "d"}, "spec": {
            "priority": priority,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}),
        )
    }

    #[test]
    fn lowest_priority_victims_are_chosen_and_reprieved() {
        let mut c = Cache::default();
        for n in ["a", "b"] {
            c.set_node(&json!({"metadata": {"name": n}, "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "10"}}}));
        }
        for (name, node, prio) in [
            ("a1", "a", 5),
            ("a2", "a", 1),
            ("b1", "b", 7),
            ("b2", "b", 8),
        ] {
            let mut p = pod(name, prio, "1");
            p.node = node.into();
            c.place(p, false);
        }
        let incoming = pod("big", 10, "1");
        let st = CycleState::new(&incoming, &c);
        let mut d = Diagnosis {
            nodes: 2,
            ..Diagnosis::default()
        };
        for n in c.node_list() {
            if let Err(f) = st.filter(&incoming, n) {
                d.record(&n.name, f);
            }
        }
        let cand = preempt(&incoming, &c, &st, &d).unwrap();
        assert_eq!(cand.node, "a");
        let names: Vec<_> = cand.victims.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["a2"]);
        let low = pod("low", 0, "1");
        let st = CycleState::new(&low, &c);
        let err = preempt(&low, &c, &st, &d).unwrap_err();
        assert_eq!(
            err,
            "0/2 nodes are available: 2 No preemption victims found for incoming pod."
        );
    }
}
