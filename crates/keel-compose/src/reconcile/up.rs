//! Applying: networks, volumes, images, then containers in dependency order,
//! waiting for each dependency's condition.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{
    BuildPolicy, Container, Event, Health, LABEL_NETWORK, LABEL_PROJECT, LABEL_VOLUME, ProjectSpec,
    ReconcileError, Reconciler, Result, UpOptions, engine_err, progress,
};

impl Reconciler<'_> {
    /// Networks the given services join: (key, full name, external, subnet).
    #[allow(clippy::type_complexity)]
    pub(super) fn networks_for(
        &self,
        services: &[String],
    ) -> Result<Vec<(String, String, bool, Option<String>)>> {
        let mut out: Vec<(String, String, bool, Option<String>)> = Vec::new();
        for s in services {
            let svc = self.project.service(s)?;
            if svc.network_mode.is_some() {
                continue;
            }
            for (key, _) in ProjectSpec::service_networks(svc) {
                let name = self.project.network_name(key);
                let def = self.project.model.networks.get(key);
                let external = def.is_some_and(|n| n.external);
                let subnet = def
                    .and_then(|n| n.ipam.as_ref())
                    .and_then(|i| i.config.iter().find_map(|c| c.subnet.clone()));
                if !out.iter().any(|(_, n, _, _)| *n == name) {
                    out.push((key.to_string(), name, external, subnet));
                }
            }
        }
        Ok(out)
    }

    /// The networks and volumes `services` need (`run --no-deps` needs them
    /// without bringing anything up).
    pub fn ensure_networks_and_volumes(&mut self, services: &[String]) -> Result<()> {
        self.ensure_networks(services)?;
        self.ensure_volumes(services)
    }

    pub(super) fn ensure_networks(&mut self, services: &[String]) -> Result<()> {
        for (key, name, external, subnet) in self.networks_for(services)? {
            let exists = self
                .engine
                .network_exists(&name)
                .map_err(engine_err(format!("inspecting network {name}")))?;
            if exists {
                continue;
            }
            if external {
                return Err(ReconcileError::ExternalNetwork { name });
            }
            self.emit(progress("Network", &name, "Creating"));
            let labels = BTreeMap::from([
                (LABEL_PROJECT.to_string(), self.project.model.name.clone()),
                (LABEL_NETWORK.to_string(), key),
            ]);
            self.engine
                .create_network(&name, subnet.as_deref(), &labels)
                .map_err(engine_err(format!("creating network {name}")))?;
            self.emit(progress("Network", &name, "Created"));
        }
        Ok(())
    }

    pub(super) fn ensure_volumes(&mut self, services: &[String]) -> Result<()> {
        let mut keys = BTreeSet::new();
        for s in services {
            for m in &self.project.service(s)?.volumes {
                if m.kind == "volume"
                    && let Some(src) = &m.source
                {
                    keys.insert(src.clone());
                }
            }
        }
        for key in keys {
            let Some(v) = self.project.model.volumes.get(&key) else {
                continue;
            };
            let exists = self
                .engine
                .volume_exists(&v.name)
                .map_err(engine_err(format!("inspecting volume {}", v.name)))?;
            if exists {
                continue;
            }
            if v.external {
                return Err(ReconcileError::ExternalVolume {
                    name: v.name.clone(),
                });
            }
            self.emit(progress("Volume", &v.name, "Creating"));
            let labels = BTreeMap::from([
                (LABEL_PROJECT.to_string(), self.project.model.name.clone()),
                (LABEL_VOLUME.to_string(), key.clone()),
            ]);
            self.engine
                .create_volume(&v.name, &labels)
                .map_err(engine_err(format!("creating volume {}", v.name)))?;
            self.emit(progress("Volume", &v.name, "Created"));
        }
        Ok(())
    }

    /// Pulls and builds what the services need, the way docker compose does:
    /// a service with an `image` is pulled per its `pull_policy` (or `pull`,
    /// `up --pull`'s override; default `missing`), a failed pull of a service
    /// that can be built is built instead; a `build` runs when the image is
    /// missing, with `pull_policy: build`, and always under `BuildPolicy::Always`.
    pub fn ensure_images(
        &mut self,
        services: &[String],
        policy: BuildPolicy,
        pull: Option<&str>,
    ) -> Result<()> {
        let mut done = BTreeSet::new();
        for s in services {
            let svc = self.project.service(s)?.clone();
            let image = self.project.image_of(s);
            if !done.insert(image.clone()) {
                continue;
            }
            let mut present = self
                .engine
                .image_id(&image)
                .map_err(engine_err(format!("inspecting image {image}")))?
                .is_some();
            let build = svc.build.as_ref().filter(|_| policy != BuildPolicy::Never);
            let pull_policy = if policy == BuildPolicy::Always && build.is_some() {
                "build"
            } else {
                pull.or(svc.pull_policy.as_deref()).unwrap_or("missing")
            };
            if svc.image.is_some() {
                // `daily`, `weekly` and `every_*` pull when missing too: keel
                // keeps no pull dates.
                let want = match pull_policy {
                    "always" => true,
                    "never" | "build" => false,
                    _ => !present,
                };
                if want {
                    self.emit(progress("Image", &image, "Pulling"));
                    match self.engine.pull(&image) {
                        Ok(()) => {
                            self.emit(progress("Image", &image, "Pulled"));
                            present = true;
                        }
                        Err(e) if build.is_some() => self.emit(Event::Warning(format!(
                            "pulling {image} for service {s} failed, building it instead: {e}"
                        ))),
                        Err(e) => {
                            return Err(engine_err(format!("pulling image for service {s}"))(e));
                        }
                    }
                }
            }
            if let Some(b) = build {
                if !present || pull_policy == "build" {
                    self.emit(progress("Image", &image, "Building"));
                    self.engine
                        .build(&image, b)
                        .map_err(engine_err(format!("building service {s}")))?;
                    self.emit(progress("Image", &image, "Built"));
                }
            } else if !present {
                let why = if svc.build.is_some() {
                    "--no-build forbids building it".to_string()
                } else if svc.image.is_none() {
                    "the service has neither image nor build".to_string()
                } else {
                    format!("pull_policy is {pull_policy}")
                };
                return Err(ReconcileError::Invalid {
                    service: s.clone(),
                    message: format!("no such image {image}: it is not present locally and {why}"),
                });
            }
        }
        Ok(())
    }

    pub(super) fn create_and_start(
        &mut self,
        service: &str,
        number: u32,
        start: bool,
    ) -> Result<String> {
        let spec = self
            .project
            .container_spec(self.engine, service, number, None)?;
        self.emit(progress("Container", &spec.name, "Creating"));
        let id = self
            .engine
            .create(&spec)
            .map_err(engine_err(format!("creating container {}", spec.name)))?;
        self.emit(progress("Container", &spec.name, "Created"));
        if start {
            self.start_one(&id, &spec.name)?;
        }
        Ok(id)
    }

    pub(super) fn start_one(&mut self, id: &str, name: &str) -> Result<()> {
        self.emit(progress("Container", name, "Starting"));
        self.engine
            .start(id)
            .map_err(engine_err(format!("starting container {name}")))?;
        self.emit(progress("Container", name, "Started"));
        Ok(())
    }

    /// Waits until `dep`'s containers meet `condition`.
    pub(super) fn wait_dependency(
        &mut self,
        service: &str,
        dep: &str,
        condition: &str,
        timeout: Duration,
    ) -> Result<()> {
        let fail = |reason: String| ReconcileError::Dependency {
            service: service.to_string(),
            dependency: dep.to_string(),
            reason,
        };
        if condition == "service_healthy"
            && self
                .project
                .model
                .services
                .get(dep)
                .and_then(|s| s.healthcheck.as_ref())
                .is_none_or(|h| h.disable || h.test.first().is_some_and(|t| t == "NONE"))
        {
            return Err(fail("it has no healthcheck configured".into()));
        }
        if condition != "service_healthy" && condition != "service_completed_successfully" {
            return Ok(());
        }
        let ids: Vec<(String, String)> = self
            .containers()?
            .into_iter()
            .filter(|c| c.service == dep && !c.oneoff)
            .map(|c| (c.id, c.name))
            .collect();
        for (id, name) in ids {
            self.emit(progress("Container", &name, "Waiting"));
            let step = Duration::from_millis(100);
            let mut waited = Duration::ZERO;
            loop {
                let c = self
                    .engine
                    .container(&id)
                    .map_err(engine_err(format!("inspecting {name}")))?;
                let done = if condition == "service_healthy" {
                    match (c.running(), c.health) {
                        (_, Some(Health::Healthy)) if c.running() => true,
                        (_, Some(Health::Unhealthy)) => {
                            return Err(fail(format!("container {name} is unhealthy")));
                        }
                        (false, _) if c.status == "exited" => {
                            return Err(fail(format!("container {name} exited ({})", c.exit_code)));
                        }
                        _ => false,
                    }
                } else if c.status == "exited" {
                    if c.exit_code != 0 {
                        return Err(fail(format!(
                            "container {name} didn't complete successfully: exit {}",
                            c.exit_code
                        )));
                    }
                    true
                } else {
                    false
                };
                if done {
                    let st = if condition == "service_healthy" {
                        "Healthy"
                    } else {
                        "Exited"
                    };
                    self.emit(progress("Container", &name, st));
                    break;
                }
                if waited >= timeout {
                    return Err(fail(format!(
                        "timed out after {}s waiting for {name} ({})",
                        timeout.as_secs(),
                        condition
                    )));
                }
                self.engine.sleep(step);
                waited += step;
            }
        }
        Ok(())
    }

    /// `up`: creates, recreates, starts and scales so the project matches its model.
    pub fn up(&mut self, o: &UpOptions) -> Result<()> {
        for s in o.scale.keys() {
            self.project.service(s)?;
        }
        let mut order = self.project.order(&o.services)?;
        if o.no_deps && !o.services.is_empty() {
            order.retain(|s| o.services.contains(s));
        }
        let all = self.containers()?;
        let orphans = self.orphans(&all);
        if o.remove_orphans {
            for c in &orphans {
                self.remove_container(c, o.stop_timeout, false)?;
            }
        } else {
            self.report_orphans(&orphans);
        }
        for s in &order {
            let keys = self.project.unsupported_keys(s);
            if !keys.is_empty() {
                self.emit(Event::Warning(format!(
                    "service {s}: keel cannot apply {}; ignored",
                    keys.join(", ")
                )));
            }
        }
        self.ensure_images(&order, o.build, o.pull.as_deref())?;
        self.ensure_networks(&order)?;
        self.ensure_volumes(&order)?;
        let mut changed: BTreeSet<String> = BTreeSet::new();
        let mut touched: BTreeSet<String> = BTreeSet::new();
        for s in &order {
            self.up_service(s, o, &all, &mut changed, &mut touched)?;
        }
        if o.wait && o.start {
            self.wait_all(&order, o.timeout)?;
        }
        Ok(())
    }

    pub(super) fn up_service(
        &mut self,
        s: &str,
        o: &UpOptions,
        all: &[Container],
        changed: &mut BTreeSet<String>,
        touched: &mut BTreeSet<String>,
    ) -> Result<()> {
        let svc = self.project.service(s)?.clone();
        let want = self.project.replicas(s, &o.scale);
        if want > 1 && svc.container_name.is_some() {
            return Err(ReconcileError::Invalid {
                service: s.to_string(),
                message: format!(
                    "container_name {:?} cannot be used with {want} replicas",
                    svc.container_name.as_deref().unwrap_or_default()
                ),
            });
        }
        if o.start && !o.no_deps {
            for (dep, d) in &svc.depends_on {
                if self.project.model.services.contains_key(dep) {
                    self.wait_dependency(s, dep, &d.condition, o.timeout)?;
                }
            }
        }
        let hash = self.project.hashes.get(s).cloned().unwrap_or_default();
        let image_id = self
            .engine
            .image_id(&self.project.image_of(s))
            .map_err(engine_err(format!("inspecting the image of {s}")))?;
        let mut existing: Vec<Container> = all
            .iter()
            .filter(|c| c.service == s && !c.oneoff)
            .cloned()
            .collect();
        existing.sort_by_key(|c| c.number);
        // Scale down: the highest numbers go first, like docker compose.
        while existing.len() > want as usize {
            let c = existing.pop().unwrap_or_else(|| unreachable!());
            self.remove_container(&c, o.stop_timeout, false)?;
        }
        let restart_for_dep = svc
            .depends_on
            .iter()
            .any(|(dep, d)| d.restart && changed.contains(dep));
        // A recreated `network_mode: service:X` took its namespace with it.
        let netns_gone = svc
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("service:"))
            .is_some_and(|dep| changed.contains(dep));
        for c in &existing {
            let outdated = c.config_hash != hash
                || netns_gone
                || image_id.as_ref().is_some_and(|id| *id != c.image_id);
            if (o.force_recreate || outdated) && !o.no_recreate {
                self.emit(progress("Container", &c.name, "Recreate"));
                self.remove_container(c, o.stop_timeout, false)?;
                self.create_and_start(s, c.number, o.start)?;
                self.emit(progress("Container", &c.name, "Recreated"));
                changed.insert(s.to_string());
                touched.insert(s.to_string());
            } else if !o.start {
            } else if restart_for_dep {
                self.emit(progress("Container", &c.name, "Restarting"));
                if c.running() {
                    self.engine
                        .stop(&c.id, o.stop_timeout)
                        .map_err(engine_err(format!("stopping {}", c.name)))?;
                }
                self.start_one(&c.id, &c.name)?;
                touched.insert(s.to_string());
            } else if !c.running() {
                self.start_one(&c.id, &c.name)?;
                touched.insert(s.to_string());
            } else {
                self.emit(progress("Container", &c.name, "Running"));
            }
        }
        let taken: BTreeSet<u32> = existing.iter().map(|c| c.number).collect();
        let mut number = 1;
        for _ in existing.len()..want as usize {
            while taken.contains(&number) {
                number += 1;
            }
            self.create_and_start(s, number, o.start)?;
            number += 1;
            changed.insert(s.to_string());
            touched.insert(s.to_string());
        }
        Ok(())
    }

    /// `up --wait`, by docker compose's rules: a service some other service
    /// depends on with `service_completed_successfully` must exit 0; every
    /// other one must be running, and healthy if it has a healthcheck.
    pub(super) fn wait_all(&mut self, services: &[String], timeout: Duration) -> Result<()> {
        let set: BTreeSet<&String> = services.iter().collect();
        let targets: Vec<Container> = self
            .containers()?
            .into_iter()
            .filter(|c| !c.oneoff && set.contains(&c.service))
            .collect();
        let step = Duration::from_millis(100);
        // docker compose first looks after one 500 ms tick: a container that
        // crashes right after starting fails `--wait` instead of passing as
        // running.
        let first = Duration::from_millis(500);
        self.engine.sleep(first);
        let mut waited = first;
        for c in targets {
            let one_shot = self.project.model.services.values().any(|s| {
                s.depends_on.iter().any(|(d, dep)| {
                    *d == c.service && dep.condition == "service_completed_successfully"
                })
            });
            let fail = |reason: String| ReconcileError::Wait {
                service: c.service.clone(),
                reason,
            };
            loop {
                let cur = self
                    .engine
                    .container(&c.id)
                    .map_err(engine_err(format!("inspecting {}", c.name)))?;
                let ready = match (cur.status.as_str(), cur.health) {
                    ("exited", _) if one_shot && cur.exit_code == 0 => Some("Exited"),
                    ("exited", _) if one_shot => {
                        return Err(fail(format!(
                            "container {} didn't complete successfully: exit {}",
                            c.name, cur.exit_code
                        )));
                    }
                    ("exited", _) => {
                        return Err(fail(format!(
                            "container {} exited ({})",
                            c.name, cur.exit_code
                        )));
                    }
                    (_, Some(Health::Unhealthy)) => {
                        return Err(fail(format!("container {} is unhealthy", c.name)));
                    }
                    _ if one_shot => None,
                    (_, Some(Health::Healthy)) if cur.running() => Some("Healthy"),
                    (_, None) if cur.running() => Some("Running"),
                    _ => None,
                };
                if let Some(st) = ready {
                    self.emit(progress("Container", &c.name, st));
                    break;
                }
                if waited >= timeout {
                    let state = match cur.health {
                        Some(Health::Starting) => "still starting".to_string(),
                        _ => cur.status.clone(),
                    };
                    return Err(ReconcileError::WaitTimeout {
                        secs: timeout.as_secs(),
                        service: c.service.clone(),
                        reason: format!("container {} is {state}", c.name),
                    });
                }
                self.engine.sleep(step);
                waited += step;
            }
        }
        Ok(())
    }
}
