//! `spec.restartAt` (Argo's rollout/restart.go): once the time has come,
//! pods created before it are deleted one at a time (their `ReplicaSet`
//! makes a new one), set by set, the stable set first, then the new one,
//! then older ones; only while every set is fully available, so a restart
//! never takes more than one pod away. When none is left,
//! `status.restartedAt` records the `restartAt` served.

use std::time::Duration;

use keel_api::ClientError;
use serde_json::{Value, json};

use super::{Run, first_revision, hash_of, spec_of};
use crate::objects::{controller_uid, int, is_deleting, meta_str, now, parse_time, pod_ready};
use crate::replicaset::pods;

impl Run<'_> {
    pub(super) async fn restart_pods(&mut self) -> Result<(), ClientError> {
        let Some(at) = parse_time(self.ro.pointer("/spec/restartAt")) else {
            return Ok(());
        };
        let now = now();
        if at > now {
            let left = (at.as_millisecond() - now.as_millisecond()).max(0);
            self.again_in(Duration::from_millis(
                u64::try_from(left).unwrap_or(0) + 100,
            ));
            return Ok(());
        }
        if parse_time(self.st.get("restartedAt")).is_some_and(|done| done >= at) {
            return Ok(());
        }
        if self
            .rss
            .iter()
            .any(|rs| int(rs, "/status/availableReplicas") != spec_of(rs))
        {
            // A set's events bring the Rollout back once it is available.
            return Ok(());
        }
        let stable = self.st["stableRS"].as_str().unwrap_or("").to_string();
        let new = self.st["currentPodHash"].as_str().unwrap_or("").to_string();
        let mut order: Vec<Value> = self.rss.clone();
        order.sort_by_key(|rs| {
            let h = hash_of(rs);
            (h != stable, h != new, first_revision(rs))
        });
        let ns = self.ns();
        let (all, _) = self.cache.api.list(pods(), Some(&ns)).await?;
        let ours = |rs: &Value| {
            let uid = meta_str(rs, "uid").to_string();
            all.iter()
                .filter(move |p| controller_uid(p, "ReplicaSet") == Some(uid.as_str()))
        };
        // One pod at a time: the sets' status may not show the last
        // deletion yet, their pods do (all there, none going, all Ready).
        let whole = |rs: &Value| {
            let live: Vec<&Value> = ours(rs).collect();
            i64::try_from(live.len()).unwrap_or(0) == spec_of(rs)
                && live.iter().all(|p| !is_deleting(p) && pod_ready(p))
        };
        if !order.iter().all(whole) {
            self.again_in(Duration::from_secs(1));
            return Ok(());
        }
        for rs in &order {
            let old = ours(rs).find(|p| {
                parse_time(p.pointer("/metadata/creationTimestamp")).is_some_and(|c| c < at)
            });
            if let Some(p) = old {
                let (name, uid) = (
                    meta_str(p, "name").to_string(),
                    meta_str(p, "uid").to_string(),
                );
                self.cache.delete(pods(), &ns, &name, &uid).await?;
                self.events.normal(
                    self.r,
                    &self.ro,
                    "RestartedPod",
                    format!("Restarted pod {name} created before restartAt"),
                );
                self.again_in(Duration::from_secs(1));
                return Ok(());
            }
        }
        self.st["restartedAt"] = json!(self.ro["spec"]["restartAt"]);
        Ok(())
    }
}
