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

fn matches_filter(cfg: &ContainerConfig, status: Status, f: &str) -> anyhow::Result<bool> {
    let (k, v) = f
        .split_once('=')
        .with_context(|| format!("bad filter {f:?}: expected KEY=VALUE"))?;
    Ok(match k {
        "name" => cfg.name.contains(v),
        "id" => cfg.id.starts_with(v),
        "status" => status.as_str() == v,
        "ancestor" => cfg.image == v || cfg.image_id.contains(v),
        "label" => match v.split_once('=') {
            Some((lk, lv)) => cfg.labels.get(lk).is_some_and(|x| x == lv),
            None => cfg.labels.contains_key(v),
        },
        "network" => cfg.joins(v),
        _ => bail!("invalid filter {k:?}"),
    })
}

pub fn ps(root: &Path, a: PsArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let mut rows = Vec::new();
    let mut objs = Vec::new();
    let mut ids_out = Vec::new();
    // Newest first, like docker.
    for id in c.ids().map_err(hinted)?.into_iter().rev() {
        let (Ok(cfg), Ok(st)) = (c.config(&id), c.state(&id)) else {
            continue;
        };
        let status = engine::effective_status(&c, &id);
        let has_status_filter = a.filter.iter().any(|f| f.starts_with("status="));
        if !a.all && !has_status_filter && status != Status::Running && status != Status::Restarting
        {
            continue;
        }
        let mut keep = true;
        for f in &a.filter {
            keep &= matches_filter(&cfg, status, f)?;
        }
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
        let st_text = status_text(&st, status);
        let ports = ports_text(&cfg, &st);
        ids_out.push(shown_id.clone());
        objs.push(json!({
            "ID": shown_id, "Image": cfg.image, "Command": cmd, "CreatedAt": cfg.created.to_rfc3339(),
            "RunningFor": created, "State": status.as_str(), "Status": st_text, "Ports": ports,
            "Names": cfg.name, "Labels": cfg.labels, "Networks": std::iter::once(cfg.network.clone()).chain(cfg.networking.extra_networks.iter().map(|e| e.network.clone())).collect::<Vec<_>>().join(","),
        }));
        rows.push(vec![
            shown_id,
            cfg.image.clone(),
            cmd,
            created,
            st_text,
            ports,
            cfg.name.clone(),
        ]);
    }
    if a.quiet {
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
                    "NAMES"
                ],
                &rows
            )
        );
    } else {
        print_structured(&objs, a.output)?;
    }
    Ok(ExitCode::SUCCESS)
}
