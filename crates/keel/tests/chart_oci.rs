//! Charts in OCI registries and HTTP repositories beside the real Helm
//! 4.1.4: `keel chart push` lays a chart out as `helm push` does (the same
//! archive gives the same manifest digest), each pulls what the other
//! pushed, `registry login` shares Helm's credentials file against an
//! htpasswd registry, and `install`/`upgrade`/`pull` take `oci://…`,
//! `REPO/NAME` and `--repo URL` with version constraints, on one `keel server`.

mod common;
mod helm_peer;
mod server_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::Registry;
use server_common::KeelServer;

fn env(c: &mut Command, home: &Path) {
    c.env("HOME", home)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("HELM_REGISTRY_CONFIG")
        .env_remove("HELM_REPOSITORY_CONFIG")
        .env_remove("HELM_REPOSITORY_CACHE")
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE")
        .env("TZ", "UTC");
}

fn run(bin: &Path, home: &Path, dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(bin);
    c.args(args).current_dir(dir);
    env(&mut c, home);
    if let Some(s) = stdin {
        use std::io::Write as _;
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn");
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        return child.wait_with_output().unwrap();
    }
    c.stdin(Stdio::null()).output().expect("run")
}

fn keel(home: &Path, dir: &Path, args: &[&str]) -> Output {
    let mut a = vec!["chart"];
    a.extend_from_slice(args);
    run(Path::new(env!("CARGO_BIN_EXE_keel")), home, dir, &a, None)
}

fn helm(home: &Path, dir: &Path, args: &[&str]) -> Output {
    run(&helm_peer::helm(), home, dir, args, None)
}

/// `helm push ARCHIVE REMOTE --plain-http` (helm takes plain HTTP only when told).
fn helm_push(home: &Path, dir: &Path, archive: &Path, remote: &str) -> Output {
    helm(
        home,
        dir,
        &["push", archive.to_str().unwrap(), remote, "--plain-http"],
    )
}

/// The same archive pushed by keel to `HOST/keel` and by helm to `HOST/helm`.
fn push_both(home: &Path, dir: &Path, archive: &Path, host: &str) -> (Output, Output) {
    let k = ok(
        keel(
            home,
            dir,
            &[
                "push",
                archive.to_str().unwrap(),
                &format!("oci://{host}/keel"),
            ],
        ),
        "keel push",
    );
    let h = ok(
        helm_push(home, dir, archive, &format!("oci://{host}/helm")),
        "helm push",
    );
    (k, h)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output, what: &str) -> Output {
    assert!(o.status.success(), "{what} failed: {}", text(&o));
    o
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A chart whose metadata exercises every annotation Helm derives (and Go's
/// JSON escaping of `<`, `>` and `&`), packaged by the real helm.
fn package(dir: &Path, home: &Path, version: &str) -> PathBuf {
    package_named(dir, home, "web", version)
}

fn package_named(dir: &Path, home: &Path, name: &str, version: &str) -> PathBuf {
    let src = dir.join(format!("src-{version}/{name}"));
    std::fs::create_dir_all(src.join("templates")).unwrap();
    std::fs::write(
        src.join("Chart.yaml"),
        format!(
            "apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: \"1.2\"\n\
             description: Web <front> & back\nhome: https://example.test/web\n\
             sources: [https://example.test/src, https://example.test/other]\n\
             maintainers:\n- name: Ann\n  email: ann@example.test\n- name: Bo\n\
             annotations:\n  team: web\n  org.opencontainers.image.title: not-this\n"
        ),
    )
    .unwrap();
    std::fs::write(src.join("values.yaml"), "greeting: hello\n").unwrap();
    std::fs::write(
        src.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  greeting: {{ .Values.greeting }}\n  version: {{ .Chart.Version }}\n",
    )
    .unwrap();
    ok(
        helm(home, dir, &["package", src.to_str().unwrap()]),
        "helm package",
    );
    dir.join(format!("{name}-{version}.tgz"))
}

/// `Pushed: REF` / `Digest: D` lines, the digest returned.
fn digest_of(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap_or_else(|| panic!("no digest in {out:?}"))
        .to_string()
}

fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if p.is_dir() {
                out.push((format!("{rel}/"), Vec::new()));
                stack.push(p);
            } else {
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn keel_and_helm_push_the_same_artifact_and_pull_each_others() {
    let reg = Registry::start();
    let host = reg.host();
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (h, w) = (home.path(), work.path());
    let v1 = package(w, h, "0.1.0");
    let v2 = package(w, h, "0.2.0+build.7");
    let (kpush, hp) = push_both(h, w, &v1, &host);
    // the same lines, and the same manifest (so the same bytes) from the same archive
    assert_eq!(
        err(&kpush).replace("/keel/", "/helm/"),
        err(&hp),
        "keel push prints what helm push prints"
    );
    assert_eq!(digest_of(&err(&kpush)), digest_of(&err(&hp)));
    assert!(err(&kpush).starts_with(&format!("Pushed: {host}/keel/web:0.1.0\n")));

    // a version with build metadata goes to an `_` tag, as helm puts it
    let (k2, h2) = push_both(h, w, &v2, &host);
    assert_eq!(err(&k2).replace("/keel/", "/helm/"), err(&h2));
    assert!(err(&k2).contains("web:0.2.0_build.7"), "{}", err(&k2));

    // helm pulls what keel pushed: the archive comes back byte for byte
    let hd = w.join("helm-pulled");
    std::fs::create_dir_all(&hd).unwrap();
    ok(
        helm(
            h,
            &hd,
            &[
                "pull",
                &format!("oci://{host}/keel/web"),
                "--version",
                "0.1.0",
                "--plain-http",
            ],
        ),
        "helm pull of keel's push",
    );
    assert_eq!(
        std::fs::read(hd.join("web-0.1.0.tgz")).unwrap(),
        std::fs::read(&v1).unwrap()
    );

    // keel pulls what helm pushed: the newest tag without --version, a
    // constraint with one, and the same lines as helm's pull
    let kd = w.join("keel-pulled");
    std::fs::create_dir_all(&kd).unwrap();
    let kp = ok(
        keel(h, &kd, &["pull", &format!("oci://{host}/helm/web")]),
        "keel pull newest",
    );
    let hp = ok(
        helm(
            h,
            &hd,
            &["pull", &format!("oci://{host}/helm/web"), "--plain-http"],
        ),
        "helm pull newest",
    );
    assert_eq!(err(&kp), err(&hp));
    assert_eq!(
        std::fs::read(kd.join("web-0.2.0+build.7.tgz")).unwrap(),
        std::fs::read(&v2).unwrap()
    );
    ok(
        keel(
            h,
            &kd,
            &[
                "pull",
                &format!("oci://{host}/helm/web"),
                "--version",
                "~0.1",
            ],
        ),
        "keel pull ~0.1",
    );
    assert_eq!(
        std::fs::read(kd.join("web-0.1.0.tgz")).unwrap(),
        std::fs::read(&v1).unwrap()
    );

    // --untar leaves the same tree as helm's (its directory named after the reference too)
    let (ku, hu) = (w.join("keel-untar"), w.join("helm-untar"));
    for d in [&ku, &hu] {
        std::fs::create_dir_all(d).unwrap();
    }
    let tagged = format!("oci://{host}/keel/web:0.1.0");
    ok(
        keel(h, &ku, &["pull", &tagged, "--untar"]),
        "keel pull --untar",
    );
    ok(
        helm(h, &hu, &["pull", &tagged, "--untar", "--plain-http"]),
        "helm pull --untar",
    );
    assert_eq!(tree(&ku), tree(&hu));
    assert!(ku.join("web/templates/cm.yaml").is_file());
    // again: refused as helm refuses, nothing changed
    let again = keel(h, &ku, &["pull", &tagged, "--untar"]);
    assert!(!again.status.success());
    assert!(
        err(&again).contains(
            "failed to untar: a file or directory with the name web:0.1.0 already exists"
        ),
        "{}",
        err(&again)
    );

    // bad input: one line each, non-zero
    for (args, want) in [
        (
            vec!["pull".to_string(), format!("oci://{host}/helm/nope")],
            "nope",
        ),
        (
            vec![
                "pull".to_string(),
                format!("oci://{host}/helm/web:0.1.0"),
                "--version".into(),
                "0.2.0".into(),
            ],
            "chart reference and version mismatch: 0.2.0 is not 0.1.0",
        ),
        (
            vec![
                "push".to_string(),
                w.join("src-0.1.0/web").display().to_string(),
                format!("oci://{host}/keel"),
            ],
            "cannot push directory, must provide chart archive (.tgz)",
        ),
        (
            vec![
                "push".to_string(),
                v1.display().to_string(),
                format!("{host}/keel"),
            ],
            "scheme prefix missing from remote (e.g. \"oci://\")",
        ),
    ] {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = keel(h, w, &argv);
        assert!(!out.status.success(), "{argv:?} succeeded");
        assert!(err(&out).contains(want), "{argv:?}: {}", err(&out));
        assert!(!err(&out).contains("panicked"), "{}", err(&out));
    }
}

#[test]
fn registry_login_is_shared_with_helm_against_an_htpasswd_registry() {
    let reg = Registry::start_with_auth(Some(("alice", "s3cret")));
    let host = reg.host();
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (h, w) = (home.path(), work.path());
    let v1 = package(w, h, "0.1.0");
    let v1s = v1.to_str().unwrap();
    let remote = format!("oci://{host}/charts");

    let denied = keel(h, w, &["push", v1s, &remote]);
    assert!(!denied.status.success(), "push without login succeeded");
    let bad = keel(
        h,
        w,
        &["registry", "login", &host, "-u", "alice", "-p", "wrong"],
    );
    assert!(
        !bad.status.success(),
        "login with a wrong password succeeded"
    );
    assert!(
        err(&bad).contains(&format!("authenticating to \"{host}\"")),
        "{}",
        err(&bad)
    );
    assert!(!h.join("config/registry/config.json").exists());

    let good = ok(
        run(
            Path::new(env!("CARGO_BIN_EXE_keel")),
            h,
            w,
            &[
                "chart",
                "registry",
                "login",
                &host,
                "-u",
                "alice",
                "--password-stdin",
            ],
            Some("s3cret\n"),
        ),
        "keel registry login",
    );
    assert_eq!(String::from_utf8_lossy(&good.stdout), "Login Succeeded\n");
    // helm's own file, in helm's format: helm pushes with keel's login
    let cfg = std::fs::read_to_string(h.join("config/registry/config.json")).unwrap();
    assert_eq!(
        cfg,
        format!(
            "{{\n\t\"auths\": {{\n\t\t\"{host}\": {{\n\t\t\t\"auth\": \"YWxpY2U6czNjcmV0\"\n\t\t}}\n\t}}\n}}"
        )
    );
    ok(helm_push(h, w, &v1, &remote), "helm push with keel's login");
    ok(keel(h, w, &["push", v1s, &remote]), "keel push after login");
    let pulled = w.join("pulled");
    std::fs::create_dir_all(&pulled).unwrap();
    ok(
        keel(
            h,
            &pulled,
            &["pull", &format!("{remote}/web"), "--version", "0.1.0"],
        ),
        "keel pull after login",
    );
    assert!(pulled.join("web-0.1.0.tgz").is_file());

    ok(keel(h, w, &["registry", "logout", &host]), "keel logout");
    let after = helm_push(h, w, &v1, &remote);
    assert!(
        !after.status.success(),
        "helm pushed after keel's logout: {}",
        text(&after)
    );
}

#[test]
fn install_and_upgrade_from_oci_and_repositories_beside_helm() {
    let server = KeelServer::start(None);
    let reg = Registry::start();
    let host = reg.host();
    let work = tempfile::tempdir().unwrap();
    let (h, w) = (server.home.path(), work.path());
    let kc = server.kubeconfig.to_str().unwrap().to_string();
    let v1 = package(w, h, "0.1.0");
    let v2 = package(w, h, "0.2.0");
    for v in [&v1, &v2] {
        ok(
            helm_push(h, w, v, &format!("oci://{host}/charts")),
            "helm push",
        );
    }
    let with_kc = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
        v.extend(["--kubeconfig".to_string(), kc.clone()]);
        v
    };
    let kk = |args: &[&str]| {
        let owned = with_kc(args);
        let argv: Vec<&str> = owned.iter().map(String::as_str).collect();
        keel(h, w, &argv)
    };
    let hl = |args: &[&str]| {
        let owned = with_kc(args);
        let argv: Vec<&str> = owned.iter().map(String::as_str).collect();
        helm(h, w, &argv)
    };
    let oci = format!("oci://{host}/charts/web");

    // keel installs from the registry with a constraint; helm sees it
    ok(
        kk(&["install", "web", &oci, "--version", "~0.1", "-n", "default"]),
        "keel install oci",
    );
    let list = String::from_utf8(ok(hl(&["list", "-n", "default"]), "helm list").stdout).unwrap();
    assert!(list.contains("web-0.1.0"), "{list}");
    // helm upgrades from the registry; keel upgrades to the newest from it again
    ok(
        hl(&[
            "upgrade",
            "web",
            &oci,
            "--version",
            "0.2.0",
            "--plain-http",
            "-n",
            "default",
        ]),
        "helm upgrade oci",
    );
    ok(
        kk(&[
            "upgrade",
            "web",
            &oci,
            "--version",
            "0.1.0",
            "-n",
            "default",
        ]),
        "keel upgrade oci",
    );
    let hist =
        String::from_utf8(ok(hl(&["history", "web", "-n", "default"]), "history").stdout).unwrap();
    let charts: Vec<&str> = hist
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().find(|c| c.starts_with("web-")))
        .collect();
    assert_eq!(charts, ["web-0.1.0", "web-0.2.0", "web-0.1.0"], "{hist}");

    // an HTTP repository: added once, charts by REPO/NAME and by --repo URL
    let repo = w.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for v in [&v1, &v2] {
        std::fs::copy(v, repo.join(v.file_name().unwrap())).unwrap();
    }
    let (_srv, url) = helm_peer::serve(&repo);
    ok(
        helm(
            h,
            w,
            &["repo", "index", repo.to_str().unwrap(), "--url", &url],
        ),
        "helm repo index",
    );
    ok(keel(h, w, &["repo", "add", "shop", &url]), "keel repo add");
    ok(
        kk(&[
            "install",
            "old",
            "shop/web",
            "--version",
            "^0.1",
            "-n",
            "default",
        ]),
        "keel install shop/web",
    );
    ok(
        kk(&["install", "new", "web", "--repo", &url, "-n", "default"]),
        "keel install --repo",
    );
    let list = String::from_utf8(ok(hl(&["list", "-n", "default"]), "helm list").stdout).unwrap();
    let chart_of = |name: &str| {
        list.lines()
            .find(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}\t")))
            .and_then(|l| l.split_whitespace().find(|c| c.starts_with("web-")))
            .map(str::to_string)
    };
    assert_eq!(chart_of("old").as_deref(), Some("web-0.1.0"), "{list}");
    assert_eq!(chart_of("new").as_deref(), Some("web-0.2.0"), "{list}");

    // keel pull REPO/NAME writes what helm pull writes
    let (kd, hd) = (w.join("kp"), w.join("hp"));
    for d in [&kd, &hd] {
        std::fs::create_dir_all(d).unwrap();
    }
    ok(keel(h, &kd, &["pull", "shop/web"]), "keel pull shop/web");
    ok(helm(h, &hd, &["pull", "shop/web"]), "helm pull shop/web");
    assert_eq!(tree(&kd), tree(&hd));
    let missing = keel(h, w, &["pull", "shop/nope"]);
    assert!(!missing.status.success());
    assert!(
        err(&missing).contains(
            "chart \"nope\" matching  not found in shop index. (try 'helm repo update'): no chart name found"
        ),
        "{}",
        err(&missing)
    );
    let none = keel(h, w, &["pull", "elsewhere/web"]);
    assert!(
        err(&none).contains("repo elsewhere not found"),
        "{}",
        err(&none)
    );
}

/// Chart.lock with its `generated` time masked.
fn lock_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("Chart.lock"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .lines()
        .map(|l| {
            if l.starts_with("generated: ") {
                "generated: <time>"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn dependency_update_and_build_lock_and_fetch_as_helm_does() {
    let reg = Registry::start();
    let host = reg.host();
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (h, w) = (home.path(), work.path());
    // an HTTP repository with three versions of lib, a registry with two of db
    let repo = w.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for v in ["0.1.0", "0.1.5", "0.2.0"] {
        let a = package_named(w, h, "lib", v);
        std::fs::rename(&a, repo.join(a.file_name().unwrap())).unwrap();
    }
    for v in ["1.0.0", "1.1.0", "2.0.0"] {
        let a = package_named(w, h, "db", v);
        ok(
            helm_push(h, w, &a, &format!("oci://{host}/charts")),
            "helm push db",
        );
    }
    let (_srv, url) = helm_peer::serve(&repo);
    ok(
        helm(
            h,
            w,
            &["repo", "index", repo.to_str().unwrap(), "--url", &url],
        ),
        "helm repo index",
    );
    ok(keel(h, w, &["repo", "add", "shop", &url]), "keel repo add");
    let app = |dir: &Path, lib: &str| {
        std::fs::create_dir_all(dir.join("templates")).unwrap();
        std::fs::write(
            dir.join("Chart.yaml"),
            format!(
                "apiVersion: v2\nname: app\nversion: 1.0.0\ndependencies:\n\
                 - name: lib\n  version: \"{lib}\"\n  repository: \"{url}\"\n\
                 - name: db\n  version: \"^1.0.0\"\n  repository: oci://{host}/charts\n\
                 - name: lib\n  alias: lib2\n  version: \">=0.1.0 <0.2.0\"\n  repository: \"@shop\"\n"
            ),
        )
        .unwrap();
    };
    let (kd, hd) = (w.join("keel-app"), w.join("helm-app"));
    app(&kd, "~0.1.0");
    app(&hd, "~0.1.0");
    let ko = ok(
        keel(h, w, &["dependency", "update", kd.to_str().unwrap()]),
        "keel dependency update",
    );
    let ho = ok(
        helm(
            h,
            w,
            &["dependency", "update", hd.to_str().unwrap(), "--plain-http"],
        ),
        "helm dependency update",
    );
    assert_eq!(
        String::from_utf8_lossy(&ko.stdout),
        String::from_utf8_lossy(&ho.stdout),
        "keel's progress lines are helm's"
    );
    // the same archives and the same lock (its digest included)
    assert_eq!(tree(&kd.join("charts")), tree(&hd.join("charts")));
    assert_eq!(lock_of(&kd), lock_of(&hd));
    let lock = lock_of(&kd);
    assert!(
        lock.contains("version: 0.1.5") && lock.contains("version: 1.1.0"),
        "{lock}"
    );

    // each builds from the other's lock
    std::fs::remove_dir_all(kd.join("charts")).unwrap();
    std::fs::remove_dir_all(hd.join("charts")).unwrap();
    std::fs::copy(hd.join("Chart.lock"), w.join("helm.lock")).unwrap();
    std::fs::copy(kd.join("Chart.lock"), hd.join("Chart.lock")).unwrap();
    std::fs::copy(w.join("helm.lock"), kd.join("Chart.lock")).unwrap();
    ok(
        keel(h, w, &["dependency", "build", kd.to_str().unwrap()]),
        "keel dependency build of helm's lock",
    );
    ok(
        helm(
            h,
            w,
            &["dependency", "build", hd.to_str().unwrap(), "--plain-http"],
        ),
        "helm dependency build of keel's lock",
    );
    assert_eq!(tree(&kd.join("charts")), tree(&hd.join("charts")));

    // a lock out of date with Chart.yaml is refused with helm's words, nothing fetched
    app(&kd, "~0.2.0");
    app(&hd, "~0.2.0");
    let before = tree(&kd.join("charts"));
    let kb = keel(h, w, &["dependency", "build", kd.to_str().unwrap()]);
    let hb = helm(
        h,
        w,
        &["dependency", "build", hd.to_str().unwrap(), "--plain-http"],
    );
    assert!(!kb.status.success() && !hb.status.success());
    let msg = "the lock file (Chart.lock) is out of sync with the dependencies file (Chart.yaml). Please update the dependencies";
    assert!(err(&kb).contains(msg), "{}", err(&kb));
    assert!(err(&hb).contains(msg), "{}", err(&hb));
    assert_eq!(tree(&kd.join("charts")), before);

    // no version satisfies: helm's message, nothing written
    app(&kd, "~0.9.0");
    let none = keel(h, w, &["dependency", "update", kd.to_str().unwrap()]);
    assert!(!none.status.success());
    assert!(
        err(&none).contains("can't get a valid version for 1 subchart(s): \"lib\""),
        "{}",
        err(&none)
    );
}
