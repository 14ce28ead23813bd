//! Serves keel-dns from a JSON array of Services and `EndpointSlices` (the
//! records `keel server` would have from its API), for scripts/bench-dns.sh.
//!
//! usage: `dns_serve OBJECTS.json 127.0.0.1:PORT`

use std::net::SocketAddr;

use keel_dns::{DEFAULT_ZONE, Dns, Event};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, addr] = args.as_slice() else {
        return Err("usage: dns_serve OBJECTS.json ADDR".into());
    };
    let objects: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(file)?)?;
    let addr: SocketAddr = addr.parse()?;
    // Two workers: what `keel server`'s runtime has on this machine class.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dns = Dns::new(DEFAULT_ZONE, Vec::new());
        dns.apply(Event::Reset(objects));
        let bound = dns.listen(addr).await?;
        println!("listening on {bound}");
        std::future::pending::<()>().await;
        Ok(())
    })
}
