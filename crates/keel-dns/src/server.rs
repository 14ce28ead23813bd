//! The wire: queries over UDP and TCP (RFC 1035 framing: a 2-byte length
//! before each message), answers from [`Cluster`], everything else
//! forwarded to the upstream resolvers, UDP answers truncated to what the
//! client can take.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::answer::Lookup;
use crate::cluster::{Cluster, Event};

/// How long an upstream resolver gets per attempt.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// The UDP payload keel offers in its EDNS answers (the DNS flag day 2020
/// value: no IP fragmentation on common paths).
const EDNS_PAYLOAD: u16 = 1232;
/// A TCP client idle this long is dropped.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The DNS server's shared state: the cluster records and the upstreams.
#[derive(Debug, Clone)]
pub struct Dns {
    cluster: Arc<RwLock<Cluster>>,
    upstreams: Arc<Vec<SocketAddr>>,
}

/// How a query came (and so how large its answer may be).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What a query needs once parsed: sent at once, or something upstream.
enum Step {
    Done(Vec<u8>),
    Forward,
    Chase(Box<Message>, Name, RecordType),
}

impl Dns {
    /// A server for domain `zone` forwarding other names to `upstreams`.
    pub fn new(zone: &str, upstreams: Vec<SocketAddr>) -> Self {
        Dns {
            cluster: Arc::new(RwLock::new(Cluster::new(zone))),
            upstreams: Arc::new(upstreams),
        }
    }

    /// Applies one change of the watched objects.
    pub fn apply(&self, ev: Event) {
        self.cluster
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .apply(ev);
    }

    /// Applies changes as they come until the sender is dropped.
    pub async fn follow(&self, mut events: tokio::sync::mpsc::Receiver<Event>) {
        while let Some(ev) = events.recv().await {
            self.apply(ev);
        }
    }

    /// The answer to one query message (`None`: drop it, it is not a
    /// query one could answer, not even with an error).
    pub async fn handle(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        match self.step(query, transport) {
            Step::Done(b) => Some(b).filter(|b| !b.is_empty()),
            Step::Forward => Some(match self.upstream(query, transport).await {
                Some(b) => b,
                None => error_reply(query, ResponseCode::ServFail)?,
            }),
            Step::Chase(mut resp, target, qtype) => {
                let mut q = Message::query();
                q.metadata.recursion_desired = true;
                q.add_query(Query::query(target, qtype));
                let upstream = match q.to_vec() {
                    Ok(bytes) => self.upstream(&bytes, Transport::Udp).await,
                    Err(_) => None,
                };
                match upstream.and_then(|b| Message::from_vec(&b).ok()) {
                    Some(m) => {
                        resp.answers.extend(m.answers);
                    }
                    None => resp.metadata.response_code = ResponseCode::ServFail,
                }
                Some(encode(&resp, client_limit(query, transport)))
            }
        }
    }

    fn step(&self, query: &[u8], transport: Transport) -> Step {
        let Ok(msg) = Message::from_vec(query) else {
            return error_reply(query, ResponseCode::FormErr)
                .map_or(Step::Done(Vec::new()), Step::Done);
        };
        let mut resp = Message::response(msg.metadata.id, msg.metadata.op_code);
        resp.metadata.recursion_desired = msg.metadata.recursion_desired;
        resp.metadata.recursion_available = true;
        resp.metadata.checking_disabled = msg.metadata.checking_disabled;
        resp.add_queries(msg.queries.iter().cloned());
        if msg.edns.is_some() {
            let mut e = Edns::new();
            e.set_max_payload(EDNS_PAYLOAD);
            resp.set_edns(e);
        }
        let limit = payload_limit(&msg, transport);
        if msg.metadata.message_type == MessageType::Response {
            // Never answer answers: two servers would loop.
            return Step::Done(Vec::new());
        }
        if msg.metadata.message_type != MessageType::Query || msg.metadata.op_code != OpCode::Query
        {
            resp.metadata.response_code = ResponseCode::NotImp;
            return Step::Done(encode(&resp, limit));
        }
        let [q] = msg.queries.as_slice() else {
            resp.metadata.response_code = ResponseCode::FormErr;
            return Step::Done(encode(&resp, limit));
        };
        let cluster = self
            .cluster
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match cluster.lookup(q.name(), q.query_type()) {
            Lookup::NotOurs => return Step::Forward,
            Lookup::Answer {
                answers,
                additionals,
            } => {
                resp.metadata.authoritative = true;
                resp.answers = answers;
                resp.additionals = additionals;
            }
            Lookup::NoData => {
                resp.metadata.authoritative = true;
                resp.authorities.push(cluster.soa());
            }
            Lookup::NxDomain => {
                resp.metadata.authoritative = true;
                resp.metadata.response_code = ResponseCode::NXDomain;
                resp.authorities.push(cluster.soa());
            }
            Lookup::Cname { record, target } => {
                resp.metadata.authoritative = true;
                resp.answers.push(*record);
                return Step::Chase(Box::new(resp), target, q.query_type());
            }
        }
        Step::Done(encode(&resp, limit))
    }

    /// Asks the upstreams in turn; their answer, as they sent it.
    async fn upstream(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        for up in self.upstreams.iter() {
            let got = match transport {
                Transport::Udp => {
                    let r = tokio::time::timeout(UPSTREAM_TIMEOUT, udp_exchange(*up, query)).await;
                    match r {
                        Ok(Ok(b)) if truncated(&b) => {
                            // Whatever the client can take is its business:
                            // pass the truncated answer, it retries over TCP.
                            Ok(b)
                        }
                        Ok(r) => r,
                        Err(e) => Err(std::io::Error::other(e)),
                    }
                }
                Transport::Tcp => tokio::time::timeout(UPSTREAM_TIMEOUT, tcp_exchange(*up, query))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e))),
            };
            match got {
                Ok(b) => return Some(b),
                Err(e) => tracing::debug!(upstream = %up, error = %e, "upstream failed"),
            }
        }
        None
    }

    /// Serves UDP queries on `sock` until the task is dropped.
    pub async fn serve_udp(self, sock: UdpSocket) {
        let sock = Arc::new(sock);
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, peer) = match sock.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "dns udp receive");
                    continue;
                }
            };
            let query = &buf[..n];
            match self.step(query, Transport::Udp) {
                Step::Done(b) if b.is_empty() => {}
                Step::Done(b) => {
                    let _ = sock.send_to(&b, peer).await;
                }
                // Upstream round trips must not hold up the local answers.
                _ => {
                    let (me, sock, q) = (self.clone(), sock.clone(), query.to_vec());
                    tokio::spawn(async move {
                        if let Some(b) = me.handle(&q, Transport::Udp).await {
                            let _ = sock.send_to(&b, peer).await;
                        }
                    });
                }
            }
        }
    }

    /// Serves TCP connections on `l` until the task is dropped.
    pub async fn serve_tcp(self, l: TcpListener) {
        loop {
            let Ok((conn, _)) = l.accept().await else {
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                let _ = me.tcp_conn(conn).await;
            });
        }
    }

    async fn tcp_conn(&self, mut conn: TcpStream) -> std::io::Result<()> {
        loop {
            let Ok(len) = tokio::time::timeout(TCP_IDLE, conn.read_u16()).await else {
                return Ok(());
            };
            let mut q = vec![0u8; usize::from(len?)];
            conn.read_exact(&mut q).await?;
            let Some(b) = self.handle(&q, Transport::Tcp).await else {
                return Ok(());
            };
            if b.is_empty() {
                return Ok(());
            }
            let Ok(n) = u16::try_from(b.len()) else {
                return Ok(());
            };
            let mut out = Vec::with_capacity(b.len() + 2);
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(&b);
            conn.write_all(&out).await?;
        }
    }

    /// Binds UDP and TCP on `addr` (port 0: one free port for both) and
    /// serves them in background tasks; returns the address bound.
    pub async fn listen(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let mut last = None;
        for _ in 0..20 {
            let udp = UdpSocket::bind(addr).await?;
            let bound = udp.local_addr()?;
            match TcpListener::bind(bound).await {
                Ok(tcp) => {
                    tokio::spawn(self.clone().serve_udp(udp));
                    tokio::spawn(self.clone().serve_tcp(tcp));
                    return Ok(bound);
                }
                // The free UDP port may be taken for TCP: try another.
                Err(e) if addr.port() == 0 => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
    }

    /// [`Dns::listen`] on a fixed `addr` that need not exist yet
    /// (`IP_FREEBIND`): a node's pod-network gateway appears with its
    /// bridge, when the first pod starts, and that pod's first query must
    /// not meet a closed port while a poll waits for the address.
    pub fn listen_freebind(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = |ty, proto| -> std::io::Result<Socket> {
            let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
            if addr.is_ipv4() {
                s.set_freebind_v4(true)?;
            } else {
                s.set_freebind_v6(true)?;
            }
            s.set_nonblocking(true)?;
            Ok(s)
        };
        let u = socket(Type::DGRAM, Protocol::UDP)?;
        u.bind(&addr.into())?;
        let udp = UdpSocket::from_std(u.into())?;
        let bound = udp.local_addr()?;
        let t = socket(Type::STREAM, Protocol::TCP)?;
        t.set_reuse_address(true)?;
        t.bind(&bound.into())?;
        t.listen(1024)?;
        let tcp = TcpListener::from_std(t.into())?;
        tokio::spawn(self.clone().serve_udp(udp));
        tokio::spawn(self.clone().serve_tcp(tcp));
        Ok(bound)
    }
}

fn truncated(b: &[u8]) -> bool {
    b.get(2).is_some_and(|f| f & 0x02 != 0)
}

async fn udp_exchange(up: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if up.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(up).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = sock.recv(&mut buf).await?;
        // Only the answer to this query (same ID) counts.
        if n >= 2 && query.len() >= 2 && buf[..2] == query[..2] {
            return Ok(buf[..n].to_vec());
        }
    }
}

async fn tcp_exchange(up: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut c = TcpStream::connect(up).await?;
    let n = u16::try_from(query.len()).map_err(std::io::Error::other)?;
    let mut out = n.to_be_bytes().to_vec();
    out.extend_from_slice(query);
    c.write_all(&out).await?;
    let len = c.read_u16().await?;
    let mut b = vec![0u8; usize::from(len)];
    c.read_exact(&mut b).await?;
    Ok(b)
}

/// The largest answer the client takes: 512 bytes over UDP unless its EDNS
/// says more (up to what keel offers), 64 KiB over TCP.
fn payload_limit(msg: &Message, transport: Transport) -> usize {
    match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => usize::from(msg.max_payload().min(EDNS_PAYLOAD)),
    }
}

fn client_limit(query: &[u8], transport: Transport) -> usize {
    Message::from_vec(query).map_or(512, |m| payload_limit(&m, transport))
}

/// The message encoded; when larger than `limit`, the truncated form (no
/// records, TC set: the client asks again over TCP).
fn encode(resp: &Message, limit: usize) -> Vec<u8> {
    match resp.to_vec() {
        Ok(b) if b.len() <= limit => b,
        Ok(_) => {
            let mut t = resp.truncate();
            t.metadata.message_type = MessageType::Response;
            t.to_vec().unwrap_or_default()
        }
        Err(e) => {
            tracing::warn!(error = %e, "encode dns answer");
            let mut m = Message::error_msg(
                resp.metadata.id,
                resp.metadata.op_code,
                ResponseCode::ServFail,
            );
            m.add_queries(resp.queries.iter().cloned());
            m.to_vec().unwrap_or_default()
        }
    }
}

/// An error answer for a query that may not parse: its header's ID and
/// opcode, no question. `None` when not even the header is there, or the
/// message is itself an answer (never answer answers: no loops).
fn error_reply(query: &[u8], code: ResponseCode) -> Option<Vec<u8>> {
    let h = query.get(..12)?;
    if h[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([h[0], h[1]]);
    let op = OpCode::from_u8((h[2] >> 3) & 0x0f);
    let mut m = Message::error_msg(id, op, code);
    m.metadata.recursion_desired = h[2] & 0x01 != 0;
    m.to_vec().ok()
}
