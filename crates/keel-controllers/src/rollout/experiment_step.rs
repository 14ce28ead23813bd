//! A canary `experiment` step (Argo's rollout/experiment.go): the
//! `Experiment` `<rollout>-<hash>-<revision>-<step>` built from the step,
//! each template's pod template taken from the canary or stable set and
//! the analyses' args resolved against the Rollout; Successful completes
//! the step, Failed or Error aborts the Rollout, Inconclusive pauses it.
//! An abort or a full promotion terminates the Rollout's Experiments.

use keel_api::ClientError;
use serde_json::{Value, json};

use super::experiment::{completed, experiments, phase};
use super::{HASH_LABEL, Run};
use crate::objects::{controller_of, controller_uid, int, meta_str};

impl Run<'_> {
    /// Argo's `GetExperimentFromTemplate` for step `index`.
    fn experiment_for(
        &self,
        step: &Value,
        name: &str,
        stable: &Value,
        new: &Value,
    ) -> Result<Value, String> {
        let hash = self.st["currentPodHash"].as_str().unwrap_or("");
        let mut labels = self.ro["metadata"]["labels"].clone();
        if !labels.is_object() {
            labels = json!({});
        }
        labels[HASH_LABEL] = json!(hash);
        let revision = self.revision_of_current().to_string();
        let mut spec = json!({"templates": [], "analyses": []});
        for f in [
            "duration",
            "dryRun",
            "analysisRunMetadata",
            "scaleDownDelaySeconds",
        ] {
            if let Some(v) = step.get(f) {
                spec[f] = v.clone();
            }
        }
        if let Some(p) = self.ro["spec"].get("progressDeadlineSeconds") {
            spec["progressDeadlineSeconds"] = p.clone();
        }
        for t in step["templates"].as_array().into_iter().flatten() {
            let rs = match t["specRef"].as_str() {
                Some("canary") => new,
                Some("stable") => stable,
                _ => return Err("Invalid template step SpecRef: must be canary or stable".into()),
            };
            let mut template = rs["spec"]["template"].clone();
            let mut selector = if t["selector"].is_object() {
                t["selector"].clone()
            } else {
                rs["spec"]["selector"].clone()
            };
            for (k, v) in t["metadata"]["labels"].as_object().into_iter().flatten() {
                template["metadata"]["labels"][k] = v.clone();
                selector["matchLabels"][k] = v.clone();
            }
            for (k, v) in t["metadata"]["annotations"]
                .as_object()
                .into_iter()
                .flatten()
            {
                template["metadata"]["annotations"][k] = v.clone();
            }
            let mut out = json!({"name": t["name"], "template": template, "selector": selector});
            if let Some(v) = t.get("replicas") {
                out["replicas"] = v.clone();
            }
            if let Some(v) = rs["spec"].get("minReadySeconds") {
                out["minReadySeconds"] = v.clone();
            }
            if t["weight"].is_number() || t["service"].is_object() {
                out["service"] = t["service"].as_object().map_or(json!({}), |s| {
                    s.get("name").map_or(json!({}), |n| json!({"name": n}))
                });
            }
            spec["templates"]
                .as_array_mut()
                .expect("an array")
                .push(out);
        }
        for a in step["analyses"].as_array().into_iter().flatten() {
            let args: Vec<Value> = self
                .resolved_args(&a["args"], hash)
                .into_iter()
                .map(|(n, v)| json!({"name": n, "value": v}))
                .collect();
            let mut out =
                json!({"name": a["name"], "templateName": a["templateName"], "args": args});
            for f in ["clusterScope", "requiredForCompletion"] {
                if let Some(v) = a.get(f) {
                    out[f] = v.clone();
                }
            }
            spec["analyses"].as_array_mut().expect("an array").push(out);
        }
        if spec["analyses"].as_array().is_some_and(Vec::is_empty) {
            spec.as_object_mut().map(|m| m.remove("analyses"));
        }
        Ok(
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Experiment",
            "metadata": {"name": name, "namespace": self.ns(), "labels": labels,
                "annotations": {super::REVISION: revision},
                "ownerReferences": [controller_of(self.r, &self.ro)]},
            "spec": spec}),
        )
    }

    /// An `experiment` step: true once its Experiment succeeded.
    pub(super) async fn step_experiment(
        &mut self,
        step: &Value,
        index: usize,
        new: &Value,
    ) -> Result<bool, ClientError> {
        let Some(r) = experiments() else {
            return Ok(false);
        };
        let Some(stable) = self.find(self.st["stableRS"].as_str().unwrap_or("")) else {
            return Ok(false);
        };
        let name = self.experiment_name(index);
        let ns = self.ns();
        let ex = match self.cache.get(r, &ns, &name).cloned() {
            Some(ex) => ex,
            None => match self.cache.api.get(r, Some(&ns), &name).await? {
                Some(ex) => ex,
                None => match self.experiment_for(step, &name, &stable, new) {
                    Ok(ex) => {
                        let ex = self.cache.create(r, ex).await?;
                        self.events.normal(
                            self.r,
                            &self.ro,
                            "ExperimentCreated",
                            format!("Created Experiment '{name}'"),
                        );
                        ex
                    }
                    Err(why) => {
                        self.events
                            .warning(self.r, &self.ro, "ExperimentError", why);
                        return Ok(false);
                    }
                },
            },
        };
        let p = phase(&ex["status"]["phase"]);
        Ok(match p {
            "Successful" => {
                if let Some(c) = self.st.get_mut("canary").and_then(Value::as_object_mut) {
                    c.remove("currentExperiment");
                }
                true
            }
            "Failed" | "Error" => {
                let msg = self.failed_experiment_message().unwrap_or_default();
                self.abort_with(&msg);
                false
            }
            "Inconclusive" => {
                super::add_pause(&mut self.st, "InconclusiveExperiment");
                false
            }
            _ => {
                self.st["canary"]["currentExperiment"] = json!(name);
                false
            }
        })
    }

    fn experiment_name(&self, index: usize) -> String {
        format!(
            "{}-{}-{}-{index}",
            self.name(),
            self.st["currentPodHash"].as_str().unwrap_or(""),
            self.revision_of_current()
        )
    }

    /// Argo's cancelExperiments: every running Experiment of this Rollout
    /// but `keep` is told to terminate.
    pub(super) async fn cancel_experiments(
        &mut self,
        keep: Option<&str>,
    ) -> Result<(), ClientError> {
        let Some(r) = experiments() else {
            return Ok(());
        };
        let (ns, uid) = (self.ns(), meta_str(&self.ro, "uid").to_string());
        let names: Vec<String> = self
            .cache
            .list(r, &ns)
            .filter(|e| {
                controller_uid(e, "Rollout") == Some(uid.as_str())
                    && !completed(phase(&e["status"]["phase"]))
                    && e["spec"]["terminate"] != true
                    && Some(meta_str(e, "name")) != keep
            })
            .map(|e| meta_str(e, "name").to_string())
            .collect();
        for n in names {
            self.cache
                .modify(r, &ns, &n, None, |cur| {
                    let mut v = cur.clone();
                    v["spec"]["terminate"] = json!(true);
                    Some(v)
                })
                .await?;
        }
        if keep.is_none()
            && let Some(c) = self.st.get_mut("canary").and_then(Value::as_object_mut)
        {
            c.remove("currentExperiment");
        }
        Ok(())
    }

    /// The Experiment the current step runs, if it is an experiment step.
    pub(super) fn current_experiment(&self) -> Option<String> {
        let index = usize::try_from(int(&self.st, "/currentStepIndex")).ok()?;
        let steps = self.ro["spec"]["strategy"]["canary"]["steps"].as_array()?;
        steps
            .get(index)
            .filter(|s| s.get("experiment").is_some())
            .map(|_| self.experiment_name(index))
    }
}
