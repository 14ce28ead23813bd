//! keel's controllers: reconcile loops that `keel server` runs beside the
//! API and that act only through it ([`keel_api::Loopback`]), as
//! kube-controller-manager acts through client-go. Each keeps what it needs
//! from a watch, queues work and retries failures with back-off.
//!
//! - [`gc`]: the garbage collector. Objects whose owners (ownerReferences)
//!   are gone are deleted; `foregroundDeletion` and `orphan` finalizers are
//!   carried out (dependents deleted first, or their references removed).
//! - [`namespace`]: a terminating namespace's contents are deleted, then its
//!   `kubernetes` finalizer is removed so the API deletes it.
//! - [`aggregation`]: `ClusterRoles` with an `aggregationRule` collect the
//!   rules of the roles their selectors match.
//! - [`replicaset`]: pods created and deleted to match `replicas`, status.
//! - [`deployment`]: rollouts (`RollingUpdate`, Recreate), revisions, pause,
//!   progress conditions, through `ReplicaSets`.
//! - [`endpoints`]: Endpoints and `EndpointSlices` of Services from the pods
//!   they select.
//!
//! The workload controllers share `informer` (cache fed by one watch, work
//! queue with back-off) and `events` (core/v1 Events as
//! kube-controller-manager records them).

pub mod aggregation;
pub mod deployment;
pub mod endpoints;
mod events;
pub mod gc;
mod informer;
pub mod namespace;
mod objects;
pub mod replicaset;

use keel_api::Loopback;

/// The field manager and user name the controllers write as.
pub const MANAGER: &str = "keel-controllers";

/// Starts every controller on the current tokio runtime; they run until
/// the runtime stops.
pub fn spawn(api: &Loopback) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(gc::GarbageCollector::new(api.clone()).run()),
        tokio::spawn(namespace::NamespaceController::new(api.clone()).run()),
        tokio::spawn(aggregation::run(api.clone())),
        tokio::spawn(replicaset::ReplicaSetController::new(api).run(api.clone())),
        tokio::spawn(deployment::DeploymentController::new(api).run(api.clone())),
        tokio::spawn(endpoints::EndpointsController.run(api.clone())),
    ]
}
