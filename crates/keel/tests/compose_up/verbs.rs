//! Issue 15: docker compose's `rm`, `pause`/`unpause`, `cp`, `images`,
//! `scale` and `wait`, with the output formats docker compose documents
//! (podman 4.3 has no compose to compare with). Each of these commands was
//! missing ("unrecognized subcommand") before.

use super::{Project, compose_with_input, write_compose};

const YAML: &str = "services:\n  web:\n    image: busybox\n    stop_signal: SIGKILL\n    command: [sh, -c, 'echo hi > /tmp/greet; exec sleep 3600']\n  job:\n    image: busybox\n    volumes: [/data]\n    command: [sh, -c, 'sleep 3; exit 4']\n";

fn state(p: &Project, name: &str) -> String {
    p.k.ok(&["inspect", "--format", "{{.State.Status}}", name])
        .trim()
        .to_string()
}

/// The cells of a docker table (columns three spaces apart at least).
fn cells(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

#[test]
fn images_wait_pause_cp_scale_and_rm_act_on_the_service_containers() {
    let p = Project::new("profiles");
    write_compose(&p, YAML);
    p.ok(&["up", "-d"]);
    let web = |n: u32| format!("{}-web-{n}", p.name);
    let job1 = format!("{}-job-1", p.name);
    let ids = p.ids();

    // images: a row per container with docker compose's columns, sorted by
    // container; -q the unique full IDs; --format json one array.
    let busybox = p.k.ok(&["inspect", "--format", "{{.Id}}", "busybox"]);
    let busybox = busybox.trim();
    let hex = busybox.trim_start_matches("sha256:");
    let table = p.ok(&["images"]);
    let rows = cells(&table);
    assert_eq!(
        rows[0],
        [
            "CONTAINER",
            "REPOSITORY",
            "TAG",
            "PLATFORM",
            "IMAGE ID",
            "SIZE",
            "CREATED"
        ],
        "{table}"
    );
    // compose's tabwriter: cells at least 20 wide.
    assert!(
        table.contains("REPOSITORY          TAG                 PLATFORM"),
        "{table}"
    );
    assert_eq!(rows.len(), 3, "{table}");
    assert_eq!(rows[1][0], job1, "{table}");
    assert_eq!(
        rows[2][..5],
        [
            web(1).as_str(),
            "busybox",
            "latest",
            "linux/amd64",
            &hex[..12]
        ],
        "{table}"
    );
    assert_eq!(p.ok(&["images", "-q"]), format!("{hex}\n"));
    let json: serde_json::Value =
        serde_json::from_str(&p.ok(&["images", "--format", "json", "web"])).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(json[0]["ContainerName"], web(1).as_str());
    assert_eq!(json[0]["ID"], busybox);
    assert_eq!(json[0]["Tag"], "latest");
    assert!(json[0]["Size"].as_u64().unwrap() > 0, "{json}");

    // wait: blocks until the service's container stops, prints it, exits
    // with its status.
    let o = compose_with_input(&p, &["wait", "job"], "", 60);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("container \"{}\" exited with status code 4\n", ids[&job1])
    );
    assert_eq!(o.status.code(), Some(4));
    let err = p.fails(&["wait", "nope"]);
    assert!(err.contains("no such service: nope"), "{err}");

    // pause/unpause: the running containers of the named services.
    p.ok(&["pause", "web"]);
    assert_eq!(state(&p, &web(1)), "paused");
    p.ok(&["unpause"]);
    assert_eq!(state(&p, &web(1)), "running");

    // scale: more replicas of one service, the first one kept.
    p.ok(&["scale", "web=2"]);
    let now = p.ids();
    assert_eq!(now[&web(1)], ids[&web(1)]);
    assert!(now.contains_key(&web(2)), "{now:?}");

    // cp: from the first container (or --index), to every one (or --index).
    let d = p.dir.path();
    p.ok(&["cp", "web:/tmp/greet", d.join("greet").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(d.join("greet")).unwrap(), "hi\n");
    std::fs::write(d.join("up.txt"), "up\n").unwrap();
    p.ok(&["cp", d.join("up.txt").to_str().unwrap(), "web:/tmp/up.txt"]);
    for i in ["1", "2"] {
        assert_eq!(
            p.ok(&["exec", "-T", "--index", i, "web", "cat", "/tmp/up.txt"]),
            "up\n"
        );
    }
    std::fs::write(d.join("two.txt"), "two\n").unwrap();
    p.ok(&[
        "cp",
        "--index",
        "2",
        d.join("two.txt").to_str().unwrap(),
        "web:/tmp/",
    ]);
    p.ok(&[
        "cp",
        "--index",
        "2",
        "web:/tmp/two.txt",
        d.join("back").to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(d.join("back")).unwrap(), "two\n");
    let o = p.compose(&["exec", "-T", "web", "cat", "/tmp/two.txt"]);
    assert!(!o.status.success(), "only replica 2 got two.txt");

    // rm: asks (no answer on stdin: nothing removed), removes only stopped
    // containers, -v their anonymous volumes, -s stops first.
    let o = p.compose(&["rm"]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with(&format!("Going to remove {job1}")),
        "{o:?}"
    );
    assert!(p.ids().contains_key(&job1), "not confirmed: kept");
    assert_eq!(p.k.ok(&["volume", "ls", "-q"]).lines().count(), 1);
    assert_eq!(
        p.ok(&["rm", "-f", "-v"]),
        format!("Going to remove {job1}\n")
    );
    assert!(!p.ids().contains_key(&job1));
    assert_eq!(
        p.k.ok(&["volume", "ls", "-q"]),
        "",
        "anonymous volume removed"
    );
    let o = p.compose(&["rm", "-f", "web"]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "No stopped containers"
    );
    assert_eq!(p.ids().len(), 2, "running containers are kept");
    assert_eq!(
        p.ok(&["rm", "-s", "-f", "web"]),
        format!("Going to remove {}, {}\n", web(1), web(2))
    );
    assert!(p.ids().is_empty());

    // wait --down-project: the project goes once its containers stopped
    // (without the anonymous volume, which `down` keeps, as compose does).
    write_compose(&p, &YAML.replace("    volumes: [/data]\n", ""));
    p.ok(&["up", "-d"]);
    let o = compose_with_input(&p, &["wait", "--down-project", "job"], "", 60);
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    assert!(p.ids().is_empty(), "{:?}", p.ids());
}

/// `scale --no-deps` and `up --no-deps`: the named service only; its
/// stopped dependency stays stopped (it was always started before).
#[test]
fn no_deps_leaves_dependencies_alone() {
    let p = Project::new("profiles");
    write_compose(
        &p,
        "services:\n  b:\n    image: busybox\n    stop_signal: SIGKILL\n    command: [sleep, '3600']\n  a:\n    image: busybox\n    stop_signal: SIGKILL\n    command: [sleep, '3600']\n    depends_on: [b]\n",
    );
    p.ok(&["up", "-d", "--no-deps", "a"]);
    let names: Vec<String> = p.ids().into_keys().collect();
    assert_eq!(names, [format!("{}-a-1", p.name)]);
    p.ok(&["scale", "--no-deps", "a=2"]);
    assert_eq!(p.ids().len(), 2, "{:?}", p.ids());
    assert!(!p.ids().contains_key(&format!("{}-b-1", p.name)));
    p.ok(&["scale", "a=1"]);
    let ids = p.ids();
    assert!(ids.contains_key(&format!("{}-b-1", p.name)), "{ids:?}");
    assert!(!ids.contains_key(&format!("{}-a-2", p.name)), "{ids:?}");
}
