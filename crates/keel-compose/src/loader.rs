//! From command-line options to a [`Project`]: file discovery, environment
//! (process environment over `.env`), per-file parse → interpolate → validate
//! → canonicalize, `extends`, `include`, merge of the `-f` files, project
//! name, profiles, semantic checks and final defaults.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_yaml_ng::Value;

use crate::Error;
use crate::merge::{merge, merge_files, strip};
use crate::normalize::{self, Ctx, abs_path, reorder, to_value};
use crate::yaml::{self, Entry, Kind, Node, Pos, Scalar};

/// What `keel compose` was given on its command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `-f` files, in order; empty means discovery.
    pub files: Vec<PathBuf>,
    pub project_name: Option<String>,
    pub profiles: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub project_directory: Option<PathBuf>,
    /// Where relative `-f`/`--env-file` paths and discovery start.
    pub cwd: PathBuf,
    /// The process environment.
    pub env: BTreeMap<String, String>,
    /// Services named on the command line (they are enabled whatever their profiles).
    pub services: Vec<String>,
    /// `config --no-consistency`: skip the checks that references (services,
    /// networks, volumes, secrets, configs) are defined.
    pub no_consistency: bool,
}

/// A loaded, validated, normalized project.
#[derive(Debug, Clone)]
pub struct Project {
    pub name: String,
    pub working_dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// The environment used for substitution (process environment over `.env`).
    pub environment: BTreeMap<String, String>,
    /// Canonical tree of the enabled part of the project.
    pub tree: Node,
    /// Services left out by profiles or by naming others on the command line.
    pub disabled: Vec<String>,
    /// Every profile named by any service (enabled or not), sorted.
    pub all_profiles: Vec<String>,
    /// Things docker compose would warn about.
    pub warnings: Vec<String>,
}

impl Project {
    /// The normalized model as `docker compose config` prints it.
    pub fn to_value(&self) -> Value {
        to_value(&self.tree)
    }

    /// The typed model.
    pub fn model(&self) -> Result<crate::model::Model, Error> {
        serde_yaml_ng::from_value(self.to_value()).map_err(|e| Error::Model(e.to_string()))
    }

    pub fn service_names(&self) -> Vec<String> {
        self.tree
            .get("services")
            .and_then(Node::as_map)
            .map(|m| m.iter().map(|e| e.key.clone()).collect())
            .unwrap_or_default()
    }
}

const CANDIDATES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

fn discover(cwd: &Path, warnings: &mut Vec<String>) -> Result<Vec<PathBuf>, Error> {
    for dir in cwd.ancestors() {
        let found: Vec<PathBuf> = CANDIDATES
            .iter()
            .map(|c| dir.join(c))
            .filter(|p| p.is_file())
            .collect();
        let Some(main) = found.first().cloned() else {
            continue;
        };
        if found.len() > 1 {
            warnings.push(format!(
                "Found multiple config files with supported names: {}\nUsing {}",
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                main.display()
            ));
        }
        let name = main.file_name().unwrap().to_string_lossy().into_owned();
        let (stem, ext) = name.rsplit_once('.').unwrap();
        let over = dir.join(format!("{stem}.override.{ext}"));
        let mut files = vec![main];
        if over.is_file() {
            files.push(over);
        }
        return Ok(files);
    }
    Err(Error::NoConfigFile {
        dir: cwd.to_path_buf(),
    })
}

fn display(p: &Path, cwd: &Path) -> String {
    match p.strip_prefix(cwd) {
        Ok(r) if !r.as_os_str().is_empty() => r.display().to_string(),
        _ => p.display().to_string(),
    }
}

fn read(p: &Path, cwd: &Path) -> Result<String, Error> {
    std::fs::read_to_string(p).map_err(|source| Error::Read {
        path: display(p, cwd),
        source,
    })
}

fn invalid(pos: &Pos, path: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Invalid {
        pos: pos.clone(),
        path: path.into(),
        message: message.into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Substitutes variables in every string value (keys stay as written);
/// notes in `unset` the variables substituted plainly that are not set.
fn interpolate_tree(
    n: &mut Node,
    path: &str,
    env: &BTreeMap<String, String>,
    unset: &std::cell::RefCell<BTreeSet<String>>,
) -> Result<(), Error> {
    match &mut n.kind {
        Kind::Scalar(Scalar::Str(s)) => {
            let lookup = |k: &str| env.get(k).cloned();
            let note = |k: &str| {
                unset.borrow_mut().insert(k.to_string());
            };
            *s = crate::interp::interpolate_noting(s, &lookup, &note)
                .map_err(|e| invalid(&n.pos, path, e.to_string()))?;
        }
        Kind::Scalar(_) => {}
        Kind::Seq(items) => {
            for (i, it) in items.iter_mut().enumerate() {
                interpolate_tree(it, &format!("{path}[{i}]"), env, unset)?;
            }
        }
        Kind::Map(m) => {
            for e in m.iter_mut() {
                interpolate_tree(&mut e.value, &join(path, &e.key), env, unset)?;
            }
        }
    }
    Ok(())
}

struct State<'a> {
    opts: &'a Options,
    home: Option<String>,
    /// Files being loaded through include/extends, against cycles.
    stack: Vec<PathBuf>,
    /// Top-level files already read (for the project name), each read
    /// once: a FIFO such as `-f <(cmd)` cannot be read twice.
    read_ahead: std::cell::RefCell<HashMap<PathBuf, String>>,
    /// Variables substituted plainly but not set (docker compose warns).
    unset: std::cell::RefCell<BTreeSet<String>>,
    /// Warnings found while loading files (`version:`).
    warnings: std::cell::RefCell<Vec<String>>,
}

impl State<'_> {
    fn ctx<'b>(&'b self, base: &'b Path) -> Ctx<'b> {
        Ctx {
            base,
            home: self.home.as_deref(),
        }
    }
}

/// Parse, interpolate, validate and canonicalize one file.
fn load_file(
    path: &Path,
    base: &Path,
    env: &BTreeMap<String, String>,
    st: &State,
) -> Result<Node, Error> {
    let ahead = st.read_ahead.borrow_mut().remove(path);
    let src = match ahead {
        Some(src) => src,
        None => read(path, &st.opts.cwd)?,
    };
    let file: Arc<str> = Arc::from(display(path, &st.opts.cwd));
    let mut root = yaml::parse(&src, &file).map_err(|e| Error::Syntax {
        pos: e.pos,
        message: e.message,
    })?;
    if root.is_null() {
        root = Node::map(Vec::new(), root.pos.clone());
    }
    interpolate_tree(&mut root, "", env, &st.unset)?;
    if root.get("version").is_some() {
        st.warnings.borrow_mut().push(format!(
            "{}: the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion",
            path.display()
        ));
    }
    crate::schema::check(&root, &crate::schema::FILE, "").map_err(|v| Error::Invalid {
        pos: v.node_pos,
        path: if v.path.is_empty() {
            "(root)".into()
        } else {
            v.path
        },
        message: v.message,
    })?;
    root.remove("version");
    let ctx = st.ctx(base);
    if let Some(services) = root.get_mut("services").and_then(Node::as_map_mut) {
        for e in services.iter_mut() {
            let tag = e.value.tag;
            let mut c = normalize::canonical_service(&e.value, &ctx)
                .map_err(|(pos, msg)| invalid(&pos, problem_path(&e.key, &e.value, &pos), msg))?;
            c.tag = tag;
            e.value = c;
        }
    }
    for section in ["networks", "volumes", "secrets", "configs"] {
        if let Some(m) = root.get_mut(section).and_then(Node::as_map_mut) {
            for e in m.iter_mut() {
                if e.value.is_null() {
                    e.value = Node::map(Vec::new(), e.value.pos.clone());
                }
                if let Some(f) = e.value.get("file").and_then(Node::as_str) {
                    let abs = abs_path(f, base, st.home.as_deref());
                    let pos = e.value.pos.clone();
                    e.value.set("file", Node::str(abs, pos));
                }
                for k in ["labels", "driver_opts"] {
                    if let Some(l) = e.value.get(k) {
                        let nl = normalize::string_map(l);
                        e.value.set(k, nl);
                    }
                }
            }
        }
    }
    Ok(root)
}

/// Best-effort path of the node at `pos` inside service `name`, for errors
/// found during canonicalization.
fn problem_path(name: &str, svc: &Node, pos: &Pos) -> String {
    fn find(n: &Node, pos: &Pos, path: String) -> Option<String> {
        if n.pos == *pos && !matches!(n.kind, Kind::Map(_) | Kind::Seq(_)) {
            return Some(path);
        }
        match &n.kind {
            Kind::Seq(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, it)| find(it, pos, format!("{path}[{i}]"))),
            Kind::Map(m) => m
                .iter()
                .find_map(|e| find(&e.value, pos, format!("{path}.{}", e.key))),
            Kind::Scalar(_) => None,
        }
        .or_else(|| (n.pos == *pos).then_some(path.clone()))
    }
    let base = format!("services.{name}");
    find(svc, pos, base.clone()).unwrap_or(base)
}

/// Loads a file as a complete model: the file, its `extends` resolved and its
/// `include`s added.
fn load_model_file(
    path: &Path,
    base: &Path,
    env: &BTreeMap<String, String>,
    st: &mut State,
) -> Result<Node, Error> {
    if st.stack.iter().any(|p| p == path) {
        return Err(Error::Invalid {
            pos: Pos {
                file: Arc::from(display(path, &st.opts.cwd)),
                line: 1,
                col: 1,
            },
            path: "include".into(),
            message: format!(
                "include cycle: {}",
                st.stack
                    .iter()
                    .chain(std::iter::once(&path.to_path_buf()))
                    .map(|p| display(p, &st.opts.cwd))
                    .collect::<Vec<_>>()
                    .join(" -> ")
            ),
        });
    }
    st.stack.push(path.to_path_buf());
    let mut root = load_file(path, base, env, st)?;
    resolve_extends(&mut root, path, base, env, st)?;
    process_include(&mut root, path, env, st)?;
    st.stack.pop();
    Ok(root)
}

type FileCache = HashMap<PathBuf, Node>;

fn resolve_extends(
    root: &mut Node,
    path: &Path,
    base: &Path,
    env: &BTreeMap<String, String>,
    st: &mut State,
) -> Result<(), Error> {
    let names: Vec<String> = root
        .get("services")
        .and_then(Node::as_map)
        .map(|m| m.iter().map(|e| e.key.clone()).collect())
        .unwrap_or_default();
    let mut cache: FileCache = HashMap::new();
    cache.insert(path.to_path_buf(), root.clone());
    let mut bases: HashMap<PathBuf, PathBuf> = HashMap::new();
    bases.insert(path.to_path_buf(), base.to_path_buf());
    for name in names {
        let mut chain = Vec::new();
        let svc = resolved_service(
            path, &name, &mut cache, &mut bases, env, st, &mut chain, None,
        )?;
        if let Some(s) = root.get_mut("services") {
            s.set(&name, svc);
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
#[allow(clippy::single_match_else)]
fn resolved_service(
    file: &Path,
    name: &str,
    cache: &mut FileCache,
    bases: &mut HashMap<PathBuf, PathBuf>,
    env: &BTreeMap<String, String>,
    st: &mut State,
    chain: &mut Vec<(PathBuf, String)>,
    referrer: Option<(&Pos, &str)>,
) -> Result<Node, Error> {
    let root = cache[file].clone();
    let Some(svc) = root.get("services").and_then(|s| s.get(name)).cloned() else {
        let (pos, p) = referrer.unwrap();
        return Err(invalid(
            pos,
            p,
            format!(
                "cannot extend service {name:?}: not defined in {}",
                display(file, &st.opts.cwd)
            ),
        ));
    };
    if chain.iter().any(|(f, n)| f == file && n == name) {
        let (pos, p) = referrer.unwrap();
        let mut names: Vec<String> = chain.iter().map(|(_, n)| n.clone()).collect();
        names.push(name.to_string());
        return Err(invalid(
            pos,
            p,
            format!("extends cycle: {}", names.join(" -> ")),
        ));
    }
    let Some(ext) = svc.get("extends").cloned() else {
        return Ok(svc);
    };
    chain.push((file.to_path_buf(), name.to_string()));
    let (target_file, target) = match ext.as_str() {
        Some(s) => (file.to_path_buf(), s.to_string()),
        None => {
            let t = ext
                .get("service")
                .and_then(Node::as_str)
                .unwrap_or_default()
                .to_string();
            match ext.get("file").and_then(Node::as_str) {
                Some(f) => {
                    let dir = file.parent().unwrap_or(Path::new("/"));
                    (PathBuf::from(abs_path(f, dir, st.home.as_deref())), t)
                }
                None => (file.to_path_buf(), t),
            }
        }
    };
    if !cache.contains_key(&target_file) {
        // Relative paths of another file resolve against that file's directory.
        let dir = target_file.parent().unwrap_or(Path::new("/")).to_path_buf();
        let loaded = load_file(&target_file, &dir, env, st).map_err(|e| match e {
            Error::Read { path, source } => invalid(
                &ext.pos,
                format!("services.{name}.extends.file"),
                format!("cannot read {path}: {source}"),
            ),
            other => other,
        })?;
        cache.insert(target_file.clone(), loaded);
        bases.insert(target_file.clone(), dir);
    }
    let ref_path = format!("services.{name}.extends");
    let mut merged = resolved_service(
        &target_file,
        &target,
        cache,
        bases,
        env,
        st,
        chain,
        Some((&ext.pos, &ref_path)),
    )?;
    chain.pop();
    let mut own = svc;
    own.remove("extends");
    merge(&mut merged, own, "");
    merged.pos = root
        .get("services")
        .and_then(|s| s.get(name))
        .unwrap()
        .pos
        .clone();
    Ok(merged)
}

#[allow(clippy::single_match_else)]
fn process_include(
    root: &mut Node,
    path: &Path,
    env: &BTreeMap<String, String>,
    st: &mut State,
) -> Result<(), Error> {
    let Some(includes) = root.remove("include") else {
        return Ok(());
    };
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    for (i, inc) in includes
        .as_seq()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let ipath = format!("include[{i}]");
        let (paths, pd, env_files): (Vec<String>, Option<String>, Vec<String>) = match inc.as_str()
        {
            Some(p) => (vec![p.to_string()], None, Vec::new()),
            None => {
                let list = |k: &str| -> Vec<String> {
                    match inc.get(k) {
                        Some(n) => match n.as_seq() {
                            Some(xs) => xs.iter().filter_map(Node::scalar_text).collect(),
                            None => n.scalar_text().into_iter().collect(),
                        },
                        None => Vec::new(),
                    }
                };
                (
                    list("path"),
                    inc.get("project_directory")
                        .and_then(Node::as_str)
                        .map(str::to_string),
                    list("env_file"),
                )
            }
        };
        let files: Vec<PathBuf> = paths
            .iter()
            .map(|p| PathBuf::from(abs_path(p, &dir, st.home.as_deref())))
            .collect();
        let Some(first) = files.first() else {
            return Err(invalid(&inc.pos, ipath, "include has no path"));
        };
        let pdir = match pd {
            Some(d) => PathBuf::from(abs_path(&d, &dir, st.home.as_deref())),
            None => first.parent().unwrap_or(Path::new("/")).to_path_buf(),
        };
        let env_paths: Vec<(PathBuf, bool)> = if env_files.is_empty() {
            vec![(pdir.join(".env"), false)]
        } else {
            env_files
                .iter()
                .map(|f| (PathBuf::from(abs_path(f, &dir, st.home.as_deref())), true))
                .collect()
        };
        let mut inc_env = env.clone();
        for (k, v) in read_env_files(&env_paths, &st.opts.env, &st.opts.cwd)? {
            if !st.opts.env.contains_key(&k) {
                inc_env.insert(k, v);
            }
        }
        let mut model: Option<Node> = None;
        for f in &files {
            if is_missing(f) {
                return Err(invalid(
                    &inc.pos,
                    ipath.clone(),
                    format!("included file {} not found", display(f, &st.opts.cwd)),
                ));
            }
            let m = load_model_file(f, &pdir, &inc_env, st)?;
            match &mut model {
                None => model = Some(m),
                Some(b) => merge_files(b, m),
            }
        }
        let model = strip(model.unwrap());
        for section in ["services", "networks", "volumes", "secrets", "configs"] {
            let Some(entries) = model.get(section).and_then(Node::as_map).cloned() else {
                continue;
            };
            if root.get(section).is_none() {
                root.set(section, Node::map(Vec::new(), inc.pos.clone()));
            }
            let target = root.get_mut(section).unwrap();
            for e in entries {
                if let Some(existing) = target.get(&e.key) {
                    if section == "services" || !nodes_equal(existing, &e.value) {
                        return Err(invalid(
                            &existing.pos,
                            format!("{section}.{}", e.key),
                            format!(
                                "conflicts with imported resource from {}",
                                display(first, &st.opts.cwd)
                            ),
                        ));
                    }
                    continue;
                }
                target.set(&e.key, e.value);
            }
        }
    }
    Ok(())
}

fn nodes_equal(a: &Node, b: &Node) -> bool {
    to_value(a) == to_value(b)
}

/// Only a file that is not there is missing: one that exists but is no
/// regular file (`/dev/null`, a FIFO) or cannot be read is left to the
/// reader, whose error then says what is wrong.
fn is_missing(p: &Path) -> bool {
    std::fs::metadata(p).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// Reads env files in order (later ones win); `required` ones must exist.
fn read_env_files(
    files: &[(PathBuf, bool)],
    process_env: &BTreeMap<String, String>,
    cwd: &Path,
) -> Result<Vec<(String, String)>, Error> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for (f, required) in files {
        // Any readable file will do, as with docker compose: /dev/null, a
        // FIFO such as `<(cmd)`; only a missing one is "not found". An
        // optional one may also be a directory (then it is no env file).
        let src = match std::fs::read_to_string(f) {
            Ok(src) => src,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && *required => {
                return Err(Error::Read {
                    path: display(f, cwd),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
                });
            }
            Err(e)
                if !*required
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory
                    ) =>
            {
                continue;
            }
            Err(source) => {
                return Err(Error::Read {
                    path: display(f, cwd),
                    source,
                });
            }
        };
        let lookup = |k: &str| {
            vars.iter()
                .rev()
                .find(|(x, _)| x == k)
                .map(|(_, v)| v.clone())
                .or_else(|| process_env.get(k).cloned())
        };
        let parsed = crate::dotenv::parse(&src, &lookup).map_err(|e| Error::EnvFile {
            file: display(f, cwd),
            line: e.line,
            message: e.message,
        })?;
        vars.extend(parsed);
    }
    Ok(vars)
}

fn valid_project_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// compose-go's `NormalizeProjectName`: lowercase, drop other characters,
/// strip leading `-`/`_`.
fn normalize_project_name(s: &str) -> String {
    let lower: String = s
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')
        .collect();
    lower.trim_start_matches(['-', '_']).to_string()
}

/// The last non-empty `name:` of the top-level files, interpolated; the
/// files' text stays in `st` for the real load. Errors are left to that
/// load, except that a file that cannot be read is one.
fn name_ahead(
    files: &[PathBuf],
    env: &BTreeMap<String, String>,
    st: &State,
) -> Result<Option<String>, Error> {
    let mut name = None;
    for f in files {
        let src = read(f, &st.opts.cwd)?;
        if let Ok(root) = yaml::parse(&src, &Arc::from(display(f, &st.opts.cwd)))
            && let Some(n) = root.get("name").and_then(Node::as_str)
            && let Ok(n) = crate::interp::interpolate(n, &|k: &str| env.get(k).cloned())
            && !n.is_empty()
        {
            name = Some(n);
        }
        st.read_ahead.borrow_mut().insert(f.clone(), src);
    }
    Ok(name)
}

/// Loads the project described by `opts`.
pub fn load(opts: &Options) -> Result<Project, Error> {
    let mut warnings = Vec::new();
    let cwd = &opts.cwd;
    let files: Vec<PathBuf> = if opts.files.is_empty() {
        match opts.env.get("COMPOSE_FILE").filter(|s| !s.is_empty()) {
            Some(list) => list
                .split(':')
                .filter(|s| !s.is_empty())
                .map(|f| cwd.join(f))
                .collect(),
            None => discover(cwd, &mut warnings)?,
        }
    } else {
        opts.files.iter().map(|f| cwd.join(f)).collect()
    };
    let files: Vec<PathBuf> = files
        .iter()
        .map(|f| PathBuf::from(abs_path(&f.to_string_lossy(), cwd, None)))
        .collect();
    if files.is_empty() {
        // `COMPOSE_FILE=":"` names nothing.
        return Err(Error::NoConfigFile { dir: cwd.clone() });
    }
    let working_dir = match &opts.project_directory {
        Some(d) => PathBuf::from(abs_path(&d.to_string_lossy(), cwd, None)),
        None => files[0].parent().unwrap_or(Path::new("/")).to_path_buf(),
    };
    // .env: --env-file replaces the project directory's .env; the process
    // environment wins over both.
    let env_paths: Vec<(PathBuf, bool)> = if opts.env_files.is_empty() {
        vec![(working_dir.join(".env"), false)]
    } else {
        opts.env_files.iter().map(|f| (cwd.join(f), true)).collect()
    };
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in read_env_files(&env_paths, &opts.env, cwd)? {
        env.insert(k, v);
    }
    env.extend(opts.env.iter().map(|(k, v)| (k.clone(), v.clone())));

    let mut st = State {
        opts,
        home: opts.env.get("HOME").cloned(),
        stack: Vec::new(),
        read_ahead: std::cell::RefCell::default(),
        unset: std::cell::RefCell::default(),
        warnings: std::cell::RefCell::default(),
    };
    // As compose-go does, the files are interpolated with
    // COMPOSE_PROJECT_NAME set to the project's name (`-p`, the variable
    // itself, the files' `name:`, or the directory).
    let mut file_env = env.clone();
    if !file_env.contains_key("COMPOSE_PROJECT_NAME") || opts.project_name.is_some() {
        let name = match &opts.project_name {
            Some(p) => p.clone(),
            None => name_ahead(&files, &env, &st)?.unwrap_or_else(|| {
                normalize_project_name(
                    &working_dir
                        .file_name()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                )
            }),
        };
        file_env.insert("COMPOSE_PROJECT_NAME".into(), name);
    }
    let mut merged: Option<Node> = None;
    for f in &files {
        let m = load_model_file(f, &working_dir, &file_env, &mut st)?;
        match &mut merged {
            None => merged = Some(m),
            Some(b) => merge_files(b, m),
        }
    }
    let mut tree = strip(merged.unwrap());
    // docker compose's warnings, in its words.
    warnings.extend(
        st.unset
            .borrow()
            .iter()
            .map(|v| format!("The {v:?} variable is not set. Defaulting to a blank string.")),
    );
    warnings.extend(st.warnings.borrow_mut().drain(..));

    let name = if let Some(p) = &opts.project_name {
        if !valid_project_name(p) {
            return Err(Error::ProjectName { name: p.clone() });
        }
        p.clone()
    } else if let Some(p) = env.get("COMPOSE_PROJECT_NAME").filter(|s| !s.is_empty()) {
        if !valid_project_name(p) {
            return Err(Error::ProjectName { name: p.clone() });
        }
        p.clone()
    } else if let Some(n) = tree
        .get("name")
        .and_then(Node::as_str)
        .filter(|s| !s.is_empty())
    {
        if !valid_project_name(n) {
            return Err(Error::ProjectName { name: n.into() });
        }
        n.to_string()
    } else {
        let base = working_dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        normalize_project_name(&base)
    };
    if name.is_empty() {
        return Err(Error::ProjectName { name });
    }

    let all_profiles: Vec<String> = tree
        .get("services")
        .and_then(Node::as_map)
        .map(|m| {
            m.iter()
                .flat_map(|e| str_list_of(e.value.get("profiles")))
                .collect::<BTreeSet<String>>()
                .into_iter()
                .collect()
        })
        .unwrap_or_default();
    let disabled = apply_profiles(&mut tree, opts, &env)?;
    if !opts.no_consistency {
        check(&tree)?;
    }
    finalize(&mut tree, &name, &env, cwd, &working_dir)?;
    Ok(Project {
        name,
        working_dir,
        files,
        environment: env,
        tree,
        disabled,
        all_profiles,
        warnings,
    })
}

fn str_list_of(n: Option<&Node>) -> Vec<String> {
    n.and_then(Node::as_seq)
        .map(|xs| xs.iter().filter_map(Node::scalar_text).collect())
        .unwrap_or_default()
}

fn deps_of(svc: &Node) -> Vec<(String, bool, Pos)> {
    svc.get("depends_on")
        .and_then(Node::as_map)
        .map(|m| {
            m.iter()
                .map(|e| {
                    let req = !matches!(
                        e.value.get("required").map(|r| &r.kind),
                        Some(Kind::Scalar(Scalar::Bool(false)))
                    );
                    (e.key.clone(), req, e.key_pos.clone())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Removes services not enabled by profiles; returns their names.
fn apply_profiles(
    tree: &mut Node,
    opts: &Options,
    env: &BTreeMap<String, String>,
) -> Result<Vec<String>, Error> {
    let mut active: BTreeSet<String> = opts.profiles.iter().cloned().collect();
    if opts.profiles.is_empty()
        && let Some(p) = env.get("COMPOSE_PROFILES")
    {
        active.extend(
            p.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    let Some(services) = tree.get("services").and_then(Node::as_map).cloned() else {
        if let Some(s) = opts.services.first() {
            return Err(Error::NoSuchService { name: s.clone() });
        }
        return Ok(Vec::new());
    };
    for s in &opts.services {
        if !services.iter().any(|e| e.key == *s) {
            return Err(Error::NoSuchService { name: s.clone() });
        }
    }
    let mut enabled: BTreeSet<String> = services
        .iter()
        .filter(|e| {
            let p = str_list_of(e.value.get("profiles"));
            p.is_empty() || active.contains("*") || p.iter().any(|x| active.contains(x))
        })
        .map(|e| e.key.clone())
        .collect();
    // Services named on the command line are enabled, with what they depend on.
    let mut todo: Vec<String> = opts.services.clone();
    while let Some(s) = todo.pop() {
        if !enabled.insert(s.clone()) && !opts.services.contains(&s) {
            continue;
        }
        if let Some(e) = services.iter().find(|e| e.key == s) {
            for (d, _, _) in deps_of(&e.value) {
                if !enabled.contains(&d) && services.iter().any(|x| x.key == d) {
                    todo.push(d);
                }
            }
        }
    }
    let mut disabled: Vec<String> = services
        .iter()
        .filter(|e| !enabled.contains(&e.key))
        .map(|e| e.key.clone())
        .collect();
    // An enabled service that requires a disabled one cannot run.
    for e in &services {
        if !enabled.contains(&e.key) {
            continue;
        }
        for (d, required, pos) in deps_of(&e.value) {
            if disabled.contains(&d) && required {
                let profiles = services
                    .iter()
                    .find(|x| x.key == d)
                    .map(|x| str_list_of(x.value.get("profiles")).join(", "))
                    .unwrap_or_default();
                return Err(invalid(
                    &pos,
                    format!("services.{}.depends_on.{d}", e.key),
                    format!(
                        "service {d:?} is required but disabled (enable one of its profiles: {profiles})"
                    ),
                ));
            }
        }
    }
    // Named services select the project: them and what they depend on, as
    // `docker compose config SERVICE...` prints.
    if !opts.services.is_empty() {
        let mut selected: BTreeSet<String> = BTreeSet::new();
        let mut todo: Vec<String> = opts.services.clone();
        while let Some(s) = todo.pop() {
            if !selected.insert(s.clone()) {
                continue;
            }
            if let Some(e) = services.iter().find(|e| e.key == s) {
                todo.extend(
                    deps_of(&e.value)
                        .into_iter()
                        .map(|(d, _, _)| d)
                        .filter(|d| enabled.contains(d)),
                );
            }
        }
        enabled = selected;
    }
    let svc_node = tree.get_mut("services").unwrap();
    // Optional dependencies on services disabled by profiles are dropped;
    // services only left out by the selection are not touched by this.
    let by_profile = disabled.clone();
    svc_node
        .as_map_mut()
        .unwrap()
        .retain(|e| enabled.contains(&e.key));
    for e in svc_node.as_map_mut().unwrap() {
        if let Some(d) = e.value.get_mut("depends_on").and_then(Node::as_map_mut) {
            d.retain(|x| !by_profile.contains(&x.key));
            if d.is_empty() {
                e.value.remove("depends_on");
            }
        }
    }
    // Services the command line did not select are defined all the same
    // (compose-go moves them to DisabledServices): never orphans.
    disabled.extend(
        services
            .iter()
            .filter(|e| !enabled.contains(&e.key) && !disabled.contains(&e.key))
            .map(|e| e.key.clone())
            .collect::<Vec<_>>(),
    );
    Ok(disabled)
}

/// Semantic checks docker compose makes on the merged model.
#[allow(clippy::items_after_statements)] // `visit` sits next to its only caller.
fn check(tree: &Node) -> Result<(), Error> {
    let empty = Vec::new();
    let services = tree
        .get("services")
        .and_then(Node::as_map)
        .unwrap_or(&empty);
    let section = |k: &str| -> Vec<String> {
        tree.get(k)
            .and_then(Node::as_map)
            .map(|m| m.iter().map(|e| e.key.clone()).collect())
            .unwrap_or_default()
    };
    let (networks, volumes, secrets, configs) = (
        section("networks"),
        section("volumes"),
        section("secrets"),
        section("configs"),
    );
    let known = |n: &str| services.iter().any(|e| e.key == n);
    let mut container_names: HashMap<String, String> = HashMap::new();
    for e in services {
        let s = &e.value;
        let p = format!("services.{}", e.key);
        if s.get("image").is_none() && s.get("build").is_none() {
            return Err(invalid(
                &e.key_pos,
                p,
                "service has neither an image nor a build context specified",
            ));
        }
        for (d, _, pos) in deps_of(s) {
            if !known(&d) {
                return Err(invalid(
                    &pos,
                    format!("{p}.depends_on.{d}"),
                    format!("depends on undefined service {d:?}"),
                ));
            }
        }
        if let Some(links) = s.get("links").and_then(Node::as_seq) {
            for (i, l) in links.iter().enumerate() {
                let t = l.scalar_text().unwrap_or_default();
                let svc = t.split(':').next().unwrap_or_default();
                if !known(svc) {
                    return Err(invalid(
                        &l.pos,
                        format!("{p}.links[{i}]"),
                        format!("undefined service {svc:?}"),
                    ));
                }
            }
        }
        if let Some(nm) = s.get("network_mode")
            && let Some(t) = nm.as_str().and_then(|x| x.strip_prefix("service:"))
            && !known(t)
        {
            return Err(invalid(
                &nm.pos,
                format!("{p}.network_mode"),
                format!("undefined service {t:?}"),
            ));
        }
        if let Some(vf) = s.get("volumes_from").and_then(Node::as_seq) {
            for (i, v) in vf.iter().enumerate() {
                let t = v.scalar_text().unwrap_or_default();
                if t.starts_with("container:") {
                    continue;
                }
                let svc = t.strip_prefix("service:").unwrap_or(&t);
                let svc = svc.split(':').next().unwrap_or_default();
                if !known(svc) {
                    return Err(invalid(
                        &v.pos,
                        format!("{p}.volumes_from[{i}]"),
                        format!("undefined service {svc:?}"),
                    ));
                }
            }
        }
        if let Some(n) = s.get("networks").and_then(Node::as_map) {
            if s.get("network_mode").is_some() && !n.is_empty() {
                return Err(invalid(
                    &s.get("network_mode").unwrap().pos,
                    format!("{p}.network_mode"),
                    "network_mode and networks cannot be combined",
                ));
            }
            for ne in n {
                if ne.key != "default" && !networks.contains(&ne.key) {
                    return Err(invalid(
                        &ne.key_pos,
                        format!("{p}.networks.{}", ne.key),
                        format!("undefined network {:?}", ne.key),
                    ));
                }
            }
        }
        if let Some(vs) = s.get("volumes").and_then(Node::as_seq) {
            for (i, v) in vs.iter().enumerate() {
                if v.get("type").and_then(Node::as_str) == Some("volume")
                    && let Some(src) = v.get("source").and_then(Node::as_str)
                    && !volumes.iter().any(|x| x == src)
                {
                    return Err(invalid(
                        &v.pos,
                        format!("{p}.volumes[{i}]"),
                        format!("undefined volume {src:?}"),
                    ));
                }
            }
        }
        for (key, defined) in [("secrets", &secrets), ("configs", &configs)] {
            if let Some(xs) = s.get(key).and_then(Node::as_seq) {
                for (i, x) in xs.iter().enumerate() {
                    let src = x.get("source").and_then(Node::as_str).unwrap_or_default();
                    if !defined.iter().any(|d| d == src) {
                        return Err(invalid(
                            &x.pos,
                            format!("{p}.{key}[{i}]"),
                            format!("undefined {} {src:?}", &key[..key.len() - 1]),
                        ));
                    }
                }
            }
        }
        if let Some(cn) = s.get("container_name")
            && let Some(c) = cn.as_str()
            && let Some(other) = container_names.insert(c.to_string(), e.key.clone())
        {
            {
                return Err(invalid(
                    &cn.pos,
                    format!("{p}.container_name"),
                    format!("container name {c:?} is already used by service {other:?}"),
                ));
            }
        }
    }
    // depends_on cycles.
    let graph: BTreeMap<String, Vec<(String, Pos)>> = services
        .iter()
        .map(|e| {
            (
                e.key.clone(),
                deps_of(&e.value)
                    .into_iter()
                    .map(|(d, _, p)| (d, p))
                    .collect(),
            )
        })
        .collect();
    let mut state: HashMap<&str, u8> = HashMap::new();
    fn visit<'a>(
        n: &'a str,
        g: &'a BTreeMap<String, Vec<(String, Pos)>>,
        state: &mut HashMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<(Vec<String>, Pos, String)> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|x| *x == n).unwrap_or(0);
                let mut cyc: Vec<String> = path[start..].iter().map(|s| (*s).to_string()).collect();
                cyc.push(n.to_string());
                return Some((
                    cyc,
                    Pos {
                        file: Arc::from(""),
                        line: 0,
                        col: 0,
                    },
                    String::new(),
                ));
            }
            _ => {}
        }
        state.insert(n, 1);
        path.push(n);
        for (d, pos) in g.get(n).map_or(&[][..], Vec::as_slice) {
            if let Some((cyc, p, at)) = visit(d, g, state, path) {
                // The innermost edge closing the cycle names the position.
                if at.is_empty() {
                    return Some((cyc, pos.clone(), format!("services.{n}.depends_on.{d}")));
                }
                return Some((cyc, p, at));
            }
        }
        path.pop();
        state.insert(n, 2);
        None
    }
    for n in graph.keys() {
        let mut path = Vec::new();
        if let Some((cyc, pos, at)) = visit(n, &graph, &mut state, &mut path) {
            return Err(invalid(
                &pos,
                at,
                format!("dependency cycle detected: {}", cyc.join(" -> ")),
            ));
        }
    }
    Ok(())
}

/// Defaults filled and resources named the way docker compose prints them.
fn finalize(
    tree: &mut Node,
    name: &str,
    env: &BTreeMap<String, String>,
    cwd: &Path,
    working_dir: &Path,
) -> Result<(), Error> {
    let root_pos = tree.pos.clone();
    let mut used_networks: BTreeSet<String> = BTreeSet::new();
    let mut used_volumes: BTreeSet<String> = BTreeSet::new();
    let mut used_secrets: BTreeSet<String> = BTreeSet::new();
    let mut used_configs: BTreeSet<String> = BTreeSet::new();
    if let Some(services) = tree.get_mut("services").and_then(Node::as_map_mut) {
        services.sort_by(|a, b| a.key.cmp(&b.key));
        for e in services.iter_mut() {
            let p = format!("services.{}", e.key);
            let s = &mut e.value;
            // env_file contents go under environment (explicit entries win).
            if let Some(files) = s.remove("env_file") {
                let mut fromfiles: Vec<(String, String)> = Vec::new();
                for (i, f) in files
                    .as_seq()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                {
                    let path = f.get("path").and_then(Node::as_str).unwrap_or_default();
                    let required = !matches!(
                        f.get("required").map(|r| &r.kind),
                        Some(Kind::Scalar(Scalar::Bool(false)))
                    );
                    let pb = PathBuf::from(path);
                    if is_missing(&pb) {
                        if required {
                            return Err(invalid(
                                &f.pos,
                                format!("{p}.env_file[{i}]"),
                                format!("env file {} not found", display(&pb, cwd)),
                            ));
                        }
                        continue;
                    }
                    fromfiles.extend(read_env_files(&[(pb, true)], env, cwd)?);
                }
                if !fromfiles.is_empty() {
                    let pos = files.pos.clone();
                    if s.get("environment").is_none() {
                        s.set("environment", Node::map(Vec::new(), pos.clone()));
                    }
                    let envn = s.get_mut("environment").unwrap();
                    // Explicit entries win; among the files, later ones do.
                    let explicit: BTreeSet<String> = envn
                        .as_map()
                        .map(|m| m.iter().map(|e| e.key.clone()).collect())
                        .unwrap_or_default();
                    for (k, v) in fromfiles {
                        if !explicit.contains(&k) {
                            envn.set(&k, Node::str(v, pos.clone()));
                        }
                    }
                }
            }
            // label_file contents go under labels, as compose-go's
            // WithServicesLabelsResolved does: later files win over earlier
            // ones (whose values they may use), explicit labels over all;
            // docker compose config then leaves label_file out.
            if let Some(files) = s.remove("label_file") {
                let mut paths = Vec::new();
                for (i, f) in files
                    .as_seq()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                {
                    let pb = PathBuf::from(f.as_str().unwrap_or_default());
                    if is_missing(&pb) {
                        return Err(invalid(
                            &f.pos,
                            format!("{p}.label_file[{i}]"),
                            format!("label file {} not found", display(&pb, cwd)),
                        ));
                    }
                    paths.push((pb, true));
                }
                let fromfiles = read_env_files(&paths, &BTreeMap::new(), cwd)?;
                if !fromfiles.is_empty() {
                    let pos = files.pos.clone();
                    if s.get("labels").is_none() {
                        s.set("labels", Node::map(Vec::new(), pos.clone()));
                    }
                    let labels = s.get_mut("labels").unwrap();
                    let explicit: BTreeSet<String> = labels
                        .as_map()
                        .map(|m| m.iter().map(|e| e.key.clone()).collect())
                        .unwrap_or_default();
                    for (k, v) in fromfiles {
                        if !explicit.contains(&k) {
                            labels.set(&k, Node::str(v, pos.clone()));
                        }
                    }
                }
            }
            // `- KEY` entries take their value from the environment.
            if let Some(m) = s.get_mut("environment").and_then(Node::as_map_mut) {
                for x in m.iter_mut() {
                    if x.value.is_null()
                        && let Some(v) = env.get(&x.key)
                    {
                        x.value = Node::str(v.clone(), x.value.pos.clone());
                    }
                }
            }
            if s.get("networks").is_none() && s.get("network_mode").is_none() {
                s.set(
                    "networks",
                    Node::map(
                        vec![Entry {
                            key: "default".into(),
                            key_pos: e.key_pos.clone(),
                            value: Node::null(e.key_pos.clone()),
                        }],
                        e.key_pos.clone(),
                    ),
                );
            }
            if let Some(n) = s.get("networks").and_then(Node::as_map) {
                used_networks.extend(n.iter().map(|x| x.key.clone()));
            }
            if let Some(vs) = s.get("volumes").and_then(Node::as_seq) {
                for v in vs {
                    if v.get("type").and_then(Node::as_str) == Some("volume")
                        && let Some(src) = v.get("source").and_then(Node::as_str)
                    {
                        used_volumes.insert(src.to_string());
                    }
                }
            }
            for (k, set) in [
                ("secrets", &mut used_secrets),
                ("configs", &mut used_configs),
            ] {
                for x in s.get(k).and_then(Node::as_seq).cloned().unwrap_or_default() {
                    if let Some(src) = x.get("source").and_then(Node::as_str) {
                        set.insert(src.to_string());
                    }
                }
            }
            if let Some(b) = s.get("build").cloned() {
                let mut b = b;
                // compose-go's Normalize: context `.` (the project
                // directory) and `Dockerfile` unless it is inline.
                if b.get("context").is_none() {
                    let pos = b.pos.clone();
                    b.set("context", Node::str(working_dir.display().to_string(), pos));
                }
                if b.get("dockerfile").is_none() && b.get("dockerfile_inline").is_none() {
                    let pos = b.pos.clone();
                    b.set("dockerfile", Node::str("Dockerfile", pos));
                }
                s.set("build", reorder(b, normalize::BUILD_ORDER));
            }
            let sorted = reorder(
                std::mem::replace(s, Node::null(root_pos.clone())),
                normalize::SERVICE_ORDER,
            );
            *s = sorted;
        }
    }
    if !used_networks.is_empty() && used_networks.contains("default") {
        if tree.get("networks").is_none() {
            tree.set("networks", Node::map(Vec::new(), root_pos.clone()));
        }
        let nets = tree.get_mut("networks").unwrap();
        if nets.get("default").is_none() {
            nets.set("default", Node::map(Vec::new(), root_pos.clone()));
        }
    }
    for (section, used, order) in [
        ("networks", &used_networks, normalize::NETWORK_ORDER),
        ("volumes", &used_volumes, normalize::VOLUME_ORDER),
        ("secrets", &used_secrets, normalize::SECRET_ORDER),
        ("configs", &used_configs, normalize::SECRET_ORDER),
    ] {
        let Some(m) = tree.get_mut(section).and_then(Node::as_map_mut) else {
            continue;
        };
        // Resources no enabled service uses are left out, as docker compose does.
        m.retain(|e| used.contains(&e.key));
        m.sort_by(|a, b| a.key.cmp(&b.key));
        for e in m.iter_mut() {
            let v = &mut e.value;
            let pos = v.pos.clone();
            let external = v.get("external").cloned();
            let mut is_external = false;
            if let Some(x) = external {
                match &x.kind {
                    // Legacy `external: {name: x}`.
                    Kind::Map(_) => {
                        if let Some(n) = x.get("name").cloned() {
                            v.set("name", n);
                        }
                        v.set(
                            "external",
                            Node::new(Kind::Scalar(Scalar::Bool(true)), pos.clone()),
                        );
                        is_external = true;
                    }
                    Kind::Scalar(Scalar::Bool(b)) => is_external = *b,
                    Kind::Scalar(Scalar::Str(s)) => {
                        let b = crate::schema::parse_bool(s).unwrap_or(false);
                        v.set(
                            "external",
                            Node::new(Kind::Scalar(Scalar::Bool(b)), pos.clone()),
                        );
                        is_external = b;
                    }
                    _ => {}
                }
            }
            if v.get("name").is_none() {
                let n = if is_external {
                    e.key.clone()
                } else {
                    format!("{name}_{}", e.key)
                };
                v.set("name", Node::str(n, pos));
            }
            let ordered = reorder(std::mem::replace(v, Node::null(root_pos.clone())), order);
            *v = ordered;
        }
        if m.is_empty() {
            tree.remove(section);
        }
    }
    tree.set("name", Node::str(name, root_pos.clone()));
    normalize::order(tree, normalize::Shape::Struct("project"));
    Ok(())
}
