//! `keel ci` jobs in containers on keel's engine (as root): the default
//! busybox image for `runs-on` labels without a platform, `container:` job
//! containers, `services:` on a per-job network (by name from a container
//! job, on a published 127.0.0.1 port from a host job), `docker://` steps;
//! images the root lacks are pulled; nothing is left behind.

mod common;

use std::process::{Command, Stdio};

use common::{Keel, PruneNetworks, Registry, free_port};

fn repo(workflow: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("keel-ci-c-")
        .tempdir()
        .unwrap();
    let f = dir.path().join(".github/workflows/c.yml");
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(&f, workflow).unwrap();
    // A Docker action built from its Dockerfile with keel build.
    let a = dir.path().join(".github/actions/dock");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(
        a.join("action.yml"),
        "name: dock\ninputs:\n  name:\n    required: true\noutputs:\n  echoed:\n    description: x\nruns:\n  using: docker\n  image: Dockerfile\n  args:\n    - ${{ inputs.name }}\n",
    )
    .unwrap();
    std::fs::write(
        a.join("Dockerfile"),
        "FROM busybox\nCOPY entrypoint.sh /entrypoint.sh\nENTRYPOINT [\"/bin/sh\", \"/entrypoint.sh\"]\n",
    )
    .unwrap();
    std::fs::write(
        a.join("entrypoint.sh"),
        "echo \"docker action arg $1 input $INPUT_NAME\"\necho \"echoed=$1\" >> \"$GITHUB_OUTPUT\"\n",
    )
    .unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "add",
            "-A",
        ],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            "c",
        ],
    ] {
        assert!(
            Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(args)
                .status()
                .unwrap()
                .success()
        );
    }
    dir
}

/// `keel ci run` in `dir` with `-P` mappings; asserts success, returns the output.
fn ci_run(k: &Keel, dir: &std::path::Path, platforms: &[&str]) -> String {
    let mut c = k.cmd();
    c.args(["ci", "run", "-C"]).arg(dir);
    for p in platforms {
        c.args(["-P", p]);
    }
    let o = c.stdin(Stdio::null()).output().unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{out}");
    out
}

/// One container test at a time: each takes a bridge subnet from the host's pools.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn container_jobs_services_and_docker_steps() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let port = free_port();
    let wf = format!(
        r#"on: push
jobs:
  in-busybox:
    runs-on: ubuntu-latest
    outputs:
      kernel: ${{{{ steps.k.outputs.k }}}}
    steps:
      - run: test -x /bin/busybox && echo "in busybox as $(id -u)"
      - id: k
        run: echo "k=$(uname -s)" >> "$GITHUB_OUTPUT"; echo "X=1" >> "$GITHUB_ENV"
      - run: test "$X" = 1 && echo "env file ok"
      - run: sleep 30
        timeout-minutes: 0.02
        continue-on-error: true
  with-service:
    needs: in-busybox
    runs-on: ubuntu-latest
    container: busybox
    services:
      web:
        image: busybox
        command: httpd -f -p 8080 -h /etc
    steps:
      - run: echo "kernel ${{{{ needs.in-busybox.outputs.kernel }}}}"
      - run: wget -qO- http://web:8080/group | head -1
  started-ahead:
    needs: in-busybox
    runs-on: ubuntu-latest
    steps:
      - run: echo "ahead sees ${{{{ needs.in-busybox.outputs.kernel }}}} and $(cat /etc/hostname)"
      - run: echo "A=2" >> "$GITHUB_ENV"
      - run: test "$A" = 2 && echo "ahead env ok"
  host-to-service:
    runs-on: self-hosted
    services:
      web:
        image: busybox
        command: httpd -f -p 8080 -h /etc
        ports:
          - {port}:8080
    steps:
      - run: |
          for i in $(seq 1 50); do python3 -c 'import urllib.request,sys; print(urllib.request.urlopen("http://127.0.0.1:{port}/group").read().decode().splitlines()[0])' && exit 0; sleep 0.1; done; exit 1
      - uses: docker://busybox
        with:
          args: echo from-docker-step
      - uses: ./.github/actions/dock
        id: dock
        with:
          name: built
      - run: echo "dock output ${{{{ steps.dock.outputs.echoed }}}}"
"#
    );
    let dir = repo(&wf);
    let k = Keel::new();
    let _prune = PruneNetworks(&k);
    k.seed_busybox();
    let out = ci_run(&k, dir.path(), &["self-hosted=-self-hosted"]);
    for want in [
        "in busybox as 0",
        "env file ok",
        "The step has timed out",
        "kernel Linux",
        "root:x:0:",
        "from-docker-step",
        "docker action arg built input built",
        "dock output built",
        "(container busybox)",
        "ahead sees Linux and",
        "ahead env ok",
    ] {
        assert!(out.contains(want), "missing {want:?}:\n{out}");
    }
    // Nothing left: no containers, no job networks.
    let ps = k.ok(&["ps", "-a", "-q"]);
    assert!(ps.trim().is_empty(), "containers left: {ps}");
    let nets = k.ok(&["network", "ls"]);
    assert!(!nets.contains("keel-ci-"), "networks left: {nets}");
}

#[test]
fn images_missing_from_the_root_are_pulled() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Another root pushes busybox under three tags; the run's root has no
    // image at all, so the job container, the service and the docker://
    // step each pull theirs (one after the other: `needs`).
    let registry = Registry::start();
    let image = format!("{}/ci/busybox", registry.host());
    let pusher = Keel::new();
    let _prune_pusher = PruneNetworks(&pusher);
    pusher.seed_busybox();
    for t in ["job", "service", "step"] {
        pusher.ok(&["tag", "busybox", &format!("{image}:{t}")]);
        pusher.ok(&["push", &format!("{image}:{t}")]);
    }
    let wf = format!(
        r#"on: push
jobs:
  job-container:
    runs-on: from-registry
    steps:
      - run: echo "job container from the registry $(cat /etc/hostname)"
  service:
    needs: job-container
    runs-on: self-hosted
    services:
      web:
        image: {image}:service
        command: httpd -f -p 8080 -h /etc
    steps:
      - run: echo service-started
  step:
    needs: service
    runs-on: self-hosted
    steps:
      - uses: docker://{image}:step
        with:
          args: echo from-pulled-docker-step
"#
    );
    let dir = repo(&wf);
    let k = Keel::new();
    let _prune = PruneNetworks(&k);
    let out = ci_run(
        &k,
        dir.path(),
        &[
            &format!("from-registry={image}:job"),
            "self-hosted=-self-hosted",
        ],
    );
    for want in [
        "job container from the registry",
        "service-started",
        "from-pulled-docker-step",
    ] {
        assert!(out.contains(want), "missing {want:?}:\n{out}");
    }
    let images = k.ok(&["images"]);
    for t in ["job", "service", "step"] {
        assert!(images.contains(t), "{t} not pulled: {images}");
    }
    assert!(k.ok(&["ps", "-a", "-q"]).trim().is_empty());
    // --reuse keeps the job container after the run.
    let o = k
        .cmd()
        .args(["ci", "run", "--reuse", "-j", "job-container", "-C"])
        .arg(dir.path())
        .args(["-P", &format!("from-registry={image}:job")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !k.ok(&["ps", "-a", "-q"]).trim().is_empty(),
        "--reuse kept no container"
    );
}
