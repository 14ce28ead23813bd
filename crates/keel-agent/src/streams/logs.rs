//! `GET /containerLogs/{ns}/{pod}/{container}`: a container's log (keel's
//! json-file lines) as the kubelet serves it, with `follow`, `previous`,
//! `tailLines`, `sinceSeconds`/`sinceTime`, `timestamps` (RFC 3339 with
//! nine fractional digits, as Kubernetes' `RFC3339NanoFixed`) and
//! `limitBytes`. The previous container's log is kept by
//! [`keep_previous`] when a container is restarted, as the kubelet keeps
//! one dead container per container.

use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use hyper::Response;
use hyper::body::Frame;
use keel_runtime::logs::Entry;

use super::{Body, Ctx, Query, find_container, status};

/// A response body fed by a channel (a followed log).
#[derive(Debug)]
pub(crate) struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Where the previous container's log of `container` in pod `uid` is kept.
fn previous_path(root: &Path, uid: &str, container: &str) -> PathBuf {
    root.join("pods")
        .join(uid)
        .join("logs")
        .join(format!("{container}.previous.log"))
}

/// Keeps the log of container `id` (about to be removed for a restart) as
/// its pod container's previous log. Best effort: a log that cannot be kept
/// only makes `--previous` answer "not found".
pub fn keep_previous(root: &Path, id: &str) {
    use crate::runtime::{LABEL_CONTAINER, LABEL_POD_UID};
    let Ok(c) = keel_runtime::Containers::open(root) else {
        return;
    };
    let Ok(cfg) = c.config(id) else { return };
    let (Some(uid), Some(name)) = (
        cfg.labels.get(LABEL_POD_UID),
        cfg.labels.get(LABEL_CONTAINER),
    ) else {
        return;
    };
    let to = previous_path(root, uid, name);
    if let Some(dir) = to.parent()
        && std::fs::create_dir_all(dir).is_ok()
        && let Err(e) = std::fs::copy(c.log_path(id), &to)
    {
        tracing::warn!(container = id, error = %e, "previous log not kept");
    }
}

/// The options of a log request.
#[derive(Debug, Default)]
pub(crate) struct Options {
    pub follow: bool,
    pub tail: Option<usize>,
    pub since: Option<DateTime<Utc>>,
    pub timestamps: bool,
    pub limit_bytes: Option<usize>,
}

impl Options {
    pub fn parse(q: &Query, now: DateTime<Utc>) -> Result<Self, String> {
        let num = |k: &str| -> Result<Option<i64>, String> {
            q.get(k)
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| format!("{k}: invalid value {v:?}"))
                })
                .transpose()
        };
        let since = match (num("sinceSeconds")?, q.get("sinceTime")) {
            (Some(s), _) if s < 1 => return Err("sinceSeconds: must be greater than 0".into()),
            (Some(s), _) => Some(now - chrono::Duration::seconds(s)),
            (None, Some(t)) => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|e| format!("sinceTime: {t:?}: {e}"))?
                    .with_timezone(&Utc),
            ),
            (None, None) => None,
        };
        Ok(Options {
            follow: q.flag("follow"),
            tail: num("tailLines")?
                .filter(|n| *n >= 0)
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            since,
            timestamps: q.flag("timestamps"),
            limit_bytes: num("limitBytes")?
                .filter(|n| *n > 0)
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        })
    }
}

/// One entry as the kubelet prints it.
pub(crate) fn format_entry(e: &Entry, timestamps: bool) -> String {
    if timestamps {
        format!("{} {}", e.time.format("%Y-%m-%dT%H:%M:%S%.9fZ"), e.log)
    } else {
        e.log.clone()
    }
}

/// Complete lines of `path` from byte `from`: entries and the offset after
/// the last complete line.
pub(crate) fn read_from(path: &Path, from: u64) -> (Vec<Entry>, u64) {
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path)
        && f.seek(SeekFrom::Start(from)).is_ok()
    {
        let _ = f.read_to_end(&mut buf);
    }
    let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    let entries = buf[..end]
        .split(|b| *b == b'\n')
        .filter_map(|l| keel_runtime::logs::parse_line(std::str::from_utf8(l).ok()?))
        .collect();
    (entries, from + end as u64)
}

/// What the first answer holds: entries since `since`, the last `tail`.
pub(crate) fn select(mut entries: Vec<Entry>, o: &Options) -> Vec<Entry> {
    if let Some(s) = o.since {
        entries.retain(|e| e.time >= s);
    }
    if let Some(t) = o.tail {
        let skip = entries.len().saturating_sub(t);
        entries.drain(..skip);
    }
    entries
}

pub(crate) fn serve(
    ctx: &Ctx,
    ns: &str,
    pod: &str,
    container: &str,
    query: &Query,
) -> Response<Body> {
    let mut opts = match Options::parse(query, Utc::now()) {
        Ok(o) => o,
        Err(e) => return status(400, "BadRequest", &e),
    };
    let Some(found) = find_container(&ctx.root, ns, pod, container) else {
        return status(
            400,
            "BadRequest",
            &format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            ),
        );
    };
    let path = if query.flag("previous") {
        opts.follow = false;
        let p = previous_path(&ctx.root, &found.pod_uid, container);
        if !p.exists() {
            return status(
                400,
                "BadRequest",
                &format!(
                    "previous terminated container \"{container}\" in pod \"{pod}\" not found"
                ),
            );
        }
        p
    } else {
        match keel_runtime::Containers::open(&ctx.root) {
            Ok(c) => c.log_path(&found.id),
            Err(e) => return status(500, "InternalError", &e.to_string()),
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let (root, id) = (ctx.root.clone(), found.id.clone());
    tokio::spawn(async move {
        let mut left = opts.limit_bytes.unwrap_or(usize::MAX);
        let send = |entries: Vec<Entry>, left: &mut usize| {
            let mut out = String::new();
            for e in &entries {
                out.push_str(&format_entry(e, opts.timestamps));
            }
            let mut b = out.into_bytes();
            b.truncate(*left);
            *left -= b.len();
            b
        };
        let first_file = path.clone();
        let Ok((entries, mut offset)) =
            tokio::task::spawn_blocking(move || read_from(&first_file, 0)).await
        else {
            return;
        };
        let first = send(select(entries, &opts), &mut left);
        if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
            return;
        }
        while opts.follow && left > 0 && !tx.is_closed() {
            let (file, dir, cid) = (path.clone(), root.clone(), id.clone());
            let Ok((entries, next, running)) = tokio::task::spawn_blocking(move || {
                let running = crate::runtime::observe(&dir, &cid).is_some_and(|s| s.running);
                let (found, next) = read_from(&file, offset);
                (found, next, running)
            })
            .await
            else {
                return;
            };
            offset = next;
            let chunk = send(entries, &mut left);
            if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
            if !running {
                // Whatever it wrote before exiting has been read above.
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(ChannelBody(rx).boxed())
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(log: &str, secs: i64) -> Entry {
        Entry {
            log: log.into(),
            stream: "stdout".into(),
            time: DateTime::from_timestamp(secs, 5).unwrap(),
        }
    }

    #[test]
    fn tail_since_and_timestamps() {
        let now = DateTime::from_timestamp(1000, 0).unwrap();
        let q = Query::parse(Some("tailLines=2&sinceSeconds=100&timestamps=true"));
        let o = Options::parse(&q, now).unwrap();
        let all = vec![
            entry("a\n", 800),
            entry("b\n", 950),
            entry("c\n", 960),
            entry("d\n", 990),
        ];
        let got: Vec<String> = select(all, &o)
            .iter()
            .map(|e| format_entry(e, o.timestamps))
            .collect();
        assert_eq!(
            got,
            [
                "1970-01-01T00:16:00.000000005Z c\n",
                "1970-01-01T00:16:30.000000005Z d\n"
            ]
        );
        let q = Query::parse(Some("sinceTime=1970-01-01T00:15:50Z"));
        let o = Options::parse(&q, now).unwrap();
        assert_eq!(
            select(vec![entry("a\n", 949), entry("b\n", 950)], &o).len(),
            1
        );
        assert!(Options::parse(&Query::parse(Some("sinceSeconds=0")), now).is_err());
        assert!(Options::parse(&Query::parse(Some("tailLines=x")), now).is_err());
    }

    #[test]
    fn a_torn_last_line_waits_for_its_end() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let line = r#"{"log":"a\n","stream":"stdout","time":"2026-01-01T00:00:00.000000001Z"}"#;
        std::fs::write(&p, format!("{line}\n{{\"log\":\"b")).unwrap();
        let (e, off) = read_from(&p, 0);
        assert_eq!(e.len(), 1);
        assert_eq!(off, line.len() as u64 + 1);
        let (e, off2) = read_from(&p, off);
        assert!(e.is_empty());
        assert_eq!(off2, off);
    }
}
