//! The blue-green strategy (Argo's rollout/bluegreen.go): the new set is
//! scaled up behind `previewService` while `activeService` keeps the stable
//! one; promotion switches `activeService` in one selector write.

use keel_api::ClientError;
use serde_json::{Value, json};

use super::{Run, has_deadline, has_pause, hash_of, settled, spec_of};

const PAUSE_REASON: &str = "BlueGreenPause";

impl Run<'_> {
    pub(super) async fn sync_bluegreen(&mut self, new: &Value) -> Result<(), ClientError> {
        let bg = self.ro["spec"]["strategy"]["blueGreen"].clone();
        let hash = hash_of(new).to_string();
        let replicas = super::replicas::spec_replicas(&self.ro);
        let preview_count = bg["previewReplicaCount"].as_i64().unwrap_or(replicas);
        let active_svc = bg["activeService"].as_str().unwrap_or("").to_string();
        let preview_svc = bg["previewService"].as_str().unwrap_or("").to_string();
        let stable = self.st["stableRS"].as_str().unwrap_or("").to_string();
        let mut active = self.st["blueGreen"]["activeSelector"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if active.is_empty() {
            // First deployment: straight to active.
            active.clone_from(&hash);
        }
        // Argo's fast rollback: back to a set still up within its
        // scaleDownDelaySeconds skips the pause and the analyses.
        let fast = active != hash && has_deadline(new) && spec_of(new) > 0;
        // The analyses run first: a failure aborts in this same pass.
        let (mut pre_done, mut post_done) = (true, true);
        let window = self.rollback_within_window(new);
        if self.st["abort"] != true && !fast && !window && stable != hash {
            if active != hash && settled(new, preview_count) {
                pre_done = self.promotion_analysis("pre").await?;
            } else if active == hash && settled(new, replicas) {
                post_done = self.promotion_analysis("post").await?;
            } else if active == hash {
                post_done = !bg["postPromotionAnalysis"].is_object();
            }
        }
        let aborted = self.st["abort"] == true;
        if aborted && !stable.is_empty() && self.find(&stable).is_some() {
            // As Argo: an abort (a failed post-promotion analysis too)
            // points the active Service back at the stable set.
            active.clone_from(&stable);
        }
        let promoted = active == hash;
        // Before promotion the new set may run at previewReplicaCount.
        let want_new = if aborted && !promoted {
            0
        } else if promoted || fast {
            replicas
        } else {
            preview_count
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
            let go = if fast {
                true
            } else if auto {
                self.auto_promotion_due(&bg)
            } else if resumed {
                true
            } else {
                super::add_pause(&mut self.st, PAUSE_REASON);
                false
            };
            // Promotion needs the pause over and the pre-promotion
            // analysis passed (Argo's completedPrePromotionAnalysis).
            if go && pre_done && want_new == replicas {
                active.clone_from(&hash);
                self.st["controllerPause"] = json!(false);
                self.st.as_object_mut().map(|m| m.remove("pauseConditions"));
                // The post-promotion analysis starts from the next pass:
                // this status write alone brings none.
                post_done = fast || !bg["postPromotionAnalysis"].is_object();
                if !post_done {
                    self.again_in(std::time::Duration::from_millis(100));
                }
            } else if go && pre_done {
                // Promotion first scales the preview set to full size.
                self.scale(&new, replicas, "new").await?;
                return self
                    .finish_bluegreen(&active, &active_svc, &preview_svc)
                    .await;
            }
        }
        if active == hash && !aborted && post_done {
            self.st["stableRS"] = json!(hash);
        }
        self.finish_bluegreen(&active, &active_svc, &preview_svc)
            .await?;
        // Sets other than the active one go after scaleDownDelaySeconds;
        // the stable one stays while a post-promotion analysis decides.
        let delay = bg["scaleDownDelaySeconds"].as_i64().unwrap_or(30);
        let stable = self.st["stableRS"].as_str().unwrap_or("").to_string();
        let others: Vec<Value> = self
            .rss
            .iter()
            .filter(|rs| hash_of(rs) != active && hash_of(rs) != hash && hash_of(rs) != stable)
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
