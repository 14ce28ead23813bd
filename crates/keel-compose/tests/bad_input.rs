//! Bad compose files: each error is one line naming file, line, column and the
//! path of the offending value.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use keel_compose::{Options, load};
use proptest::prelude::*;

fn err(files: &[(&str, &str)], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let opts = Options {
        cwd: dir.path().to_path_buf(),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..Options::default()
    };
    let e = load(&opts).expect_err("load must fail").to_string();
    assert!(!e.contains('\n'), "not one line: {e}");
    e
}

fn one(body: &str) -> String {
    err(&[("compose.yaml", body)], &[])
}

#[test]
fn depends_on_cycle() {
    assert_eq!(
        one(
            "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on:\n      c:\n        condition: service_started\n  c:\n    image: x\n    depends_on: [a]\n"
        ),
        "compose.yaml:12:18: services.c.depends_on.a: dependency cycle detected: a -> b -> c -> a"
    );
}

#[test]
fn unknown_services() {
    assert_eq!(
        one("services:\n  web:\n    image: x\n    depends_on:\n      - db\n"),
        "compose.yaml:5:9: services.web.depends_on.db: depends on undefined service \"db\""
    );
    assert_eq!(
        one("services:\n  web:\n    image: x\n    links: [\"db:database\"]\n"),
        "compose.yaml:4:13: services.web.links[0]: undefined service \"db\""
    );
    assert_eq!(
        one("services:\n  web:\n    image: x\n    network_mode: service:vpn\n"),
        "compose.yaml:4:19: services.web.network_mode: undefined service \"vpn\""
    );
    assert_eq!(
        one("services:\n  web:\n    extends: base\n"),
        "compose.yaml:3:14: services.web.extends: cannot extend service \"base\": not defined in compose.yaml"
    );
    assert_eq!(
        one("services:\n  a:\n    extends: b\n  b:\n    extends: a\n"),
        "compose.yaml:5:14: services.b.extends: extends cycle: a -> b -> a"
    );
}

#[test]
fn undefined_resources() {
    assert_eq!(
        one("services:\n  web:\n    image: x\n    networks: [front]\n"),
        "compose.yaml:4:16: services.web.networks.front: undefined network \"front\""
    );
    assert_eq!(
        one("services:\n  web:\n    image: x\n    volumes:\n      - data:/data\n"),
        "compose.yaml:5:9: services.web.volumes[0]: undefined volume \"data\""
    );
    assert_eq!(
        one("services:\n  web:\n    image: x\n    secrets: [pw]\n"),
        "compose.yaml:4:15: services.web.secrets[0]: undefined secret \"pw\""
    );
    assert_eq!(
        one("services:\n  web:\n    command: x\n"),
        "compose.yaml:2:3: services.web: service has neither an image nor a build context specified"
    );
}

#[test]
fn required_variable() {
    assert_eq!(
        one("services:\n  web:\n    image: \"app:${TAG:?set TAG first}\"\n"),
        "compose.yaml:3:12: services.web.image: required variable TAG is missing a value: set TAG first"
    );
    assert_eq!(
        one("services:\n  web:\n    image: ${IMG?}\n"),
        "compose.yaml:3:12: services.web.image: required variable IMG is missing a value"
    );
    assert_eq!(
        one("services:\n  web:\n    image: ${IMG\n"),
        "compose.yaml:3:12: services.web.image: invalid interpolation format for \"${IMG\""
    );
}

#[test]
fn invalid_ports_and_volumes() {
    assert_eq!(
        one(
            "services:\n  web:\n    image: x\n    ports:\n      - \"8080:80\"\n      - \"80:80:80:80\"\n"
        ),
        "compose.yaml:6:9: services.web.ports[1]: invalid port \"80:80:80:80\""
    );
    assert_eq!(
        one("services:\n  web:\n    image: x\n    ports: [\"99999:80\"]\n"),
        "compose.yaml:4:13: services.web.ports[0]: invalid port \"99999:80\""
    );
    assert_eq!(
        one("services:\n  web:\n    image: x\n    volumes: [\"a:b:c:d\"]\n"),
        "compose.yaml:4:15: services.web.volumes[0]: invalid volume specification \"a:b:c:d\""
    );
}

#[test]
fn schema_violations() {
    // Wrong type.
    assert_eq!(
        one("services:\n  web:\n    image: x\n    ports: 80\n"),
        "compose.yaml:4:12: services.web.ports: must be a list, not integer"
    );
    assert_eq!(
        one("services:\n  web:\n    image: [x]\n"),
        "compose.yaml:3:12: services.web.image: must be a string, not array"
    );
    assert_eq!(
        one("services:\n  web:\n    image: x\n    deploy:\n      replicas: three\n"),
        "compose.yaml:5:17: services.web.deploy.replicas: must be an integer, not \"three\""
    );
    // Unknown key (x- keys are fine).
    assert_eq!(
        one("services:\n  web:\n    image: x\n    x-ok: 1\n    imgae: y\n"),
        "compose.yaml:5:5: services.web.imgae: additional property \"imgae\" is not allowed"
    );
    assert_eq!(
        one("servics:\n  web: {}\n"),
        "compose.yaml:1:1: servics: additional property \"servics\" is not allowed"
    );
    // Bad enum.
    assert_eq!(
        one(
            "services:\n  web:\n    image: x\n    depends_on:\n      db:\n        condition: started\n  db:\n    image: y\n"
        ),
        "compose.yaml:6:20: services.web.depends_on.db.condition: must be one of service_started, service_healthy, service_completed_successfully, not \"started\""
    );
    // Required property.
    assert_eq!(
        one(
            "services:\n  web:\n    image: x\n    volumes:\n      - source: a\n        target: /a\n"
        ),
        "compose.yaml:5:9: services.web.volumes[0]: required property \"type\" is missing"
    );
    assert_eq!(
        one("services:\n  web:\n    image: x\n    healthcheck:\n      interval: soon\n"),
        "compose.yaml:5:17: services.web.healthcheck.interval: invalid duration \"soon\""
    );
}

#[test]
fn yaml_syntax_and_files() {
    assert_eq!(
        one("services:\n  web:\n    image: x\n    image: y\n"),
        "compose.yaml:4:5: mapping key \"image\" already defined"
    );
    let e = one("services:\n  web: [\n");
    assert!(e.starts_with("compose.yaml:"), "{e}");
    // The override file is named in errors found in it.
    assert_eq!(
        err(
            &[
                ("compose.yaml", "services:\n  web:\n    image: x\n"),
                (
                    "compose.override.yaml",
                    "services:\n  web:\n    ports: [\"x:y\"]\n"
                ),
            ],
            &[]
        ),
        "compose.override.yaml:3:13: services.web.ports[0]: invalid port \"x:y\""
    );
    assert_eq!(
        err(
            &[
                ("compose.yaml", "services: {}\n"),
                (".env", "A=1\nB=\"open\n")
            ],
            &[]
        ),
        ".env:2: unterminated quoted value"
    );
    let dir = tempfile::tempdir().unwrap();
    let e = load(&Options {
        cwd: dir.path().to_path_buf(),
        ..Options::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("no configuration file provided"), "{e}");
}

#[test]
fn compose_file_naming_nothing() {
    let e = err(
        &[("compose.yaml", "services: {}\n")],
        &[("COMPOSE_FILE", ":")],
    );
    assert!(e.starts_with("no configuration file provided"), "{e}");
}

#[test]
fn project_names() {
    assert_eq!(
        err(&[("compose.yaml", "name: Bad Name\nservices: {}\n")], &[]),
        "invalid project name \"Bad Name\": must contain only lowercase letters, decimal digits, dashes, and underscores, and must begin with a lowercase letter or decimal digit"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// The loader never panics, whatever the text.
    #[test]
    fn never_panics(text in "(services:\n  [a-z]{1,3}:\n    )?([a-z_${}:\\-\\[\\]\"' \n#&*<!|>0-9.,]{0,120})") {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), &text).unwrap();
        let _ = load(&Options { cwd: dir.path().to_path_buf(), ..Options::default() });
    }

    /// Structured-looking YAML with random keys and values never panics either.
    #[test]
    fn never_panics_on_services(
        keys in proptest::collection::vec("(image|ports|volumes|depends_on|environment|build|extends|networks|healthcheck|command|profiles|x-a|deploy|secrets)", 1..6),
        vals in proptest::collection::vec("(x|\\[a, b\\]|\\{a: 1\\}|\"1:2:3\"|null|8080|\\$\\{A:-b\\}|!reset \\[\\]|\\[\\{target: 1\\}\\])", 1..6),
    ) {
        let mut text = String::from("services:\n  s:\n");
        for (k, v) in keys.iter().zip(vals.iter()) {
            let _ = writeln!(text, "    {k}: {v}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), &text).unwrap();
        let _ = load(&Options { cwd: dir.path().to_path_buf(), ..Options::default() });
    }
}

/// Issue 15: compose said nothing about an unset `$V` or the obsolete
/// `version:` key; docker compose warns for both (and loads the file).
#[test]
fn unset_variables_and_version_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "version: '3.8'\nservices:\n  a:\n    image: \"busybox:${TAG}\"\n    command: [\"${NOPE:-fine}\", \"$SET\"]\n",
    )
    .unwrap();
    let p = load(&Options {
        cwd: dir.path().to_path_buf(),
        env: BTreeMap::from([("SET".to_string(), "1".to_string())]),
        ..Options::default()
    })
    .unwrap();
    assert_eq!(
        p.warnings,
        [
            "The \"TAG\" variable is not set. Defaulting to a blank string.".to_string(),
            format!(
                "{}: the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion",
                dir.path().join("compose.yaml").display()
            ),
        ]
    );
}
