//! The canary strategy's steps (Argo's rollout/canary.go): scale the canary
//! and stable sets to the current step's counts, and once they are there,
//! run the step.

use std::time::Duration;

use keel_api::ClientError;
use serde_json::{Value, json};

use super::replicas::{self, RsCount};
use super::{Run, count_of, has_deadline, has_pause, hash_of, pause_conditions, settled, spec_of};
use crate::objects::{int, now, parse_time};

const PAUSE_REASON: &str = "CanaryPauseStep";

/// A pause duration: seconds as a number, or Go-style `30s`, `5m`, `1h`.
pub(super) fn duration(v: &Value) -> Option<Duration> {
    if let Some(n) = v.as_u64() {
        return Some(Duration::from_secs(n));
    }
    let s = v.as_str()?;
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

impl Run<'_> {
    fn steps(&self) -> Vec<Value> {
        self.ro["spec"]["strategy"]["canary"]["steps"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The Rollout as the arithmetic should see it: this run's status.
    fn view(&self) -> Value {
        let mut v = self.ro.clone();
        v["status"] = self.st.clone();
        v
    }

    pub(super) async fn sync_canary(&mut self, new: &Value) -> Result<(), ClientError> {
        let hash = hash_of(new).to_string();
        let steps = self.steps();
        let stable_is_new = self.st["stableRS"].as_str() == Some(hash.as_str());
        let window = !stable_is_new && self.rollback_within_window(new);
        if self.st["promoteFull"] == true || stable_is_new || window {
            // Promoted in full, or nothing to roll out (the first template,
            // back to stable, or back within spec.rollbackWindow): no steps
            // run, as Argo.
            self.st["currentStepIndex"] = json!(steps.len());
        }
        let stable_hash = self.st["stableRS"].as_str().unwrap_or("").to_string();
        let stable = self.find(&stable_hash);
        let others: Vec<Value> = self
            .rss
            .iter()
            .filter(|rs| hash_of(rs) != hash && hash_of(rs) != stable_hash)
            .cloned()
            .collect();
        let older: Vec<RsCount> = others.iter().map(count_of).collect();
        let view = self.view();
        let routed = replicas::traffic_routed(&self.ro);
        let dynamic = routed && self.canary_spec()["dynamicStableScale"] == true;
        // Argo's IsDynamicallyRollingBackToStable: back to the stable
        // template mid-update, the previous canary keeps its traffic (and
        // pods, and the canary Service) until stable is full again.
        let applied = replicas::Weights::of(&self.ro["status"]);
        let prev_canary = self.ro["status"]["canary"]["weights"]["canary"]["podTemplateHash"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let rolling_back = (dynamic
            && stable_hash == hash
            && applied.is_some_and(|w| w.canary > 0)
            && !prev_canary.is_empty()
            && prev_canary != hash
            && int(new, "/status/availableReplicas") < replicas::spec_replicas(&self.ro))
        .then_some(prev_canary);
        // Stable's pods beyond its spec are on their way out: with dynamic
        // scaling they must not count as able to take traffic back.
        let stable_count = stable.as_ref().map(|s| {
            let mut c = count_of(s);
            if dynamic {
                c.available = c.available.min(c.spec);
            }
            c
        });
        let counts = |weights| {
            replicas::canary_counts(
                &view,
                Some(&count_of(new)),
                stable_count.as_ref(),
                &older,
                weights,
            )
        };
        // As Argo: the router moves first, then the sets follow. Stable is
        // sized by the weights applied before this pass (it only shrinks
        // once traffic has left it), the canary by the ones applied now
        // (on abort it only shrinks once traffic has left it).
        // The stable set when it is not the new one (an abort after
        // promotion has no canary to hold or drain).
        let distinct = stable.as_ref().filter(|s| hash_of(s) != hash);
        // Argo's AtDesiredReplicaCountsForCanary; dynamic stable scaling
        // does not wait for stable's count.
        let at_desired = |new: &Value, stable: Option<&Value>, (n, s): (i64, i64)| {
            settled(new, n)
                && (dynamic
                    || stable.is_none_or(|x| spec_of(x) == s && int(x, "/status/replicas") == s))
        };
        if let Some(prev) = &rolling_back {
            let w = applied.map_or(0, |w| w.canary);
            self.route_to(w, prev).await?;
        } else if routed {
            let w = if self.st["abort"] == true {
                self.abort_weight(new, distinct)
            } else {
                self.desired_weight(at_desired(new, distinct, counts(None)))
            };
            if !dynamic || self.stable_can_take(stable.as_ref(), w) {
                self.route(w).await?;
            }
        }
        let now_applied = replicas::Weights::of(&self.st);
        let (_, want_stable) = counts(applied);
        let want = counts(now_applied);
        let new = if self.delay_abort_scale_down(distinct) {
            self.hold_aborted_canary(new, distinct).await?
        } else {
            self.scale(new, want.0, "canary").await?
        };
        let stable = match &stable {
            Some(s) if hash_of(s) != hash => Some(self.scale(s, want_stable, "stable").await?),
            _ => None,
        };
        // Services follow the hashes at once (Argo patches their
        // selectors), before old sets go.
        let canary_svc = self.ro["spec"]["strategy"]["canary"]["canaryService"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let stable_svc = self.ro["spec"]["strategy"]["canary"]["stableService"]
            .as_str()
            .unwrap_or("")
            .to_string();
        // On abort the canary Service goes back to stable (Argo), with
        // dynamic stable scaling once the canary has no traffic left.
        let drained = replicas::Weights::of(&self.st).is_none_or(|w| w.canary == 0);
        let canary_target = if let Some(prev) = &rolling_back {
            prev
        } else if self.st["abort"] == true && (!dynamic || drained) {
            &stable_hash
        } else {
            &hash
        };
        self.point_service(&canary_svc, canary_target).await?;
        self.point_service(&stable_svc, &stable_hash).await?;
        // Behind a router, old sets keep their pods for
        // scaleDownDelaySeconds so routers catch up first; with dynamic
        // stable scaling the old stable has no traffic left and goes at once.
        let delay = if dynamic {
            0
        } else if routed {
            self.canary_spec()["scaleDownDelaySeconds"]
                .as_i64()
                .unwrap_or(30)
        } else {
            0
        };
        for rs in &others {
            if rolling_back.as_deref() == Some(hash_of(rs)) {
                continue;
            }
            self.scale_down_after(rs, delay).await?;
        }

        let at_counts = at_desired(&new, stable.as_ref(), want)
            && (routed
                || self
                    .rss
                    .iter()
                    .filter(|rs| hash_of(rs) != hash && hash_of(rs) != stable_hash)
                    .all(|rs| int(rs, "/status/availableReplicas") == 0));
        if !window {
            self.background_analysis().await?;
        }
        // Argo's reconcileExperiments: an abort or a full promotion ends
        // every Experiment; otherwise all but the current step's.
        let keep = if self.st["abort"] == true || self.st["promoteFull"] == true {
            None
        } else {
            self.current_experiment()
        };
        self.cancel_experiments(keep.as_deref()).await?;
        if self.st["abort"] == true {
            // As Argo's syncRolloutStatusCanary, once this pass's counts
            // are made: an aborted update goes back to its first step (a
            // retry starts over), an abort after promotion stays at the end.
            if !steps.is_empty() {
                let at = if stable_hash == hash { steps.len() } else { 0 };
                self.st["currentStepIndex"] = json!(at);
            }
            return Ok(());
        }
        if !at_counts {
            return Ok(());
        }
        let index = usize::try_from(int(&self.st, "/currentStepIndex")).unwrap_or(0);
        if index >= steps.len() {
            if stable_hash != hash && settled(&new, replicas::spec_replicas(&self.ro)) {
                // Every step ran and the canary carries everything: it is
                // the new stable.
                self.st["stableRS"] = json!(hash);
                self.st.as_object_mut().map(|m| m.remove("promoteFull"));
                self.point_service(&stable_svc, &hash).await?;
                if routed {
                    // The stable Service has the new pods now: the router
                    // goes back to it in this same pass.
                    self.route(0).await?;
                }
            }
            return Ok(());
        }
        if self.ro["spec"]["paused"] == true {
            return Ok(());
        }
        self.run_step(&steps[index], index, steps.len(), &new).await
    }

    /// Argo's shouldDelayScaleDownOnAbort: an aborted canary behind a
    /// router keeps its pods for `abortScaleDownDelaySeconds` (30 unless
    /// set; 0 leaves it to the counts), unless dynamic stable scaling
    /// drains it and no delay was asked for.
    fn delay_abort_scale_down(&self, stable: Option<&Value>) -> bool {
        if self.st["abort"] != true || stable.is_none() || !replicas::traffic_routed(&self.ro) {
            return false;
        }
        let (delay, explicit) = replicas::abort_scale_down_delay(&self.ro);
        delay.is_some() && (explicit || self.canary_spec()["dynamicStableScale"] != true)
    }

    /// The aborted canary as it is until stable can take all the traffic,
    /// then until the `scale-down-deadline` it gets then; 0 after it.
    async fn hold_aborted_canary(
        &mut self,
        new: &Value,
        stable: Option<&Value>,
    ) -> Result<Value, ClientError> {
        if has_deadline(new) {
            if self.deadline_passed(new) {
                return self.scale(new, 0, "canary").await;
            }
        } else if spec_of(new) > 0
            && stable.is_some_and(|s| {
                int(s, "/status/availableReplicas") >= replicas::spec_replicas(&self.ro)
            })
        {
            let delay = replicas::abort_scale_down_delay(&self.ro).0.unwrap_or(0);
            self.mark_deadline(new, delay).await?;
        }
        Ok(self.find(hash_of(new)).unwrap_or_else(|| new.clone()))
    }

    /// Runs step `index` (its counts are reached); advances past it when
    /// done.
    async fn run_step(
        &mut self,
        step: &Value,
        index: usize,
        total: usize,
        new: &Value,
    ) -> Result<(), ClientError> {
        let done = if step.get("pause").is_some() {
            self.pause_step(&step["pause"])
        } else if step.get("analysis").is_some() {
            self.step_analysis(&step["analysis"], index).await?
        } else if step.get("experiment").is_some() {
            self.step_experiment(&step["experiment"], index, new)
                .await?
        } else {
            // setWeight and setCanaryScale are done once their counts are.
            true
        };
        if done {
            self.st["currentStepIndex"] = json!(index + 1);
            self.events.normal(
                self.r,
                &self.ro,
                "RolloutStepCompleted",
                format!(
                    "Rollout step {}/{total} completed ({})",
                    index + 1,
                    describe(step)
                ),
            );
        }
        Ok(())
    }

    /// A pause step: paused until promoted (the condition cleared while
    /// `controllerPause` stays set) or, with a duration, until it passes.
    fn pause_step(&mut self, pause: &Value) -> bool {
        let has = has_pause(&self.st, PAUSE_REASON);
        if !has && self.st["controllerPause"] == true {
            // Promoted (kubectl argo rollouts promote clears the conditions).
            self.st["controllerPause"] = json!(false);
            return true;
        }
        if !has {
            super::add_pause(&mut self.st, PAUSE_REASON);
        }
        let Some(d) = duration(&pause["duration"]) else {
            return false;
        };
        let started = pause_conditions(&self.st)
            .iter()
            .find(|p| p["reason"] == PAUSE_REASON)
            .and_then(|p| parse_time(p.get("startTime")))
            .unwrap_or_else(now);
        let ends = started + jiff::SignedDuration::try_from(d).unwrap_or_default();
        if ends <= now() {
            let kept: Vec<Value> = pause_conditions(&self.st)
                .iter()
                .filter(|p| p["reason"] != PAUSE_REASON)
                .cloned()
                .collect();
            if kept.is_empty() {
                self.st.as_object_mut().map(|m| m.remove("pauseConditions"));
            } else {
                self.st["pauseConditions"] = Value::Array(kept);
            }
            self.st["controllerPause"] = json!(false);
            return true;
        }
        let left = (ends - now()).get_seconds().max(0);
        self.again_in(Duration::from_secs(u64::try_from(left).unwrap_or(0) + 1));
        false
    }
}

/// Argo's `CanaryStepString`.
fn describe(step: &Value) -> String {
    if let Some(w) = step["setWeight"].as_i64() {
        return format!("setWeight: {w}");
    }
    if let Some(p) = step.get("pause") {
        return match &p["duration"] {
            Value::Null => "pause".into(),
            Value::String(s) => format!("pause: {s}"),
            d => format!("pause: {d}s"),
        };
    }
    if step.get("analysis").is_some() {
        return "analysis".into();
    }
    if step.get("experiment").is_some() {
        return "experiment".into();
    }
    if let Some(s) = step.get("setCanaryScale") {
        if let Some(w) = s["weight"].as_i64() {
            return format!("setCanaryScale{{weight: {w}}}");
        }
        if s["matchTrafficWeight"] == true {
            return "setCanaryScale{matchTrafficWeight: true}".into();
        }
        if let Some(r) = s["replicas"].as_i64() {
            return format!("setCanaryScale{{replicas: {r}}}");
        }
    }
    "invalid".into()
}
