//! The scraper: every interval, GETs each target's text exposition, adds
//! the target's `job` and `instance` labels (a sample's own are kept as
//! `exported_job`/`exported_instance`, Prometheus' `honor_labels: false`),
//! stores the samples at the scrape's time unless they carry their own,
//! and writes `up`, `scrape_duration_seconds` and `scrape_samples_scraped`.
//! A series that vanished from its target, or every series of a target
//! that failed, gets a staleness marker, so queries stop seeing it at once
//! rather than after the 5 minute lookback.
//!
//! Besides fixed targets, a [`Discover`] function (keel server: every
//! Node's gateway endpoint) is asked for targets before each round, as
//! Prometheus' service discovery is; a target that left gets staleness
//! markers for all its series. A target may bring its own [`Fetch`] (an
//! authenticated client) and extra target labels (`node`).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};

pub use bytes::Bytes;

use crate::labels::Labels;
use crate::store::{Store, stale_nan};

/// A future that resolves to a target's exposition body.
pub type FetchFuture = Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send>>;
/// How a target's body is fetched when not by plain HTTP.
pub type Fetch = Arc<dyn Fn() -> FetchFuture + Send + Sync>;
/// Finds targets before each round; `None` keeps the last ones found
/// (the discovery backend was unreachable).
pub type Discover =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Option<Vec<Target>>> + Send>> + Send + Sync>;

/// One scrape target.
#[derive(Clone)]
pub struct Target {
    pub job: String,
    /// `http://host:port/path` (with a [`Fetch`], any URL naming
    /// `host:port`).
    pub url: String,
    /// Target labels besides `job` and `instance` (e.g. `node`).
    pub labels: Vec<(String, String)>,
    /// Fetches the body; `None`: an HTTP GET of `url`.
    pub fetch: Option<Fetch>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("job", &self.job)
            .field("url", &self.url)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// A target scraped by plain HTTP.
    pub fn http(job: &str, url: &str) -> Self {
        Target {
            job: job.to_string(),
            url: url.to_string(),
            labels: Vec::new(),
            fetch: None,
        }
    }

    /// `job` and `instance`: what tells targets apart.
    fn key(&self) -> String {
        format!("{}\n{}", self.job, self.url)
    }

    /// `host:port` of the URL, the `instance` label.
    pub fn instance(&self) -> String {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |x| x.1);
        rest.split('/').next().unwrap_or_default().to_string()
    }
}

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("unsupported target URL {0} (want http://host:port/path)")]
    Url(String),
    #[error("connect to {0}")]
    Connect(String, #[source] std::io::Error),
    #[error("GET {0}: {1}")]
    Http(String, String),
    #[error("GET {0}: server returned HTTP status {1}")]
    Status(String, u16),
    #[error("GET {0}: timed out")]
    Timeout(String),
    #[error("parse {0}: {1}")]
    Parse(String, crate::exposition::ParseError),
}

/// Scrapes targets into a store.
pub struct Scraper {
    pub store: Arc<Store>,
    /// Fixed targets.
    pub targets: Vec<Target>,
    pub interval: Duration,
    pub timeout: Duration,
    discover: Option<Discover>,
    /// Targets the last discovery found.
    discovered: Vec<Target>,
    /// Series each target produced last time (for staleness markers).
    last: HashMap<String, HashSet<Labels>>,
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraper")
            .field("targets", &self.targets)
            .field("discovered", &self.discovered)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Scraper {
    pub fn new(store: Arc<Store>, targets: Vec<Target>, interval: Duration) -> Self {
        Scraper {
            store,
            targets,
            interval,
            timeout: interval.min(Duration::from_secs(10)),
            discover: None,
            discovered: Vec::new(),
            last: HashMap::new(),
        }
    }

    /// Also scrapes what `discover` finds before each round.
    #[must_use]
    pub fn with_discovery(mut self, discover: Discover) -> Self {
        self.discover = Some(discover);
        self
    }

    /// Scrapes every interval until the task is dropped.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.scrape_all().await;
            self.store.compact(now_ms());
            self.own_metrics();
        }
    }

    /// The store's own size, as Prometheus' `prometheus_tsdb_head_*`.
    fn own_metrics(&self) {
        let (series, samples) = self.store.stats();
        let ts = now_ms();
        for (name, v) in [
            ("keel_metrics_series", series),
            ("keel_metrics_samples", samples),
        ] {
            let l = Labels::new([("__name__", name), ("job", "keel-metrics")]);
            let _ = self.store.append(&l, ts, v as f64);
        }
    }

    /// One round over all targets, concurrently.
    pub async fn scrape_all(&mut self) {
        if let Some(d) = &self.discover
            && let Some(found) = d().await
        {
            self.discovered = found;
        }
        let targets: Vec<Target> = self
            .targets
            .iter()
            .chain(&self.discovered)
            .cloned()
            .collect();
        let timeout = self.timeout;
        let mut set = tokio::task::JoinSet::new();
        for (i, t) in targets.iter().enumerate() {
            let (url, fetcher) = (t.url.clone(), t.fetch.clone());
            set.spawn(async move {
                let started = Instant::now();
                let ts = now_ms();
                let body = async {
                    match fetcher {
                        Some(f) => f().await.map_err(|e| ScrapeError::Http(url.clone(), e)),
                        None => fetch(&url).await,
                    }
                };
                let r = tokio::time::timeout(timeout, body)
                    .await
                    .unwrap_or_else(|_| Err(ScrapeError::Timeout(url.clone())));
                (i, ts, started.elapsed(), r)
            });
        }
        let mut done = Vec::with_capacity(targets.len());
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                done.push(r);
            }
        }
        done.sort_by_key(|r| r.0);
        let ts = now_ms();
        for (i, ts, took, body) in done {
            let parsed = body.and_then(|b| {
                crate::exposition::parse(&b)
                    .map_err(|e| ScrapeError::Parse(targets[i].url.clone(), e))
            });
            self.ingest(&targets[i], ts, took, parsed);
        }
        // Targets that left: their series end now.
        let live: HashSet<String> = targets.iter().map(Target::key).collect();
        self.last.retain(|k, series| {
            if live.contains(k) {
                return true;
            }
            for gone in series.iter() {
                let _ = self.store.append(gone, ts, stale_nan());
            }
            false
        });
    }

    fn ingest(
        &mut self,
        target: &Target,
        ts: i64,
        took: Duration,
        parsed: Result<Vec<crate::exposition::Sample>, ScrapeError>,
    ) {
        let instance = target.instance();
        let own =
            |k: &str| k == "job" || k == "instance" || target.labels.iter().any(|(n, _)| n == k);
        let with_target = |l: &Labels| {
            let mut pairs: Vec<(String, String)> =
                Vec::with_capacity(l.len() + 2 + target.labels.len());
            for (k, v) in l.iter() {
                let k = if own(k) {
                    format!("exported_{k}")
                } else {
                    k.to_string()
                };
                pairs.push((k, v.to_string()));
            }
            pairs.push(("job".into(), target.job.clone()));
            pairs.push(("instance".into(), instance.clone()));
            pairs.extend(target.labels.iter().cloned());
            Labels::new(pairs)
        };
        let mut seen = HashSet::new();
        let (up, n) = match parsed {
            Ok(samples) => {
                let n = samples.len();
                for s in samples {
                    let l = with_target(&s.labels);
                    if let Err(e) = self.store.append(&l, s.timestamp.unwrap_or(ts), s.value) {
                        tracing::debug!(error = %e, "sample not stored");
                    }
                    if s.timestamp.is_none() {
                        seen.insert(l);
                    }
                }
                (1.0, n)
            }
            Err(e) => {
                tracing::debug!(error = %e, "scrape failed");
                (0.0, 0)
            }
        };
        for (name, v) in [
            ("up", up),
            ("scrape_duration_seconds", took.as_secs_f64()),
            ("scrape_samples_scraped", n as f64),
        ] {
            let l = with_target(&Labels::new([("__name__", name)]));
            let _ = self.store.append(&l, ts, v);
            seen.insert(l);
        }
        let last = self.last.entry(target.key()).or_default();
        for gone in last.difference(&seen) {
            let _ = self.store.append(gone, ts, stale_nan());
        }
        *last = seen;
    }
}

/// GETs `url` over HTTP/1.1.
pub async fn fetch(url: &str) -> Result<Bytes, ScrapeError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ScrapeError::Url(url.to_string()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(ScrapeError::Url(url.to_string()));
    }
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| ScrapeError::Connect(authority.to_string(), e))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(|e| ScrapeError::Http(url.to_string(), e.to_string()))?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", authority)
        .header("accept", "text/plain;version=0.0.4")
        .header("user-agent", "keel-metrics")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ScrapeError::Http(url.to_string(), e.to_string()))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| ScrapeError::Http(url.to_string(), e.to_string()))?;
    if !resp.status().is_success() {
        return Err(ScrapeError::Status(url.to_string(), resp.status().as_u16()));
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ScrapeError::Http(url.to_string(), e.to_string()))?;
    Ok(body.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn node(name: &str, body: &'static str) -> Target {
        let f: Fetch =
            Arc::new(move || Box::pin(async move { Ok(Bytes::from_static(body.as_bytes())) }));
        Target {
            job: "keel-gateway".into(),
            url: format!("https://{name}:10250/metrics/gateway"),
            labels: vec![("node".into(), name.into())],
            fetch: Some(f),
        }
    }

    fn instant(store: &Store, q: &str) -> Vec<(String, f64)> {
        match crate::eval::instant(store, q, now_ms()).unwrap() {
            crate::eval::Value::Vector(v) => {
                let mut out: Vec<(String, f64)> = v
                    .into_iter()
                    .map(|s| (s.labels.value("node").to_string(), s.v))
                    .collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                out
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn discovered_targets_are_labelled_and_end_when_they_leave() {
        let store = Arc::new(Store::new(crate::Options::default()));
        let nodes = Arc::new(Mutex::new(vec![
            node(
                "n1",
                "keel_gateway_requests_total{pod=\"a\",node=\"x\"} 3\n",
            ),
            node("n2", "keel_gateway_requests_total{pod=\"b\"} 5\n"),
        ]));
        let found = nodes.clone();
        let discover: Discover = Arc::new(move || {
            let v = found.lock().unwrap().clone();
            Box::pin(async move { Some(v) })
        });
        let mut s = Scraper::new(store.clone(), Vec::new(), Duration::from_secs(1))
            .with_discovery(discover);
        s.scrape_all().await;
        assert_eq!(
            instant(&store, "keel_gateway_requests_total"),
            [("n1".into(), 3.0), ("n2".into(), 5.0)]
        );
        // The sample's own `node` label is kept as `exported_node`.
        assert_eq!(
            instant(&store, "keel_gateway_requests_total{exported_node=\"x\"}"),
            [("n1".into(), 3.0)]
        );
        assert_eq!(
            instant(&store, "up{job=\"keel-gateway\",instance=\"n2:10250\"}"),
            [("n2".into(), 1.0)]
        );
        // n2 leaves the cluster: its series end at once, up included.
        nodes.lock().unwrap().pop();
        tokio::time::sleep(Duration::from_millis(5)).await;
        s.scrape_all().await;
        assert_eq!(
            instant(&store, "keel_gateway_requests_total"),
            [("n1".into(), 3.0)]
        );
        assert!(instant(&store, "up{node=\"n2\"}").is_empty());
    }
}
