//! `keel compose config` through the real binary: output of a corpus project,
//! the listing flags, and one-line errors with a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../keel-compose/tests/fixtures/config")
        .join(name)
}

fn keel(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .current_dir(dir)
        .env_clear()
        .env("HOME", "/home/test")
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn config_prints_the_normalized_model() {
    let dir = fixture("override-reset");
    let (code, out, err) = keel(&dir, &["compose", "config"]);
    assert_eq!(code, 0, "{err}");
    let expected = std::fs::read_to_string(dir.join("expected.yaml"))
        .unwrap()
        .replace("$DIR", &dir.canonicalize().unwrap().display().to_string());
    // The fixture path may differ from the canonical one only through symlinks.
    assert_eq!(
        out.replace(
            &dir.display().to_string(),
            &dir.canonicalize().unwrap().display().to_string()
        ),
        expected
    );

    let (code, out, _) = keel(&dir, &["compose", "config", "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["services"]["web"]["ports"][2]["published"], "9090");

    let (_, out, _) = keel(&dir, &["compose", "config", "--services"]);
    assert_eq!(out, "db\nweb\n");
    let (_, out, _) = keel(&dir, &["compose", "config", "--volumes"]);
    assert_eq!(out, "cache\n");
    let (_, out, _) = keel(&dir, &["compose", "config", "--images"]);
    assert_eq!(out, "postgres:16\nnginx:1.27\n");
    let (code, out, _) = keel(&dir, &["compose", "config", "-q"]);
    assert_eq!((code, out.as_str()), (0, ""));
}

#[test]
fn config_escapes_dollars_like_docker_compose() {
    let dir = fixture("interpolation");
    let (code, out, err) = Command::new(env!("CARGO_BIN_EXE_keel"))
        .current_dir(&dir)
        .env_clear()
        .envs([
            ("SET", "value"),
            ("EMPTY", ""),
            ("TAG", "1.2"),
            ("REPLICAS", "2"),
            ("RO", "true"),
        ])
        .args(["compose", "config"])
        .output()
        .map(|o| {
            (
                o.status.code().unwrap(),
                String::from_utf8(o.stdout).unwrap(),
                String::from_utf8(o.stderr).unwrap(),
            )
        })
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        std::fs::read_to_string(dir.join("expected.yaml")).unwrap()
    );
}

#[test]
fn config_profiles_and_named_services() {
    let dir = fixture("profiles");
    let (_, out, _) = keel(&dir, &["compose", "config", "--profiles"]);
    assert_eq!(out, "admin\ndb\ndebug\ndev\nmonitoring\n");
    let (_, out, _) = keel(
        &dir,
        &["compose", "--profile", "debug", "config", "--services"],
    );
    assert_eq!(out, "api\ndebug\nweb\n");
    let (_, out, _) = keel(&dir, &["compose", "config", "--services", "admin"]);
    assert_eq!(out, "admin\ndb\n");
    let (_, out, _) = keel(&dir, &["compose", "config", "--services", "web"]);
    assert_eq!(out, "api\nweb\n");
}

#[test]
fn bad_input_is_one_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: nginx\n    ports:\n      - \"8080:80\"\n      - \"80:80:80:80\"\n",
    )
    .unwrap();
    let (code, out, err) = keel(dir.path(), &["compose", "config"]);
    assert_ne!(code, 0);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "error: compose.yaml:6:9: services.web.ports[1]: invalid port \"80:80:80:80\"\n"
    );
    let (code, _, err) = keel(dir.path(), &["compose", "-f", "other.yaml", "config"]);
    assert_ne!(code, 0);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: cannot read other.yaml"), "{err}");
}

/// Writes `text` into the FIFO at `path` once a reader has opened it, or
/// gives up after 20 s (so that a keel that never reads cannot hang the test).
fn feed_fifo(path: PathBuf, text: &'static str) -> std::thread::JoinHandle<bool> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            // Non-blocking: fails (ENXIO) until the reader is there.
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(&path)
            {
                Ok(mut f) => return f.write_all(text.as_bytes()).is_ok(),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        false
    })
}

/// Regression: `keel compose --env-file /dev/null` failed with "cannot read
/// /dev/null: file not found" (the loader wanted a regular file); docker
/// compose reads any readable file: character devices and FIFOs such as
/// `<(cmd)`. A file that exists is never "not found".
#[test]
fn env_file_may_be_any_readable_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: busybox:${TAG:-none}\n    env_file: ${WEB_ENV:-/dev/null}\n",
    )
    .unwrap();
    let images = |env_file: &str| {
        keel(
            dir.path(),
            &["compose", "--env-file", env_file, "config", "--images"],
        )
    };

    let (code, out, err) = images("/dev/null");
    assert_eq!((code, out.as_str()), (0, "busybox:none\n"), "{err}");

    let fifo = dir.path().join("env.fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let writer = feed_fifo(fifo.clone(), "TAG=fromfifo\n");
    let (code, out, err) = images(fifo.to_str().unwrap());
    assert!(writer.join().unwrap(), "keel never opened the FIFO");
    assert_eq!((code, out.as_str()), (0, "busybox:fromfifo\n"), "{err}");

    // A directory says what it is, not that it is missing.
    let (code, _, err) = images(dir.path().to_str().unwrap());
    assert_ne!(code, 0);
    assert!(err.contains("Is a directory"), "{err}");
    assert!(!err.contains("not found"), "{err}");
    // A file that is really not there still says so.
    let (code, _, err) = images("missing.env");
    assert_ne!(code, 0);
    assert!(
        err.contains("missing.env") && err.contains("not found"),
        "{err}"
    );
}

/// `config --no-consistency` (docker compose's flag) prints a model whose
/// references do not resolve; without it that is an error.
#[test]
fn config_no_consistency_skips_reference_checks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: nginx\n    depends_on: [db]\n",
    )
    .unwrap();
    let (code, _, err) = keel(dir.path(), &["compose", "config"]);
    assert_ne!(code, 0);
    assert!(err.contains("undefined service \"db\""), "{err}");
    let (code, out, err) = keel(dir.path(), &["compose", "config", "--no-consistency"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("      db:\n        condition: service_started"),
        "{out}"
    );
}

/// Regression: compose files are interpolated with `COMPOSE_PROJECT_NAME` set
/// to the project's name, as compose-go does (it was unset: `:1.0`), and a
/// compose file given as a FIFO is read once although the name is needed
/// before the file is loaded.
#[test]
fn compose_project_name_is_interpolated() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "name: shop\nservices:\n  web:\n    image: ${COMPOSE_PROJECT_NAME}:1.0\n";
    std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
    let images = |args: &[&str]| {
        let mut a = vec!["compose"];
        a.extend(args);
        a.extend(["config", "--images"]);
        keel(dir.path(), &a)
    };
    assert_eq!(images(&[]).1, "shop:1.0\n");
    assert_eq!(images(&["-p", "other"]).1, "other:1.0\n");
    let fifo = dir.path().join("compose.fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let writer = feed_fifo(
        fifo.clone(),
        "name: shop\nservices:\n  web:\n    image: ${COMPOSE_PROJECT_NAME}:1.0\n",
    );
    let (code, out, err) = images(&["-f", fifo.to_str().unwrap()]);
    assert!(writer.join().unwrap(), "keel never opened the FIFO");
    assert_eq!((code, out.as_str()), (0, "shop:1.0\n"), "{err}");
}
