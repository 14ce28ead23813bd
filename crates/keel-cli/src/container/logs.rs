//! `keel logs`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use keel_runtime::engine::{self};
use keel_runtime::logs;

use super::flags::LogsArgs;
use super::parse::parse_duration_ms;
use super::{open, resolve};

pub(super) fn parse_since(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(secs) = s.parse::<i64>() {
        return DateTime::from_timestamp(secs, 0).context("timestamp out of range");
    }
    let ms = parse_duration_ms(s).with_context(|| {
        format!("invalid --since {s:?}: expected RFC 3339, a unix time or 42s/5m")
    })?;
    Ok(Utc::now() - chrono::Duration::milliseconds(ms as i64))
}

/// docker's `logs --details` prefix: the container's log attributes
/// (`--log-opt labels=`/`env=`) as sorted, escaped `k=v` pairs joined by
/// commas, and a space; only the space when there are none.
fn details_prefix(attrs: &std::collections::BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = attrs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                keel_hcl::funcs::query_escape(k),
                keel_hcl::funcs::query_escape(v)
            )
        })
        .collect();
    format!("{} ", pairs.join(","))
}

/// Follows a container's json log from where it ends now: what is appended
/// is read in whole lines (a rotated file is read from its start).
pub(super) struct LogFollower {
    path: std::path::PathBuf,
    offset: u64,
    pending: String,
}

impl LogFollower {
    pub(super) fn from_end(path: std::path::PathBuf) -> Self {
        let offset = std::fs::metadata(&path).map_or(0, |m| m.len());
        LogFollower {
            path,
            offset,
            pending: String::new(),
        }
    }

    /// Calls `f` with each entry appended since the last call; whether
    /// anything was read (the caller sleeps only when nothing was).
    pub(super) fn poll(&mut self, mut f: impl FnMut(logs::Entry)) -> anyhow::Result<bool> {
        let len = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if len < self.offset {
            self.offset = 0;
        }
        if len <= self.offset {
            return Ok(false);
        }
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Ok(false);
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = String::new();
        self.offset += file.read_to_string(&mut buf)? as u64;
        self.pending.push_str(&buf);
        while let Some(pos) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=pos).collect();
            if let Some(e) = logs::parse_line(line.trim_end()) {
                f(e);
            }
        }
        Ok(true)
    }
}

/// Writes an entry to our stdout or stderr, as it was written.
pub(super) fn print_entry(e: &logs::Entry, timestamps: bool, details: Option<&str>) {
    let mut line = String::new();
    if timestamps {
        line.push_str(&e.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
        line.push(' ');
    }
    if let Some(d) = details {
        line.push_str(d);
    }
    line.push_str(&e.log);
    if e.stream == "stderr" {
        let _ = std::io::stderr().write_all(line.as_bytes());
    } else {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(line.as_bytes());
        let _ = o.flush();
    }
}

pub fn logs_cmd(root: &Path, a: LogsArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let id = resolve(&c, &a.container)?;
    let path = c.log_path(&id);
    let details = if a.details {
        Some(details_prefix(
            &c.config(&id).map_err(super::hinted)?.extra.log_attrs,
        ))
    } else {
        None
    };
    let details = details.as_deref();
    let since = a.since.as_deref().map(parse_since).transpose()?;
    // docker's --until: entries up to that time (same forms as --since).
    let until = a
        .until
        .as_deref()
        .map(|u| parse_since(u).with_context(|| format!("invalid --until {u:?}")))
        .transpose()?;
    let in_window =
        |e: &logs::Entry| since.is_none_or(|s| e.time >= s) && until.is_none_or(|u| e.time <= u);
    let tail: Option<usize> = if a.tail == "all" {
        None
    } else {
        Some(
            a.tail
                .parse()
                .with_context(|| format!("invalid --tail {:?}", a.tail))?,
        )
    };
    let mut entries: Vec<logs::Entry> = logs::read_all(&path)
        .into_iter()
        .filter(|e| in_window(e))
        .collect();
    if let Some(n) = tail {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    for e in &entries {
        print_entry(e, a.timestamps, details);
    }
    if !a.follow {
        return Ok(ExitCode::SUCCESS);
    }
    // Follow from the end of what we printed: the current file size.
    let mut follower = LogFollower::from_end(path);
    loop {
        let active = engine::is_active(&c, &id);
        let read = follower.poll(|e| {
            if in_window(&e) {
                print_entry(&e, a.timestamps, details);
            }
        })?;
        if read {
            continue;
        }
        if !active || until.is_some_and(|u| Utc::now() > u) {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_prefix_is_dockers() {
        assert_eq!(details_prefix(&std::collections::BTreeMap::new()), " ");
        let attrs = [
            ("tier".to_string(), "web app".to_string()),
            ("a".to_string(), "x=1&y".to_string()),
        ]
        .into();
        assert_eq!(details_prefix(&attrs), "a=x%3D1%26y,tier=web+app ");
    }
}
