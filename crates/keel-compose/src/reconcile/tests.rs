//! The planning logic against a fake engine that records every effect.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// Containers in memory; `exits` makes a service's containers exit with a
/// code as soon as they start, `unhealthy` makes them fail their healthcheck.
#[derive(Default)]
struct Fake {
    containers: RefCell<BTreeMap<String, Container>>,
    networks: RefCell<BTreeSet<String>>,
    network_labels: RefCell<BTreeMap<String, BTreeMap<String, String>>>,
    volumes: RefCell<BTreeSet<String>>,
    images: RefCell<BTreeMap<String, String>>,
    effects: RefCell<Vec<String>>,
    next: RefCell<u32>,
    exits: BTreeMap<String, i32>,
    /// Services whose containers start, then exit with a code as soon as
    /// the reconciler sleeps (they crash a moment after starting).
    exits_later: BTreeMap<String, i32>,
    unhealthy: BTreeSet<String>,
    /// Services whose healthcheck never finishes starting.
    starting: BTreeSet<String>,
    /// Images whose pull fails.
    unpullable: BTreeSet<String>,
    has_health: RefCell<BTreeSet<String>>,
}

impl Fake {
    fn log(&self, s: String) {
        self.effects.borrow_mut().push(s);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.effects.borrow_mut())
    }
    fn ids(&self) -> BTreeMap<String, String> {
        self.containers
            .borrow()
            .values()
            .map(|c| (c.name.clone(), c.id.clone()))
            .collect()
    }
}

impl Engine for Fake {
    fn containers(&self, project: &str) -> EngineResult<Vec<Container>> {
        Ok(self
            .containers
            .borrow()
            .values()
            .filter(|c| c.labels.get(LABEL_PROJECT).map(String::as_str) == Some(project))
            .cloned()
            .collect())
    }
    fn container(&self, id: &str) -> EngineResult<Container> {
        self.containers
            .borrow()
            .get(id)
            .cloned()
            .ok_or_else(|| format!("no such container {id}").into())
    }
    fn image_id(&self, image: &str) -> EngineResult<Option<String>> {
        Ok(self.images.borrow().get(image).cloned())
    }
    fn pull(&self, image: &str) -> EngineResult<()> {
        self.log(format!("pull {image}"));
        if self.unpullable.contains(image) {
            return Err("manifest unknown".into());
        }
        self.images
            .borrow_mut()
            .insert(image.into(), format!("id-{image}"));
        Ok(())
    }
    fn build(&self, image: &str, b: &Build) -> EngineResult<()> {
        self.log(format!("build {image} {}", b.context));
        let n = self.images.borrow().len();
        self.images
            .borrow_mut()
            .insert(image.into(), format!("built-{image}-{n}"));
        Ok(())
    }
    fn network_exists(&self, name: &str) -> EngineResult<bool> {
        Ok(self.networks.borrow().contains(name))
    }
    fn create_network(
        &self,
        name: &str,
        subnet: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> EngineResult<()> {
        self.log(match subnet {
            Some(s) => format!("network create {name} {s}"),
            None => format!("network create {name}"),
        });
        self.network_labels
            .borrow_mut()
            .insert(name.into(), labels.clone());
        self.networks.borrow_mut().insert(name.into());
        Ok(())
    }
    fn remove_network(&self, name: &str) -> EngineResult<()> {
        self.log(format!("network rm {name}"));
        self.networks.borrow_mut().remove(name);
        Ok(())
    }
    fn volume_exists(&self, name: &str) -> EngineResult<bool> {
        Ok(self.volumes.borrow().contains(name))
    }
    fn create_volume(&self, name: &str, _labels: &BTreeMap<String, String>) -> EngineResult<()> {
        self.log(format!("volume create {name}"));
        self.volumes.borrow_mut().insert(name.into());
        Ok(())
    }
    fn remove_volume(&self, name: &str) -> EngineResult<()> {
        self.log(format!("volume rm {name}"));
        self.volumes.borrow_mut().remove(name);
        Ok(())
    }
    fn write_project_file(
        &self,
        project: &str,
        name: &str,
        content: &[u8],
    ) -> EngineResult<PathBuf> {
        self.log(format!(
            "file {project}/{name} {}",
            String::from_utf8_lossy(content)
        ));
        Ok(PathBuf::from(format!("/files/{project}/{name}")))
    }
    fn remove_project_files(&self, _project: &str) -> EngineResult<()> {
        Ok(())
    }
    fn create(&self, spec: &ContainerSpec) -> EngineResult<String> {
        if self
            .containers
            .borrow()
            .values()
            .any(|c| c.name == spec.name)
        {
            return Err(format!("name {} in use", spec.name).into());
        }
        let mut n = self.next.borrow_mut();
        *n += 1;
        let id = format!("c{n}");
        self.log(format!("create {}", spec.name));
        if spec.healthcheck.is_some() {
            self.has_health.borrow_mut().insert(id.clone());
        }
        let image_id = self
            .images
            .borrow()
            .get(&spec.image)
            .cloned()
            .unwrap_or_default();
        self.containers.borrow_mut().insert(
            id.clone(),
            Container {
                id: id.clone(),
                name: spec.name.clone(),
                service: spec.service.clone(),
                number: spec.labels[LABEL_NUMBER].parse().unwrap(),
                oneoff: spec.labels[LABEL_ONEOFF] == "True",
                config_hash: spec.labels[LABEL_HASH].clone(),
                image: spec.image.clone(),
                image_id,
                status: "created".into(),
                exit_code: 0,
                health: None,
                labels: spec.labels.clone(),
            },
        );
        Ok(id)
    }
    fn start(&self, id: &str) -> EngineResult<()> {
        let mut cs = self.containers.borrow_mut();
        let c = cs.get_mut(id).ok_or("no such container")?;
        self.log(format!("start {}", c.name));
        if let Some(code) = self.exits.get(&c.service) {
            c.status = "exited".into();
            c.exit_code = *code;
        } else {
            c.status = "running".into();
            if self.has_health.borrow().contains(id) {
                c.health = Some(if self.unhealthy.contains(&c.service) {
                    Health::Unhealthy
                } else if self.starting.contains(&c.service) {
                    Health::Starting
                } else {
                    Health::Healthy
                });
            }
        }
        Ok(())
    }
    fn stop(&self, id: &str, _timeout: Option<u32>) -> EngineResult<()> {
        let mut cs = self.containers.borrow_mut();
        let c = cs.get_mut(id).ok_or("no such container")?;
        self.log(format!("stop {}", c.name));
        c.status = "exited".into();
        c.health = None;
        Ok(())
    }
    fn remove(&self, id: &str, _volumes: bool) -> EngineResult<()> {
        let c = self
            .containers
            .borrow_mut()
            .remove(id)
            .ok_or("no such container")?;
        self.log(format!("rm {}", c.name));
        Ok(())
    }
    fn sleep(&self, _d: Duration) {
        for c in self.containers.borrow_mut().values_mut() {
            if let Some(code) = self.exits_later.get(&c.service)
                && c.status == "running"
            {
                c.status = "exited".into();
                c.exit_code = *code;
            }
        }
    }
}

fn project(yaml: &str) -> ProjectSpec {
    project_with(yaml, &[])
}

fn project_with(yaml: &str, profiles: &[&str]) -> ProjectSpec {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
    let p = crate::load(&crate::Options {
        project_name: Some("p".into()),
        cwd: dir.path().to_path_buf(),
        profiles: profiles.iter().map(|s| (*s).to_string()).collect(),
        env: BTreeMap::from([("SECRET".to_string(), "s3cret".to_string())]),
        ..Default::default()
    })
    .unwrap();
    ProjectSpec::from_project(&p).unwrap()
}

fn up(p: &ProjectSpec, e: &Fake, o: &UpOptions) -> (Result<()>, Vec<Event>) {
    let mut events = Vec::new();
    let r = Reconciler {
        project: p,
        engine: e,
        events: &mut |ev| events.push(ev),
    }
    .up(o);
    (r, events)
}

fn down(p: &ProjectSpec, e: &Fake, o: &DownOptions) -> Vec<Event> {
    let mut events = Vec::new();
    Reconciler {
        project: p,
        engine: e,
        events: &mut |ev| events.push(ev),
    }
    .down(o)
    .unwrap();
    events
}

const STACK: &str = r"
services:
  web:
    image: web
    ports: ['8080:80']
    depends_on:
      db: {condition: service_healthy, restart: true}
      migrate: {condition: service_completed_successfully}
  migrate:
    image: tool
    depends_on: [db]
  db:
    image: db
    volumes: [data:/var/lib/db]
    healthcheck: {test: [CMD, check], interval: 1s}
  cache:
    image: cache
volumes:
  data: {}
";

fn fake() -> Fake {
    Fake {
        exits: BTreeMap::from([("migrate".to_string(), 0)]),
        ..Fake::default()
    }
}

#[test]
fn first_up_creates_everything_in_dependency_order() {
    let p = project(STACK);
    let e = fake();
    let (r, _) = up(&p, &e, &UpOptions::default());
    r.unwrap();
    assert_eq!(
        e.take(),
        [
            "pull cache",
            "pull db",
            "pull tool",
            "pull web",
            "network create p_default",
            "volume create p_data",
            "create p-cache-1",
            "start p-cache-1",
            "create p-db-1",
            "start p-db-1",
            "create p-migrate-1",
            "start p-migrate-1",
            "create p-web-1",
            "start p-web-1",
        ]
    );
    let web = e
        .containers
        .borrow()
        .values()
        .find(|c| c.name == "p-web-1")
        .cloned()
        .unwrap();
    assert_eq!(web.labels[LABEL_PROJECT], "p");
    assert_eq!(web.labels[LABEL_SERVICE], "web");
    assert_eq!(web.labels[LABEL_HASH].len(), 64);
}

#[test]
fn second_up_changes_nothing() {
    let p = project(STACK);
    let e = fake();
    up(&p, &e, &UpOptions::default()).0.unwrap();
    e.take();
    let before = e.ids();
    let (r, events) = up(&p, &e, &UpOptions::default());
    r.unwrap();
    // The exited one-shot is started again (docker compose does too); nothing
    // is created or removed.
    assert_eq!(e.take(), ["start p-migrate-1"]);
    assert_eq!(e.ids(), before);
    assert!(events.contains(&progress("Container", "p-web-1", "Running")));
}

#[test]
fn changed_service_is_recreated_and_restart_dependents_restarted() {
    let e = fake();
    up(&project(STACK), &e, &UpOptions::default()).0.unwrap();
    let before = e.ids();
    e.take();
    let changed = STACK.replace(
        "healthcheck: {test: [CMD, check], interval: 1s}",
        "healthcheck: {test: [CMD, check], interval: 2s}",
    );
    up(&project(&changed), &e, &UpOptions::default()).0.unwrap();
    let effects = e.take();
    assert!(effects.contains(&"rm p-db-1".to_string()), "{effects:?}");
    assert!(effects.contains(&"create p-db-1".to_string()));
    // web depends on db with restart: true: restarted in place, same container.
    assert!(effects.contains(&"stop p-web-1".to_string()));
    assert!(effects.contains(&"start p-web-1".to_string()));
    assert!(
        !effects
            .iter()
            .any(|x| x == "create p-web-1" || x.contains("cache"))
    );
    let after = e.ids();
    assert_ne!(before["p-db-1"], after["p-db-1"]);
    assert_eq!(before["p-web-1"], after["p-web-1"]);
    assert_eq!(before["p-cache-1"], after["p-cache-1"]);
}

#[test]
fn rebuilt_image_recreates_and_no_recreate_keeps() {
    let yaml = "services:\n  app:\n    build: .\n";
    let p = project(yaml);
    let e = Fake::default();
    up(&p, &e, &UpOptions::default()).0.unwrap();
    assert_eq!(
        e.take()[0],
        format!("build p-app {}", p.working_dir.display())
    );
    let before = e.ids();
    let o = UpOptions {
        build: BuildPolicy::Always,
        no_recreate: true,
        ..Default::default()
    };
    up(&p, &e, &o).0.unwrap();
    assert_eq!(e.ids(), before);
    let o = UpOptions {
        build: BuildPolicy::Always,
        ..Default::default()
    };
    up(&p, &e, &o).0.unwrap();
    assert_ne!(e.ids(), before);
    // --force-recreate recreates even an unchanged project.
    let before = e.ids();
    let o = UpOptions {
        force_recreate: true,
        ..Default::default()
    };
    up(&p, &e, &o).0.unwrap();
    assert_ne!(e.ids(), before);
}

#[test]
fn scale_up_and_down_keeps_the_low_numbers() {
    let p = project("services:\n  w:\n    image: w\n    deploy: {replicas: 3}\n");
    let e = Fake::default();
    up(&p, &e, &UpOptions::default()).0.unwrap();
    let three = e.ids();
    assert_eq!(three.len(), 3);
    let o = UpOptions {
        scale: BTreeMap::from([("w".to_string(), 1)]),
        ..Default::default()
    };
    e.take();
    up(&p, &e, &o).0.unwrap();
    assert_eq!(
        e.take(),
        ["stop p-w-3", "rm p-w-3", "stop p-w-2", "rm p-w-2"]
    );
    assert_eq!(e.ids()["p-w-1"], three["p-w-1"]);
    let o = UpOptions {
        scale: BTreeMap::from([("w".to_string(), 2)]),
        ..Default::default()
    };
    up(&p, &e, &o).0.unwrap();
    assert_eq!(e.take(), ["create p-w-2", "start p-w-2"]);
    let bad = UpOptions {
        scale: BTreeMap::from([("nope".to_string(), 2)]),
        ..Default::default()
    };
    assert!(matches!(
        up(&p, &e, &bad).0,
        Err(ReconcileError::NoSuchService(s)) if s == "nope"
    ));
}

#[test]
fn orphans_are_reported_then_removed_on_request() {
    let e = Fake::default();
    up(
        &project("services:\n  a:\n    image: a\n  b:\n    image: b\n"),
        &e,
        &UpOptions::default(),
    )
    .0
    .unwrap();
    let p = project("services:\n  a:\n    image: a\n");
    e.take();
    let (r, events) = up(&p, &e, &UpOptions::default());
    r.unwrap();
    assert!(e.take().is_empty());
    assert!(
        events
            .iter()
            .any(|ev| matches!(ev, Event::Warning(w) if w.contains("orphan containers ([p-b-1])")))
    );
    let o = UpOptions {
        remove_orphans: true,
        ..Default::default()
    };
    up(&p, &e, &o).0.unwrap();
    assert_eq!(e.take(), ["stop p-b-1", "rm p-b-1"]);
}

#[test]
fn profiles_disabled_services_are_not_orphans() {
    let yaml = "services:\n  a:\n    image: a\n  dbg:\n    image: d\n    profiles: [debug]\n";
    let e = Fake::default();
    up(&project_with(yaml, &["debug"]), &e, &UpOptions::default())
        .0
        .unwrap();
    assert_eq!(e.ids().len(), 2);
    let (r, events) = up(&project(yaml), &e, &UpOptions::default());
    r.unwrap();
    assert!(!events.iter().any(|ev| matches!(ev, Event::Warning(_))));
}

/// Issue 15.6: `up a` called `b` (defined in the file, not named) an
/// orphan and `--remove-orphans` removed it; compose-go counts unselected
/// services as defined, and exited one-off containers as orphans.
#[test]
fn unselected_services_are_not_orphans_but_exited_one_offs_are() {
    let yaml = "services:\n  a:\n    image: a\n  b:\n    image: b\n";
    let e = Fake::default();
    up(&project(yaml), &e, &UpOptions::default()).0.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
    let only_a = ProjectSpec::from_project(
        &crate::load(&crate::Options {
            project_name: Some("p".into()),
            cwd: dir.path().to_path_buf(),
            services: vec!["a".into()],
            ..Default::default()
        })
        .unwrap(),
    )
    .unwrap();
    for (id, status) in [("run1", "exited"), ("run2", "running")] {
        let mut c = e.containers.borrow()["c1"].clone();
        c.id = id.into();
        c.name = format!("p-a-{id}");
        c.oneoff = true;
        c.status = status.into();
        e.containers.borrow_mut().insert(id.into(), c);
    }
    e.take();
    let (r, events) = up(&only_a, &e, &UpOptions::default());
    r.unwrap();
    let warnings: Vec<&Event> = events
        .iter()
        .filter(|ev| matches!(ev, Event::Warning(_)))
        .collect();
    assert_eq!(
        warnings,
        [&Event::Warning("Found orphan containers ([p-a-run1]) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.".into())]
    );
    let o = UpOptions {
        services: vec!["a".into()],
        remove_orphans: true,
        ..Default::default()
    };
    up(&only_a, &e, &o).0.unwrap();
    assert_eq!(e.take(), ["rm p-a-run1"]);
    assert!(e.ids().contains_key("p-b-1"));
    assert!(e.ids().contains_key("p-a-run2"));
}

#[test]
fn failing_migration_stops_up_naming_it() {
    let p = project(STACK);
    let e = Fake {
        exits: BTreeMap::from([("migrate".to_string(), 3)]),
        ..Fake::default()
    };
    let (r, _) = up(&p, &e, &UpOptions::default());
    let err = r.unwrap_err().to_string();
    assert_eq!(
        err,
        "dependency failed to start: service migrate (needed by web): container p-migrate-1 didn't complete successfully: exit 3"
    );
    assert!(!e.ids().contains_key("p-web-1"));
}

#[test]
fn unhealthy_dependency_stops_up() {
    let p = project(STACK);
    let e = Fake {
        exits: BTreeMap::from([("migrate".to_string(), 0)]),
        unhealthy: BTreeSet::from(["db".to_string()]),
        ..Fake::default()
    };
    let err = up(&p, &e, &UpOptions::default()).0.unwrap_err().to_string();
    assert!(
        err.contains("service db (needed by migrate)")
            || err.contains("service db (needed by web)"),
        "{err}"
    );
    assert!(err.contains("p-db-1 is unhealthy"), "{err}");
    assert!(!e.ids().contains_key("p-web-1"));
}

#[test]
fn healthy_condition_needs_a_healthcheck() {
    let p = project(
        "services:\n  a:\n    image: a\n    depends_on: {b: {condition: service_healthy}}\n  b:\n    image: b\n",
    );
    let err = up(&p, &Fake::default(), &UpOptions::default())
        .0
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("service b (needed by a): it has no healthcheck configured"),
        "{err}"
    );
}

#[test]
fn dependency_timeout_names_the_dependency() {
    let p = project(
        "services:\n  a:\n    image: a\n    depends_on: {b: {condition: service_completed_successfully}}\n  b:\n    image: b\n",
    );
    let o = UpOptions {
        timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let err = up(&p, &Fake::default(), &o).0.unwrap_err().to_string();
    assert!(
        err.contains("service b (needed by a): timed out after 1s"),
        "{err}"
    );
}

#[test]
fn external_network_and_volume_must_exist() {
    let p = project(
        "services:\n  a:\n    image: a\n    networks: [outside]\nnetworks:\n  outside: {external: true, name: corp}\n",
    );
    let e = Fake::default();
    let err = up(&p, &e, &UpOptions::default()).0.unwrap_err();
    assert_eq!(
        err.to_string(),
        "network corp declared as external, but could not be found"
    );
    assert!(e.ids().is_empty());
    e.networks.borrow_mut().insert("corp".into());
    up(&p, &e, &UpOptions::default()).0.unwrap();
    assert!(!e.take().iter().any(|x| x.starts_with("network")));

    let p = project(
        "services:\n  a:\n    image: a\n    volumes: [v:/v]\nvolumes:\n  v: {external: true}\n",
    );
    let err = up(&p, &Fake::default(), &UpOptions::default())
        .0
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "volume v declared as external, but could not be found"
    );
}

#[test]
fn down_removes_dependents_first_and_keeps_volumes_unless_asked() {
    let p = project(STACK);
    let e = fake();
    up(&p, &e, &UpOptions::default()).0.unwrap();
    e.take();
    down(&p, &e, &DownOptions::default());
    assert_eq!(
        e.take(),
        [
            "stop p-web-1",
            "stop p-db-1",
            "stop p-cache-1",
            "rm p-web-1",
            "rm p-migrate-1",
            "rm p-db-1",
            "rm p-cache-1",
            "network rm p_default",
        ]
    );
    assert!(e.volumes.borrow().contains("p_data"));
    up(&p, &e, &UpOptions::default()).0.unwrap();
    e.take();
    down(
        &p,
        &e,
        &DownOptions {
            volumes: true,
            ..Default::default()
        },
    );
    assert!(e.take().contains(&"volume rm p_data".to_string()));
    assert!(e.volumes.borrow().is_empty() && e.networks.borrow().is_empty());
}

fn wait() -> UpOptions {
    UpOptions {
        wait: true,
        timeout: Duration::from_secs(3),
        ..UpOptions::default()
    }
}

#[test]
fn wait_accepts_a_completed_one_shot_that_others_wait_for() {
    let e = fake();
    let (r, events) = up(&project(STACK), &e, &wait());
    r.unwrap();
    assert!(events.contains(&progress("Container", "p-migrate-1", "Exited")));
    assert!(events.contains(&progress("Container", "p-db-1", "Healthy")));
    assert!(events.contains(&progress("Container", "p-cache-1", "Running")));
}

#[test]
fn wait_refuses_an_exited_service_nobody_waits_for() {
    let e = Fake {
        exits: BTreeMap::from([("tool".to_string(), 0)]),
        ..Fake::default()
    };
    let p = project("services:\n  tool: {image: tool}\n  web: {image: web}\n");
    let err = up(&p, &e, &wait()).0.unwrap_err().to_string();
    assert_eq!(
        err,
        "service tool is not ready: container p-tool-1 exited (0)"
    );
    // Without --wait the same project is fine.
    up(&p, &e, &UpOptions::default()).0.unwrap();
}

/// Issue 15.4: `up -d --wait` took a container that was still running at
/// the first look as ready, and succeeded although it crashed a moment
/// later. docker compose looks first after one 500 ms tick.
#[test]
fn wait_fails_on_a_service_that_exits_just_after_starting() {
    let e = Fake {
        exits_later: BTreeMap::from([("web".to_string(), 2)]),
        ..Fake::default()
    };
    let p = project("services:\n  web:\n    image: w\n");
    let err = up(&p, &e, &wait()).0.unwrap_err().to_string();
    assert!(err.contains("container p-web-1 exited (2)"), "{err}");
}

#[test]
fn wait_names_the_unhealthy_or_failed_service() {
    let yaml = "services:\n  api:\n    image: api\n    healthcheck: {test: [CMD, check]}\n  job: {image: job}\n  app:\n    image: app\n    depends_on:\n      job: {condition: service_completed_successfully}\n";
    let e = Fake {
        unhealthy: BTreeSet::from(["api".to_string()]),
        exits: BTreeMap::from([("job".to_string(), 0)]),
        ..Fake::default()
    };
    let err = up(&project(yaml), &e, &wait()).0.unwrap_err().to_string();
    assert_eq!(
        err,
        "service api is not ready: container p-api-1 is unhealthy"
    );
    let e = Fake {
        starting: BTreeSet::from(["api".to_string()]),
        exits: BTreeMap::from([("job".to_string(), 0)]),
        ..Fake::default()
    };
    let err = up(&project(yaml), &e, &wait()).0.unwrap_err().to_string();
    assert_eq!(
        err,
        "application not healthy after 3s: service api: container p-api-1 is still starting"
    );
    // A one-shot others wait for must have exited 0 (here app itself fails).
    let e = Fake {
        exits: BTreeMap::from([("job".to_string(), 0), ("app".to_string(), 2)]),
        ..Fake::default()
    };
    let err = up(&project(yaml), &e, &wait()).0.unwrap_err().to_string();
    assert_eq!(
        err,
        "service app is not ready: container p-app-1 exited (2)"
    );
}

#[test]
fn down_by_project_name_alone_finds_everything_by_labels() {
    let p = project(STACK);
    let e = fake();
    up(&p, &e, &UpOptions::default()).0.unwrap();
    e.take();
    let web = e.containers("p").unwrap();
    let web = web.iter().find(|c| c.service == "web").unwrap();
    assert_eq!(
        web.labels[LABEL_DEPENDS_ON],
        "db:service_healthy:true,migrate:service_completed_successfully:false"
    );
    let nets: Vec<(String, String)> = e
        .network_labels
        .borrow()
        .iter()
        .map(|(n, l)| {
            assert_eq!(l[LABEL_PROJECT], "p");
            (l[LABEL_NETWORK].clone(), n.clone())
        })
        .collect();
    assert_eq!(nets, [("default".to_string(), "p_default".to_string())]);
    let q = ProjectSpec::from_labels(
        "p",
        &e.containers("p").unwrap(),
        &nets,
        &[("data".into(), "p_data".into())],
    );
    assert_eq!(q.order(&[]).unwrap(), p.order(&[]).unwrap());
    assert_eq!(q.image_of("db"), "db");
    down(
        &q,
        &e,
        &DownOptions {
            volumes: true,
            ..Default::default()
        },
    );
    assert_eq!(
        e.take(),
        [
            "stop p-web-1",
            "stop p-db-1",
            "stop p-cache-1",
            "rm p-web-1",
            "rm p-migrate-1",
            "rm p-db-1",
            "rm p-cache-1",
            "network rm p_default",
            "volume rm p_data",
        ]
    );
    assert!(e.containers.borrow().is_empty());
}

#[test]
fn secrets_and_configs_become_read_only_files() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "services:\n  a:\n    image: a\n    secrets: [pw, {{source: env, target: token}}]\n    configs: [{{source: conf, target: /etc/app.conf}}]\nsecrets:\n  pw: {{file: {}/pw.txt}}\n  env: {{environment: SECRET}}\nconfigs:\n  conf: {{content: 'debug=1'}}\n",
        dir.path().display()
    );
    let p = project(&yaml);
    let e = Fake::default();
    let spec = p.container_spec(&e, "a", 1, None).unwrap();
    let binds: Vec<(&str, &str, bool)> = spec
        .mounts
        .iter()
        .map(|m| (m.source.as_str(), m.target.as_str(), m.read_only))
        .collect();
    let pw = format!("{}/pw.txt", dir.path().display());
    assert_eq!(
        binds,
        [
            (pw.as_str(), "/run/secrets/pw", true),
            ("/files/p/secret-env", "/run/secrets/token", true),
            ("/files/p/config-conf", "/etc/app.conf", true),
        ]
    );
    assert_eq!(
        e.take(),
        ["file p/secret-env s3cret", "file p/config-conf debug=1"]
    );
}

#[test]
fn container_spec_maps_the_service() {
    let p = project(
        "services:\n  a:\n    image: a\n    entrypoint: [sh, -c]\n    command: echo hi\n    environment: {X: '1', UNSET: null}\n    networks: {back: {aliases: [alpha]}}\n    ports: ['127.0.0.1:8000-8001:80/udp']\n    stop_grace_period: 1m30s\n    restart: on-failure:2\n    healthcheck: {test: curl x, interval: 500ms, retries: 7}\nnetworks:\n  back: {}\n",
    );
    let s = p.container_spec(&Fake::default(), "a", 2, None).unwrap();
    assert_eq!(s.name, "p-a-2");
    assert_eq!(s.entrypoint, Some(vec!["sh".to_string(), "-c".to_string()]));
    assert_eq!(s.command, Some(vec!["echo".to_string(), "hi".to_string()]));
    assert_eq!(s.env, ["X=1"]);
    assert_eq!(s.network, "p_back");
    assert_eq!(s.aliases, ["a", "alpha"]);
    assert_eq!(
        s.ports,
        [PortReq {
            host_ip: Some("127.0.0.1".into()),
            host_port: 8000,
            container_port: 80,
            protocol: "udp".into()
        }]
    );
    assert_eq!(s.stop_timeout, Some(90));
    assert_eq!(s.restart, "on-failure:2");
    let h = s.healthcheck.unwrap();
    assert_eq!(
        (h.interval_ms, h.retries, h.test[0].as_str()),
        (500, 7, "CMD-SHELL")
    );
    let run = p
        .container_spec(&Fake::default(), "a", 0, Some("abc"))
        .unwrap();
    assert_eq!(run.name, "p-a-run-abc");
    assert_eq!(run.labels[LABEL_ONEOFF], "True");
}

#[test]
fn container_spec_carries_resources_init_and_tmpfs_options() {
    let p = project(
        r"
services:
  app:
    image: app
    init: true
    mem_limit: 64m
    memswap_limit: 1g
    cpus: 1.5
    pids_limit: 20
    shm_size: 32m
    ulimits:
      nofile: {soft: 100, hard: 200}
      nproc: 50
    sysctls: [net.core.somaxconn=1000]
    tmpfs: ['/run:size=1m,mode=1777']
    volumes:
      - {type: tmpfs, target: /cache, tmpfs: {size: 2m}}
    cpuset: '0'
    privileged: true
    deploy:
      resources:
        limits: {memory: 32m, pids: 10}
  plain:
    image: plain
",
    );
    let spec = p.container_spec(&fake(), "app", 1, None).unwrap();
    assert!(spec.init);
    assert_eq!(
        spec.resources,
        Resources {
            memory: Some(32 << 20),
            memory_swap: Some(1 << 30),
            nano_cpus: Some(1_500_000_000),
            pids_limit: Some(10),
            shm_size: Some(32 << 20),
            ulimits: vec![("nofile".into(), 100, 200), ("nproc".into(), 50, 50)],
            sysctls: [("net.core.somaxconn".to_string(), "1000".to_string())].into(),
        }
    );
    let opts: Vec<(&str, &[String])> = spec
        .mounts
        .iter()
        .filter(|m| m.kind == MountKind::Tmpfs)
        .map(|m| (m.target.as_str(), m.options.as_slice()))
        .collect();
    assert_eq!(
        opts,
        [
            ("/cache", &["size=2097152".to_string()][..]),
            (
                "/run",
                &["size=1m".to_string(), "mode=1777".to_string()][..]
            ),
        ]
    );
    assert_eq!(p.unsupported_keys("app"), ["cpuset", "privileged"]);
    let plain = p.container_spec(&fake(), "plain", 1, None).unwrap();
    assert_eq!(plain.resources, Resources::default());
    assert!(!plain.init);
    assert!(p.unsupported_keys("plain").is_empty());
    let (r, events) = up(&p, &fake(), &UpOptions::default());
    r.unwrap();
    assert!(events.contains(&Event::Warning(
        "service app: keel cannot apply cpuset, privileged; ignored".into()
    )));
}

#[test]
fn pull_policies_decide_between_pull_and_build() {
    let yaml = |policy: &str| {
        format!(
            "services:\n  app:\n    image: reg/app\n    build: .\n    pull_policy: {policy}\n  db:\n    image: reg/db\n    pull_policy: {policy}\n"
        )
    };
    let effects = |e: &Fake| -> Vec<String> {
        e.take()
            .into_iter()
            .filter(|x| x.starts_with("pull") || x.starts_with("build"))
            .map(|x| x.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect()
    };
    // missing: pulled when absent; a failed pull of a buildable image builds it.
    let e = Fake {
        unpullable: BTreeSet::from(["reg/app".to_string()]),
        ..Fake::default()
    };
    let (r, events) = up(&project(&yaml("missing")), &e, &UpOptions::default());
    r.unwrap();
    assert_eq!(
        effects(&e),
        ["pull reg/app", "build reg/app", "pull reg/db"]
    );
    assert!(
        events
            .iter()
            .any(|ev| matches!(ev, Event::Warning(w) if w.contains("building it instead")))
    );
    // Present: nothing with missing; always pulls again; build builds.
    up(&project(&yaml("missing")), &e, &UpOptions::default())
        .0
        .unwrap();
    assert_eq!(effects(&e), Vec::<String>::new());
    let e2 = Fake::default();
    up(&project(&yaml("always")), &e2, &UpOptions::default())
        .0
        .unwrap();
    up(&project(&yaml("always")), &e2, &UpOptions::default())
        .0
        .unwrap();
    assert_eq!(
        effects(&e2),
        ["pull reg/app", "pull reg/db", "pull reg/app", "pull reg/db"]
    );
    up(&project(&yaml("build")), &e2, &UpOptions::default())
        .0
        .unwrap();
    assert_eq!(effects(&e2), ["build reg/app"]);
    // up --pull overrides the policy; --build means build, not pull.
    let o = UpOptions {
        pull: Some("always".into()),
        build: BuildPolicy::Always,
        ..Default::default()
    };
    up(&project(&yaml("never")), &e2, &o).0.unwrap();
    assert_eq!(effects(&e2), ["build reg/app", "pull reg/db"]);
    // never: an absent image is an error naming the service, nothing pulled.
    let e3 = Fake::default();
    let err = up(&project(&yaml("never")), &e3, &UpOptions::default())
        .0
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "service db: no such image reg/db: it is not present locally and pull_policy is never"
    );
    // A failed pull without a build stops up.
    let e4 = Fake {
        unpullable: BTreeSet::from(["reg/db".to_string()]),
        ..Fake::default()
    };
    let err = up(&project(&yaml("missing")), &e4, &UpOptions::default())
        .0
        .unwrap_err()
        .to_string();
    assert_eq!(err, "pulling image for service db: manifest unknown");
}

#[test]
fn config_hash_ignores_scale_only() {
    let a = project("services:\n  w:\n    image: w\n    deploy: {replicas: 1}\n");
    let b = project("services:\n  w:\n    image: w\n    deploy: {replicas: 4}\n");
    let c = project("services:\n  w:\n    image: w2\n    deploy: {replicas: 1}\n");
    assert_eq!(a.hashes["w"], b.hashes["w"]);
    assert_ne!(a.hashes["w"], c.hashes["w"]);
}

#[test]
fn durations_parse_like_go() {
    assert_eq!(parse_duration_ms("1m30s"), Some(90_000));
    assert_eq!(parse_duration_ms("500ms"), Some(500));
    assert_eq!(parse_duration_ms("1.5s"), Some(1500));
    assert_eq!(parse_duration_ms("2h"), Some(7_200_000));
    assert_eq!(parse_duration_ms("10"), Some(10_000));
    assert_eq!(parse_duration_ms("x"), None);
    assert_eq!(parse_duration_ms(""), None);
    assert_eq!(parse_duration_ms("5 parsecs"), None);
}

#[test]
fn services_join_all_networks_in_priority_order() {
    let p = project(
        "services:\n  proxy:\n    image: a\n    networks:\n      back: {aliases: [gw], ipv4_address: 10.5.0.9}\n      front: {priority: 10}\n      mid: {}\n    extra_hosts: ['x.test:10.1.1.1']\n    dns: 10.0.0.53\n    dns_search: s.test\n    dns_opt: [ndots:2]\n  side:\n    image: a\n    network_mode: service:proxy\n  c:\n    image: a\n    network_mode: container:other\nnetworks:\n  back: {ipam: {config: [{subnet: 10.5.0.0/24}]}}\n  front: {}\n  mid: {}\n",
    );
    let s = p
        .container_spec(&Fake::default(), "proxy", 1, None)
        .unwrap();
    assert_eq!(s.network, "p_front");
    assert_eq!(s.aliases, ["proxy"]);
    let extra: Vec<(&str, &[String], Option<&str>)> = s
        .extra_networks
        .iter()
        .map(|n| (n.name.as_str(), &n.aliases[..], n.ipv4_address.as_deref()))
        .collect();
    assert_eq!(
        extra,
        [
            (
                "p_back",
                &["proxy".to_string(), "gw".to_string()][..],
                Some("10.5.0.9")
            ),
            ("p_mid", &["proxy".to_string()][..], None),
        ]
    );
    assert_eq!(s.extra_hosts, ["x.test=10.1.1.1"]);
    assert_eq!(
        (s.dns, s.dns_search, s.dns_opt),
        (
            vec!["10.0.0.53".to_string()],
            vec!["s.test".to_string()],
            vec!["ndots:2".to_string()]
        )
    );
    let side = p.container_spec(&Fake::default(), "side", 1, None).unwrap();
    assert_eq!(side.network, "container:p-proxy-1");
    assert!(side.extra_networks.is_empty());
    let c = p.container_spec(&Fake::default(), "c", 1, None).unwrap();
    assert_eq!(c.network, "container:other");
    // The followed service comes first; every network is created, with its subnet.
    let order = p.order(&["side".to_string()]).unwrap();
    assert_eq!(order, ["proxy", "side"]);
    let e = Fake::default();
    up(&p, &e, &UpOptions::default()).0.unwrap();
    let log = e.take();
    for n in [
        "network create p_back 10.5.0.0/24",
        "network create p_front",
        "network create p_mid",
    ] {
        assert!(log.iter().any(|l| l == n), "{n}: {log:?}");
    }
}

#[test]
fn engine_errors_keep_their_typed_cause_and_hint() {
    let cause = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
    let e = engine_err("creating container p-web-1")(
        EngineError::new("writing /x: denied")
            .with_source(cause)
            .with_hint(Some("run as root".into())),
    );
    assert_eq!(
        e.to_string(),
        "creating container p-web-1: writing /x: denied"
    );
    let ReconcileError::Engine { source, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(source.hint(), Some("run as root"));
    let typed = std::error::Error::source(&e)
        .and_then(std::error::Error::source)
        .and_then(|c| c.downcast_ref::<std::io::Error>())
        .expect("the io::Error under the engine error");
    assert_eq!(typed.kind(), std::io::ErrorKind::PermissionDenied);
}

/// Issue 15: the short syntax's `cached`/`delegated`/`consistent` modes were
/// refused ("invalid volume mode"); compose-go drops them. `nocopy`
/// (short or long syntax) reaches the engine as the volume's `nocopy` option.
#[test]
fn consistency_modes_are_accepted_and_nocopy_reaches_the_engine() {
    let p = project(
        "services:\n  a:\n    image: a\n    volumes:\n      - data:/d:cached\n      - ./x:/x:delegated,ro\n      - other:/o:nocopy\n      - {type: volume, source: long, target: /l, volume: {nocopy: true}}\nvolumes: {data: {}, other: {}, long: {}}\n",
    );
    let spec = p.container_spec(&Fake::default(), "a", 1, None).unwrap();
    let opts: Vec<(&str, &[String], bool)> = spec
        .mounts
        .iter()
        .map(|m| (m.target.as_str(), m.options.as_slice(), m.read_only))
        .collect();
    assert_eq!(
        opts,
        [
            ("/d", &[][..], false),
            ("/x", &[][..], true),
            ("/o", &["nocopy".to_string()][..], false),
            ("/l", &["nocopy".to_string()][..], false),
        ]
    );
}

/// Issue 15.11: compose's `logging:` was dropped silently; it reaches the
/// engine as `--log-driver`/`--log-opt` would.
#[test]
fn logging_reaches_the_engine() {
    let p = project(
        "services:\n  a:\n    image: a\n    logging:\n      driver: json-file\n      options: {max-size: 10m, max-file: 3}\n  b:\n    image: b\n",
    );
    let a = p.container_spec(&Fake::default(), "a", 1, None).unwrap();
    assert_eq!(a.log_driver.as_deref(), Some("json-file"));
    assert_eq!(a.log_opts, ["max-file=3", "max-size=10m"]);
    let b = p.container_spec(&Fake::default(), "b", 1, None).unwrap();
    assert_eq!((b.log_driver, b.log_opts), (None, Vec::<String>::new()));
}

/// Issue 15: `up --no-deps` / `scale --no-deps` bring up only the named
/// services, without their dependencies (which were always started).
#[test]
fn no_deps_brings_up_only_the_named_services() {
    let e = fake();
    let o = UpOptions {
        services: vec!["web".into()],
        no_deps: true,
        timeout: Duration::from_secs(3),
        ..UpOptions::default()
    };
    up(&project(STACK), &e, &o).0.unwrap();
    let names: Vec<String> = e.ids().into_keys().collect();
    assert_eq!(names, ["p-web-1"]);
    let o = UpOptions {
        services: vec!["web".into()],
        timeout: Duration::from_secs(3),
        ..UpOptions::default()
    };
    up(&project(STACK), &e, &o).0.unwrap();
    assert!(e.ids().contains_key("p-db-1"), "{:?}", e.ids());
}
