//! The Argo Rollouts controller: `argoproj.io/v1alpha1` Rollouts reconciled
//! as Argo's rollout controller does, through `ReplicaSets` labelled with
//! `rollouts-pod-template-hash`.
//!
//! - [`replicas`]: Argo's canary replica arithmetic (pure).

pub mod replicas;
#[cfg(test)]
mod replicas_tests;
