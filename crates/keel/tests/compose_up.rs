//! `keel compose up/down/ps/logs/exec/run/...` end to end: real containers as
//! root from busybox, a corpus of projects under
//! tests/data/compose-projects, each brought up, checked over HTTP
//! (127.0.0.1 published ports) and exec, changed and re-upped, and taken
//! down with nothing left behind.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{Keel, free_port, http_get, unmount_under, wait_for_port};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One project at a time: each needs a bridge subnet from the host's pools,
/// which other suites on this machine share.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One corpus project copied to a temporary directory, a keel root with
/// busybox, and a unique project name. On drop: `down -v`, then a check that
/// no container, network, bridge, veth, iptables rule, volume or mount of
/// the project is left.
struct Project {
    k: Keel,
    dir: tempfile::TempDir,
    name: String,
    vars: Vec<(String, String)>,
    bridges: std::cell::RefCell<Vec<String>>,
    _turn: std::sync::MutexGuard<'static, ()>,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/compose-projects")
        .join(name)
}

impl Project {
    fn new(corpus_name: &str) -> Self {
        let turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let k = Keel::new();
        k.seed_busybox();
        let dir = tempfile::Builder::new()
            .prefix("keel-compose-")
            .tempdir()
            .unwrap();
        copy_dir(&corpus(corpus_name), dir.path());
        let name = format!(
            "kc{}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst),
            corpus_name
        );
        Project {
            k,
            dir,
            name,
            vars: Vec::new(),
            bridges: std::cell::RefCell::new(Vec::new()),
            _turn: turn,
        }
    }

    fn var(mut self, k: &str, v: &str) -> Self {
        self.set(k, v);
        self
    }

    fn set(&mut self, k: &str, v: &str) {
        self.vars.retain(|(x, _)| x != k);
        self.vars.push((k.to_string(), v.to_string()));
    }

    fn compose(&self, args: &[&str]) -> Output {
        let mut c = self.k.cmd();
        c.current_dir(self.dir.path())
            .arg("compose")
            .args(["-p", &self.name])
            .args(args)
            .stdin(std::process::Stdio::null());
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        self.note_bridges();
        o
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.compose(args);
        assert!(
            o.status.success(),
            "keel compose {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs, asserts failure with exactly one `error:` line (plus an optional
    /// hint), returns that line.
    fn fails(&self, args: &[&str]) -> String {
        let o = self.compose(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            !o.status.success(),
            "keel compose {args:?} succeeded: {err}"
        );
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        errors[0].to_string()
    }

    /// `ps -a` as JSON objects.
    fn ps(&self) -> Vec<serde_json::Value> {
        self.ok(&["ps", "-a", "--format", "json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Container name → ID.
    fn ids(&self) -> std::collections::BTreeMap<String, String> {
        self.ps()
            .iter()
            .map(|c| {
                (
                    c["Name"].as_str().unwrap().to_string(),
                    c["ID"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// A variable of a service's container, as its processes see it.
    fn env(&self, service: &str, var: &str) -> String {
        self.exec(service, &["sh", "-c", &format!("echo \"${var}\"")])
    }

    fn exec(&self, service: &str, cmd: &[&str]) -> String {
        let mut a = vec!["exec", "-T", service];
        a.extend(cmd);
        self.ok(&a)
    }

    /// Remembers the Linux bridges of this project's networks for the cleanup check.
    /// Not being able to list them fails the test: the cleanup check would
    /// otherwise pass on bridges it never saw.
    fn note_bridges(&self) {
        let nets = keel_net::Networks::open(self.k.root.path())
            .and_then(|n| n.list())
            .unwrap_or_else(|e| panic!("listing the project's networks: {e}"));
        let mut bs = self.bridges.borrow_mut();
        for n in nets {
            if n.name.starts_with(&self.name)
                && let Some(b) = n.bridge
                && !bs.contains(&b)
            {
                bs.push(b);
            }
        }
    }

    #[allow(clippy::unused_self)] // reads better at call sites: p.wait_until(...)
    fn wait_until(&self, what: &str, secs: u64, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `down -v` and the check that nothing is left.
    fn down_and_check(&self) {
        let o = self.compose(&["down", "-v", "--remove-orphans", "-t", "1"]);
        assert!(
            o.status.success(),
            "down: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(self.k.ok(&["ps", "-a", "-q"]), "", "containers left");
        let nets = self.k.ok(&["network", "ls"]);
        assert!(!nets.contains(&self.name), "networks left: {nets}");
        assert_eq!(self.k.ok(&["volume", "ls", "-q"]), "", "volumes left");
        keel_net::Networks::open(self.k.root.path())
            .unwrap()
            .release_idle()
            .unwrap();
        let links = std::process::Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap();
        let links = String::from_utf8_lossy(&links.stdout);
        let rules = std::process::Command::new("iptables-save")
            .output()
            .unwrap();
        let rules = String::from_utf8_lossy(&rules.stdout);
        for b in self.bridges.borrow().iter() {
            assert!(
                !links.contains(b.as_str()),
                "bridge or veth of {b} left: {links}"
            );
            assert!(!rules.contains(b.as_str()), "iptables rules of {b} left");
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(&self.k.root.path().display().to_string()),
            "mounts left under the root"
        );
        assert!(
            !self.k.root.path().join("compose").join(&self.name).exists(),
            "secret files left"
        );
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.compose(&["down", "-v", "--remove-orphans", "-t", "0"]);
            let ids = self.k.run(&["ps", "-a", "-q"]);
            for id in String::from_utf8_lossy(&ids.stdout).lines() {
                let _ = self.k.run(&["rm", "-f", "-v", id]);
            }
            if let Ok(n) = keel_net::Networks::open(self.k.root.path()) {
                for net in n.list().unwrap_or_default() {
                    let _ = n.remove(&net.name);
                }
                let _ = n.release_idle();
            }
        } else {
            self.down_and_check();
        }
        unmount_under(self.k.root.path());
    }
}

fn body(port: u16, path: &str) -> String {
    let r = http_get(port, path);
    r.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(r)
}

#[test]
fn web_and_db_with_healthcheck_recreate_only_what_changed() {
    let port = free_port();
    let mut p = Project::new("web-db").var("WEB_PORT", &port.to_string());
    let out = p.compose(&["up", "-d"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    // db became healthy before web started.
    let healthy = err.find(&format!("{}-db-1  Healthy", p.name)).unwrap();
    let web_created = err.find(&format!("{}-web-1  Created", p.name)).unwrap();
    assert!(healthy < web_created, "{err}");
    wait_for_port(port);
    assert_eq!(body(port, "/index.html"), "hello from web\n");
    // web fetched db's data through the project network, by service name.
    assert_eq!(body(port, "/db.txt"), "rows=3\n");
    assert_eq!(
        p.exec("web", &["wget", "-qO-", "http://db:8080/data.txt"]),
        "rows=3\n"
    );
    // docker compose's port, top and version (issue 15).
    assert_eq!(
        p.ok(&["port", "web", "8080"]),
        format!("127.0.0.1:{port}\n")
    );
    let top = p.ok(&["top", "db"]);
    assert!(top.starts_with(&format!("{}-db-1\nUID ", p.name)), "{top}");
    assert_eq!(
        p.ok(&["version", "--short"]),
        format!("{}\n", env!("CARGO_PKG_VERSION"))
    );
    let ps = p.ps();
    assert_eq!(ps.len(), 2);
    let web = ps.iter().find(|c| c["Service"] == "web").unwrap();
    assert_eq!(web["Labels"]["com.docker.compose.project"], p.name.as_str());
    assert_eq!(web["Labels"]["com.docker.compose.container-number"], "1");
    assert_eq!(
        web["Labels"]["com.docker.compose.config-hash"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert_eq!(web["State"], "running");
    assert!(
        web["Ports"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{port}->8080/tcp"))
    );
    let table = p.ok(&["ps"]);
    assert!(table.starts_with("NAME "), "{table}");
    assert_eq!(p.ok(&["ps", "-q"]).lines().count(), 2);

    // Unchanged: nothing recreated or restarted.
    let ids = p.ids();
    let out = p.compose(&["up", "-d"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("Created") && !err.contains("Recreate") && !err.contains("Started"),
        "{err}"
    );
    assert_eq!(p.ids(), ids);

    // web's environment changes: web recreated, db untouched.
    p.set("GREETING", "howdy");
    p.ok(&["up", "-d"]);
    let after = p.ids();
    let web_name = format!("{}-web-1", p.name);
    let db_name = format!("{}-db-1", p.name);
    assert_ne!(after[&web_name], ids[&web_name]);
    assert_eq!(after[&db_name], ids[&db_name]);
    p.wait_until("the new web", 20, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
            && body(port, "/index.html") == "howdy from web\n"
    });

    // db changes: db recreated; web (restart: true) restarted in place and
    // fetched the new data.
    p.set("ROWS", "5");
    p.ok(&["up", "-d"]);
    let again = p.ids();
    assert_ne!(again[&db_name], after[&db_name]);
    assert_eq!(again[&web_name], after[&web_name]);
    p.wait_until("web to refetch", 20, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok() && body(port, "/db.txt") == "rows=5\n"
    });

    // Logs: prefixed per container (docker compose's name without the
    // project), padded to the longest name.
    let logs = p.ok(&["logs", "db"]);
    assert!(logs.lines().any(|l| l == "db-1 | db ready"), "{logs}");
    let logs = p.ok(&["logs", "--no-log-prefix", "web", "--tail", "1"]);
    assert_eq!(logs, "web up\n");
    let all = p.ok(&["logs", "web", "db"]);
    assert!(all.contains("web-1 | web up"), "{all}");
    assert!(all.contains("db-1  | db ready"), "{all}");

    // stop / start / restart keep the containers.
    p.ok(&["stop"]);
    assert!(p.ps().iter().all(|c| c["State"] == "exited"));
    p.ok(&["start"]);
    assert!(p.ps().iter().all(|c| c["State"] == "running"));
    p.ok(&["restart", "web"]);
    assert_eq!(p.ids(), again);
    wait_for_port(port);

    // ls lists the running project.
    let ls = p.k.ok(&["compose", "ls"]);
    assert!(ls.contains(&p.name) && ls.contains("running(2)"), "{ls}");

    // kill: SIGKILL to the service's containers (issue 15).
    p.ok(&["kill", "web"]);
    let web = p.ps().into_iter().find(|c| c["Service"] == "web").unwrap();
    assert_eq!(web["State"], "exited", "{web}");
    assert_eq!(web["ExitCode"], 137, "{web}");

    // down keeps the named volume; up reuses it.
    p.ok(&["down", "-t", "1"]);
    assert_eq!(p.k.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(
        p.k.ok(&["volume", "ls", "-q"]),
        format!("{}_dbdata\n", p.name)
    );
}

#[test]
fn migration_must_complete_before_the_app_starts() {
    {
        let p = Project::new("migration");
        p.ok(&["up", "-d"]);
        let app = format!("{}-app-1", p.name);
        p.wait_until("the app's output", 20, || {
            p.ok(&["logs", "app"]).contains("schema-v1")
        });
        let ps = p.ps();
        let migrate = ps.iter().find(|c| c["Service"] == "migrate").unwrap();
        assert_eq!(
            (migrate["State"].as_str(), migrate["ExitCode"].as_i64()),
            (Some("exited"), Some(0))
        );
        assert!(
            ps.iter()
                .any(|c| c["Name"] == app.as_str() && c["State"] == "running")
        );
    }
    // A failing migration stops `up`, naming it; the app is never created.
    let bad = Project::new("migration").var("MIGRATE_EXIT", "3");
    let line = bad.fails(&["up", "-d"]);
    assert!(
        line.contains("service migrate") && line.contains("exit 3"),
        "{line}"
    );
    let names: Vec<String> = bad.ids().into_keys().collect();
    assert_eq!(names, [format!("{}-migrate-1", bad.name)]);
    let hint = String::from_utf8_lossy(&bad.compose(&["up", "-d"]).stderr).into_owned();
    assert!(hint.contains("hint: `keel compose logs migrate`"), "{hint}");
}

#[test]
fn secrets_and_configs_are_files_in_the_container() {
    let p = Project::new("secrets-configs")
        .var("API_TOKEN", "tok-123")
        .var("APP_MODE", "staging");
    p.ok(&["up", "-d"]);
    assert_eq!(
        p.exec("app", &["cat", "/run/secrets/db_password"]),
        "s3cret-pw\n"
    );
    assert_eq!(p.exec("app", &["cat", "/run/secrets/token"]), "tok-123");
    assert_eq!(
        p.exec("app", &["cat", "/etc/app/app.conf"]),
        "mode=staging\n"
    );
    assert_eq!(p.exec("app", &["cat", "/motd"]), "welcome aboard\n");
    // Read-only.
    let o = p.compose(&[
        "exec",
        "-T",
        "app",
        "sh",
        "-c",
        "echo x > /run/secrets/db_password",
    ]);
    assert!(!o.status.success());
}

#[test]
fn profiles_enable_services_on_request() {
    let p = Project::new("profiles");
    p.ok(&["up", "-d"]);
    let ids = p.ids();
    assert_eq!(
        ids.keys().cloned().collect::<Vec<_>>(),
        [format!("{}-app-1", p.name)]
    );
    p.ok(&["--profile", "debug", "up", "-d"]);
    let with_debug = p.ids();
    assert_eq!(with_debug.len(), 2);
    assert_eq!(
        with_debug[&format!("{}-app-1", p.name)],
        ids[&format!("{}-app-1", p.name)]
    );
    // Without the profile, debug is neither started nor an orphan.
    let o = p.compose(&["up", "-d"]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("orphan"));
    assert_eq!(p.ids(), with_debug);
    // A service named on the command line is enabled whatever its profiles.
    p.ok(&["--profile", "debug", "down", "-t", "0"]);
    p.ok(&["up", "-d", "debug"]);
    assert_eq!(p.ids().len(), 1);
}

#[test]
fn override_file_is_merged_and_explicit_files_replace_discovery() {
    let p = Project::new("override");
    p.ok(&["up", "-d"]);
    assert_eq!(p.env("app", "MODE"), "dev\n");
    assert_eq!(p.env("app", "KEEP"), "kept\n");
    assert_eq!(p.ps()[0]["Labels"]["tier"], "dev");
    let before = p.ids();
    // Only the base file: a different configuration, so app is recreated.
    p.ok(&["-f", "compose.yaml", "up", "-d"]);
    assert_eq!(p.env("app", "MODE"), "base\n");
    assert_ne!(p.ids(), before);
}

#[test]
fn extends_takes_the_base_service_from_another_file() {
    let p = Project::new("extends");
    p.ok(&["up", "-d"]);
    assert_eq!(p.env("api", "ROLE"), "api\n");
    assert_eq!(p.env("api", "SHARED"), "from-base\n");
}

#[test]
fn scaled_service_scales_up_and_down_by_number() {
    let p = Project::new("scaled");
    p.ok(&["up", "-d"]);
    let ids = p.ids();
    let w = |n: u32| format!("{}-worker-{n}", p.name);
    assert_eq!(ids.len(), 4);
    assert!(ids.contains_key(&w(3)));
    // Each replica is its own container.
    let h2 = p.ok(&["exec", "-T", "--index", "2", "worker", "cat", "/tmp/me"]);
    let h3 = p.ok(&["exec", "-T", "--index", "3", "worker", "cat", "/tmp/me"]);
    assert_ne!(h2, h3);
    p.ok(&["up", "-d", "--scale", "worker=1"]);
    let one = p.ids();
    assert_eq!(one.len(), 2);
    assert_eq!(one[&w(1)], ids[&w(1)]);
    p.ok(&["up", "-d", "--scale", "worker=2"]);
    let two = p.ids();
    assert_eq!(two[&w(1)], ids[&w(1)]);
    assert!(two.contains_key(&w(2)) && !two.contains_key(&w(3)));
    let single = format!("{}-single-1", p.name);
    assert_eq!(two[&single], ids[&single]);
    let err = p.fails(&["up", "-d", "--scale", "nope=2"]);
    assert!(err.contains("no such service: nope"), "{err}");
}

#[test]
fn named_volumes_outlive_down_until_down_v() {
    let p = Project::new("named-volumes");
    p.ok(&["up", "-d"]);
    let vol = format!("{}_store", p.name);
    let vols = p.k.ok(&["volume", "ls", "-q"]);
    // The named one and the anonymous one.
    assert_eq!(vols.lines().count(), 2, "{vols}");
    assert!(vols.contains(&vol));
    p.ok(&["down", "-t", "0"]);
    // Without -v both stay (the anonymous one dangling, as with docker compose).
    assert_eq!(p.k.ok(&["volume", "ls", "-q"]).lines().count(), 2);
    p.k.ok(&["volume", "prune", "-f"]);
    assert_eq!(p.k.ok(&["volume", "ls", "-q"]), format!("{vol}\n"));
    p.ok(&["up", "-d"]);
    assert_eq!(p.exec("writer", &["cat", "/data/log"]), "run\nrun\n");
    let inspect = p.k.ok(&["volume", "inspect", &vol]);
    assert!(inspect.contains("com.docker.compose.project"), "{inspect}");
}

#[test]
fn declared_network_resolves_aliases() {
    let p = Project::new("networks-aliases");
    p.ok(&["up", "-d"]);
    for host in ["api", "api.internal"] {
        let got = p.exec(
            "client",
            &["wget", "-qO-", &format!("http://{host}:8080/index.html")],
        );
        assert_eq!(got, "api says hi\n", "{host}");
    }
    let nets = p.k.ok(&["network", "ls"]);
    assert!(nets.contains(&format!("{}_back", p.name)), "{nets}");
    assert!(!nets.contains(&format!("{}_default", p.name)), "{nets}");
}

#[test]
fn restart_policy_env_file_container_name_and_run() {
    let p = Project::new("restart-envfile");
    p.ok(&["up", "-d"]);
    p.wait_until("the third start", 30, || {
        std::fs::read_to_string(p.dir.path().join("state/count"))
            .is_ok_and(|s| s.lines().count() >= 3)
            && p.ps().first().is_some_and(|c| c["State"] == "running")
    });
    let ps = p.ps();
    assert_eq!(ps[0]["Name"], "flaky-one");
    assert_eq!(p.env("flaky", "FROM_FILE"), "yes\n");
    assert_eq!(p.env("flaky", "QUOTED"), "a b\n");
    // run: a one-off container with the service's configuration.
    let out = p.ok(&["run", "--rm", "flaky", "echo $FROM_FILE"]);
    assert_eq!(out, "yes\n");
    let o = p.compose(&["run", "--rm", "flaky", "exit 4"]);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(p.ids().len(), 1, "one-off containers were removed");
    // exec propagates the exit code.
    let o = p.compose(&["exec", "-T", "flaky", "sh", "-c", "exit 6"]);
    assert_eq!(o.status.code(), Some(6));
    // exec --privileged (issue 15): every capability the host can give.
    let caps = |extra: &[&str]| {
        let mut a = vec!["exec", "-T"];
        a.extend(extra);
        a.extend(["flaky", "sh", "-c", "grep CapEff /proc/self/status"]);
        p.ok(&a)
    };
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = host
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(caps(&["--privileged"]), format!("CapEff:\t{bounding}\n"));
    assert_ne!(caps(&[]), format!("CapEff:\t{bounding}\n"));
}

#[test]
fn orphans_are_reported_and_removed_on_request() {
    let mut p = Project::new("profiles");
    p.ok(&["--profile", "debug", "up", "-d"]);
    // The project loses its debug service altogether.
    std::fs::write(
        p.dir.path().join("compose.yaml"),
        "services:\n  app:\n    image: busybox\n    stop_signal: SIGKILL\n    command: [\"sleep\", \"3600\"]\n",
    )
    .unwrap();
    p.set("UNUSED", "1");
    let o = p.compose(&["up", "-d"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains(&format!("Found orphan containers ([{}-debug-1])", p.name)),
        "{err}"
    );
    assert_eq!(p.ids().len(), 2);
    p.ok(&["up", "-d", "--remove-orphans"]);
    assert_eq!(p.ids().len(), 1);
}

#[test]
fn external_network_must_exist() {
    let p = Project::new("profiles");
    let ext = format!("{}-ext", p.name);
    std::fs::write(
        p.dir.path().join("compose.yaml"),
        format!("services:\n  app:\n    image: busybox\n    stop_signal: SIGKILL\n    command: [sleep, '3600']\n    networks: [outside]\nnetworks:\n  outside:\n    external: true\n    name: {ext}\n"),
    )
    .unwrap();
    let err = p.fails(&["up", "-d"]);
    assert_eq!(
        err,
        format!("error: network {ext} declared as external, but could not be found")
    );
    assert_eq!(p.k.ok(&["ps", "-a", "-q"]), "");
    p.k.ok(&["network", "create", &ext]);
    p.ok(&["up", "-d"]);
    p.ok(&["down", "-t", "0"]);
    // down never removes an external network.
    assert!(p.k.ok(&["network", "ls"]).contains(&ext));
    p.k.ok(&["network", "rm", &ext]);
}

/// The engine's typed error reaches the user with its hint: the compose
/// seam once flattened it to a string and the hint was lost.
#[test]
fn an_engine_failure_keeps_its_hint() {
    let p = Project::new("profiles");
    std::fs::write(
        p.dir.path().join("compose.yaml"),
        "services:\n  app:\n    image: busybox\n    user: ghost\n    command: [sleep, '3600']\n",
    )
    .unwrap();
    let o = p.compose(&["up", "-d"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{err}");
    let line = p.fails(&["up", "-d"]);
    assert!(
        line.starts_with(&format!("error: creating container {}-app-1: ", p.name))
            && line.contains("ghost"),
        "{line}"
    );
    assert!(
        err.contains("\nhint: use a name from the image's /etc/passwd, or a numeric uid[:gid]"),
        "{err}"
    );
    p.ok(&["down", "-t", "0"]);
}

#[test]
fn bad_input_is_one_line_with_file_and_path_and_starts_nothing() {
    let p = Project::new("bad");
    let cases: &[(&str, &[&str])] = &[
        ("cycle.yaml", &["cycle.yaml:", "dependency cycle detected"]),
        (
            "unknown-service.yaml",
            &["unknown-service.yaml:", "services.a.depends_on", "ghost"],
        ),
        (
            "required-var.yaml",
            &["required-var.yaml:", "TOKEN is required"],
        ),
        (
            "invalid-port.yaml",
            &["invalid-port.yaml:6:", "services.a.ports[1]"],
        ),
        (
            "schema.yaml",
            &["schema.yaml:6:", "services.a.healthcheck.retries"],
        ),
    ];
    for (file, needles) in cases {
        let line = p.fails(&["-f", file, "up", "-d"]);
        for n in *needles {
            assert!(line.contains(n), "{file}: {n:?} not in {line}");
        }
        assert_eq!(p.k.ok(&["ps", "-a", "-q"]), "", "{file}: something started");
        assert!(!p.k.ok(&["network", "ls"]).contains(&p.name), "{file}");
    }
}

#[test]
fn multi_stage_build_targets_and_up_build_recreates_only_the_changed_image() {
    let port = free_port();
    let mut p = Project::new("multi-stage").var("WEB_PORT", &port.to_string());
    let out = p.compose(&["up", "-d"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let web_image = format!("{}-web", p.name);
    assert!(err.contains(&format!("Image {web_image}  Built")), "{err}");
    wait_for_port(port);
    assert_eq!(body(port, "/stage.txt"), "final there\n");
    let tester = format!("{}-tester-1", p.name);
    p.wait_until("the tester's output", 20, || {
        p.ok(&["logs", "tester"]).contains("test")
    });
    assert_eq!(p.ok(&["logs", "--no-log-prefix", "tester"]), "test\n");
    let ids = p.ids();
    // Unchanged: up --build rebuilds from the cache and recreates nothing.
    p.ok(&["up", "-d", "--build"]);
    assert_eq!(p.ids(), ids);
    // A build argument of web changes: only web's image and container change.
    p.set("GREETING", "friend");
    p.ok(&["up", "-d", "--build"]);
    let after = p.ids();
    let web = format!("{}-web-1", p.name);
    assert_ne!(after[&web], ids[&web]);
    assert_eq!(after[&tester], ids[&tester]);
    p.wait_until("the rebuilt web", 20, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
            && body(port, "/stage.txt") == "final friend\n"
    });
    // down --rmi local removes the built images.
    p.ok(&["down", "--rmi", "local", "-t", "0"]);
    let images = p.k.ok(&["images"]);
    assert!(!images.contains(&web_image), "{images}");
}

#[test]
fn up_without_detach_streams_prefixed_logs_until_the_containers_exit() {
    let p = Project::new("profiles");
    std::fs::write(
        p.dir.path().join("compose.yaml"),
        "services:\n  one:\n    image: busybox\n    command: [sh, -c, 'echo first; sleep 1; echo done']\n  two:\n    image: busybox\n    command: [sh, -c, 'echo second']\n",
    )
    .unwrap();
    let out = p.ok(&["up"]);
    for want in [
        "Attaching to one-1, two-1",
        "one-1 | first",
        "one-1 | done",
        "two-1 | second",
        "two-1 exited with code 0",
        "one-1 exited with code 0",
    ] {
        assert!(out.lines().any(|l| l == want), "{want:?} not in {out}");
    }
    // No colour codes without a terminal.
    assert!(!out.contains('\x1b'), "{out}");
}

#[test]
fn project_name_alone_is_enough_for_ps_logs_stop_and_down() {
    let p = Project::new("migration");
    p.ok(&["up", "-d"]);
    p.wait_until("the app's output", 20, || {
        p.ok(&["logs", "app"]).contains("schema-v1")
    });
    let net = format!("{}_default", p.name);
    let vol = format!("{}_data", p.name);
    assert!(p.k.ok(&["network", "ls"]).contains(&net));
    // Somewhere without any compose file, like `docker compose -p NAME down`.
    let elsewhere = tempfile::tempdir().unwrap();
    let by_name = |args: &[&str]| {
        let o =
            p.k.cmd()
                .current_dir(elsewhere.path())
                .args(["compose", "-p", &p.name])
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        (
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8(o.stderr).unwrap(),
        )
    };
    let (ps, _) = by_name(&["ps", "-a", "--format", "json"]);
    let services: Vec<String> = ps
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["Service"].to_string())
        .collect();
    assert_eq!(services, ["\"app\"", "\"migrate\""], "{ps}");
    let (logs, _) = by_name(&["logs", "--no-log-prefix", "app"]);
    assert_eq!(logs, "schema-v1\n");
    let (_, err) = by_name(&["stop", "-t", "0"]);
    assert!(err.contains(&format!("{}-app-1  Stopped", p.name)), "{err}");
    let (_, err) = by_name(&["down", "-v"]);
    // The app (which depends on migrate, as its labels say) goes first.
    let app = err.find(&format!("{}-app-1  Removed", p.name)).unwrap();
    let migrate = err.find(&format!("{}-migrate-1  Removed", p.name)).unwrap();
    assert!(app < migrate, "{err}");
    assert!(err.contains(&format!("Network {net}  Removed")), "{err}");
    assert!(err.contains(&format!("Volume {vol}  Removed")), "{err}");
    assert_eq!(p.k.ok(&["ps", "-a", "-q"]), "");
    assert!(!p.k.ok(&["network", "ls"]).contains(&net));
    assert_eq!(p.k.ok(&["volume", "ls", "-q"]), "");
    // Nothing of it is left to find: docker compose's warning.
    let (_, err) = by_name(&["down"]);
    assert!(err.contains("No resource found to remove"), "{err}");
    // Without -p there is nothing to go by.
    let o =
        p.k.cmd()
            .current_dir(elsewhere.path())
            .args(["compose", "down"])
            .output()
            .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no configuration file provided"));
}

/// Runs `keel compose -p NAME ARGS` on a pseudo-terminal (script(1)), where
/// colours are allowed; returns what the terminal showed.
fn on_a_terminal(p: &Project, args: &str) -> String {
    let cmd = format!(
        "{} compose -p {} {args}",
        env!("CARGO_BIN_EXE_keel"),
        p.name
    );
    let o = std::process::Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .current_dir(p.dir.path())
        .env("KEEL_ROOT", p.k.root.path())
        .env("DOCKER_CONFIG", p.k.root.path().join("no-docker-config"))
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script(1) (bsdutils) is installed");
    let out = String::from_utf8_lossy(&o.stdout).replace("\r\n", "\n");
    assert!(o.status.success(), "{cmd}: {out}");
    out
}

fn write_compose(p: &Project, yaml: &str) {
    std::fs::write(p.dir.path().join("compose.yaml"), yaml).unwrap();
}

#[test]
fn logs_are_prefixed_and_coloured_like_docker_compose_on_a_terminal_only() {
    let p = Project::new("profiles");
    write_compose(
        &p,
        "services:\n  one:\n    image: busybox\n    command: [sh, -c, 'echo a1; sleep 0.3; echo a2']\n  two:\n    image: busybox\n    container_name: second\n    command: [sh, -c, 'sleep 0.1; echo b1']\n",
    );
    // Attached up on a terminal: docker compose's colours per container,
    // "Attaching to", and the exits.
    let up = on_a_terminal(&p, "up");
    assert!(up.contains("Attaching to one-1, second"), "{up}");
    assert!(up.contains("\x1b[36mone-1  | \x1b[0ma1\n"), "{up:?}");
    assert!(up.contains("\x1b[33msecond | \x1b[0mb1\n"), "{up:?}");
    assert!(
        up.contains("\x1b[36mone-1 exited with code 0\x1b[0m"),
        "{up:?}"
    );
    // Through a pipe: the same lines without colours.
    let plain = p.ok(&["logs"]);
    assert!(!plain.contains('\x1b'), "{plain:?}");
    let lines: Vec<&str> = plain.lines().collect();
    for want in ["one-1  | a1", "one-1  | a2", "second | b1"] {
        assert!(lines.contains(&want), "{want:?} not in {plain}");
    }
    let tty = on_a_terminal(&p, "logs one");
    assert_eq!(
        tty,
        "\x1b[36mone-1 | \x1b[0ma1\n\x1b[36mone-1 | \x1b[0ma2\n"
    );
    assert_eq!(
        on_a_terminal(&p, "logs --no-color one"),
        "one-1 | a1\none-1 | a2\n"
    );
    assert_eq!(on_a_terminal(&p, "logs --no-log-prefix two"), "b1\n");
    assert_eq!(p.ok(&["logs", "-t", "two"]).split(' ').count(), 4);
    // Six services: the palette goes on with the intense colours.
    let yaml: String = std::iter::once("services:\n".to_string())
        .chain((1..=6).map(|i| format!("  s{i}:\n    image: busybox\n    command: [echo, x{i}]\n")))
        .collect();
    write_compose(&p, &yaml);
    p.ok(&["up", "-d", "--remove-orphans"]);
    p.wait_until("six outputs", 20, || p.ok(&["logs"]).lines().count() == 6);
    let six = on_a_terminal(&p, "logs");
    for (i, c) in ["36", "33", "32", "35", "34", "36;1"].iter().enumerate() {
        let want = format!("\x1b[{c}ms{}-1 | \x1b[0mx{}\n", i + 1, i + 1);
        assert!(six.contains(&want), "{want:?} not in {six:?}");
    }
}

#[test]
fn up_wait_waits_for_health_and_names_the_service_that_is_not() {
    let p = Project::new("profiles");
    let yaml = |test: &str, interval: &str| {
        format!(
            "services:\n  api:\n    image: busybox\n    stop_signal: SIGKILL\n    command: [sh, -c, 'sleep 1; touch /tmp/ok; exec sleep 3600']\n    healthcheck: {{test: {test}, interval: {interval}, retries: 15}}\n  migrate:\n    image: busybox\n    command: ['true']\n  app:\n    image: busybox\n    stop_signal: SIGKILL\n    command: [sleep, '3600']\n    depends_on:\n      migrate: {{condition: service_completed_successfully}}\n"
        )
    };
    write_compose(&p, &yaml("[CMD, test, -f, /tmp/ok]", "200ms"));
    let o = p.compose(&["up", "--wait"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    // --wait implies -d: up returned, and api was healthy when it did.
    assert!(err.contains(&format!("{}-api-1  Healthy", p.name)), "{err}");
    assert!(
        err.contains(&format!("{}-migrate-1  Exited", p.name)),
        "{err}"
    );
    assert!(err.contains(&format!("{}-app-1  Running", p.name)), "{err}");
    let ps = p.ps();
    let api = ps.iter().find(|c| c["Service"] == "api").unwrap();
    assert_eq!(api["Health"], "healthy");

    // A check that fails: up --wait fails naming the service.
    write_compose(&p, &yaml("[CMD, 'false']", "200ms"));
    let line = p.fails(&["up", "--wait", "--wait-timeout", "30"]);
    assert_eq!(
        line,
        format!(
            "error: service api is not ready: container {}-api-1 is unhealthy",
            p.name
        )
    );
    // A check that never gets to run: the timeout names it.
    write_compose(&p, &yaml("[CMD, 'true']", "1h"));
    let line = p.fails(&["up", "--wait", "--wait-timeout", "2"]);
    assert_eq!(
        line,
        format!(
            "error: application not healthy after 2s: service api: container {}-api-1 is still starting",
            p.name
        )
    );
}

#[test]
fn push_and_pull_through_a_real_registry_with_pull_policies() {
    let reg = common::Registry::start();
    let mut p = Project::new("profiles");
    let image = format!("localhost:{}/{}/app:1", reg.port, p.name);
    let extra_tag = format!("localhost:{}/{}/app:extra", reg.port, p.name);
    let absent = format!("localhost:{}/{}/absent:1", reg.port, p.name);
    std::fs::write(p.dir.path().join("msg"), "from the registry\n").unwrap();
    write_compose(
        &p,
        &format!(
            "services:\n  app:\n    image: {image}\n    pull_policy: ${{POLICY:-missing}}\n    build:\n      context: .\n      tags: [{extra_tag}]\n      dockerfile_inline: |\n        FROM busybox\n        COPY msg /msg\n    stop_signal: SIGKILL\n    command: [sh, -c, 'cat /msg; exec sleep 3600']\n  ghost:\n    image: {absent}\n    profiles: [never]\n"
        ),
    );
    p.ok(&["build"]);
    let err = String::from_utf8_lossy(&p.compose(&["push"]).stderr).into_owned();
    assert!(err.contains(&format!("Image {image}  Pushed")), "{err}");
    assert!(err.contains(&format!("Image {extra_tag}  Pushed")), "{err}");
    assert_eq!(
        common::skopeo_digest(&image),
        common::skopeo_digest(&extra_tag)
    );
    p.k.ok(&["inspect", &image]);
    p.ok(&["down", "--rmi", "all"]);
    assert!(!p.k.run(&["inspect", &image]).status.success());

    // pull brings it back; up --no-build runs it without building.
    let err = String::from_utf8_lossy(&p.compose(&["pull"]).stderr).into_owned();
    assert!(err.contains(&format!("Image {image}  Pulled")), "{err}");
    let o = p.compose(&["up", "-d", "--no-build"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("Built") && !err.contains("Pulling"), "{err}");
    p.wait_until("the pulled image's output", 20, || {
        p.ok(&["logs", "app"]).contains("from the registry")
    });

    // A failed pull stops `pull` naming the service, unless ignored.
    let line = p.fails(&["pull", "ghost"]);
    assert!(
        line.contains(&format!("pulling {absent} for service ghost")),
        "{line}"
    );
    let o = p.compose(&["pull", "--ignore-pull-failures", "ghost"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // pull_policy: missing (present: nothing), always (pulls), never and
    // build (no pull; build builds).
    for (policy, pulls, builds) in [
        ("missing", false, false),
        ("always", true, false),
        ("never", false, false),
        ("build", false, true),
    ] {
        p.set("POLICY", policy);
        let o = p.compose(&["up", "-d"]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{policy}: {err}");
        assert_eq!(err.contains("Pulled"), pulls, "{policy}: {err}");
        assert_eq!(err.contains("Built"), builds, "{policy}: {err}");
    }
    // up --pull overrides the policy.
    let err =
        String::from_utf8_lossy(&p.compose(&["up", "-d", "--pull", "always"]).stderr).into_owned();
    assert!(err.contains("Pulled"), "{err}");
    // never with the image gone: a clear error, nothing pulled.
    p.set("POLICY", "never");
    p.ok(&["down", "--rmi", "all"]);
    let line = p.fails(&["up", "-d", "--no-build"]);
    assert!(
        line.contains(&format!(
            "no such image {image}: it is not present locally and --no-build forbids building it"
        )),
        "{line}"
    );
    p.set("POLICY", "missing");
    // missing with the image gone: pulled, not built.
    let err = String::from_utf8_lossy(&p.compose(&["up", "-d"]).stderr).into_owned();
    assert!(err.contains("Pulled") && !err.contains("Built"), "{err}");
}

#[test]
fn resource_keys_are_applied_to_the_container() {
    let p = Project::new("profiles");
    write_compose(
        &p,
        r"services:
  app:
    image: busybox
    stop_signal: SIGKILL
    command: [sleep, '3600']
    mem_limit: 64m
    memswap_limit: 96m
    cpus: 0.5
    pids_limit: 50
    shm_size: 32m
    ulimits:
      nofile: {soft: 1000, hard: 2000}
      nproc: 300
    cap_add: [NET_ADMIN]
    cap_drop: [CHOWN]
    read_only: true
    tmpfs: ['/scratch:size=8m']
    user: '1000:1000'
    working_dir: /tmp
    sysctls:
      net.core.somaxconn: 1000
    cpu_shares: 512
    deploy:
      resources:
        limits: {pids: 40}
        reservations: {memory: 10m}
",
    );
    let o = p.compose(&["up", "-d"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    // What keel cannot apply is said, in one line.
    assert!(
        err.contains(
            "WARN[0000] service app: keel cannot apply cpu_shares, deploy.resources.reservations; ignored"
        ),
        "{err}"
    );
    let sh = |cmd: &str| p.exec("app", &["sh", "-c", cmd]);
    assert_eq!(
        sh("cat /sys/fs/cgroup/memory/memory.limit_in_bytes"),
        "67108864\n"
    );
    // deploy.resources.limits wins over pids_limit, as in docker compose.
    assert_eq!(sh("cat /sys/fs/cgroup/pids/pids.max"), "40\n");
    assert_eq!(sh("cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us"), "50000\n");
    let limits = |name: &str| {
        sh(&format!(
            "grep '^{name}' /proc/1/limits | awk '{{print $(NF-2), $(NF-1)}}'"
        ))
    };
    assert_eq!(limits("Max open files"), "1000 2000\n");
    assert_eq!(limits("Max processes"), "300 300\n");
    assert_eq!(sh("df -k /dev/shm | tail -1 | awk '{print $2}'"), "32768\n");
    assert_eq!(sh("df -k /scratch | tail -1 | awk '{print $2}'"), "8192\n");
    assert_eq!(sh("id -u; id -g; pwd"), "1000\n1000\n/tmp\n");
    assert_eq!(sh("cat /proc/sys/net/core/somaxconn"), "1000\n");
    let o = p.compose(&["exec", "-T", "app", "touch", "/not-here"]);
    assert!(!o.status.success(), "the root filesystem is read-only");
    sh("touch /scratch/ok");
    let bnd = sh("grep CapBnd /proc/self/status | cut -f2");
    let bnd = u64::from_str_radix(bnd.trim(), 16).unwrap();
    assert_eq!(bnd & (1 << 12), 1 << 12, "NET_ADMIN added: {bnd:x}");
    assert_eq!(bnd & 1, 0, "CHOWN dropped: {bnd:x}");
    // keel inspect shows the same limits.
    let id = p.ids().into_values().next().unwrap();
    let inspect: serde_json::Value = serde_json::from_str(&p.k.ok(&["inspect", &id])).unwrap();
    let hc = &inspect[0]["HostConfig"];
    assert_eq!(hc["Memory"], 64 << 20);
    assert_eq!(hc["MemorySwap"], 96 << 20);
    assert_eq!(hc["ShmSize"], 32 << 20);
    assert_eq!(hc["NanoCpus"], 500_000_000);
}

#[test]
fn init_runs_docker_init_as_pid_1_which_reaps_and_forwards() {
    let p = Project::new("profiles");
    // A grandchild orphaned by its parent is re-parented to PID 1; only an
    // init reaps it.
    let zombie = "(sleep 0.2 &); sleep 1.5; grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l";
    write_compose(
        &p,
        "services:\n  with:\n    image: busybox\n    init: true\n    command: [sh, -c, 'trap \"echo got-term; exit 0\" TERM; while :; do sleep 0.1; done']\n  without:\n    image: busybox\n    stop_signal: SIGKILL\n    command: [sleep, '3600']\n",
    );
    p.ok(&["up", "-d"]);
    assert_eq!(
        p.exec("with", &["sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"]),
        "/sbin/docker-init -- sh -c trap \"echo got-term; exit 0\" TERM; while :; do sleep 0.1; done "
    );
    assert_eq!(p.exec("with", &["sh", "-c", zombie]), "0\n");
    // The control: without init the orphan stays a zombie.
    assert_eq!(p.exec("without", &["sh", "-c", zombie]), "1\n");
    // docker-init forwards the stop signal to the command.
    let start = Instant::now();
    p.ok(&["stop", "-t", "20", "with"]);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(p.ok(&["logs", "with"]).contains("got-term"));
    let ps = p.ps();
    let with = ps.iter().find(|c| c["Service"] == "with").unwrap();
    assert_eq!(
        (with["State"].as_str(), with["ExitCode"].as_i64()),
        (Some("exited"), Some(0))
    );
    // keel run --init too.
    let out = p.k.ok(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "tr '\\0' ' ' < /proc/1/cmdline",
    ]);
    assert_eq!(
        out,
        "/sbin/docker-init -- sh -c tr '\\0' ' ' < /proc/1/cmdline "
    );
}

#[test]
fn run_takes_stdin_entrypoint_env_and_no_deps() {
    let p = Project::new("profiles");
    write_compose(
        &p,
        "services:\n  dep:\n    image: busybox\n    stop_signal: SIGKILL\n    command: [sleep, '3600']\n  app:\n    image: busybox\n    command: [echo, default]\n    depends_on: [dep]\n",
    );
    let run = |args: &[&str], input: &str| {
        let mut c = p.k.cmd();
        c.current_dir(p.dir.path())
            .args(["compose", "-p", &p.name, "run"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    // --no-deps: dep is not started.
    assert_eq!(run(&["--rm", "--no-deps", "app"], ""), "default\n");
    assert!(p.ids().is_empty(), "{:?}", p.ids());
    // stdin reaches the command by default, and with -T.
    assert_eq!(run(&["--rm", "app", "cat"], "hello\n"), "hello\n");
    assert_eq!(p.ps().len(), 1, "dep started, the one-off removed");
    assert_eq!(run(&["--rm", "-T", "app", "cat"], "again\n"), "again\n");
    // -i=false: stdin is not attached.
    assert_eq!(run(&["--rm", "-i=false", "app", "cat"], "lost\n"), "");
    assert_eq!(
        run(
            &[
                "--rm",
                "-e",
                "X=1",
                "--entrypoint",
                "sh -c",
                "app",
                "echo $X $0"
            ],
            ""
        ),
        "1 sh\n"
    );
    // On a terminal the command gets a TTY (stdin attached too), unless -T.
    assert!(on_a_terminal(&p, "run --rm app tty").contains("/dev/pts/"));
    assert!(on_a_terminal(&p, "run --rm -T app sh -c 'tty || true'").contains("not a tty"));
    // Without --rm the one-off container stays (and `down` removes it).
    run(&["app", "true"], "");
    assert_eq!(p.ps().len(), 2);
}

/// A /24 other tests on this host are unlikely to use at the same time.
fn scratch_subnet() -> String {
    let n = std::process::id();
    format!("10.{}.{}.0/24", 150 + n % 100, 250 - (n / 100) % 50)
}

#[test]
fn services_on_several_networks_see_only_their_peers() {
    let subnet = scratch_subnet();
    let prefix = subnet.trim_end_matches("0/24").to_string();
    let app_ip = format!("{prefix}40");
    let mut p = Project::new("multi-network")
        .var("BACKEND_SUBNET", &subnet)
        .var("APP_IP", &app_ip);
    p.ok(&["up", "-d"]);
    let get =
        |p: &Project, from: &str, url: &str| p.compose(&["exec", "-T", from, "wget", "-qO-", url]);
    let body = |o: Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    // The proxy is on both networks and reaches both sides by name and alias.
    assert_eq!(
        body(get(&p, "proxy", "http://app:8080/index.html")),
        "app\n"
    );
    assert_eq!(
        body(get(&p, "proxy", "http://app.internal:8080/index.html")),
        "app\n"
    );
    assert_eq!(
        body(get(&p, "proxy", "http://web:8080/index.html")),
        "web\n"
    );
    // web is only on frontend: app neither resolves nor answers there.
    // (No name lookup of app from web: a miss in /etc/hosts would ask the DNS server.)
    let url = format!("http://{app_ip}:8080/index.html");
    let o = p.compose(&["exec", "-T", "web", "timeout", "3", "wget", "-qO-", &url]);
    assert!(!o.status.success());
    assert!(!p.exec("web", &["cat", "/etc/hosts"]).contains("app"));
    // app sees the proxy under its backend alias, at its static address.
    assert!(p.exec("app", &["cat", "/etc/hosts"]).contains("gateway"));
    let app = p.k.ok(&["inspect", &format!("{}-app-1", p.name)]);
    let app: serde_json::Value = serde_json::from_str(&app).unwrap();
    let backend = format!("{}_backend", p.name);
    assert_eq!(
        app[0]["NetworkSettings"]["Networks"][&backend]["IPAddress"],
        app_ip.as_str()
    );
    // frontend has the higher priority: it is the proxy's eth0 and default route.
    let proxy = p.k.ok(&["inspect", &format!("{}-proxy-1", p.name)]);
    let proxy: serde_json::Value = serde_json::from_str(&proxy).unwrap();
    let nets = &proxy[0]["NetworkSettings"]["Networks"];
    let frontend = format!("{}_frontend", p.name);
    assert_eq!(nets[&frontend]["InterfaceName"], "eth0", "{nets}");
    assert_eq!(nets[&backend]["InterfaceName"], "eth1", "{nets}");
    let gw = nets[&frontend]["Gateway"].as_str().unwrap();
    assert!(
        p.exec("proxy", &["ip", "route"])
            .contains(&format!("default via {gw} dev eth0"))
    );
    // extra_hosts and dns settings.
    assert!(
        p.exec("proxy", &["cat", "/etc/hosts"])
            .contains("10.1.2.3\textra.test\n")
    );
    assert_eq!(
        p.exec("proxy", &["cat", "/etc/resolv.conf"]),
        "nameserver 10.0.0.53\nsearch svc.test\noptions ndots:1\n"
    );
    // The sidecar lives in web's network namespace.
    assert_eq!(
        body(get(&p, "sidecar", "http://127.0.0.1:8080/index.html")),
        "web\n"
    );
    // A change to the proxy's dns options recreates the proxy only.
    let before = p.ids();
    p.set("NDOTS", "3");
    p.ok(&["up", "-d"]);
    let after = p.ids();
    for (name, id) in &before {
        if name.ends_with("-proxy-1") {
            assert_ne!(after[name], *id, "{name} was not recreated");
        } else {
            assert_eq!(after[name], *id, "{name} was recreated");
        }
    }
    assert!(
        p.exec("proxy", &["cat", "/etc/resolv.conf"])
            .contains("options ndots:3\n")
    );
    // Recreating web takes the sidecar along (its namespace went with web),
    // and nothing else.
    let before = p.ids();
    p.set("WEB_VERSION", "2");
    p.ok(&["up", "-d"]);
    let after = p.ids();
    for (name, id) in &before {
        let recreated = name.ends_with("-web-1") || name.ends_with("-sidecar-1");
        assert_eq!(after[name] != *id, recreated, "{name}");
    }
    assert_eq!(
        body(get(&p, "sidecar", "http://127.0.0.1:8080/index.html")),
        "web\n"
    );
}

/// `keel compose ARGS` with `input` on stdin, killed (and the test failed)
/// after `secs`: for commands that hung on the old code.
fn compose_with_input(p: &Project, args: &[&str], input: &str, secs: u64) -> Output {
    let mut c = p.k.cmd();
    c.current_dir(p.dir.path())
        .args(["compose", "-p", &p.name])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "keel compose {args:?} still running after {secs}s: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    p.note_bridges();
    o
}

/// Issue 15.3: `echo x | keel compose exec -T web cat` printed nothing (stdin
/// was only forwarded on a terminal) and `-i` was refused; docker compose
/// exec always forwards stdin.
#[test]
fn compose_exec_forwards_stdin_and_accepts_i() {
    let p = Project::new("profiles");
    write_compose(
        &p,
        "services:\n  web:\n    image: busybox\n    stop_signal: SIGKILL\n    command: [sleep, '3600']\n",
    );
    p.ok(&["up", "-d"]);
    for flags in [&["-T"][..], &["-i", "-T"], &[]] {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.extend(["web", "cat"]);
        let o = compose_with_input(&p, &args, "x\n", 30);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), "x\n", "{args:?}");
    }
    // The command's exit status is exec's.
    let o = compose_with_input(&p, &["exec", "-T", "web", "sh", "-c", "exit 4"], "", 30);
    assert_eq!(o.status.code(), Some(4));
}

/// Issue 15.4: `up -d --wait` reported success when a service's container
/// exited with an error just after starting; docker compose fails naming it.
#[test]
fn up_wait_fails_naming_a_service_that_exited() {
    let p = Project::new("profiles");
    write_compose(
        &p,
        "services:\n  ok:\n    image: busybox\n    stop_signal: SIGKILL\n    command: [sleep, '3600']\n  crash:\n    image: busybox\n    command: [sh, -c, 'sleep 0.2; exit 3']\n",
    );
    let line = p.fails(&["up", "-d", "--wait"]);
    assert_eq!(
        line,
        format!(
            "error: service crash is not ready: container {}-crash-1 exited (3)",
            p.name
        )
    );
}

/// Issue 15.5: `keel compose up a` (foreground, `a` depends on `b`) never
/// returned after `a` exited: it followed `b` too. docker compose attaches
/// to the named services only (unless --attach-dependencies) and returns
/// when they exit; --exit-code-from returns that service's exit code.
#[test]
fn foreground_up_attaches_to_the_named_services_and_returns() {
    let p = Project::new("profiles");
    write_compose(
        &p,
        "services:\n  b:\n    image: busybox\n    stop_signal: SIGKILL\n    command: [sh, -c, 'echo from-b; exec sleep 3600']\n  a:\n    image: busybox\n    command: [sh, -c, 'sleep 0.5; echo from-a']\n    depends_on: [b]\n",
    );
    let o = compose_with_input(&p, &["up", "a"], "", 60);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.lines().any(|l| l == "Attaching to a-1"), "{out}");
    assert!(out.lines().any(|l| l == "a-1 | from-a"), "{out}");
    assert!(!out.contains("from-b"), "{out}");
    // b was started as a dependency and is left running, as compose does.
    let ps = p.ps();
    let b = ps.iter().find(|c| c["Service"] == "b").unwrap();
    assert_eq!(b["State"], "running", "{ps:?}");

    // --exit-code-from: abort when any attached container exits, exit with
    // the named service's code.
    write_compose(
        &p,
        "services:\n  b:\n    image: busybox\n    stop_signal: SIGKILL\n    command: [sleep, '3600']\n  a:\n    image: busybox\n    command: [sh, -c, 'exit 3']\n    depends_on: [b]\n",
    );
    let o = compose_with_input(&p, &["up", "--exit-code-from", "a"], "", 60);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(3),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("Aborting on container exit..."), "{out}");

    // --abort-on-container-exit alone: the first exit stops the others.
    let o = compose_with_input(&p, &["up", "--abort-on-container-exit"], "", 60);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("Aborting on container exit..."), "{out}");
    let ps = p.ps();
    let b = ps.iter().find(|c| c["Service"] == "b").unwrap();
    assert_ne!(b["State"], "running", "{ps:?}");

    // --attach-dependencies: the dependencies' output too, and `up` returns
    // once every attached container has exited.
    write_compose(
        &p,
        "services:\n  b:\n    image: busybox\n    command: [sh, -c, 'echo from-b; sleep 1']\n  a:\n    image: busybox\n    command: [sh, -c, 'sleep 0.5; echo from-a']\n    depends_on: [b]\n",
    );
    let o = compose_with_input(&p, &["up", "--attach-dependencies", "a"], "", 60);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.lines().any(|l| l == "b-1 | from-b"), "{out}");
    assert!(out.lines().any(|l| l == "a-1 | from-a"), "{out}");
}

/// Issue 15: docker compose warns about an unset variable and the obsolete
/// `version:` key; so does every keel compose command that loads the file.
#[test]
fn unset_variables_and_version_are_warned_about() {
    let p = Project::new("profiles");
    write_compose(
        &p,
        "version: '3.8'\nservices:\n  a:\n    image: busybox\n    command: [echo, \"${KEEL_TEST_UNSET_VAR}\"]\n",
    );
    let o = p.compose(&["config", "-q"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(
            "The \"KEEL_TEST_UNSET_VAR\" variable is not set. Defaulting to a blank string."
        ),
        "{err}"
    );
    assert!(
        err.contains("the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion"),
        "{err}"
    );
}

/// Issue 15.6: services defined in the file but not named on the command
/// line were called orphans and `--remove-orphans` removed them.
#[test]
fn unselected_services_are_not_orphans() {
    let p = Project::new("profiles");
    write_compose(
        &p,
        "services:\n  a:\n    image: busybox\n    stop_signal: SIGKILL\n    command: [sleep, '3600']\n  b:\n    image: busybox\n    stop_signal: SIGKILL\n    command: [sleep, '3600']\n",
    );
    p.ok(&["up", "-d"]);
    let o = p.compose(&["up", "-d", "--remove-orphans", "a"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("orphan"), "{err}");
    assert!(!err.contains("-b-1  Remov"), "{err}");
    assert_eq!(p.ids().len(), 2, "{:?}", p.ids());
}

#[path = "compose_up/verbs.rs"]
mod verbs;
