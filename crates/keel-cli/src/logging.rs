//! keel's diagnostics: `tracing` events of the libraries and long-running
//! parts (a container's monitor, the API server), written as plain lines
//! to stderr (a monitor's stderr is its `monitor.log`). `--log-level` or
//! `KEEL_LOG` picks what is shown: a level (`error`, `warn`, `info`,
//! `debug`, `trace`) or tracing's filter directives
//! (`warn,keel_runtime=debug`). Commands default to `warn`; a monitor and
//! `keel server` to `info`, so a monitor's log says when the container started, exited and restarted
//! (youki's own events only from `error` on, unless asked for).
//! This is not the user's output: data goes to stdout, and errors the CLI
//! reports are printed by [`crate::render_error`].

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// What a command shows without `--log-level`/`KEEL_LOG`: keel's warnings.
/// youki's crates log their own housekeeping (a cgroup controller this host
/// lacks, at every start) that says nothing to a user; asked for a level,
/// they show it.
pub(crate) const COMMAND_DEFAULT: &str = "warn,libcontainer=off,libcgroups=off";
/// What a long-running process (a monitor, `keel server`) shows without
/// them: what it does (a container's starts, exits, restarts), and youki's
/// errors.
pub(crate) const SERVICE_DEFAULT: &str = "info,libcontainer=error,libcgroups=error";

/// The installed filter, and whether the user chose it.
static FILTER: OnceLock<(reload::Handle<EnvFilter, Registry>, bool)> = OnceLock::new();

/// Parses a `--log-level` value.
pub(crate) fn parse_filter(s: &str) -> anyhow::Result<EnvFilter> {
    EnvFilter::try_new(s).map_err(|e| anyhow::anyhow!("invalid log level {s:?}: {e}"))
}

/// Installs the subscriber: `level` (the flag or `KEEL_LOG`), else
/// `default`. Once per process; later calls change nothing.
pub(crate) fn init(level: Option<&str>, default: &str) -> anyhow::Result<()> {
    let filter = parse_filter(level.unwrap_or(default))?;
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(true);
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = FILTER.set((handle, level.is_some()));
    }
    Ok(())
}

/// In a monitor forked from a command: the monitor's default level, unless
/// the user chose one.
pub(crate) fn become_monitor() {
    if let Some((handle, false)) = FILTER.get()
        && let Ok(f) = parse_filter(SERVICE_DEFAULT)
    {
        let _ = handle.reload(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_parse_and_garbage_is_refused() {
        for ok in ["warn", "info", "debug", "warn,keel_runtime=debug", "trace"] {
            assert!(parse_filter(ok).is_ok(), "{ok}");
        }
        assert!(parse_filter(COMMAND_DEFAULT).is_ok() && parse_filter(SERVICE_DEFAULT).is_ok());
        let e = parse_filter("[").unwrap_err().to_string();
        assert!(e.starts_with("invalid log level \"[\""), "{e}");
    }
}
