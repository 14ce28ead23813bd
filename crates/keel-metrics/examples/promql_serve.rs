//! Benchmark helper (scripts/bench-promql.sh): loads an `OpenMetrics` file
//! (the one `promtool tsdb create-blocks-from openmetrics` reads, timestamps
//! in seconds) into a keel-metrics store and serves the query API over plain
//! HTTP on 127.0.0.1, as Prometheus serves it by default, so the two are
//! measured the same way.
//!
//! usage: `promql_serve FILE ADDR`

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

fn load(path: &str) -> keel_metrics::Store {
    let store = keel_metrics::Store::new(keel_metrics::Options::default());
    let text = std::fs::read_to_string(path).expect("read the data file");
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (sample, ts) = line.rsplit_once(' ').expect("sample with a timestamp");
        let t = (ts.parse::<f64>().expect("timestamp") * 1000.0).round() as i64;
        let parsed = keel_metrics::exposition::parse(sample.as_bytes()).expect("sample line");
        for s in parsed {
            store.append(&s.labels, t, s.value).expect("append");
        }
    }
    store
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let store = Arc::new(load(&args[1]));
    let (series, samples) = store.stats();
    let listener = tokio::net::TcpListener::bind(&args[2]).await.expect("bind");
    eprintln!("loaded {series} series, {samples} samples; ready");
    loop {
        let (tcp, _) = listener.accept().await.expect("accept");
        let store = store.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let store = store.clone();
                    async move {
                        let method = req.method().as_str().to_string();
                        let path = req.uri().path().to_string();
                        let query = req.uri().query().unwrap_or_default().to_string();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(http_body_util::Collected::to_bytes)
                            .unwrap_or_default();
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as i64);
                        let r =
                            keel_metrics::api::handle(&store, &method, &path, &query, &body, now)
                                .unwrap_or(keel_metrics::api::Response {
                                    status: 404,
                                    body: String::new(),
                                });
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(r.status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(r.body)))
                                .expect("valid response"),
                        )
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
        });
    }
}
