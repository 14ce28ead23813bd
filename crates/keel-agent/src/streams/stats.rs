//! `GET /stats/summary`: the kubelet's resource summary (`stats/v1alpha1`
//! `Summary`: node, pods and their containers with CPU `usageNanoCores`,
//! `usageCoreNanoSeconds` and memory `workingSetBytes`), which keel server
//! turns into `metrics.k8s.io` for `kubectl top` and the autoscaler.
//!
//! The kernel counts CPU time cumulatively; a rate needs two readings. A
//! [`Sampler`] reads every container's cgroup (v1 or v2, through
//! keel-runtime's `stats`) and the node's `/proc` every [`INTERVAL`] and
//! keeps the last two readings of each, as `cAdvisor` does for the kubelet.
//! A container read only once has no rate yet and is left out, so the
//! autoscaler counts its pod as missing rather than idle. Readings come
//! from a [`Reader`] so the arithmetic is tested on a fake.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

/// How often the sampler reads (also the metrics' `window`).
pub const INTERVAL: Duration = Duration::from_secs(5);

/// One container of a pod on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerRef {
    pub id: String,
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub name: String,
}

/// Cumulative CPU time and the current working set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    pub cpu_ns: u64,
    pub working_set: u64,
}

/// Where readings come from: the kernel, or a fake in tests.
pub(crate) trait Reader: Send + Sync + 'static {
    /// The running containers of this node's pods (no sandboxes).
    fn containers(&self) -> Vec<ContainerRef>;
    /// A container's usage; `None` when its cgroup is gone.
    fn usage(&self, id: &str) -> Option<Reading>;
    /// The whole node's usage.
    fn node(&self) -> Option<Reading>;
}

/// The kernel: cgroups of keel's containers, `/proc/stat`, `/proc/meminfo`.
struct Kernel {
    root: PathBuf,
}

impl Reader for Kernel {
    fn containers(&self) -> Vec<ContainerRef> {
        use crate::runtime::{LABEL_CONTAINER, LABEL_POD_NAME, LABEL_POD_NS, LABEL_POD_UID};
        crate::runtime::labelled(&self.root)
            .into_iter()
            .filter_map(|(id, l)| {
                let name = l.get(LABEL_CONTAINER)?.clone();
                (name != crate::runtime::SANDBOX).then(|| ContainerRef {
                    namespace: l.get(LABEL_POD_NS).cloned().unwrap_or_default(),
                    pod: l.get(LABEL_POD_NAME).cloned().unwrap_or_default(),
                    pod_uid: l.get(LABEL_POD_UID).cloned().unwrap_or_default(),
                    name,
                    id,
                })
            })
            .collect()
    }

    fn usage(&self, id: &str) -> Option<Reading> {
        let u = keel_runtime::stats::Cgroup::of_container(id).usage()?;
        Some(Reading {
            cpu_ns: u.cpu_ns,
            working_set: u.memory,
        })
    }

    fn node(&self) -> Option<Reading> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        Some(Reading {
            cpu_ns: proc_cpu_ns(&stat)?,
            working_set: meminfo_working_set(&meminfo)?,
        })
    }
}

/// Busy CPU time of all CPUs from `/proc/stat`'s `cpu` line (user, nice,
/// system, irq, softirq, steal; `USER_HZ` is 100 on Linux), in nanoseconds.
fn proc_cpu_ns(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    Some(busy.saturating_mul(10_000_000))
}

/// The node's memory in use: `MemTotal − MemAvailable` (`kB` → bytes).
fn meminfo_working_set(meminfo: &str) -> Option<u64> {
    let field = |k: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(
        field("MemTotal:")?
            .saturating_sub(field("MemAvailable:")?)
            .saturating_mul(1024),
    )
}

#[derive(Debug, Clone, Copy)]
struct Point {
    at: SystemTime,
    r: Reading,
}

/// The last two readings of one series.
#[derive(Debug, Clone, Copy)]
struct Series {
    prev: Option<Point>,
    last: Point,
}

impl Series {
    fn push(old: Option<Series>, p: Point) -> Series {
        Series {
            prev: old.map(|s| s.last),
            last: p,
        }
    }

    /// CPU in nanocores between the two readings, if there are two.
    fn nano_cores(&self) -> Option<u64> {
        let prev = self.prev?;
        let dt = self.last.at.duration_since(prev.at).ok()?.as_nanos();
        if dt == 0 {
            return None;
        }
        let used = u128::from(self.last.r.cpu_ns.checked_sub(prev.r.cpu_ns)?);
        u64::try_from(used * 1_000_000_000 / dt).ok()
    }

    fn cpu(&self) -> Option<Value> {
        Some(json!({
            "time": rfc3339(self.last.at),
            "usageNanoCores": self.nano_cores()?,
            "usageCoreNanoSeconds": self.last.r.cpu_ns,
        }))
    }

    fn memory(&self) -> Value {
        json!({"time": rfc3339(self.last.at), "workingSetBytes": self.last.r.working_set})
    }
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[derive(Default)]
struct State {
    refs: Vec<ContainerRef>,
    containers: HashMap<String, Series>,
    node: Option<Series>,
}

/// Readings of the node and its containers, refreshed by [`Sampler::start`].
pub(crate) struct Sampler {
    reader: Box<dyn Reader>,
    state: Mutex<State>,
}

impl Sampler {
    pub fn new(reader: Box<dyn Reader>) -> Self {
        Sampler {
            reader,
            state: Mutex::new(State::default()),
        }
    }

    /// A sampler of the kernel's readings for the node at `root`, reading
    /// in the background every [`INTERVAL`].
    pub fn start(root: PathBuf) -> Arc<Sampler> {
        let s = Arc::new(Sampler::new(Box::new(Kernel { root })));
        let bg = s.clone();
        tokio::spawn(async move {
            loop {
                let one = bg.clone();
                let _ = tokio::task::spawn_blocking(move || one.sample(SystemTime::now())).await;
                tokio::time::sleep(INTERVAL).await;
            }
        });
        s
    }

    /// Takes one reading of everything at `now`.
    pub fn sample(&self, now: SystemTime) {
        let refs = self.reader.containers();
        let readings: Vec<(String, Reading)> = refs
            .iter()
            .filter_map(|c| Some((c.id.clone(), self.reader.usage(&c.id)?)))
            .collect();
        let node = self.reader.node();
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = HashMap::new();
        for (id, r) in readings {
            let old = st.containers.get(&id).copied();
            next.insert(id, Series::push(old, Point { at: now, r }));
        }
        st.containers = next;
        st.refs = refs;
        if let Some(r) = node {
            st.node = Some(Series::push(st.node, Point { at: now, r }));
        }
    }

    /// The `Summary` document for node `node_name`.
    pub fn summary(&self, node_name: &str) -> Value {
        let st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut node = json!({"nodeName": node_name});
        if let Some(s) = &st.node {
            if let Some(cpu) = s.cpu() {
                node["cpu"] = cpu;
            }
            node["memory"] = s.memory();
        }
        // Pods in the order their containers were listed, containers within.
        let mut pods: Vec<(ContainerRef, Vec<(String, Series)>)> = Vec::new();
        for c in &st.refs {
            let Some(s) = st.containers.get(&c.id) else {
                continue;
            };
            match pods.iter_mut().find(|(p, _)| p.pod_uid == c.pod_uid) {
                Some((_, cs)) => cs.push((c.name.clone(), *s)),
                None => pods.push((c.clone(), vec![(c.name.clone(), *s)])),
            }
        }
        let pods: Vec<Value> = pods.into_iter().map(|(p, cs)| pod_stats(&p, &cs)).collect();
        json!({"node": node, "pods": pods})
    }
}

fn pod_stats(p: &ContainerRef, cs: &[(String, Series)]) -> Value {
    let containers: Vec<Value> = cs
        .iter()
        .map(|(name, s)| {
            let mut c = json!({"name": name, "memory": s.memory()});
            if let Some(cpu) = s.cpu() {
                c["cpu"] = cpu;
            }
            c
        })
        .collect();
    let last = cs.iter().map(|(_, s)| s.last.at).max();
    let mut v = json!({
        "podRef": {"name": p.pod, "namespace": p.namespace, "uid": p.pod_uid},
        "containers": containers,
        "memory": {
            "time": last.map(rfc3339),
            "workingSetBytes": cs.iter().map(|(_, s)| s.last.r.working_set).sum::<u64>(),
        },
    });
    // A pod's CPU rate only when every container has one.
    let rates: Option<Vec<u64>> = cs.iter().map(|(_, s)| s.nano_cores()).collect();
    if let (Some(rates), Some(last)) = (rates, last) {
        v["cpu"] = json!({
            "time": rfc3339(last),
            "usageNanoCores": rates.iter().sum::<u64>(),
            "usageCoreNanoSeconds": cs.iter().map(|(_, s)| s.last.r.cpu_ns).sum::<u64>(),
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Readings scripted per sample: each call to `containers` moves on.
    struct Fake {
        step: Mutex<usize>,
        script: Vec<Vec<(ContainerRef, Reading)>>,
    }

    impl Fake {
        fn now(&self) -> &[(ContainerRef, Reading)] {
            let i = *self.step.lock().unwrap();
            &self.script[i.min(self.script.len() - 1)]
        }
    }

    impl Reader for Fake {
        fn containers(&self) -> Vec<ContainerRef> {
            let mut i = self.step.lock().unwrap();
            let out = self.script[(*i).min(self.script.len() - 1)]
                .iter()
                .map(|(c, _)| c.clone())
                .collect();
            *i += 1;
            out
        }
        fn usage(&self, id: &str) -> Option<Reading> {
            let i = *self.step.lock().unwrap() - 1;
            self.script[i.min(self.script.len() - 1)]
                .iter()
                .find(|(c, _)| c.id == id)
                .map(|(_, r)| *r)
        }
        fn node(&self) -> Option<Reading> {
            let _ = self.now();
            let i = *self.step.lock().unwrap() as u64;
            Some(Reading {
                cpu_ns: i * 4_000_000_000,
                working_set: 1 << 30,
            })
        }
    }

    fn c(id: &str, pod: &str, name: &str) -> ContainerRef {
        ContainerRef {
            id: id.into(),
            namespace: "default".into(),
            pod: pod.into(),
            pod_uid: format!("uid-{pod}"),
            name: name.into(),
        }
    }

    fn r(cpu_ns: u64, ws: u64) -> Reading {
        Reading {
            cpu_ns,
            working_set: ws,
        }
    }

    #[test]
    fn rates_come_from_two_readings_and_pods_sum_their_containers() {
        let fake = Fake {
            step: Mutex::new(0),
            script: vec![
                vec![
                    (c("a", "web", "app"), r(1_000_000_000, 100)),
                    (c("b", "web", "side"), r(0, 50)),
                ],
                vec![
                    // 0.5 s of CPU over 2 s: 250m; the sidecar idles.
                    (c("a", "web", "app"), r(1_500_000_000, 120)),
                    (c("b", "web", "side"), r(0, 60)),
                    // New: one reading, no rate yet.
                    (c("n", "new", "app"), r(7, 10)),
                ],
            ],
        };
        let s = Sampler::new(Box::new(fake));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        s.sample(t0);
        let first = s.summary("n1");
        assert!(first["pods"][0].get("cpu").is_none(), "{first}");
        assert!(first["node"].get("cpu").is_none());
        s.sample(t0 + Duration::from_secs(2));
        let sum = s.summary("n1");
        let web = &sum["pods"][0];
        assert_eq!(web["podRef"]["name"], "web");
        assert_eq!(web["cpu"]["usageNanoCores"], 250_000_000);
        assert_eq!(web["memory"]["workingSetBytes"], 180);
        assert_eq!(web["containers"][0]["cpu"]["usageNanoCores"], 250_000_000);
        assert_eq!(web["containers"][1]["cpu"]["usageNanoCores"], 0);
        let new = &sum["pods"][1];
        assert_eq!(new["podRef"]["name"], "new");
        assert!(new.get("cpu").is_none(), "one reading has no rate: {new}");
        assert_eq!(new["memory"]["workingSetBytes"], 10);
        // Node: 4 s of CPU per 2 s = 2 cores.
        assert_eq!(sum["node"]["cpu"]["usageNanoCores"], 2_000_000_000u64);
        assert_eq!(sum["node"]["memory"]["workingSetBytes"], 1u64 << 30);
        assert_eq!(sum["node"]["cpu"]["time"], "2023-11-14T22:13:22Z");
    }

    #[test]
    fn a_counter_going_back_gives_no_rate() {
        let fake = Fake {
            step: Mutex::new(0),
            script: vec![
                vec![(c("a", "p", "x"), r(500, 1))],
                vec![(c("a", "p", "x"), r(100, 1))],
            ],
        };
        let s = Sampler::new(Box::new(fake));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        s.sample(t0);
        s.sample(t0 + Duration::from_secs(1));
        assert!(s.summary("n")["pods"][0].get("cpu").is_none());
    }

    #[test]
    fn proc_files_parse() {
        let stat = "cpu  100 20 30 4000 50 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(
            proc_cpu_ns(stat),
            Some((100 + 20 + 30 + 6 + 7 + 8) * 10_000_000)
        );
        let mem = "MemTotal:       16000 kB\nMemFree:  1 kB\nMemAvailable:    6000 kB\n";
        assert_eq!(meminfo_working_set(mem), Some(10_000 * 1024));
        assert_eq!(proc_cpu_ns("garbage"), None);
        assert_eq!(meminfo_working_set("MemTotal: x kB"), None);
    }
}
