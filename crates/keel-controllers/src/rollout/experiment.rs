//! The Experiment controller (Argo's experiments/): it runs each template
//! of an `Experiment` (`experiment_step` creates them) as a `ReplicaSet`
//! `<experiment>-<template>` (annotated `experiment.argoproj.io/name` and
//! `template-name`, labelled with its own `rollouts-pod-template-hash`;
//! with `service`, a Service for its pods' ports while it runs),
//! marks `availableAt` once they are all available, then starts each
//! analysis as an `AnalysisRun` `<experiment>-<analysis>`; it ends after
//! `duration` (or when a `requiredForCompletion` analysis succeeds, or an
//! analysis fails) with Argo's phase, and scales its sets down after
//! `scaleDownDelaySeconds` (30 unless set).

use std::time::Duration;

use keel_api::ClientError;
use keel_api::resources::{self, Resource};
use serde_json::{Value, json};

use super::analysis::{analysis_runs, merged_templates, template};
use super::{HASH_LABEL, SCALE_DOWN_DEADLINE, services, set_invalid_spec};
use crate::deployment::template_hash;
use crate::events::Recorder;
use crate::informer::{Cache, Queue, Reconciler, key_of, queue_controller, split_key};
use crate::objects::{controller_of, controller_uid, int, meta_str, now, parse_time, timestamp};
use crate::replicaset::replicasets;

const NAME_ANNOTATION: &str = "experiment.argoproj.io/name";
const TEMPLATE_ANNOTATION: &str = "experiment.argoproj.io/template-name";
/// Argo's condition for a spec its controller will not run.
const INVALID: &str = "InvalidExperimentSpec";

pub(super) fn experiments() -> Option<&'static Resource> {
    resources::find("argoproj.io", "v1alpha1", "experiments")
}

pub(super) fn phase(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Argo's AnalysisPhase.Completed.
pub(super) fn completed(p: &str) -> bool {
    matches!(p, "Successful" | "Failed" | "Error" | "Inconclusive")
}

fn template_done(p: &str) -> bool {
    matches!(p, "Successful" | "Failed" | "Error")
}

/// The worse of two codes in `order` (best first; unknown ranks best).
fn worse<'a>(order: &[&str], cur: &'a str, new: &'a str) -> bool {
    let rank = |s: &str| order.iter().position(|o| *o == s).unwrap_or(0);
    rank(new) > rank(cur)
}

const TEMPLATE_ORDER: [&str; 5] = ["Successful", "Running", "Progressing", "Error", "Failed"];
const ANALYSIS_ORDER: [&str; 6] = [
    "Successful",
    "Running",
    "Pending",
    "Inconclusive",
    "Error",
    "Failed",
];

fn entry<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|e| e["name"] == name)
}

fn set_entry(st: &mut Value, field: &str, e: Value) {
    if !st[field].is_array() {
        st[field] = json!([]);
    }
    let list = st[field].as_array_mut().expect("an array");
    match list.iter_mut().find(|x| x["name"] == e["name"]) {
        Some(x) => *x = e,
        None => list.push(e),
    }
}

fn required_successful(ex: &Value, st: &Value) -> bool {
    let required: Vec<&Value> = ex["spec"]["analyses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["requiredForCompletion"] == true)
        .collect();
    !required.is_empty()
        && required.iter().all(|a| {
            entry(&st["analysisRuns"], a["name"].as_str().unwrap_or(""))
                .is_some_and(|r| r["phase"] == "Successful")
        })
}

/// Argo's `IsTerminating`, over the status as read.
fn terminating(ex: &Value) -> bool {
    let st = &ex["status"];
    let any = |f: &str, k: &str, bad: &[&str]| {
        st[f]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| bad.contains(&phase(&e[k])))
    };
    ex["spec"]["terminate"] == true
        || completed(phase(&st["phase"]))
        || any("templateStatuses", "status", &["Failed", "Error"])
        || any(
            "analysisRuns",
            "phase",
            &["Failed", "Error", "Inconclusive"],
        )
        || required_successful(ex, st)
}

/// `spec.duration` has passed since `availableAt`: `Ok(())`, or how long
/// is left.
fn duration_left(ex: &Value, st: &Value) -> Option<Result<(), Duration>> {
    let d = super::canary::duration(&ex["spec"]["duration"])?;
    let at = parse_time(st.get("availableAt"))?;
    let ends = at + jiff::SignedDuration::try_from(d).ok()?;
    let n = now();
    Some(if ends <= n {
        Ok(())
    } else {
        Err(Duration::from_millis(
            u64::try_from(ends.duration_since(n).as_millis()).unwrap_or(0),
        ))
    })
}

/// Argo's `VerifyExperimentSpec`: the first problem of an Experiment's
/// templates that its controller refuses to run (the CRD's schema has
/// already refused what is mistyped or missing).
fn invalid_spec(ex: &Value) -> Option<String> {
    let deadline = ex["spec"]["progressDeadlineSeconds"]
        .as_i64()
        .unwrap_or(600);
    let name = meta_str(ex, "name");
    let mut seen = std::collections::HashSet::new();
    let templates = ex["spec"]["templates"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    for (i, t) in templates.iter().enumerate() {
        let sel = &t["selector"];
        if !sel.is_object() {
            return Some(format!(
                "Rollout has missing field '.Spec.Templates[{i}].Selector'"
            ));
        }
        let empty = |f: &str| {
            sel.get(f).is_none_or(|v| {
                v.as_object().is_some_and(serde_json::Map::is_empty)
                    || v.as_array().is_some_and(Vec::is_empty)
            })
        };
        if empty("matchLabels") && empty("matchExpressions") {
            return Some(format!(
                "This experiment is selecting all pods at index {i}. A non-empty selector is required."
            ));
        }
        if int(t, "/minReadySeconds") > deadline {
            return Some(format!(
                "MinReadySeconds cannot be longer than ProgressDeadlineSeconds. Check template index {i}"
            ));
        }
        let tname = t["name"].as_str().unwrap_or("");
        if tname.is_empty() {
            return Some(format!(
                "Experiment {name} has empty template name at index {i}"
            ));
        }
        if !seen.insert(tname) {
            return Some(format!(
                "Experiment {name} has repeated template name '{tname}' in templates"
            ));
        }
    }
    None
}

/// Runs the Experiment controller once the kinds are served.
pub async fn run(api: keel_api::Loopback) {
    let (experiments, runs) = loop {
        if let (Some(e), Some(r)) = (experiments(), analysis_runs()) {
            break (e, r);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let me = ExperimentController {
        experiments,
        runs,
        events: Recorder::new(api.clone(), "rollouts-controller"),
    };
    crate::informer::run(api, me).await;
}

/// The Experiment controller (see the module docs).
#[derive(Debug)]
pub struct ExperimentController {
    experiments: &'static Resource,
    runs: &'static Resource,
    events: Recorder,
}

impl Reconciler for ExperimentController {
    const NAME: &'static str = "experiment";

    fn resources(&self) -> Vec<&'static Resource> {
        vec![self.experiments, replicasets(), self.runs, services()]
    }

    fn keys_for(&self, cache: &Cache, r: &'static Resource, obj: &Value, queue: &mut Queue) {
        if std::ptr::eq(r, self.experiments) {
            queue.add(key_of(obj));
        } else if crate::objects::controller_ref(obj).is_some() {
            queue_controller(cache, self.experiments, obj, queue);
        }
    }

    async fn reconcile(
        &mut self,
        cache: &mut Cache,
        key: &str,
    ) -> Result<Option<Duration>, ClientError> {
        let (ns, name) = split_key(key);
        let Some(ex) = cache.get(self.experiments, ns, name).cloned() else {
            return Ok(None);
        };
        if crate::objects::is_deleting(&ex) {
            return Ok(None);
        }
        let mut st = ex.get("status").cloned().unwrap_or_else(|| json!({}));
        if let Some(message) = invalid_spec(&ex) {
            // As Argo: the condition is the only change, nothing is created.
            set_invalid_spec(&mut st, INVALID, Some(&message));
            if ex.get("status") != Some(&st) {
                super::put_status(cache, self.experiments, &ex, &st).await?;
            }
            return Ok(None);
        }
        set_invalid_spec(&mut st, INVALID, None);
        let mut again: Option<Duration> = None;
        let ending = terminating(&ex);
        for t in ex["spec"]["templates"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            self.template(cache, &ex, &mut st, &t, ending, &mut again)
                .await?;
        }
        for a in ex["spec"]["analyses"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            self.analysis(cache, &ex, &mut st, &a, ending).await?;
        }
        calculate_status(&ex, &mut st);
        if !terminating(&json!({"spec": ex["spec"], "status": st}))
            && let Some(Err(left)) = duration_left(&ex, &st)
        {
            again = Some(again.map_or(left, |a| a.min(left)));
        }
        if ex.get("status") != Some(&st) {
            super::put_status(cache, self.experiments, &ex, &st).await?;
            if phase(&st["phase"]) != phase(&ex["status"]["phase"])
                && completed(phase(&st["phase"]))
            {
                let msg = format!(
                    "Experiment '{name}' transitioned to {}",
                    phase(&st["phase"])
                );
                if st["phase"] == "Successful" {
                    self.events
                        .normal(self.experiments, &ex, "ExperimentCompleted", msg);
                } else {
                    self.events
                        .warning(self.experiments, &ex, "ExperimentFailed", msg);
                }
            }
        }
        Ok(again.map(|d| d + Duration::from_millis(50)))
    }
}

impl ExperimentController {
    /// One template: its set created, sized, its status assessed.
    #[allow(clippy::too_many_arguments)]
    async fn template(
        &self,
        cache: &mut Cache,
        ex: &Value,
        st: &mut Value,
        t: &Value,
        ending: bool,
        again: &mut Option<Duration>,
    ) -> Result<(), ClientError> {
        let (ns, ex_name, uid) = (
            meta_str(ex, "namespace").to_string(),
            meta_str(ex, "name").to_string(),
            meta_str(ex, "uid").to_string(),
        );
        let tname = t["name"].as_str().unwrap_or("").to_string();
        let prev = entry(&ex["status"]["templateStatuses"], &tname)
            .cloned()
            .unwrap_or_else(|| json!({"name": tname}));
        let mut ts = prev.clone();
        let desired = if completed(phase(&ex["status"]["phase"]))
            || ending
            || template_done(phase(&prev["status"]))
        {
            0
        } else {
            t["replicas"].as_i64().unwrap_or(1)
        };
        let t_now = timestamp(now());
        let found = cache
            .list(replicasets(), &ns)
            .find(|rs| {
                controller_uid(rs, "Experiment") == Some(uid.as_str())
                    && rs.pointer("/metadata/annotations").is_some_and(|a| {
                        a[NAME_ANNOTATION] == ex_name.as_str()
                            && a[TEMPLATE_ANNOTATION] == tname.as_str()
                    })
            })
            .cloned();
        let rs = match found {
            None => {
                let rs = self
                    .create_set(cache, ex, t, desired, int(&prev, "/collisionCount"))
                    .await?;
                ts["lastTransitionTime"] = json!(t_now);
                rs
            }
            Some(rs) => {
                self.template_service(cache, ex, t, &rs, desired, &mut ts)
                    .await?;
                let sized = self.size_set(cache, ex, &rs, desired, again).await?;
                if int(&sized, "/spec/replicas") != int(&rs, "/spec/replicas") {
                    ts["lastTransitionTime"] = json!(t_now);
                }
                Some(sized)
            }
        };
        let count = |f: &str| rs.as_ref().map_or(0, |rs| int(rs, f));
        for (k, f) in [
            ("replicas", "/status/replicas"),
            ("updatedReplicas", "/status/replicas"),
            ("readyReplicas", "/status/readyReplicas"),
            ("availableReplicas", "/status/availableReplicas"),
        ] {
            ts[k] = json!(count(f));
        }
        if ["replicas", "readyReplicas", "availableReplicas"]
            .iter()
            .any(|k| int(&ts, &format!("/{k}")) != int(&prev, &format!("/{k}")))
        {
            ts["lastTransitionTime"] = json!(t_now);
        }
        if !template_done(phase(&ts["status"])) {
            let status = if desired == int(&ts, "/availableReplicas") {
                if matches!(duration_left(ex, &ex["status"]), Some(Ok(()))) || ending {
                    "Successful"
                } else {
                    "Running"
                }
            } else {
                let deadline = ex["spec"]["progressDeadlineSeconds"]
                    .as_i64()
                    .unwrap_or(600);
                let from = parse_time(ts.get("lastTransitionTime")).unwrap_or_else(now);
                if from + jiff::SignedDuration::from_secs(deadline) < now() {
                    ts["message"] = json!(format!(
                        "Template '{tname}' exceeded its progressDeadlineSeconds ({deadline})"
                    ));
                    "Failed"
                } else if ending {
                    "Successful"
                } else {
                    // Looked at again when the deadline passes.
                    let at = from + jiff::SignedDuration::from_secs(deadline);
                    let left = Duration::from_millis(
                        u64::try_from(at.duration_since(now()).as_millis()).unwrap_or(0),
                    );
                    *again = Some(again.map_or(left, |a| a.min(left)));
                    "Progressing"
                }
            };
            ts["status"] = json!(status);
        }
        set_entry(st, "templateStatuses", ts);
        Ok(())
    }

    /// A template with `service` gets a Service `<experiment>-<template>`
    /// (or its name) for its pods' ports while it runs, removed once its
    /// pods are gone; its name and hash go into the template's status.
    async fn template_service(
        &self,
        cache: &mut Cache,
        ex: &Value,
        t: &Value,
        rs: &Value,
        desired: i64,
        ts: &mut Value,
    ) -> Result<(), ClientError> {
        let (ns, tname) = (
            meta_str(ex, "namespace").to_string(),
            t["name"].as_str().unwrap_or(""),
        );
        let existing = cache
            .list(services(), &ns)
            .find(|s| {
                controller_uid(s, "Experiment") == Some(meta_str(ex, "uid"))
                    && s.pointer("/metadata/annotations")
                        .is_some_and(|a| a[TEMPLATE_ANNOTATION] == tname)
            })
            .cloned();
        let wanted = t["service"].is_object() && desired != 0;
        if let Some(svc) = &existing
            && !wanted
            && (!t["service"].is_object() || int(rs, "/status/availableReplicas") == 0)
        {
            cache
                .delete(services(), &ns, meta_str(svc, "name"), meta_str(svc, "uid"))
                .await?;
            for f in ["serviceName", "podTemplateHash"] {
                ts.as_object_mut().map(|m| m.remove(f));
            }
            return Ok(());
        }
        let ports: Vec<Value> = rs["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
            .map(|p| {
                let mut sp = json!({"protocol": p["protocol"].as_str().unwrap_or("TCP"),
                    "port": p["containerPort"], "targetPort": p["containerPort"]});
                if let Some(n) = p["name"].as_str() {
                    sp["name"] = json!(n);
                }
                sp
            })
            .collect();
        if !wanted || existing.is_some() || ports.is_empty() {
            return Ok(());
        }
        let name = t["service"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or(meta_str(rs, "name"))
            .to_string();
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns,
                "annotations": {NAME_ANNOTATION: meta_str(ex, "name"), TEMPLATE_ANNOTATION: tname},
                "ownerReferences": [controller_of(self.experiments, ex)]},
            "spec": {"selector": rs["metadata"]["labels"], "ports": ports}});
        match cache.create(services(), svc).await {
            Ok(_) => {}
            // Ours from an earlier pass (found next time), or taken.
            Err(e) if e.code == 409 => return Ok(()),
            Err(e) => return Err(e),
        }
        ts["serviceName"] = json!(name);
        ts["podTemplateHash"] = json!(super::hash_of(rs));
        Ok(())
    }

    /// Argo's newReplicaSetFromTemplate: the template's pods under their
    /// own hash, owned by the Experiment.
    async fn create_set(
        &self,
        cache: &mut Cache,
        ex: &Value,
        t: &Value,
        replicas: i64,
        collisions: i64,
    ) -> Result<Option<Value>, ClientError> {
        let mut tpl = t["template"].clone();
        if let Some(l) = tpl["metadata"]["labels"].as_object_mut() {
            l.remove(HASH_LABEL);
        }
        let hash = template_hash(&tpl, collisions);
        tpl["metadata"]["labels"][HASH_LABEL] = json!(hash);
        let mut sel = t["selector"].clone();
        sel["matchLabels"][HASH_LABEL] = json!(hash);
        let tname = t["name"].as_str().unwrap_or("");
        let name = format!("{}-{tname}", meta_str(ex, "name"));
        let mut spec = json!({"replicas": replicas, "selector": sel, "template": tpl});
        if let Some(m) = t.get("minReadySeconds") {
            spec["minReadySeconds"] = m.clone();
        }
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": meta_str(ex, "namespace"),
                "labels": tpl["metadata"]["labels"],
                "annotations": {NAME_ANNOTATION: meta_str(ex, "name"), TEMPLATE_ANNOTATION: tname},
                "ownerReferences": [controller_of(self.experiments, ex)]},
            "spec": spec});
        match cache.create(replicasets(), rs).await {
            Ok(rs) => {
                if replicas > 0 {
                    self.events.normal(
                        self.experiments,
                        ex,
                        "ScalingReplicaSet",
                        format!("Created ReplicaSet {name} with size {replicas}"),
                    );
                }
                Ok(Some(rs))
            }
            // Created by an earlier pass the cache has not seen yet.
            Err(e) if e.code == 409 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Scales a template's set to `desired`; going to 0 waits out the
    /// Experiment's scale-down delay (Argo's `scale-down-deadline`).
    async fn size_set(
        &self,
        cache: &mut Cache,
        ex: &Value,
        rs: &Value,
        desired: i64,
        again: &mut Option<Duration>,
    ) -> Result<Value, ClientError> {
        let (ns, name) = (
            meta_str(rs, "namespace").to_string(),
            meta_str(rs, "name").to_string(),
        );
        let mut annotations = rs["metadata"]["annotations"].clone();
        let mut target = desired;
        if desired == 0 && int(rs, "/spec/replicas") > 0 {
            let delay = ex["spec"]["scaleDownDelaySeconds"].as_i64().unwrap_or(30);
            let deadline = parse_time(annotations.get(SCALE_DOWN_DEADLINE));
            if delay > 0 {
                let at = deadline.unwrap_or_else(|| now() + jiff::SignedDuration::from_secs(delay));
                annotations[SCALE_DOWN_DEADLINE] = json!(timestamp(at));
                if at > now() {
                    target = int(rs, "/spec/replicas");
                    let left = at.duration_since(now()).as_millis();
                    let left = Duration::from_millis(u64::try_from(left).unwrap_or(0));
                    *again = Some(again.map_or(left, |a| a.min(left)));
                }
            } else if let Some(a) = annotations.as_object_mut() {
                a.remove(SCALE_DOWN_DEADLINE);
            }
        }
        if target == int(rs, "/spec/replicas") && annotations == rs["metadata"]["annotations"] {
            return Ok(rs.clone());
        }
        let uid = meta_str(rs, "uid").to_string();
        let out = cache
            .modify(replicasets(), &ns, &name, None, |cur| {
                if meta_str(cur, "uid") != uid {
                    return None;
                }
                let mut v = cur.clone();
                v["spec"]["replicas"] = json!(target);
                v["metadata"]["annotations"] = annotations.clone();
                (v != *cur).then_some(v)
            })
            .await?;
        Ok(out.unwrap_or_else(|| rs.clone()))
    }

    /// One analysis: its run started once the templates are available,
    /// its phase copied, terminated when the Experiment ends.
    async fn analysis(
        &self,
        cache: &mut Cache,
        ex: &Value,
        st: &mut Value,
        a: &Value,
        ending: bool,
    ) -> Result<(), ClientError> {
        let ns = meta_str(ex, "namespace").to_string();
        let aname = a["name"].as_str().unwrap_or("").to_string();
        let prev = entry(&ex["status"]["analysisRuns"], &aname)
            .cloned()
            .unwrap_or_else(|| json!({"name": aname}));
        let mut out = prev.clone();
        if ex["status"]["availableAt"].is_null() {
            // Not started yet: only check that the template is there.
            let refs =
                json!([{"templateName": a["templateName"], "clusterScope": a["clusterScope"]}]);
            if template(&cache.api, &ns, &refs[0]).await?.is_none() {
                let kind = if a["clusterScope"] == true {
                    "ClusterAnalysisTemplate"
                } else {
                    "AnalysisTemplate"
                };
                out["phase"] = json!("Error");
                out["message"] = json!(format!(
                    "{kind} verification failed for analysis '{aname}': {} \"{}\" not found",
                    kind.to_ascii_lowercase(),
                    a["templateName"].as_str().unwrap_or("")
                ));
            }
        } else if prev["analysisRun"].as_str().unwrap_or("").is_empty() {
            if !ending {
                match self.create_run(cache, ex, st, a).await? {
                    Ok(run) => {
                        out["phase"] = json!("Pending");
                        out["analysisRun"] = json!(run);
                    }
                    Err(why) => {
                        out["phase"] = json!("Error");
                        out["message"] = json!(format!(
                            "Failed to create AnalysisRun for analysis '{aname}': {why}"
                        ));
                    }
                }
            }
        } else if !completed(phase(&prev["phase"])) {
            let run_name = prev["analysisRun"].as_str().unwrap_or("").to_string();
            match cache.get(self.runs, &ns, &run_name).cloned() {
                None => {
                    out["phase"] = json!("Error");
                    out["message"] = json!(format!("analysisrun \"{run_name}\" not found"));
                }
                Some(run) if ending => {
                    if !completed(phase(&run["status"]["phase"]))
                        && run["spec"]["terminate"] != true
                    {
                        cache
                            .modify(self.runs, &ns, &run_name, None, |cur| {
                                let mut v = cur.clone();
                                v["spec"]["terminate"] = json!(true);
                                Some(v)
                            })
                            .await?;
                    }
                }
                Some(run) => {
                    out["phase"] = run["status"]["phase"].clone();
                    match run["status"]["message"].as_str() {
                        Some(m) if !m.is_empty() => out["message"] = json!(m),
                        _ => {
                            out.as_object_mut().map(|o| o.remove("message"));
                        }
                    }
                }
            }
        }
        if out["phase"].is_null() {
            out["phase"] = json!("");
        }
        if out["analysisRun"].is_null() {
            out["analysisRun"] = json!("");
        }
        set_entry(st, "analysisRuns", out);
        Ok(())
    }

    /// The run `<experiment>-<analysis>`, its args' `{{templates.…}}` and
    /// `{{experiment.…}}` resolved; its name, or why it could not be made.
    async fn create_run(
        &self,
        cache: &mut Cache,
        ex: &Value,
        st: &Value,
        a: &Value,
    ) -> Result<Result<String, String>, ClientError> {
        let ns = meta_str(ex, "namespace").to_string();
        let refs = json!([{"templateName": a["templateName"], "clusterScope": a["clusterScope"]}]);
        let mut m = match merged_templates(&cache.api, &ns, &refs).await? {
            Ok(m) => m,
            Err(why) => return Ok(Err(why)),
        };
        let mut vars: Vec<(String, String)> = Vec::new();
        if let Some(at) = st["availableAt"].as_str() {
            vars.push(("experiment.availableAt".into(), at.to_string()));
            if let (Some(d), Some(t)) = (
                super::canary::duration(&ex["spec"]["duration"]),
                parse_time(st.get("availableAt")),
            ) {
                let ends = t + jiff::SignedDuration::try_from(d).unwrap_or_default();
                vars.push(("experiment.finishedAt".into(), timestamp(ends)));
            }
        }
        for rs in cache.list(replicasets(), &ns) {
            if controller_uid(rs, "Experiment") == Some(meta_str(ex, "uid"))
                && let Some(t) = rs
                    .pointer("/metadata/annotations")
                    .and_then(|a| a[TEMPLATE_ANNOTATION].as_str())
            {
                vars.push((
                    format!("templates.{t}.podTemplateHash"),
                    super::hash_of(rs).to_string(),
                ));
                vars.push((
                    format!("templates.{t}.replicaset.name"),
                    meta_str(rs, "name").to_string(),
                ));
            }
        }
        for arg in a["args"].as_array().into_iter().flatten() {
            if let Some(v) = arg["value"].as_str() {
                let mut v = v.to_string();
                for (k, val) in &vars {
                    v = v.replace(&format!("{{{{{k}}}}}"), val);
                }
                m.set_arg(&arg["name"], v);
            }
        }
        if let Some(why) = m.unresolved() {
            return Ok(Err(why));
        }
        let name = format!(
            "{}-{}",
            meta_str(ex, "name"),
            a["name"].as_str().unwrap_or("")
        );
        let meta = &ex["spec"]["analysisRunMetadata"];
        let labels = meta["labels"].clone();
        let run = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": name, "namespace": ns,
                "labels": if labels.is_object() { labels } else { json!({}) },
                "annotations": if meta["annotations"].is_object() { meta["annotations"].clone() } else { json!({}) },
                "ownerReferences": [controller_of(self.experiments, ex)]},
            "spec": m.spec(&ex["spec"])});
        match cache.create(self.runs, run).await {
            Ok(_) => Ok(Ok(name)),
            Err(e) if e.code == 409 => Ok(Ok(name)),
            Err(e) => Err(e),
        }
    }
}

/// Argo's calculateStatus: the worst template decides until the templates
/// are done, unless an analysis failed first or the required ones passed.
fn calculate_status(ex: &Value, st: &mut Value) {
    let cur = phase(&st["phase"]).to_string();
    if cur.is_empty() {
        st["phase"] = json!("Pending");
        return;
    }
    if cur != "Pending" && cur != "Running" {
        return;
    }
    let (mut tw, mut tm) = ("Successful".to_string(), String::new());
    for t in ex["spec"]["templates"].as_array().into_iter().flatten() {
        let (s, m) = entry(&st["templateStatuses"], t["name"].as_str().unwrap_or(""))
            .map_or(("Progressing", ""), |e| {
                (phase(&e["status"]), e["message"].as_str().unwrap_or(""))
            });
        if worse(&TEMPLATE_ORDER, &tw, s) {
            tw = s.to_string();
            tm = m.to_string();
        }
    }
    let ts = match tw.as_str() {
        "Progressing" => "Pending",
        "Failed" => "Failed",
        "Error" => "Error",
        "Successful" => "Successful",
        _ => "Running",
    };
    let (mut aw, mut am) = ("Successful".to_string(), String::new());
    for a in ex["spec"]["analyses"].as_array().into_iter().flatten() {
        let (p, m) = entry(&st["analysisRuns"], a["name"].as_str().unwrap_or(""))
            .map_or(("", ""), |e| {
                (phase(&e["phase"]), e["message"].as_str().unwrap_or(""))
            });
        if worse(&ANALYSIS_ORDER, &aw, p) {
            aw = p.to_string();
            am = m.to_string();
        }
    }
    let required = required_successful(ex, st);
    if required && worse(&ANALYSIS_ORDER, &aw, "Running") {
        aw = "Successful".into();
        am = "Required AnalysisRuns completed".into();
    }
    if aw == "Pending" {
        aw = "Running".into();
    }
    if ts == "Running" && st["availableAt"].is_null() {
        st["availableAt"] = json!(timestamp(now()));
    }
    let has_required = ex["spec"]["analyses"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|a| a["requiredForCompletion"] == true);
    let (p, m) = if template_done(ts) {
        if ts == "Successful" && (completed(&aw) || has_required) {
            (aw.as_str(), am)
        } else {
            (ts, tm)
        }
    } else if (completed(&aw) && aw != "Successful") || required {
        (aw.as_str(), am)
    } else {
        (ts, tm)
    };
    st["phase"] = json!(p);
    if m.is_empty() {
        st.as_object_mut().map(|o| o.remove("message"));
    } else {
        st["message"] = json!(m);
    }
}

#[cfg(test)]
mod tests {
    use super::{INVALID, calculate_status, invalid_spec, set_invalid_spec};
    use serde_json::{Value, json};

    /// Argo's `VerifyExperimentSpec` cases, in its order and words.
    #[test]
    fn an_invalid_spec_is_named_as_argo_names_it() {
        let t = |name: &str, sel: Value| json!({"name": name, "selector": sel, "template": {"spec": {"containers": []}}});
        let sel = json!({"matchLabels": {"app": "a"}});
        let spec = |templates: Vec<Value>| json!({"metadata": {"name": "ex"}, "spec": {"templates": templates}});
        assert_eq!(
            invalid_spec(&spec(vec![t("a", sel.clone()), t("b", sel.clone())])),
            None
        );
        let mut no_selector = t("a", sel.clone());
        no_selector.as_object_mut().unwrap().remove("selector");
        let cases = [
            (
                spec(vec![t("a", sel.clone()), no_selector]),
                "Rollout has missing field '.Spec.Templates[1].Selector'",
            ),
            (
                spec(vec![t("a", json!({"matchLabels": {}}))]),
                "This experiment is selecting all pods at index 0. A non-empty selector is required.",
            ),
            (
                spec(vec![t("", sel.clone())]),
                "Experiment ex has empty template name at index 0",
            ),
            (
                spec(vec![t("a", sel.clone()), t("a", sel.clone())]),
                "Experiment ex has repeated template name 'a' in templates",
            ),
        ];
        for (ex, want) in cases {
            assert_eq!(invalid_spec(&ex).as_deref(), Some(want), "{ex}");
        }
        let mut slow = spec(vec![t("a", sel.clone())]);
        slow["spec"]["templates"][0]["minReadySeconds"] = json!(601);
        assert_eq!(
            invalid_spec(&slow).as_deref(),
            Some(
                "MinReadySeconds cannot be longer than ProgressDeadlineSeconds. Check template index 0"
            )
        );
        slow["spec"]["progressDeadlineSeconds"] = json!(700);
        assert_eq!(invalid_spec(&slow), None);
        let exprs = json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]});
        assert_eq!(invalid_spec(&spec(vec![t("a", exprs)])), None);
    }

    #[test]
    fn the_invalid_spec_condition_is_kept_replaced_and_dropped() {
        let mut st = json!({});
        set_invalid_spec(&mut st, INVALID, Some("one"));
        let first = st["conditions"][0].clone();
        assert_eq!(first["type"], "InvalidExperimentSpec");
        assert_eq!(first["reason"], "InvalidSpec");
        assert_eq!(first["status"], "True");
        let again = st.clone();
        set_invalid_spec(&mut st, INVALID, Some("one"));
        assert_eq!(st, again, "the same reason writes nothing");
        set_invalid_spec(&mut st, INVALID, Some("two"));
        assert_eq!(st["conditions"].as_array().unwrap().len(), 1);
        assert_eq!(st["conditions"][0]["message"], "two");
        set_invalid_spec(&mut st, INVALID, None);
        assert_eq!(st, json!({}));
    }

    /// An Experiment with templates `a` and `b` and analyses `x` (and `y`
    /// required for completion when `required`).
    fn ex(required: bool) -> Value {
        let mut analyses = vec![json!({"name": "x", "templateName": "t"})];
        if required {
            analyses.push(json!({"name": "y", "templateName": "t", "requiredForCompletion": true}));
        }
        json!({"spec": {"templates": [{"name": "a"}, {"name": "b"}], "analyses": analyses}})
    }

    fn status(phase: &str, templates: [&str; 2], runs: &[(&str, &str, &str)]) -> Value {
        json!({"phase": phase, "availableAt": "2026-12-07T00:00:00Z",
            "templateStatuses": [{"name": "a", "status": templates[0], "message": "a says"},
                {"name": "b", "status": templates[1]}],
            "analysisRuns": runs.iter().map(|(n, p, m)| json!({"name": n, "phase": p, "message": m}))
                .collect::<Vec<_>>()})
    }

    fn phase_of(ex: &Value, mut st: Value) -> (String, String) {
        calculate_status(ex, &mut st);
        (
            st["phase"].as_str().unwrap_or("").to_string(),
            st["message"].as_str().unwrap_or("").to_string(),
        )
    }

    #[test]
    fn phases_as_argo_calculates_them() {
        let plain = ex(false);
        let mut new = json!({});
        calculate_status(&plain, &mut new);
        assert_eq!(new["phase"], "Pending");
        // A template still progressing keeps it Pending.
        let st = status("Pending", ["Running", "Progressing"], &[("x", "", "")]);
        assert_eq!(phase_of(&plain, st).0, "Pending");
        // All running: Running, availableAt stamped once.
        let mut st = status("Pending", ["Running", "Running"], &[("x", "Pending", "")]);
        st.as_object_mut().unwrap().remove("availableAt");
        calculate_status(&plain, &mut st);
        assert_eq!(st["phase"], "Running");
        assert!(st["availableAt"].is_string());
        // A failed analysis ends it early, with the run's message.
        let st = status(
            "Running",
            ["Running", "Running"],
            &[("x", "Failed", "too slow")],
        );
        assert_eq!(phase_of(&plain, st), ("Failed".into(), "too slow".into()));
        // A succeeded analysis alone does not (no duration is over).
        let st = status(
            "Running",
            ["Running", "Running"],
            &[("x", "Successful", "")],
        );
        assert_eq!(phase_of(&plain, st).0, "Running");
        // Templates done after their duration: the analyses decide.
        let st = status(
            "Running",
            ["Successful", "Successful"],
            &[("x", "Successful", "")],
        );
        assert_eq!(phase_of(&plain, st).0, "Successful");
        let st = status(
            "Running",
            ["Successful", "Successful"],
            &[("x", "Inconclusive", "?")],
        );
        assert_eq!(phase_of(&plain, st), ("Inconclusive".into(), "?".into()));
        // A template that failed fails it, with its message.
        let st = status("Running", ["Failed", "Running"], &[("x", "Running", "")]);
        assert_eq!(phase_of(&plain, st), ("Failed".into(), "a says".into()));
        // Completed phases stay.
        let st = status("Successful", ["Failed", "Running"], &[]);
        assert_eq!(phase_of(&plain, st).0, "Successful");
    }

    #[test]
    fn a_required_analysis_completes_it() {
        let req = ex(true);
        let st = status(
            "Running",
            ["Running", "Running"],
            &[("x", "Successful", ""), ("y", "Successful", "")],
        );
        assert_eq!(
            phase_of(&req, st),
            (
                "Successful".into(),
                "Required AnalysisRuns completed".into()
            )
        );
        // Another still running: Running this pass (the next one
        // terminates, as the required one passed).
        let st = status(
            "Running",
            ["Running", "Running"],
            &[("x", "Running", ""), ("y", "Successful", "")],
        );
        assert_eq!(phase_of(&req, st).0, "Running");
        assert!(super::terminating(&json!({"spec": req["spec"],
            "status": status("Running", ["Running", "Running"], &[("y", "Successful", "")])})));
    }
}
