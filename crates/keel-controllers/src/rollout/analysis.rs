//! `AnalysisRuns` a Rollout starts (Argo's rollout/analysis.go and
//! utils/analysis/factory.go): built from the named `AnalysisTemplates` and
//! `ClusterAnalysisTemplates` (metrics concatenated, arguments merged with
//! the Rollout's, `valueFrom` resolved), named
//! `<rollout>-<hash>-<revision>[-<step>]`, labelled
//! `rollouts-pod-template-hash`, `rollout-type` (`Step`, `Background`) and
//! `step-index`, owned by the Rollout. Their `status.phase` (set by the
//! analysis controller) decides: Successful continues, Failed or Error
//! aborts, Inconclusive pauses.

use keel_api::ClientError;
use keel_api::resources::{self, Resource};
use serde_json::{Value, json};

use super::{HASH_LABEL, Run, add_pause};
use crate::objects::{controller_of, meta_str};

pub(super) fn analysis_runs() -> Option<&'static Resource> {
    resources::find("argoproj.io", "v1alpha1", "analysisruns")
}

/// What a run's phase means for the Rollout.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Running,
    Passed,
    Failed(String),
    Inconclusive,
}

fn verdict(run: &Value) -> Verdict {
    match run["status"]["phase"].as_str().unwrap_or("") {
        "Successful" => Verdict::Passed,
        "Failed" | "Error" => {
            Verdict::Failed(run["status"]["message"].as_str().unwrap_or("").to_string())
        }
        "Inconclusive" => Verdict::Inconclusive,
        _ => Verdict::Running,
    }
}

/// A field of the Rollout by a `fieldRef.fieldPath`
/// (`metadata.labels['k']`, `spec.template.spec.containers[0].image`).
fn field(ro: &Value, path: &str) -> Option<String> {
    let mut cur = ro;
    let mut rest = path;
    while !rest.is_empty() {
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let (name, tail) = rest.split_at(end);
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        rest = tail;
        if let Some(t) = rest.strip_prefix('[') {
            let close = t.find(']')?;
            let key = &t[..close];
            let key = key.trim_matches(|c| c == '\'' || c == '"');
            cur = match key.parse::<usize>() {
                Ok(i) if cur.is_array() => cur.get(i)?,
                _ => cur.get(key)?,
            };
            rest = &t[close + 1..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    Some(match cur {
        Value::String(s) => s.clone(),
        Value::Null => return None,
        v => v.to_string(),
    })
}

/// The `AnalysisTemplate` or `ClusterAnalysisTemplate` a reference names.
pub(super) async fn template(
    api: &keel_api::Loopback,
    ns: &str,
    t: &Value,
) -> Result<Option<Value>, ClientError> {
    let name = t["templateName"].as_str().unwrap_or("");
    let (plural, ns) = if t["clusterScope"] == true {
        ("clusteranalysistemplates", None)
    } else {
        ("analysistemplates", Some(ns))
    };
    let Some(r) = resources::find("argoproj.io", "v1alpha1", plural) else {
        return Ok(None);
    };
    api.get(r, ns, name).await
}

/// What the templates `refs` name add up to (Argo's
/// NewAnalysisRunFromTemplates): metrics, dryRun and measurementRetention
/// concatenated, args merged (a value given wins); `Err` names a missing
/// template.
pub(super) async fn merged_templates(
    api: &keel_api::Loopback,
    ns: &str,
    refs: &Value,
) -> Result<Result<Merged, String>, ClientError> {
    let mut m = Merged::default();
    for t in refs.as_array().into_iter().flatten() {
        let Some(tpl) = template(api, ns, t).await? else {
            return Ok(Err(format!(
                "AnalysisTemplate \"{}\" not found",
                t["templateName"].as_str().unwrap_or("")
            )));
        };
        let spec = &tpl["spec"];
        let list = |f: &str| spec[f].as_array().cloned().unwrap_or_default();
        m.metrics.extend(list("metrics"));
        m.dry_run.extend(list("dryRun"));
        m.retention.extend(list("measurementRetention"));
        for a in spec["args"].as_array().into_iter().flatten() {
            match m.args.iter_mut().find(|p| p["name"] == a["name"]) {
                Some(p) if p.get("value").is_none() => *p = a.clone(),
                Some(_) => {}
                None => m.args.push(a.clone()),
            }
        }
    }
    Ok(Ok(m))
}

/// Templates merged into one run's parts.
#[derive(Default)]
pub(super) struct Merged {
    pub metrics: Vec<Value>,
    pub args: Vec<Value>,
    pub dry_run: Vec<Value>,
    pub retention: Vec<Value>,
}

impl Merged {
    /// Sets `name`'s value where the templates declare it.
    pub fn set_arg(&mut self, name: &Value, value: String) {
        if let Some(p) = self.args.iter_mut().find(|p| p["name"] == *name) {
            *p = json!({"name": name, "value": value});
        }
    }

    /// An argument left without a value: Argo's error.
    pub fn unresolved(&self) -> Option<String> {
        self.args
            .iter()
            .find(|a| a.get("value").is_none() && a.get("valueFrom").is_none())
            .map(|a| format!("args.{} was not resolved", a["name"].as_str().unwrap_or("")))
    }

    /// The run's spec, with the step's own dryRun and
    /// measurementRetention added.
    pub fn spec(mut self, extra: &Value) -> Value {
        let mut spec = json!({"metrics": self.metrics, "args": self.args});
        if !self.dry_run.is_empty() || extra["dryRun"].is_array() {
            self.dry_run
                .extend(extra["dryRun"].as_array().cloned().unwrap_or_default());
            spec["dryRun"] = json!(self.dry_run);
        }
        if !self.retention.is_empty() || extra["measurementRetention"].is_array() {
            self.retention.extend(
                extra["measurementRetention"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
            spec["measurementRetention"] = json!(self.retention);
        }
        spec
    }
}

impl Run<'_> {
    /// An analysis' `args` resolved against this Rollout (`value`,
    /// `valueFrom.podTemplateHashValue`, `valueFrom.fieldRef`) as
    /// `(name, value)` pairs.
    pub(super) fn resolved_args(&self, args: &Value, new_hash: &str) -> Vec<(Value, String)> {
        let stable = self.st["stableRS"].as_str().unwrap_or("").to_string();
        let mut out = Vec::new();
        for a in args.as_array().into_iter().flatten() {
            let value = if let Some(v) = a["value"].as_str() {
                v.to_string()
            } else if let Some(which) = a["valueFrom"]["podTemplateHashValue"].as_str() {
                if which == "Stable" {
                    stable.clone()
                } else {
                    new_hash.to_string()
                }
            } else if let Some(path) = a["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                let mut view = self.ro.clone();
                view["status"] = self.st.clone();
                field(&view, path).unwrap_or_default()
            } else {
                continue;
            };
            out.push((a["name"].clone(), value));
        }
        out
    }

    /// The run Argo would create for `analysis` (a step's or the
    /// background one), or why it cannot be built.
    async fn build_run(
        &self,
        analysis: &Value,
        name: &str,
        labels: Value,
        new_hash: &str,
    ) -> Result<Result<Value, String>, ClientError> {
        let mut m =
            match merged_templates(&self.cache.api, &self.ns(), &analysis["templates"]).await? {
                Ok(m) => m,
                Err(why) => return Ok(Err(why)),
            };
        for (name, value) in self.resolved_args(&analysis["args"], new_hash) {
            m.set_arg(&name, value);
        }
        if let Some(why) = m.unresolved() {
            return Ok(Err(why));
        }
        let mut labels = labels;
        for (k, v) in self.ro["spec"]["selector"]["matchLabels"]
            .as_object()
            .into_iter()
            .flatten()
        {
            labels[k] = v.clone();
        }
        for (k, v) in analysis["analysisRunMetadata"]["labels"]
            .as_object()
            .into_iter()
            .flatten()
        {
            labels[k] = v.clone();
        }
        let mut annotations = json!({super::REVISION: self.revision_of_current().to_string()});
        for (k, v) in analysis["analysisRunMetadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
        {
            annotations[k] = v.clone();
        }
        let spec = m.spec(analysis);
        Ok(Ok(
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": name, "namespace": self.ns(), "labels": labels,
                "annotations": annotations, "ownerReferences": [controller_of(self.r, &self.ro)]},
            "spec": spec}),
        ))
    }

    /// The run named `name`, created when missing; `None` when it could not
    /// be built (an event says why).
    async fn ensure_run(
        &mut self,
        analysis: &Value,
        name: &str,
        labels: Value,
    ) -> Result<Option<Value>, ClientError> {
        let Some(r) = analysis_runs() else {
            return Ok(None);
        };
        let ns = self.ns();
        if let Some(run) = self.cache.get(r, &ns, name) {
            return Ok(Some(run.clone()));
        }
        if let Some(run) = self.cache.api.get(r, Some(&ns), name).await? {
            return Ok(Some(run));
        }
        let hash = self.st["currentPodHash"].as_str().unwrap_or("").to_string();
        match self.build_run(analysis, name, labels, &hash).await? {
            Ok(run) => {
                let made = self.cache.create(r, run).await?;
                self.events.normal(
                    self.r,
                    &self.ro,
                    "AnalysisRunRunning",
                    format!(
                        "Analysis Run '{name}' Status New: 'Running' Previous: 'NoPreviousStatus'"
                    ),
                );
                Ok(Some(made))
            }
            Err(why) => {
                self.events
                    .warning(self.r, &self.ro, "AnalysisRunError", why);
                self.again_in(std::time::Duration::from_secs(5));
                Ok(None)
            }
        }
    }

    fn run_name(&self, infix: Option<&str>) -> String {
        let hash = self.st["currentPodHash"].as_str().unwrap_or("");
        let mut name = format!("{}-{hash}-{}", self.name(), self.revision_of_current());
        if let Some(i) = infix {
            name.push('-');
            name.push_str(i);
        }
        name
    }

    /// Acts on a run's verdict: abort on failure, pause when inconclusive;
    /// true when it passed.
    fn judge(&mut self, run: &Value, pause_reason: &str) -> bool {
        match verdict(run) {
            Verdict::Passed => true,
            Verdict::Running => false,
            Verdict::Inconclusive => {
                if !super::has_pause(&self.st, pause_reason) && self.st["controllerPause"] != true {
                    add_pause(&mut self.st, pause_reason);
                }
                // Promoted past an inconclusive run: go on.
                self.st["controllerPause"] == true && !super::has_pause(&self.st, pause_reason) && {
                    self.st["controllerPause"] = json!(false);
                    true
                }
            }
            Verdict::Failed(msg) => {
                self.abort_for(meta_str(run, "name"), &msg);
                false
            }
        }
    }

    fn abort_for(&mut self, run: &str, msg: &str) {
        if !self.begin_abort(msg) {
            return;
        }
        self.events.warning(
            self.r,
            &self.ro,
            "AnalysisRunFailed",
            format!(
                "AnalysisRun '{run}' owned by the Rollout '{:?}' failed.",
                self.name()
            ),
        );
    }

    /// Blue-green's `prePromotionAnalysis` (`stage` "pre", before the
    /// active Service switches) or `postPromotionAnalysis` ("post", after):
    /// true once its run succeeded or none is configured. A failure aborts;
    /// an inconclusive run pauses until promoted past.
    pub(super) async fn promotion_analysis(&mut self, stage: &str) -> Result<bool, ClientError> {
        let (spec, field, kind) = if stage == "pre" {
            (
                "prePromotionAnalysis",
                "prePromotionAnalysisRunStatus",
                "PrePromotion",
            )
        } else {
            (
                "postPromotionAnalysis",
                "postPromotionAnalysisRunStatus",
                "PostPromotion",
            )
        };
        let analysis = self.ro["spec"]["strategy"]["blueGreen"][spec].clone();
        if !analysis.is_object() {
            return Ok(true);
        }
        let hash = self.st["currentPodHash"].as_str().unwrap_or("").to_string();
        let name = self.run_name(Some(stage));
        let labels = json!({HASH_LABEL: hash, "rollout-type": kind});
        let Some(run) = self.ensure_run(&analysis, &name, labels).await? else {
            return Ok(false);
        };
        // What this run said when the Rollout was read: an inconclusive
        // run whose pause is gone was promoted past.
        let before = self.ro["status"]["blueGreen"][field]["status"].clone();
        self.st["blueGreen"][field] = json!({
            "name": name, "status": run["status"]["phase"].as_str().unwrap_or(""),
            "message": run["status"]["message"].as_str().unwrap_or("")});
        Ok(match verdict(&run) {
            Verdict::Passed => true,
            Verdict::Running => false,
            Verdict::Failed(msg) => {
                self.abort_for(&name, &msg);
                false
            }
            Verdict::Inconclusive => {
                let reason = "InconclusiveAnalysisRun";
                if before == "Inconclusive" && !super::has_pause(&self.st, reason) {
                    true
                } else {
                    add_pause(&mut self.st, reason);
                    false
                }
            }
        })
    }

    /// A canary `analysis` step: true once its run succeeded.
    pub(super) async fn step_analysis(
        &mut self,
        analysis: &Value,
        index: usize,
    ) -> Result<bool, ClientError> {
        let hash = self.st["currentPodHash"].as_str().unwrap_or("").to_string();
        let name = self.run_name(Some(&index.to_string()));
        let labels =
            json!({HASH_LABEL: hash, "rollout-type": "Step", "step-index": index.to_string()});
        let Some(run) = self.ensure_run(analysis, &name, labels).await? else {
            return Ok(false);
        };
        self.st["canary"]["currentStepAnalysisRunStatus"] = json!({
            "name": name, "status": run["status"]["phase"].as_str().unwrap_or(""),
            "message": run["status"]["message"].as_str().unwrap_or("")});
        Ok(self.judge(&run, "InconclusiveAnalysisRun"))
    }

    /// `canary.analysis`: one run beside the steps (from `startingStep`);
    /// a failure aborts; it is terminated when the rollout completes.
    pub(super) async fn background_analysis(&mut self) -> Result<(), ClientError> {
        let analysis = self.ro["spec"]["strategy"]["canary"]["analysis"].clone();
        if !analysis.is_object() || self.st["abort"] == true {
            return Ok(());
        }
        let index = crate::objects::int(&self.st, "/currentStepIndex");
        if analysis["startingStep"].as_i64().is_some_and(|s| index < s) {
            return Ok(());
        }
        let hash = self.st["currentPodHash"].as_str().unwrap_or("").to_string();
        let name = self.run_name(None);
        let Some(r) = analysis_runs() else {
            return Ok(());
        };
        if self.st["stableRS"].as_str() == Some(hash.as_str()) {
            // Done: a run still going is told to stop.
            if let Some(run) = self.cache.get(r, &self.ns(), &name).cloned()
                && verdict(&run) == Verdict::Running
                && run["spec"]["terminate"] != true
            {
                let ns = self.ns();
                self.cache
                    .modify(r, &ns, &name, None, |cur| {
                        let mut v = cur.clone();
                        v["spec"]["terminate"] = json!(true);
                        Some(v)
                    })
                    .await?;
            }
            return Ok(());
        }
        let labels = json!({HASH_LABEL: hash, "rollout-type": "Background"});
        let Some(run) = self.ensure_run(&analysis, &name, labels).await? else {
            return Ok(());
        };
        self.st["canary"]["currentBackgroundAnalysisRunStatus"] = json!({
            "name": name, "status": run["status"]["phase"].as_str().unwrap_or(""),
            "message": run["status"]["message"].as_str().unwrap_or("")});
        self.judge(&run, "InconclusiveAnalysisRun");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::field;
    use serde_json::json;

    #[test]
    fn field_paths_as_argo_reads_them() {
        let ro = json!({"metadata": {"name": "web", "labels": {"app": "w"}},
            "spec": {"template": {"spec": {"containers": [{"image": "web:2"}]}}, "replicas": 3}});
        assert_eq!(field(&ro, "metadata.name").as_deref(), Some("web"));
        assert_eq!(field(&ro, "metadata.labels['app']").as_deref(), Some("w"));
        assert_eq!(
            field(&ro, "spec.template.spec.containers[0].image").as_deref(),
            Some("web:2")
        );
        assert_eq!(field(&ro, "spec.replicas").as_deref(), Some("3"));
        assert_eq!(field(&ro, "spec.nothing"), None);
    }
}
