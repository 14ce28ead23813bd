//! `keel volume …`.

use std::path::Path;
use std::process::ExitCode;

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
            let list = vols.list().map_err(hinted)?;
            if a.quiet {
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
            let mut out = Vec::new();
            for n in &a.names {
                out.push(vjson(&vols.get(n).map_err(hinted)?));
            }
            print_structured(&out, Format::Json)?;
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
