//! A DNS query load tool for scripts/bench-dns.sh: CLIENTS threads, each
//! with its own UDP socket, ask A questions for the names of NAMES (one a
//! line, in turn) one at a time for SECONDS; prints queries/s, p50 and p99
//! latency and the answers that were not NOERROR with one record.
//!
//! usage: `dns_load SERVER:PORT NAMES SECONDS CLIENTS`

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

// Query counts stay far below 2^52: the casts to f64 are exact.
#[allow(clippy::cast_precision_loss)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, server, names, secs, clients] = args.as_slice() else {
        return Err("usage: dns_load SERVER:PORT NAMES SECONDS CLIENTS".into());
    };
    let server: SocketAddr = server.parse()?;
    let names: Vec<String> = std::fs::read_to_string(names)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let queries: Vec<Vec<u8>> = names
        .iter()
        .map(|n| {
            let mut m = Message::query();
            m.metadata.recursion_desired = true;
            m.add_query(Query::query(Name::from_ascii(n)?, RecordType::A));
            Ok(m.to_vec()?)
        })
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    let run_for = Duration::from_secs(secs.parse()?);
    let clients: usize = clients.parse()?;
    let start = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let queries = queries.clone();
            std::thread::spawn(move || -> std::io::Result<(Vec<u32>, u64)> {
                let sock = UdpSocket::bind("127.0.0.1:0")?;
                sock.connect(server)?;
                sock.set_read_timeout(Some(Duration::from_secs(1)))?;
                let mut lat = Vec::new();
                let mut bad = 0u64;
                let mut buf = [0u8; 4096];
                let mut i = c * 7919;
                while start.elapsed() < run_for {
                    let q = &queries[i % queries.len()];
                    i += 1;
                    let t = Instant::now();
                    sock.send(q)?;
                    match sock.recv(&mut buf) {
                        Ok(n) => {
                            lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                            let ok = Message::from_vec(&buf[..n]).is_ok_and(|m| {
                                m.metadata.response_code == ResponseCode::NoError
                                    && m.answers.len() == 1
                            });
                            bad += u64::from(!ok);
                        }
                        Err(_) => bad += 1,
                    }
                }
                Ok((lat, bad))
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut bad = 0;
    for w in workers {
        let (l, b) = w.join().map_err(|_| "a worker panicked")??;
        all.extend(l);
        bad += b;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "qps={:.0} p50_us={} p99_us={} answers={} bad={bad}",
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        all.len()
    );
    Ok(())
}
