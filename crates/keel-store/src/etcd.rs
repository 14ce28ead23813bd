//! The etcd backend: every operation maps to one etcd request or transaction,
//! so revisions, compare-and-swap and watch semantics are etcd's own and a
//! write is acknowledged only after the cluster's quorum has committed it.

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, TxnOpResponse, WatchOptions,
};

use crate::{
    Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError,
    Watch, WatchItem, prefix_end,
};

/// The etcd backend. Cloning the inner client is cheap (shared channel).
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    endpoints: String,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

fn etcd(op: &'static str) -> impl FnOnce(etcd_client::Error) -> StoreError {
    move |source| {
        let msg = source.to_string();
        if msg.contains("required revision has been compacted") {
            StoreError::Expired {
                requested: 0,
                compacted: 0,
            }
        } else if msg.contains("required revision is a future revision") {
            StoreError::FutureRevision(0)
        } else if msg.contains("requested lease not found") {
            StoreError::LeaseNotFound(0)
        } else {
            StoreError::Etcd { op, source }
        }
    }
}

/// Whether a request failed before reaching etcd (a dead member's endpoint),
/// so that sending it again cannot apply it twice.
fn never_sent(e: &etcd_client::Error) -> bool {
    e.to_string().contains("tcp connect error")
}

/// Whether etcd failed in a way that goes away once the cluster has a leader
/// again (member loss, election); the request may or may not have applied.
fn transient(e: &etcd_client::Error) -> bool {
    let m = e.to_string();
    [
        "leader changed",
        "no leader",
        "currently unavailable",
        "timed out",
        "Timeout expired",
        "transport error",
    ]
    .iter()
    .any(|t| m.contains(t))
}

/// Re-evaluates a request while it fails with a connect error (the balanced
/// channel moves on to a live member) or, with `$ambiguous` given, with a
/// transient cluster error, recording that an earlier attempt may have
/// applied.
macro_rules! retry {
    ($e:expr) => {{
        // Reads: applying twice is harmless, so the flag is not consulted.
        let mut ambiguous = false;
        let r = retry!($e, ambiguous);
        let _ = ambiguous;
        r
    }};
    ($e:expr, $ambiguous:ident) => {{
        let mut attempt = 0u64;
        loop {
            match $e {
                Err(e) if attempt < 80 && (never_sent(&e) || transient(&e)) => {
                    if !never_sent(&e) {
                        $ambiguous = true;
                    }
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(25 * attempt.min(8))).await;
                }
                r => break r,
            }
        }
    }};
}

fn convert(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: kv.lease(),
    }
}

fn header_rev(h: Option<&etcd_client::ResponseHeader>) -> Revision {
    h.map_or(0, etcd_client::ResponseHeader::revision)
}

impl EtcdStore {
    /// Connects to the cluster at `endpoints` (`http://host:port` each).
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        let joined = endpoints.join(",");
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(5))
            .with_timeout(std::time::Duration::from_secs(10))
            .with_keep_alive(
                std::time::Duration::from_secs(5),
                std::time::Duration::from_secs(5),
            );
        let client = Client::connect(endpoints, Some(opts))
            .await
            .map_err(|source| StoreError::ConnectEtcd {
                endpoints: joined.clone(),
                source,
            })?;
        let store = EtcdStore {
            client,
            endpoints: joined.clone(),
        };
        // Fail now, not at the first request, when nothing answers.
        store
            .client
            .clone()
            .get("/", Some(GetOptions::new().with_count_only()))
            .await
            .map_err(|source| StoreError::ConnectEtcd {
                endpoints: joined,
                source,
            })?;
        Ok(store)
    }

    /// Why a guarded transaction failed: the key's current state.
    fn failure(key: &str, expected: Revision, resp: &etcd_client::TxnResponse) -> StoreError {
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(g) = op
                && let Some(kv) = g.kvs().first()
            {
                return StoreError::Conflict {
                    key: key.to_string(),
                    expected,
                    current: kv.mod_revision(),
                };
            }
        }
        StoreError::NotFound(key.to_string())
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = retry!(self.client.clone().get(key, None).await).map_err(etcd("get"))?;
        Ok(resp.kvs().first().map(convert))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let end = prefix_end(prefix).unwrap_or_else(|| vec![0]);
        let start = match &opts.start_after {
            // The first key after `s` is `s` followed by a zero byte.
            Some(s) if s.as_str() >= prefix => format!("{s}\0"),
            _ => prefix.to_string(),
        };
        let mut g = GetOptions::new()
            .with_range(end)
            .with_sort(SortTarget::Key, SortOrder::Ascend);
        if opts.limit > 0 {
            g = g.with_limit(opts.limit as i64);
        }
        if let Some(r) = opts.revision.filter(|r| *r > 0) {
            g = g.with_revision(r);
        }
        let resp = retry!(
            self.client
                .clone()
                .get(start.clone(), Some(g.clone()))
                .await
        )
        .map_err(etcd("list"))
        .map_err(|e| match e {
            StoreError::Expired { .. } => StoreError::Expired {
                requested: opts.revision.unwrap_or(0),
                compacted: 0,
            },
            StoreError::FutureRevision(_) => StoreError::FutureRevision(opts.revision.unwrap_or(0)),
            e => e,
        })?;
        let revision = opts
            .revision
            .filter(|r| *r > 0)
            .unwrap_or_else(|| header_rev(resp.header()));
        Ok(ListResult {
            items: resp.kvs().iter().map(convert).collect(),
            revision,
            more: resp.more(),
        })
    }

    async fn count(&self, prefix: &str) -> Result<usize> {
        let end = prefix_end(prefix).unwrap_or_else(|| vec![0]);
        let resp = retry!(
            self.client
                .clone()
                .get(
                    prefix,
                    Some(GetOptions::new().with_range(end.clone()).with_count_only())
                )
                .await
        )
        .map_err(etcd("count"))?;
        Ok(resp.count() as usize)
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: i64) -> Result<Revision> {
        let put = PutOptions::new().with_lease(lease);
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.clone(), Some(put))]);
        let mut ambiguous = false;
        let resp = retry!(self.client.clone().txn(txn.clone()).await, ambiguous)
            .map_err(etcd("create"))?;
        if !resp.succeeded() {
            // A retried create may have applied the first time: ours if the
            // stored value is byte-for-byte what we wrote.
            if ambiguous
                && let Some(kv) = self.get(key).await?
                && kv.value == value
            {
                return Ok(kv.mod_revision);
            }
            return Err(StoreError::AlreadyExists(key.to_string()));
        }
        Ok(header_rev(resp.header()))
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        lease: i64,
    ) -> Result<Revision> {
        let put = PutOptions::new().with_lease(lease);
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, value.clone(), Some(put))])
            .or_else([TxnOp::get(key, None)]);
        let mut ambiguous = false;
        let resp = retry!(self.client.clone().txn(txn.clone()).await, ambiguous)
            .map_err(etcd("update"))?;
        if !resp.succeeded() {
            if ambiguous
                && let Some(kv) = self.get(key).await?
                && kv.value == value
            {
                return Ok(kv.mod_revision);
            }
            return Err(Self::failure(key, expected, &resp));
        }
        Ok(header_rev(resp.header()))
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        let compare = match expected {
            Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev),
            // "Exists" is create_revision > 0.
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let mut ambiguous = false;
        let resp = retry!(self.client.clone().txn(txn.clone()).await, ambiguous)
            .map_err(etcd("delete"))?;
        if !resp.succeeded() {
            let failure = Self::failure(key, expected.unwrap_or(0), &resp);
            // Gone after an ambiguous retry: the first attempt deleted it.
            if ambiguous && matches!(failure, StoreError::NotFound(_)) {
                let rev = header_rev(resp.header());
                return Ok((
                    rev,
                    KeyValue {
                        key: key.to_string(),
                        value: Vec::new(),
                        create_revision: 0,
                        mod_revision: expected.unwrap_or(0),
                        lease: 0,
                    },
                ));
            }
            return Err(failure);
        }
        let rev = header_rev(resp.header());
        for op in resp.op_responses() {
            if let TxnOpResponse::Delete(d) = op
                && let Some(prev) = d.prev_kvs().first()
            {
                return Ok((rev, convert(prev)));
            }
        }
        Err(StoreError::NotFound(key.to_string()))
    }

    async fn watch(&self, prefix: &str, start: Revision) -> Result<Watch> {
        let end = prefix_end(prefix).unwrap_or_else(|| vec![0]);
        let mut opts = WatchOptions::new()
            .with_range(end)
            .with_prev_key()
            .with_progress_notify();
        if start > 0 {
            opts = opts.with_start_revision(start);
        }
        if start > 0 {
            // etcd reports a compacted start only after the watch was created;
            // a read at that revision tells now, so callers can fall back.
            let probe = retry!(
                self.client
                    .clone()
                    .get(
                        prefix,
                        Some(
                            GetOptions::new()
                                .with_range(prefix_end(prefix).unwrap_or_else(|| vec![0]))
                                .with_count_only()
                                .with_revision(start),
                        ),
                    )
                    .await
            )
            .map_err(etcd("watch"));
            match probe {
                Err(StoreError::Expired { .. }) => {
                    return Err(StoreError::Expired {
                        requested: start,
                        compacted: 0,
                    });
                }
                Err(StoreError::FutureRevision(_)) | Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        let stream = self
            .client
            .clone()
            .watch(prefix, Some(opts))
            .await
            .map_err(etcd("watch"))?;
        let (mut sender, mut stream) = stream.split();
        let first = stream.message().await.map_err(etcd("watch"))?;
        let Some(first) = first else {
            return Err(StoreError::WatchClosed);
        };
        if first.compact_revision() > 0 || first.canceled() {
            return Err(StoreError::Expired {
                requested: start,
                compacted: first.compact_revision(),
            });
        }
        let (watch, tx, mut cancel) = Watch::channel();
        let mut pending = Some(first);
        tokio::spawn(async move {
            // etcd's own progress notifications come every 10 minutes by
            // default; ask for one every second so bookmarks stay fresh.
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.tick().await;
            loop {
                let resp = match pending.take() {
                    Some(r) => r,
                    None => {
                        tokio::select! {
                            _ = &mut cancel => return,
                            _ = tick.tick() => {
                                let _ = sender.request_progress().await;
                                continue;
                            }
                            () = tx.closed() => return,
                            m = stream.message() => match m {
                                Ok(Some(r)) => r,
                                Ok(None) => {
                                    let _ = tx.send(Err(StoreError::WatchClosed)).await;
                                    return;
                                }
                                Err(source) => {
                                    let _ = tx.send(Err(StoreError::Etcd { op: "watch", source })).await;
                                    return;
                                }
                            }
                        }
                    }
                };
                if resp.compact_revision() > 0 || resp.canceled() {
                    let _ = tx
                        .send(Err(StoreError::Expired {
                            requested: start,
                            compacted: resp.compact_revision(),
                        }))
                        .await;
                    return;
                }
                let events = resp.events();
                if events.is_empty() {
                    if !resp.created()
                        && tx
                            .send(Ok(WatchItem::Progress(header_rev(resp.header()))))
                            .await
                            .is_err()
                    {
                        return;
                    }
                    continue;
                }
                for ev in events {
                    let Some(kv) = ev.kv() else { continue };
                    let kind = match ev.event_type() {
                        etcd_client::EventType::Put => EventKind::Put,
                        etcd_client::EventType::Delete => EventKind::Delete,
                    };
                    let mut kv = convert(kv);
                    if kind == EventKind::Delete {
                        kv.value.clear();
                    }
                    let prev = ev.prev_kv().map(convert);
                    if let Some(p) = &prev
                        && kind == EventKind::Delete
                    {
                        kv.create_revision = p.create_revision;
                    }
                    let item = WatchItem::Event(Event { kind, kv, prev });
                    if tx.send(Ok(item)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(watch)
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = retry!(
            self.client
                .clone()
                .get("/", Some(GetOptions::new().with_count_only()))
                .await
        )
        .map_err(etcd("read revision"))?;
        Ok(header_rev(resp.header()))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        retry!(self.client.clone().compact(revision, None).await)
            .map_err(etcd("compact"))
            .map_err(|e| match e {
                StoreError::Expired { .. } => StoreError::Expired {
                    requested: revision,
                    compacted: 0,
                },
                StoreError::FutureRevision(_) => StoreError::FutureRevision(revision),
                e => e,
            })?;
        Ok(())
    }

    async fn lease_grant(&self, ttl_secs: i64) -> Result<i64> {
        let resp = retry!(self.client.clone().lease_grant(ttl_secs, None).await)
            .map_err(etcd("grant lease"))?;
        Ok(resp.id())
    }

    async fn lease_keep_alive(&self, id: i64) -> Result<()> {
        let ttl = retry!(self.client.clone().lease_time_to_live(id, None).await)
            .map_err(etcd("keep lease alive"))?;
        if ttl.ttl() <= 0 {
            return Err(StoreError::LeaseNotFound(id));
        }
        let (mut keeper, mut stream) = retry!(self.client.clone().lease_keep_alive(id).await)
            .map_err(etcd("keep lease alive"))?;
        keeper
            .keep_alive()
            .await
            .map_err(etcd("keep lease alive"))?;
        match stream.message().await.map_err(etcd("keep lease alive"))? {
            // etcd answers an unknown lease with a TTL of 0 or less.
            Some(r) if r.ttl() > 0 => Ok(()),
            _ => Err(StoreError::LeaseNotFound(id)),
        }
    }

    async fn lease_revoke(&self, id: i64) -> Result<()> {
        retry!(self.client.clone().lease_revoke(id).await)
            .map_err(etcd("revoke lease"))
            .map_err(|e| match e {
                StoreError::LeaseNotFound(_) => StoreError::LeaseNotFound(id),
                e => e,
            })?;
        Ok(())
    }
}
