//! `keel events`: docker's event stream, read from the log every keel
//! command and monitor appends to (`keel_runtime::events`). Without
//! `--since` it prints what happens from now on; with `--since` the
//! recorded history first; with `--until` it stops at that time (waiting
//! for it when it lies ahead), else it follows until interrupted.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use keel_runtime::events::{self, Event, Filter};

use crate::template::Template;

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Show all events created since timestamp (RFC 3339, unix time, or a
    /// duration such as 10m before now).
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp.
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output based on conditions provided (type=, event=,
    /// container=, image=, label=, network=, volume=).
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    /// Format the output using the given Go template.
    #[arg(long)]
    pub format: Option<String>,
}

/// docker's `timetypes.GetTimestamp`: RFC 3339 (with or without zone, or a
/// date alone, read as local time), unix seconds with optional fraction, or
/// a Go duration before now.
pub fn parse_time(s: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    use chrono::{Local, NaiveDate, NaiveDateTime, TimeZone};
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, f)
            && let Some(t) = Local.from_local_datetime(&n).earliest()
        {
            return Ok(t.with_timezone(&Utc));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(t) = d
            .and_hms_opt(0, 0, 0)
            .and_then(|n| Local.from_local_datetime(&n).earliest())
    {
        return Ok(t.with_timezone(&Utc));
    }
    if let Some((secs, frac)) = s.split_once('.').or(Some((s, "")))
        && !secs.is_empty()
        && secs.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 9
    {
        let secs: i64 = secs.parse().context("timestamp out of range")?;
        let nanos: u32 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<9}").parse().unwrap_or(0)
        };
        return DateTime::from_timestamp(secs, nanos).context("timestamp out of range");
    }
    let ns = keel_go::parse_duration(s).map_err(|_| {
        anyhow::anyhow!(
            "failed to parse value as time or duration: {s:?}\nhint: use RFC 3339 (2024-01-02T15:04:05Z), a unix time or a duration such as 10m"
        )
    })?;
    Ok(now - chrono::Duration::nanoseconds(ns))
}

fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// How each event is printed.
enum Printer {
    Text,
    /// docker's message as JSON (`json`, `{{json .}}`).
    Json,
    Template(Template),
}

impl Printer {
    fn new(format: Option<&str>) -> anyhow::Result<Printer> {
        Ok(match format.map(str::trim) {
            None | Some("") => Printer::Text,
            Some("json" | "{{json .}}" | "{{ json . }}") => Printer::Json,
            Some(f) => Printer::Template(Template::parse(f)?),
        })
    }

    fn print(&self, e: &Event) -> anyhow::Result<()> {
        use std::io::Write;
        let text = match self {
            Printer::Text => format!("{}\n", events::text_line(e)),
            Printer::Json => format!("{}\n", serde_json::to_string(e)?),
            Printer::Template(t) => t.render(&[e.template_value()]).context("--format")?,
        };
        let mut out = std::io::stdout().lock();
        // A closed pipe (`keel events | head`) ends the stream quietly.
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            std::process::exit(0);
        }
        Ok(())
    }
}

pub fn events(root: &Path, a: &EventsArgs) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let filter = Filter::parse(&a.filter).map_err(|e| anyhow::anyhow!(e))?;
    let since = a
        .since
        .as_deref()
        .map(|s| parse_time(s, now))
        .transpose()
        .context("--since")?;
    let until = a
        .until
        .as_deref()
        .map(|s| parse_time(s, now))
        .transpose()
        .context("--until")?;
    let printer = Printer::new(a.format.as_deref())?;
    let in_range = |e: &Event| {
        since.is_none_or(|s| e.time_nano >= nanos(s))
            && until.is_none_or(|u| e.time_nano <= nanos(u))
    };
    let mut cursor = if since.is_some() {
        let (past, cur) = events::read_all(root);
        for e in past.iter().filter(|e| in_range(e) && filter.matches(e)) {
            printer.print(e)?;
        }
        cur
    } else {
        events::end(root)
    };
    loop {
        if until.is_some_and(|u| Utc::now() > u) {
            // One last read: what was written up to `until` is shown.
            let (more, _) = events::read_from(root, cursor);
            for e in more.iter().filter(|e| in_range(e) && filter.matches(e)) {
                printer.print(e)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(100));
        let (more, cur) = events::read_from(root, cursor);
        cursor = cur;
        for e in more.iter().filter(|e| in_range(e) && filter.matches(e)) {
            printer.print(e)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_docker_reads_them() {
        let now = DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = |s: &str| parse_time(s, now).unwrap().to_rfc3339();
        assert_eq!(t("2024-05-01T10:00:00Z"), "2024-05-01T10:00:00+00:00");
        assert_eq!(t("1714557600"), "2024-05-01T10:00:00+00:00");
        assert_eq!(
            parse_time("1714557600.5", now)
                .unwrap()
                .timestamp_subsec_millis(),
            500
        );
        assert_eq!(t("10m"), "2024-05-01T11:50:00+00:00");
        assert_eq!(t("1h30m"), "2024-05-01T10:30:00+00:00");
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("", now).is_err());
        assert!(parse_time("12.3.4", now).is_err());
    }
}
