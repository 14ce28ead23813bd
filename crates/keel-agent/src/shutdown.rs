//! The agent's one SIGTERM/SIGINT handler. Parts that leave state in the
//! kernel (the service proxy's table, the pod network's device and routes,
//! `NetworkPolicy`'s chains) register their cleanup here; on the signal all
//! of them run, in the order they registered, and the process exits 0.
//! Pods keep running, as when the agent is killed. One handler, because
//! each part exiting from its own raced the others' cleanups.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, Once};

type Cleanup = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

static CLEANUPS: Mutex<Vec<Cleanup>> = Mutex::new(Vec::new());
static HANDLER: Once = Once::new();

/// Runs `cleanup` when the agent is told to stop (from within a tokio
/// runtime: the first call starts the handler).
pub(crate) fn on_stop<F, Fut>(cleanup: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    if let Ok(mut c) = CLEANUPS.lock() {
        c.push(Box::new(move || Box::pin(cleanup())));
    }
    HANDLER.call_once(|| {
        tokio::spawn(handle());
    });
}

async fn handle() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("no signal handler: kernel state stays when the agent stops");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let all = CLEANUPS
        .lock()
        .map(|mut c| std::mem::take(&mut *c))
        .unwrap_or_default();
    for c in all {
        c().await;
    }
    tracing::info!("stopped with cleanup");
    std::process::exit(0);
}
