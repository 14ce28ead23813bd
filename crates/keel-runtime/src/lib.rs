//! keel's container runtime for one host. [`Containers`] keeps container
//! records on disk under `<root>/containers/<id>/` (the user's [`ContainerConfig`],
//! the live [`ContainerState`], JSON-lines logs, the OCI bundle); [`engine`]
//! creates, starts, stops, kills, removes and execs; [`spec`] turns a config and
//! its image into an OCI runtime spec with Docker's safe defaults; [`rootfs`]
//! mounts the overlay root over the image's layer snapshots. A per-container
//! [`monitor`] (forked from a single-threaded client, or `keel __monitor <id>`;
//! see [`launch`]) starts the container through a [`backend::OciRuntime`]
//! (youki's `libcontainer` in process, or the external `runc`), streams logs,
//! records exit status and OOM kills, applies restart policies, runs health
//! checks and tears down. Every kernel effect of that lifecycle goes through
//! [`kernel::Kernel`] (a recording fake tests it without root). [`stats`]
//! reads cgroup v1 and v2 usage; [`copy`] is `keel cp`, confined to the
//! container's root; [`Volumes`] manages named volumes;
//! [`network::NetworkAttacher`] is the seam to keel-net; [`oneshot`] runs one
//! command on prepared layers and waits (build steps); [`update`] changes
//! limits and the restart policy of a created or running container.

pub mod backend;
pub mod cgroups;
pub mod copy;
pub mod engine;
mod error;
pub mod events;
pub mod ids;
pub mod kernel;
pub mod launch;
pub mod logs;
pub mod monitor;
pub mod network;
pub mod oneshot;
pub mod record;
pub mod rootfs;
pub mod seccomp;
pub mod security;
mod sigreset;
pub mod spec;
pub mod stats;
pub mod tty;
pub mod update;
pub mod user;
pub mod volume;

/// Runs the unit test `test` of this crate's test binary in a child process
/// with `env` set (for tests that change process-wide state such as signal
/// dispositions or a seccomp filter, which cannot be undone); asserts that it
/// printed `probe: ok`.
#[cfg(test)]
fn run_child_probe(test: &str, env: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture"])
        .env(env, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("probe: ok"), "{text}");
}

#[cfg(test)]
mod lifecycle_tests;

pub use error::{Result, RuntimeError, error_chain};
pub use record::{
    ContainerConfig, ContainerState, Containers, EndpointConfig, EndpointState, HealthConfig,
    HealthState, MountKind, MountSpec, NetworkConfig, PortSpec, RestartPolicy, Status,
};
pub use volume::{Volume, Volumes};
