//! `keel ps` and the status/ports/command texts compose shares.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use keel_runtime::engine::{self};
use keel_runtime::{ContainerConfig, ContainerState, Status, ids};
use serde_json::json;

use crate::output::{Format, human_duration, print_structured, table};

use super::flags::PsArgs;
use super::{hinted, open};

pub(crate) fn status_text(st: &ContainerState, status: Status) -> String {
    let now = Utc::now();
    let since = |t: Option<DateTime<Utc>>| {
        t.map_or_else(String::new, |t| human_duration((now - t).num_seconds()))
    };
    let mut s = match status {
        Status::Created => "Created".to_string(),
        Status::Running => format!("Up {}", since(st.started_at)),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            st.exit_code,
            since(st.finished_at)
        ),
        Status::Exited => {
            if st.finished_at.is_some() {
                format!("Exited ({}) {} ago", st.exit_code, since(st.finished_at))
            } else {
                "Created".to_string()
            }
        }
        Status::Removing => "Removal In Progress".to_string(),
    };
    if status == Status::Running
        && let Some(h) = &st.health
    {
        let h = if h.status == "starting" {
            "health: starting"
        } else {
            &h.status
        };
        s = format!("{s} ({h})");
    }
    s
}

pub(crate) fn ports_text(cfg: &ContainerConfig, st: &ContainerState) -> String {
    let ports = st
        .network
        .as_ref()
        .map_or_else(|| cfg.ports.clone(), |n| n.ports.clone());
    ports
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip.as_deref().unwrap_or("0.0.0.0"),
                p.host_port,
                p.container_port,
                p.protocol
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn command_text(cfg: &ContainerConfig) -> String {
    std::iter::once(cfg.path.as_str())
        .chain(cfg.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The statuses `ps -f status=` accepts (docker's list).
const STATUSES: [&str; 7] = [
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];

/// `ps -f KEY=VALUE`, checked for every container; `created` maps a
/// container name or ID of `before`/`since` to its creation time.
struct Filter {
    key: String,
    value: String,
    name: Option<regex::Regex>,
    created: Option<DateTime<Utc>>,
    /// `publish`/`expose`: the container ports (first, last) and protocol.
    ports: Option<(u16, u16, String)>,
}

/// `PORT[-PORT][/PROTO]` of docker's `publish`/`expose` filters (tcp by default).
fn port_range(v: &str) -> Option<(u16, u16, String)> {
    let (range, proto) = v.split_once('/').unwrap_or((v, "tcp"));
    if !["tcp", "udp", "sctp"].contains(&proto) {
        return None;
    }
    let (a, b) = range.split_once('-').unwrap_or((range, range));
    let (a, b) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b).then(|| (a, b, proto.to_string()))
}

impl Filter {
    fn port_matches(&self, port: u16, proto: &str) -> bool {
        self.ports
            .as_ref()
            .is_some_and(|(a, b, p)| p == proto && (*a..=*b).contains(&port))
    }
}

impl Filter {
    fn parse(c: &keel_runtime::Containers, f: &str) -> anyhow::Result<Self> {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("bad format of filter (expected name=value): {f}"))?;
        let mut out = Filter {
            key: k.to_string(),
            value: v.to_string(),
            name: None,
            created: None,
            ports: None,
        };
        match k {
            "name" => {
                out.name = Some(
                    regex::Regex::new(v).with_context(|| format!("invalid filter 'name={v}'"))?,
                );
            }
            "status" if !STATUSES.contains(&v) => {
                bail!(
                    "invalid filter 'status={v}': want one of {}",
                    STATUSES.join(", ")
                )
            }
            "exited" if v.parse::<i32>().is_err() => bail!("invalid filter 'exited={v}'"),
            "health" if !["starting", "healthy", "unhealthy", "none"].contains(&v) => {
                bail!("invalid filter 'health={v}': want starting, healthy, unhealthy or none")
            }
            "before" | "since" => {
                let id = c.resolve(v).map_err(super::hinted)?;
                out.created = Some(c.config(&id).map_err(super::hinted)?.created);
            }
            "publish" | "expose" => {
                out.ports = Some(port_range(v).with_context(|| {
                    format!("invalid filter '{k}={v}': want PORT[-PORT][/PROTO]")
                })?);
            }
            "id" | "status" | "exited" | "health" | "ancestor" | "label" | "network" | "volume" => {
            }
            _ => bail!("invalid filter '{k}'"),
        }
        Ok(out)
    }

    fn matches(&self, cfg: &ContainerConfig, st: &ContainerState, status: Status) -> bool {
        let v = self.value.as_str();
        match self.key.as_str() {
            "name" => self.name.as_ref().is_some_and(|r| r.is_match(&cfg.name)),
            "id" => cfg.id.starts_with(v),
            "status" => shown_state(&cfg.id, status) == v,
            "exited" => {
                status == Status::Exited
                    && st.finished_at.is_some()
                    && v.parse::<i32>().is_ok_and(|n| n == st.exit_code)
            }
            "health" => match &st.health {
                Some(h) => h.status == v,
                None => v == "none",
            },
            "ancestor" => {
                cfg.image == v
                    || cfg.image.strip_suffix(":latest") == Some(v)
                    || (v.len() >= 4
                        && cfg
                            .image_id
                            .trim_start_matches("sha256:")
                            .starts_with(v.trim_start_matches("sha256:")))
            }
            "label" => match v.split_once('=') {
                Some((lk, lv)) => cfg.labels.get(lk).is_some_and(|x| x == lv),
                None => cfg.labels.contains_key(v),
            },
            "network" => cfg.joins(v),
            // The container side of a `-p` mapping; published ports are
            // exposed too (docker adds them to the config's ExposedPorts).
            "publish" => cfg
                .ports
                .iter()
                .any(|p| self.port_matches(p.container_port, &p.protocol)),
            "expose" => {
                cfg.ports
                    .iter()
                    .any(|p| self.port_matches(p.container_port, &p.protocol))
                    || cfg.exposed_ports.iter().any(|e| {
                        let (n, proto) = e.split_once('/').unwrap_or((e, "tcp"));
                        n.parse().is_ok_and(|n| self.port_matches(n, proto))
                    })
            }
            "volume" => cfg.mounts.iter().any(|m| m.source == v || m.target == v),
            "before" => self.created.is_some_and(|t| cfg.created < t),
            "since" => self.created.is_some_and(|t| cfg.created > t),
            _ => false,
        }
    }
}

/// docker's state word: `paused` for a running container `keel pause` froze.
pub(crate) fn shown_state(id: &str, status: Status) -> &'static str {
    if status == Status::Running && super::is_paused(id) {
        "paused"
    } else {
        status.as_str()
    }
}

/// Bytes under `dir` (the container's writable layer), not following links.
pub(crate) fn du(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

pub fn ps(root: &Path, a: PsArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let template = crate::template::Template::from_flag(a.format.as_deref())?
        .map(|t| t.headers(&[("ID", "CONTAINER ID")]).label_context());
    let filters = a
        .filter
        .iter()
        .map(|f| Filter::parse(&c, f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // -n N / -l: the newest N created containers, whatever their state.
    let last = if a.latest {
        Some(1)
    } else {
        a.last.filter(|n| *n >= 0)
    };
    let all = a.all || last.is_some();
    let mut rows = Vec::new();
    let mut objs = Vec::new();
    let mut ids_out = Vec::new();
    let mut listed = Vec::new();
    for id in c.ids().map_err(hinted)? {
        if let (Ok(cfg), Ok(st)) = (c.config(&id), c.state(&id)) {
            listed.push((id, cfg, st));
        }
    }
    // Newest first, like docker.
    listed.sort_by(|x, y| y.1.created.cmp(&x.1.created).then(y.0.cmp(&x.0)));
    if let Some(n) = last {
        listed.truncate(usize::try_from(n).unwrap_or(0));
    }
    let has_status_filter = a
        .filter
        .iter()
        .any(|f| f.starts_with("status=") || f.starts_with("exited="));
    for (id, cfg, st) in listed {
        let status = engine::effective_status(&c, &id);
        if !all && !has_status_filter && status != Status::Running && status != Status::Restarting {
            continue;
        }
        // Filters of one key are alternatives, of different keys all apply.
        let mut keys: Vec<&str> = filters.iter().map(|f| f.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let keep = keys.iter().all(|k| {
            filters
                .iter()
                .filter(|f| f.key == *k)
                .any(|f| f.matches(&cfg, &st, status))
        });
        if !keep {
            continue;
        }
        let shown_id = if a.no_trunc {
            id.clone()
        } else {
            ids::short(&id).to_string()
        };
        let mut cmd = format!("\"{}\"", command_text(&cfg));
        if !a.no_trunc && cmd.chars().count() > 22 {
            cmd = format!("{}…\"", cmd.chars().take(20).collect::<String>());
        }
        let created = crate::output::ago(Some(&cfg.created.to_rfc3339()));
        let state = shown_state(&id, status);
        let mut st_text = status_text(&st, status);
        if state == "paused" {
            st_text.push_str(" (Paused)");
        }
        let ports = ports_text(&cfg, &st);
        let size = a.size.then(|| {
            let rw = du(&c.dir(&id).join("upper"));
            let image: u64 = cfg.lowerdirs.iter().map(|d| du(d)).sum();
            format!(
                "{} (virtual {})",
                crate::output::human_size(rw),
                crate::output::human_size(rw + image)
            )
        });
        ids_out.push(shown_id.clone());
        objs.push(json!({
            "ID": shown_id, "Image": cfg.image, "Command": cmd, "CreatedAt": cfg.created.to_rfc3339(),
            "RunningFor": created, "State": state, "Status": st_text, "Ports": ports,
            "Names": cfg.name, "Labels": cfg.labels, "Networks": std::iter::once(cfg.network.clone()).chain(cfg.networking.extra_networks.iter().map(|e| e.network.clone())).collect::<Vec<_>>().join(","),
            "Mounts": cfg.mounts.iter().map(|m| m.source.clone()).collect::<Vec<_>>().join(","),
            "Size": size.clone().unwrap_or_default(),
        }));
        let mut row = vec![
            shown_id,
            cfg.image.clone(),
            cmd,
            created,
            st_text,
            ports,
            cfg.name.clone(),
        ];
        row.extend(size);
        rows.push(row);
    }
    if let Some(t) = template.filter(|_| !a.quiet) {
        t.print(&objs)?;
    } else if a.quiet {
        for i in ids_out {
            println!("{i}");
        }
    } else if a.output == Format::Table {
        print!(
            "{}",
            table(
                &[
                    "CONTAINER ID",
                    "IMAGE",
                    "COMMAND",
                    "CREATED",
                    "STATUS",
                    "PORTS",
                    "NAMES",
                    "SIZE",
                ][..if a.size { 8 } else { 7 }],
                &rows
            )
        );
    } else {
        print_structured(&objs, a.output)?;
    }
    Ok(ExitCode::SUCCESS)
}
