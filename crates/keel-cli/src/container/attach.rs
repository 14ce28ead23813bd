//! `keel attach`: the output of a running container from now on (its log,
//! which its monitor writes as it happens), its stdin from ours when it
//! was started with `-i` in the background (the monitor's stdin FIFO,
//! `keel_runtime::monitor::STDIN_FIFO`), signals passed on (`--sig-proxy`)
//! and docker's detach keys (ctrl-p ctrl-q) in the input. Returns the
//! container's exit code when it exits.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use keel_runtime::engine;

use super::{exit_code, hinted, open, resolve};

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Do not attach STDIN.
    #[arg(long)]
    pub no_stdin: bool,
    /// Proxy all received signals to the process.
    #[arg(long, default_value = "true", action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container.
    #[arg(long, default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    pub container: String,
}

/// docker's `--detach-keys`: comma-separated `a`-`z`, `ctrl-X` (X one of
/// `a`-`z`, `@`, `[`, `\`, `]`, `^`, `_`).
pub fn parse_detach_keys(s: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for k in s.split(',') {
        let k = k.trim();
        let b = match k.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => {
                let c = c.as_bytes()[0].to_ascii_lowercase();
                match c {
                    b'a'..=b'z' => c - b'a' + 1,
                    b'@' => 0,
                    b'[' => 27,
                    b'\\' => 28,
                    b']' => 29,
                    b'^' => 30,
                    b'_' => 31,
                    _ => bail!("Unknown character: '{k}'"),
                }
            }
            None if k.len() == 1 => k.as_bytes()[0],
            _ => bail!("Unknown character: '{k}'"),
        };
        out.push(b);
    }
    Ok(out)
}

/// Copies `input` to `out` until EOF or the detach sequence `keys`; true
/// when the sequence was read. A partial sequence followed by something
/// else is passed on whole, as docker's escape proxy does.
fn copy_input(mut input: impl Read, mut out: impl Write, keys: &[u8]) -> bool {
    let mut matched = 0;
    let mut buf = [0u8; 4096];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let mut pass = Vec::with_capacity(n);
        for &b in &buf[..n] {
            if !keys.is_empty() && b == keys[matched] {
                matched += 1;
                if matched == keys.len() {
                    let _ = out.write_all(&pass);
                    return true;
                }
                continue;
            }
            pass.extend_from_slice(&keys[..matched]);
            matched = 0;
            if !keys.is_empty() && b == keys[0] {
                if keys.len() == 1 {
                    let _ = out.write_all(&pass);
                    return true;
                }
                matched = 1;
                continue;
            }
            pass.push(b);
        }
        if out.write_all(&pass).and_then(|()| out.flush()).is_err() {
            return false;
        }
    }
}

pub fn attach(root: &Path, a: &AttachArgs) -> anyhow::Result<ExitCode> {
    use nix::sys::signal::Signal;
    let keys = parse_detach_keys(&a.detach_keys).context("--detach-keys")?;
    let c = open(root)?;
    let id = resolve(&c, &a.container)?;
    let cfg = c.config(&id).map_err(hinted)?;
    if !engine::is_active(&c, &id) {
        bail!("You cannot attach to a stopped container, start it first");
    }
    if super::is_paused(&id) {
        bail!("You cannot attach to a paused container, unpause it first");
    }
    let path = c.log_path(&id);
    let detached = Arc::new(AtomicBool::new(false));
    let fifo = c.dir(&id).join(keel_runtime::monitor::STDIN_FIFO);
    let raw = if !a.no_stdin && cfg.interactive && fifo.exists() {
        // A reader holds it open: opening for writing does not block.
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .with_context(|| format!("opening {}", fifo.display()))?;
        let flag = Arc::clone(&detached);
        std::thread::spawn(move || {
            if copy_input(std::io::stdin(), w, &keys) {
                flag.store(true, Ordering::SeqCst);
            }
        });
        cfg.tty
            .then(|| keel_runtime::tty::RawMode::enable(std::io::stdin()))
            .flatten()
    } else {
        None
    };
    // Like docker's sig-proxy: signals go to the container (not for a TTY,
    // whose keys go through as typed); without it they end attach.
    let sfd = if a.sig_proxy && !cfg.tty {
        Some(super::run::proxied_signals()?)
    } else {
        None
    };
    let mut follower = super::logs::LogFollower::from_end(path);
    let code = loop {
        if let Some(sfd) = &sfd {
            while let Ok(Some(info)) = sfd.read_signal() {
                if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                    let _ = engine::kill(&c, &id, sig, false);
                }
            }
        }
        let active = engine::is_active(&c, &id);
        if follower.poll(|e| super::logs::print_entry(&e, false, None))? {
            continue;
        }
        if detached.load(Ordering::SeqCst) {
            break 0;
        }
        if !active {
            break c.state(&id).map_or(-1, |s| s.exit_code);
        }
        std::thread::sleep(Duration::from_millis(30));
    };
    drop(raw);
    Ok(exit_code(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_as_docker_spells_them() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("ctrl-a,x").unwrap(), vec![1, b'x']);
        assert_eq!(parse_detach_keys("ctrl-[").unwrap(), vec![27]);
        assert!(parse_detach_keys("ctrl-").is_err());
        assert!(parse_detach_keys("alt-x").is_err());
        assert!(parse_detach_keys("ctrl-1").is_err());
    }

    #[test]
    fn input_stops_at_the_detach_sequence() {
        let mut out = Vec::new();
        assert!(copy_input(&b"ab\x10c\x10\x11rest"[..], &mut out, &[16, 17]));
        assert_eq!(out, b"ab\x10c");
        let mut out = Vec::new();
        assert!(copy_input(&b"\x10\x10\x11"[..], &mut out, &[16, 17]));
        assert_eq!(out, b"\x10");
        let mut out = Vec::new();
        assert!(!copy_input(&b"plain\n"[..], &mut out, &[16, 17]));
        assert_eq!(out, b"plain\n");
    }
}
