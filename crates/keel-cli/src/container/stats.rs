//! `keel stats`.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use keel_runtime::engine::{self};
use keel_runtime::{Status, ids, stats};
use serde_json::json;

use crate::output::{Format, human_size, print_structured, table};

use super::flags::StatsArgs;
use super::{hinted, open, resolve};

#[allow(clippy::cast_precision_loss)] // percentages for display
pub fn stats_cmd(root: &Path, a: StatsArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let ids: Vec<String> = if a.containers.is_empty() {
        c.ids()
            .map_err(hinted)?
            .into_iter()
            .filter(|id| a.all || engine::effective_status(&c, id) == Status::Running)
            .collect()
    } else {
        a.containers
            .iter()
            .map(|n| resolve(&c, n))
            .collect::<anyhow::Result<_>>()?
    };
    let template = crate::template::Template::from_flag(a.format.as_deref())?
        .map(|t| t.headers(&[("ID", "CONTAINER ID"), ("Container", "CONTAINER")]));
    loop {
        let first: Vec<Option<stats::Sample>> = ids.iter().map(|id| stats::sample(id)).collect();
        let t0 = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        let wall = t0.elapsed().as_nanos() as f64;
        let mut rows = Vec::new();
        let mut objs = Vec::new();
        for (id, s0) in ids.iter().zip(first) {
            let name = c.config(id).map(|x| x.name).unwrap_or_default();
            let s1 = stats::sample(id);
            let (cpu, s1) = match (s0, s1) {
                (Some(a0), Some(a1)) => (
                    a1.cpu_ns.saturating_sub(a0.cpu_ns) as f64 / wall * 100.0,
                    a1,
                ),
                _ => (0.0, stats::Sample::default()),
            };
            let (mem, lim, pids) = (s1.memory_usage, s1.memory_limit, s1.pids);
            let net_io = format!("{} / {}", human_size(s1.net_rx), human_size(s1.net_tx));
            let block_io = format!(
                "{} / {}",
                human_size(s1.block_read),
                human_size(s1.block_write)
            );
            let mem_pct = if lim > 0 {
                mem as f64 / lim as f64 * 100.0
            } else {
                0.0
            };
            objs.push(json!({"ID": ids::short(id), "Container": ids::short(id), "Name": name, "CPUPerc": format!("{cpu:.2}%"),
                "MemUsage": format!("{} / {}", human_size(mem), human_size(lim)), "MemPerc": format!("{mem_pct:.2}%"),
                "MemUsageBytes": mem, "MemLimitBytes": lim, "CPUPercent": cpu, "PIDs": pids,
                "NetIO": net_io, "BlockIO": block_io, "NetRxBytes": s1.net_rx, "NetTxBytes": s1.net_tx,
                "BlockReadBytes": s1.block_read, "BlockWriteBytes": s1.block_write}));
            rows.push(vec![
                ids::short(id).to_string(),
                name,
                format!("{cpu:.2}%"),
                format!("{} / {}", human_size(mem), human_size(lim)),
                format!("{mem_pct:.2}%"),
                net_io,
                block_io,
                pids.to_string(),
            ]);
        }
        if let Some(t) = &template {
            t.print(&objs)?;
        } else if a.output == Format::Table {
            if !a.no_stream && std::io::stdout().is_terminal() {
                print!("\x1b[2J\x1b[H");
            }
            print!(
                "{}",
                table(
                    &[
                        "CONTAINER ID",
                        "NAME",
                        "CPU %",
                        "MEM USAGE / LIMIT",
                        "MEM %",
                        "NET I/O",
                        "BLOCK I/O",
                        "PIDS"
                    ],
                    &rows
                )
            );
        } else {
            print_structured(&objs, a.output)?;
        }
        if a.no_stream {
            return Ok(ExitCode::SUCCESS);
        }
    }
}
