//! `HashiCorp`'s `kubernetes` provider, its `kubernetes_manifest` resource:
//! any object of any kind the API server knows, applied with server-side
//! apply (field manager `Terraform`, as the provider's default), read back
//! to notice deletion, deleted on destroy. The cluster comes from the
//! `provider "kubernetes"` block or the environment (see [`conn`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_hcl::{Type, Value};
use serde_json::Value as J;

use super::{Attr, OpCtx, Planned, Provider, ResourceType, Schema, get, set};
use crate::kubeconfig::{Connection, connect, default_path};

/// The cluster, as hashicorp's provider finds it: the `provider
/// "kubernetes"` block's `config_path` (or first of `config_paths`) and
/// `config_context`, else `KUBE_CONFIG_PATH`/`KUBE_CTX` (and, as keel always
/// did, `KUBECONFIG` or `~/.kube/config` when nothing else is set); then
/// `host`, `token`, `username`/`password`, `cluster_ca_certificate`,
/// `client_certificate`, `client_key` and `insecure` (or their `KUBE_*`
/// variables) set or override what the kubeconfig gave.
pub(super) fn conn(ctx: &OpCtx) -> Result<Connection, String> {
    let p = ctx.provider.as_ref();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let setting = |k: &str, var: &str| {
        p.and_then(|v| super::get_str(v, k))
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .or_else(|| env(var))
    };
    let insecure = p
        .and_then(|v| super::get_bool(v, "insecure"))
        .or_else(|| env("KUBE_INSECURE").map(|x| x == "true" || x == "1"))
        .unwrap_or(false);
    let paths = p
        .and_then(|v| get(v, "config_paths"))
        .and_then(Value::as_seq)
        .and_then(|s| s.first())
        .and_then(Value::as_str)
        .map(str::to_string);
    let path = setting("config_path", "KUBE_CONFIG_PATH").or(paths);
    let context = setting("config_context", "KUBE_CTX");
    let host = setting("host", "KUBE_HOST");
    let mut c = match (path, &host) {
        (Some(path), _) => connect(&path, context.as_deref(), insecure)?,
        (None, Some(h)) => Connection {
            server: h.clone(),
            client: crate::backend_http::HttpClient {
                skip_verify: insecure,
                ..Default::default()
            },
            namespace: None,
        },
        (None, None) => {
            let path = default_path().ok_or(
                "no cluster configured: set config_path or host in the provider \"kubernetes\" block (or KUBE_CONFIG_PATH)",
            )?;
            connect(&path, context.as_deref(), insecure)?
        }
    };
    if let Some(h) = host {
        c.server = h;
    }
    if let Some(t) = setting("token", "KUBE_TOKEN") {
        c.client.bearer = Some(t);
    }
    if let (Some(u), Some(pw)) = (
        setting("username", "KUBE_USER"),
        setting("password", "KUBE_PASSWORD"),
    ) {
        c.client.basic = Some((u, pw));
    }
    if let Some(ca) = setting("cluster_ca_certificate", "KUBE_CLUSTER_CA_CERT_DATA") {
        c.client.ca_pem = Some(ca);
    }
    if let (Some(cert), Some(key)) = (
        setting("client_certificate", "KUBE_CLIENT_CERT_DATA"),
        setting("client_key", "KUBE_CLIENT_KEY_DATA"),
    ) {
        c.client.client_cert = Some((cert, key));
    }
    c.client.skip_verify |= insecure;
    Ok(c)
}

/// The manifest as JSON, and the fields that name its object.
struct Target {
    body: J,
    api_version: String,
    kind: String,
    name: String,
    namespace: Option<String>,
}

fn target(manifest: &Value) -> Result<Target, String> {
    let body = keel_hcl::render::to_json(&manifest.unmark_deep());
    let s = |p: &[&str]| {
        p.iter()
            .try_fold(&body, |j, k| j.get(k))
            .and_then(J::as_str)
            .map(str::to_string)
    };
    Ok(Target {
        api_version: s(&["apiVersion"]).ok_or("manifest needs apiVersion")?,
        kind: s(&["kind"]).ok_or("manifest needs kind")?,
        name: s(&["metadata", "name"]).ok_or("manifest needs metadata.name")?,
        namespace: s(&["metadata", "namespace"]),
        body,
    })
}

fn call(
    c: &Connection,
    method: &str,
    url: &str,
    body: &[u8],
    ct: &str,
) -> Result<(u16, J), String> {
    let (status, out) = c
        .client
        .request(method, url, body, ct)
        .map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_slice(&out).unwrap_or(J::Null)))
}

/// The object's URL, from API discovery (kind to resource, namespaced or not).
fn object_url(c: &Connection, t: &Target) -> Result<String, String> {
    let base = c.server.trim_end_matches('/');
    let group_path = if t.api_version.contains('/') {
        format!("{base}/apis/{}", t.api_version)
    } else {
        format!("{base}/api/{}", t.api_version)
    };
    let (status, list) = call(c, "GET", &group_path, &[], "application/json")?;
    if status != 200 {
        return Err(format!(
            "API group {} not served (HTTP {status})",
            t.api_version
        ));
    }
    let res = list["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| {
            r["kind"].as_str() == Some(&t.kind) && !r["name"].as_str().unwrap_or("/").contains('/')
        })
        .ok_or_else(|| format!("{} has no kind {:?}", t.api_version, t.kind))?;
    let plural = res["name"].as_str().unwrap_or_default();
    Ok(if res["namespaced"].as_bool() == Some(true) {
        let ns = t
            .namespace
            .clone()
            .or_else(|| c.namespace.clone())
            .unwrap_or_else(|| "default".into());
        format!("{group_path}/namespaces/{ns}/{plural}/{}", t.name)
    } else {
        format!("{group_path}/{plural}/{}", t.name)
    })
}

fn api_error(what: &str, status: u16, j: &J) -> String {
    format!(
        "{what}: HTTP {status}: {}",
        j["message"].as_str().unwrap_or("no message")
    )
}

pub(super) struct Manifest {
    pub(super) schema: Schema,
}

impl Manifest {
    /// The object a `kubernetes_manifest` value names, as the server has it now.
    pub(super) fn object(v: &Value, ctx: &OpCtx) -> Result<J, String> {
        let manifest = get(v, "manifest").ok_or("manifest is required")?;
        let t = target(manifest)?;
        let c = conn(ctx)?;
        let (status, obj) = call(&c, "GET", &object_url(&c, &t)?, &[], "application/json")?;
        if status == 200 {
            Ok(obj)
        } else {
            Err(api_error(
                &format!("reading {} {}", t.kind, t.name),
                status,
                &obj,
            ))
        }
    }

    pub(super) fn new() -> Manifest {
        Manifest {
            schema: Schema::default()
                .attr("manifest", Attr::required(Type::Dynamic))
                .attr("object", Attr::computed(Type::Dynamic)),
        }
    }
}

impl ResourceType for Manifest {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn modify_plan(
        &self,
        prior: Option<&Value>,
        config: &Value,
        mut p: Planned,
    ) -> Result<Planned, String> {
        let Some(prior) = prior else {
            return Ok(p);
        };
        let old = get(prior, "manifest")
            .cloned()
            .unwrap_or_else(Value::dyn_null);
        let new = get(config, "manifest")
            .cloned()
            .unwrap_or_else(Value::dyn_null);
        if old.equals(&new) == Some(true) {
            return Ok(p);
        }
        // Another object (kind, name, namespace) is a replacement, as the provider plans it.
        if let (Ok(a), Ok(b)) = (target(&old), target(&new))
            && (a.api_version, a.kind, a.name, a.namespace)
                != (b.api_version, b.kind, b.name, b.namespace)
        {
            p.requires_replace.push("manifest".into());
        }
        set(&mut p.value, "object", Value::unknown(Type::Dynamic));
        Ok(p)
    }

    fn apply(&self, _prior: Option<&Value>, planned: &Value, ctx: &OpCtx) -> Result<Value, String> {
        let manifest = get(planned, "manifest").ok_or("manifest is required")?;
        let t = target(manifest)?;
        let c = conn(ctx)?;
        let url = format!("{}?fieldManager=Terraform&force=true", object_url(&c, &t)?);
        let (status, obj) = call(
            &c,
            "PATCH",
            &url,
            t.body.to_string().as_bytes(),
            "application/apply-patch+yaml",
        )?;
        if !(200..300).contains(&status) {
            return Err(api_error(
                &format!("applying {} {}", t.kind, t.name),
                status,
                &obj,
            ));
        }
        let mut v = planned.clone();
        set(&mut v, "object", keel_hcl::json::json_to_value(&obj));
        Ok(v)
    }

    fn read(&self, prior: &Value, ctx: &OpCtx) -> Result<Option<Value>, String> {
        let Some(manifest) = get(prior, "manifest") else {
            return Ok(Some(prior.clone()));
        };
        let t = target(manifest)?;
        let c = conn(ctx)?;
        let (status, obj) = call(&c, "GET", &object_url(&c, &t)?, &[], "application/json")?;
        match status {
            404 => Ok(None),
            200 => Ok(Some(prior.clone())),
            s => Err(api_error(
                &format!("reading {} {}", t.kind, t.name),
                s,
                &obj,
            )),
        }
    }

    fn delete(&self, prior: &Value, ctx: &OpCtx) -> Result<(), String> {
        let Some(manifest) = get(prior, "manifest") else {
            return Ok(());
        };
        let t = target(manifest)?;
        let c = conn(ctx)?;
        let url = object_url(&c, &t)?;
        let (status, obj) = call(&c, "DELETE", &url, &[], "application/json")?;
        match status {
            404 => return Ok(()),
            200 | 202 => {}
            s => {
                return Err(api_error(
                    &format!("deleting {} {}", t.kind, t.name),
                    s,
                    &obj,
                ));
            }
        }
        // As hashicorp's provider does, destroy returns once the object is
        // gone, not when deletion began: a Namespace stays Terminating until
        // its contents are deleted, and what depends on it must wait.
        let deadline = std::time::Instant::now() + DELETE_TIMEOUT;
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            let (status, obj) = call(&c, "GET", &url, &[], "application/json")?;
            match status {
                404 => return Ok(()),
                200 => {}
                s => {
                    return Err(api_error(
                        &format!("waiting for {} {} to be deleted", t.kind, t.name),
                        s,
                        &obj,
                    ));
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "deleting {} {}: still present after {} minutes (finalizers: {})",
                    t.kind,
                    t.name,
                    DELETE_TIMEOUT.as_secs() / 60,
                    obj.pointer("/metadata/finalizers")
                        .map_or_else(|| "none".to_string(), ToString::to_string)
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_secs(1));
        }
    }
}

/// How long destroy waits for an object to be gone (the provider's default
/// delete timeout).
const DELETE_TIMEOUT: std::time::Duration = std::time::Duration::from_mins(10);

pub(super) fn kubernetes() -> Provider {
    let mut resources: BTreeMap<&'static str, Arc<dyn ResourceType>> = BTreeMap::new();
    resources.insert("kubernetes_manifest", Arc::new(Manifest::new()));
    super::kubernetes_typed::register(&mut resources);
    Provider {
        address: "registry.terraform.io/hashicorp/kubernetes",
        resources,
        data: BTreeMap::new(),
    }
}
