//! terraform's `kubernetes` state backend (Secret
//! `tfstate-{workspace}-{suffix}` holding the gzipped state, Lease
//! `lock-tfstate-{workspace}-{suffix}` holding the lock) on `keel server`'s
//! Kubernetes API, driven by the real terraform 1.11 (init, apply, a second
//! apply blocked by the lock with the holder named, force-unlock after the
//! holder died, workspaces), and spoken by `keel infra` beside terraform:
//! one state, one lock, each reading what the other wrote.

mod server_common;

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use server_common::KeelServer;

fn terraform(dir: &Path, server: &KeelServer, args: &[&str]) -> Output {
    Command::new("terraform")
        .args(args)
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env("CHECKPOINT_DISABLE", "1")
        .env("KUBE_CONFIG_PATH", &server.kubeconfig)
        .output()
        .expect("terraform 1.11 must be installed (scripts/test.sh checks it)")
}

/// `terraform apply` in `dir`, to be held at its prompt (see [`wait_prompt`]).
fn holding_terraform(dir: &Path, server: &KeelServer) -> std::process::Child {
    Command::new("terraform")
        .args(["apply", "-no-color"])
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env("CHECKPOINT_DISABLE", "1")
        .env("KUBE_CONFIG_PATH", &server.kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("terraform 1.11 must be installed")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: &Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}", text(o));
    text(o)
}

/// Waits until `child` (an apply without -auto-approve) prompts: it then
/// holds the lock. The returned stdout must stay open while it runs on.
fn wait_prompt(child: &mut std::process::Child) -> std::process::ChildStdout {
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("Enter a value") {
        let n = out.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "apply ended before prompting: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    out
}

/// The state terraform keeps in Secret `name`: its `tfstate` key, gzipped.
fn secret_state(server: &KeelServer, name: &str) -> serde_json::Value {
    let kubectl = server_common::kubectls().pop().expect("a kubectl");
    let b64 = server.ok(
        &kubectl,
        &["get", "secret", name, "-o", "jsonpath={.data.tfstate}"],
    );
    let gz = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64.trim())
        .expect("base64 tfstate");
    let mut json = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut json)
        .expect("gzipped tfstate");
    serde_json::from_str(&json).expect("state JSON")
}

const MAIN: &str = "terraform {\n  backend \"kubernetes\" {\n    secret_suffix = \"demo\"\n  }\n}\nresource \"terraform_data\" \"a\" {\n  input = \"one\"\n}\noutput \"o\" {\n  value = terraform_data.a.output\n}\n";

#[test]
fn terraform_keeps_its_state_in_keel_server_kubernetes_api() {
    let server = KeelServer::start(None);
    let base = tempfile::tempdir().unwrap();
    let d = base.path();
    std::fs::write(d.join("main.tf"), MAIN).unwrap();
    ok(&terraform(d, &server, &["init", "-no-color"]), "init");
    ok(
        &terraform(d, &server, &["apply", "-auto-approve", "-no-color"]),
        "apply",
    );
    let st = secret_state(&server, "tfstate-default-demo");
    assert_eq!(st["resources"][0]["type"], "terraform_data");
    assert_eq!(st["outputs"]["o"]["value"], "one");

    // A second directory with the same backend sees the same state.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("main.tf"), MAIN.replace("one", "two")).unwrap();
    ok(
        &terraform(other.path(), &server, &["init", "-no-color"]),
        "init 2",
    );
    let list = ok(
        &terraform(other.path(), &server, &["state", "list"]),
        "state list",
    );
    assert_eq!(list.trim(), "terraform_data.a");

    // An apply waiting at its prompt holds the Lease; a second one is refused, naming it.
    std::fs::write(d.join("main.tf"), MAIN.replace("one", "two")).unwrap();
    let mut holder = holding_terraform(d, &server);
    let _out = wait_prompt(&mut holder);
    let second = terraform(
        other.path(),
        &server,
        &["apply", "-auto-approve", "-no-color", "-lock-timeout=0s"],
    );
    assert!(!second.status.success());
    let t = text(&second);
    assert!(
        t.contains("Error acquiring the state lock") && t.contains("OperationTypeApply"),
        "{t}"
    );
    let id = t
        .lines()
        .find_map(|l| l.trim().strip_prefix("ID:"))
        .map_or_else(|| panic!("no lock ID in: {t}"), |s| s.trim().to_string());
    let kubectl = server_common::kubectls().pop().unwrap();
    let holder_id = server.ok(
        &kubectl,
        &[
            "get",
            "lease",
            "lock-tfstate-default-demo",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    );
    assert_eq!(holder_id.trim(), id, "the Lease names the holder");

    // The holder dies without unlocking (SIGKILL); the lock stays until force-unlock.
    holder.kill().unwrap();
    let _ = holder.wait();
    let still = terraform(
        other.path(),
        &server,
        &["plan", "-no-color", "-lock-timeout=0s"],
    );
    assert!(
        !still.status.success(),
        "the dead holder's lock stays: {}",
        text(&still)
    );
    ok(
        &terraform(other.path(), &server, &["force-unlock", "-force", &id]),
        "force-unlock",
    );
    ok(
        &terraform(
            other.path(),
            &server,
            &["apply", "-auto-approve", "-no-color"],
        ),
        "apply after force-unlock",
    );
    let st = secret_state(&server, "tfstate-default-demo");
    assert_eq!(st["outputs"]["o"]["value"], "two");

    // Workspaces are Secrets of their own.
    ok(
        &terraform(other.path(), &server, &["workspace", "new", "dev"]),
        "workspace new",
    );
    ok(
        &terraform(
            other.path(),
            &server,
            &["apply", "-auto-approve", "-no-color"],
        ),
        "apply in dev",
    );
    let ws = ok(
        &terraform(other.path(), &server, &["workspace", "list"]),
        "workspace list",
    );
    assert!(ws.contains("default") && ws.contains("* dev"), "{ws}");
    let dev = secret_state(&server, "tfstate-dev-demo");
    assert_eq!(dev["resources"][0]["type"], "terraform_data");
    assert_ne!(dev["lineage"], st["lineage"]);
}

#[test]
fn keel_infra_shares_kubernetes_state_and_lock_with_terraform() {
    let server = KeelServer::start(None);
    let (kd, td) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let main = |v: &str| MAIN.replace("demo", "shared").replace("one", v);
    std::fs::write(td.path().join("main.tf"), main("one")).unwrap();
    std::fs::write(kd.path().join("main.tf"), main("one")).unwrap();
    let keel_cmd = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_keel"));
        c.arg("infra")
            .args(args)
            .current_dir(kd.path())
            .env("KUBE_CONFIG_PATH", &server.kubeconfig);
        c
    };
    let keel = |args: &[&str]| keel_cmd(args).output().unwrap();
    let tf = |args: &[&str]| terraform(td.path(), &server, args);

    ok(&tf(&["init", "-no-color"]), "terraform init");
    ok(
        &tf(&["apply", "-auto-approve", "-no-color"]),
        "terraform apply",
    );
    ok(&keel(&["init", "-no-color"]), "keel init");
    // keel reads terraform's Secret: nothing to do.
    let kp = keel(&["plan", "-no-color", "-detailed-exitcode"]);
    assert_eq!(kp.status.code(), Some(0), "{}", text(&kp));
    assert!(
        !kd.path().join("terraform.tfstate").exists(),
        "no local state beside a remote backend"
    );

    // keel writes; terraform reads keel's state and agrees.
    std::fs::write(kd.path().join("main.tf"), main("two")).unwrap();
    ok(
        &keel(&["apply", "-auto-approve", "-no-color"]),
        "keel apply",
    );
    let before = secret_state(&server, "tfstate-default-shared");
    assert_eq!(before["outputs"]["o"]["value"], "two");
    std::fs::write(td.path().join("main.tf"), main("two")).unwrap();
    let tp = tf(&["plan", "-no-color", "-detailed-exitcode"]);
    assert_eq!(tp.status.code(), Some(0), "{}", text(&tp));

    // terraform holds the Lease: keel is refused, naming the holder.
    std::fs::write(td.path().join("main.tf"), main("three")).unwrap();
    let mut holder = holding_terraform(td.path(), &server);
    let _out = wait_prompt(&mut holder);
    let k = keel(&["apply", "-auto-approve", "-no-color", "-lock-timeout=0s"]);
    assert!(!k.status.success());
    let t = text(&k);
    assert!(
        t.contains("Error acquiring the state lock") && t.contains("OperationTypeApply"),
        "{t}"
    );
    // keel prints the error on one line: the ID is the word after "ID:".
    let id = t
        .split_once("ID:")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map_or_else(|| panic!("no lock ID in: {t}"), str::to_string);
    holder.kill().unwrap();
    let _ = holder.wait();
    ok(&keel(&["force-unlock", "-force", &id]), "keel force-unlock");
    ok(
        &keel(&["apply", "-auto-approve", "-no-color"]),
        "keel apply after unlock",
    );

    // keel holds the Lease: terraform is refused.
    let mut kh = keel_cmd(&["apply", "-no-color", "-replace=terraform_data.a"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _kout = wait_prompt(&mut kh);
    let t = tf(&["apply", "-auto-approve", "-no-color", "-lock-timeout=0s"]);
    assert!(!t.status.success());
    assert!(
        text(&t).contains("Error acquiring the state lock")
            && text(&t).contains("OperationTypeApply"),
        "{}",
        text(&t)
    );
    std::io::Write::write_all(&mut kh.stdin.take().unwrap(), b"no\n").unwrap();
    let _ = kh.wait();
    // keel released it on its way out.
    std::fs::write(td.path().join("main.tf"), main("two")).unwrap();
    ok(
        &tf(&["apply", "-auto-approve", "-no-color"]),
        "terraform apply after keel",
    );
    let after = secret_state(&server, "tfstate-default-shared");
    assert_eq!(
        after["lineage"], before["lineage"],
        "one state, one lineage"
    );

    // Workspaces are Secrets: one keel makes, terraform lists and reads.
    ok(&keel(&["workspace", "new", "dev"]), "keel workspace new");
    ok(
        &keel(&["apply", "-auto-approve", "-no-color"]),
        "keel apply in dev",
    );
    let ws = ok(&tf(&["workspace", "list"]), "terraform workspace list");
    assert!(ws.contains("dev"), "{ws}");
    ok(
        &tf(&["workspace", "select", "dev"]),
        "terraform workspace select",
    );
    let tp = tf(&["plan", "-no-color", "-detailed-exitcode"]);
    assert_eq!(tp.status.code(), Some(0), "{}", text(&tp));
}

/// hashicorp/kubernetes's `kubernetes_manifest` on keel server: a Namespace
/// and a `ConfigMap` in it, updated in place, then destroyed with nothing left.
#[test]
fn kubernetes_manifest_applies_objects_to_keel_server() {
    let server = KeelServer::start(None);
    let kubectl = server_common::kubectls().pop().expect("a kubectl");
    let d = tempfile::tempdir().unwrap();
    let main = |greeting: &str| {
        format!(
            r#"
resource "kubernetes_manifest" "ns" {{
  manifest = {{
    apiVersion = "v1"
    kind       = "Namespace"
    metadata   = {{ name = "tf" }}
  }}
}}
resource "kubernetes_manifest" "cm" {{
  manifest = {{
    apiVersion = "v1"
    kind       = "ConfigMap"
    metadata   = {{ name = "app", namespace = kubernetes_manifest.ns.manifest.metadata.name }}
    data       = {{ greeting = "{greeting}" }}
  }}
}}
output "uid" {{
  value = kubernetes_manifest.cm.object.metadata.uid
}}
"#
        )
    };
    let keel = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("infra")
            .args(args)
            .current_dir(d.path())
            .env("KUBE_CONFIG_PATH", &server.kubeconfig)
            .output()
            .unwrap()
    };
    std::fs::write(d.path().join("main.tf"), main("hello")).unwrap();
    ok(&keel(&["init", "-no-color"]), "init");
    ok(&keel(&["apply", "-auto-approve", "-no-color"]), "apply");
    let got = server.ok(
        &kubectl,
        &[
            "-n",
            "tf",
            "get",
            "configmap",
            "app",
            "-o",
            "jsonpath={.data.greeting} {.metadata.uid}",
        ],
    );
    let uid = ok(&keel(&["output", "-raw", "uid"]), "output");
    assert_eq!(got.trim(), format!("hello {uid}"));
    let p = keel(&["plan", "-no-color", "-detailed-exitcode"]);
    assert_eq!(p.status.code(), Some(0), "{}", text(&p));

    std::fs::write(d.path().join("main.tf"), main("bonjour")).unwrap();
    let plan = ok(&keel(&["plan", "-no-color"]), "plan 2");
    assert!(
        plan.contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{plan}"
    );
    ok(&keel(&["apply", "-auto-approve", "-no-color"]), "apply 2");
    let got = server.ok(
        &kubectl,
        &[
            "-n",
            "tf",
            "get",
            "configmap",
            "app",
            "-o",
            "jsonpath={.data.greeting} {.metadata.uid}",
        ],
    );
    assert_eq!(got.trim(), format!("bonjour {uid}"), "updated in place");

    ok(&keel(&["destroy", "-auto-approve", "-no-color"]), "destroy");
    let gone = server.fails(&kubectl, &["-n", "tf", "get", "configmap", "app"], None);
    assert!(
        gone.contains("NotFound") || gone.contains("not found"),
        "{gone}"
    );
    let gone = server.fails(&kubectl, &["get", "namespace", "tf"], None);
    assert!(
        gone.contains("NotFound") || gone.contains("not found"),
        "{gone}"
    );
}

/// hashicorp/kubernetes's typed resources (`kubernetes_namespace_v1`,
/// `kubernetes_config_map`, `kubernetes_secret`, `kubernetes_deployment`,
/// `kubernetes_service_v1`) applied to keel server, with the cluster named
/// only in `provider "kubernetes"` blocks: one by `config_path`, an alias by
/// `host`/`token`/`cluster_ca_certificate` (nothing in the environment).
#[test]
fn typed_kubernetes_resources_through_provider_blocks() {
    let server = KeelServer::start(None);
    let kubectl = server_common::kubectls().pop().expect("a kubectl");
    let d = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let main = |greeting: &str| {
        format!(
            r#"
variable "kubeconfig" {{ type = string }}
variable "host" {{ type = string }}
variable "token" {{
  type      = string
  sensitive = true
}}
variable "ca" {{ type = string }}

provider "kubernetes" {{
  config_path = var.kubeconfig
}}
provider "kubernetes" {{
  alias                  = "direct"
  host                   = var.host
  token                  = var.token
  cluster_ca_certificate = var.ca
}}

resource "kubernetes_namespace_v1" "ns" {{
  metadata {{
    name = "typed"
  }}
}}
resource "kubernetes_config_map" "cm" {{
  metadata {{
    name      = "app"
    namespace = kubernetes_namespace_v1.ns.metadata[0].name
    labels    = {{ app = "web" }}
  }}
  data = {{
    greeting = "{greeting}"
  }}
}}
resource "kubernetes_secret" "creds" {{
  provider = kubernetes.direct
  metadata {{
    name      = "creds"
    namespace = kubernetes_namespace_v1.ns.metadata[0].name
  }}
  data = {{
    password = "s3cret"
  }}
}}
resource "kubernetes_deployment" "web" {{
  metadata {{
    name      = "web"
    namespace = kubernetes_namespace_v1.ns.metadata[0].name
  }}
  spec {{
    replicas = 2
    selector {{
      match_labels = {{ app = "web" }}
    }}
    template {{
      metadata {{
        labels = {{ app = "web" }}
      }}
      spec {{
        container {{
          name    = "web"
          image   = "busybox:latest"
          command = ["httpd", "-f", "-p", "80"]
          port {{
            container_port = 80
          }}
          env {{
            name  = "GREETING"
            value = "{greeting}"
          }}
        }}
      }}
    }}
  }}
  wait_for_rollout = false
}}
resource "kubernetes_service_v1" "web" {{
  metadata {{
    name      = "web"
    namespace = kubernetes_namespace_v1.ns.metadata[0].name
  }}
  spec {{
    selector = {{ app = "web" }}
    port {{
      port        = 8080
      target_port = 80
    }}
  }}
}}
output "cluster_ip" {{
  value = kubernetes_service_v1.web.spec[0].cluster_ip
}}
output "cm_uid" {{
  value = kubernetes_config_map.cm.metadata[0].uid
}}
"#
        )
    };
    let ca = std::fs::read_to_string(server.state_dir().join("tls/ca.crt")).unwrap();
    let token = server.admin_token();
    let keel = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("infra")
            .args(args)
            .current_dir(d.path())
            .env_remove("KUBE_CONFIG_PATH")
            .env_remove("KUBECONFIG")
            .env_remove("KUBE_CTX")
            .env("HOME", home.path())
            .env("TF_VAR_kubeconfig", &server.kubeconfig)
            .env("TF_VAR_host", format!("https://127.0.0.1:{}", server.port))
            .env("TF_VAR_token", &token)
            .env("TF_VAR_ca", &ca)
            .output()
            .unwrap()
    };
    std::fs::write(d.path().join("main.tf"), main("hello")).unwrap();
    ok(&keel(&["init", "-no-color"]), "init");
    let plan = ok(&keel(&["plan", "-no-color"]), "plan");
    assert!(
        plan.contains("Plan: 5 to add, 0 to change, 0 to destroy."),
        "{plan}"
    );
    ok(&keel(&["apply", "-auto-approve", "-no-color"]), "apply");
    let get = |args: &[&str]| {
        let mut a = vec!["-n", "typed", "get"];
        a.extend_from_slice(args);
        server.ok(&kubectl, &a).trim().to_string()
    };
    let uid = ok(&keel(&["output", "-raw", "cm_uid"]), "output")
        .trim()
        .to_string();
    assert_eq!(
        get(&[
            "configmap",
            "app",
            "-o",
            "jsonpath={.data.greeting} {.metadata.labels.app} {.metadata.uid}"
        ]),
        format!("hello web {uid}")
    );
    assert_eq!(
        get(&["secret", "creds", "-o", "jsonpath={.data.password}"]),
        "czNjcmV0",
        "data is base64-encoded for the API, as the provider does"
    );
    assert_eq!(
        get(&[
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort} {.spec.selector.matchLabels.app}"
        ]),
        "2 busybox:latest 80 web"
    );
    let ip = ok(&keel(&["output", "-raw", "cluster_ip"]), "output")
        .trim()
        .to_string();
    assert!(!ip.is_empty());
    assert_eq!(
        get(&[
            "service",
            "web",
            "-o",
            "jsonpath={.spec.clusterIP} {.spec.ports[0].port} {.spec.ports[0].targetPort}"
        ]),
        format!("{ip} 8080 80")
    );
    // What the server filled in round-trips: nothing to do.
    let p = keel(&["plan", "-no-color", "-detailed-exitcode"]);
    assert_eq!(p.status.code(), Some(0), "{}", text(&p));

    // A data change is an update in place (same object, same uid).
    std::fs::write(d.path().join("main.tf"), main("bonjour")).unwrap();
    let plan = ok(&keel(&["plan", "-no-color"]), "plan 2");
    assert!(
        plan.contains("Plan: 0 to add, 2 to change, 0 to destroy."),
        "{plan}"
    );
    ok(&keel(&["apply", "-auto-approve", "-no-color"]), "apply 2");
    assert_eq!(
        get(&[
            "configmap",
            "app",
            "-o",
            "jsonpath={.data.greeting} {.metadata.uid}"
        ]),
        format!("bonjour {uid}")
    );

    ok(&keel(&["destroy", "-auto-approve", "-no-color"]), "destroy");
    let gone = server.fails(&kubectl, &["get", "namespace", "typed"], None);
    assert!(
        gone.contains("NotFound") || gone.contains("not found"),
        "{gone}"
    );
}
