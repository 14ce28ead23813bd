//! `RUN`: its argv (shell form, exec form, heredocs), its mounts, and the
//! run itself through the [`crate::runner::Runner`].

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use keel_dockerfile::{Command, MountType, Span};
use keel_runtime::{MountKind, MountSpec};

use super::cached::NewLayer;
use super::copy::resolve_owner;
use super::roots::Unmount;
use super::state::State;
use super::{Engine, abs_path, loc, sha};
use crate::Event;
use crate::error::{BuildError, Result, io_err};
use crate::fsops;
use crate::runner::{RunRequest, Stream};

impl Engine<'_> {
    /// The heredoc of `RUN <<EOF` (the command is nothing but the heredoc).
    pub(super) fn script_heredoc(run: &keel_dockerfile::Run) -> Option<&keel_dockerfile::Heredoc> {
        let Command::Shell(s) = &run.command else {
            return None;
        };
        let h = run.heredocs.first().filter(|_| run.heredocs.len() == 1)?;
        (s.trim()
            .trim_start_matches("<<")
            .trim_start_matches('-')
            .trim_matches(['"', '\''])
            == h.name)
            .then_some(h)
    }

    /// The argv of a RUN and its history text.
    pub(super) fn run_argv(
        st: &State,
        run: &keel_dockerfile::Run,
    ) -> Result<(Vec<String>, String)> {
        match &run.command {
            // History as buildah writes it: `/bin/sh -c` and the JSON form.
            Command::Exec(v) => {
                let json: Vec<String> = v
                    .iter()
                    .map(|a| serde_json::to_string(a).expect("json"))
                    .collect();
                Ok((v.clone(), format!("/bin/sh -c [{}]", json.join(", "))))
            }
            Command::Shell(s) => {
                let mut argv = st.shell();
                let script = if let Some(h) = Self::script_heredoc(run) {
                    // `RUN <<EOF`: the heredoc is the script.
                    h.text()
                } else {
                    let mut full = s.clone();
                    for h in &run.heredocs {
                        full.push('\n');
                        full.push_str(&h.content);
                        full.push_str(&h.name);
                    }
                    full
                };
                argv.push(script.clone());
                // buildah writes `/bin/sh -c` whatever SHELL says.
                let display = format!("/bin/sh -c {script}");
                Ok((argv, display))
            }
        }
    }

    /// Creates the WORKDIR/VOLUME directories a step's layer must contain;
    /// the working directory belongs to `user`, the others to root.
    pub(super) fn make_pending(
        &self,
        root: &Path,
        pending: &[(String, bool)],
        user: &str,
    ) -> Result<()> {
        for (p, workdir) in pending {
            let owner = if *workdir && !user.is_empty() {
                resolve_owner(root, user)?
            } else {
                (0, 0)
            };
            let owner = self.runner.sets_owners().then_some(owner);
            fsops::mkdir_all(root, p, 0o755, owner).map_err(io_err("create", p))?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_lines)]
    pub(super) fn exec_run(
        &self,
        st: &mut State,
        run: &keel_dockerfile::Run,
        argv: Vec<String>,
        label: &str,
        span: Span,
    ) -> Result<Option<NewLayer>> {
        let location = loc(self.file(), span);
        let command = argv.last().cloned().unwrap_or_default();
        let tmp = self.tmp_dir()?;
        // Seed: WORKDIR/VOLUME directories the layer must contain.
        let seed = if st.pending.is_empty() {
            None
        } else {
            let pending = st.pending.clone();
            let user = st.user();
            self.with_root(tmp.path(), &st.layers, |root| {
                self.make_pending(root, &pending, &user)
            })?;
            Some(tmp.path().join("upper"))
        };
        let lowerdirs = self.lowerdirs(&st.layers)?;
        let workdir = st.workdir();
        let mut mounts = Vec::new();
        let mut views: Vec<tempfile::TempDir> = Vec::new();
        let mut unmounts: Vec<Unmount> = Vec::new();
        // The runtime bind-mounts these, creating empty mount points when the
        // image has none; BuildKit's layers never contain those.
        let mut stubs: Vec<String> = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"]
            .into_iter()
            .filter(|f| {
                !lowerdirs
                    .iter()
                    .any(|l| fs::symlink_metadata(l.join(&f[1..])).is_ok())
            })
            .map(str::to_string)
            .collect();
        for m in &run.mounts {
            let target = m
                .target
                .clone()
                .map(|t| abs_path(&workdir, &t))
                .or_else(|| {
                    (m.kind == MountType::Secret)
                        .then(|| format!("/run/secrets/{}", m.id.clone().unwrap_or_default()))
                })
                .ok_or_else(|| self.step_err(span, "mount needs a target", None))?;
            stubs.push(target.clone());
            let spec = match m.kind {
                MountType::Cache => {
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    let dir = self.build_dir.join("mounts").join(sha(&id));
                    if !dir.exists() {
                        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
                        fs::set_permissions(
                            &dir,
                            fs::Permissions::from_mode(m.mode.unwrap_or(0o755)),
                        )
                        .map_err(io_err("chmod", &dir))?;
                        if self.runner.sets_owners() {
                            std::os::unix::fs::lchown(&dir, m.uid, m.gid)
                                .map_err(io_err("chown", &dir))?;
                        }
                    }
                    MountSpec {
                        kind: MountKind::Bind,
                        source: dir.display().to_string(),
                        target,
                        read_only: m.readonly,
                        anonymous: false,
                        options: Vec::new(),
                    }
                }
                MountType::Bind => {
                    let source = m.source.clone().unwrap_or_else(|| ".".to_string());
                    let root_dir = if let Some(from) = &m.from {
                        let view = self.tmp_dir()?;
                        let layers = self.layers_of(from, span)?;
                        let lowers = self.lowerdirs(&layers)?;
                        let mounted = self.mount(view.path(), &lowers)?;
                        let merged = mounted.path.clone();
                        unmounts.push(mounted);
                        views.push(view);
                        merged
                    } else {
                        self.opts.context.clone().ok_or_else(|| {
                            self.step_err(span, "a bind mount needs a build context", None)
                        })?
                    };
                    let real = fsops::resolve(&root_dir, &source, true)
                        .map_err(io_err("resolve", &source))?;
                    if !real.exists() {
                        return Err(self.step_err(
                            span,
                            format!("mount source {source:?} does not exist"),
                            None,
                        ));
                    }
                    // `rw`: writes land in a throwaway copy, never in the source.
                    let real = if m.readonly {
                        real
                    } else {
                        let view = self.tmp_dir()?;
                        let writable = if real.is_dir() {
                            let mounted = self.mount(view.path(), std::slice::from_ref(&real))?;
                            let merged = mounted.path.clone();
                            unmounts.push(mounted);
                            merged
                        } else {
                            let copy = view.path().join("file");
                            fs::copy(&real, &copy).map_err(io_err("copy", &real))?;
                            copy
                        };
                        views.push(view);
                        writable
                    };
                    MountSpec {
                        kind: MountKind::Bind,
                        source: real.display().to_string(),
                        target,
                        read_only: m.readonly,
                        anonymous: false,
                        options: Vec::new(),
                    }
                }
                MountType::Tmpfs => MountSpec {
                    kind: MountKind::Tmpfs,
                    source: String::new(),
                    target,
                    read_only: false,
                    anonymous: false,
                    options: m
                        .size
                        .map(|s| vec![format!("size={s}")])
                        .unwrap_or_default(),
                },
                MountType::Secret => {
                    let id = m.id.clone().unwrap_or_else(|| {
                        target.rsplit('/').next().unwrap_or_default().to_string()
                    });
                    match self.opts.secrets.get(&id) {
                        Some(src) => MountSpec {
                            kind: MountKind::Bind,
                            source: fs::canonicalize(src)
                                .map_err(io_err("read secret", src))?
                                .display()
                                .to_string(),
                            target,
                            read_only: true,
                            anonymous: false,
                            options: Vec::new(),
                        },
                        None if m.required => {
                            return Err(self.step_err(
                                span,
                                format!("secret {id} is required but was not given"),
                                Some(&format!("pass it with --secret id={id},src=FILE")),
                            ));
                        }
                        None => continue,
                    }
                }
                MountType::Ssh => {
                    return Err(self.step_err(span, "RUN --mount=type=ssh is not supported", None));
                }
            };
            mounts.push(spec);
        }
        let mut env = st.run_env();
        for (k, v) in &st.args {
            if !env.iter().any(|e| e.split('=').next() == Some(k.as_str())) {
                env.push(format!("{k}={v}"));
            }
        }
        let network = match run.network.as_deref() {
            Some("none") => "none",
            _ => "host",
        };
        // A heredoc script with its own `#!` runs as a file, as BuildKit does.
        let script_dir = self.tmp_dir()?;
        let mut argv = argv;
        if let Some(h) = Self::script_heredoc(run).filter(|h| h.text().starts_with("#!")) {
            let path = script_dir.path().join("script");
            fs::write(&path, h.text()).map_err(io_err("write", &path))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .map_err(io_err("chmod", &path))?;
            let target = format!("/dev/pipes/{}", h.name);
            mounts.push(MountSpec {
                kind: MountKind::Bind,
                source: path.display().to_string(),
                target: target.clone(),
                read_only: true,
                anonymous: false,
                options: Vec::new(),
            });
            argv = vec![target];
        }
        let req = RunRequest {
            lowerdirs,
            argv,
            env,
            workdir,
            user: st.user(),
            network: network.to_string(),
            mounts,
        };
        let mut last: Vec<String> = Vec::new();
        let mut partial = [Vec::new(), Vec::new()];
        let mut seed_upper = |upper: &Path| {
            if let Some(seed) = &seed {
                fs::remove_dir(upper)?;
                fs::rename(seed, upper)?;
            }
            Ok(())
        };
        let mut on_output = |stream: Stream, data: &[u8]| {
            let buf = &mut partial[usize::from(stream == Stream::Stderr)];
            buf.extend_from_slice(data);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                self.emit(Event::Output {
                    stage: label.to_string(),
                    line: line.clone(),
                });
                last.push(line);
                if last.len() > 5 {
                    last.remove(0);
                }
            }
        };
        let mut done = self
            .runner
            .run(&req, &mut seed_upper, self.cancel, &mut on_output)
            .map_err(|source| BuildError::RunStart {
                location: location.clone(),
                command: command.clone(),
                source: Box::new(source),
            })?;
        let code = done.code();
        for buf in partial {
            if !buf.is_empty() {
                last.push(String::from_utf8_lossy(&buf).into_owned());
            }
        }
        drop(unmounts);
        drop(views);
        self.check_cancel()?;
        if code != 0 {
            return Err(BuildError::RunFailed {
                location,
                command,
                code,
                output: last,
            });
        }
        let upper = done.upper_dir();
        // Mount points the runtime had to create are not part of the result.
        for s in &stubs {
            let p = upper.join(s.trim_start_matches('/'));
            if fs::symlink_metadata(&p).is_ok_and(|m| m.is_file() && m.len() == 0) {
                let _ = fs::remove_file(&p);
            } else {
                let _ = fs::remove_dir(&p);
            }
        }
        let layer = self.layer_from(&upper, &st.layers)?;
        done.remove()?;
        Ok(layer)
    }
}
