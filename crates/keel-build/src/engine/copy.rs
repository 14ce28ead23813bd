//! `COPY` and `ADD`: sources from the context, another stage or image,
//! heredocs or URLs; their hashes are the step's identity; the copy itself
//! writes into an overlay of the stage.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use keel_dockerfile::Span;
use serde_json::json;

use super::state::State;
use super::{At, Engine, abs_path, loc, sha};
use crate::context::{SelectError, SourceRoot};
use crate::error::{BuildError, FetchError, Result, io_err};
use crate::fsops::{self, Overrides};

impl Engine<'_> {
    #[allow(clippy::too_many_lines)]
    pub(super) fn copy_step(
        &self,
        st: &mut State,
        at: At<'_>,
        span: Span,
        c: &CopyArgs<'_>,
    ) -> Result<()> {
        let kw = if c.add { "ADD" } else { "COPY" };
        let mut used = BTreeMap::new();
        let dest_raw = self.expand(st, c.dest, &mut used)?;
        let dest = abs_path(&st.workdir(), &dest_raw);
        let mut sources = Vec::new();
        for s in c.sources {
            sources.push(self.expand(st, s, &mut used)?);
        }
        let chown = c.chown.map(|s| self.expand(st, s, &mut used)).transpose()?;
        let chmod = match c.chmod {
            Some(m) => {
                let m = self.expand(st, m, &mut used)?;
                Some(u32::from_str_radix(&m, 8).map_err(|_| {
                    self.step_err(
                        span,
                        format!("invalid --chmod {m:?}: want an octal mode"),
                        None,
                    )
                })?)
            }
            None => None,
        };
        let instruction = serde_json::to_string(&json!({
            "op": kw,
            "sources": sources,
            "dest": dest,
            "chown": chown,
            "chmod": chmod,
            "parents": c.parents,
            "exclude": c.exclude,
            "pending": st.pending,
            "workdir": st.workdir(),
        }))
        .expect("json");
        // The source root: another stage or image, or the context.
        let tmp_src = self.tmp_dir()?;
        let (from_layers, from_id) = match c.from {
            Some(f) => {
                let (l, id) = self.source_of(f, span)?;
                (Some(l), id)
            }
            None => (None, String::new()),
        };
        let from_hashes = || BTreeMap::from([(format!("--from={from_id}"), sources.join(" "))]);
        // Another stage's content is named by its key: a hit needs no mount.
        if c.from.is_some() && c.heredocs.is_empty() {
            let mut inputs = Self::inputs(st, instruction.clone());
            inputs.args.clone_from(&used);
            inputs.sources = from_hashes();
            if self.hit(st, at.label, at.step, &inputs.key()) {
                st.pending.clear();
                return Ok(());
            }
        }
        let mut src_unmount = None;
        let src_dir: PathBuf = match &from_layers {
            Some(layers) => {
                let lowers = self.lowerdirs(layers)?;
                let mounted = self.mount(tmp_src.path(), &lowers)?;
                let merged = mounted.path.clone();
                src_unmount = Some(mounted);
                merged
            }
            None => match &self.opts.context {
                Some(c) => c.clone(),
                None => tmp_src.path().to_path_buf(),
            },
        };
        let root = SourceRoot {
            dir: &src_dir,
            ignore: if c.from.is_some() {
                None
            } else {
                self.ignore.as_ref()
            },
            is_context: c.from.is_none(),
        };
        let mut selected = Vec::new();
        // --parents: the part of a source before its last `/./` is not kept.
        let mut pivots: BTreeMap<PathBuf, String> = BTreeMap::new();
        let mut urls = Vec::new();
        for s in &sources {
            if c.add && (s.starts_with("http://") || s.starts_with("https://")) {
                urls.push(s.clone());
                continue;
            }
            if c.from.is_none() && self.opts.context.is_none() {
                return Err(self.step_err(
                    span,
                    format!("{kw} {s}: there is no build context (the Dockerfile came from stdin)"),
                    Some("pass a context directory instead of -"),
                ));
            }
            match root.select(s) {
                Ok(v) => {
                    if let Some((pivot, _)) = s.rsplit_once("/./") {
                        let pivot = keel_dockerfile::ignore::clean(pivot.trim_start_matches('/'));
                        for sel in &v {
                            pivots.insert(sel.real.clone(), pivot.clone());
                        }
                    }
                    selected.extend(v);
                }
                Err(SelectError::Outside(p)) => {
                    return Err(self.step_err(
                        span,
                        format!("{kw} source {p:?} is outside the build context"),
                        Some("sources are paths inside the context directory"),
                    ));
                }
                Err(SelectError::Missing(p)) => {
                    return Err(self.step_err(
                        span,
                        format!(
                            "{kw} source {p:?} not found in the {}",
                            if c.from.is_some() {
                                "source stage"
                            } else {
                                "build context"
                            }
                        ),
                        Some(if c.from.is_some() {
                            "check the path in the stage it is copied from"
                        } else {
                            "check the path, and that .dockerignore does not exclude it"
                        }),
                    ));
                }
                Err(SelectError::Io(p, source)) => {
                    return Err(BuildError::Source {
                        location: loc(self.file(), span),
                        op: format!("{kw} source"),
                        path: format!("{p:?}"),
                        source,
                    });
                }
            }
        }
        // Heredocs become files of their own.
        let heredoc_dir = self.tmp_dir()?;
        let mut heredoc_sel = Vec::new();
        for h in c.heredocs {
            let text = if h.expand {
                self.expand_heredoc(st, &h.text(), &mut used)?
            } else {
                h.text()
            };
            let p = heredoc_dir.path().join(&h.name);
            fs::write(&p, text.as_bytes()).map_err(io_err("write", &p))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644))
                .map_err(io_err("chmod", &p))?;
            heredoc_sel.push(crate::context::Selected {
                rel: h.name.clone(),
                real: p,
                is_dir: false,
            });
        }
        let count = sources.len() + c.heredocs.len();
        let wildcard = sources.iter().any(|s| s.contains(['*', '?', '[']));
        let dest_is_dir = dest_raw.ends_with('/') || count > 1 || wildcard || dest == "/";
        // Hash what will be copied: that is the step's identity.
        let mut entries_by_sel = Vec::new();
        let mut hashes = BTreeMap::new();
        for sel in selected.iter().chain(&heredoc_sel) {
            let is_heredoc = heredoc_sel.iter().any(|h| h.real == sel.real);
            let src_root = if is_heredoc {
                SourceRoot {
                    dir: heredoc_dir.path(),
                    ignore: None,
                    is_context: false,
                }
            } else {
                SourceRoot {
                    dir: root.dir,
                    ignore: root.ignore,
                    is_context: root.is_context,
                }
            };
            let entries =
                src_root
                    .entries(sel, c.exclude)
                    .map_err(|source| BuildError::Source {
                        location: loc(self.file(), span),
                        op: format!("{kw} reading"),
                        path: sel.rel.clone(),
                        source,
                    })?;
            if c.from.is_none() || is_heredoc {
                let h =
                    crate::context::hash_entries(&entries, sel, &self.memo).map_err(|source| {
                        BuildError::Source {
                            location: loc(self.file(), span),
                            op: format!("{kw} hashing"),
                            path: sel.rel.clone(),
                            source,
                        }
                    })?;
                let prefix = if is_heredoc { "<<" } else { "" };
                hashes.extend(h.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
            }
            entries_by_sel.push((sel.clone(), entries, is_heredoc));
        }
        if c.from.is_some() {
            hashes.extend(from_hashes());
        }
        // URLs are fetched now: their content is part of the key.
        let url_dir = self.tmp_dir()?;
        for u in &urls {
            let name = u
                .split(['?', '#'])
                .next()
                .unwrap_or(u)
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .unwrap_or("download")
                .to_string();
            let p = url_dir.path().join(&name);
            fetch(u, &p).map_err(|source| BuildError::Fetch {
                location: loc(self.file(), span),
                url: u.clone(),
                source,
            })?;
            let md = fs::metadata(&p).map_err(io_err("stat", &p))?;
            hashes.insert(
                u.clone(),
                format!(
                    "file:{}",
                    self.memo.file_hash(&p, &md).map_err(io_err("read", &p))?
                ),
            );
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600))
                .map_err(io_err("chmod", &p))?;
            let sel = crate::context::Selected {
                rel: name,
                real: p,
                is_dir: false,
            };
            let entries = SourceRoot {
                dir: url_dir.path(),
                ignore: None,
                is_context: false,
            }
            .entries(&sel, &[])
            .map_err(io_err("read", url_dir.path()))?;
            entries_by_sel.push((sel, entries, true));
        }
        let src_hash = sha(&serde_json::to_string(&hashes).expect("json"));
        let kind = if count > 1 || urls.len() > 1 {
            "multi"
        } else if selected.first().is_some_and(|s| s.is_dir) {
            "dir"
        } else {
            "file"
        };
        let created_by = format!("/bin/sh -c #(nop) {kw} {kind}:{src_hash} in {dest_raw} ");
        let mut inputs = Self::inputs(st, instruction);
        inputs.args = used;
        inputs.sources = hashes;
        let add = c.add;
        let parents = c.parents;
        self.cached(st, at, inputs, &created_by, |st| {
            let tmp = self.tmp_dir()?;
            let pending = st.pending.clone();
            let user = st.user();
            let layer_dir = tmp.path().join("upper");
            self.with_root(tmp.path(), &st.layers, |root| {
                self.make_pending(root, &pending, &user)?;
                let owner = match &chown {
                    Some(spec) => {
                        Some(
                            resolve_owner(root, spec).map_err(|source| BuildError::Owner {
                                location: loc(self.file(), span),
                                spec: spec.clone(),
                                source: Box::new(source),
                            })?,
                        )
                    }
                    None => None,
                };
                let o = Overrides {
                    owner,
                    mode: chmod,
                    keep_owners: !self.runner.sets_owners(),
                };
                let dest_exists_dir = fsops::resolve(root, &dest, true).is_ok_and(|p| p.is_dir());
                for (sel, entries, _) in &entries_by_sel {
                    // --parents keeps the path below the `./` pivot only.
                    let kept = pivots
                        .get(&sel.real)
                        .filter(|p| *p != ".")
                        .and_then(|p| sel.rel.strip_prefix(&format!("{p}/")))
                        .unwrap_or(&sel.rel);
                    let name = Path::new(&sel.rel)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let target = if sel.is_dir {
                        if parents && kept != "." {
                            format!("{}/{kept}", dest.trim_end_matches('/'))
                        } else {
                            dest.clone()
                        }
                    } else if parents {
                        format!("{}/{kept}", dest.trim_end_matches('/'))
                    } else if dest_is_dir || dest_exists_dir {
                        format!("{}/{name}", dest.trim_end_matches('/'))
                    } else {
                        dest.clone()
                    };
                    if add && !sel.is_dir && is_archive(&sel.real) {
                        let dir = fsops::mkdir_all(root, &dest, 0o755, o.owner_ids())
                            .map_err(io_err("create", &dest))?;
                        let f = fs::File::open(&sel.real).map_err(io_err("open", &sel.real))?;
                        let r =
                            keel_oci::layer::decompressed(f).map_err(io_err("read", &sel.real))?;
                        keel_oci::layer::apply_layer(r, &dir, keel_oci::layer::WhiteoutMode::Flat)
                            .map_err(|source| BuildError::Unpack {
                                location: loc(self.file(), span),
                                archive: sel.rel.clone(),
                                source,
                            })?;
                        continue;
                    }
                    crate::context::copy_into(root, entries, &target, o).map_err(|source| {
                        BuildError::Source {
                            location: loc(self.file(), span),
                            op: kw.to_string(),
                            path: format!("{} to {target}", sel.rel),
                            source,
                        }
                    })?;
                }
                Ok(())
            })?;
            self.layer_from(&layer_dir, &st.layers)
        })?;
        drop(src_unmount);
        st.pending.clear();
        Ok(())
    }
}

pub(super) struct CopyArgs<'a> {
    pub(super) sources: &'a [String],
    pub(super) dest: &'a str,
    pub(super) from: Option<&'a str>,
    pub(super) chown: Option<&'a str>,
    pub(super) chmod: Option<&'a str>,
    pub(super) parents: bool,
    pub(super) exclude: &'a [String],
    pub(super) heredocs: &'a [keel_dockerfile::Heredoc],
    pub(super) add: bool,
}

/// `user[:group]` to numeric ids with the root's /etc/passwd and /etc/group.
pub(super) fn resolve_owner(
    root: &Path,
    spec: &str,
) -> std::result::Result<(u32, u32), keel_runtime::RuntimeError> {
    let read = |f: &str| {
        fsops::resolve(root, f, true)
            .ok()
            .and_then(|p| fs::read_to_string(p).ok())
    };
    let id = keel_runtime::user::resolve(
        spec,
        read("/etc/passwd").as_deref(),
        read("/etc/group").as_deref(),
    )?;
    Ok((id.uid, id.gid))
}

/// Whether a file is a (possibly compressed) tar archive, which ADD unpacks.
fn is_archive(p: &Path) -> bool {
    let Ok(f) = fs::File::open(p) else {
        return false;
    };
    let Ok(mut r) = keel_oci::layer::decompressed(f) else {
        return false;
    };
    let mut head = vec![0u8; 512];
    let mut got = 0;
    while got < 512 {
        match r.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got == 512 && &head[257..262] == b"ustar"
}

/// A plain HTTP GET (ADD URL); https is not supported offline-first.
fn fetch(url: &str, dest: &Path) -> std::result::Result<(), FetchError> {
    let rest = url.strip_prefix("http://").ok_or(FetchError::Unsupported)?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let mut s = std::net::TcpStream::connect(&addr).map_err(|source| FetchError::Connect {
        addr: addr.clone(),
        source,
    })?;
    let transfer = |source| FetchError::Transfer {
        addr: addr.clone(),
        source,
    };
    s.set_read_timeout(Some(std::time::Duration::from_mins(1)))
        .map_err(transfer)?;
    // One write: `write!` on the bare stream sends each formatted piece in a
    // syscall of its own, and a server that answers after its first read
    // closes on the rest (EPIPE).
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {hostport}\r\nUser-Agent: keel\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).map_err(transfer)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(transfer)?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(FetchError::Malformed)?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        return Err(FetchError::Status(status.to_string()));
    }
    fs::write(dest, &buf[end + 4..]).map_err(|source| FetchError::Write {
        path: dest.to_path_buf(),
        source,
    })
}
