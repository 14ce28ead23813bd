//! The built-in `docker` provider (kreuzwerker/docker's schemas) on keel's
//! own engine, end to end as root: a network, a volume, an image built from
//! a Dockerfile on busybox, and two containers that talk over the network
//! by alias and through a published port. Then a change in place
//! (`restart`), a replacement (`command`, force-new), and a destroy that
//! leaves no container, network, bridge, volume or image behind.
//!
//! terraform itself cannot run this configuration here: the docker provider
//! is a plugin download and the machine is offline, so plan text is
//! checked against the lines terraform prints for the provider's schema
//! (`~ update in-place`, `# forces replacement`, the summary line).

#![allow(clippy::many_single_char_names)]

mod common;

use std::path::Path;
use std::process::Output;

use common::{Keel, http_get};

struct Project {
    k: Keel,
    dir: tempfile::TempDir,
    tag: String,
}

impl Project {
    fn infra(&self, args: &[&str]) -> Output {
        self.k
            .cmd()
            .arg("infra")
            .args(args)
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.infra(args);
        assert!(
            o.status.success(),
            "keel infra {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn write(&self, restart: &str, sleep: &str) {
        let t = &self.tag;
        std::fs::write(
            self.dir.path().join("main.tf"),
            format!(
                r#"
resource "docker_network" "net" {{
  name = "{t}-net"
}}

resource "docker_volume" "data" {{
  name = "{t}-data"
  labels {{
    label = "app"
    value = "{t}"
  }}
}}

resource "docker_image" "web" {{
  name = "{t}-web:1"
  build {{
    context = "."
  }}
}}

resource "docker_container" "web" {{
  name    = "{t}-web"
  image   = docker_image.web.image_id
  command = ["httpd", "-f", "-p", "80", "-h", "/www"]
  ports {{
    internal = 80
  }}
  networks_advanced {{
    name    = docker_network.net.name
    aliases = ["web"]
  }}
  volumes {{
    volume_name    = docker_volume.data.name
    container_path = "/data"
  }}
}}

resource "docker_container" "client" {{
  name    = "{t}-client"
  image   = "busybox:latest"
  command = ["sleep", "{sleep}"]
  restart = "{restart}"
  env     = ["ROLE=client"]
  networks_advanced {{
    name = docker_network.net.name
  }}
  volumes {{
    volume_name    = docker_volume.data.name
    container_path = "/data"
  }}
}}

output "port" {{
  value = docker_container.web.ports[0].external
}}
output "web_ip" {{
  value = docker_container.web.network_data[0].ip_address
}}
output "client_id" {{
  value = docker_container.client.id
}}
"#
            ),
        )
        .unwrap();
    }

    fn keel_ok(&self, args: &[&str]) -> String {
        self.k.ok(args)
    }
}

impl Drop for Project {
    /// Whatever happened: nothing of the test stays on the machine.
    fn drop(&mut self) {
        let _ = self.infra(&["destroy", "-auto-approve"]);
        let t = &self.tag;
        let _ = self
            .k
            .run(&["rm", "-f", &format!("{t}-web"), &format!("{t}-client")]);
        let _ = self.k.run(&["network", "rm", &format!("{t}-net")]);
        let _ = self.k.run(&["volume", "rm", &format!("{t}-data")]);
        common::unmount_under(self.k.root.path());
    }
}

/// A `SYM name = value` line of a plan (alignment aside).
fn has_attr(plan: &str, sym: &str, name: &str, value: &str) -> bool {
    plan.lines().any(|l| {
        l.trim_start()
            .strip_prefix(sym)
            .and_then(|r| r.strip_prefix(' '))
            .and_then(|r| r.strip_prefix(name))
            .and_then(|r| r.trim_start().strip_prefix("= "))
            == Some(value)
    })
}

fn bridge_exists(name: &str) -> bool {
    std::process::Command::new("ip")
        .args(["link", "show", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn docker_provider_network_volume_build_two_containers_change_replace_destroy() {
    let k = Keel::new();
    k.seed_busybox();
    let dir = tempfile::Builder::new()
        .prefix("keel-infra-docker-")
        .tempdir()
        .unwrap();
    let p = Project {
        k,
        dir,
        tag: format!("kid{}", std::process::id()),
    };
    let d = p.dir.path();
    std::fs::write(
        d.join("Dockerfile"),
        "FROM busybox:latest\nCOPY index.html /www/index.html\n",
    )
    .unwrap();
    std::fs::write(d.join("index.html"), "hello from a terraform build\n").unwrap();
    p.write("no", "3600");
    p.ok(&["init"]);

    let plan = p.ok(&["plan"]);
    assert!(
        plan.contains("Plan: 5 to add, 0 to change, 0 to destroy."),
        "{plan}"
    );
    // The provider's defaults and computed values, as terraform prints them.
    for (name, value) in [
        ("must_run", "true"),
        ("restart", "\"no\""),
        ("network_mode", "\"bridge\""),
        ("network_data", "(known after apply)"),
        ("image_id", "(known after apply)"),
        ("mountpoint", "(known after apply)"),
    ] {
        assert!(
            has_attr(&plan, "+", name, value),
            "{name} = {value}: {plan}"
        );
    }
    // Nested blocks print as blocks, as terraform prints them.
    assert!(
        plan.contains("\n      + ports {\n          + external = (known after apply)\n          + internal = 80\n          + ip       = \"0.0.0.0\"\n          + protocol = \"tcp\"\n        }\n"),
        "{plan}"
    );

    let out = p.ok(&["apply", "-auto-approve"]);
    assert!(
        out.contains("Apply complete! Resources: 5 added, 0 changed, 0 destroyed."),
        "{out}"
    );
    let port: u16 = p.ok(&["output", "-raw", "port"]).trim().parse().unwrap();
    assert!(port > 0);
    // Through the published port: the built image serves its file.
    let body = http_get(port, "/");
    assert!(body.contains("hello from a terraform build"), "{body}");
    // Container to container, by the alias on the network the config made.
    let t = &p.tag;
    let client = format!("{t}-client");
    let via_alias = p.keel_ok(&["exec", &client, "wget", "-qO-", "http://web/"]);
    assert_eq!(via_alias, "hello from a terraform build\n");
    let web_ip = p.ok(&["output", "-raw", "web_ip"]);
    let via_ip = p.keel_ok(&[
        "exec",
        &client,
        "wget",
        "-qO-",
        &format!("http://{web_ip}/"),
    ]);
    assert_eq!(via_ip, via_alias);
    // Both see the one volume.
    p.keel_ok(&["exec", &client, "sh", "-c", "echo shared > /data/f"]);
    assert_eq!(
        p.keel_ok(&["exec", &format!("{t}-web"), "cat", "/data/f"]),
        "shared\n"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&p.keel_ok(&["network", "inspect", &format!("{t}-net")])).unwrap();
    let bridge = inspect[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(bridge_exists(&bridge));

    // Nothing to do on a second plan (refresh reads every object back).
    let o = p.infra(&["plan", "-detailed-exitcode"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // restart is updated in place (docker update --restart).
    let first_id = p.ok(&["output", "-raw", "client_id"]);
    p.write("unless-stopped", "3600");
    let plan = p.ok(&["plan"]);
    assert!(
        plan.contains("# docker_container.client will be updated in-place"),
        "{plan}"
    );
    assert!(
        has_attr(&plan, "~", "restart", r#""no" -> "unless-stopped""#),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{plan}"
    );
    p.ok(&["apply", "-auto-approve"]);
    assert_eq!(p.ok(&["output", "-raw", "client_id"]), first_id);
    let ins: serde_json::Value = serde_json::from_str(&p.keel_ok(&["inspect", &client])).unwrap();
    assert_eq!(
        ins[0]["HostConfig"]["RestartPolicy"]["Name"],
        "unless-stopped"
    );
    // ...and holds for the running container, as docker's does: killed
    // from outside, it comes back.
    let pid = ins[0]["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0, "{ins}");
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let ins: serde_json::Value =
            serde_json::from_str(&p.keel_ok(&["inspect", &client])).unwrap();
        if ins[0]["RestartCount"].as_i64() >= Some(1) && ins[0]["State"]["Running"] == true {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not restarted under the updated policy: {ins}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // command forces replacement.
    p.write("unless-stopped", "3601");
    let plan = p.ok(&["plan"]);
    assert!(
        plan.contains("# docker_container.client must be replaced"),
        "{plan}"
    );
    assert!(plan.contains("] # forces replacement"), "{plan}");
    assert!(
        plan.contains("Plan: 1 to add, 0 to change, 1 to destroy."),
        "{plan}"
    );
    p.ok(&["apply", "-auto-approve"]);
    let second_id = p.ok(&["output", "-raw", "client_id"]);
    assert_ne!(second_id, first_id);
    assert_eq!(
        p.keel_ok(&["exec", &client, "wget", "-qO-", "http://web/"]),
        "hello from a terraform build\n"
    );

    // A container removed behind terraform's back is planned again.
    p.keel_ok(&["rm", "-f", &client]);
    let plan = p.ok(&["plan"]);
    assert!(
        plan.contains("# docker_container.client will be created"),
        "{plan}"
    );
    let out = p.ok(&["apply", "-auto-approve"]);
    assert!(
        out.contains("Resources: 1 added, 0 changed, 0 destroyed."),
        "{out}"
    );

    let out = p.ok(&["destroy", "-auto-approve"]);
    assert!(
        out.contains("Destroy complete! Resources: 5 destroyed."),
        "{out}"
    );
    let ps = p.keel_ok(&["ps", "-a"]);
    assert!(!ps.contains(t.as_str()), "{ps}");
    let nets = p.keel_ok(&["network", "ls"]);
    assert!(!nets.contains(t.as_str()), "{nets}");
    assert!(!bridge_exists(&bridge), "bridge {bridge} left behind");
    let vols = p.keel_ok(&["volume", "ls"]);
    assert!(!vols.contains(t.as_str()), "{vols}");
    let images = p.keel_ok(&["images"]);
    assert!(!images.contains(&format!("{t}-web")), "{images}");
    // busybox was not the configuration's to remove.
    assert!(images.contains("busybox"), "{images}");
    let state = std::fs::read_to_string(Path::new(d).join("terraform.tfstate")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["resources"].as_array().map(Vec::len), Some(0));
}

#[test]
fn docker_provider_host_must_be_a_keel_root() {
    let k = Keel::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.tf"),
        "provider \"docker\" {\n  host = \"unix:///var/run/docker.sock\"\n}\nresource \"docker_network\" \"n\" {\n  name = \"kid-never\"\n}\n",
    )
    .unwrap();
    let o = k
        .cmd()
        .args(["infra", "apply", "-auto-approve"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not a keel engine") && err.contains("keel:///path/to/root"),
        "{err}"
    );
}
