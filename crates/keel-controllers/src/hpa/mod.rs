//! The Horizontal Pod Autoscaler controller (autoscaling/v2), as
//! kube-controller-manager's `podautoscaler` runs it: every sync period
//! each HPA's target is read through its scale (Deployments, `ReplicaSets`,
//! `StatefulSets`, `ReplicationControllers`), each metric proposes a count
//! ([`calc`], Kubernetes' replica calculator), the largest wins, and
//! [`scale`] stabilizes and rate-limits it before the target's
//! `spec.replicas` is written. Status carries `currentReplicas`,
//! `desiredReplicas`, `currentMetrics`, `lastScaleTime` and the
//! `AbleToScale`/`ScalingActive`/`ScalingLimited` conditions with
//! Kubernetes' reasons and messages; rescales and failures are Events
//! (`SuccessfulRescale` "New size: N; reason: ...").
//!
//! Readings come from a [`source::MetricsSource`]: `metrics.k8s.io` by
//! default, any backend for Pods/Object metrics.

pub mod calc;
pub mod scale;
pub mod source;
mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keel_api::Loopback;
use keel_api::resources::{self, Resource};
use keel_api::selectors::LabelSelector;
use serde_json::{Value, json};

use crate::events::Recorder;
use crate::objects::{is_deleting, meta_str};
use source::{MetricsSource, milli, quantity};
use status::{Status, pod_of};

const MANAGER: &str = "horizontal-pod-autoscaler";

/// The controller's flags (kube-controller-manager's
/// `--horizontal-pod-autoscaler-*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// `--horizontal-pod-autoscaler-sync-period` (15 s).
    pub sync_period: Duration,
    /// `--horizontal-pod-autoscaler-downscale-stabilization` (5 min).
    pub downscale_stabilization: Duration,
    pub calc: calc::Settings,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync_period: Duration::from_secs(15),
            downscale_stabilization: Duration::from_mins(5),
            calc: calc::Settings::default(),
        }
    }
}

fn hpas() -> &'static Resource {
    resources::find("autoscaling", "v2", "horizontalpodautoscalers").expect("HPAs are served")
}

fn pods() -> &'static Resource {
    resources::find("", "v1", "pods").expect("pods are served")
}

#[allow(clippy::cast_precision_loss)]
fn now() -> f64 {
    jiff::Timestamp::now().as_millisecond() as f64 / 1000.0
}

fn rfc3339() -> String {
    crate::scheduler::events::now()
}

/// The controller. [`HpaController::run`] never returns.
pub struct HpaController {
    api: Loopback,
    source: Arc<dyn MetricsSource>,
    opts: Options,
    history: HashMap<String, scale::History>,
    events: Recorder,
}

impl std::fmt::Debug for HpaController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HpaController")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// One metric's outcome: a proposal, its name, its status entry.
struct Computed {
    replicas: i32,
    name: String,
    status: Value,
}

/// A failed metric: the condition reason and the error.
struct Failed {
    reason: &'static str,
    error: String,
}

/// What the reconcile learned about the target.
struct Target {
    resource: &'static Resource,
    obj: Value,
    replicas: i32,
}

impl HpaController {
    pub fn new(api: Loopback, source: Arc<dyn MetricsSource>, opts: Options) -> Self {
        let events = Recorder::new(api.clone(), MANAGER);
        HpaController {
            api,
            source,
            opts,
            history: HashMap::new(),
            events,
        }
    }

    pub async fn run(mut self) {
        loop {
            let started = tokio::time::Instant::now();
            match self.api.list(hpas(), None).await {
                Ok((items, _)) => {
                    let live: Vec<String> = items.iter().map(key).collect();
                    self.history.retain(|k, _| live.contains(k));
                    for h in items {
                        if is_deleting(&h) {
                            continue;
                        }
                        if let Err(e) = self.reconcile(&h).await {
                            tracing::info!(hpa = %key(&h), error = %e, "autoscaler");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "listing HorizontalPodAutoscalers"),
            }
            tokio::time::sleep_until(started + self.opts.sync_period).await;
        }
    }

    async fn target(&self, hpa: &Value) -> Result<Target, String> {
        let r = &hpa["spec"]["scaleTargetRef"];
        let (api_version, kind, name) = (
            r["apiVersion"].as_str().unwrap_or_default(),
            r["kind"].as_str().unwrap_or_default(),
            r["name"].as_str().unwrap_or_default(),
        );
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let resource = resources::by_kind(api_version, kind)
            .filter(|r| r.scale)
            .ok_or_else(|| format!("no matches for kind \"{kind}\" in group \"{group}\""))?;
        let ns = meta_str(hpa, "namespace");
        let obj = self
            .api
            .get(resource, Some(ns), name)
            .await
            .map_err(|e| e.message)?
            .ok_or_else(|| {
                let g = if resource.group.is_empty() {
                    String::new()
                } else {
                    format!(".{}", resource.group)
                };
                format!("{}{g} \"{name}\" not found", resource.plural)
            })?;
        let replicas = obj["spec"]["replicas"]
            .as_i64()
            .and_then(|x| i32::try_from(x).ok())
            .unwrap_or(1);
        Ok(Target {
            resource,
            obj,
            replicas,
        })
    }

    async fn reconcile(&mut self, hpa: &Value) -> Result<(), String> {
        let k = key(hpa);
        let mut status = Status::of(hpa);
        let now = now();
        let target = match self.target(hpa).await {
            Ok(t) => t,
            Err(e) => {
                self.events
                    .warning(hpas(), hpa, "FailedGetScale", e.clone());
                status.condition(
                    "AbleToScale",
                    false,
                    "FailedGetScale",
                    &format!(
                        "the HPA controller was unable to get the target's current scale: {e}"
                    ),
                );
                self.write_status(hpa, status.value()).await;
                return Err(e);
            }
        };
        status.condition(
            "AbleToScale",
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        );
        let current = target.replicas;
        scale::record_initial(self.history.entry(k.clone()).or_default(), current, now);
        let spec = &hpa["spec"];
        let min = spec["minReplicas"]
            .as_i64()
            .and_then(|x| i32::try_from(x).ok())
            .unwrap_or(1);
        let max = spec["maxReplicas"]
            .as_i64()
            .and_then(|x| i32::try_from(x).ok())
            .unwrap_or(current);
        let mut metrics = status.current_metrics();
        let mut reason = String::new();
        let desired = if current == 0 && min != 0 {
            status.condition(
                "ScalingActive",
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            );
            current
        } else if current > max {
            reason = "Current number of replicas above Spec.MaxReplicas".into();
            max
        } else if current < min {
            reason = "Current number of replicas below Spec.MinReplicas".into();
            min
        } else {
            match self.compute(hpa, &target, &mut status, now).await {
                Ok((proposal, name, statuses)) => {
                    metrics = Some(statuses);
                    reason = match proposal.cmp(&current) {
                        std::cmp::Ordering::Greater => format!("{name} above target"),
                        std::cmp::Ordering::Less => "All metrics below target".into(),
                        std::cmp::Ordering::Equal => String::new(),
                    };
                    let down = self.opts.downscale_stabilization.as_secs_f64();
                    #[allow(clippy::cast_possible_truncation)]
                    let b = scale::behavior(spec, down as i64);
                    let h = self.history.entry(k.clone()).or_default();
                    let o = scale::normalize(h, b.as_ref(), down, current, proposal, min, max, now);
                    status.condition("AbleToScale", true, o.able.0, o.able.1);
                    status.condition("ScalingLimited", o.limited.0, o.limited.1, o.limited.2);
                    if o.replicas != current {
                        scale::record_scale(h, b.as_ref(), current, o.replicas, now);
                    }
                    o.replicas
                }
                Err(e) => {
                    status.set(current, status.desired(), metrics, false);
                    self.write_status(hpa, status.value()).await;
                    self.events
                        .warning(hpas(), hpa, "FailedComputeMetricsReplicas", e.clone());
                    return Err(e);
                }
            }
        };
        let rescale = desired != current;
        if rescale {
            if let Err(e) = self.set_replicas(&target, desired).await {
                self.events.warning(
                    hpas(),
                    hpa,
                    "FailedRescale",
                    format!("New size: {desired}; reason: {reason}; error: {e}"),
                );
                status.condition(
                    "AbleToScale",
                    false,
                    "FailedUpdateScale",
                    &format!("the HPA controller was unable to update the target scale: {e}"),
                );
                status.set(current, status.desired(), metrics, false);
                self.write_status(hpa, status.value()).await;
                return Err(e);
            }
            status.condition(
                "AbleToScale",
                true,
                "SucceededRescale",
                &format!("the HPA controller was able to update the target scale to {desired}"),
            );
            self.events.normal(
                hpas(),
                hpa,
                "SuccessfulRescale",
                format!("New size: {desired}; reason: {reason}"),
            );
            tracing::info!(hpa = %k, from = current, to = desired, %reason, "rescaled");
        }
        status.set(current, desired, metrics, rescale);
        self.write_status(hpa, status.value()).await;
        Ok(())
    }

    async fn set_replicas(&self, t: &Target, n: i32) -> Result<(), String> {
        let uid = meta_str(&t.obj, "uid").to_string();
        self.api
            .modify(
                t.resource,
                Some(meta_str(&t.obj, "namespace")),
                meta_str(&t.obj, "name"),
                None,
                MANAGER,
                |cur| {
                    (meta_str(cur, "uid") == uid && cur["spec"]["replicas"] != json!(n)).then(
                        || {
                            let mut v = cur.clone();
                            v["spec"]["replicas"] = json!(n);
                            v
                        },
                    )
                },
            )
            .await
            .map(|_| ())
            .map_err(|e| e.message)
    }

    async fn write_status(&self, hpa: &Value, status: Value) {
        let uid = meta_str(hpa, "uid").to_string();
        let res = self
            .api
            .modify(
                hpas(),
                Some(meta_str(hpa, "namespace")),
                meta_str(hpa, "name"),
                Some("status"),
                MANAGER,
                |cur| {
                    (meta_str(cur, "uid") == uid && cur.get("status") != Some(&status)).then(|| {
                        let mut v = cur.clone();
                        v["status"] = status.clone();
                        v
                    })
                },
            )
            .await;
        if let Err(e) = res
            && !e.is_not_found()
        {
            tracing::warn!(hpa = %key(hpa), error = %e, "writing autoscaler status");
        }
    }

    /// Every metric's proposal; the largest wins. Fails when all metrics
    /// fail, or some fail and the rest would scale down.
    async fn compute(
        &self,
        hpa: &Value,
        target: &Target,
        status: &mut Status,
        now: f64,
    ) -> Result<(i32, String, Value), String> {
        let specs = metric_specs(&hpa["spec"]);
        let selector = match target.obj.pointer("/spec/selector") {
            Some(s) if s.is_object() => LabelSelector::from_json(s),
            _ => {
                let msg = "selector is required";
                self.events
                    .warning(hpas(), hpa, "SelectorRequired", msg.into());
                status.condition(
                    "ScalingActive",
                    false,
                    "InvalidSelector",
                    "the HPA target's scale is missing a selector",
                );
                return Err(msg.into());
            }
        };
        let ns = meta_str(hpa, "namespace");
        let pods = self.pods(ns, &selector).await?;
        let current = target.replicas;
        let mut best: Option<(i32, String)> = None;
        let mut statuses = Vec::new();
        let mut failed: Vec<Failed> = Vec::new();
        for m in &specs {
            match self
                .metric(m, ns, &selector, &pods, current, &target.obj, now)
                .await
            {
                Ok(c) => {
                    statuses.push(c.status);
                    if best.as_ref().is_none_or(|(r, _)| c.replicas > *r) {
                        best = Some((c.replicas, c.name));
                    }
                }
                Err(f) => {
                    self.events.warning(hpas(), hpa, f.reason, f.error.clone());
                    statuses.push(json!({"type": ""}));
                    failed.push(f);
                }
            }
        }
        let n_failed = failed.len();
        let proposal = best.as_ref().map_or(current, |(r, _)| *r);
        if let Some(first) = failed.first()
            && (best.is_none() || proposal < current)
        {
            status.condition(
                "ScalingActive",
                false,
                first.reason,
                &format!(
                    "the HPA was unable to compute the replica count: {}",
                    first.error
                ),
            );
            return Err(format!(
                "invalid metrics ({n_failed} invalid out of {}), first error is: {}",
                specs.len(),
                first.error
            ));
        }
        let (replicas, name) = best.unwrap_or((current, String::new()));
        status.condition(
            "ScalingActive",
            true,
            "ValidMetricFound",
            &format!("the HPA was able to successfully calculate a replica count from {name}"),
        );
        Ok((replicas, name, Value::Array(statuses)))
    }

    async fn pods(&self, ns: &str, selector: &LabelSelector) -> Result<Vec<Value>, String> {
        let (items, _) = self
            .api
            .list(pods(), Some(ns))
            .await
            .map_err(|e| e.message)?;
        Ok(items
            .iter()
            .filter(|p| selector.matches(p.pointer("/metadata/labels")))
            .cloned()
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    async fn metric(
        &self,
        m: &Value,
        ns: &str,
        selector: &LabelSelector,
        pods: &[Value],
        current: i32,
        target_obj: &Value,
        now: f64,
    ) -> Result<Computed, Failed> {
        let s = &self.opts.calc;
        let kind = m["type"].as_str().unwrap_or_default();
        match kind {
            "Resource" | "ContainerResource" => {
                let field = if kind == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let src = &m[field];
                let res = src["name"].as_str().unwrap_or_default();
                let container = src["container"].as_str().filter(|_| kind != "Resource");
                let fail = |e: String| Failed {
                    reason: if kind == "Resource" {
                        "FailedGetResourceMetric"
                    } else {
                        "FailedGetContainerResourceMetric"
                    },
                    error: e,
                };
                let what = if container.is_some() {
                    " container"
                } else {
                    ""
                };
                let readings = self
                    .source
                    .resource(ns, res, selector, container)
                    .await
                    .map_err(|e| format!("unable to get metrics for resource {res}: {e}"));
                let ps: Vec<calc::Pod> = pods.iter().map(|p| pod_of(p, res)).collect();
                let mut current_status = json!({"name": res});
                if let Some(c) = container {
                    current_status["container"] = json!(c);
                }
                if let Some(u) = src["target"]["averageUtilization"].as_i64() {
                    let target = i32::try_from(u).unwrap_or(i32::MAX);
                    let p = readings
                        .and_then(|r| {
                            calc::resource_replicas(
                                current, target, res, container, &ps, &r, s, now,
                            )
                        })
                        .map_err(|e| fail(format!("failed to get {res} utilization: {e}")))?;
                    current_status["current"] = json!({
                        "averageUtilization": p.utilization,
                        "averageValue": quantity(p.raw),
                    });
                    Ok(Computed {
                        replicas: p.replicas,
                        name: format!("{res}{what} resource utilization (percentage of request)"),
                        status: entry(kind, field, current_status),
                    })
                } else if let Some(v) = src["target"]["averageValue"].as_str().and_then(milli) {
                    let p = readings
                        .and_then(|r| {
                            calc::plain_replicas(current, v, res == "cpu", &ps, &r, s, now)
                        })
                        .map_err(|e| fail(format!("failed to get {res} usage: {e}")))?;
                    current_status["current"] = json!({"averageValue": quantity(p.raw)});
                    Ok(Computed {
                        replicas: p.replicas,
                        name: format!("{res}{what} resource"),
                        status: entry(kind, field, current_status),
                    })
                } else {
                    Err(fail(format!(
                        "invalid {field} source: neither a utilization target nor a value target was set"
                    )))
                }
            }
            "Pods" => {
                let name = m["pods"]["metric"]["name"].as_str().unwrap_or_default();
                let fail = |e: String| Failed {
                    reason: "FailedGetPodsMetric",
                    error: format!("failed to get pods metric value: {e}"),
                };
                let target = m["pods"]["target"]["averageValue"]
                    .as_str()
                    .and_then(milli)
                    .ok_or_else(|| fail("the target has no averageValue".into()))?;
                let r = self
                    .source
                    .pods(ns, name, &m["pods"]["metric"]["selector"], selector)
                    .await
                    .map_err(fail)?;
                let ps: Vec<calc::Pod> = pods.iter().map(|p| pod_of(p, "")).collect();
                let p =
                    calc::plain_replicas(current, target, false, &ps, &r, s, now).map_err(fail)?;
                Ok(Computed {
                    replicas: p.replicas,
                    name: format!("pods metric {name}"),
                    status: json!({"type": "Pods", "pods": {
                        "metric": m["pods"]["metric"],
                        "current": {"averageValue": quantity(p.raw)},
                    }}),
                })
            }
            "Object" => {
                let o = &m["object"];
                let name = o["metric"]["name"].as_str().unwrap_or_default();
                let fail = |e: String| Failed {
                    reason: "FailedGetObjectMetric",
                    error: format!("failed to get object metric value: {e}"),
                };
                let usage = self
                    .source
                    .object(ns, &o["describedObject"], name, &o["metric"]["selector"])
                    .await
                    .map_err(fail)?;
                let status_replicas = target_obj["status"]["replicas"]
                    .as_i64()
                    .and_then(|x| i32::try_from(x).ok())
                    .unwrap_or(current);
                let (replicas, current_value) = if let Some(v) =
                    o["target"]["value"].as_str().and_then(milli)
                {
                    let ps: Vec<calc::Pod> = pods.iter().map(|p| pod_of(p, "")).collect();
                    let ready = calc::ready_count(&ps);
                    (
                        calc::object_replicas(current, usage, v, ready, s),
                        json!({"value": quantity(usage)}),
                    )
                } else if let Some(v) = o["target"]["averageValue"].as_str().and_then(milli) {
                    let (r, avg) = calc::object_per_pod_replicas(status_replicas, usage, v, s);
                    (r, json!({"averageValue": quantity(avg)}))
                } else {
                    return Err(fail("invalid object metric source: neither a value target nor an average value target was set".into()));
                };
                Ok(Computed {
                    replicas,
                    name: format!(
                        "{} metric {name}",
                        o["describedObject"]["kind"].as_str().unwrap_or_default()
                    ),
                    status: json!({"type": "Object", "object": {
                        "metric": o["metric"], "describedObject": o["describedObject"],
                        "current": current_value,
                    }}),
                })
            }
            other => Err(Failed {
                reason: "InvalidMetricSourceType",
                error: format!("unknown metric source type {other:?}"),
            }),
        }
    }
}

/// Runs the controller on `source`, or `metrics.k8s.io` alone.
pub async fn spawn(api: Loopback, opts: Options, source: Option<Arc<dyn MetricsSource>>) {
    let source = source.unwrap_or_else(|| Arc::new(source::ResourceMetrics { api: api.clone() }));
    HpaController::new(api, source, opts).run().await;
}

/// A `currentMetrics` entry: `{"type": kind, field: current}`.
fn entry(kind: &str, field: &str, current: Value) -> Value {
    let mut v = json!({"type": kind});
    v[field] = current;
    v
}

fn key(hpa: &Value) -> String {
    format!("{}/{}", meta_str(hpa, "namespace"), meta_str(hpa, "name"))
}

/// `spec.metrics`, or Kubernetes' default: CPU at 80% of request.
fn metric_specs(spec: &Value) -> Vec<Value> {
    match spec["metrics"].as_array() {
        Some(m) if !m.is_empty() => m.clone(),
        _ => vec![json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}})],
    }
}
