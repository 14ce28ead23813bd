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
//!   they select; [`servicelb`]: `LoadBalancer` addresses (the nodes').
//! - [`scheduler`]: kube-scheduler's queue, filters, scores, binding,
//!   preemption and `FailedScheduling` explanations.
//! - [`statefulset`]: ordered pods with stable names and claims, partitioned
//!   rolling updates, `ControllerRevisions`; [`daemonset`]: a pod per
//!   eligible node, rolling updates with surge; [`volumes`]: claims bound
//!   to volumes, the `local-path` provisioner.
//! - [`node_lifecycle`]: Lease heartbeats → `Ready=Unknown`, condition
//!   taints, eviction of pods after their `tolerationSeconds`;
//!   [`node_ipam`]: pod CIDRs; [`disruption`]: `PodDisruptionBudget` status;
//!   [`csr`]: node client certificates for joining agents.
//! - [`hpa`]: the Horizontal Pod Autoscaler (Kubernetes' replica
//!   calculator, behaviors, conditions) on `metrics.k8s.io`.
//! - [`job`]: Jobs (completions, parallelism, back-off, deadlines, indexes,
//!   `podFailurePolicy`, TTL); [`cronjob`]: Jobs on a schedule ([`clock`]
//!   makes time testable).
//! - [`rollout`]: Argo Rollouts (canary and blue-green) as Argo's
//!   controller runs them; [`rollout_validate`]: Argo's validation of
//!   Rollouts (lint, `InvalidSpec`).
//! - [`analysis`]: Argo's `AnalysisRuns` (metrics, providers, conditions).
//!
//! - [`leader`]: leader election through a Lease, so that of several
//!   servers on one etcd only one runs all of the above.
//!
//! The workload controllers share `informer` (cache fed by one watch, work
//! queue with back-off) and `events` (core/v1 Events as
//! kube-controller-manager records them).

pub mod aggregation;
pub mod analysis;
pub mod clock;
pub mod cronjob;
pub mod csr;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
mod events;
pub mod gc;
pub mod hpa;
mod informer;
pub mod job;
pub mod leader;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
mod objects;
pub mod replicaset;
mod revisions;
pub mod rollout;
pub mod rollout_validate;
pub mod scheduler;
pub mod servicelb;
pub mod statefulset;
pub mod volumes;
mod workloads;

use keel_api::Loopback;

/// The field manager and user name the controllers write as.
pub const MANAGER: &str = "keel-controllers";

/// Settings of the node controllers (flags of `keel server`).
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a node's Lease may go unrenewed before it is `Unknown`
    /// (Kubernetes: 40 s; keel aims at eviction within 30 s).
    pub node_monitor_grace_period: std::time::Duration,
    /// Pod CIDRs for nodes; `None` leaves `spec.podCIDR` alone.
    pub cluster_cidr: Option<node_ipam::CidrPlan>,
    /// The server's state directory: its CA signs node CSRs ([`csr`]);
    /// `None` signs none.
    pub state_dir: Option<std::path::PathBuf>,
    /// The autoscaler's sync period and windows.
    pub hpa: hpa::Options,
    /// Where the autoscaler reads metrics; `None`: `metrics.k8s.io` only.
    pub hpa_source: Option<std::sync::Arc<dyn hpa::source::MetricsSource>>,
    /// Run the rollout and analysis controllers (off when Argo Rollouts'
    /// own controller runs against this server instead).
    pub rollouts: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            node_monitor_grace_period: std::time::Duration::from_secs(8),
            cluster_cidr: node_ipam::CidrPlan::parse("10.42.0.0/16", 24).ok(),
            state_dir: None,
            hpa: hpa::Options::default(),
            hpa_source: None,
            rollouts: true,
        }
    }
}

/// Starts every controller on the current tokio runtime; they run until
/// the runtime stops.
pub fn spawn(api: &Loopback) -> Vec<tokio::task::JoinHandle<()>> {
    spawn_with(api, &Options::default())
}

/// [`spawn`] with node settings.
pub fn spawn_with(api: &Loopback, opts: &Options) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(gc::GarbageCollector::new(api.clone()).run()),
        tokio::spawn(namespace::NamespaceController::new(api.clone()).run()),
        tokio::spawn(aggregation::run(api.clone())),
        tokio::spawn(replicaset::ReplicaSetController::new(api).run(api.clone())),
        tokio::spawn(deployment::DeploymentController::new(api).run(api.clone())),
        tokio::spawn(endpoints::EndpointsController.run(api.clone())),
        tokio::spawn(servicelb::ServiceLb.run(api.clone())),
        tokio::spawn(job::JobController::new(api).run(api.clone())),
        tokio::spawn(cronjob::CronJobController::new(api, clock::from_env()).run(api.clone())),
    ];
    if opts.rollouts {
        tasks.push(tokio::spawn(rollout::run(api.clone())));
        tasks.push(tokio::spawn(rollout::experiment::run(api.clone())));
        tasks.push(tokio::spawn(analysis::spawn(
            api.clone(),
            clock::from_env(),
        )));
    }
    tasks.extend(workloads::spawn(api));
    tasks.push(tokio::spawn(hpa::spawn(
        api.clone(),
        opts.hpa,
        opts.hpa_source.clone(),
    )));
    tasks.extend(spawn_scheduling(api, opts));
    tasks
}

/// Campaigns for the Lease of `election` and runs every controller (on a
/// runtime of their own) while this process holds it.
pub fn spawn_elected(
    api: &Loopback,
    opts: &Options,
    election: leader::Election,
) -> tokio::task::JoinHandle<()> {
    let (a, o) = (api.clone(), opts.clone());
    let start = move || {
        leader::Term::start(2, || {
            spawn_with(&a, &o);
        })
    };
    tokio::spawn(election.run(api.clone(), start, None))
}

/// The scheduler and the node controllers.
fn spawn_scheduling(api: &Loopback, opts: &Options) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(scheduler::Scheduler::new(api.clone()).run()),
        tokio::spawn(
            node_lifecycle::NodeLifecycle::new(api.clone(), opts.node_monitor_grace_period).run(),
        ),
        tokio::spawn(disruption::Disruption::new(api.clone()).run()),
    ];
    if let Some(dir) = &opts.state_dir {
        tasks.push(tokio::spawn(
            csr::CsrSigner::new(api.clone(), dir.clone()).run(),
        ));
    }
    if let Some(plan) = opts.cluster_cidr {
        tasks.push(tokio::spawn(
            node_ipam::NodeIpam::new(api.clone(), plan).run(),
        ));
    }
    tasks
}
