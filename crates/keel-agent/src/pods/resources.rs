//! What a pod reads from the API besides itself: `ConfigMaps` and `Secrets`
//! (env and volumes), service account tokens (projected volumes), and the
//! resource and `QoS` views of its spec.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, ResourceFieldSelector, Secret,
    ServiceAccount, Volume,
};
use kube::Api;
use kube::api::PostParams;

use super::Ctx;
use super::atomic::{self, Payload};
use crate::podspec;

type Data = BTreeMap<String, Vec<u8>>;

/// A `ConfigMap`'s `data` and `binaryData`; empty when `optional` and missing.
pub(super) async fn config_map(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<Data, String> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(cm)) => {
            let mut d: Data = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            d.extend(
                cm.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0)),
            );
            Ok(d)
        }
        Ok(None) if optional => Ok(Data::new()),
        Ok(None) => Err(format!("configmap {name:?} not found")),
        Err(e) => Err(format!("configmap {name:?}: {e}")),
    }
}

/// The pod's `imagePullSecrets` as one Docker `config.json` (`auths`
/// merged, the first secret naming a registry winning; entries with only
/// `username`/`password` get their `auth`), and the names of the secrets
/// that could not be read or are not Docker configurations.
pub(super) async fn pull_config(ctx: &Ctx, pod: &Pod) -> (Option<serde_json::Value>, Vec<String>) {
    use base64::Engine;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let refs = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default();
    let mut auths = serde_json::Map::new();
    let mut bad = Vec::new();
    for r in refs {
        let name = r.name;
        let entries = secret(ctx, ns, &name, false).await.ok().and_then(|d| {
            if let Some(b) = d.get(".dockerconfigjson") {
                serde_json::from_slice::<serde_json::Value>(b)
                    .ok()?
                    .get("auths")?
                    .as_object()
                    .cloned()
            } else {
                serde_json::from_slice::<serde_json::Value>(d.get(".dockercfg")?)
                    .ok()?
                    .as_object()
                    .cloned()
            }
        });
        let Some(entries) = entries else {
            bad.push(name);
            continue;
        };
        for (registry, mut e) in entries {
            if e.get("auth").is_none()
                && let (Some(u), Some(p)) = (e["username"].as_str(), e["password"].as_str())
            {
                let auth = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                e["auth"] = auth.into();
            }
            auths.entry(registry).or_insert(e);
        }
    }
    let cfg = (!auths.is_empty()).then(|| serde_json::json!({ "auths": auths }));
    (cfg, bad)
}

/// A Secret's data; empty when `optional` and missing.
pub(super) async fn secret(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    optional: bool,
) -> Result<Data, String> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(s)) => {
            let mut d: Data = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            d.extend(
                s.string_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes())),
            );
            Ok(d)
        }
        Ok(None) if optional => Ok(Data::new()),
        Ok(None) => Err(format!("secret {name:?} not found")),
        Err(e) => Err(format!("secret {name:?}: {e}")),
    }
}

/// A bound service account token for the pod.
async fn token(
    ctx: &Ctx,
    pod: &Pod,
    audience: Option<&str>,
    expiration: Option<i64>,
) -> Result<String, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    let tr = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
            expiration_seconds: Some(expiration.unwrap_or(3607)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    };
    let out: TokenRequest = api
        .create_subresource("token", &sa, &PostParams::default(), &tr)
        .await
        .map_err(|e| format!("token for service account {ns}/{sa}: {e}"))?;
    Ok(out.status.map(|s| s.token).unwrap_or_default())
}

fn write_keys(
    out: &mut Payload,
    data: &Data,
    items: Option<&Vec<KeyToPath>>,
    mode: i32,
    what: &str,
) -> Result<(), String> {
    match items {
        Some(items) => {
            for it in items {
                let v = data
                    .get(&it.key)
                    .ok_or_else(|| format!("{what}: no key {:?}", it.key))?;
                atomic::add(out, &it.path, v, it.mode.unwrap_or(mode))?;
            }
        }
        None => {
            for (k, v) in data {
                atomic::add(out, k, v, mode)?;
            }
        }
    }
    Ok(())
}

fn write_downward(
    ctx: &Ctx,
    pod: &Pod,
    out: &mut Payload,
    items: &[DownwardAPIVolumeFile],
    mode: i32,
    pod_ip: &str,
) -> Result<(), String> {
    for it in items {
        let v = if let Some(f) = &it.field_ref {
            podspec::field_ref(pod, &f.field_path, pod_ip, &ctx.node_ip)
                .ok_or_else(|| format!("downwardAPI: unsupported fieldPath {:?}", f.field_path))?
        } else if let Some(r) = &it.resource_field_ref {
            let spec = pod.spec.clone().unwrap_or_default();
            let c = spec
                .containers
                .iter()
                .find(|c| Some(&c.name) == r.container_name.as_ref())
                .or(spec.containers.first())
                .cloned()
                .unwrap_or_default();
            resource_field(pod, &c, r)
        } else {
            String::new()
        };
        atomic::add(out, &it.path, v.as_bytes(), it.mode.unwrap_or(mode))?;
    }
    Ok(())
}

/// A token written less than 80 % of its lifetime ago (the kubelet
/// rotates them then), read back from the volume in `dir`.
fn fresh_token(dir: &Path, rel: &str, expiration: Option<i64>) -> Option<Vec<u8>> {
    let p = dir.join("..data").join(rel);
    let age = std::fs::metadata(&p)
        .ok()?
        .modified()
        .ok()?
        .elapsed()
        .ok()?;
    let ttl = u64::try_from(expiration.unwrap_or(3607)).unwrap_or(3607);
    (age.as_secs() < ttl * 8 / 10).then(|| std::fs::read(&p).ok())?
}

/// What a configMap, secret, projected or downwardAPI volume holds now
/// (`dir`: where it is, for tokens still fresh).
pub(super) async fn fill_volume(
    ctx: &Ctx,
    pod: &Pod,
    v: &Volume,
    dir: &Path,
    pod_ip: &str,
) -> Result<Payload, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out = Payload::new();
    if let Some(c) = &v.config_map {
        let data = config_map(ctx, &ns, &c.name, c.optional == Some(true)).await?;
        write_keys(
            &mut out,
            &data,
            c.items.as_ref(),
            c.default_mode.unwrap_or(0o644),
            &c.name,
        )?;
        return Ok(out);
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let data = secret(ctx, &ns, &name, s.optional == Some(true)).await?;
        write_keys(
            &mut out,
            &data,
            s.items.as_ref(),
            s.default_mode.unwrap_or(0o644),
            &name,
        )?;
        return Ok(out);
    }
    if let Some(d) = &v.downward_api {
        write_downward(
            ctx,
            pod,
            &mut out,
            d.items.as_deref().unwrap_or_default(),
            d.default_mode.unwrap_or(0o644),
            pod_ip,
        )?;
        return Ok(out);
    }
    if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(0o644);
        for src in p.sources.iter().flatten() {
            if let Some(t) = &src.service_account_token {
                let tok = match fresh_token(dir, &t.path, t.expiration_seconds) {
                    Some(tok) => tok,
                    None => token(ctx, pod, t.audience.as_deref(), t.expiration_seconds)
                        .await?
                        .into_bytes(),
                };
                atomic::add(&mut out, &t.path, &tok, mode)?;
            }
            if let Some(c) = &src.config_map {
                let data = config_map(ctx, &ns, &c.name, c.optional == Some(true)).await?;
                write_keys(&mut out, &data, c.items.as_ref(), mode, &c.name)?;
            }
            if let Some(s) = &src.secret {
                let data = secret(ctx, &ns, &s.name, s.optional == Some(true)).await?;
                write_keys(&mut out, &data, s.items.as_ref(), mode, &s.name)?;
            }
            if let Some(d) = &src.downward_api {
                write_downward(
                    ctx,
                    pod,
                    &mut out,
                    d.items.as_deref().unwrap_or_default(),
                    mode,
                    pod_ip,
                )?;
            }
        }
    }
    Ok(out)
}

/// `resourceFieldRef`: a limit (or request) of the container in `divisor`
/// units, rounded up; limits default to the node's capacity (cpu count).
pub(super) fn resource_field(_pod: &Pod, c: &Container, r: &ResourceFieldSelector) -> String {
    let res = c.resources.clone().unwrap_or_default();
    let (kind, what) = r
        .resource
        .split_once('.')
        .unwrap_or(("limits", r.resource.as_str()));
    let map = if kind == "requests" {
        res.requests
    } else {
        res.limits
    }
    .unwrap_or_default();
    let is_cpu = what == "cpu";
    let value = map
        .get(what)
        .and_then(|q| podspec::quantity(&q.0, 1.0))
        .unwrap_or_else(|| {
            if is_cpu {
                #[allow(clippy::cast_precision_loss)]
                let n =
                    std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64;
                n
            } else {
                0.0
            }
        });
    let div = r
        .divisor
        .as_ref()
        .and_then(|d| podspec::quantity(&d.0, 1.0))
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    format!("{}", (value / div).ceil())
}

/// `Guaranteed`, `Burstable` or `BestEffort`, as Kubernetes decides.
pub(super) fn qos_class(pod: &Pod) -> &'static str {
    let spec = pod.spec.clone().unwrap_or_default();
    let all: Vec<Container> = spec
        .init_containers
        .unwrap_or_default()
        .into_iter()
        .chain(spec.containers)
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        let r = c.resources.clone().unwrap_or_default();
        let limits = r.limits.unwrap_or_default();
        let requests = r.requests.unwrap_or_default();
        if !limits.is_empty() || !requests.is_empty() {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let l = limits.get(res);
            let q = requests.get(res).or(l);
            if l.is_none() || q.map(|q| &q.0) != l.map(|l| &l.0) {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}
