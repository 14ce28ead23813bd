//! Issue 15: `ps --filter publish=PORT[/proto]`, `expose=PORT[/proto]`
//! and `label=KEY[=VALUE]`, and the `.Label "KEY"` / `.Labels` template
//! fields, on the same created containers of keel and podman.

use super::{Output, Pair, both_ok, out, stderr};

fn sorted(o: &Output) -> (Option<i32>, Vec<String>) {
    let mut l: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    l.sort();
    (o.status.code(), l)
}

/// `publish` and `expose` were refused as unknown filters ("invalid filter
/// 'publish'"); `.Label "k"` failed (the row was a plain map without docker's
/// method) and `.Labels` printed a Go map.
#[test]
fn ps_filters_on_ports_and_labels_and_label_fields() {
    let p = Pair::new();
    // create only: the ports are never bound.
    both_ok(
        &p,
        &[
            "create",
            "--network",
            "bridge",
            "--name",
            "pp",
            "-p",
            "127.0.0.1:18320:80",
            "-p",
            "127.0.0.1:18321:53/udp",
            "-l",
            "tier=web",
            "-l",
            "owner=ann",
            "busybox",
            "true",
        ],
    );
    both_ok(
        &p,
        &[
            "create", "--name", "pe", "--expose", "9000", "-l", "tier=db", "busybox", "true",
        ],
    );
    // podman 4.3 has no publish/expose filters ("publish is an invalid
    // filter", exit 125): docker's documented meaning is checked instead.
    // The port is the container's side of a mapping; published ports count
    // as exposed (docker adds them to the config's ExposedPorts).
    for (f, want) in [
        ("publish=80", "pp\n"),
        ("publish=80/tcp", "pp\n"),
        ("publish=53/udp", "pp\n"),
        ("publish=53", ""),
        ("publish=1-100", "pp\n"),
        ("publish=9000", ""),
        ("publish=18320", ""),
        ("expose=9000", "pe\n"),
        ("expose=9000/udp", ""),
        ("expose=8999-9001", "pe\n"),
        ("expose=80", "pp\n"),
    ] {
        p.docker(
            &["ps", "-a", "--format", "{{.Names}}", "--filter", f],
            &out(0, want),
            "podman 4.3 has no publish/expose filter",
        );
    }
    for f in ["label=tier", "label=owner", "label=tier=db", "label=nope"] {
        let a = ["ps", "-a", "--format", "{{.Names}}", "--filter", f];
        let (k, pm) = (p.keel(&a), p.podman(&a));
        assert_eq!(sorted(&k), sorted(&pm), "{a:?}: {}", stderr(&k));
    }
    // A bad port is refused with one line.
    let k = p.keel(&["ps", "-a", "--filter", "publish=http"]);
    assert_eq!(k.status.code(), Some(1));
    assert_eq!(
        stderr(&k)
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1
    );
    p.docker(
        &[
            "ps",
            "-a",
            "--filter",
            "name=pp",
            "--format",
            "{{.Label \"tier\"}}|{{.Label \"owner\"}}|{{.Label \"none\"}}|{{.Names}}",
        ],
        &out(0, "web|ann||pp\n"),
        "podman 4.3's ps rows have no Label method (exit 125)",
    );
    // docker's .Labels is `k=v,…`; podman 4.3 prints a Go map.
    p.docker(
        &["ps", "-a", "--filter", "name=pe", "--format", "{{.Labels}}"],
        &out(0, "tier=db\n"),
        "podman 4.3's .Labels is map[tier:db]",
    );
    // `json .` keeps the plain fields.
    let k = p.keel(&["ps", "-a", "--filter", "name=pe", "--format", "{{json .}}"]);
    let v: serde_json::Value = serde_json::from_slice(&k.stdout).unwrap();
    assert_eq!(v["Labels"], "tier=db", "{v}");
    both_ok(&p, &["rm", "-f", "pp", "pe"]);
}
