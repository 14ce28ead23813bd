//! `keel volume …`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use keel_runtime::{Volumes, ids};
use serde_json::json;

use crate::output::{Format, print_structured, table};

use super::flags::VolumeCommand;
use super::parse::kv;
use super::{each_forced, hinted, open};

pub fn volume(root: &Path, cmd: VolumeCommand) -> anyhow::Result<ExitCode> {
    let vols = Volumes::open(root).map_err(hinted)?;
    let c = open(root)?;
    let vjson = |v: &keel_runtime::Volume| {
        json!({"CreatedAt": v.created.to_rfc3339(), "Driver": "local", "Labels": v.labels,
               "Mountpoint": v.mountpoint, "Name": v.name, "Options": {}, "Scope": "local"})
    };
    match cmd {
        VolumeCommand::Create(a) => {
            let name = a.name.unwrap_or_else(ids::new_id);
            let labels = a.label.iter().map(|l| kv(l)).collect();
            let v = vols.create(&name, labels, false).map_err(hinted)?;
            println!("{}", v.name);
        }
        VolumeCommand::Ls(a) => {
            let template = crate::template::Template::from_flag(a.format.as_deref())?
                .map(|t| t.headers(&[("Name", "VOLUME NAME")]));
            let mut list = vols.list().map_err(hinted)?;
            for f in &a.filter {
                let keep = ls_filter(&c, f)?;
                list.retain(|v| keep(v));
            }
            if let Some(t) = template.filter(|_| !a.quiet) {
                // The fields of docker's volume formatter.
                let v: Vec<serde_json::Value> = list
                    .iter()
                    .map(|v| {
                        let labels = v.labels.iter().map(|(k, x)| format!("{k}={x}")).collect::<Vec<_>>().join(",");
                        json!({"Name": v.name, "Driver": "local", "Scope": "local", "Mountpoint": v.mountpoint,
                               "Labels": labels, "Links": "N/A", "Size": "N/A", "Availability": "N/A", "Group": "N/A", "Status": "N/A"})
                    })
                    .collect();
                t.print(&v)?;
            } else if a.quiet {
                for v in &list {
                    println!("{}", v.name);
                }
            } else if a.output == Format::Table {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|v| vec!["local".to_string(), v.name.clone()])
                    .collect();
                print!("{}", table(&["DRIVER", "VOLUME NAME"], &rows));
            } else {
                print_structured(&list.iter().map(vjson).collect::<Vec<_>>(), a.output)?;
            }
        }
        VolumeCommand::Inspect(a) => {
            let template = crate::template::Template::from_flag(a.format.as_deref())?;
            let mut out = Vec::new();
            for n in &a.names {
                out.push(vjson(&vols.get(n).map_err(hinted)?));
            }
            match template {
                Some(t) => t.print(&out)?,
                None => print_structured(&out, Format::Json)?,
            }
        }
        VolumeCommand::Rm(a) => {
            return each_forced(&a.names, a.force, |n| {
                vols.remove(&c, n, a.force).map_err(hinted)
            });
        }
        VolumeCommand::Prune(a) => {
            let removed = vols.prune(&c, a.all).map_err(hinted)?;
            if !removed.is_empty() {
                println!("Deleted Volumes:");
                for n in &removed {
                    println!("{n}");
                }
                println!();
            }
            println!("Total reclaimed space: {} volumes", removed.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

type VolumeFilter = Box<dyn Fn(&keel_runtime::Volume) -> bool>;

/// One `volume ls -f KEY=VALUE`: `name` (a substring, as docker matches
/// it), `label=KEY[=VALUE]`, `driver`, `dangling=true|false` (no container
/// refers to it).
fn ls_filter(c: &keel_runtime::Containers, f: &str) -> anyhow::Result<VolumeFilter> {
    let (k, v) = f
        .split_once('=')
        .with_context(|| format!("bad format of filter (expected name=value): {f}"))?;
    let v = v.to_string();
    Ok(match k {
        "name" => Box::new(move |x| x.name.contains(&v)),
        "driver" => Box::new(move |_| v == "local"),
        "label" => Box::new(move |x| match v.split_once('=') {
            Some((lk, lv)) => x.labels.get(lk).is_some_and(|y| y == lv),
            None => x.labels.contains_key(&v),
        }),
        "dangling" => {
            let want = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => bail!("invalid filter 'dangling={v}'"),
            };
            let mut used = std::collections::BTreeSet::new();
            for id in c.ids().map_err(hinted)? {
                if let Ok(cfg) = c.config(&id) {
                    for m in cfg.mounts {
                        if m.kind == keel_runtime::MountKind::Volume {
                            used.insert(m.source);
                        }
                    }
                }
            }
            Box::new(move |x| used.contains(&x.name) != want)
        }
        _ => bail!("invalid filter '{k}'"),
    })
}
