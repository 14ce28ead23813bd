//! The pods bound to this node: a watch on `spec.nodeName`, and one worker
//! task per pod that makes the node match the pod (sandbox, volumes, init
//! containers, containers, restarts, probes), reports status, and on
//! deletion stops everything within the grace period and deletes the pod.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod};
use keel_runtime::engine::CreateOptions;
use keel_runtime::{MountKind, MountSpec, NetworkConfig, RestartPolicy};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::events::field_path;
use crate::node::now_rfc3339;
use crate::runtime::{
    self, LABEL_CONTAINER, LABEL_POD_NAME, LABEL_POD_NS, LABEL_POD_UID, LABEL_RESTARTS,
};
use crate::{AgentError, podspec, probe};

mod atomic;
mod resources;

/// How often configMap, secret, projected and downwardAPI volumes are
/// brought up to date with the API (the kubelet: its sync period).
const VOLUME_REFRESH: Duration = Duration::from_secs(5);

/// What every pod worker shares.
pub(crate) struct Ctx {
    pub client: kube::Client,
    pub events: Arc<crate::events::Recorder>,
    pub node: String,
    pub node_ip: String,
    pub root: PathBuf,
    pub exe: PathBuf,
    /// The cluster DNS `ClusterFirst` pods ask.
    pub dns: Option<crate::dns::ClusterDns>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// Watches this node's pods and keeps one worker per pod.
pub(crate) async fn run(ctx: Arc<Ctx>) -> Result<(), AgentError> {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node));
    // managedFields: read by no one here, and a good part of each copy.
    let mut stream =
        std::pin::pin!(watcher(api, cfg).modify(|p: &mut Pod| p.metadata.managed_fields = None));
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    let mut swept = false;
    while let Some(ev) = stream.next().await {
        workers.retain(|_, tx| !tx.is_closed());
        match ev {
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(pod)) => {
                listed.insert(pod.metadata.uid.clone().unwrap_or_default());
                dispatch(&ctx, &mut workers, pod);
            }
            Ok(watcher::Event::InitDone) => {
                for (uid, tx) in &workers {
                    if !listed.contains(uid) {
                        tx.send_replace(None);
                    }
                }
                if !swept {
                    swept = true;
                    sweep(&ctx, listed.clone()).await;
                }
            }
            Ok(watcher::Event::Apply(pod)) => dispatch(&ctx, &mut workers, pod),
            Ok(watcher::Event::Delete(pod)) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(tx) = workers.get(&uid) {
                    tx.send_replace(None);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "pod watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Ok(())
}

fn dispatch(ctx: &Arc<Ctx>, workers: &mut HashMap<String, watch::Sender<Option<Pod>>>, pod: Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if uid.is_empty() || pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(&ctx.node) {
        return;
    }
    if let Some(tx) = workers.get(&uid) {
        tx.send_replace(Some(pod));
        return;
    }
    let (tx, rx) = watch::channel(Some(pod));
    tokio::spawn(worker(ctx.clone(), rx));
    workers.insert(uid, tx);
}

/// Removes containers and pod directories of pods that no longer exist
/// (deleted while the agent was away).
async fn sweep(ctx: &Arc<Ctx>, live: HashSet<String>) {
    let root = ctx.root.clone();
    let exe = ctx.exe.clone();
    blocking(move || {
        for (id, uid, _, _) in runtime::pod_containers(&root) {
            if !live.contains(&uid) {
                tracing::info!(
                    container = id,
                    pod_uid = uid,
                    "removing a container of a gone pod"
                );
                let _ = runtime::remove(&root, &exe, &id);
            }
        }
        if let Ok(rd) = std::fs::read_dir(root.join("pods")) {
            for e in rd.flatten() {
                if !live.contains(&e.file_name().to_string_lossy().to_string()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    })
    .await;
}

async fn worker(ctx: Arc<Ctx>, mut rx: watch::Receiver<Option<Pod>>) {
    let Some(first) = rx.borrow_and_update().clone() else {
        return;
    };
    let mut p = PodRun::new(&ctx, first);
    p.adopt(&ctx).await;
    loop {
        let cur = rx.borrow_and_update().clone();
        match cur {
            None => {
                // Gone from the API (force-deleted): stop at once.
                p.terminate(&ctx, 2).await;
                ctx.events.forget(&p.uid);
                return;
            }
            Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30);
                p.pod = pod;
                p.terminate(&ctx, grace).await;
                p.finish_deletion(&ctx).await;
                ctx.events.forget(&p.uid);
                return;
            }
            Some(pod) => {
                p.pod = pod;
                p.sync(&ctx).await;
                if p.volumes_ready {
                    p.refresh_volumes(&ctx).await;
                }
                p.report(&ctx).await;
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return; },
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

#[derive(Debug, Clone, Default)]
enum CState {
    #[default]
    Pending,
    Waiting(String, String),
    Running(String),
    Terminated(Value),
}

#[derive(Debug, Clone, Copy, Default)]
struct ProbeState {
    next: Option<Instant>,
    fails: i32,
    succ: i32,
}

#[derive(Debug, Clone, Default)]
struct Ctr {
    spec: Container,
    id: Option<String>,
    restarts: u32,
    state: CState,
    last_term: Option<Value>,
    ready: bool,
    started: bool,
    run_since: Option<Instant>,
    not_before: Option<Instant>,
    backoff_level: u32,
    /// The `BackOff` event of the current back-off was written.
    backoff_told: bool,
    /// Containers created so far (names are unique per attempt).
    attempts: u32,
    image_id: String,
    /// startup, liveness, readiness.
    probes: [ProbeState; 3],
    succeeded: bool,
}

impl Ctr {
    fn new(spec: &Container) -> Self {
        Ctr {
            spec: spec.clone(),
            ..Ctr::default()
        }
    }
}

struct PodRun {
    pod: Pod,
    uid: String,
    name: String,
    ns: String,
    dir: PathBuf,
    sandbox: Option<String>,
    pod_ip: Option<String>,
    volumes: HashMap<String, (PathBuf, bool)>,
    volumes_ready: bool,
    /// When the volumes were last brought up to date.
    volumes_at: Option<Instant>,
    sandbox_attempts: u32,
    error: Option<(String, String)>,
    retry_at: Option<Instant>,
    start_time: String,
    inits: Vec<Ctr>,
    ctrs: Vec<Ctr>,
    conds: BTreeMap<String, (bool, String)>,
    last_report: Option<Value>,
}

fn restart_policy(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into())
}

impl PodRun {
    fn new(ctx: &Ctx, pod: Pod) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map_or_else(now_rfc3339, |t| {
                t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
            });
        PodRun {
            uid: uid.clone(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            ns: pod.metadata.namespace.clone().unwrap_or_default(),
            dir: ctx.root.join("pods").join(&uid),
            sandbox: None,
            pod_ip: None,
            volumes: HashMap::new(),
            volumes_ready: false,
            volumes_at: None,
            sandbox_attempts: 0,
            error: None,
            retry_at: None,
            start_time,
            inits: spec
                .init_containers
                .iter()
                .flatten()
                .map(Ctr::new)
                .collect(),
            ctrs: spec.containers.iter().map(Ctr::new).collect(),
            conds: BTreeMap::new(),
            last_report: None,
            pod,
        }
    }

    fn grace(&self) -> i64 {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
    }

    /// Takes over the containers a previous agent left running for this pod.
    async fn adopt(&mut self, ctx: &Ctx) {
        let root = ctx.root.clone();
        let uid = self.uid.clone();
        let found = blocking(move || {
            runtime::pod_containers(&root)
                .into_iter()
                .filter(|(_, u, _, _)| *u == uid)
                .map(|(id, _, name, restarts)| {
                    let obs = runtime::observe(&root, &id);
                    (id, name, restarts, obs)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut stale = Vec::new();
        for (id, name, _, obs) in &found {
            if name == runtime::SANDBOX {
                match obs {
                    Some(o) if o.running && self.sandbox.is_none() => {
                        self.sandbox = Some(id.clone());
                        self.pod_ip.clone_from(&o.ip);
                    }
                    _ => stale.push(id.clone()),
                }
            }
        }
        for (id, name, restarts, obs) in found {
            if name == runtime::SANDBOX {
                continue;
            }
            let c = self
                .inits
                .iter_mut()
                .chain(self.ctrs.iter_mut())
                .find(|c| c.spec.name == name);
            match (c, obs, self.sandbox.is_some()) {
                (Some(c), Some(o), true) if c.id.is_none() && (o.running || o.exit_code == 0) => {
                    c.id = Some(id);
                    c.restarts = restarts;
                    c.run_since = Some(Instant::now());
                    c.image_id = o.image_id;
                    c.started = true;
                    c.state = CState::Running(o.started_at.unwrap_or_default());
                }
                _ => stale.push(id),
            }
        }
        if self.sandbox.is_some() {
            self.volumes_ready = self.prepare_volumes(ctx).await.is_ok();
        }
        if !stale.is_empty() {
            let (root, exe) = (ctx.root.clone(), ctx.exe.clone());
            blocking(move || {
                for id in stale {
                    let _ = runtime::remove(&root, &exe, &id);
                }
            })
            .await;
        }
    }

    async fn sync(&mut self, ctx: &Ctx) {
        if let Some(t) = self.retry_at
            && Instant::now() < t
        {
            return;
        }
        if self.sandbox.is_none()
            && let Err(e) = self.start_sandbox(ctx).await
        {
            tracing::warn!(pod = self.name, error = %e, "pod sandbox failed");
            ctx.events.warning(
                &self.pod,
                None,
                "FailedCreatePodSandBox",
                format!("Failed to create pod sandbox: {e}"),
            );
            self.error = Some(("FailedCreatePodSandBox".into(), e));
            self.retry_at = Some(Instant::now() + Duration::from_secs(2));
            return;
        }
        if !self.volumes_ready {
            if let Err(e) = self.prepare_volumes(ctx).await {
                tracing::warn!(pod = self.name, error = %e, "pod volumes failed");
                ctx.events.warning(
                    &self.pod,
                    None,
                    "FailedMount",
                    format!("MountVolume.SetUp failed: {e}"),
                );
                self.error = Some(("FailedMount".into(), e));
                self.retry_at = Some(Instant::now() + Duration::from_secs(2));
                return;
            }
            self.volumes_ready = true;
        }
        self.error = None;
        for i in 0..self.inits.len() {
            if self.inits[i].succeeded {
                continue;
            }
            let mut c = std::mem::take(&mut self.inits[i]);
            self.step(ctx, &mut c, true).await;
            let done = c.succeeded;
            self.inits[i] = c;
            if !done {
                return;
            }
        }
        for i in 0..self.ctrs.len() {
            let mut c = std::mem::take(&mut self.ctrs[i]);
            self.step(ctx, &mut c, false).await;
            self.ctrs[i] = c;
        }
    }

    async fn start_sandbox(&mut self, ctx: &Ctx) -> Result<(), String> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        if spec.host_network == Some(true) {
            return Err("hostNetwork pods are not supported by keel yet".into());
        }
        let hostname: String = spec
            .hostname
            .clone()
            .unwrap_or_else(|| self.name.clone())
            .chars()
            .take(63)
            .collect();
        let dns = spec.dns_config.clone().unwrap_or_default();
        let mut o = CreateOptions {
            image: runtime::PAUSE_IMAGE.into(),
            name: Some(podspec::container_name(
                runtime::SANDBOX,
                &self.name,
                &self.ns,
                &self.uid,
                self.sandbox_attempts,
            )),
            command: vec!["sleep".into(), "2147483647".into()],
            hostname: Some(hostname.clone()),
            network: crate::POD_NETWORK.into(),
            labels: self.labels(runtime::SANDBOX, 0),
            restart: RestartPolicy::No,
            stop_timeout: Some(0),
            networking: NetworkConfig {
                dns: dns.nameservers.unwrap_or_default(),
                dns_search: dns.searches.unwrap_or_default(),
                dns_options: dns
                    .options
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|o| {
                        o.name
                            .map(|n| o.value.map_or(n.clone(), |v| format!("{n}:{v}")))
                    })
                    .collect(),
                ..NetworkConfig::default()
            },
            ..CreateOptions::default()
        };
        o.extra.init = false;
        // The pod's IPC namespace (and, with shareProcessNamespace, its PID
        // namespace) is the sandbox's, which its containers join.
        o.extra.ipc = "shareable".into();
        self.sandbox_attempts += 1;
        let (root, exe) = (ctx.root.clone(), ctx.exe.clone());
        let obs = blocking(move || -> Result<runtime::Observed, AgentError> {
            runtime::ensure_image(&root, &exe, runtime::PAUSE_IMAGE, None)?;
            let id = runtime::create(&root, &o)?;
            if let Err(e) = runtime::start(&root, &exe, &id) {
                let _ = runtime::remove(&root, &exe, &id);
                return Err(e);
            }
            let mut obs = runtime::observe(&root, &id)
                .ok_or_else(|| AgentError::Other("the sandbox vanished".into()))?;
            obs.image = id;
            Ok(obs)
        })
        .await
        .ok_or("the sandbox task failed")?
        .map_err(|e| e.to_string())?;
        let ip = obs.ip.clone().ok_or("the sandbox got no IP")?;
        if let Some(h) = &obs.hosts_path {
            let fqdn = spec
                .subdomain
                .as_ref()
                .map(|s| format!("{hostname}.{s}.{}.svc.cluster.local", self.ns));
            // In place: the containers see the file through a bind mount.
            let text = podspec::hosts_file(&ip, &hostname, fqdn.as_deref());
            std::fs::write(h, text).map_err(|e| format!("write {}: {e}", h.display()))?;
            // Beside it, resolv.conf by the pod's dnsPolicy (the pod's
            // containers share the sandbox's file).
            let r = h.with_file_name("resolv.conf");
            let node = keel_net::render_resolv_conf(
                &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            );
            let text = crate::dns::resolv_conf(&spec, &self.ns, ctx.dns.as_ref(), &node);
            std::fs::write(&r, text).map_err(|e| format!("write {}: {e}", r.display()))?;
        }
        tracing::info!(pod = self.name, ns = self.ns, ip, "pod sandbox running");
        self.sandbox = Some(obs.image);
        self.pod_ip = Some(ip);
        Ok(())
    }

    fn labels(&self, container: &str, restarts: u32) -> BTreeMap<String, String> {
        [
            (LABEL_POD_UID, self.uid.clone()),
            (LABEL_POD_NAME, self.name.clone()),
            (LABEL_POD_NS, self.ns.clone()),
            (LABEL_CONTAINER, container.to_string()),
            (LABEL_RESTARTS, restarts.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// One container: notice exits, restart with back-off, run probes.
    async fn step(&mut self, ctx: &Ctx, c: &mut Ctr, init: bool) {
        let now = Instant::now();
        if let Some(id) = c.id.clone() {
            let root = ctx.root.clone();
            let obs = blocking(move || runtime::observe(&root, &id))
                .await
                .flatten();
            let Some(o) = obs else {
                c.id = None;
                return;
            };
            c.image_id.clone_from(&o.image_id);
            if o.running {
                c.state = CState::Running(o.started_at.unwrap_or_default());
                if !init {
                    self.probe(ctx, c).await;
                }
                return;
            }
            if !matches!(c.state, CState::Terminated(_)) {
                let reason = if o.oom_killed {
                    "OOMKilled"
                } else if o.exit_code == 0 {
                    "Completed"
                } else {
                    "Error"
                };
                c.state = CState::Terminated(json!({
                    "exitCode": o.exit_code, "reason": reason,
                    "startedAt": o.started_at, "finishedAt": o.finished_at,
                    "containerID": format!("keel://{}", c.id.as_deref().unwrap_or_default()),
                }));
                c.ready = false;
                c.started = false;
                tracing::info!(
                    pod = self.name,
                    container = c.spec.name,
                    code = o.exit_code,
                    "container exited"
                );
            }
            if init && o.exit_code == 0 {
                c.succeeded = true;
                return;
            }
            let restart = match restart_policy(&self.pod).as_str() {
                "Never" => false,
                "OnFailure" => o.exit_code != 0,
                _ => true,
            };
            if !restart {
                return;
            }
            let nb = *c.not_before.get_or_insert_with(|| {
                if c.run_since
                    .is_some_and(|s| s.elapsed() >= Duration::from_mins(10))
                {
                    c.backoff_level = 0;
                }
                let d = podspec::backoff(c.backoff_level);
                c.backoff_level += 1;
                now + d
            });
            if now < nb && !c.backoff_told {
                c.backoff_told = true;
                ctx.events.warning(
                    &self.pod,
                    Some(field_path(&c.spec, init)),
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {}_{}({})",
                        c.spec.name, self.name, self.ns, self.uid
                    ),
                );
            }
            if now < nb {
                return;
            }
            if let CState::Terminated(t) = &c.state {
                c.last_term = Some(t.clone());
            }
            let (root, exe, old) = (ctx.root.clone(), ctx.exe.clone(), c.id.take());
            blocking(move || {
                old.map(|id| {
                    crate::streams::logs::keep_previous(&root, &id);
                    runtime::remove(&root, &exe, &id)
                })
            })
            .await;
            c.restarts += 1;
        }
        if c.not_before.is_some_and(|nb| now < nb) {
            return;
        }
        match self.start_container(ctx, c, init).await {
            Ok(id) => {
                c.backoff_told = false;
                c.id = Some(id);
                c.state = CState::Running(now_rfc3339());
                c.run_since = Some(Instant::now());
                c.not_before = None;
                c.probes = [ProbeState::default(); 3];
                c.started = c.spec.startup_probe.is_none();
                c.ready = false;
                if let Some(h) = c
                    .spec
                    .lifecycle
                    .as_ref()
                    .and_then(|l| l.post_start.as_ref())
                {
                    let t = probe::Target {
                        root: &ctx.root,
                        exe: &ctx.exe,
                        container_id: c.id.as_deref().unwrap_or_default(),
                        pod_ip: self.pod_ip.as_deref().unwrap_or_default(),
                        ports: c.spec.ports.as_deref().unwrap_or_default(),
                    };
                    let r = probe::action(
                        h.exec.as_ref(),
                        h.http_get.as_ref(),
                        h.tcp_socket.as_ref(),
                        None,
                        Duration::from_secs(30),
                        &t,
                    )
                    .await;
                    if let Err(e) = r {
                        tracing::warn!(
                            pod = self.name,
                            container = c.spec.name,
                            error = e,
                            "postStart hook failed"
                        );
                        let _ = self.kill(ctx, c).await;
                    }
                }
            }
            Err((reason, msg)) => {
                tracing::warn!(
                    pod = self.name,
                    container = c.spec.name,
                    reason,
                    error = msg,
                    "container not started"
                );
                ctx.events.warning(
                    &self.pod,
                    Some(field_path(&c.spec, init)),
                    "Failed",
                    format!("Error: {reason}"),
                );
                c.state = CState::Waiting(reason, msg);
                let d = podspec::backoff(c.backoff_level.max(1));
                c.backoff_level += 1;
                c.not_before = Some(now + d);
            }
        }
    }

    async fn kill(&self, ctx: &Ctx, c: &Ctr) -> Option<()> {
        let id = c.id.clone()?;
        let (root, exe, grace) = (ctx.root.clone(), ctx.exe.clone(), self.grace());
        blocking(move || runtime::stop(&root, &exe, &id, grace))
            .await?
            .ok()
    }

    /// Runs the probes that are due.
    async fn probe(&mut self, ctx: &Ctx, c: &mut Ctr) {
        let specs = [
            c.spec.startup_probe.clone(),
            c.spec.liveness_probe.clone(),
            c.spec.readiness_probe.clone(),
        ];
        let since = c.run_since.unwrap_or_else(Instant::now);
        for (k, spec) in specs.iter().enumerate() {
            let Some(pr) = spec else {
                continue;
            };
            if k > 0 && !c.started {
                continue;
            }
            let st = &mut c.probes[k];
            let delay = Duration::from_secs(
                u64::try_from(pr.initial_delay_seconds.unwrap_or(0)).unwrap_or(0),
            );
            let period = Duration::from_secs(
                u64::try_from(pr.period_seconds.unwrap_or(10).max(1)).unwrap_or(10),
            );
            let next = *st.next.get_or_insert(since + delay);
            if Instant::now() < next {
                continue;
            }
            st.next = Some(Instant::now() + period);
            let t = probe::Target {
                root: &ctx.root,
                exe: &ctx.exe,
                container_id: c.id.as_deref().unwrap_or_default(),
                pod_ip: self.pod_ip.as_deref().unwrap_or_default(),
                ports: c.spec.ports.as_deref().unwrap_or_default(),
            };
            let r = probe::run(pr, &t).await;
            let st = &mut c.probes[k];
            match &r {
                Ok(()) => {
                    st.fails = 0;
                    st.succ += 1;
                }
                Err(e) => {
                    st.succ = 0;
                    st.fails += 1;
                    let kind = ["Startup", "Liveness", "Readiness"][k];
                    ctx.events.warning(
                        &self.pod,
                        Some(field_path(&c.spec, false)),
                        "Unhealthy",
                        format!("{kind} probe failed: {e}"),
                    );
                    tracing::info!(
                        pod = self.name,
                        container = c.spec.name,
                        probe = kind,
                        error = e,
                        "probe failed"
                    );
                }
            }
            let (succ, fails) = (st.succ, st.fails);
            let failure_threshold = pr.failure_threshold.unwrap_or(3).max(1);
            match k {
                0 if succ >= 1 => c.started = true,
                0 | 1 if fails >= failure_threshold => {
                    tracing::info!(
                        pod = self.name,
                        container = c.spec.name,
                        "probe failed {fails} times; restarting the container"
                    );
                    ctx.events.normal(
                        &self.pod,
                        Some(field_path(&c.spec, false)),
                        "Killing",
                        format!(
                            "Container {} failed {} probe, will be restarted",
                            c.spec.name,
                            ["startup", "liveness"][k]
                        ),
                    );
                    c.ready = false;
                    let _ = self.kill(ctx, c).await;
                    return;
                }
                2 if succ >= pr.success_threshold.unwrap_or(1).max(1) => c.ready = true,
                2 if fails >= failure_threshold => c.ready = false,
                _ => {}
            }
        }
        if c.started && c.spec.readiness_probe.is_none() {
            c.ready = true;
        }
    }

    async fn start_container(
        &self,
        ctx: &Ctx,
        c: &mut Ctr,
        init: bool,
    ) -> Result<String, (String, String)> {
        c.attempts += 1;
        let c = &*c;
        let spec = &c.spec;
        let fp = Some(field_path(spec, init));
        let image = spec.image.clone().unwrap_or_default();
        let (root, exe) = (ctx.root.clone(), ctx.exe.clone());
        let img = image.clone();
        let present = {
            let (root, img) = (root.clone(), img.clone());
            blocking(move || runtime::image_present(&root, &img))
                .await
                .unwrap_or(false)
        };
        let t0 = Instant::now();
        if present {
            ctx.events.normal(
                &self.pod,
                fp.clone(),
                "Pulled",
                format!("Container image {image:?} already present on machine"),
            );
        } else {
            ctx.events.normal(
                &self.pod,
                fp.clone(),
                "Pulling",
                format!("Pulling image {image:?}"),
            );
        }
        let auth = if present {
            None
        } else {
            let (cfg, bad) = resources::pull_config(ctx, &self.pod).await;
            if !bad.is_empty() {
                ctx.events.warning(
                    &self.pod,
                    None,
                    "FailedToRetrieveImagePullSecret",
                    format!(
                        "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                        bad.join(", ")
                    ),
                );
            }
            cfg
        };
        let pulled = blocking(move || runtime::ensure_image(&root, &exe, &img, auth.as_ref()))
            .await
            .unwrap_or_else(|| Err(AgentError::Other("pull task failed".into())));
        if let Err(e) = pulled {
            ctx.events.warning(
                &self.pod,
                fp,
                "Failed",
                format!("Failed to pull image {image:?}: {e}"),
            );
            return Err(("ErrImagePull".to_string(), e.to_string()));
        }
        if !present {
            let secs = t0.elapsed().as_secs_f64();
            ctx.events.normal(
                &self.pod,
                fp.clone(),
                "Pulled",
                format!(
                    "Successfully pulled image {image:?} in {secs:.3}s ({secs:.3}s including waiting)"
                ),
            );
        }
        let env = self
            .env(ctx, spec)
            .await
            .map_err(|e| ("CreateContainerConfigError".to_string(), e))?;
        let vars: BTreeMap<String, String> = env.iter().cloned().collect();
        let ex = |v: &Option<Vec<String>>| -> Vec<String> {
            v.iter()
                .flatten()
                .map(|s| podspec::expand(s, &vars))
                .collect()
        };
        let (entrypoint, command) =
            podspec::entrypoint_and_cmd(&ex(&spec.command), &ex(&spec.args));
        let mut mounts = Vec::new();
        for m in spec.volume_mounts.iter().flatten() {
            let Some((dir, ro)) = self.volumes.get(&m.name) else {
                return Err((
                    "CreateContainerConfigError".into(),
                    format!("volume {:?} not found", m.name),
                ));
            };
            let mut source = dir.clone();
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                if sub.split('/').any(|p| p == "..") || sub.starts_with('/') {
                    return Err((
                        "CreateContainerConfigError".into(),
                        format!("subPath {sub:?} must be a relative path without .."),
                    ));
                }
                source = dir.join(sub);
                if !source.exists() {
                    let _ = std::fs::create_dir_all(&source);
                }
            }
            mounts.push(MountSpec {
                kind: MountKind::Bind,
                source: source.to_string_lossy().into_owned(),
                target: m.mount_path.clone(),
                read_only: *ro || m.read_only == Some(true),
                anonymous: false,
                options: Vec::new(),
            });
        }
        let limits = spec
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        let sc = spec.security_context.clone().unwrap_or_default();
        let psc = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.clone())
            .unwrap_or_default();
        let uid = sc.run_as_user.or(psc.run_as_user);
        let gid = sc.run_as_group.or(psc.run_as_group);
        let user = match (uid, gid) {
            (Some(u), Some(g)) => Some(format!("{u}:{g}")),
            (Some(u), None) => Some(u.to_string()),
            _ => None,
        };
        let caps = sc.capabilities.clone().unwrap_or_default();
        let sandbox = self.sandbox.clone().unwrap_or_default();
        let shared_pid = self
            .pod
            .spec
            .as_ref()
            .is_some_and(|s| s.share_process_namespace == Some(true));
        let mut o = CreateOptions {
            image,
            name: Some(podspec::container_name(
                &spec.name,
                &self.name,
                &self.ns,
                &self.uid,
                c.attempts - 1,
            )),
            command,
            entrypoint,
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            working_dir: spec.working_dir.clone().filter(|w| !w.is_empty()),
            user,
            labels: self.labels(&spec.name, c.restarts),
            network: format!("container:{sandbox}"),
            mounts,
            memory: limits
                .get("memory")
                .and_then(|q| podspec::memory_bytes(&q.0)),
            nano_cpus: limits.get("cpu").and_then(|q| podspec::nano_cpus(&q.0)),
            read_only: sc.read_only_root_filesystem == Some(true),
            cap_add: caps.add.unwrap_or_default(),
            cap_drop: caps.drop.unwrap_or_default(),
            restart: RestartPolicy::No,
            stop_timeout: u32::try_from(self.grace()).ok(),
            interactive: spec.stdin == Some(true),
            tty: spec.tty == Some(true),
            ..CreateOptions::default()
        };
        o.extra.ipc = format!("container:{sandbox}");
        if shared_pid {
            o.extra.pid = format!("container:{sandbox}");
        }
        let root = ctx.root.clone();
        let name = spec.name.clone();
        let id = blocking(move || -> Result<String, AgentError> {
            // A sandbox made before pods shared IPC (adopted after an
            // upgrade) is not shareable: its containers keep their own.
            if !runtime::ipc_shareable(&root, &sandbox) {
                o.extra.ipc.clear();
            }
            runtime::create(&root, &o)
        })
        .await
        .unwrap_or_else(|| Err(AgentError::Other("create task failed".into())))
        .map_err(|e| ("CreateContainerError".to_string(), e.to_string()))?;
        ctx.events.normal(
            &self.pod,
            fp.clone(),
            "Created",
            format!("Created container: {name}"),
        );
        let (root, exe) = (ctx.root.clone(), ctx.exe.clone());
        let started = blocking(move || -> Result<String, AgentError> {
            if let Err(e) = runtime::start(&root, &exe, &id) {
                let _ = runtime::remove(&root, &exe, &id);
                return Err(e);
            }
            Ok(id)
        })
        .await
        .unwrap_or_else(|| Err(AgentError::Other("start task failed".into())))
        .map_err(|e| ("RunContainerError".to_string(), e.to_string()))?;
        ctx.events.normal(
            &self.pod,
            fp,
            "Started",
            format!("Started container {name}"),
        );
        Ok(started)
    }

    /// Stops every container within `grace` seconds (preStop hooks first),
    /// then removes them, the sandbox (network namespace, address) and the
    /// pod's directory.
    async fn terminate(&mut self, ctx: &Ctx, grace: i64) {
        let pod_ip = self.pod_ip.clone().unwrap_or_default();
        for (c, init) in self
            .ctrs
            .iter()
            .map(|c| (c, false))
            .chain(self.inits.iter().map(|c| (c, true)))
        {
            if c.id.is_some() && matches!(c.state, CState::Running(_)) {
                ctx.events.normal(
                    &self.pod,
                    Some(field_path(&c.spec, init)),
                    "Killing",
                    format!("Stopping container {}", c.spec.name),
                );
            }
        }
        let stops = self.ctrs.iter().chain(self.inits.iter()).filter_map(|c| {
            let id = c.id.clone()?;
            let hook = c.spec.lifecycle.as_ref().and_then(|l| l.pre_stop.clone());
            let ports = c.spec.ports.clone().unwrap_or_default();
            let pod_ip = pod_ip.clone();
            Some(async move {
                let t0 = Instant::now();
                if let Some(h) = hook {
                    let t = probe::Target {
                        root: &ctx.root,
                        exe: &ctx.exe,
                        container_id: &id,
                        pod_ip: &pod_ip,
                        ports: &ports,
                    };
                    let limit = Duration::from_secs(u64::try_from(grace.max(1)).unwrap_or(1));
                    if let Err(e) = probe::action(
                        h.exec.as_ref(),
                        h.http_get.as_ref(),
                        h.tcp_socket.as_ref(),
                        None,
                        limit,
                        &t,
                    )
                    .await
                    {
                        tracing::info!(container = id, error = e, "preStop hook failed");
                    }
                }
                let left = grace - i64::try_from(t0.elapsed().as_secs()).unwrap_or(0);
                let (root, exe) = (ctx.root.clone(), ctx.exe.clone());
                blocking(move || runtime::stop(&root, &exe, &id, left.max(0))).await;
            })
        });
        futures::future::join_all(stops).await;
        let (root, exe, uid, dir) = (
            ctx.root.clone(),
            ctx.exe.clone(),
            self.uid.clone(),
            self.dir.clone(),
        );
        blocking(move || {
            // Containers first, the sandbox (its network namespace) last.
            let mut all = runtime::pod_containers(&root);
            all.retain(|(_, u, _, _)| *u == uid);
            all.sort_by_key(|(_, _, n, _)| n == runtime::SANDBOX);
            for (id, _, _, _) in all {
                if let Err(e) = runtime::remove(&root, &exe, &id) {
                    tracing::warn!(container = id, error = %e, "container not removed");
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        })
        .await;
        for c in self.ctrs.iter_mut().chain(self.inits.iter_mut()) {
            c.id = None;
        }
        self.sandbox = None;
        tracing::info!(pod = self.name, ns = self.ns, "pod stopped");
    }

    /// The kubelet's last word on a deleted pod: delete with grace 0.
    async fn finish_deletion(&self, ctx: &Ctx) {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &self.ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&self.name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = self.name, error = %e, "pod not deleted"),
        }
    }

    async fn report(&mut self, ctx: &Ctx) {
        let status = self.status(ctx);
        if self.last_report.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &self.ns);
        match api
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
        {
            Ok(_) => self.last_report = Some(status),
            Err(e) => tracing::warn!(pod = self.name, error = %e, "pod status not written"),
        }
    }

    fn condition(&mut self, t: &str, ok: bool, reason: Option<(&str, String)>) -> Value {
        let now = now_rfc3339();
        let e = self.conds.entry(t.to_string()).or_insert((ok, now.clone()));
        if e.0 != ok {
            *e = (ok, now);
        }
        let mut c = json!({"type": t, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": e.1});
        if let (false, Some((r, m))) = (ok, reason) {
            c["reason"] = json!(r);
            c["message"] = json!(m);
        }
        c
    }

    fn container_status(&self, c: &Ctr, waiting_reason: &str) -> Value {
        let now = Instant::now();
        let mut last = c
            .last_term
            .clone()
            .map_or(json!({}), |t| json!({"terminated": t}));
        let state = match &c.state {
            CState::Pending => json!({"waiting": {"reason": waiting_reason}}),
            CState::Waiting(r, m) => json!({"waiting": {"reason": r, "message": m}}),
            CState::Running(at) => json!({"running": {"startedAt": at}}),
            CState::Terminated(t) if c.not_before.is_some_and(|nb| now < nb) => {
                last = json!({"terminated": t});
                let secs = podspec::backoff(c.backoff_level.saturating_sub(1)).as_secs();
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!(
                    "back-off {secs}s restarting failed container={} pod={}_{}({})", c.spec.name, self.name, self.ns, self.uid)}})
            }
            CState::Terminated(t) => json!({"terminated": t}),
        };
        let running = matches!(c.state, CState::Running(_));
        let mut s = json!({
            "name": c.spec.name,
            "image": c.spec.image,
            "imageID": c.image_id,
            "ready": c.ready && running,
            "started": c.started && running,
            "restartCount": c.restarts,
            "state": state,
            "lastState": last,
        });
        if let Some(id) = &c.id {
            s["containerID"] = json!(format!("keel://{id}"));
        }
        s
    }

    fn status(&mut self, ctx: &Ctx) -> Value {
        let policy = restart_policy(&self.pod);
        let inits_done = self.inits.iter().all(|c| c.succeeded);
        let init_failed = policy == "Never"
            && self
                .inits
                .iter()
                .any(|c| matches!(&c.state, CState::Terminated(t) if t["exitCode"] != 0));
        let exited = |c: &Ctr| match &c.state {
            CState::Terminated(t) => Some(t["exitCode"].as_i64().unwrap_or(-1)),
            _ => None,
        };
        let any_running = self
            .ctrs
            .iter()
            .any(|c| matches!(c.state, CState::Running(_)));
        let ever_ran = self.ctrs.iter().any(|c| {
            c.id.is_some() || c.restarts > 0 || c.last_term.is_some() || exited(c).is_some()
        });
        let codes: Vec<Option<i64>> = self.ctrs.iter().map(exited).collect();
        let all_exited = codes.iter().all(Option::is_some);
        let phase = if init_failed {
            "Failed"
        } else if self.sandbox.is_none() && !ever_ran || !inits_done {
            "Pending"
        } else if any_running {
            "Running"
        } else if all_exited && policy != "Always" {
            let all_ok = codes.iter().all(|c| *c == Some(0));
            if all_ok {
                "Succeeded"
            } else if policy == "Never" {
                "Failed"
            } else {
                "Running"
            }
        } else if ever_ran {
            "Running"
        } else {
            "Pending"
        };
        let names = |v: &[Ctr], f: &dyn Fn(&Ctr) -> bool| {
            let n: Vec<&str> = v
                .iter()
                .filter(|c| !f(c))
                .map(|c| c.spec.name.as_str())
                .collect();
            format!("[{}]", n.join(" "))
        };
        let ready_all = self
            .ctrs
            .iter()
            .all(|c| c.ready && matches!(c.state, CState::Running(_)));
        let not_init = names(&self.inits, &|c| c.succeeded);
        let not_ready = names(&self.ctrs, &|c| {
            c.ready && matches!(c.state, CState::Running(_))
        });
        let mut conditions = Vec::new();
        let scheduled = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
            .and_then(|c| serde_json::to_value(c).ok());
        conditions.push(self.condition("PodReadyToStartContainers", self.sandbox.is_some(), None));
        conditions.push(self.condition(
            "Initialized",
            inits_done,
            Some((
                "ContainersNotInitialized",
                format!("containers with incomplete status: {not_init}"),
            )),
        ));
        conditions.push(self.condition(
            "Ready",
            ready_all,
            Some((
                "ContainersNotReady",
                format!("containers with unready status: {not_ready}"),
            )),
        ));
        conditions.push(self.condition(
            "ContainersReady",
            ready_all,
            Some((
                "ContainersNotReady",
                format!("containers with unready status: {not_ready}"),
            )),
        ));
        if let Some(s) = scheduled {
            conditions.push(s);
        }
        let waiting = if inits_done {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let statuses: Vec<Value> = self
            .ctrs
            .iter()
            .map(|c| self.container_status(c, waiting))
            .collect();
        let init_statuses: Vec<Value> = self
            .inits
            .iter()
            .map(|c| self.container_status(c, "PodInitializing"))
            .collect();
        let mut s = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": ctx.node_ip,
            "hostIPs": [{"ip": ctx.node_ip}],
            "startTime": self.start_time,
            "qosClass": resources::qos_class(&self.pod),
            "containerStatuses": statuses,
            "reason": null,
            "message": null,
        });
        if !init_statuses.is_empty() {
            s["initContainerStatuses"] = json!(init_statuses);
        }
        if let Some(ip) = &self.pod_ip {
            s["podIP"] = json!(ip);
            s["podIPs"] = json!([{"ip": ip}]);
        }
        if let Some((r, m)) = &self.error {
            s["reason"] = json!(r);
            s["message"] = json!(m);
        }
        s
    }

    /// The container's environment, in order (later names win).
    async fn env(&self, ctx: &Ctx, c: &Container) -> Result<Vec<(String, String)>, String> {
        let mut out: Vec<(String, String)> = Vec::new();
        let set = |out: &mut Vec<(String, String)>, k: String, v: String| match out
            .iter_mut()
            .find(|(n, _)| *n == k)
        {
            Some(e) => e.1 = v,
            None => out.push((k, v)),
        };
        for ef in c.env_from.iter().flatten() {
            let prefix = ef.prefix.clone().unwrap_or_default();
            let data = if let Some(r) = &ef.config_map_ref {
                resources::config_map(ctx, &self.ns, &r.name, r.optional == Some(true)).await?
            } else if let Some(r) = &ef.secret_ref {
                resources::secret(ctx, &self.ns, &r.name, r.optional == Some(true)).await?
            } else {
                BTreeMap::new()
            };
            for (k, v) in data {
                set(
                    &mut out,
                    format!("{prefix}{k}"),
                    String::from_utf8_lossy(&v).into_owned(),
                );
            }
        }
        let pod_ip = self.pod_ip.clone().unwrap_or_default();
        for e in c.env.iter().flatten() {
            let value = if let Some(vf) = &e.value_from {
                if let Some(f) = &vf.field_ref {
                    podspec::field_ref(&self.pod, &f.field_path, &pod_ip, &ctx.node_ip).ok_or_else(
                        || format!("env {}: unsupported fieldPath {:?}", e.name, f.field_path),
                    )?
                } else if let Some(r) = &vf.resource_field_ref {
                    resources::resource_field(&self.pod, c, r)
                } else if let Some((kind, name, key, optional)) = vf
                    .config_map_key_ref
                    .as_ref()
                    .map(|r| ("ConfigMap", &r.name, &r.key, r.optional == Some(true)))
                    .or_else(|| {
                        vf.secret_key_ref
                            .as_ref()
                            .map(|r| ("Secret", &r.name, &r.key, r.optional == Some(true)))
                    })
                {
                    let data = if kind == "Secret" {
                        resources::secret(ctx, &self.ns, name, optional).await?
                    } else {
                        resources::config_map(ctx, &self.ns, name, optional).await?
                    };
                    match data.get(key) {
                        Some(v) => String::from_utf8_lossy(v).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {key} in {kind} {}/{name}",
                                self.ns
                            ));
                        }
                    }
                } else {
                    String::new()
                }
            } else {
                let vars: BTreeMap<String, String> = out.iter().cloned().collect();
                podspec::expand(e.value.as_deref().unwrap_or_default(), &vars)
            };
            set(&mut out, e.name.clone(), value);
        }
        Ok(out)
    }

    /// Fills each volume's directory under `<root>/pods/<uid>/volumes`.
    async fn prepare_volumes(&mut self, ctx: &Ctx) -> Result<(), String> {
        let vdir = self.dir.join("volumes");
        let spec = self.pod.spec.clone().unwrap_or_default();
        for v in spec.volumes.iter().flatten() {
            let d = vdir.join(&v.name);
            let (path, ro) = if v.empty_dir.is_some() {
                mkdir(&d, 0o777)?;
                (d, false)
            } else if let Some(h) = &v.host_path {
                let p = PathBuf::from(&h.path);
                match h.type_.as_deref() {
                    Some("DirectoryOrCreate") => mkdir(&p, 0o755)?,
                    Some("FileOrCreate") if !p.exists() => {
                        std::fs::write(&p, b"").map_err(|e| format!("hostPath {}: {e}", h.path))?;
                    }
                    Some("Directory") if !p.is_dir() => {
                        return Err(format!(
                            "hostPath type check failed: {} is not a directory",
                            h.path
                        ));
                    }
                    Some("File") if !p.is_file() => {
                        return Err(format!(
                            "hostPath type check failed: {} is not a file",
                            h.path
                        ));
                    }
                    _ => {}
                }
                (p, false)
            } else if v.config_map.is_some()
                || v.secret.is_some()
                || v.projected.is_some()
                || v.downward_api.is_some()
            {
                mkdir(&d, 0o755)?;
                let payload = resources::fill_volume(
                    ctx,
                    &self.pod,
                    v,
                    &d,
                    self.pod_ip.as_deref().unwrap_or_default(),
                )
                .await?;
                atomic::write(&d, &payload)?;
                (d, true)
            } else {
                return Err(format!(
                    "volume {:?}: this volume type is not supported by keel yet",
                    v.name
                ));
            };
            self.volumes.insert(v.name.clone(), (path, ro));
        }
        self.volumes_at = Some(Instant::now());
        Ok(())
    }

    /// Brings configMap, secret, projected and downwardAPI volumes up to
    /// date (the kubelet's atomic `..data` swap: a running container sees
    /// the new files); a failed read keeps what is there.
    async fn refresh_volumes(&mut self, ctx: &Ctx) {
        if self
            .volumes_at
            .is_some_and(|t| t.elapsed() < VOLUME_REFRESH)
        {
            return;
        }
        self.volumes_at = Some(Instant::now());
        let spec = self.pod.spec.clone().unwrap_or_default();
        for v in spec.volumes.iter().flatten() {
            if v.config_map.is_none()
                && v.secret.is_none()
                && v.projected.is_none()
                && v.downward_api.is_none()
            {
                continue;
            }
            let d = self.dir.join("volumes").join(&v.name);
            let ip = self.pod_ip.clone().unwrap_or_default();
            let r = match resources::fill_volume(ctx, &self.pod, v, &d, &ip).await {
                Ok(payload) => atomic::write(&d, &payload),
                Err(e) => Err(e),
            };
            match r {
                Ok(true) => tracing::info!(pod = self.name, volume = v.name, "volume updated"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(
                        pod = self.name,
                        volume = v.name,
                        error = e,
                        "volume not refreshed"
                    );
                }
            }
        }
    }
}

fn mkdir(p: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(p).map_err(|e| format!("create {}: {e}", p.display()))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", p.display()))
}
