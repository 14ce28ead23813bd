//! `uses:` steps: local (`./path`) and cached remote (`owner/repo@ref`)
//! actions of kind composite, docker (`docker://image` or a Dockerfile built
//! with `keel build`) and node (when a `node` binary is there); GitHub's own
//! actions that keel provides offline (checkout, cache, upload/download
//! artifact v4, setup-python|node|go); service containers.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::expr::value::{Object, Value};
use crate::filters::Pattern;
use crate::template::{self, TKind, Token};
use crate::workflow::{self, Job, Step};

use super::Options;
use super::backend::HostBackend;
use super::context::{Host, eval, eval_pairs, eval_string, eval_token, set_env};
use super::job::{JobRunner, Post, Scope};

type StepResult = Result<(bool, Vec<(String, String)>), String>;

/// A remote `owner/repo[/path]@ref` in the local repositories or the
/// action cache (`<cache>/owner/repo@ref[/path]` or `<cache>/owner-repo@ref[/path]`).
pub fn resolve_remote(opts: &Options, uses: &str) -> Option<PathBuf> {
    resolve_remote_in(&opts.local_repositories, opts.action_cache.as_deref(), uses)
}

/// [`resolve_remote`] with the two places it looks given apart.
pub fn resolve_remote_in(
    local_repositories: &[(String, PathBuf)],
    action_cache: Option<&Path>,
    uses: &str,
) -> Option<PathBuf> {
    if let Some((_, dir)) = local_repositories.iter().find(|(r, _)| r == uses) {
        return Some(dir.clone());
    }
    let (path, r) = uses.split_once('@')?;
    let mut segs = path.splitn(3, '/');
    let (owner, repo) = (segs.next()?, segs.next()?);
    let sub = segs.next().unwrap_or("");
    // Repository-level mapping, then the sub path inside it.
    let repo_ref = format!("{owner}/{repo}@{r}");
    if let Some((_, dir)) = local_repositories.iter().find(|(x, _)| *x == repo_ref) {
        return Some(dir.join(sub));
    }
    let cache = action_cache?;
    [
        cache.join(owner).join(format!("{repo}@{r}")),
        cache.join(format!("{owner}-{repo}@{r}")),
    ]
    .into_iter()
    .find(|d| d.is_dir())
    .map(|d| d.join(sub))
}

/// The text of the workflow a job's `uses:` calls: `./path` in `repo`,
/// `owner/repo/path@ref` from the local repositories or the action cache
/// (`None` when keel cannot find it here; the run then says so).
pub fn called_workflow_source(
    repo: &Path,
    local_repositories: &[(String, PathBuf)],
    action_cache: Option<&Path>,
    uses: &str,
) -> Option<String> {
    let path = match uses.strip_prefix("./") {
        Some(p) => repo.join(p.split('@').next().unwrap_or(p)),
        None => resolve_remote_in(local_repositories, action_cache, uses)?,
    };
    std::fs::read_to_string(path).ok()
}

/// Service containers of a job and their network.
#[derive(Debug, Default)]
pub struct Services {
    pub network: Option<String>,
    names: Vec<String>,
    keel: Option<PathBuf>,
    root: PathBuf,
}

impl Services {
    /// Removes the containers and the network.
    pub fn stop(&self) {
        let Some(keel) = &self.keel else { return };
        let quiet = |args: &[&str]| {
            let _ = Command::new(keel)
                .arg("--root")
                .arg(&self.root)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        for n in &self.names {
            quiet(&["rm", "-f", n]);
        }
        if let Some(net) = &self.network {
            quiet(&["network", "rm", net]);
        }
    }
}

fn keel_cmd(opts: &Options) -> Result<Command, String> {
    let keel = opts
        .keel
        .as_ref()
        .ok_or("containers need the keel binary")?;
    let mut c = Command::new(keel);
    c.arg("--root").arg(&opts.root).stdin(Stdio::null());
    Ok(c)
}

fn run_quiet(mut c: Command, what: &str) -> Result<String, String> {
    let out = c.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Starts a job's `services:` on a network of their own: reachable by their
/// name from a job container, and on their published ports from the host.
#[allow(clippy::many_single_char_names)]
pub fn start_services(
    opts: &Options,
    job: &Job,
    ctx: &Object,
    host: &Host,
    key: &str,
) -> Result<Services, String> {
    let Some(t) = &job.services else {
        return Ok(Services::default());
    };
    let Value::Object(svcs) = eval_token(t, ctx, host)? else {
        return Ok(Services::default());
    };
    let net = format!("keel-ci-{}-{}", opts.run_id, key.replace(['/', '.'], "-"));
    let mut c = keel_cmd(opts)?;
    c.args(["network", "create", &net]);
    run_quiet(c, "creating the job network")?;
    let mut s = Services {
        network: Some(net.clone()),
        names: Vec::new(),
        keel: opts.keel.clone(),
        root: opts.root.clone(),
    };
    for (id, def) in svcs.iter() {
        let (image, o) = match def {
            Value::String(i) => (i.clone(), Object::new()),
            Value::Object(o) => (
                o.get("image").map(Value::coerce_string).unwrap_or_default(),
                (**o).clone(),
            ),
            _ => continue,
        };
        let name = format!("{net}-{id}");
        if let Some(keel) = &opts.keel {
            super::backend::ensure_image(keel, &opts.root, &image)
                .map_err(|e| format!("service {id}: {e}"))?;
        }
        let mut c = keel_cmd(opts)?;
        c.args([
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &net,
            "--network-alias",
            id,
        ]);
        if let Some(Value::Object(env)) = o.get("env") {
            for (k, v) in env.iter() {
                c.arg("-e").arg(format!("{k}={}", v.coerce_string()));
            }
        }
        if let Some(Value::Array { items, .. }) = o.get("ports") {
            for p in items.iter() {
                let p = p.coerce_string();
                let spec = if p.contains(':') {
                    p
                } else {
                    format!("{p}:{p}")
                };
                c.arg("-p").arg(spec);
            }
        }
        if let Some(opts_s) = o.get("options") {
            c.args(shlex::split(&opts_s.coerce_string()).unwrap_or_default());
        }
        if let Some(ep) = o.get("entrypoint") {
            c.arg("--entrypoint").arg(ep.coerce_string());
        }
        c.arg(&image);
        if let Some(cmd) = o.get("command") {
            c.args(shlex::split(&cmd.coerce_string()).unwrap_or_default());
        }
        s.names.push(name);
        if let Err(e) = run_quiet(c, &format!("starting service {id} ({image})")) {
            s.stop();
            return Err(e);
        }
    }
    Ok(s)
}

/// The parsed `action.yml` of a directory.
fn action_meta(dir: &Path) -> Result<Token, String> {
    let file = ["action.yml", "action.yaml"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("no action.yml in {}", dir.display()))?;
    let src = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let node = crate::yaml::parse(&src)
        .map_err(|e| e.render(&file.display().to_string()))?
        .ok_or_else(|| format!("{} is empty", file.display()))?;
    let mut diags = Vec::new();
    let t = template::read(&node, "action-root", &mut diags);
    if let Some(d) = diags.first() {
        return Err(located(&file, d));
    }
    Ok(t)
}

fn located(file: &Path, d: &template::Diag) -> String {
    d.render(&file.display().to_string())
}

fn input_env_name(name: &str) -> String {
    format!("INPUT_{}", name.replace(' ', "_").to_uppercase())
}

/// Runs a `uses:` step.
#[allow(clippy::too_many_arguments)]
pub fn run_uses(
    r: &mut JobRunner,
    step: &Step,
    uses: &str,
    env: &[(String, String)],
    step_env: &[(String, String)],
    ctx: &Object,
    scope: &Scope,
    timeout: Option<Duration>,
) -> StepResult {
    let with = eval_pairs(step.with.as_ref(), ctx, &r.host(scope))?;
    if let Some(img) = uses.strip_prefix("docker://") {
        let args = with
            .iter()
            .find(|(k, _)| k == "args")
            .map(|(_, v)| shlex::split(v).unwrap_or_default())
            .unwrap_or_default();
        let entry = with
            .iter()
            .find(|(k, _)| k == "entrypoint")
            .map(|(_, v)| v.clone());
        let mut denv = env.to_vec();
        for (k, v) in &with {
            set_env(&mut denv, &input_env_name(k), v);
        }
        return docker_run(r, img, entry.as_deref(), &args, &denv, step, scope, timeout);
    }
    let dir = if let Some(p) = uses.strip_prefix("./") {
        let in_ws = r.workspace.join(p);
        if in_ws.exists() {
            in_ws
        } else {
            r.opts.repo.join(p)
        }
    } else {
        let name = uses.split('@').next().unwrap_or(uses).to_ascii_lowercase();
        if let Some(res) = builtin(r, &name, &with, scope) {
            return res;
        }
        resolve_remote(r.opts, uses).ok_or_else(|| {
            format!("action {uses} is not available offline: keel provides actions/checkout, cache, upload-artifact, download-artifact and setup-python|node|go; put other actions under --action-cache DIR (DIR/owner/repo@ref)")
        })?
    };
    let meta = action_meta(&dir)?;
    // Inputs: given values, else defaults.
    let host = r.host(scope);
    let mut inputs = Object::new();
    if let Some(TKind::Map(decl)) = meta.get("inputs").map(|t| &t.kind) {
        for (k, def) in decl {
            let name = k.display();
            let v = match with.iter().find(|(w, _)| w.eq_ignore_ascii_case(&name)) {
                Some((_, v)) => v.clone(),
                None => match def.get("default") {
                    Some(d) => eval_string(d, ctx, &host)?,
                    None => String::new(),
                },
            };
            inputs.insert(name, Value::String(v));
        }
    }
    for (k, v) in &with {
        if inputs.get(k).is_none() {
            inputs.insert(k.clone(), Value::String(v.clone()));
        }
    }
    let runs = meta.get("runs").ok_or("action.yml has no runs")?;
    let using = runs.get("using").map(Token::display).unwrap_or_default();
    match using.as_str() {
        "composite" => composite(r, &meta, runs, &dir, inputs, step_env, scope),
        "docker" => {
            let mut denv = env.to_vec();
            for (k, v) in inputs.iter() {
                set_env(&mut denv, &input_env_name(k), &v.coerce_string());
            }
            let mut actx = r.contexts(scope, env);
            actx.set("inputs", Value::object(inputs.clone()));
            let host = r.host(scope);
            let args: Vec<String> = match runs.get("args").map(|a| eval_token(a, &actx, &host)) {
                Some(Ok(Value::Array { items, .. })) => {
                    items.iter().map(Value::coerce_string).collect()
                }
                _ => Vec::new(),
            };
            for (k, v) in eval_pairs(runs.get("env"), &actx, &host)? {
                set_env(&mut denv, &k, &v);
            }
            let image = runs.get("image").map(Token::display).unwrap_or_default();
            let image = if let Some(i) = image.strip_prefix("docker://") {
                i.to_string()
            } else {
                build_action_image(r, &dir.join(&image))?
            };
            let entry = runs.get("entrypoint").map(Token::display);
            docker_run(
                r,
                &image,
                entry.as_deref(),
                &args,
                &denv,
                step,
                scope,
                timeout,
            )
        }
        u if u.starts_with("node") => {
            node_action(r, runs, &dir, &inputs, env, step, scope, timeout)
        }
        other => Err(format!("action {uses}: unsupported runs.using '{other}'")),
    }
}

fn composite(
    r: &mut JobRunner,
    meta: &Token,
    runs: &Token,
    dir: &Path,
    inputs: Object,
    step_env: &[(String, String)],
    scope: &Scope,
) -> StepResult {
    let steps_tok = runs.get("steps").ok_or("composite action without steps")?;
    let mut diags = Vec::new();
    let steps = workflow::convert_steps(steps_tok, &mut diags);
    if let Some(d) = diags.first() {
        return Err(located(&dir.join("action.yml"), d));
    }
    for s in &steps {
        if s.run.is_some() && s.shell.is_none() {
            return Err(format!(
                "{}/action.yml: composite steps with `run` need `shell`",
                dir.display()
            ));
        }
    }
    let mut env = scope.env.clone();
    for (k, v) in step_env {
        set_env(&mut env, k, v);
    }
    let mut sub = Scope {
        inputs: Some(inputs),
        env,
        action_path: Some(dir.to_path_buf()),
        nested: true,
        ..Scope::default()
    };
    r.run_steps(&steps, &mut sub);
    let mut outputs = Vec::new();
    if let Some(TKind::Map(m)) = meta.get("outputs").map(|t| &t.kind) {
        let env_now = r.env_now(&sub);
        let ctx = r.contexts(&sub, &env_now);
        let host = r.host(&sub);
        for (k, def) in m {
            if let Some(v) = def.get("value") {
                outputs.push((k.display(), eval_string(v, &ctx, &host).unwrap_or_default()));
            }
        }
    }
    Ok((!sub.failed, outputs))
}

fn build_action_image(r: &JobRunner, dockerfile: &Path) -> Result<String, String> {
    let ctx_dir = if dockerfile.is_dir() {
        dockerfile.to_path_buf()
    } else {
        dockerfile.parent().unwrap_or(dockerfile).to_path_buf()
    };
    let file = if dockerfile.is_dir() {
        dockerfile.join("Dockerfile")
    } else {
        dockerfile.to_path_buf()
    };
    let hash: String = {
        use sha2::{Digest, Sha256};
        super::context::hex(&Sha256::digest(ctx_dir.to_string_lossy().as_bytes())[..6])
    };
    let tag = format!("keel-ci-action-{hash}:latest");
    r.emit(&format!(
        "  building action image {tag} from {}",
        file.display()
    ));
    let mut c = keel_cmd(r.opts)?;
    c.args(["build", "-q", "-t", &tag, "-f"])
        .arg(&file)
        .arg(&ctx_dir);
    run_quiet(c, "keel build of the action's Dockerfile")?;
    Ok(tag)
}

#[allow(clippy::too_many_arguments)]
fn docker_run(
    r: &mut JobRunner,
    image: &str,
    entrypoint: Option<&str>,
    args: &[String],
    env: &[(String, String)],
    step: &Step,
    scope: &Scope,
    timeout: Option<Duration>,
) -> StepResult {
    let keel = r
        .opts
        .keel
        .clone()
        .ok_or("docker actions need the keel binary")?;
    super::backend::ensure_image(&keel, &r.opts.root, image).map_err(|e| e.to_string())?;
    let files = r.command_files().map_err(|e| e.to_string())?;
    let penv = r.process_env(env, &files, &step.id, scope);
    let mut argv = vec![
        keel.to_string_lossy().into_owned(),
        "--root".into(),
        r.opts.root.to_string_lossy().into_owned(),
        "run".into(),
        "--rm".into(),
        "-v".into(),
        format!("{0}:{0}", r.dir.display()),
        "-w".into(),
        r.workspace.to_string_lossy().into_owned(),
    ];
    for (k, v) in &penv {
        if k == "PATH" || k == "HOME" {
            continue;
        }
        argv.push("-e".into());
        argv.push(format!("{k}={v}"));
    }
    if let Some(e) = entrypoint {
        argv.push("--entrypoint".into());
        argv.push(e.to_string());
    }
    argv.push(image.to_string());
    argv.extend(args.iter().cloned());
    let host_env: Vec<(String, String)> = std::env::vars().collect();
    let cwd = r.workspace.clone();
    let saved = std::mem::replace(&mut r.backend, Box::new(HostBackend));
    let res = r.exec_step(argv, &host_env, &cwd, timeout, &files);
    r.backend = saved;
    res
}

#[allow(clippy::too_many_arguments)]
fn node_action(
    r: &mut JobRunner,
    runs: &Token,
    dir: &Path,
    inputs: &Object,
    env: &[(String, String)],
    step: &Step,
    scope: &Scope,
    timeout: Option<Duration>,
) -> StepResult {
    if !r.backend.has("node") {
        return Err("this action runs on node, and no `node` binary is available (hint: apt-get install nodejs, or run the job in an image with node)".into());
    }
    let mut nenv = env.to_vec();
    for (k, v) in inputs.iter() {
        set_env(&mut nenv, &input_env_name(k), &v.coerce_string());
    }
    let action_scope = Scope {
        action_path: Some(dir.to_path_buf()),
        nested: true,
        ..Scope::default()
    };
    let script = |key: &str| runs.get(key).map(|t| dir.join(t.display()));
    let mut state: Vec<(String, String)> = Vec::new();
    if let Some(pre) = script("pre") {
        let files = r.command_files().map_err(|e| e.to_string())?;
        let penv = r.process_env(&nenv, &files, &step.id, &action_scope);
        let cwd = r.workspace.clone();
        let (ok, _) = r.exec_step(
            vec!["node".into(), pre.to_string_lossy().into_owned()],
            &penv,
            &cwd,
            timeout,
            &files,
        )?;
        state.extend(
            crate::commands::parse_env_file(
                &std::fs::read_to_string(&files.state).unwrap_or_default(),
            )
            .unwrap_or_default(),
        );
        if !ok {
            return Ok((false, Vec::new()));
        }
    }
    let main = script("main").ok_or("node action without main")?;
    let files = r.command_files().map_err(|e| e.to_string())?;
    let mut menv = nenv.clone();
    for (k, v) in &state {
        set_env(&mut menv, &format!("STATE_{k}"), v);
    }
    let penv = r.process_env(&menv, &files, &step.id, &action_scope);
    let cwd = r.workspace.clone();
    let res = r.exec_step(
        vec!["node".into(), main.to_string_lossy().into_owned()],
        &penv,
        &cwd,
        timeout,
        &files,
    )?;
    state.extend(
        crate::commands::parse_env_file(&std::fs::read_to_string(&files.state).unwrap_or_default())
            .unwrap_or_default(),
    );
    let _ = scope;
    if let Some(post) = script("post") {
        let cond = runs
            .get("post-if")
            .map_or_else(|| "always()".to_string(), Token::display);
        let id = step.id.clone();
        let name = step.uses.as_ref().map(Token::display).unwrap_or_default();
        r.posts.push(Post {
            name,
            condition: cond,
            run: Box::new(move |r: &mut JobRunner| {
                let files = r.command_files().map_err(|e| e.to_string())?;
                let mut penv = nenv.clone();
                for (k, v) in &state {
                    set_env(&mut penv, &format!("STATE_{k}"), v);
                }
                let ps = Scope {
                    action_path: Some(post.parent().unwrap_or(&post).to_path_buf()),
                    nested: true,
                    ..Scope::default()
                };
                let penv = r.process_env(&penv, &files, &id, &ps);
                let cwd = r.workspace.clone();
                r.exec_step(
                    vec!["node".into(), post.to_string_lossy().into_owned()],
                    &penv,
                    &cwd,
                    None,
                    &files,
                )
                .map(|(ok, _)| ok)
            }),
        });
    }
    Ok(res)
}

fn get<'a>(with: &'a [(String, String)], k: &str) -> Option<&'a str> {
    with.iter()
        .find(|(x, _)| x.eq_ignore_ascii_case(k))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn lines(v: Option<&str>) -> Vec<String> {
    v.unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// GitHub's own actions that keel implements offline.
fn builtin(
    r: &mut JobRunner,
    name: &str,
    with: &[(String, String)],
    scope: &Scope,
) -> Option<StepResult> {
    Some(match name {
        "actions/checkout" => checkout(r, with),
        "actions/cache" => cache(r, with, true, true),
        "actions/cache/restore" => cache(r, with, true, false),
        "actions/cache/save" => cache(r, with, false, true),
        "actions/upload-artifact" => upload_artifact(r, with),
        "actions/download-artifact" => download_artifact(r, with),
        "actions/setup-python" => setup(r, with, "python", scope),
        "actions/setup-node" => setup(r, with, "node", scope),
        "actions/setup-go" => setup(r, with, "go", scope),
        _ => return None,
    })
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("git: {e} (hint: apt-get install git)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Copies a tree (files, dirs, symlinks).
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
    } else if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from)?;
        let _ = std::fs::remove_file(to);
        std::os::unix::fs::symlink(target, to)?;
    } else {
        if let Some(p) = to.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::copy(from, to)?;
    }
    Ok(())
}

/// `actions/checkout` from the local repository: the commit (or `ref`),
/// plus, without `ref`, the working tree's uncommitted changes.
fn checkout(r: &mut JobRunner, with: &[(String, String)]) -> StepResult {
    let dest = match get(with, "path") {
        Some(p) => r.workspace.join(p),
        None => r.workspace.clone(),
    };
    let src = r.opts.repo.clone();
    if dest.exists() {
        for e in std::fs::read_dir(&dest)
            .map_err(|e| e.to_string())?
            .flatten()
        {
            let p = e.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
    if !src.join(".git").exists() {
        r.emit(&format!(
            "  copying {} (not a git repository)",
            src.display()
        ));
        copy_tree(&src, &dest).map_err(|e| format!("checkout: {e}"))?;
        return Ok((true, Vec::new()));
    }
    let want = get(with, "ref").map_or_else(|| r.opts.git.sha.clone(), String::from);
    r.emit(&format!(
        "  checkout {} at {want} from {}",
        r.opts.git.repository,
        src.display()
    ));
    std::fs::create_dir_all(&dest).map_err(|e| e.to_string())?;
    let mut clone = vec!["clone", "-q", "--no-hardlinks", "--no-checkout"];
    let depth = get(with, "fetch-depth").unwrap_or("1").to_string();
    let depth_arg = format!("--depth={depth}");
    if depth != "0" {
        clone.push(&depth_arg);
    }
    let src_url = format!("file://{}", src.display());
    clone.push(&src_url);
    clone.push(".");
    git(&dest, &clone)?;
    if git(&dest, &["checkout", "-q", &want]).is_err() {
        // A ref beyond the shallow clone: fetch it from the source.
        git(&dest, &["fetch", "-q", "origin", &want])?;
        git(&dest, &["checkout", "-q", "FETCH_HEAD"])?;
    }
    if get(with, "ref").is_none() {
        let changed = git(&src, &["ls-files", "-m", "-o", "--exclude-standard", "-z"])?;
        for f in changed.split('\0').filter(|f| !f.is_empty()) {
            let _ = copy_tree(&src.join(f), &dest.join(f));
        }
        let deleted = git(&src, &["ls-files", "-d", "-z"])?;
        for f in deleted.split('\0').filter(|f| !f.is_empty()) {
            let _ = std::fs::remove_file(dest.join(f));
        }
    }
    match get(with, "submodules") {
        Some("true") => submodules(&src, &dest, false)?,
        Some("recursive") => submodules(&src, &dest, true)?,
        _ => {}
    }
    let sha = git(&dest, &["rev-parse", "HEAD"])?.trim().to_string();
    Ok((true, vec![("ref".into(), want), ("commit".into(), sha)]))
}

/// `submodules:` offline: a submodule the local repository has checked out
/// is fetched from that checkout (its URL is usually a remote one), others
/// from their URL; with `recursive`, the same one level down.
fn submodules(src: &Path, dest: &Path, recursive: bool) -> Result<(), String> {
    let paths = git(
        dest,
        &[
            "config",
            "-f",
            ".gitmodules",
            "--get-regexp",
            r"^submodule\..*\.path$",
        ],
    )
    .unwrap_or_default();
    for line in paths.lines() {
        let Some((key, path)) = line.split_once(' ') else {
            continue;
        };
        let name = &key["submodule.".len()..key.len() - ".path".len()];
        let local = src.join(path);
        if local.join(".git").exists() {
            git(
                dest,
                &[
                    "config",
                    &format!("submodule.{name}.url"),
                    &local.to_string_lossy(),
                ],
            )?;
        }
        git(
            dest,
            &[
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "update",
                "--init",
                "--",
                path,
            ],
        )?;
        if recursive {
            submodules(&local, &dest.join(path), true)?;
        }
    }
    Ok(())
}

fn resolve_path(r: &JobRunner, p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        r.home.join(rest)
    } else if Path::new(p).is_absolute() {
        PathBuf::from(p)
    } else {
        r.workspace.join(p)
    }
}

fn cache_entry_dir(r: &JobRunner, key: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let h = super::context::hex(&Sha256::digest(key.as_bytes())[..16]);
    r.opts.cache_dir.join(h)
}

/// `actions/cache`: exact key, else the newest entry whose key starts with
/// a restore key; saved at the end of a successful job unless it was a hit.
fn cache(r: &mut JobRunner, with: &[(String, String)], restore: bool, save: bool) -> StepResult {
    let key = get(with, "key")
        .ok_or("actions/cache: input `key` is required")?
        .to_string();
    let paths = lines(get(with, "path"));
    if paths.is_empty() {
        return Err("actions/cache: input `path` is required".into());
    }
    let mut outputs = vec![("cache-primary-key".to_string(), key.clone())];
    let mut hit = false;
    if restore {
        let exact = cache_entry_dir(r, &key);
        let found = if exact.join("key").is_file() {
            Some(exact)
        } else {
            let prefixes = lines(get(with, "restore-keys"));
            let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
            for prefix in &prefixes {
                for e in std::fs::read_dir(&r.opts.cache_dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let k = std::fs::read_to_string(e.path().join("key")).unwrap_or_default();
                    if !k.is_empty() && k.starts_with(prefix.as_str()) {
                        let t = e
                            .metadata()
                            .and_then(|m| m.modified())
                            .unwrap_or(std::time::UNIX_EPOCH);
                        if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
                            best = Some((t, e.path()));
                        }
                    }
                }
                if best.is_some() {
                    break;
                }
            }
            best.map(|(_, p)| p)
        };
        if let Some(entry) = found {
            let matched = std::fs::read_to_string(entry.join("key")).unwrap_or_default();
            hit = matched == key;
            for (i, p) in paths.iter().enumerate() {
                let from = entry.join("paths").join(i.to_string());
                if from.exists() {
                    copy_tree(&from, &resolve_path(r, p))
                        .map_err(|e| format!("restoring cache: {e}"))?;
                }
            }
            r.emit(&format!("  Cache restored from key: {matched}"));
            outputs.push(("cache-matched-key".into(), matched));
        } else {
            r.emit(&format!("  Cache not found for input keys: {key}"));
        }
        outputs.push(("cache-hit".into(), hit.to_string()));
    }
    if save && !(restore && hit) {
        let save_now = move |r: &mut JobRunner| -> Result<bool, String> {
            let entry = cache_entry_dir(r, &key);
            if entry.join("key").is_file() {
                r.emit(&format!(
                    "  Cache hit occurred on the primary key {key}, not saving cache."
                ));
                return Ok(true);
            }
            let tmp = entry.with_extension("tmp");
            let _ = std::fs::remove_dir_all(&tmp);
            for (i, p) in paths.iter().enumerate() {
                let from = resolve_path(r, p);
                if from.exists() {
                    copy_tree(&from, &tmp.join("paths").join(i.to_string()))
                        .map_err(|e| format!("saving cache: {e}"))?;
                }
            }
            std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
            std::fs::write(tmp.join("key"), &key).map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &entry).map_err(|e| format!("saving cache: {e}"))?;
            r.emit(&format!("  Cache saved with key: {key}"));
            Ok(true)
        };
        if restore {
            r.posts.push(Post {
                name: "actions/cache".into(),
                condition: "success()".into(),
                run: Box::new(save_now),
            });
        } else {
            let ok = save_now(r)?;
            return Ok((ok, outputs));
        }
    }
    Ok((true, outputs))
}

fn artifacts_root(r: &JobRunner) -> PathBuf {
    r.opts.artifact_dir.join(&r.opts.run_id)
}

fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut v: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        v.sort();
        for p in v {
            if p.is_dir() {
                walk_files(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

/// `actions/upload-artifact@v4`: names are unique in a run unless
/// `overwrite`; files keep their paths below the least common ancestor of
/// the inputs; text files are stored masked.
fn upload_artifact(r: &mut JobRunner, with: &[(String, String)]) -> StepResult {
    let name = get(with, "name").unwrap_or("artifact").to_string();
    let patterns = lines(get(with, "path"));
    if patterns.is_empty() {
        return Err("upload-artifact: input `path` is required".into());
    }
    let dest = artifacts_root(r).join(&name);
    if dest.exists() {
        if get(with, "overwrite") == Some("true") {
            std::fs::remove_dir_all(&dest).map_err(|e| e.to_string())?;
        } else {
            return Err(format!(
                "Failed to CreateArtifact: an artifact with this name already exists on the workflow run: {name}"
            ));
        }
    }
    let mut files: Vec<PathBuf> = Vec::new();
    let mut roots: Vec<PathBuf> = Vec::new();
    let mut excludes: Vec<Pattern> = Vec::new();
    for p in &patterns {
        if let Some(x) = p.strip_prefix('!') {
            excludes.push(Pattern::new(&resolve_path(r, x).to_string_lossy()));
            continue;
        }
        let path = resolve_path(r, p);
        let s = path.to_string_lossy().to_string();
        if s.contains(['*', '?', '[']) {
            let base: PathBuf = path
                .components()
                .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
                .collect();
            let pat = Pattern::new(&s);
            let mut all = Vec::new();
            walk_files(&base, &mut all);
            files.extend(
                all.into_iter()
                    .filter(|f| pat.is_match(&f.to_string_lossy())),
            );
            roots.push(base);
        } else if path.is_dir() {
            walk_files(&path, &mut files);
            roots.push(path);
        } else if path.is_file() {
            roots.push(path.parent().unwrap_or(&path).to_path_buf());
            files.push(path);
        }
    }
    files.retain(|f| !excludes.iter().any(|x| x.is_match(&f.to_string_lossy())));
    files.dedup();
    if files.is_empty() {
        let msg = format!(
            "No files were found with the provided path: {}. No artifacts will be uploaded.",
            patterns.join(", ")
        );
        return match get(with, "if-no-files-found").unwrap_or("warn") {
            "error" => Err(msg),
            "ignore" => Ok((true, Vec::new())),
            _ => {
                r.emit(&format!("warning: {msg}"));
                Ok((true, Vec::new()))
            }
        };
    }
    let mut root = roots.first().cloned().unwrap_or_default();
    for x in &roots[1..] {
        while !x.starts_with(&root) {
            if !root.pop() {
                break;
            }
        }
    }
    let masker = r.masker.lock().map(|m| m.clone()).unwrap_or_default();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap_or(f);
        let to = dest.join(rel);
        if let Some(p) = to.parent() {
            std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
        }
        let data = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let data = match String::from_utf8(data) {
            Ok(text) => masker.mask(&text).into_bytes(),
            Err(e) => e.into_bytes(),
        };
        std::fs::write(&to, data).map_err(|e| format!("{}: {e}", to.display()))?;
    }
    r.emit(&format!(
        "  Artifact {name} uploaded: {} file(s)",
        files.len()
    ));
    Ok((
        true,
        vec![
            ("artifact-id".into(), name.clone()),
            ("artifact-url".into(), format!("file://{}", dest.display())),
        ],
    ))
}

/// `actions/download-artifact@v4`: one artifact into `path`, or all (each
/// in a directory of its name unless `merge-multiple`).
fn download_artifact(r: &mut JobRunner, with: &[(String, String)]) -> StepResult {
    let dest = get(with, "path").map_or_else(|| r.workspace.clone(), |p| resolve_path(r, p));
    let root = artifacts_root(r);
    if let Some(name) = get(with, "name") {
        let src = root.join(name);
        if !src.is_dir() {
            return Err(format!(
                "Unable to download artifact(s): Artifact not found for name: {name}"
            ));
        }
        copy_tree(&src, &dest).map_err(|e| e.to_string())?;
        r.emit(&format!(
            "  Artifact {name} downloaded to {}",
            dest.display()
        ));
        return Ok((
            true,
            vec![("download-path".into(), dest.to_string_lossy().into())],
        ));
    }
    let pattern = get(with, "pattern").map(Pattern::new);
    let merge = get(with, "merge-multiple") == Some("true");
    let mut n = 0;
    for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if pattern.as_ref().is_some_and(|p| !p.is_match(&name)) {
            continue;
        }
        let to = if merge {
            dest.clone()
        } else {
            dest.join(&name)
        };
        copy_tree(&e.path(), &to).map_err(|e| e.to_string())?;
        n += 1;
    }
    r.emit(&format!(
        "  {n} artifact(s) downloaded to {}",
        dest.display()
    ));
    Ok((
        true,
        vec![("download-path".into(), dest.to_string_lossy().into())],
    ))
}

/// `actions/setup-python|node|go`: the installed toolchain, if its version
/// matches what the workflow asks for.
fn setup(r: &mut JobRunner, with: &[(String, String)], tool: &str, scope: &Scope) -> StepResult {
    let (programs, input, version_args): (&[&str], &str, &[&str]) = match tool {
        "python" => (&["python3", "python"], "python-version", &["--version"]),
        "node" => (&["node", "nodejs"], "node-version", &["--version"]),
        _ => (&["go"], "go-version", &["version"]),
    };
    let files = r.command_files().map_err(|e| e.to_string())?;
    let env = r.env_now(scope);
    let penv = r.process_env(&env, &files, tool, scope);
    let path = penv
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut found = None;
    for p in programs {
        let mut out = String::new();
        let cwd = r.workspace.clone();
        let exec = super::backend::Exec {
            argv: std::iter::once((*p).to_string())
                .chain(version_args.iter().map(|s| (*s).to_string()))
                .collect(),
            env: &penv,
            cwd: &cwd,
            timeout: Some(Duration::from_secs(30)),
            cancel: &r.cancel,
        };
        if let Ok(super::backend::End::Exited(0)) = r.backend.exec(&exec, &mut |l| {
            out.push_str(l);
            out.push('\n');
        }) {
            found = Some(((*p).to_string(), out));
            break;
        }
    }
    let hint = match tool {
        "python" => "apt-get install python3",
        "node" => "apt-get install nodejs",
        _ => "apt-get install golang-go",
    };
    let Some((program, out)) = found else {
        return Err(format!(
            "actions/setup-{tool}: keel runs offline and uses the installed {tool}, and there is none on PATH (hint: {hint})"
        ));
    };
    let version = out
        .split_whitespace()
        .find_map(|w| {
            let w = w.trim_start_matches('v').trim_start_matches("go");
            w.chars()
                .next()
                .filter(char::is_ascii_digit)
                .map(|_| w.to_string())
        })
        .unwrap_or_default();
    if let Some(want) = get(with, input) {
        let want = want.trim().trim_start_matches('v');
        let prefix = want
            .trim_end_matches(".x")
            .trim_end_matches('x')
            .trim_end_matches('.');
        let ok = want.is_empty()
            || want == "latest"
            || want.starts_with(['>', '<', '^', '~', '*'])
            || version == prefix
            || version.starts_with(&format!("{prefix}."));
        if !ok {
            return Err(format!(
                "actions/setup-{tool}: {input} {want} was asked for, the installed {program} is {version} (keel uses installed toolchains offline)"
            ));
        }
    }
    // `python` as GitHub's setup-python provides it, when only python3 exists.
    if program == "python3" && r.backend.is_host() {
        let shim = r.tool_cache.join("keel-python-shim");
        let _ = std::fs::create_dir_all(&shim);
        if let Some(p3) = super::backend::which("python3", &path) {
            let _ = std::os::unix::fs::symlink(p3, shim.join("python"));
        }
        r.path_add.insert(0, shim.to_string_lossy().into());
    }
    let _ = eval("true", &Object::new(), &r.host(scope));
    r.emit(&format!("  Using {program} {version}"));
    Ok((true, vec![(format!("{tool}-version"), version)]))
}
