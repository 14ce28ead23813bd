//! The workload executor keel gives libcontainer: it puts the signal state
//! back to what a freshly exec'd program expects before handing over.
//!
//! libcontainer forks the container's init from the calling process, and an
//! exec keeps ignored signals ignored and blocked signals blocked. The Rust
//! runtime ignores SIGPIPE in every keel process, and a shell that started
//! keel with `nohup` or `&` may have ignored SIGINT/SIGQUIT/SIGHUP; without
//! this reset those dispositions leaked into every container (`yes | head`
//! then never saw SIGPIPE). runc gets this for free from Go's runtime.
//!
//! It also installs the container's precompiled seccomp filter (see
//! [`crate::seccomp::compiled`]) when the bundle carries one instead of a
//! profile: last thing before exec, where libcontainer would load its own.

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};

/// Wraps libcontainer's default executor; see the module docs.
#[derive(Clone)]
pub(crate) struct SignalResetExecutor {
    inner: Box<dyn Executor>,
    seccomp: Option<crate::seccomp::Program>,
}

impl SignalResetExecutor {
    pub(crate) fn new(seccomp: Option<crate::seccomp::Program>) -> Self {
        Self {
            inner: libcontainer::workload::default::get_executor(),
            seccomp,
        }
    }
}

/// Default dispositions and an empty mask for the process about to exec.
fn reset_signals() {
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL registers no handler code, so none of
        // sigaction's safety conditions (async-signal-safe handlers) apply;
        // this runs in the single-threaded container init just before exec.
        #[allow(unsafe_code)]
        let _ = unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

impl Executor for SignalResetExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        reset_signals();
        if let Some(p) = &self.seccomp {
            crate::seccomp::apply(p).map_err(ExecutorError::Other)?;
        }
        self.inner.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        self.inner.validate(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_restores_default_dispositions_and_mask() {
        // A child process, so the test runner's own signal state is untouched.
        crate::run_child_probe("sigreset::tests::child_probe", "KEEL_SIGRESET_PROBE");
    }

    #[test]
    fn child_probe() {
        if std::env::var_os("KEEL_SIGRESET_PROBE").is_none() {
            return;
        }
        let mut blocked = SigSet::empty();
        blocked.add(Signal::SIGUSR1);
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None).unwrap();
        // SAFETY: SIG_IGN installs no handler code.
        #[allow(unsafe_code)]
        unsafe {
            nix::sys::signal::signal(Signal::SIGINT, SigHandler::SigIgn).unwrap();
        }
        reset_signals();
        // SAFETY: as above; the previous disposition is read back and restored.
        #[allow(unsafe_code)]
        let prev = unsafe { nix::sys::signal::signal(Signal::SIGINT, SigHandler::SigDfl).unwrap() };
        let mut mask = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_BLOCK, None, Some(&mut mask)).unwrap();
        assert!(matches!(prev, SigHandler::SigDfl));
        assert!(!mask.contains(Signal::SIGUSR1));
        println!("probe: ok");
    }
}
