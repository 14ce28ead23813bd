//! `keel exec` and `keel wait`.

use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use keel_runtime::Containers;
use keel_runtime::backend::{ExecSpec, Stdio};
use keel_runtime::engine::{self};
use keel_runtime::tty::{ConsoleSocket, RawMode};

use super::flags::{ContainersArgs, ExecArgs};
use super::parse::expand_env;
use super::run::client_size;
use super::{exit_code, hinted, open, resolve};

fn own_stdio(interactive: bool) -> anyhow::Result<Stdio> {
    let stdin: std::os::fd::OwnedFd = if interactive {
        std::io::stdin().as_fd().try_clone_to_owned()?
    } else {
        std::fs::File::open("/dev/null")?.into()
    };
    Ok(Stdio {
        stdin,
        stdout: std::io::stdout().as_fd().try_clone_to_owned()?,
        stderr: std::io::stderr().as_fd().try_clone_to_owned()?,
    })
}

pub fn exec(root: &Path, a: ExecArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let id = resolve(&c, &a.container)?;
    let cfg = c.config(&id).map_err(hinted)?;
    let (uid, gid, gids) = match &a.user {
        Some(u) => {
            let ident = engine::exec_identity(&cfg, u).map_err(hinted)?;
            (ident.uid, ident.gid, ident.additional_gids)
        }
        None => (cfg.uid, cfg.gid, cfg.additional_gids.clone()),
    };
    let mut env = cfg.env.clone();
    for e in &a.env {
        let Some(e) = expand_env(e)? else { continue };
        let k = e.split('=').next().unwrap_or("").to_string();
        env.retain(|x| x.split('=').next() != Some(k.as_str()));
        env.push(e);
    }
    let spec = ExecSpec {
        args: a.command.clone(),
        env,
        cwd: Some(a.workdir.clone().unwrap_or_else(|| cfg.working_dir.clone())),
        uid: Some(uid),
        gid: Some(gid),
        additional_gids: gids,
        console_socket: None,
        privileged: a.privileged,
    };
    if a.tty {
        return exec_tty(root, &c, &id, spec, &a);
    }
    let stdio = if a.detach {
        let null = || -> anyhow::Result<std::os::fd::OwnedFd> {
            Ok(std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")?
                .into())
        };
        Stdio {
            stdin: null()?,
            stdout: null()?,
            stderr: null()?,
        }
    } else {
        own_stdio(a.interactive || a.tty)?
    };
    let mut h = match engine::exec(&c, &id, &spec, stdio) {
        Ok(h) => h,
        Err(e) => {
            // docker's codes: 127 for a command that is not there, 126 for
            // one that cannot be run.
            let code = match super::run::start_failure_exit(&keel_runtime::error_chain(&e)) {
                126 => 126,
                127 => 127,
                _ => 1,
            };
            eprintln!("{}", crate::render_error(&hinted(e).context("exec")));
            return Ok(ExitCode::from(code));
        }
    };
    if a.detach {
        return Ok(ExitCode::SUCCESS);
    }
    let code = h.wait(None).map_err(hinted)?.unwrap_or(-1);
    Ok(exit_code(code))
}

/// `exec -t`: the process gets a pty made in the container; we relay it.
fn exec_tty(
    root: &Path,
    c: &Containers,
    id: &str,
    mut spec: ExecSpec,
    a: &ExecArgs,
) -> anyhow::Result<ExitCode> {
    let console = ConsoleSocket::bind(&root.join("run")).map_err(hinted)?;
    spec.console_socket = Some(console.path().to_path_buf());
    let null = std::fs::File::open("/dev/null")?;
    let stdio = Stdio {
        stdin: null.try_clone()?.into(),
        stdout: null.try_clone()?.into(),
        stderr: null.into(),
    };
    let mut h = engine::exec(c, id, &spec, stdio)
        .map_err(hinted)
        .context("exec")?;
    let master = console.receive().map_err(hinted).context("exec")?;
    let size = client_size();
    if let Some(w) = size {
        w.apply(&master).map_err(hinted)?;
    }
    if a.detach {
        return Ok(ExitCode::SUCCESS);
    }
    follow_size(&master, size)?;
    let done = h.pidfd().map_err(hinted)?;
    let input = if a.interactive {
        Some(std::io::stdin().as_fd().try_clone_to_owned()?)
    } else {
        None
    };
    let raw = input
        .as_ref()
        .and_then(|_| RawMode::enable(std::io::stdin()));
    let relayed = keel_runtime::tty::relay(
        &master,
        input.as_ref(),
        &mut std::io::stdout().lock(),
        Some(&done),
    );
    drop(raw);
    relayed.map_err(hinted)?;
    let code = h.wait(None).map_err(hinted)?.unwrap_or(-1);
    Ok(exit_code(code))
}

/// Keeps the container's terminal the size of ours. Polled: a pty that
/// `keel agent` gives us for `kubectl exec -t` is not our controlling
/// terminal, so no SIGWINCH comes. The thread ends with the process (it is
/// started once the exec'd process runs: nothing forks after it).
fn follow_size(
    master: &std::os::fd::OwnedFd,
    mut last: Option<keel_runtime::tty::WinSize>,
) -> anyhow::Result<()> {
    let master = master.try_clone()?;
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let now = client_size();
            if now != last
                && let Some(w) = now
            {
                let _ = w.apply(&master);
            }
            last = now;
        }
    });
    Ok(())
}

pub fn wait(root: &Path, a: ContainersArgs) -> anyhow::Result<ExitCode> {
    let c = open(root)?;
    let mut last = ExitCode::SUCCESS;
    for n in &a.containers {
        let id = resolve(&c, n)?;
        loop {
            let st = c.state(&id).map_err(hinted)?;
            if !keel_runtime::record::monitor_alive(&st, &id) {
                break;
            }
            engine::wait_monitor(&id, &st, None);
        }
        // A --rm container is gone by now; its exit code went with it.
        let code = c.state(&id).map_or(0, |s| s.exit_code);
        println!("{code}");
        last = ExitCode::SUCCESS;
    }
    Ok(last)
}
