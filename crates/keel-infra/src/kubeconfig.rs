//! A kubeconfig read as client-go reads the parts terraform's kubernetes
//! backend and provider use: the context (named, or current), its cluster's
//! server and CA, its user's token, basic auth or client certificate
//! (`*-data` inline, or files relative to the kubeconfig).

use std::path::Path;

use base64::Engine as _;

use crate::backend_http::HttpClient;

/// Where and how to reach one cluster.
#[derive(Clone, Debug)]
pub struct Connection {
    pub server: String,
    pub client: HttpClient,
    /// The context's namespace, if it names one.
    pub namespace: Option<String>,
}

/// The kubeconfig at `path` (`~/` expanded), for `context` or its current one.
pub fn connect(path: &str, context: Option<&str>, insecure: bool) -> Result<Connection, String> {
    let path = match path.strip_prefix("~/") {
        Some(rest) => format!("{}/{rest}", std::env::var("HOME").unwrap_or_default()),
        None => path.to_string(),
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading kubeconfig {path}: {e}"))?;
    let kc: serde_json::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("kubeconfig {path}: {e}"))?;
    let named = |list: &str, name: &str| {
        kc[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["name"].as_str() == Some(name))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    let ctx_name = context
        .map(str::to_string)
        .or_else(|| kc["current-context"].as_str().map(str::to_string))
        .ok_or_else(|| format!("kubeconfig {path} has no current-context"))?;
    let ctx = named("contexts", &ctx_name)["context"].clone();
    let cluster = named("clusters", ctx["cluster"].as_str().unwrap_or_default())["cluster"].clone();
    let user = named("users", ctx["user"].as_str().unwrap_or_default())["user"].clone();
    let server = cluster["server"]
        .as_str()
        .ok_or_else(|| format!("kubeconfig {path}: context {ctx_name:?} names no server"))?
        .to_string();
    let base = Path::new(&path)
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    // `*-data` holds base64 PEM; the plain key names a file.
    let pem = |v: &serde_json::Value, key: &str| -> Result<Option<String>, String> {
        if let Some(d) = v[format!("{key}-data")].as_str() {
            let b = base64::engine::general_purpose::STANDARD
                .decode(d)
                .map_err(|e| format!("kubeconfig {path}: {key}-data: {e}"))?;
            return Ok(Some(String::from_utf8_lossy(&b).into_owned()));
        }
        match v[key].as_str() {
            Some(f) => std::fs::read_to_string(base.join(f))
                .map(Some)
                .map_err(|e| format!("kubeconfig {path}: {key} {f}: {e}")),
            None => Ok(None),
        }
    };
    let client = HttpClient {
        basic: user["username"]
            .as_str()
            .zip(user["password"].as_str())
            .map(|(u, p)| (u.to_string(), p.to_string())),
        bearer: user["token"].as_str().map(str::to_string),
        ca_pem: pem(&cluster, "certificate-authority")?,
        client_cert: pem(&user, "client-certificate")?.zip(pem(&user, "client-key")?),
        skip_verify: cluster["insecure-skip-tls-verify"]
            .as_bool()
            .unwrap_or(false)
            || insecure,
    };
    Ok(Connection {
        server,
        client,
        namespace: ctx["namespace"].as_str().map(str::to_string),
    })
}

/// The kubeconfig path client tools default to: `KUBE_CONFIG_PATH`, `KUBECONFIG`, `~/.kube/config`.
pub fn default_path() -> Option<String> {
    ["KUBE_CONFIG_PATH", "KUBECONFIG"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|v| !v.is_empty()))
        .or_else(|| {
            std::env::var("HOME")
                .ok()
                .map(|h| format!("{h}/.kube/config"))
        })
}
