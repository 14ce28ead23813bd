//! The scheduling queue, as kube-scheduler's: an active heap ordered by
//! priority (then arrival), a back-off area for pods whose attempt failed
//! (1 s doubling to 10 s), and an unschedulable pool that cluster events
//! (a node added or changed, a pod removed) move back, with a periodic
//! flush so nothing waits forever.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::cache::PodInfo;

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a pod stays in the unschedulable pool without an event.
pub(crate) const UNSCHEDULABLE_FLUSH: Duration = Duration::from_mins(1);

#[derive(Debug)]
struct Entry {
    priority: i64,
    seq: u64,
    key: String,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.priority == o.priority && self.seq == o.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    /// Higher priority first, then earlier arrival.
    fn cmp(&self, o: &Self) -> Ordering {
        self.priority
            .cmp(&o.priority)
            .then_with(|| o.seq.cmp(&self.seq))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Active,
    Backoff,
    Unschedulable,
    /// Popped: being scheduled or bound.
    InFlight,
}

#[derive(Debug)]
struct Queued {
    pod: PodInfo,
    at: Where,
    attempts: u32,
    /// Bumped when the entry is re-pushed, so stale heap entries are skipped.
    seq: u64,
}

/// How often the unschedulable pool is checked for pods waiting too long.
const FLUSH_CHECK: Duration = Duration::from_secs(5);

/// The scheduling queue (see the module docs).
#[derive(Debug)]
pub(crate) struct Queue {
    active: BinaryHeap<Entry>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    /// Pod key → since when it is unschedulable.
    unschedulable: HashMap<String, Instant>,
    pods: HashMap<String, Queued>,
    next_seq: u64,
    last_flush: Instant,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            unschedulable: HashMap::new(),
            pods: HashMap::new(),
            next_seq: 0,
            last_flush: Instant::now(),
        }
    }
}

impl Queue {
    fn push_active(&mut self, key: &str) {
        self.next_seq += 1;
        let seq = self.next_seq;
        if let Some(q) = self.pods.get_mut(key) {
            q.at = Where::Active;
            q.seq = seq;
            self.active.push(Entry {
                priority: q.pod.priority,
                seq,
                key: key.to_string(),
            });
        }
    }

    fn push_backoff(&mut self, key: &str, until: Instant) {
        self.next_seq += 1;
        let seq = self.next_seq;
        if let Some(q) = self.pods.get_mut(key) {
            q.at = Where::Backoff;
            q.seq = seq;
            self.backoff.push(Reverse((until, seq, key.to_string())));
        }
    }

    /// A pod to schedule appeared or changed.
    pub fn add_or_update(&mut self, pod: PodInfo) {
        let key = pod.key();
        if let Some(q) = self.pods.get_mut(&key) {
            let changed = !q.pod.same_spec(&pod);
            q.pod = pod;
            if changed && q.at == Where::Unschedulable {
                self.unschedulable.remove(&key);
                self.push_backoff(&key, Instant::now());
            }
        } else {
            self.pods.insert(
                key.clone(),
                Queued {
                    pod,
                    at: Where::Active,
                    attempts: 0,
                    seq: 0,
                },
            );
            self.push_active(&key);
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.pods.remove(key);
        self.unschedulable.remove(key);
    }

    #[cfg(test)]
    pub fn contains(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    pub fn is_empty_active(&self) -> bool {
        self.active.is_empty()
    }

    /// The next pod to schedule, highest priority first.
    pub fn pop(&mut self) -> Option<PodInfo> {
        while let Some(e) = self.active.pop() {
            if let Some(q) = self.pods.get_mut(&e.key)
                && q.seq == e.seq
                && q.at == Where::Active
            {
                q.at = Where::InFlight;
                q.attempts += 1;
                return Some(q.pod.clone());
            }
        }
        None
    }

    /// The pod was bound: it leaves the queue.
    pub fn done(&mut self, key: &str) {
        self.remove(key);
    }

    /// The attempt failed: the pod waits for its back-off, and in the
    /// unschedulable pool when no node fits (until an event moves it).
    pub fn failed(&mut self, key: &str, unschedulable: bool) {
        let now = Instant::now();
        let Some(q) = self.pods.get_mut(key) else {
            return;
        };
        if unschedulable {
            q.at = Where::Unschedulable;
            self.unschedulable.insert(key.to_string(), now);
        } else {
            let until = now + backoff(q.attempts);
            self.push_backoff(key, until);
        }
    }

    /// A cluster event may make unschedulable pods fit: they go to back-off
    /// (active once their back-off has passed).
    pub fn move_all_unschedulable(&mut self) {
        let pool: Vec<(String, Instant)> = self.unschedulable.drain().collect();
        for (k, since) in pool {
            let attempts = self.pods.get(&k).map_or(1, |q| q.attempts);
            self.push_backoff(&k, since + backoff(attempts));
        }
    }

    /// Whether any waiting pod has required pod affinity (so a newly placed
    /// pod may be what it waits for).
    pub fn any_waits_for_pods(&self) -> bool {
        self.unschedulable
            .keys()
            .any(|k| self.pods.get(k).is_some_and(|q| !q.pod.affinity.is_empty()))
    }

    /// Moves pods whose back-off has passed (and unschedulable pods waiting
    /// longer than the flush interval) to the active heap; returns the
    /// next time something becomes due.
    pub fn promote(&mut self) -> Option<Instant> {
        let now = Instant::now();
        while let Some(Reverse((t, seq, key))) = self.backoff.peek().cloned() {
            if t > now {
                break;
            }
            self.backoff.pop();
            if self
                .pods
                .get(&key)
                .is_some_and(|q| q.seq == seq && q.at == Where::Backoff)
            {
                self.push_active(&key);
            }
        }
        if now >= self.last_flush + FLUSH_CHECK {
            self.last_flush = now;
            let stale: Vec<String> = self
                .unschedulable
                .iter()
                .filter(|(_, since)| **since + UNSCHEDULABLE_FLUSH <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for k in stale {
                self.unschedulable.remove(&k);
                self.push_active(&k);
            }
        }
        let next_backoff = self.backoff.peek().map(|r| r.0.0);
        let next_flush = (!self.unschedulable.is_empty()).then_some(self.last_flush + FLUSH_CHECK);
        match (next_backoff, next_flush) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(8);
    (INITIAL_BACKOFF * 2u32.pow(exp)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i64) -> PodInfo {
        PodInfo::from_json(
            &json!({"metadata": {"name": name, "namespace": "d"}, "spec": {"priority": priority}}),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn priority_order_backoff_and_events() {
        let mut q = Queue::default();
        q.add_or_update(pod("low", 1));
        q.add_or_update(pod("high", 100));
        q.add_or_update(pod("low2", 1));
        assert_eq!(q.pop().unwrap().name, "high");
        assert_eq!(q.pop().unwrap().name, "low");
        assert_eq!(q.pop().unwrap().name, "low2");
        assert!(q.pop().is_none());
        q.failed("d/low", true);
        q.failed("d/low2", false);
        // Back-off: not before a second has passed.
        assert!(q.promote().is_some());
        assert!(q.pop().is_none());
        tokio::time::advance(Duration::from_millis(1100)).await;
        q.promote();
        assert_eq!(q.pop().unwrap().name, "low2");
        assert!(q.pop().is_none(), "unschedulable waits for an event");
        assert!(!q.any_waits_for_pods());
        q.move_all_unschedulable();
        q.promote();
        assert_eq!(q.pop().unwrap().name, "low");
        q.done("d/low");
        assert!(!q.contains("d/low"));
        assert_eq!(backoff(10), MAX_BACKOFF);
    }
}
