//! Issue 2 end to end: the image store against real peers (podman, skopeo,
//! Debian's docker-registry) and bad input that must fail cleanly.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Command;

use common::{CuttingProxy, Keel, Podman, Registry, busybox_tar, skopeo, skopeo_digest};

fn read_tar(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if !e.header().entry_type().is_file() {
            continue;
        }
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((name, data));
    }
    out
}

fn write_tar(path: &Path, entries: &[(String, Vec<u8>)]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.finish().unwrap();
}

fn sha256_hex(data: &[u8]) -> String {
    keel_oci::Digest::of(data).hex().to_string()
}

fn image_id(keel: &Keel, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&keel.ok(&["image", "inspect", name])).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

#[test]
fn podman_archives_load_with_podmans_image_id() {
    let tmp = tempfile::tempdir().unwrap();
    let podman = Podman::new();
    let tar = busybox_tar(tmp.path());
    podman.ok(&[
        "import",
        "-c",
        "CMD [\"sh\"]",
        tar.to_str().unwrap(),
        "localhost/pbb:1",
    ]);
    let podman_id = podman.ok(&["image", "inspect", "--format", "{{.Id}}", "localhost/pbb:1"]);
    let podman_id = format!("sha256:{}", podman_id.trim());
    for format in ["oci-archive", "docker-archive"] {
        let keel = Keel::new();
        let archive = tmp.path().join(format!("{format}.tar"));
        podman.ok(&[
            "save",
            "--format",
            format,
            "-o",
            archive.to_str().unwrap(),
            "localhost/pbb:1",
        ]);
        let out = keel.ok(&["load", "-i", archive.to_str().unwrap()]);
        assert_eq!(out, "Loaded image: localhost/pbb:1\n", "{format}");
        assert_eq!(image_id(&keel, "localhost/pbb:1"), podman_id, "{format}");
        let images = keel.images_json();
        assert_eq!(images[0]["Id"], podman_id.as_str());
        // The image is usable: it saves again and every blob verifies.
        keel.ok(&[
            "save",
            "-o",
            tmp.path().join("again.tar").to_str().unwrap(),
            "localhost/pbb:1",
        ]);
    }
}

#[test]
fn keel_save_loads_and_runs_in_podman() {
    let tmp = tempfile::tempdir().unwrap();
    let keel = Keel::new();
    let id = keel.seed_busybox();
    keel.ok(&["tag", "busybox", "localhost/kbb:2"]);
    let archive = tmp.path().join("k.tar");
    keel.ok(&["save", "-o", archive.to_str().unwrap(), "localhost/kbb:2"]);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&archive).unwrap().permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o644,
        "a saved archive is readable by others, like docker's"
    );
    let podman = Podman::new();
    let out = podman.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(out.contains("localhost/kbb:2"), "{out}");
    let pid = podman.ok(&["image", "inspect", "--format", "{{.Id}}", "localhost/kbb:2"]);
    assert_eq!(format!("sha256:{}", pid.trim()), id);
    let out = podman.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "localhost/kbb:2",
        "echo",
        "hello from keel",
    ]);
    assert_eq!(out, "hello from keel\n");
    // busybox's own applets answer, through the links the seed created.
    let out = podman.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "localhost/kbb:2",
        "sh",
        "-c",
        "ls /bin /sbin /usr/bin /usr/sbin | grep -vc -e : -e '^$' && cat /etc/passwd | head -1",
    ]);
    let mut lines = out.lines();
    assert!(lines.next().unwrap().parse::<u32>().unwrap() > 200, "{out}");
    assert!(lines.next().unwrap().starts_with("root:x:0:0:"), "{out}");
}

#[test]
fn push_pull_against_a_real_registry_and_skopeo() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start();
    let keel = Keel::new();
    keel.seed_busybox();
    let target = format!("{}/bb:v1", reg.host());
    keel.ok(&["tag", "busybox", &target]);
    let out = keel.ok(&["push", &target]);
    let pushed = out
        .split("digest: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(skopeo_digest(&target), pushed);

    // skopeo copies another image (gzip layers, from a podman-style OCI archive) in; keel pulls it.
    let podman = Podman::new();
    podman.ok(&[
        "import",
        busybox_tar(tmp.path()).to_str().unwrap(),
        "localhost/other:1",
    ]);
    let oci = tmp.path().join("o.tar");
    podman.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        oci.to_str().unwrap(),
        "localhost/other:1",
    ]);
    let other = format!("{}/other:1", reg.host());
    let st = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci-archive:{}", oci.display()),
        &format!("docker://{other}"),
    ]);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let skopeo_digest = skopeo_digest(&other);
    let fresh = Keel::new();
    let out = fresh.ok(&["pull", &other]);
    assert_eq!(out.trim(), format!("{other}"));
    let images = fresh.images_json();
    assert_eq!(images[0]["Digest"], skopeo_digest.as_str());
    // Pull by digest gives the identical image.
    fresh.ok(&["pull", &format!("{}/other@{skopeo_digest}", reg.host())]);
    let inspect: serde_json::Value =
        serde_json::from_str(&fresh.ok(&["image", "inspect", &other])).unwrap();
    assert_eq!(inspect[0]["Manifest"], skopeo_digest.as_str());
    assert_eq!(
        inspect[0]["RepoDigests"][0],
        format!("{}/other@{skopeo_digest}", reg.host()).as_str()
    );
}

#[test]
fn registry_basic_auth_and_login() {
    let reg = Registry::start_with_auth(Some(("alice", "s3cret")));
    let keel = Keel::new();
    keel.seed_busybox();
    let target = format!("{}/private:1", reg.host());
    keel.ok(&["tag", "busybox", &target]);
    let err = keel.fails(&["push", &target]);
    assert!(err.contains("hint: log in first"), "{err}");
    let err = keel.fails(&["login", "-u", "alice", "-p", "wrong", &reg.host()]);
    assert!(err.contains("logging in to"), "{err}");
    assert_eq!(
        keel.ok(&["login", "-u", "alice", "-p", "s3cret", &reg.host()]),
        "Login Succeeded\n"
    );
    keel.ok(&["push", &target]);
    let fresh = Keel::new();
    fresh.fails(&["pull", &target]);
    fresh.ok(&["pull", "--creds", "alice:s3cret", &target]);
    assert_eq!(
        keel.ok(&["logout", &reg.host()]),
        format!("Removing login credentials for {}\n", reg.host())
    );
    keel.fails(&["push", &target]);
}

/// docs/images.md says Docker's and podman's auth files are read too: a pull
/// from a registry with basic auth succeeds with credentials only in
/// `$DOCKER_CONFIG/config.json` (Docker's format, written here: no docker CLI
/// on this machine), or only in the file `podman login --authfile` wrote.
#[test]
fn docker_and_podman_auth_files_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start_with_auth(Some(("alice", "s3cret")));
    let keel = Keel::new();
    keel.seed_busybox();
    let target = format!("{}/private:1", reg.host());
    keel.ok(&["tag", "busybox", &target]);
    keel.ok(&["push", "--creds", "alice:s3cret", &target]);
    let pull = |k: &Keel, env: (&str, &Path)| {
        k.cmd()
            .env(env.0, env.1)
            .args(["pull", "-q", &target])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    // Without credentials the pull is refused.
    let fresh = Keel::new();
    let o = pull(&fresh, ("DOCKER_CONFIG", &tmp.path().join("none")));
    assert!(!o.status.success());
    // Docker's config.json.
    let docker = tmp.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:s3cret");
    std::fs::write(
        docker.join("config.json"),
        serde_json::json!({"auths": {(reg.host()): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let o = pull(&fresh, ("DOCKER_CONFIG", &docker));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // podman's auth file, written by podman itself.
    let podman = Podman::new();
    let authfile = tmp.path().join("podman-auth.json");
    podman.ok(&[
        "login",
        "--tls-verify=false",
        "--authfile",
        authfile.to_str().unwrap(),
        "-u",
        "alice",
        "-p",
        "s3cret",
        &reg.host(),
    ]);
    let other = Keel::new();
    let o = pull(&other, ("REGISTRY_AUTH_FILE", &authfile));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Loads a mangled archive: a clean one-line failure and the store exactly as before.
fn assert_load_fails(keel: &Keel, archive: &Path, expect: &str) {
    let before = keel.snapshot_store();
    let images_before = keel.ok(&["images", "-a", "-q"]);
    let err = keel.fails(&["load", "-i", archive.to_str().unwrap()]);
    assert!(err.contains(expect), "expected {expect:?} in: {err}");
    assert_eq!(
        keel.snapshot_store(),
        before,
        "store changed after a failed load ({expect})"
    );
    assert_eq!(keel.ok(&["images", "-a", "-q"]), images_before);
}

#[test]
fn bad_archives_fail_cleanly_and_leave_the_store_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let keel = Keel::new();
    keel.seed_busybox();
    let good = tmp.path().join("good.tar");
    keel.ok(&["save", "-o", good.to_str().unwrap(), "busybox"]);
    let target = Keel::new();
    target.ok(&["image", "seed-busybox", "base:1"]);
    let entries = read_tar(&good);
    let layer_name = entries.iter().max_by_key(|e| e.1.len()).unwrap().0.clone();

    // Truncated: the stream ends in the middle of the layer.
    let bytes = std::fs::read(&good).unwrap();
    let cut = tmp.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).unwrap();
    assert_load_fails(&target, &cut, "archive is truncated or corrupt");

    // Gzip that stops half way.
    let gz = tmp.path().join("cut.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &bytes).unwrap();
    let z = enc.finish().unwrap();
    std::fs::write(&gz, &z[..z.len() / 2]).unwrap();
    assert_load_fails(&target, &gz, "truncated or corrupt");

    // A flipped byte in the layer: its content no longer matches its name.
    let mut bad = entries.clone();
    for e in &mut bad {
        if e.0 == layer_name {
            let mid = e.1.len() / 2;
            e.1[mid] ^= 0xff;
        }
    }
    let corrupt = tmp.path().join("corrupt.tar");
    write_tar(&corrupt, &bad);
    assert_load_fails(&target, &corrupt, "digest mismatch");

    // Docker layout only, with a manifest.json that is not JSON.
    let docker_only: Vec<_> = entries
        .iter()
        .filter(|e| e.0 != "index.json" && e.0 != "oci-layout")
        .map(|e| {
            if e.0 == "manifest.json" {
                (e.0.clone(), b"[{\"Config\": ".to_vec())
            } else {
                e.clone()
            }
        })
        .collect();
    let malformed = tmp.path().join("malformed.tar");
    write_tar(&malformed, &docker_only);
    assert_load_fails(&target, &malformed, "malformed manifest.json");

    // OCI layout whose layer has a media type nobody knows.
    let index: serde_json::Value =
        serde_json::from_slice(&entries.iter().find(|e| e.0 == "index.json").unwrap().1).unwrap();
    let mdig = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let mname = format!("blobs/sha256/{mdig}");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&entries.iter().find(|e| e.0 == mname).unwrap().1).unwrap();
    manifest["layers"][0]["mediaType"] = "application/vnd.example.unknown.layer".into();
    let mbytes = serde_json::to_vec(&manifest).unwrap();
    let new_mname = format!("blobs/sha256/{}", sha256_hex(&mbytes));
    let mut idx2 = index.clone();
    idx2["manifests"][0]["digest"] = format!("sha256:{}", sha256_hex(&mbytes)).into();
    idx2["manifests"][0]["size"] = mbytes.len().into();
    let unknown: Vec<_> = entries
        .iter()
        .filter(|e| e.0 != "manifest.json" && e.0 != mname)
        .map(|e| {
            if e.0 == "index.json" {
                (e.0.clone(), serde_json::to_vec(&idx2).unwrap())
            } else {
                e.clone()
            }
        })
        .chain(std::iter::once((new_mname, mbytes)))
        .collect();
    let unknown_tar = tmp.path().join("unknown.tar");
    write_tar(&unknown_tar, &unknown);
    assert_load_fails(
        &target,
        &unknown_tar,
        "unsupported media type \"application/vnd.example.unknown.layer\"",
    );

    // A manifest blob whose bytes do not match the digest index.json names.
    let mut wrong = entries.clone();
    for e in &mut wrong {
        if e.0 == mname {
            e.1.push(b' ');
        }
    }
    let wrong_tar = tmp.path().join("wrong.tar");
    write_tar(&wrong_tar, &wrong);
    assert_load_fails(&target, &wrong_tar, "digest mismatch");

    // Not an archive at all.
    let junk = tmp.path().join("junk.tar");
    std::fs::write(&junk, b"this is not a tarball\n").unwrap();
    assert_load_fails(&target, &junk, "truncated or corrupt");

    // Missing file: a clear error with the path, nothing touched.
    let err = target.fails(&[
        "load",
        "-i",
        tmp.path().join("absent.tar").to_str().unwrap(),
    ]);
    assert!(err.contains("absent.tar"), "{err}");

    // And the good archive still loads after all that.
    assert_eq!(
        target.ok(&["load", "-i", good.to_str().unwrap()]),
        "Loaded image: busybox:latest\n"
    );
}

#[test]
fn push_to_a_registry_that_fails_mid_push_fails_cleanly() {
    let reg = Registry::start();
    let proxy = CuttingProxy::start(reg.port, 256 * 1024);
    let keel = Keel::new();
    keel.seed_busybox();
    let target = format!("127.0.0.1:{}/cut:1", proxy.port);
    keel.ok(&["tag", "busybox", &target]);
    let before = keel.snapshot_store();
    let err = keel.fails(&["push", &target]);
    assert!(
        err.contains(&format!("pushing 127.0.0.1:{}/cut:1", proxy.port)),
        "{err}"
    );
    assert_eq!(keel.snapshot_store(), before);
    // Nothing was tagged in the registry.
    let st = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/cut:1", reg.host()),
    ]);
    assert!(!st.status.success());
    // Pull from a port where nothing listens: a hint about the registry.
    let closed = common::free_port();
    let err = keel.fails(&["pull", &format!("127.0.0.1:{closed}/x:1")]);
    assert!(err.contains("hint: is the registry running"), "{err}");
}

#[test]
fn compressed_archives_and_layers_load() {
    let tmp = tempfile::tempdir().unwrap();
    let keel = Keel::new();
    let id = keel.seed_busybox();
    let plain = tmp.path().join("p.tar");
    keel.ok(&["save", "-o", plain.to_str().unwrap(), "busybox"]);
    let raw = std::fs::read(&plain).unwrap();
    for (name, data) in [
        ("gz", {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, &raw).unwrap();
            e.finish().unwrap()
        }),
        ("zst", {
            let o = Command::new("zstd")
                .args(["-q", "-c", plain.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(o.status.success());
            o.stdout
        }),
    ] {
        let p = tmp.path().join(format!("a.tar.{name}"));
        std::fs::write(&p, data).unwrap();
        let k = Keel::new();
        k.ok(&["load", "-i", p.to_str().unwrap()]);
        assert_eq!(image_id(&k, "busybox"), id, "{name}");
    }
    // Layers compressed inside a docker-archive (gzip and zstd) load and keep the ID.
    let entries = read_tar(&plain);
    let layer_name = entries.iter().max_by_key(|e| e.1.len()).unwrap().0.clone();
    for comp in ["gzip", "zstd"] {
        let layer = &entries.iter().find(|e| e.0 == layer_name).unwrap().1;
        let layer_file = tmp.path().join("layer.tar");
        std::fs::write(&layer_file, layer).unwrap();
        let o = Command::new(comp)
            .args(["-q", "-c", layer_file.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success());
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&entries.iter().find(|e| e.0 == "manifest.json").unwrap().1)
                .unwrap();
        manifest[0]["Layers"][0] = "layer.tar.c".into();
        let docker: Vec<_> = entries
            .iter()
            .filter(|e| e.0 == manifest[0]["Config"].as_str().unwrap())
            .cloned()
            .chain([
                (
                    "manifest.json".to_string(),
                    serde_json::to_vec(&manifest).unwrap(),
                ),
                ("layer.tar.c".to_string(), o.stdout),
            ])
            .collect();
        let p = tmp.path().join(format!("docker-{comp}.tar"));
        write_tar(&p, &docker);
        let k = Keel::new();
        k.ok(&["load", "-i", p.to_str().unwrap()]);
        assert_eq!(image_id(&k, "busybox"), id, "{comp}");
        k.ok(&[
            "save",
            "-o",
            tmp.path().join("resave.tar").to_str().unwrap(),
            "busybox",
        ]);
    }
}

#[test]
fn rmi_tag_and_prune_follow_docker() {
    let keel = Keel::new();
    let id = keel.seed_busybox();
    keel.ok(&["tag", "busybox", "example.com/team/bb:1"]);
    let err = keel.fails(&["rmi", &id[7..19]]);
    assert!(
        err.contains("image is referenced in multiple repositories"),
        "{err}"
    );
    assert!(
        err.contains("hint: remove the tags one by one, or pass -f"),
        "{err}"
    );
    assert_eq!(
        keel.ok(&["rmi", "example.com/team/bb:1"]),
        "Untagged: example.com/team/bb:1\n"
    );
    keel.ok(&["tag", &id, "again:1"]);
    let out = keel.ok(&["rmi", "-f", &id]);
    assert!(
        out.contains("Untagged: busybox:latest") && out.contains("Untagged: again:1"),
        "{out}"
    );
    assert!(out.ends_with(&format!("Deleted: {id}\n")), "{out}");
    let err = keel.fails(&["rmi", "busybox"]);
    assert!(
        err.contains("no such image: busybox") && err.contains("hint: "),
        "{err}"
    );
    // Every blob went with the image.
    assert!(
        keel.snapshot_store()
            .iter()
            .all(|(p, _)| !p.contains("blobs/"))
    );

    // A moved tag leaves a dangling image; prune collects it and its blobs.
    let first = keel.seed_busybox();
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other");
    std::fs::create_dir_all(other.join("etc")).unwrap();
    std::fs::write(other.join("etc/motd"), "other\n").unwrap();
    keel.ok(&["import", other.to_str().unwrap(), "busybox:latest"]);
    let q = keel.ok(&["images", "-q", "--no-trunc"]);
    assert!(q.contains(&first), "the dangling image is listed: {q}");
    let out = keel.ok(&["image", "prune", "-f"]);
    assert!(
        out.starts_with(&format!("Deleted Images:\ndeleted: {first}\n")),
        "{out}"
    );
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert!(!out.contains("Total reclaimed space: 0B"), "{out}");
    assert!(!keel.ok(&["images", "-q", "--no-trunc"]).contains(&first));
    keel.fails(&["image", "prune"]);
    let out = keel.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert_eq!(keel.ok(&["images", "-q"]), "");
}

#[test]
fn concurrent_keel_processes_share_one_store() {
    let tmp = tempfile::tempdir().unwrap();
    let keel = Keel::new();
    let tar = busybox_tar(tmp.path());
    let children: Vec<_> = (0..8)
        .map(|i| {
            keel.cmd()
                .args(["import", tar.to_str().unwrap(), &format!("multi:{i}")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let out = keel.ok(&["images", "multi"]);
    for i in 0..8 {
        assert!(out.contains(&format!("multi        {i}")), "{out}");
    }
    // Every image is complete: saving all of them reads (and verifies) every blob.
    let names: Vec<String> = (0..8).map(|i| format!("multi:{i}")).collect();
    let mut args = vec!["save", "-o"];
    let out_path = tmp.path().join("all.tar");
    args.push(out_path.to_str().unwrap());
    args.extend(names.iter().map(String::as_str));
    keel.ok(&args);
}

#[test]
fn cli_output_snapshots() {
    let keel = Keel::new();
    keel.seed_busybox();
    keel.ok(&["tag", "busybox", "localhost:5000/app/web:1.0"]);
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"[0-9a-f]{12}", "[id]");
    settings.add_filter(
        r"(Less than a second|\d+ seconds?|About a minute) ago",
        "[ago]",
    );
    settings.add_filter(r"\d+(\.\d+)?[kMG]?B", "[size]");
    // Column widths follow the (filtered) values; alignment has its own unit test.
    settings.add_filter(r"[ ]{2,}", " | ");
    settings.add_filter(r" \| \n", "\n");
    settings.bind(|| {
        insta::assert_snapshot!("images", keel.ok(&["images"]));
        insta::assert_snapshot!("history", keel.ok(&["history", "busybox"]));
        insta::assert_snapshot!("rmi_missing", keel.fails(&["rmi", "nope:1"]));
        insta::assert_snapshot!("bad_reference", keel.fails(&["tag", "busybox", "Bad:Name"]));
    });
}

#[test]
fn registry_bearer_token_auth() {
    let reg = common::TokenRegistry::start("alice", "s3cret");
    let keel = Keel::new();
    keel.seed_busybox();
    let target = format!("{}/tokens/bb:1", reg.registry.host());
    keel.ok(&["tag", "busybox", &target]);
    // Without credentials the token server refuses, so the push does too.
    let err = keel.fails(&["push", &target]);
    assert!(err.contains("pushing"), "{err}");
    keel.ok(&["login", "-u", "alice", "-p", "s3cret", &reg.registry.host()]);
    keel.ok(&["push", &target]);
    assert!(reg.tokens_issued.load(std::sync::atomic::Ordering::SeqCst) > 0);
    let fresh = Keel::new();
    fresh.ok(&["pull", "--creds", "alice:s3cret", &target]);
    assert_eq!(image_id(&fresh, &target), image_id(&keel, &target));
}

/// Everything under `<root>/oci`, byte for byte: (path, content digest or
/// symlink target, or `dir`).
fn oci_bytes(keel: &Keel) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if md.is_dir() {
                out.push((rel, "dir".into()));
                walk(root, &p, out);
            } else if md.file_type().is_symlink() {
                out.push((rel, std::fs::read_link(&p).unwrap().display().to_string()));
            } else {
                out.push((rel, sha256_hex(&std::fs::read(&p).unwrap())));
            }
        }
    }
    let root = keel.root.path().join("oci");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out.sort();
    out
}

/// A tar entry: name, type, link target.
type Entry = (&'static str, tar::EntryType, &'static str);

/// A layer tar written entry by entry with names and link targets verbatim
/// (the tar crate's setters refuse `..`).
fn hostile_layer(entries: &[Entry], padding: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, kind: tar::EntryType, link: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    if padding > 0 {
        // Incompressible, so the layer goes the way of big files.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let data: Vec<u8> = (0..padding)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        add("pad", tar::EntryType::Regular, "", &data);
    }
    add("ok", tar::EntryType::Regular, "", b"fine");
    for (name, kind, link) in entries {
        add(name, *kind, link, b"");
    }
    b.into_inner().unwrap()
}

/// The hostile layers docker refuses at import, each with the entry its
/// refusal must name: `..` names, writes through symlinks leading out
/// (absolute and relative), hardlinks leading out.
fn hostile_layers() -> Vec<(&'static str, Vec<Entry>)> {
    use tar::EntryType::{Link, Regular, Symlink};
    vec![
        ("../../tmp/x", vec![("../../tmp/x", Regular, "")]),
        (
            "a/etc/x",
            vec![("a", Symlink, "/"), ("a/etc/x", Regular, "")],
        ),
        (
            "b/etc/x",
            vec![("b", Symlink, "../.."), ("b/etc/x", Regular, "")],
        ),
        ("h", vec![("h", Link, "../../etc/shadow")]),
    ]
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, data).unwrap();
    e.finish().unwrap()
}

fn image_config(diff_id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": keel_oci::archive::host_arch(),
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
    }))
    .unwrap()
}

/// A docker-archive (`<id>/layer.tar` names, as `docker save` wrote them
/// before Docker 25) with one image whose only layer is `layer`.
fn docker_archive(path: &Path, layer: &[u8]) {
    let diff_id = sha256_hex(layer);
    let config = image_config(&diff_id);
    let config_name = format!("{}.json", sha256_hex(&config));
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["evil:1"],
        "Layers": [format!("{diff_id}/layer.tar")],
    }]);
    write_tar(
        path,
        &[
            (config_name, config),
            (format!("{diff_id}/layer.tar"), layer.to_vec()),
            (
                "manifest.json".into(),
                serde_json::to_vec(&manifest).unwrap(),
            ),
        ],
    );
}

/// An OCI archive (oci-layout, index.json, blobs) whose layer is gzipped.
fn oci_archive(path: &Path, layer: &[u8]) {
    let gz = gzip(layer);
    let config = image_config(&sha256_hex(layer));
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", sha256_hex(&config)), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": format!("sha256:{}", sha256_hex(&gz)), "size": gz.len()}],
    }))
    .unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": format!("sha256:{}", sha256_hex(&manifest)),
                       "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": "localhost/evil:1"}}],
    });
    let blob = |b: &[u8]| (format!("blobs/sha256/{}", sha256_hex(b)), b.to_vec());
    write_tar(
        path,
        &[
            (
                "oci-layout".into(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("index.json".into(), serde_json::to_vec(&index).unwrap()),
            blob(&manifest),
            blob(&config),
            blob(&gz),
        ],
    );
}

/// Runs `args`, expecting the one-line refusal naming `entry` (after
/// progress lines, for a pull), with the store byte for byte as before.
fn assert_refused(keel: &Keel, args: &[&str], entry: &str) {
    let before = oci_bytes(keel);
    let err = keel.fails(args);
    if args[0] != "pull" {
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap();
    assert!(
        line.contains(&format!("entry {entry:?}")) && line.contains("refusing layer "),
        "{args:?}: the error must name {entry:?}: {err}"
    );
    assert_eq!(oci_bytes(keel), before, "{args:?} changed the store");
}

/// Regression (issue 14, defect 1): `keel import` stored a layer with an
/// entry `../../tmp/x` and only refused it when a container was created;
/// `keel save` then handed it on. Import and load (docker-archive and OCI
/// archive, small layers and ones big enough to be streamed) refuse every
/// hostile layer up front, naming the entry, and store nothing.
#[test]
fn hostile_layers_are_refused_at_import_and_load() {
    let tmp = tempfile::tempdir().unwrap();
    let keel = Keel::new();
    keel.seed_busybox();
    for (i, (entry, entries)) in hostile_layers().into_iter().enumerate() {
        for padding in [0, 3 << 20] {
            let layer = hostile_layer(&entries, padding);
            let plain = tmp.path().join(format!("{i}-{padding}.tar"));
            std::fs::write(&plain, &layer).unwrap();
            assert_refused(&keel, &["import", plain.to_str().unwrap(), "evil:1"], entry);
            let gz = tmp.path().join(format!("{i}-{padding}.tar.gz"));
            std::fs::write(&gz, gzip(&layer)).unwrap();
            assert_refused(&keel, &["import", gz.to_str().unwrap()], entry);
            let docker = tmp.path().join(format!("docker-{i}-{padding}.tar"));
            docker_archive(&docker, &layer);
            assert_refused(&keel, &["load", "-i", docker.to_str().unwrap()], entry);
            let oci = tmp.path().join(format!("oci-{i}-{padding}.tar"));
            oci_archive(&oci, &layer);
            assert_refused(&keel, &["load", "-i", oci.to_str().unwrap()], entry);
        }
    }
    // The same archives with the hostile entries left out load: the
    // refusals are about those entries, not about the archives.
    let layer = hostile_layer(&[], 0);
    let docker = tmp.path().join("docker-fine.tar");
    docker_archive(&docker, &layer);
    keel.ok(&["load", "-i", docker.to_str().unwrap()]);
    let oci = tmp.path().join("oci-fine.tar");
    oci_archive(&oci, &layer);
    keel.ok(&["load", "-i", oci.to_str().unwrap()]);
    let plain = tmp.path().join("fine.tar");
    std::fs::write(&plain, &layer).unwrap();
    keel.ok(&["import", plain.to_str().unwrap(), "fine:1"]);
    // An absolute symlink is fine as a symlink; only writing through it is not.
    let layer = hostile_layer(&[("abs", tar::EntryType::Symlink, "/etc/passwd")], 0);
    std::fs::write(&plain, &layer).unwrap();
    keel.ok(&["import", plain.to_str().unwrap(), "fine:2"]);
}

/// Regression (issue 14, defect 1), the registry way in: a hostile image
/// pushed to a real registry by skopeo is refused by `keel pull` naming the
/// entry, and the store stays byte for byte as it was.
#[test]
fn hostile_layers_are_refused_at_pull() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start();
    let keel = Keel::new();
    keel.seed_busybox();
    for (i, (entry, entries)) in hostile_layers().into_iter().enumerate() {
        let archive = tmp.path().join(format!("evil-{i}.tar"));
        docker_archive(&archive, &hostile_layer(&entries, 0));
        let target = format!("{}/evil{i}:1", reg.host());
        let st = skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            &format!("docker-archive:{}", archive.display()),
            &format!("docker://{target}"),
        ]);
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        assert_refused(&keel, &["pull", "-q", &target], entry);
    }
}
