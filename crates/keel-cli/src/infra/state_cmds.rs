//! `show`, `output`, `state …`, `workspace …`, `force-unlock`.

use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use keel_hcl::Value;
use keel_infra::addr::{Key, instance_addr, parse_inst_addr, parse_module};
use keel_infra::config::Mode;
use keel_infra::state::StateFile;

use super::Ctx;
use super::flags::Flags;

fn outputs_of(s: &StateFile) -> Vec<(String, Value, bool)> {
    s.outputs
        .iter()
        .map(|(k, o)| {
            let t = keel_hcl::Type::from_json(&o.ty).unwrap_or(keel_hcl::Type::Dynamic);
            (
                k.clone(),
                keel_hcl::render::from_json_typed(&o.value, &t)
                    .unwrap_or_else(|_| Value::dyn_null()),
                o.sensitive,
            )
        })
        .collect()
}

pub(super) fn output(ctx: &Ctx, rest: &[String]) -> Result<ExitCode> {
    let f = Flags::parse(rest, &["state"], &["json", "raw", "no-color"])?;
    let s = ctx.backend()?.read_unlocked()?;
    let outs = outputs_of(&s);
    if let Some(name) = f.args.first() {
        let Some((_, v, _)) = outs.iter().find(|(k, _, _)| k == name) else {
            eprintln!(
                "\nError: Output {name:?} not found\n\nThe output variable requested could not be found in the state file. If you\nrecently added this to your configuration, be sure to run `terraform apply`,\nsince the state won't be updated with new output variables until that command\nis run."
            );
            return Ok(ExitCode::from(1));
        };
        if f.flag("raw", false) {
            match &v.kind {
                keel_hcl::Kind::String(x) => print!("{x}"),
                keel_hcl::Kind::Number(n) => print!("{n}"),
                keel_hcl::Kind::Bool(b) => print!("{b}"),
                _ => {
                    eprintln!(
                        "\nError: Unsupported value for raw output\n\nThe -raw option only supports strings, numbers, and boolean values, but output value {name:?} is {}.\n\nUse the -json option for machine-readable representations of output values that have complex types.",
                        v.ty().friendly()
                    );
                    return Ok(ExitCode::from(1));
                }
            }
        } else if f.flag("json", false) {
            println!("{}", keel_hcl::render::to_json_string(v));
        } else {
            println!("{}", keel_hcl::render::format_value(&v.unmark_deep(), 0));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if f.flag("json", false) {
        let j: serde_json::Map<String, serde_json::Value> = s
            .outputs
            .iter()
            .map(|(k, o)| {
                (
                    k.clone(),
                    serde_json::json!({"sensitive": o.sensitive, "type": o.ty, "value": o.value}),
                )
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(ExitCode::SUCCESS);
    }
    if outs.is_empty() {
        eprintln!(
            "\nWarning: No outputs found\n\nThe state file either has no outputs defined, or all the defined outputs are\nempty. Please define an output in your configuration with the `output` keyword\nand run `terraform refresh` for it to become available. If you are using\ninterpolation, please verify the interpolated value is not empty. You can use\nthe `terraform console` command to assist."
        );
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", keel_infra::render::outputs_text(&outs));
    Ok(ExitCode::SUCCESS)
}

fn instances(
    s: &StateFile,
) -> Vec<(
    String,
    &keel_infra::state::ResourceState,
    &keel_infra::state::InstanceState,
)> {
    let mut out = Vec::new();
    for r in &s.resources {
        let mi = parse_module(r.module.as_deref().unwrap_or("")).unwrap_or_default();
        let key = if r.mode == "data" {
            format!("data.{}.{}", r.ty, r.name)
        } else {
            format!("{}.{}", r.ty, r.name)
        };
        for i in &r.instances {
            out.push((
                instance_addr(&mi, &key, &Key::from_json(i.index_key.as_ref())),
                r,
                i,
            ));
        }
    }
    out
}

fn show_instance(
    addr: &str,
    r: &keel_infra::state::ResourceState,
    i: &keel_infra::state::InstanceState,
) -> String {
    let providers = keel_infra::providers::Providers::builtin();
    let mode = if r.mode == "data" {
        Mode::Data
    } else {
        Mode::Managed
    };
    let v = keel_infra::apply::state_value(&providers, i, &r.ty, mode)
        .map(|v| keel_infra::state::apply_sensitive(v, &i.sensitive_attributes));
    let mut out = format!(
        "# {addr}:\n{} {:?} {:?} {{\n",
        if mode == Mode::Data {
            "data"
        } else {
            "resource"
        },
        r.ty,
        r.name
    );
    if let Some(m) = v.as_ref().and_then(Value::as_map) {
        let w = m
            .iter()
            .filter(|(_, x)| !x.is_null())
            .map(|(k, _)| k.len())
            .max()
            .unwrap_or(0);
        for (k, x) in m {
            if x.is_null() {
                continue;
            }
            let text = if x.sensitive {
                "(sensitive value)".to_string()
            } else {
                keel_hcl::render::format_value(x, 4)
            };
            out.push_str(&format!("    {k:w$} = {text}\n"));
        }
    }
    out.push_str("}\n");
    out
}

pub(super) fn show(ctx: &Ctx, rest: &[String]) -> Result<ExitCode> {
    let f = Flags::parse(rest, &[], &["json", "no-color"])?;
    if let Some(p) = f.args.first() {
        let text =
            std::fs::read_to_string(ctx.dir.join(p)).with_context(|| format!("reading {p}"))?;
        if let Ok(Some(s)) = StateFile::parse(std::path::Path::new(p), &text) {
            return show_state(&s, f.flag("json", false));
        }
        let j: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{p} is neither a state nor a plan file"))?;
        if f.flag("json", false) {
            let Some(pj) = j.get("plan_json") else {
                bail!(
                    "{p} was saved by an older keel without terraform's JSON plan; run plan -out again"
                );
            };
            println!("{}", serde_json::to_string(pj)?);
        } else {
            for c in j["changes"].as_array().into_iter().flatten() {
                println!("{}", c.as_str().unwrap_or_default());
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let s = ctx.backend()?.read_unlocked()?;
    show_state(&s, f.flag("json", false))
}

fn show_state(s: &StateFile, json: bool) -> Result<ExitCode> {
    if json {
        println!(
            "{}",
            serde_json::to_string(&keel_infra::plan_json::state_json(
                s,
                &keel_infra::providers::Providers::builtin()
            ))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if s.resources.is_empty() && s.outputs.is_empty() {
        println!("No state.");
        return Ok(ExitCode::SUCCESS);
    }
    for (addr, r, i) in instances(s) {
        println!("{}", show_instance(&addr, r, i));
    }
    let outs = outputs_of(s);
    if !outs.is_empty() {
        println!("\nOutputs:\n");
        print!("{}", keel_infra::render::outputs_text(&outs));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn state(ctx: &Ctx, rest: &[String]) -> Result<ExitCode> {
    let Some(sub) = rest.first() else {
        bail!("Usage: keel infra state <list|show|mv|rm|pull|push> [options] [args]");
    };
    let f = Flags::parse(
        &rest[1..],
        &["state", "lock-timeout", "id"],
        &["lock", "dry-run", "force", "ignore-remote-version"],
    )?;
    let backend = ctx.backend()?;
    match sub.as_str() {
        "list" => {
            let s = backend.read_unlocked()?;
            for (addr, _, _) in instances(&s) {
                if f.args.is_empty()
                    || f.args.iter().any(|a| {
                        addr == *a
                            || addr.starts_with(&format!("{a}["))
                            || addr.starts_with(&format!("{a}."))
                    })
                {
                    println!("{addr}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        "show" => {
            let s = backend.read_unlocked()?;
            let want = f.args.first().context("state show needs an address")?;
            for (addr, r, i) in instances(&s) {
                if &addr == want {
                    print!("{}", show_instance(&addr, r, i));
                    return Ok(ExitCode::SUCCESS);
                }
            }
            eprintln!(
                "\nError: No instance found for the given address!\n\nThis command requires that the address references one specific instance.\nTo view the available instances, use \"terraform state list\". Please modify\nthe address to reference a specific instance."
            );
            Ok(ExitCode::from(1))
        }
        "pull" => {
            let s = backend.read_unlocked()?;
            print!("{}", s.to_json());
            Ok(ExitCode::SUCCESS)
        }
        "push" => {
            let src = f.args.first().context("state push needs a file")?;
            let text = if src == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(ctx.dir.join(src))?
            };
            let mut new =
                StateFile::parse(std::path::Path::new(src), &text)?.context("empty state")?;
            let mut lock = backend.lock("OperationTypeInvalid", std::time::Duration::ZERO)?;
            let cur = lock.read()?;
            if !f.flag("force", false) && cur.lineage != new.lineage && !cur.resources.is_empty() {
                bail!(
                    "Failed to write state: cannot import state with lineage {:?} over unrelated state with lineage {:?}",
                    new.lineage,
                    cur.lineage
                );
            }
            if !f.flag("force", false) && new.lineage == cur.lineage && new.serial < cur.serial {
                bail!(
                    "Failed to write state: cannot overwrite existing state with serial {} with a different state that has the same serial",
                    cur.serial
                );
            }
            new.serial = new.serial.max(cur.serial);
            lock.write(&mut new)?;
            Ok(ExitCode::SUCCESS)
        }
        "rm" | "mv" => {
            let mut lock = backend.lock("OperationTypeInvalid", std::time::Duration::ZERO)?;
            let mut s = lock.read()?;
            let count = if sub == "rm" {
                state_rm(&mut s, &f.args)?
            } else {
                state_mv(&mut s, &f.args)?
            };
            if !f.flag("dry-run", false) {
                lock.write(&mut s)?;
            }
            if sub == "rm" {
                println!("Successfully removed {count} resource instance(s).");
            } else {
                println!("Successfully moved {count} object(s).");
            }
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown state subcommand {other:?}"),
    }
}

fn matches(
    addr: &keel_infra::addr::InstAddr,
    r: &keel_infra::state::ResourceState,
    i: &keel_infra::state::InstanceState,
) -> bool {
    let key = if r.mode == "data" {
        format!("data.{}.{}", r.ty, r.name)
    } else {
        format!("{}.{}", r.ty, r.name)
    };
    keel_infra::addr::module_prefix(&addr.module) == r.module.clone().unwrap_or_default()
        && addr.res_key == key
        && addr
            .key
            .as_ref()
            .is_none_or(|k| *k == Key::from_json(i.index_key.as_ref()))
}

fn state_rm(s: &mut StateFile, args: &[String]) -> Result<usize> {
    let mut n = 0;
    for a in args {
        let addr = parse_inst_addr(a).with_context(|| format!("invalid address {a:?}"))?;
        let mut found = false;
        for r in &mut s.resources {
            let before = r.instances.len();
            let rc = r.clone();
            r.instances.retain(|i| !matches(&addr, &rc, i));
            n += before - r.instances.len();
            found |= before != r.instances.len();
        }
        if !found {
            bail!(
                "Invalid target address: No matching objects found. To view the available instances, use \"terraform state list\". Please modify the address to reference a specific instance."
            );
        }
    }
    s.resources.retain(|r| !r.instances.is_empty());
    Ok(n)
}

fn state_mv(s: &mut StateFile, args: &[String]) -> Result<usize> {
    let [from, to] = args else {
        bail!("Exactly two arguments expected: SOURCE DESTINATION");
    };
    let f = parse_inst_addr(from).with_context(|| format!("invalid address {from:?}"))?;
    let t = parse_inst_addr(to).with_context(|| format!("invalid address {to:?}"))?;
    let mut moved = Vec::new();
    for r in &mut s.resources {
        let rc = r.clone();
        let (take, keep): (Vec<_>, Vec<_>) =
            r.instances.drain(..).partition(|i| matches(&f, &rc, i));
        r.instances = keep;
        for i in take {
            moved.push((rc.clone(), i));
        }
    }
    s.resources.retain(|r| !r.instances.is_empty());
    if moved.is_empty() {
        bail!(
            "Invalid source address: Cannot move {from}: does not match anything in the current state."
        );
    }
    let n = moved.len();
    let (ty, name) = t
        .res_key
        .trim_start_matches("data.")
        .split_once('.')
        .context("destination must be a resource address")?;
    for (r, mut i) in moved {
        if let Some(k) = &t.key {
            i.index_key = k.to_json();
        }
        keel_infra::state::apply_entry(
            s,
            keel_infra::state::JournalEntry {
                resource: keel_infra::state::ResourceState {
                    module: Some(keel_infra::addr::module_prefix(&t.module))
                        .filter(|m| !m.is_empty()),
                    ty: ty.to_string(),
                    name: name.to_string(),
                    instances: vec![i],
                    ..r
                },
                removed: false,
            },
        );
    }
    Ok(n)
}

pub(super) fn workspace(ctx: &Ctx, rest: &[String]) -> Result<ExitCode> {
    let any = ctx.backend()?;
    if let super::backends::AnyBackend::K8s(k) = &any {
        return k8s_workspace(ctx, k, rest);
    }
    let b = any.local()?;
    let f = Flags::parse(
        rest.get(1..).unwrap_or_default(),
        &["lock-timeout", "state"],
        &["force", "lock"],
    )?;
    match rest.first().map(String::as_str) {
        Some("list") => {
            for w in b.workspaces() {
                println!("{} {w}", if w == b.workspace { "*" } else { " " });
            }
            println!();
        }
        Some("show") => println!("{}", b.workspace),
        Some("new") => {
            let name = f.args.first().context("workspace new needs a name")?;
            b.new_workspace(name)?;
            println!(
                "Created and switched to workspace {name:?}!\n\nYou're now on a new, empty workspace. Workspaces isolate their state,\nso if you run \"terraform plan\" Terraform will not see any existing state\nfor this configuration."
            );
        }
        Some("select") => {
            let name = f.args.first().context("workspace select needs a name")?;
            b.select_workspace(name)?;
            println!("Switched to workspace {name:?}.");
        }
        Some("delete") => {
            let name = f.args.first().context("workspace delete needs a name")?;
            b.delete_workspace(name, f.flag("force", false))?;
            println!("Deleted workspace {name:?}!");
        }
        _ => bail!("Usage: keel infra workspace <list|show|new|select|delete> [NAME]"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `workspace …` on the kubernetes backend: a workspace is a state Secret;
/// the selection is `.terraform/environment`, as terraform keeps it.
fn k8s_workspace(
    ctx: &Ctx,
    k: &keel_infra::backend_k8s::K8sBackend,
    rest: &[String],
) -> Result<ExitCode> {
    let select = |name: &str| -> Result<()> {
        let p = ctx.dir.join(".terraform/environment");
        if name == "default" {
            let _ = std::fs::remove_file(&p);
        } else {
            std::fs::create_dir_all(ctx.dir.join(".terraform"))?;
            std::fs::write(&p, name)?;
        }
        Ok(())
    };
    let name = rest.get(1).map(String::as_str);
    let all = k.workspaces()?;
    match (rest.first().map(String::as_str), name) {
        (Some("list"), _) => {
            for w in &all {
                println!("{} {w}", if *w == k.workspace { "*" } else { " " });
            }
            println!();
        }
        (Some("show"), _) => println!("{}", k.workspace),
        (Some("new"), Some(n)) => {
            if all.iter().any(|w| w == n) {
                bail!("Workspace {n:?} already exists");
            }
            let other = keel_infra::backend_k8s::K8sBackend {
                workspace: n.to_string(),
                ..k.clone()
            };
            other.write(&StateFile::new())?;
            select(n)?;
            println!(
                "Created and switched to workspace {n:?}!\n\nYou're now on a new, empty workspace. Workspaces isolate their state,\nso if you run \"terraform plan\" Terraform will not see any existing state\nfor this configuration."
            );
        }
        (Some("select"), Some(n)) => {
            if !all.iter().any(|w| w == n) {
                bail!("Workspace {n:?} doesn't exist.");
            }
            select(n)?;
            println!("Switched to workspace {n:?}.");
        }
        (Some("delete"), Some(n)) => {
            if n == k.workspace {
                bail!("Workspace {n:?} is your active workspace.");
            }
            if n == "default" || !all.iter().any(|w| w == n) {
                bail!("Workspace {n:?} doesn't exist.");
            }
            k.delete_workspace(n)?;
            println!("Deleted workspace {n:?}!");
        }
        _ => bail!("Usage: keel infra workspace <list|show|new|select|delete> [NAME]"),
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn force_unlock(ctx: &Ctx, rest: &[String]) -> Result<ExitCode> {
    let f = Flags::parse(rest, &[], &["force"])?;
    let id = f.args.first().context("force-unlock needs the lock ID")?;
    ctx.backend()?.force_unlock(id)?;
    println!(
        "Terraform state has been successfully unlocked!\n\nThe state has been unlocked, and Terraform commands should now be able to\nobtain a new lock on the remote state."
    );
    Ok(ExitCode::SUCCESS)
}
