//! Chart repositories shared with the real Helm 4.1.4: `keel chart repo
//! index` writes what `helm repo index` writes (times aside), a plain HTTP
//! server on 127.0.0.1 serves it, `keel chart repo add|list|update|remove`
//! and `helm repo …` read and write the same repositories.yaml and cache,
//! and `keel chart search repo` prints what `helm search repo` prints.

mod helm_peer;

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn env(cmd: &mut Command, home: &Path) {
    cmd.env("HOME", home)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("HELM_REPOSITORY_CONFIG")
        .env_remove("HELM_REPOSITORY_CACHE")
        .stdin(Stdio::null());
}

fn keel(home: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keel"));
    c.arg("chart").args(args);
    env(&mut c, home);
    c.output().expect("run keel")
}

fn helm(home: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(helm_peer::helm());
    c.args(args);
    env(&mut c, home);
    c.output().expect("run helm")
}

fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn chart(dir: &Path, name: &str, version: &str, app: &str, desc: &str) {
    let d = dir.join(format!("{name}-{version}"));
    std::fs::create_dir_all(d.join("templates")).unwrap();
    std::fs::write(
        d.join("Chart.yaml"),
        format!(
            "apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: \"{app}\"\ndescription: {desc}\nkeywords: [web, {name}]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    )
    .unwrap();
}

/// An index with `created` and `generated` (the times of each run) masked.
fn masked(index: &str) -> String {
    index
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("created: ") || t.starts_with("generated: ") {
                format!("{}: <time>", l.split(':').next().unwrap())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn repositories_are_shared_with_helm() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo, home) = (
        tmp.path().join("src"),
        tmp.path().join("repo"),
        tmp.path().join("home"),
    );
    for d in [&src, &repo, &home] {
        std::fs::create_dir_all(d).unwrap();
    }
    chart(
        &src,
        "alpine",
        "0.1.0",
        "1.2.3",
        "Deploy a basic Alpine Linux pod",
    );
    chart(
        &src,
        "alpine",
        "0.2.0",
        "2.3.4",
        "Deploy a basic Alpine Linux pod",
    );
    chart(
        &src,
        "alpine",
        "0.3.0-rc.1",
        "3.0.0",
        "Deploy a basic Alpine Linux pod",
    );
    chart(&src, "mariadb", "0.3.0", "", "Chart for MariaDB");
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        ok(
            keel(
                &home,
                &["package", p.to_str().unwrap(), "-d", repo.to_str().unwrap()],
            ),
            "keel chart package",
        );
    }
    let (_srv, url) = helm_peer::serve(&repo);

    // the index: what helm writes for the same archives
    let helm_repo = tmp.path().join("helm-repo");
    std::fs::create_dir_all(&helm_repo).unwrap();
    for e in std::fs::read_dir(&repo).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, helm_repo.join(p.file_name().unwrap())).unwrap();
    }
    ok(
        keel(
            &home,
            &["repo", "index", repo.to_str().unwrap(), "--url", &url],
        ),
        "keel chart repo index",
    );
    ok(
        helm(
            &home,
            &["repo", "index", helm_repo.to_str().unwrap(), "--url", &url],
        ),
        "helm repo index",
    );
    let k = std::fs::read_to_string(repo.join("index.yaml")).unwrap();
    let h = std::fs::read_to_string(helm_repo.join("index.yaml")).unwrap();
    assert_eq!(masked(&k), masked(&h), "index.yaml differs from helm's");

    // nothing to search yet: Helm's error
    let empty = keel(&home, &["search", "repo", "alpine"]);
    assert!(!empty.status.success());
    assert!(
        String::from_utf8_lossy(&empty.stderr).starts_with("error: no repositories configured\n"),
        "{empty:?}"
    );

    // keel adds, helm sees it; helm adds, keel sees both
    assert_eq!(
        ok(
            keel(&home, &["repo", "add", "testing", &url]),
            "keel repo add"
        ),
        "\"testing\" has been added to your repositories\n"
    );
    assert_eq!(
        ok(
            keel(&home, &["repo", "add", "testing", &url]),
            "keel repo add again"
        ),
        "\"testing\" already exists with the same configuration, skipping\n"
    );
    let again = keel(&home, &["repo", "add", "testing", &format!("{url}/x")]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("repository name (testing) already exists, please specify a different name"),
        "{again:?}"
    );
    ok(
        helm(&home, &["repo", "add", "other", &url]),
        "helm repo add",
    );
    for args in [
        &["repo", "list"][..],
        &["repo", "list", "--no-headers"],
        &["repo", "list", "-o", "json"],
        &["repo", "list", "-o", "yaml"],
    ] {
        assert_eq!(
            ok(keel(&home, args), "keel"),
            ok(helm(&home, args), "helm"),
            "{args:?}"
        );
    }

    // search: the same table, versions and constraints as helm
    for args in [
        &["search", "repo", "alpine"][..],
        &["search", "repo", "alpine", "--devel"],
        &["search", "repo", "alpine", "--versions"],
        &["search", "repo", "alpine", "--version", ">= 0.1, < 0.2"],
        &[
            "search",
            "repo",
            "alpine",
            "--versions",
            "--version",
            ">= 0.1",
        ],
        &["search", "repo", "alp[a-z]+", "--regexp"],
        &["search", "repo", "maria", "-o", "json"],
        &["search", "repo", "alpine", "-o", "yaml"],
        &["search", "repo", "web"],
        &["search", "repo"],
        &["search", "repo", "syzygy"],
    ] {
        assert_eq!(
            ok(keel(&home, args), "keel"),
            ok(helm(&home, args), "helm"),
            "{args:?}"
        );
    }
    let none = keel(&home, &["search", "repo", "syzygy", "--fail-on-no-result"]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("error: no results found"));

    // update reads the server again; remove drops the entry and its cache for helm too
    let up = ok(keel(&home, &["repo", "update"]), "keel repo update");
    assert!(up.contains("...Successfully got an update from the \"testing\" chart repository"));
    assert!(up.ends_with("Update Complete. ⎈Happy Helming!⎈\n"), "{up}");
    assert_eq!(
        ok(
            keel(&home, &["repo", "remove", "other"]),
            "keel repo remove"
        ),
        "\"other\" has been removed from your repositories\n"
    );
    assert!(!home.join("cache/repository/other-index.yaml").exists());
    assert_eq!(
        ok(
            helm(&home, &["repo", "list", "-o", "json"]),
            "helm repo list"
        ),
        format!("[{{\"name\":\"testing\",\"url\":\"{url}\"}}]\n")
    );
    let gone = keel(&home, &["repo", "remove", "other"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no repo named \"other\" found"));
}
