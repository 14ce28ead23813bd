//! The parity comparator: an image archive (`keel save`, `podman save`) to a
//! normalized description — the root filesystem after applying every layer
//! in order with whiteouts honoured, the config fields a Dockerfile sets and
//! the history — so that two builders' images can be compared line by line.
//!
//! A description is a sorted map from a key (`fs /path`, `config Env`,
//! `history 03`) to a value; mtimes, digests and IDs are left out because
//! two correct builds legitimately differ in them. Small text files show
//! their contents, others a sha256, so that a diff reads on its own.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use keel_oci::image::Image;
use keel_oci::layer::{WhiteoutMode, apply_layer, decompressed};
use keel_oci::store::ImageStore;

/// Config fields a Dockerfile sets (Docker's spelling; OCI configs use the
/// same names for those they have).
pub const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "Healthcheck",
    "StopSignal",
    "Shell",
    "OnBuild",
];

/// Labels one builder adds on its own (buildah stamps its version).
const TOOL_LABELS: &[&str] = &["io.buildah.version"];

/// A normalized image: key → value, sorted by key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description {
    pub entries: BTreeMap<String, String>,
}

impl Description {
    /// Loads the single image of an archive (OCI or docker layout, any
    /// compression) and describes it.
    pub fn of_archive(archive: &Path) -> Description {
        let tmp = tempfile::Builder::new()
            .prefix("keel-parity-")
            .tempdir()
            .unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        let f =
            fs::File::open(archive).unwrap_or_else(|e| panic!("open {}: {e}", archive.display()));
        let loaded = keel_oci::archive::load(&store, f)
            .unwrap_or_else(|e| panic!("load {}: {e}", archive.display()));
        assert_eq!(loaded.len(), 1, "{} holds one image", archive.display());
        let image = Image::load(store.blobs(), &loaded[0].manifest).unwrap();
        let rootfs = tmp.path().join("rootfs");
        fs::create_dir(&rootfs).unwrap();
        for layer in image.layer_digests().unwrap() {
            let r = decompressed(store.blobs().open(&layer).unwrap()).unwrap();
            apply_layer(r, &rootfs, WhiteoutMode::Flat)
                .unwrap_or_else(|e| panic!("apply layer {layer}: {e}"));
        }
        let mut d = Description::default();
        d.add_tree(&rootfs);
        d.add_config(&image.config_json());
        d
    }

    fn add_tree(&mut self, root: &Path) {
        let mut files = Vec::new();
        walk(root, root, &mut files);
        // Hardlink groups: entries sharing an inode, named by their first path.
        let mut by_inode: HashMap<(u64, u64), Vec<String>> = HashMap::new();
        for (rel, md) in &files {
            if !md.is_dir() && md.nlink() > 1 {
                by_inode
                    .entry((md.dev(), md.ino()))
                    .or_default()
                    .push(rel.clone());
            }
        }
        for (rel, md) in &files {
            let mut v = describe_entry(&root.join(rel.trim_start_matches('/')), md);
            if let Some(g) = by_inode.get(&(md.dev(), md.ino()))
                && g.len() > 1
            {
                let first = g.iter().min().unwrap();
                write!(v, " link={}", escape(first)).unwrap();
            }
            self.entries.insert(format!("fs {}", escape(rel)), v);
        }
    }

    fn add_config(&mut self, config: &serde_json::Value) {
        let c = &config["config"];
        for field in CONFIG_FIELDS {
            let mut v = c.get(*field).cloned().unwrap_or(serde_json::Value::Null);
            if *field == "Labels"
                && let Some(m) = v.as_object_mut()
            {
                for l in TOOL_LABELS {
                    m.remove(*l);
                }
            }
            self.entries
                .insert(format!("config {field}"), render_json(&normalize(v)));
        }
        let history = config["history"].as_array().cloned().unwrap_or_default();
        self.entries
            .insert("history count".into(), history.len().to_string());
        for (i, h) in history.iter().enumerate() {
            let empty = h["empty_layer"].as_bool().unwrap_or(false);
            let by = h["created_by"].as_str().unwrap_or("");
            self.entries.insert(
                format!("history {i:02}"),
                format!("empty_layer={empty} {}", normalize_created_by(by)),
            );
        }
    }

    /// This description relative to a base image's: every config and
    /// history line, the filesystem entries that are new or differ, and
    /// `gone /path` for each base entry that no longer exists. This is what
    /// hand-written expectations spell out.
    pub fn delta_from(&self, base: &Description) -> Description {
        let mut out = Description::default();
        for (k, v) in &self.entries {
            if !k.starts_with("fs ") || base.entries.get(k) != Some(v) {
                out.entries.insert(k.clone(), v.clone());
            }
        }
        for k in base.entries.keys() {
            if let Some(p) = k.strip_prefix("fs ")
                && !self.entries.contains_key(k)
            {
                out.entries.insert(format!("gone {p}"), String::new());
            }
        }
        out
    }

    /// Without the empty `/etc/hostname` and `/run` that buildah's RUN
    /// leaves behind as mount points (a Dockerfile did not ask for them;
    /// `BuildKit` leaves none). Kept when a step put something there.
    pub fn without_buildah_run_mountpoints(mut self) -> Description {
        if self.entries.get("fs /etc/hostname").map(String::as_str) == Some("file 0755 0:0 \"\"") {
            self.entries.remove("fs /etc/hostname");
        }
        let run_has_children = self.entries.keys().any(|k| k.starts_with("fs /run/"));
        if !run_has_children
            && self.entries.get("fs /run").map(String::as_str) == Some("dir 0755 0:0")
        {
            self.entries.remove("fs /run");
        }
        self
    }

    /// One line per entry: `key value`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.entries {
            if v.is_empty() {
                writeln!(s, "{k}").unwrap();
            } else {
                writeln!(s, "{k} {v}").unwrap();
            }
        }
        s
    }

    /// Parses what [`Description::render`] wrote (blank lines and `#`
    /// comments allowed): the format of checked-in expectations.
    pub fn parse(text: &str) -> Description {
        let mut d = Description::default();
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
            let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
            let prev = d
                .entries
                .insert(format!("{kind} {name}"), value.to_string());
            assert!(prev.is_none(), "duplicate line for {kind} {name}");
        }
        d
    }

    /// A readable diff (`-` only in `self`, `+` only in `other`), empty when equal.
    pub fn diff(&self, other: &Description, left: &str, right: &str) -> String {
        let mut s = String::new();
        let keys: std::collections::BTreeSet<&String> =
            self.entries.keys().chain(other.entries.keys()).collect();
        for k in keys {
            let (a, b) = (self.entries.get(k), other.entries.get(k));
            if a == b {
                continue;
            }
            if let Some(a) = a {
                writeln!(s, "- {k} {a}    ({left})").unwrap();
            }
            if let Some(b) = b {
                writeln!(s, "+ {k} {b}    ({right})").unwrap();
            }
        }
        s
    }
}

/// Every entry below `root` (not `root` itself), with `/`-rooted paths.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, fs::Metadata)>) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let md = fs::symlink_metadata(&p).unwrap();
        let rel = format!("/{}", p.strip_prefix(root).unwrap().display());
        let is_dir = md.is_dir();
        out.push((rel, md));
        if is_dir {
            walk(root, &p, out);
        }
    }
}

fn describe_entry(path: &Path, md: &fs::Metadata) -> String {
    let ft = md.file_type();
    let owner = format!("{}:{}", md.uid(), md.gid());
    let mode = format!("{:04o}", md.mode() & 0o7777);
    if ft.is_symlink() {
        let t = fs::read_link(path).unwrap();
        format!("symlink {owner} -> {}", escape(&t.display().to_string()))
    } else if ft.is_dir() {
        format!("dir {mode} {owner}")
    } else if ft.is_file() {
        let mut data = Vec::new();
        fs::File::open(path)
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        format!("file {mode} {owner} {}", content(&data))
    } else {
        let kind = if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "socket"
        };
        // glibc's encoding of dev_t.
        let rdev = md.rdev();
        let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
        let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
        format!("{kind} {mode} {owner} {major},{minor}")
    }
}

/// Short printable text as a JSON string, anything else as its sha256 and size.
fn content(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(s) if s.len() <= 80 && s.chars().all(|c| !c.is_control() || c == '\n') => {
            serde_json::to_string(s).unwrap()
        }
        _ => format!(
            "sha256:{} {}B",
            keel_oci::Digest::of(data).hex(),
            data.len()
        ),
    }
}

/// Paths as one space-free token: whitespace, control characters and `\`
/// become `\xNN`.
fn escape(p: &str) -> String {
    let mut s = String::new();
    for c in p.chars() {
        if c.is_whitespace() || c.is_control() || c == '\\' {
            let mut b = [0; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                write!(s, "\\x{byte:02x}").unwrap();
            }
        } else {
            s.push(c);
        }
    }
    s
}

/// Absent, `null`, `""`, `[]` and `{}` mean the same to a runtime, and
/// builders differ in which they write (podman's docker format has
/// `"Entrypoint": []`, its OCI format nothing).
fn normalize(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) if s.is_empty() => serde_json::Value::Null,
        serde_json::Value::Object(m) if m.is_empty() => serde_json::Value::Null,
        serde_json::Value::Array(a) if a.is_empty() => serde_json::Value::Null,
        v => v,
    }
}

/// Compact JSON with sorted object keys (`serde_json` maps are sorted).
fn render_json(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap()
}

/// `created_by` as written by the builders, with whitespace runs collapsed
/// and the source digests of COPY/ADD (`file:<hex>`, `dir:<hex>`,
/// `multi:<hex>`) masked: buildah hashes a tar stream of its own making, so
/// no other tool can reproduce those digests.
fn normalize_created_by(s: &str) -> String {
    s.split_whitespace()
        .map(|w| {
            for kind in ["file:", "dir:", "multi:"] {
                if let Some(hex) = w.strip_prefix(kind)
                    && hex.len() == 64
                    && hex.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return format!("{kind}<digest>");
                }
            }
            w.to_string()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_parse_round_trip_and_diff() {
        let mut a = Description::default();
        a.entries
            .insert("fs /a".into(), "file 0644 0:0 \"x\\n\"".into());
        a.entries.insert("config Cmd".into(), "[\"sh\"]".into());
        let b = Description::parse(&format!("# comment\n\n{}", a.render()));
        assert_eq!(a, b);
        let mut c = a.clone();
        c.entries
            .insert("fs /a".into(), "file 0600 0:0 \"x\\n\"".into());
        let d = a.diff(&c, "left", "right");
        assert_eq!(
            d,
            "- fs /a file 0644 0:0 \"x\\n\"    (left)\n+ fs /a file 0600 0:0 \"x\\n\"    (right)\n"
        );
        assert_eq!(a.diff(&b, "l", "r"), "");
    }

    #[test]
    fn masks_only_buildah_source_digests() {
        let hex = "70e1feda437d4dd6f2c0e35335ca6ada9a7e1550e20a6fa1470a3da1ecde7c19";
        assert_eq!(
            normalize_created_by(&format!("/bin/sh -c #(nop) ADD  multi:{hex} in /dir/ ")),
            "/bin/sh -c #(nop) ADD multi:<digest> in /dir/"
        );
        assert_eq!(
            normalize_created_by("COPY file:abc in /x"),
            "COPY file:abc in /x"
        );
    }

    #[test]
    fn escapes_spaces_and_short_text() {
        assert_eq!(escape("/a b\\c"), "/a\\x20b\\x5cc");
        assert_eq!(content(b"hi\n"), "\"hi\\n\"");
        assert!(content(&[0u8, 1, 2]).starts_with("sha256:"));
        assert!(content(&[b'a'; 81]).ends_with(" 81B"));
    }
}
