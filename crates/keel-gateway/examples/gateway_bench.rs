//! The gateway's proxy without an API server, for scripts/bench-gateway.sh:
//! `gateway_bench PORT BACKEND...` serves every host and path on
//! 127.0.0.1:PORT from the backends (`IP:PORT`), as an Ingress with one
//! Prefix `/` rule to a Service with those ready endpoints would.

use std::sync::Arc;
use std::time::Duration;

use keel_gateway::route::{Backend, Endpoint, PathMatch, PortRef, Route, Source, Table};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, backends @ ..] = args.as_slice() else {
        eprintln!("usage: gateway_bench PORT BACKEND...");
        std::process::exit(2);
    };
    let port: u16 = port.parse().expect("PORT");
    let endpoints = backends
        .iter()
        .enumerate()
        .map(|(i, b)| Endpoint {
            addr: b.parse().expect("BACKEND is IP:PORT"),
            pod: format!("backend-{i}"),
        })
        .collect();
    let mut table = Table::default();
    table.add(
        None,
        Route {
            source: Source {
                namespace: "bench".into(),
                name: "bench".into(),
            },
            path: PathMatch::prefix("/"),
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
            filters: Vec::new(),
            backends: vec![Backend {
                namespace: "bench".into(),
                service: "backend".into(),
                port: PortRef::Number(80),
                weight: 1,
                endpoints,
            }],
            canary: None,
            ssl_redirect: false,
            order: (String::new(), "bench/bench".into()),
        },
    );
    table.finish();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let certs = Arc::new(keel_gateway::tls::Certs::new(
            keel_gateway::tls::fallback().expect("certificate"),
        ));
        let sh = Arc::new(keel_gateway::proxy::Shared::new(
            certs,
            Arc::default(),
            Duration::from_mins(1),
            443,
        ));
        sh.set_table(table);
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        eprintln!("listening on 127.0.0.1:{port}");
        keel_gateway::proxy::serve(l, sh, None).await;
    });
}
