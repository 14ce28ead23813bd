//! Traffic routing of a canary (Argo's rollout/trafficrouting.go): the
//! weight the router gets at each moment, applied through
//! `trafficRouting.nginx` (a `<rollout>-<stableIngress>-canary` Ingress with
//! ingress-nginx's canary annotations, which keel's gateway serves) and the
//! `argoproj-labs/gatewayAPI` plugin (the weights of an `HTTPRoute`'s
//! stable and canary `backendRefs`), then recorded in
//! `status.canary.weights`.

use keel_api::ClientError;
use keel_api::resources::{self, Resource};
use serde_json::{Map, Value, json};

use super::replicas::{
    Weights, current_set_weight, desired_canary_weight, max_weight, spec_replicas,
};
use super::{Run, count_of};
use crate::objects::{controller_of, int};

const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io";
const GATEWAY_PLUGIN: &str = "argoproj-labs/gatewayAPI";

fn ingresses() -> &'static Resource {
    resources::find("networking.k8s.io", "v1", "ingresses").expect("ingresses are served")
}

fn httproutes() -> Option<&'static Resource> {
    resources::find("gateway.networking.k8s.io", "v1", "httproutes")
}

/// A set's available pods that stay: those beyond its spec are on their
/// way out (its status lags a scale-down).
fn ready_to_stay(rs: &Value) -> i64 {
    int(rs, "/status/availableReplicas").min(super::spec_of(rs))
}

impl Run<'_> {
    pub(super) fn canary_spec(&self) -> &Value {
        &self.ro["spec"]["strategy"]["canary"]
    }

    /// Argo's desired weight: 0 once the canary is stable or aborted; the
    /// previous step's weight while the canary's pods are not ready for the
    /// current one; the maximum after the last step.
    pub(super) fn desired_weight(&self, at_counts: bool) -> i64 {
        let st = &self.st;
        if st["stableRS"] == st["currentPodHash"] || st["abort"] == true {
            return 0;
        }
        let steps = self.canary_spec()["steps"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        let index = usize::try_from(int(st, "/currentStepIndex")).unwrap_or(0);
        if !at_counts && st["promoteFull"] != true {
            return steps[..index.min(steps.len())]
                .iter()
                .rev()
                .find_map(|s| s["setWeight"].as_i64())
                .unwrap_or(0);
        }
        if index < steps.len() {
            let mut view = self.ro.clone();
            view["status"] = st.clone();
            current_set_weight(&view)
        } else {
            max_weight(&self.ro)
        }
    }

    /// The canary's weight on abort (Argo's
    /// calculateDesiredWeightOnAbortOrStableRollback): 0 at once, but with
    /// `dynamicStableScale` stepped down through the setWeights as the
    /// stable set's pods become available to take the traffic back.
    pub(super) fn abort_weight(&self, new: &Value, stable: Option<&Value>) -> i64 {
        let replicas = spec_replicas(&self.ro);
        let Some(stable) = stable else { return 0 };
        if self.canary_spec()["dynamicStableScale"] != true || replicas == 0 {
            return 0;
        }
        let max = max_weight(&self.ro);
        let mut view = self.ro.clone();
        view["status"] = self.st.clone();
        let mut stable_count = count_of(stable);
        stable_count.available = ready_to_stay(stable);
        let desired = desired_canary_weight(&view, Some(&count_of(new)), Some(&stable_count));
        let stable_share = max * stable_count.available / replicas;
        let expected = (max - stable_share).max(0);
        let Some(applied) = Weights::of(&self.ro["status"]) else {
            return expected.max(desired);
        };
        if desired <= 0 {
            // Never back up because stable's availability flaps.
            return expected.min(applied.canary);
        }
        if stable_share < max - desired {
            // Stable is still scaling up: the canary keeps its traffic.
            return applied.canary;
        }
        desired.min(applied.canary)
    }

    /// Argo's checkReplicasAvailable: stable's available pods can serve
    /// its share once the canary has `canary_weight`.
    pub(super) fn stable_can_take(&self, stable: Option<&Value>, canary_weight: i64) -> bool {
        let Some(stable) = stable else { return true };
        let max = max_weight(&self.ro);
        let need = (max - canary_weight) * spec_replicas(&self.ro) / max;
        ready_to_stay(stable) >= need
    }

    /// Applies `weight` through every configured router and records it.
    pub(super) async fn route(&mut self, weight: i64) -> Result<(), ClientError> {
        let hash = self.st["currentPodHash"].as_str().unwrap_or("").to_string();
        self.route_to(weight, &hash).await
    }

    /// [`Self::route`] recording `canary_hash` as the canary's set.
    pub(super) async fn route_to(
        &mut self,
        weight: i64,
        canary_hash: &str,
    ) -> Result<(), ClientError> {
        let tr = self.canary_spec()["trafficRouting"].clone();
        let canary_svc = self.canary_spec()["canaryService"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let stable_svc = self.canary_spec()["stableService"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let max = max_weight(&self.ro);
        if let Some(ing) = tr["nginx"]["stableIngress"].as_str() {
            self.nginx(&tr["nginx"], ing, &stable_svc, &canary_svc, weight)
                .await?;
        }
        if let Some(cfg) = tr["plugins"].get(GATEWAY_PLUGIN) {
            let mut routes: Vec<String> = cfg["httpRoutes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r["name"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(r) = cfg["httpRoute"].as_str() {
                routes.push(r.to_string());
            }
            let ns = cfg["namespace"]
                .as_str()
                .map_or_else(|| self.ns(), String::from);
            for r in routes {
                self.gateway_route(&ns, &r, &stable_svc, &canary_svc, weight, max)
                    .await?;
            }
        }
        let st = &mut self.st;
        st["canary"]["weights"] = json!({
            "canary": {"weight": weight, "podTemplateHash": canary_hash, "serviceName": canary_svc},
            "stable": {"weight": max - weight, "podTemplateHash": st["stableRS"], "serviceName": stable_svc},
        });
        Ok(())
    }

    /// Argo's nginx reconciler: the canary Ingress copies the stable one's
    /// rules that use the stable Service, pointed at the canary Service.
    async fn nginx(
        &mut self,
        cfg: &Value,
        stable_ingress: &str,
        stable_svc: &str,
        canary_svc: &str,
        weight: i64,
    ) -> Result<(), ClientError> {
        let ns = self.ns();
        let Some(stable) = self
            .cache
            .api
            .get(ingresses(), Some(&ns), stable_ingress)
            .await?
        else {
            self.events.warning(
                self.r,
                &self.ro,
                "IngressNotFound",
                format!("ingress `{stable_ingress}` not found"),
            );
            self.again_in(std::time::Duration::from_secs(5));
            return Ok(());
        };
        let prefix = cfg["annotationPrefix"].as_str().unwrap_or(NGINX_PREFIX);
        let mut annotations = Map::new();
        if let Some(c) = stable.pointer("/metadata/annotations/kubernetes.io~1ingress.class") {
            annotations.insert("kubernetes.io/ingress.class".into(), c.clone());
        }
        if let Some(extra) = cfg["additionalIngressAnnotations"].as_object() {
            for (k, v) in extra {
                let k = if k.starts_with(prefix) {
                    k.clone()
                } else {
                    format!("{prefix}/{k}")
                };
                annotations.insert(k, v.clone());
            }
        }
        if let Some(extra) = cfg["canaryIngressAnnotations"].as_object() {
            annotations.extend(extra.clone());
        }
        annotations.insert(format!("{prefix}/canary"), json!("true"));
        annotations.insert(format!("{prefix}/canary-weight"), json!(weight.to_string()));
        if let Some(total) = self.canary_spec()["trafficRouting"]["maxTrafficWeight"].as_i64() {
            annotations.insert(
                format!("{prefix}/canary-weight-total"),
                json!(total.to_string()),
            );
        }
        let mut rules = Vec::new();
        for rule in stable["spec"]["rules"].as_array().into_iter().flatten() {
            let mut rule = rule.clone();
            let mut uses = false;
            for p in rule["http"]["paths"].as_array_mut().into_iter().flatten() {
                if p["backend"]["service"]["name"] == stable_svc {
                    p["backend"]["service"]["name"] = json!(canary_svc);
                    uses = true;
                }
            }
            if uses {
                rules.push(rule);
            }
        }
        if rules.is_empty() {
            self.events.warning(
                self.r,
                &self.ro,
                "IngressRuleMissing",
                format!(
                    "ingress `{stable_ingress}` has no rules using service {stable_svc} backend"
                ),
            );
            return Ok(());
        }
        let mut spec = json!({"rules": rules});
        for f in ["tls", "ingressClassName"] {
            if let Some(v) = stable["spec"].get(f) {
                spec[f] = v.clone();
            }
        }
        let name = format!("{}-{stable_ingress}-canary", self.name());
        let want_meta = (Value::Object(annotations), spec);
        let owner = controller_of(self.r, &self.ro);
        let r = self
            .cache
            .modify(ingresses(), &ns, &name, None, |cur| {
                let mut v = cur.clone();
                v["metadata"]["annotations"] = want_meta.0.clone();
                v["spec"] = want_meta.1.clone();
                (v != *cur).then_some(v)
            })
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => {
                let ing = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "metadata": {"name": name, "namespace": ns, "annotations": want_meta.0,
                        "ownerReferences": [owner]},
                    "spec": want_meta.1});
                self.cache.create(ingresses(), ing).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// The gatewayAPI plugin: in every rule of the route, the stable and
    /// canary `backendRefs` get their weights.
    async fn gateway_route(
        &mut self,
        ns: &str,
        route: &str,
        stable_svc: &str,
        canary_svc: &str,
        weight: i64,
        max: i64,
    ) -> Result<(), ClientError> {
        let Some(r) = httproutes() else {
            return Ok(());
        };
        let out = self
            .cache
            .modify(r, ns, route, None, |cur| {
                let mut v = cur.clone();
                for rule in v["spec"]["rules"].as_array_mut().into_iter().flatten() {
                    for b in rule["backendRefs"].as_array_mut().into_iter().flatten() {
                        if b["name"] == canary_svc {
                            b["weight"] = json!(weight);
                        } else if b["name"] == stable_svc {
                            b["weight"] = json!(max - weight);
                        }
                    }
                }
                (v != *cur).then_some(v)
            })
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => {
                self.events.warning(
                    self.r,
                    &self.ro,
                    "HTTPRouteNotFound",
                    format!("HTTPRoute {ns}/{route} not found"),
                );
                self.again_in(std::time::Duration::from_secs(5));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
