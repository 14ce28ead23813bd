//! The scraper: every interval, GETs each target's text exposition, adds
//! the target's `job` and `instance` labels (a sample's own are kept as
//! `exported_job`/`exported_instance`, Prometheus' `honor_labels: false`),
//! stores the samples at the scrape's time unless they carry their own,
//! and writes `up`, `scrape_duration_seconds` and `scrape_samples_scraped`.
//! A series that vanished from its target, or every series of a target
//! that failed, gets a staleness marker, so queries stop seeing it at once
//! rather than after the 5 minute lookback.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

use crate::labels::Labels;
use crate::store::{Store, stale_nan};

/// One scrape target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub job: String,
    /// `http://host:port/path`.
    pub url: String,
}

impl Target {
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
#[derive(Debug)]
pub struct Scraper {
    pub store: Arc<Store>,
    pub targets: Vec<Target>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Series each target produced last time (for staleness markers).
    last: Vec<HashSet<Labels>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Scraper {
    pub fn new(store: Arc<Store>, targets: Vec<Target>, interval: Duration) -> Self {
        let n = targets.len();
        Scraper {
            store,
            targets,
            interval,
            timeout: interval.min(Duration::from_secs(10)),
            last: vec![HashSet::new(); n],
        }
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
        let timeout = self.timeout;
        let mut set = tokio::task::JoinSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let url = t.url.clone();
            set.spawn(async move {
                let started = Instant::now();
                let ts = now_ms();
                let r = tokio::time::timeout(timeout, fetch(&url))
                    .await
                    .unwrap_or_else(|_| Err(ScrapeError::Timeout(url.clone())));
                (i, ts, started.elapsed(), r)
            });
        }
        let mut done = Vec::with_capacity(self.targets.len());
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                done.push(r);
            }
        }
        done.sort_by_key(|r| r.0);
        for (i, ts, took, body) in done {
            let parsed = body.and_then(|b| {
                crate::exposition::parse(&b)
                    .map_err(|e| ScrapeError::Parse(self.targets[i].url.clone(), e))
            });
            self.ingest(i, ts, took, parsed);
        }
    }

    fn ingest(
        &mut self,
        i: usize,
        ts: i64,
        took: Duration,
        parsed: Result<Vec<crate::exposition::Sample>, ScrapeError>,
    ) {
        let target = &self.targets[i];
        let instance = target.instance();
        let with_target = |l: &Labels| {
            let mut pairs: Vec<(String, String)> = Vec::with_capacity(l.len() + 2);
            for (k, v) in l.iter() {
                let k = if k == "job" || k == "instance" {
                    format!("exported_{k}")
                } else {
                    k.to_string()
                };
                pairs.push((k, v.to_string()));
            }
            pairs.push(("job".into(), target.job.clone()));
            pairs.push(("instance".into(), instance.clone()));
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
        for gone in self.last[i].difference(&seen) {
            let _ = self.store.append(gone, ts, stale_nan());
        }
        self.last[i] = seen;
        for (name, v) in [
            ("up", up),
            ("scrape_duration_seconds", took.as_secs_f64()),
            ("scrape_samples_scraped", n as f64),
        ] {
            let l = with_target(&Labels::new([("__name__", name)]));
            let _ = self.store.append(&l, ts, v);
        }
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
