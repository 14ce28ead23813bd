//! docker's event stream without a daemon: every lifecycle step (container
//! create/start/die/kill/stop/destroy/…, image pull/tag/untag/delete/load…)
//! is appended as one JSON line, in docker's `events.Message` shape, to
//! `<root>/events.jsonl`; `keel events` reads it back and follows it. One
//! `write` with `O_APPEND` per event keeps concurrent writers (monitors,
//! CLIs) from interleaving. Past [`MAX_BYTES`] the file is moved to
//! `events.jsonl.1` (the one before is dropped): docker too keeps only a
//! bounded history. Recording is best effort: a full disk must not fail the
//! operation the event reports.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::record::ContainerConfig;

/// The log is rotated past this size.
pub const MAX_BYTES: u64 = 4 << 20;

/// `Actor` of a docker event: the object and its attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// One event, serialized as docker's API sends it (`docker events
/// --format '{{json .}}'`), with the deprecated `status`/`id`/`from` of
/// container and image events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

impl Event {
    /// An event of `kind` (`container`, `image`, `network`, `volume`) now.
    pub fn new(kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) -> Event {
        let now = chrono::Utc::now();
        let nanos = now.timestamp_nanos_opt().unwrap_or(0);
        let legacy = matches!(kind, "container" | "image");
        Event {
            status: if legacy {
                action.to_string()
            } else {
                String::new()
            },
            id: if legacy {
                id.to_string()
            } else {
                String::new()
            },
            from: if kind == "container" {
                attributes.get("image").cloned().unwrap_or_default()
            } else {
                String::new()
            },
            kind: kind.to_string(),
            action: action.to_string(),
            actor: Actor {
                id: id.to_string(),
                attributes,
            },
            scope: "local".to_string(),
            time: now.timestamp(),
            time_nano: nanos,
        }
    }

    /// The object as docker's templates see it: Go's field names
    /// (`{{.Status}}`, `{{.ID}}`, `{{.Actor.Attributes.name}}`, …).
    pub fn template_value(&self) -> serde_json::Value {
        serde_json::json!({
            "Status": self.status,
            "ID": self.id,
            "From": self.from,
            "Type": self.kind,
            "Action": self.action,
            "Actor": {"ID": self.actor.id, "Attributes": self.actor.attributes},
            "Scope": self.scope,
            "Time": self.time,
            "TimeNano": self.time_nano,
        })
    }
}

/// A container's attributes: its labels, `image` and `name` (docker's).
pub fn container_attributes(cfg: &ContainerConfig) -> BTreeMap<String, String> {
    let mut a = cfg.labels.clone();
    a.insert("image".into(), cfg.image.clone());
    a.insert("name".into(), cfg.name.clone());
    a
}

fn log_path(root: &Path) -> PathBuf {
    root.join("events.jsonl")
}

/// Appends `e` to the log under `root` (best effort, see the module docs).
pub fn record(root: &Path, e: &Event) {
    let path = log_path(root);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_BYTES) {
        let _ = std::fs::rename(&path, root.join("events.jsonl.1"));
    }
    let Ok(mut line) = serde_json::to_vec(e) else {
        return;
    };
    line.push(b'\n');
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path);
    if let Ok(mut f) = f {
        let _ = f.write_all(&line);
    }
}

/// Records a container event with the container's attributes plus `extra`.
pub fn container(root: &Path, cfg: &ContainerConfig, action: &str, extra: &[(&str, String)]) {
    let mut a = container_attributes(cfg);
    for (k, v) in extra {
        a.insert((*k).to_string(), v.clone());
    }
    record(root, &Event::new("container", action, &cfg.id, a));
}

/// Records an image event: `id` is the image (ID or reference, as docker
/// names it for the action), `name` its reference.
pub fn image(root: &Path, action: &str, id: &str, name: &str) {
    let mut a = BTreeMap::new();
    a.insert("name".to_string(), name.to_string());
    record(root, &Event::new("image", action, id, a));
}

/// Parses the lines of a log (unparsable lines, such as a line cut by a
/// crash, are skipped).
pub fn parse(text: &str) -> Vec<Event> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Where a reader of the log is: the file's identity and the offset read to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    inode: u64,
    offset: u64,
}

/// Every recorded event, oldest first (the rotated file, then the current
/// one), and a cursor at the end of what was read.
pub fn read_all(root: &Path) -> (Vec<Event>, Cursor) {
    let mut out = parse(&std::fs::read_to_string(root.join("events.jsonl.1")).unwrap_or_default());
    let (more, cur) = read_from(root, Cursor::default());
    out.extend(more);
    (out, cur)
}

/// A cursor at the current end of the log (`keel events` without `--since`).
pub fn end(root: &Path) -> Cursor {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(log_path(root)).map_or(Cursor::default(), |m| Cursor {
        inode: m.ino(),
        offset: m.len(),
    })
}

/// The events appended since `cur`; after a rotation, the rest of the old
/// file and the whole new one. Only whole lines are consumed.
pub fn read_from(root: &Path, cur: Cursor) -> (Vec<Event>, Cursor) {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    let path = log_path(root);
    let Ok(mut f) = std::fs::File::open(&path) else {
        return (Vec::new(), cur);
    };
    let inode = f.metadata().map_or(0, |m| m.ino());
    let mut events = Vec::new();
    let mut offset = cur.offset;
    if cur.inode != 0 && cur.inode != inode {
        // Rotated: finish the old file (now events.jsonl.1), then start over.
        if let Ok(mut old) = std::fs::File::open(root.join("events.jsonl.1"))
            && old.metadata().is_ok_and(|m| m.ino() == cur.inode)
        {
            let mut rest = String::new();
            if old.seek(SeekFrom::Start(cur.offset)).is_ok()
                && old.read_to_string(&mut rest).is_ok()
            {
                events.extend(parse(&rest));
            }
        }
        offset = 0;
    }
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(offset)).is_err() || f.read_to_end(&mut buf).is_err() {
        return (events, Cursor { inode, offset });
    }
    let whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    events.extend(parse(&String::from_utf8_lossy(&buf[..whole])));
    (
        events,
        Cursor {
            inode,
            offset: offset + whole as u64,
        },
    )
}

/// docker's `events --filter`: all keys must match, any value of a key.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub by_key: BTreeMap<String, Vec<String>>,
}

impl Filter {
    /// Parses `KEY=VALUE` filters; unknown keys are an error, as docker's.
    pub fn parse(items: &[String]) -> Result<Filter, String> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in items {
            let (k, v) = i
                .split_once('=')
                .ok_or_else(|| format!("bad format of filter (expected name=value): {i}"))?;
            let k = k.to_ascii_lowercase();
            if !matches!(
                k.as_str(),
                "type" | "event" | "container" | "image" | "label" | "network" | "volume" | "scope"
            ) {
                return Err(format!("invalid filter '{k}'"));
            }
            by_key.entry(k).or_default().push(v.to_string());
        }
        Ok(Filter { by_key })
    }

    fn any(&self, key: &str, f: impl Fn(&str) -> bool) -> bool {
        self.by_key
            .get(key)
            .is_none_or(|vs| vs.iter().any(|v| f(v)))
    }

    /// Whether `e` passes every filter.
    pub fn matches(&self, e: &Event) -> bool {
        let attr = |k: &str| e.actor.attributes.get(k).map_or("", String::as_str);
        // An object filter names the object by ID (or prefix) or name.
        let names = |kind: &str, v: &str| {
            e.kind == kind
                && (e.actor.id == v
                    || (v.len() >= 3 && e.actor.id.starts_with(v))
                    || attr("name") == v)
        };
        self.any("type", |v| e.kind == v)
            && self.any("event", |v| {
                // `exec_start: sh` style actions match their first word too.
                e.action == v || e.action.split(':').next() == Some(v)
            })
            && self.any("container", |v| names("container", v))
            && self.any("image", |v| {
                names("image", v)
                    || (e.kind == "container" && {
                        let img = attr("image");
                        img == v || img.strip_suffix(":latest") == Some(v)
                    })
            })
            && self.any("network", |v| names("network", v))
            && self.any("volume", |v| names("volume", v))
            && self.any("scope", |v| e.scope == v)
            && self.any("label", |v| match v.split_once('=') {
                Some((k, val)) => e.actor.attributes.get(k).is_some_and(|x| x == val),
                None => e.actor.attributes.contains_key(v),
            })
    }
}

/// docker's default line: `TIME TYPE ACTION ID (k=v, …)` with the time in
/// RFC 3339 with nanoseconds, local time.
pub fn text_line(e: &Event) -> String {
    let t = chrono::DateTime::from_timestamp_nanos(e.time_nano)
        .with_timezone(&chrono::Local)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut line = format!("{t} {} {} {}", e.kind, e.action, e.actor.id);
    if !e.actor.attributes.is_empty() {
        let attrs: Vec<String> = e
            .actor
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        line.push_str(" (");
        line.push_str(&attrs.join(", "));
        line.push(')');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, action: &str, id: &str, name: &str) -> Event {
        let mut a = BTreeMap::new();
        a.insert("name".to_string(), name.to_string());
        a.insert("image".to_string(), "busybox".to_string());
        Event::new(kind, action, id, a)
    }

    #[test]
    fn json_is_dockers_message() {
        let e = ev("container", "start", "abc", "web");
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["status"], "start");
        assert_eq!(v["from"], "busybox");
        assert_eq!(v["Actor"]["Attributes"]["name"], "web");
        assert_eq!(v["scope"], "local");
        let n = ev("network", "create", "n1", "net");
        let v: serde_json::Value = serde_json::to_value(&n).unwrap();
        assert!(v.get("status").is_none() && v.get("id").is_none());
        assert_eq!(e.template_value()["Actor"]["Attributes"]["name"], "web");
    }

    #[test]
    fn filters_and_across_keys_or_within() {
        let f = Filter::parse(&[
            "type=container".into(),
            "event=start".into(),
            "event=die".into(),
            "container=web".into(),
        ])
        .unwrap();
        assert!(f.matches(&ev("container", "start", "abc", "web")));
        assert!(f.matches(&ev("container", "die", "abc", "web")));
        assert!(!f.matches(&ev("container", "create", "abc", "web")));
        assert!(!f.matches(&ev("container", "start", "abc", "db")));
        assert!(!f.matches(&ev("image", "start", "abc", "web")));
        let by_id = Filter::parse(&["container=abcdef".into()]).unwrap();
        assert!(by_id.matches(&ev("container", "start", "abcdef0123", "x")));
        assert!(Filter::parse(&["bogus=1".into()]).is_err());
        assert!(Filter::parse(&["type".into()]).is_err());
        let img = Filter::parse(&["image=busybox".into()]).unwrap();
        assert!(img.matches(&ev("container", "start", "abc", "web")));
    }

    #[test]
    fn appends_rotates_and_follows() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        assert_eq!(read_all(root).0, Vec::new());
        let start = end(root);
        record(root, &ev("container", "create", "a", "x"));
        let (got, cur) = read_from(root, start);
        assert_eq!(got.len(), 1);
        // A half-written line is left for the next read.
        std::fs::OpenOptions::new()
            .append(true)
            .open(root.join("events.jsonl"))
            .unwrap()
            .write_all(b"{\"partial")
            .unwrap();
        let (none, cur2) = read_from(root, cur);
        assert!(none.is_empty());
        assert_eq!(cur2, cur);
        // Rotation: the reader finishes the old file and reads the new one.
        std::fs::rename(root.join("events.jsonl"), root.join("events.jsonl.1")).unwrap();
        record(root, &ev("container", "start", "a", "x"));
        let (got, _) = read_from(root, cur);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].action, "start");
        assert_eq!(read_all(root).0.len(), 2);
    }

    #[test]
    fn text_line_as_docker_prints_it() {
        let mut e = ev("container", "create", "abc", "web");
        e.time_nano = 1_700_000_000_123_456_789;
        let l = text_line(&e);
        assert!(
            l.ends_with(" container create abc (image=busybox, name=web)"),
            "{l}"
        );
        assert!(l.contains(".123456789"), "{l}");
    }
}
