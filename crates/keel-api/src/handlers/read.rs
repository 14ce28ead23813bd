//! Reads: list (selectors, limit/continue at one revision, Table output)
//! and watch (from a resourceVersion or with the initial list, bookmarks,
//! `sendInitialEvents`, 410 on compacted revisions).

use std::convert::Infallible;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Response;
use hyper::body::Frame;
use keel_store::{EventKind, ListOptions, StoreError, WatchItem};
use serde_json::{Value, json};

use super::object::decode;
use super::{Ctx, error_chain, include_mode, meta, meta_str, wants_table};
use crate::http::{Body, Fail, json_response};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::table;

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: i64,
    start: String,
}

fn selectors(ctx: &Ctx) -> Result<(LabelSelector, FieldSelector), Fail> {
    let ls = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or_default())
        .map_err(Fail::bad_request)?;
    let fs = FieldSelector::parse(
        ctx.query.get("fieldSelector").unwrap_or_default(),
        ctx.target.resource.kind,
    )
    .map_err(Fail::bad_request)?;
    Ok((ls, fs))
}

/// Matching objects, at most `limit` (0: all), from `cont` on. Returns the
/// items, the list's revision and the next continue token.
pub(crate) async fn list_items(
    ctx: &Ctx,
    limit: usize,
    cont: Option<&str>,
) -> Result<(Vec<Value>, i64, Option<String>), Fail> {
    let t = &ctx.target;
    let r = t.resource;
    let (ls, fs) = selectors(ctx)?;
    let prefix = r.list_prefix(t.namespace.as_deref());
    let mut opts = ListOptions::default();
    if let Some(c) = cont.filter(|c| !c.is_empty()) {
        let tok: ContinueToken = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| Fail::bad_request("continue key is not valid"))?;
        opts.revision = Some(tok.rv);
        opts.start_after = Some(tok.start);
    }
    let mut items = Vec::new();
    loop {
        opts.limit = if limit == 0 {
            0
        } else {
            (limit - items.len()).max(1) * 2
        };
        let page = ctx.state.store.list(&prefix, opts.clone()).await.map_err(|e| match e {
            StoreError::Expired { .. } => Fail::new(410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."),
            e => Fail::internal(error_chain(&e)),
        })?;
        opts.revision = Some(page.revision);
        let mut last_key = None;
        for kv in &page.items {
            last_key = Some(kv.key.clone());
            let obj = decode(&ctx.state, kv, kv.mod_revision)?;
            if ls.matches(meta(&obj, "labels")) && fs.matches(&obj) {
                items.push(obj);
                if limit > 0 && items.len() == limit {
                    let more = page.more
                        || kv.key != page.items.last().map(|k| k.key.clone()).unwrap_or_default();
                    let token = more.then(|| {
                        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
                            serde_json::to_vec(&ContinueToken {
                                rv: page.revision,
                                start: kv.key.clone(),
                            })
                            .unwrap_or_default(),
                        )
                    });
                    return Ok((items, page.revision, token));
                }
            }
        }
        if !page.more {
            return Ok((items, page.revision, None));
        }
        opts.start_after = last_key;
    }
}

/// Every object of `r` in `ns` (or everywhere), as the caller may see them.
pub(super) async fn list_in(
    ctx: &Ctx,
    r: &'static crate::resources::Resource,
    ns: Option<&str>,
) -> Result<(Vec<Value>, i64, Option<String>), Fail> {
    let other = Ctx {
        state: ctx.state.clone(),
        target: crate::http::Target {
            resource: r,
            namespace: ns.map(String::from),
            name: None,
            subresource: None,
        },
        query: crate::http::Query::default(),
        accept: String::new(),
        content_type: String::new(),
        user_agent: String::new(),
        user: ctx.user.clone(),
        body: bytes::Bytes::new(),
    };
    list_items(&other, 0, None).await
}

pub(super) async fn list(ctx: &Ctx) -> Result<Response<Body>, Fail> {
    let r = ctx.target.resource;
    let limit = ctx
        .query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(0);
    let (items, rev, cont) = list_items(ctx, limit, ctx.query.get("continue")).await?;
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    if wants_table(&ctx.accept) {
        return Ok(json_response(
            200,
            &table::table(r.kind, &items, meta, include_mode(&ctx.query)),
        ));
    }
    Ok(json_response(
        200,
        &json!({
            "kind": r.list_kind(),
            "apiVersion": r.api_version(),
            "metadata": meta,
            "items": items,
        }),
    ))
}

// ---------- watch ----------

pub(crate) fn watch_line(ty: &str, obj: &Value) -> Bytes {
    let mut b = serde_json::to_vec(&json!({"type": ty, "object": obj})).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

pub(super) async fn watch(ctx: Ctx) -> Result<Response<Body>, Fail> {
    let r = ctx.target.resource;
    let (ls, mut fs) = selectors(&ctx)?;
    if let Some(name) = &ctx.target.name {
        fs = FieldSelector::parse(&format!("metadata.name={name}"), r.kind)
            .map_err(Fail::bad_request)?;
    }
    let rv = ctx
        .query
        .get("resourceVersion")
        .unwrap_or_default()
        .to_string();
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    let initial_events = ctx.query.flag("sendInitialEvents");
    if initial_events && ctx.query.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(Fail::new(
            422,
            "Invalid",
            "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan",
        ));
    }
    let table_mode = wants_table(&ctx.accept);
    let include = include_mode(&ctx.query);
    let timeout = ctx
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let prefix = r.list_prefix(ctx.target.namespace.as_deref());
    let state = ctx.state.clone();

    let render = move |obj: &Value| -> Value {
        if table_mode {
            table::table(
                r.kind,
                std::slice::from_ref(obj),
                json!({"resourceVersion": meta_str(obj, "resourceVersion")}),
                include,
            )
        } else {
            obj.clone()
        }
    };
    let mut initial = Vec::new();
    let start;
    if rv.is_empty() || rv == "0" || initial_events {
        let (items, list_rev, _) = list_items(&ctx, 0, None).await?;
        for obj in &items {
            if fs.matches(obj) {
                initial.push(watch_line("ADDED", &render(obj)));
            }
        }
        if initial_events {
            initial.push(watch_line(
                "BOOKMARK",
                &json!({"kind": r.kind, "apiVersion": r.api_version(), "metadata": {"resourceVersion": list_rev.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}}),
            ));
        }
        start = list_rev + 1;
    } else {
        let n: i64 = rv
            .parse()
            .map_err(|_| Fail::bad_request(format!("invalid resource version: {rv}")))?;
        start = n + 1;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(256);
    let body = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let resp = Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(body))
        .map_err(Fail::internal)?;
    let mut store_watch = match state.store.watch(&prefix, start).await {
        Ok(w) => w,
        Err(StoreError::Expired { .. }) => {
            let status =
                Fail::new(410, "Expired", format!("too old resource version: {rv}")).to_json();
            let _ = tx.try_send(Ok(Frame::data(watch_line("ERROR", &status))));
            return Ok(resp);
        }
        Err(e) => return Err(Fail::internal(error_chain(&e))),
    };
    tokio::spawn(async move {
        for line in initial {
            if tx.send(Ok(Frame::data(line))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let mut last_bookmark = tokio::time::Instant::now();
        let matches = |o: &Value| ls.matches(meta(o, "labels")) && fs.matches(o);
        loop {
            let item = tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                () = tx.closed() => return,
                i = store_watch.next() => i,
            };
            let line = match item {
                None | Some(Err(StoreError::WatchClosed)) => return,
                Some(Err(StoreError::Expired { .. })) => {
                    let status = Fail::new(410, "Expired", "too old resource version").to_json();
                    let _ = tx.send(Ok(Frame::data(watch_line("ERROR", &status)))).await;
                    return;
                }
                Some(Err(e)) => {
                    let status = Fail::internal(error_chain(&e)).to_json();
                    let _ = tx.send(Ok(Frame::data(watch_line("ERROR", &status)))).await;
                    return;
                }
                Some(Ok(WatchItem::Progress(rev))) => {
                    if !bookmarks || last_bookmark.elapsed() < Duration::from_secs(5) {
                        continue;
                    }
                    last_bookmark = tokio::time::Instant::now();
                    watch_line(
                        "BOOKMARK",
                        &json!({"kind": r.kind, "apiVersion": r.api_version(), "metadata": {"resourceVersion": rev.to_string()}}),
                    )
                }
                Some(Ok(WatchItem::Event(ev))) => {
                    let rev = ev.revision();
                    let new = match ev.kind {
                        EventKind::Put => decode(&state, &ev.kv, rev).ok(),
                        EventKind::Delete => None,
                    };
                    let old = ev.prev.as_ref().and_then(|p| decode(&state, p, rev).ok());
                    let (ty, obj) = match (ev.kind, new, old) {
                        (EventKind::Put, Some(n), Some(o)) => match (matches(&o), matches(&n)) {
                            (true, true) => ("MODIFIED", n),
                            (false, true) => ("ADDED", n),
                            (true, false) => ("DELETED", n),
                            (false, false) => continue,
                        },
                        (EventKind::Put, Some(n), None) => {
                            if !matches(&n) {
                                continue;
                            }
                            if ev.kv.create_revision == rev {
                                ("ADDED", n)
                            } else {
                                ("MODIFIED", n)
                            }
                        }
                        (EventKind::Delete, _, Some(o)) if matches(&o) => ("DELETED", o),
                        _ => continue,
                    };
                    watch_line(ty, &render(&obj))
                }
            };
            if tx.send(Ok(Frame::data(line))).await.is_err() {
                return;
            }
        }
    });
    Ok(resp)
}
