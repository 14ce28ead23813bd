//! The blue-green strategy (Argo's rollout/bluegreen.go): the new set is
//! scaled up behind `previewService` while `activeService` keeps the stable
//! one; promotion switches `activeService` in one selector write.

use keel_api::ClientError;
use serde_json::{Value, json};

use super::{Run, has_pause, hash_of, settled};

const PAUSE_REASON: &str = "BlueGreenPause";

impl Run<'_> {
    pub(super) async fn sync_bluegreen(&mut self, new: &Value) -> Result<(), ClientError> {
        let bg = self.ro["spec"]["strategy"]["blueGreen"].clone();
        let hash = hash_of(new).to_string();
        let replicas = super::replicas::spec_replicas(&self.ro);
        let active_svc = bg["activeService"].as_str().unwrap_or("").to_string();
        let preview_svc = bg["previewService"].as_str().unwrap_or("").to_string();
        let mut active = self.st["blueGreen"]["activeSelector"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if active.is_empty() {
            // First deployment: straight to active.
            active.clone_from(&hash);
        }
        let aborted = self.st["abort"] == true;
        let promoted = active == hash;
        // Before promotion the new set may run at previewReplicaCount.
        let want_new = if aborted && !promoted {
            0
        } else if promoted {
            replicas
        } else {
            bg["previewReplicaCount"].as_i64().unwrap_or(replicas)
        };
        let new = self.scale(new, want_new, "new").await?;
        let active_rs = self.find(&active);
        if let Some(a) = &active_rs
            && hash_of(a) != hash
        {
            self.scale(a, replicas, "active").await?;
        }
        let preview = if aborted {
            active.clone()
        } else {
            hash.clone()
        };
        self.point_service(&preview_svc, &preview).await?;

        if !promoted && !aborted && settled(&new, want_new) && self.ro["spec"]["paused"] != true {
            let auto = bg["autoPromotionEnabled"].as_bool().unwrap_or(true);
            let resumed = self.st["controllerPause"] == true && !has_pause(&self.st, PAUSE_REASON);
            let go = if auto {
                self.auto_promotion_due(&bg)
            } else if resumed {
                true
            } else {
                super::add_pause(&mut self.st, PAUSE_REASON);
                false
            };
            if go && want_new == replicas {
                active.clone_from(&hash);
                self.st["controllerPause"] = json!(false);
                self.st.as_object_mut().map(|m| m.remove("pauseConditions"));
            } else if go {
                // Promotion first scales the preview set to full size.
                self.scale(&new, replicas, "new").await?;
                return self
                    .finish_bluegreen(&active, &active_svc, &preview_svc)
                    .await;
            }
        }
        if promoted || active == hash {
            self.st["stableRS"] = json!(hash);
        }
        self.finish_bluegreen(&active, &active_svc, &preview_svc)
            .await?;
        // Sets other than the active one go after scaleDownDelaySeconds.
        let delay = bg["scaleDownDelaySeconds"].as_i64().unwrap_or(30);
        let others: Vec<Value> = self
            .rss
            .iter()
            .filter(|rs| hash_of(rs) != active && hash_of(rs) != hash)
            .cloned()
            .collect();
        for rs in others {
            if active == hash {
                self.scale_down_after(&rs, delay).await?;
            }
        }
        Ok(())
    }

    async fn finish_bluegreen(
        &mut self,
        active: &str,
        active_svc: &str,
        preview_svc: &str,
    ) -> Result<(), ClientError> {
        self.point_service(active_svc, active).await?;
        self.st["blueGreen"]["activeSelector"] = json!(active);
        if !preview_svc.is_empty() {
            let preview = if self.st["abort"] == true {
                active.to_string()
            } else {
                self.st["currentPodHash"].as_str().unwrap_or("").to_string()
            };
            self.st["blueGreen"]["previewSelector"] = json!(preview);
        }
        Ok(())
    }

    /// `autoPromotionSeconds` after the new set became available (the
    /// pause condition records when), or at once.
    fn auto_promotion_due(&mut self, bg: &Value) -> bool {
        let Some(secs) = bg["autoPromotionSeconds"].as_i64() else {
            return true;
        };
        if !has_pause(&self.st, PAUSE_REASON) {
            super::add_pause(&mut self.st, PAUSE_REASON);
        }
        let started = super::pause_conditions(&self.st)
            .iter()
            .find(|p| p["reason"] == PAUSE_REASON)
            .and_then(|p| crate::objects::parse_time(p.get("startTime")))
            .unwrap_or_else(crate::objects::now);
        let ends = started + jiff::SignedDuration::from_secs(secs);
        if ends <= crate::objects::now() {
            return true;
        }
        let left = (ends - crate::objects::now()).get_seconds().max(0);
        self.again_in(std::time::Duration::from_secs(
            u64::try_from(left).unwrap_or(0) + 1,
        ));
        false
    }
}
