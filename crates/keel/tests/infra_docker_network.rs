//! The `docker` provider's network arguments and `volumes { from_container }`
//! on keel's engine, end to end as root with `keel infra apply`: an internal
//! network with its own gateway, address range, auxiliary address and
//! labels; a container that writes into a volume and a second that mounts
//! it through `from_container` (read-only); then a no-change plan and a
//! destroy that leaves nothing behind. (terraform's docker provider is a
//! plugin download, so real terraform cannot run this offline.)

#![allow(clippy::many_single_char_names)]

mod common;

use std::process::Output;

use common::Keel;

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
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.infra(&["destroy", "-auto-approve"]);
        let t = &self.tag;
        let _ = self
            .k
            .run(&["rm", "-f", &format!("{t}-src"), &format!("{t}-reader")]);
        let _ = self.k.run(&["network", "rm", &format!("{t}-sealed")]);
        let _ = self.k.run(&["volume", "rm", &format!("{t}-data")]);
        common::unmount_under(self.k.root.path());
    }
}

#[test]
fn docker_network_internal_gateway_range_labels_and_volumes_from() {
    let k = Keel::new();
    k.seed_busybox();
    let dir = tempfile::Builder::new()
        .prefix("keel-infra-dnet-")
        .tempdir()
        .unwrap();
    let t = format!("kin{}", std::process::id());
    let p = Project {
        k,
        dir,
        tag: t.clone(),
    };
    std::fs::write(
        p.dir.path().join("main.tf"),
        format!(
            r#"
resource "docker_network" "sealed" {{
  name     = "{t}-sealed"
  internal = true
  ipam_config {{
    subnet      = "10.231.0.0/24"
    gateway     = "10.231.0.254"
    ip_range    = "10.231.0.16/28"
    aux_address = {{ router = "10.231.0.16" }}
  }}
  labels {{
    label = "team"
    value = "blue"
  }}
}}

resource "docker_volume" "data" {{
  name = "{t}-data"
}}

resource "docker_container" "src" {{
  name    = "{t}-src"
  image   = "busybox:latest"
  command = ["sh", "-c", "echo from-src > /data/f && sleep 600"]
  volumes {{
    volume_name    = docker_volume.data.name
    container_path = "/data"
  }}
  networks_advanced {{
    name = docker_network.sealed.name
  }}
}}

resource "docker_container" "reader" {{
  name    = "{t}-reader"
  image   = "busybox:latest"
  command = ["sleep", "600"]
  volumes {{
    from_container = docker_container.src.name
    read_only      = true
  }}
  networks_advanced {{
    name = docker_network.sealed.name
  }}
}}

output "src_ip" {{
  value = docker_container.src.network_data[0].ip_address
}}
output "gateway" {{
  value = docker_container.src.network_data[0].gateway
}}
"#
        ),
    )
    .unwrap();
    p.ok(&["init"]);
    let out = p.ok(&["apply", "-auto-approve"]);
    assert!(
        out.contains("Resources: 4 added, 0 changed, 0 destroyed."),
        "{out}"
    );
    // The first address of the range is auxiliary: src gets the next one.
    assert_eq!(p.ok(&["output", "-raw", "src_ip"]), "10.231.0.17");
    assert_eq!(p.ok(&["output", "-raw", "gateway"]), "10.231.0.254");

    let inspect: serde_json::Value =
        serde_json::from_str(&p.k.ok(&["network", "inspect", &format!("{t}-sealed")])).unwrap();
    let n = &inspect[0];
    assert_eq!(n["Internal"], true);
    assert_eq!(n["Labels"]["team"], "blue");
    let cfg = &n["IPAM"]["Config"][0];
    assert_eq!(cfg["Subnet"], "10.231.0.0/24");
    assert_eq!(cfg["Gateway"], "10.231.0.254");
    assert_eq!(cfg["IPRange"], "10.231.0.16/28");
    assert_eq!(cfg["AuxiliaryAddresses"]["router"], "10.231.0.16");
    let listed = p.k.ok(&[
        "network",
        "ls",
        "-q",
        "--filter",
        "label=team=blue",
        "--no-trunc",
    ]);
    assert_eq!(listed.trim(), n["Id"].as_str().unwrap());

    // Peers talk on the internal network; there is no route out of it.
    let reader = format!("{t}-reader");
    p.k.ok(&[
        "exec",
        &reader,
        "ping",
        "-c",
        "1",
        "-W",
        "3",
        &format!("{t}-src"),
    ]);
    let routes = p.k.ok(&["exec", &reader, "ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    assert!(routes.contains("10.231.0.0/24"), "{routes}");

    // from_container: src's volume at the same path, read-only here.
    let mut got = String::new();
    for _ in 0..50 {
        got =
            p.k.run(&["exec", &reader, "cat", "/data/f"])
                .stdout
                .iter()
                .map(|b| *b as char)
                .collect();
        if got == "from-src\n" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(got, "from-src\n");
    let w = p.k.run(&["exec", &reader, "sh", "-c", "echo x > /data/g"]);
    assert!(!w.status.success());
    assert!(String::from_utf8_lossy(&w.stderr).contains("Read-only file system"));

    // What was applied reads back unchanged.
    let plan = p.ok(&["plan"]);
    assert!(plan.contains("No changes."), "{plan}");

    let out = p.ok(&["destroy", "-auto-approve"]);
    assert!(
        out.contains("Destroy complete! Resources: 4 destroyed."),
        "{out}"
    );
    let nets = p.k.ok(&["network", "ls"]);
    assert!(!nets.contains(t.as_str()), "{nets}");
    let ps = p.k.ok(&["ps", "-a"]);
    assert!(!ps.contains(t.as_str()), "{ps}");
}
