//! Keep-alive HTTP/1.1 connections to pods, one pool per serving thread
//! (so its lock is never contended and a connection's task runs on the
//! thread that uses it). A connection goes back to the pool when its
//! response body has been read to the end, and is checked for readiness
//! when taken: no task spawned per request to watch it, as hyper-util's
//! pooled client does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::proxy::Body;

/// Idle connections kept per pod at most.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_mins(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made: the request comes back unsent, for
    /// another endpoint.
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
        req: Box<Request<Body>>,
    },
    #[error("{0}")]
    Upstream(#[from] hyper::Error),
}

#[derive(Debug, Default)]
pub struct Pool {
    idle: Mutex<Idle>,
}

#[derive(Debug)]
struct Idle {
    by_addr: HashMap<SocketAddr, Vec<(SendRequest<Body>, Instant)>>,
    swept: Instant,
}

impl Default for Idle {
    fn default() -> Self {
        Idle {
            by_addr: HashMap::new(),
            swept: Instant::now(),
        }
    }
}

/// A connection lent for one request; [`Lease::release`] returns it.
#[derive(Debug)]
pub struct Lease {
    pool: Arc<Pool>,
    addr: SocketAddr,
    tx: SendRequest<Body>,
}

impl Lease {
    /// Back to the pool: call only once the response was read to its end
    /// (the connection then takes the next request).
    pub fn release(self) {
        let mut idle = self.pool.lock();
        let now = Instant::now();
        if now.duration_since(idle.swept) > IDLE_TIMEOUT {
            // Pods that went away leave closed connections behind.
            idle.swept = now;
            idle.by_addr.retain(|_, list| {
                list.retain(|(tx, since)| !tx.is_closed() && now - *since < IDLE_TIMEOUT);
                !list.is_empty()
            });
        }
        let list = idle.by_addr.entry(self.addr).or_default();
        if list.len() < MAX_IDLE {
            list.push((self.tx, now));
        }
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A live connection to `addr`: the most recently used one that is
    /// ready now, else the most recent (its task has yet to finish the
    /// previous response: waiting on it would queue this request behind
    /// every other task of the thread).
    fn take(&self, addr: SocketAddr) -> Option<SendRequest<Body>> {
        let mut idle = self.lock();
        let list = idle.by_addr.get_mut(&addr)?;
        list.retain(|(tx, since)| !tx.is_closed() && since.elapsed() < IDLE_TIMEOUT);
        let i = list
            .iter()
            .rposition(|(tx, _)| tx.is_ready())
            .or(list.len().checked_sub(1))?;
        Some(list.remove(i).0)
    }

    /// Sends `req` to `addr` over an idle connection, or a new one when
    /// none is left. A request that an idle connection closed before it
    /// was written goes over another (the pod closed it while idle).
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        mut req: Request<Body>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        while let Some(mut tx) = self.take(addr) {
            // Ready once the previous response's end was processed.
            if tx.ready().await.is_err() {
                continue;
            }
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok((resp, self.lease(addr, tx))),
                Err(mut e) => match e.take_message() {
                    Some(r) => req = r,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        let connect = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr));
        let tcp = match connect.await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(source)) => {
                let req = Box::new(req);
                return Err(SendError::Connect { addr, source, req });
            }
            Err(_) => {
                let (source, req) = (std::io::ErrorKind::TimedOut.into(), Box::new(req));
                return Err(SendError::Connect { addr, source, req });
            }
        };
        let _ = tcp.set_nodelay(true);
        let (mut tx, conn) = http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%addr, error = %e, "gateway: pod connection ended");
            }
        });
        let resp = tx.send_request(req).await?;
        Ok((resp, self.lease(addr, tx)))
    }

    fn lease(self: &Arc<Self>, addr: SocketAddr, tx: SendRequest<Body>) -> Lease {
        Lease {
            pool: self.clone(),
            addr,
            tx,
        }
    }
}
