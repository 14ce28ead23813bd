//! Finding the project's containers again, orphans, and tearing down:
//! `down`, `start`, `stop`.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Container, DownOptions, Event, Reconciler, Result, engine_err, progress};

impl Reconciler<'_> {
    pub(super) fn emit(&mut self, e: Event) {
        (self.events)(e);
    }

    pub(super) fn containers(&self) -> Result<Vec<Container>> {
        self.engine
            .containers(&self.project.model.name)
            .map_err(engine_err("listing containers"))
    }

    /// Orphans as compose-go's `isOrphaned` has them: containers of services
    /// the file no longer defines (services left out by profiles or by naming
    /// others on the command line are defined), and exited one-off (`run`)
    /// containers of any service.
    pub fn orphans(&self, all: &[Container]) -> Vec<Container> {
        all.iter()
            .filter(|c| {
                if c.oneoff {
                    matches!(c.status.as_str(), "exited" | "dead")
                } else {
                    !self.project.model.services.contains_key(&c.service)
                        && !self.project.disabled.contains(&c.service)
                }
            })
            .cloned()
            .collect()
    }

    pub(super) fn report_orphans(&mut self, orphans: &[Container]) {
        if orphans.is_empty() {
            return;
        }
        let names: Vec<&str> = orphans.iter().map(|c| c.name.as_str()).collect();
        self.emit(Event::Warning(format!(
            "Found orphan containers ([{}]) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
            names.join(" ")
        )));
    }

    pub(super) fn remove_container(
        &mut self,
        c: &Container,
        timeout: Option<u32>,
        volumes: bool,
    ) -> Result<()> {
        if c.running() {
            self.emit(progress("Container", &c.name, "Stopping"));
            self.engine
                .stop(&c.id, timeout)
                .map_err(engine_err(format!("stopping {}", c.name)))?;
            self.emit(progress("Container", &c.name, "Stopped"));
        }
        self.emit(progress("Container", &c.name, "Removing"));
        self.engine
            .remove(&c.id, volumes)
            .map_err(engine_err(format!("removing {}", c.name)))?;
        self.emit(progress("Container", &c.name, "Removed"));
        Ok(())
    }

    /// `down`: stops and removes the project's containers (dependents first),
    /// its networks, and with `volumes` its named volumes.
    pub fn down(&mut self, o: &DownOptions) -> Result<()> {
        let all = self.containers()?;
        let orphans = self.orphans(&all);
        let order = self.project.order(&[])?;
        let mut doomed: Vec<Container> = Vec::new();
        for s in order.iter().rev() {
            let mut cs: Vec<Container> = all.iter().filter(|c| &c.service == s).cloned().collect();
            cs.sort_by_key(|c| std::cmp::Reverse(c.number));
            doomed.extend(cs);
        }
        // Containers of services disabled by profiles, and one-off containers
        // of services no longer in the model, go with the project.
        doomed.extend(
            all.iter()
                .filter(|c| {
                    !self.project.model.services.contains_key(&c.service)
                        && (c.oneoff || self.project.disabled.contains(&c.service))
                })
                .cloned(),
        );
        if o.remove_orphans {
            doomed.extend(orphans.iter().cloned());
        } else {
            self.report_orphans(&orphans);
        }
        // An exited one-off of a service is both the service's and an orphan.
        let mut seen = BTreeSet::new();
        doomed.retain(|c| seen.insert(c.id.clone()));
        // Stopping mostly waits for processes to exit: all at once.
        let running: Vec<&Container> = doomed.iter().filter(|c| c.running()).collect();
        for c in &running {
            self.emit(progress("Container", &c.name, "Stopping"));
        }
        let ids: Vec<String> = running.iter().map(|c| c.id.clone()).collect();
        for (c, r) in running.iter().zip(self.engine.stop_many(&ids, o.timeout)) {
            r.map_err(engine_err(format!("stopping {}", c.name)))?;
            self.emit(progress("Container", &c.name, "Stopped"));
        }
        for c in &doomed {
            let mut c = c.clone();
            c.status = "exited".into();
            self.remove_container(&c, o.timeout, o.volumes)?;
        }
        let mut nets: Vec<String> = self
            .project
            .model
            .networks
            .values()
            .filter(|n| !n.external)
            .map(|n| n.name.clone())
            .collect();
        nets.dedup();
        for n in nets {
            let exists = self
                .engine
                .network_exists(&n)
                .map_err(engine_err(format!("inspecting network {n}")))?;
            if exists {
                self.emit(progress("Network", &n, "Removing"));
                match self.engine.remove_network(&n) {
                    Ok(()) => self.emit(progress("Network", &n, "Removed")),
                    // Orphans kept by the user may still use it; docker compose warns too.
                    Err(e) if !orphans.is_empty() && !o.remove_orphans => {
                        self.emit(Event::Warning(format!("network {n}: {e}")));
                    }
                    Err(e) => return Err(engine_err(format!("removing network {n}"))(e)),
                }
            }
        }
        if o.volumes {
            for v in self.project.model.volumes.values().filter(|v| !v.external) {
                let exists = self
                    .engine
                    .volume_exists(&v.name)
                    .map_err(engine_err(format!("inspecting volume {}", v.name)))?;
                if exists {
                    self.emit(progress("Volume", &v.name, "Removing"));
                    self.engine
                        .remove_volume(&v.name)
                        .map_err(engine_err(format!("removing volume {}", v.name)))?;
                    self.emit(progress("Volume", &v.name, "Removed"));
                }
            }
        }
        self.engine
            .remove_project_files(&self.project.model.name)
            .map_err(engine_err("removing the project's secret and config files"))?;
        Ok(())
    }

    /// The images `down --rmi` removes: built ones (`all`: every one).
    pub fn images_to_remove(&self, all: bool) -> Vec<String> {
        let mut out: Vec<String> = self
            .project
            .model
            .services
            .iter()
            .filter(|(_, s)| all || (s.build.is_some() && s.image.is_none()))
            .map(|(n, _)| self.project.image_of(n))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// `start`: starts existing stopped containers in dependency order.
    pub fn start(&mut self, services: &[String], timeout: Duration) -> Result<()> {
        let order = self.project.order(services)?;
        let all = self.containers()?;
        for s in &order {
            let svc = self.project.service(s)?.clone();
            let mine: Vec<&Container> = all
                .iter()
                .filter(|c| &c.service == s && !c.oneoff)
                .collect();
            if mine.iter().all(|c| c.running()) {
                continue;
            }
            for (dep, d) in &svc.depends_on {
                if self.project.model.services.contains_key(dep) {
                    self.wait_dependency(s, dep, &d.condition, timeout)?;
                }
            }
            for c in mine.into_iter().filter(|c| !c.running()) {
                self.start_one(&c.id, &c.name)?;
            }
        }
        Ok(())
    }

    /// `stop`: stops running containers, dependents first.
    pub fn stop(&mut self, services: &[String], timeout: Option<u32>) -> Result<()> {
        let order = self.project.order(&[])?;
        let all = self.containers()?;
        for s in order.iter().rev() {
            if !services.is_empty() && !services.contains(s) {
                continue;
            }
            for c in all.iter().filter(|c| &c.service == s && c.running()) {
                self.emit(progress("Container", &c.name, "Stopping"));
                self.engine
                    .stop(&c.id, timeout)
                    .map_err(engine_err(format!("stopping {}", c.name)))?;
                self.emit(progress("Container", &c.name, "Stopped"));
            }
        }
        Ok(())
    }
}
