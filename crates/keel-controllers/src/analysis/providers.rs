//! The metric providers: `web` (an HTTP request, a `JSONPath` into its JSON
//! body), `prometheus` (an instant query; vectors become arrays of floats,
//! scalars floats, as Argo converts them) and `job` (a Job owned by the run:
//! Successful when it completes, Failed when it fails).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::expr::Value as X;
use jsonpath_rust::JsonPath as _;
use keel_api::ClientError;
use serde_json::{Value, json};

use super::{Measurement, Metric, Phase, RunRef, expr};
use crate::informer::Cache;

/// keel's own query API in this process: takes the URL query string of a
/// `/api/v1/query` request, returns status and JSON body.
pub type LocalQuery = Arc<dyn Fn(&str) -> (u16, String) + Send + Sync>;

static LOCAL_PROMETHEUS: OnceLock<LocalQuery> = OnceLock::new();

/// Called by `keel server` once its metrics store runs: queries to
/// `prometheus.keel-system.svc` (the Service it publishes) are answered
/// in-process, without DNS, TLS or a token.
pub fn set_local_prometheus(q: LocalQuery) {
    let _ = LOCAL_PROMETHEUS.set(q);
}

/// Whether `host` names keel's `prometheus` Service in keel-system.
fn is_local_prometheus(host: &str) -> bool {
    let h = host.trim_end_matches('.');
    [
        "prometheus.keel-system",
        "prometheus.keel-system.svc",
        "prometheus.keel-system.svc.cluster.local",
    ]
    .contains(&h)
}

pub(crate) struct Providers {
    client: reqwest::Client,
    insecure: reqwest::Client,
}

impl Default for Providers {
    fn default() -> Self {
        Self::new()
    }
}

impl Providers {
    pub fn new() -> Self {
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .tls_danger_accept_invalid_certs(insecure)
                .build()
                .unwrap_or_default()
        };
        Providers {
            client: build(false),
            insecure: build(true),
        }
    }

    /// Takes (or resumes, or terminates) one measurement of `metric`;
    /// `taken` is how many were taken before (names the next Job).
    pub(crate) async fn measure(
        &self,
        cache: &mut Cache,
        run: &RunRef,
        metric: &Metric,
        taken: i64,
        incomplete: Option<Measurement>,
        stopping: bool,
    ) -> Measurement {
        let p = &metric.provider;
        if let Some(web) = p.get("web") {
            return self.web(web, metric).await;
        }
        if let Some(prom) = p.get("prometheus") {
            return self.prometheus(prom, metric).await;
        }
        if let Some(job) = p.get("job") {
            let r = match incomplete {
                Some(m) if stopping => terminate_job(cache, m).await,
                Some(m) => Ok(resume_job(cache, m)),
                None => start_job(cache, run, metric, job, taken + 1).await,
            };
            return r.unwrap_or_else(|e| Measurement::error(e.to_string()));
        }
        let kind = p
            .as_object()
            .and_then(|m| m.keys().next().cloned())
            .unwrap_or_default();
        Measurement::error(format!("provider '{kind}' is not supported by keel"))
    }

    fn client(&self, insecure: bool) -> &reqwest::Client {
        if insecure {
            &self.insecure
        } else {
            &self.client
        }
    }

    async fn web(&self, w: &Value, metric: &Metric) -> Measurement {
        let method = w["method"]
            .as_str()
            .filter(|m| !m.is_empty())
            .unwrap_or("GET");
        let body = w["body"].as_str().unwrap_or_default();
        let json_body = w.get("jsonBody").filter(|b| !b.is_null());
        if !body.is_empty() && json_body.is_some() {
            return Measurement::error(
                "use either Body or JSONBody; both cannot exists for WebMetric payload",
            );
        }
        if (!body.is_empty() || json_body.is_some()) && method == "GET" {
            return Measurement::error(
                "Body/JSONBody can only be used with POST or PUT WebMetric Method types",
            );
        }
        let Ok(m) = reqwest::Method::from_bytes(method.as_bytes()) else {
            return Measurement::error(format!("invalid method {method:?}"));
        };
        let url = w["url"].as_str().unwrap_or_default();
        let timeout = w["timeoutSeconds"]
            .as_u64()
            .filter(|t| *t > 0)
            .unwrap_or(10);
        let insecure = w["insecure"].as_bool().unwrap_or(false);
        let mut req = self
            .client(insecure)
            .request(m, url)
            .timeout(Duration::from_secs(timeout));
        for h in w["headers"].as_array().into_iter().flatten() {
            req = req.header(
                h["key"].as_str().unwrap_or_default(),
                h["value"].as_str().unwrap_or_default(),
            );
        }
        if let Some(b) = json_body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        } else if !body.is_empty() {
            req = req.body(body.to_string());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Measurement::error(error_chain(&e)),
        };
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Measurement::error(format!("received non 2xx response code: {status}"));
        }
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Measurement::error(format!("Received no bytes in response: {e}")),
        };
        let path = w["jsonPath"]
            .as_str()
            .filter(|p| !p.is_empty())
            .unwrap_or("{$}");
        let (result, shown) = match serde_json::from_slice::<Value>(&bytes) {
            Err(_) => {
                let s = String::from_utf8_lossy(&bytes).into_owned();
                (X::String(s.clone()), s)
            }
            Ok(doc) => match json_path(&doc, path) {
                Ok(v) => (expr::from_json(&v), v.to_string()),
                Err(e) => return Measurement::error(e),
            },
        };
        judged(&result, shown, metric)
    }

    async fn prometheus(&self, p: &Value, metric: &Metric) -> Measurement {
        let address = p["address"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/');
        let query = p["query"].as_str().unwrap_or_default();
        let Ok(mut url) = reqwest::Url::parse(&format!("{address}/api/v1/query")) else {
            return Measurement::error(format!("prometheus address {address:?} is not a URL"));
        };
        url.query_pairs_mut().append_pair("query", query);
        let local = url.host_str().is_some_and(is_local_prometheus);
        let (status, body) = if local {
            let Some(q) = LOCAL_PROMETHEUS.get() else {
                return Measurement::error(
                    "keel's query API is not running in this server (--metrics-listen off?)",
                );
            };
            q(url.query().unwrap_or_default())
        } else {
            let timeout = p["timeout"].as_u64().filter(|t| *t > 0).unwrap_or(30);
            let mut req = self
                .client(p["insecure"].as_bool().unwrap_or(false))
                .get(url)
                .timeout(Duration::from_secs(timeout));
            for h in p["headers"].as_array().into_iter().flatten() {
                req = req.header(
                    h["key"].as_str().unwrap_or_default(),
                    h["value"].as_str().unwrap_or_default(),
                );
            }
            match req.send().await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    (s, r.text().await.unwrap_or_default())
                }
                Err(e) => return Measurement::error(error_chain(&e)),
            }
        };
        let doc: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if doc["status"] != "success" {
            let msg = doc["error"].as_str().map_or_else(
                || format!("prometheus answered {status}"),
                |e| format!("{}: {e}", doc["errorType"].as_str().unwrap_or("error")),
            );
            return Measurement::error(msg);
        }
        match prom_result(&doc["data"]) {
            Ok((result, shown)) => judged(&result, shown, metric),
            Err(e) => Measurement::error(e),
        }
    }
}

/// A reqwest error with its causes (the top one alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The measurement of a value: phase from the conditions, or Error.
fn judged(result: &X, shown: String, metric: &Metric) -> Measurement {
    match expr::evaluate(result, &metric.success_condition, &metric.failure_condition) {
        Ok(phase) => Measurement {
            phase,
            value: shown,
            ..Measurement::default()
        },
        Err(e) => Measurement {
            value: shown,
            ..Measurement::error(e)
        },
    }
}

/// Kubernetes' `JSONPath` template (`{$.data.ok}`, `{.items[0]}`): the first
/// value it selects.
pub fn json_path(doc: &Value, template: &str) -> Result<Value, String> {
    let t = template.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(t)
        .trim();
    let path = if inner.starts_with('$') {
        inner.to_string()
    } else if inner.starts_with('.') || inner.starts_with('[') {
        format!("${inner}")
    } else {
        format!("$.{inner}")
    };
    let found = doc
        .query(&path)
        .map_err(|e| format!("Could not find JSONPath in body: {e}"))?;
    found
        .first()
        .map(|v| (*v).clone())
        .ok_or_else(|| "result of web metric produced no value".to_string())
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)` as Prometheus' values print.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{f}")
    }
}

fn sample(v: &Value) -> f64 {
    match v[1].as_str() {
        Some("+Inf" | "Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some(s) => s.parse().unwrap_or(f64::NAN),
        None => f64::NAN,
    }
}

/// Argo's conversion of a query result: a vector or matrix is an array of
/// its sample values, a scalar a float.
pub fn prom_result(data: &Value) -> Result<(X, String), String> {
    let list = |vals: Vec<f64>| {
        let shown = format!(
            "[{}]",
            vals.iter()
                .map(|f| go_float(*f))
                .collect::<Vec<_>>()
                .join(",")
        );
        (X::Array(vals.into_iter().map(X::Float).collect()), shown)
    };
    match data["resultType"].as_str() {
        Some("scalar") => {
            let f = sample(&data["result"]);
            Ok((X::Float(f), go_float(f)))
        }
        Some("vector") => Ok(list(
            data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| sample(&s["value"]))
                .collect(),
        )),
        Some("matrix") => Ok(list(
            data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
                .map(|v| sample(&v))
                .collect(),
        )),
        _ => Err("Prometheus metric type not supported".into()),
    }
}

const UID_LABEL: &str = "analysisrun.argoproj.io/uid";

/// Argo's Job name: `<run uid>.<metric>.<n>`, the metric cut so that the
/// name fits 63 characters.
fn job_name(uid: &str, metric: &str, n: i64) -> String {
    let suffix = format!(".{n}");
    let room = 63usize.saturating_sub(uid.len() + 1 + suffix.len());
    let m: String = metric.chars().take(room).collect();
    format!("{uid}.{m}{suffix}")
        .trim_end_matches('.')
        .to_lowercase()
}

async fn start_job(
    cache: &mut Cache,
    run: &RunRef,
    metric: &Metric,
    job: &Value,
    n: i64,
) -> Result<Measurement, ClientError> {
    let name = job_name(&run.uid, &metric.name, n);
    let mut meta = job.get("metadata").cloned().unwrap_or_else(|| json!({}));
    meta["name"] = json!(name);
    meta["namespace"] = json!(run.namespace);
    meta["labels"][UID_LABEL] = json!(run.uid);
    meta["annotations"]["analysisrun.argoproj.io/run-name"] = json!(run.name);
    meta["annotations"]["analysisrun.argoproj.io/metric-name"] = json!(metric.name);
    meta["ownerReferences"] = json!([run.owner]);
    let mut spec = job.get("spec").cloned().unwrap_or_else(|| json!({}));
    spec["template"]["metadata"]["labels"][UID_LABEL] = json!(run.uid);
    let obj = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec});
    match cache.create(super::jobs(), obj).await {
        Ok(_) => {}
        Err(e) if e.is_conflict() || e.code == 409 => {}
        Err(e) => return Err(e),
    }
    Ok(Measurement {
        phase: Phase::Running,
        metadata: [
            ("job-name".to_string(), name),
            ("job-namespace".to_string(), run.namespace.clone()),
        ]
        .into(),
        ..Measurement::default()
    })
}

fn job_of<'a>(cache: &'a Cache, m: &Measurement) -> Option<&'a Value> {
    let ns = m.metadata.get("job-namespace")?;
    let name = m.metadata.get("job-name")?;
    cache.get(super::jobs(), ns, name)
}

fn resume_job(cache: &Cache, mut m: Measurement) -> Measurement {
    let Some(job) = job_of(cache, &m) else {
        m.phase = Phase::Error;
        m.message = format!(
            "job {} not found",
            m.metadata.get("job-name").cloned().unwrap_or_default()
        );
        return m;
    };
    let cond = |t: &str| {
        job.pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| c["type"] == t && c["status"] == "True")
            .cloned()
    };
    if cond("Complete").is_some() || cond("SuccessCriteriaMet").is_some() {
        m.phase = Phase::Successful;
    } else if let Some(c) = cond("Failed") {
        m.phase = Phase::Failed;
        m.message = c["message"].as_str().unwrap_or_default().to_string();
    }
    m
}

async fn terminate_job(cache: &mut Cache, mut m: Measurement) -> Result<Measurement, ClientError> {
    if let Some(job) = job_of(cache, &m).cloned() {
        let (ns, name) = (
            crate::objects::meta_str(&job, "namespace").to_string(),
            crate::objects::meta_str(&job, "name").to_string(),
        );
        let uid = crate::objects::meta_str(&job, "uid").to_string();
        cache.delete(super::jobs(), &ns, &name, &uid).await?;
    }
    m.phase = Phase::Successful;
    m.message = "Metric Terminated".into();
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_jsonpath_templates() {
        let doc = json!({"data": {"ok": true, "rate": 0.99, "items": [1, 2]}});
        assert_eq!(json_path(&doc, "{$.data.ok}"), Ok(json!(true)));
        assert_eq!(json_path(&doc, "{.data.rate}"), Ok(json!(0.99)));
        assert_eq!(json_path(&doc, "{$.data.items[1]}"), Ok(json!(2)));
        assert_eq!(json_path(&doc, "{$}"), Ok(doc.clone()));
        assert!(json_path(&doc, "{$.nope}").is_err());
    }

    #[test]
    fn prometheus_results_as_argo_converts_them() {
        let v = json!({"resultType": "vector", "result": [
            {"metric": {}, "value": [1.0, "0.99"]}, {"metric": {}, "value": [1.0, "NaN"]}]});
        let (x, shown) = prom_result(&v).unwrap();
        assert_eq!(shown, "[0.99,NaN]");
        assert_eq!(
            expr::condition(&x, "result[0] >= 0.95 && isNaN(result[1])"),
            Ok(true)
        );
        let (x, shown) =
            prom_result(&json!({"resultType": "scalar", "result": [1.0, "1"]})).unwrap();
        assert_eq!(
            (shown.as_str(), expr::condition(&x, "result == 1")),
            ("1", Ok(true))
        );
        let (x, shown) = prom_result(&json!({"resultType": "vector", "result": []})).unwrap();
        assert_eq!(shown, "[]");
        assert!(expr::evaluate(&x, "result[0] > 1", "").is_err());
        assert!(prom_result(&json!({"resultType": "string"})).is_err());
    }

    #[test]
    fn job_names_fit_a_label() {
        let uid = "2f1c3f0e-1d6c-4f59-9a8e-8f3c2b1a0d9e";
        assert_eq!(job_name(uid, "smoke", 1), format!("{uid}.smoke.1"));
        assert!(job_name(uid, &"x".repeat(80), 12).len() <= 63);
    }

    #[test]
    fn only_keels_service_names_are_answered_in_process() {
        assert!(is_local_prometheus("prometheus.keel-system.svc"));
        assert!(is_local_prometheus(
            "prometheus.keel-system.svc.cluster.local"
        ));
        assert!(!is_local_prometheus("prometheus.monitoring.svc"));
    }
}
