//! Typed instructions: each raw [`Node`] interpreted the way `BuildKit`'s
//! `instructions.Parse` does (flags checked, mounts parsed, argument counts
//! validated). Argument values stay unexpanded: variables are substituted by
//! the builder with the stage's environment (see [`crate::shell`]).

use std::time::Duration;

use crate::parser::{self, Args, Ast, Directives, Heredoc, Node, Span};
use crate::{Error, Location};

/// The shell or exec form of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Shell form: the text handed to the stage's `SHELL`.
    Shell(String),
    /// Exec (JSON array) form.
    Exec(Vec<String>),
}

/// `FROM [--platform=…] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    pub image: String,
    pub platform: Option<String>,
    /// The stage name, lower-cased as `BuildKit` does.
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Secret,
    Ssh,
    Tmpfs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount=` of a RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountType,
    pub target: Option<String>,
    pub source: Option<String>,
    pub from: Option<String>,
    pub readonly: bool,
    pub id: Option<String>,
    pub sharing: Sharing,
    pub required: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
    /// secret exposed as this environment variable.
    pub env: Option<String>,
}

/// `RUN [--mount=…]… [--network=…] [--security=…] command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: Command,
    pub mounts: Vec<Mount>,
    /// `default`, `none` or `host`.
    pub network: Option<String>,
    /// `sandbox` or `insecure`.
    pub security: Option<String>,
    pub heredocs: Vec<Heredoc>,
}

/// `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Add {
    pub sources: Vec<String>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    pub link: bool,
    pub exclude: Vec<String>,
    pub heredocs: Vec<Heredoc>,
}

/// `COPY`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Copy {
    pub sources: Vec<String>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    pub heredocs: Vec<Heredoc>,
}

/// One name of an `ARG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDef {
    pub name: String,
    /// The default as written (quotes kept, unexpanded).
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`.
    None,
    Cmd {
        command: Command,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From(From),
    Run(Run),
    Cmd(Command),
    Entrypoint(Command),
    /// Key/value pairs, values as written.
    Label(Vec<(String, String)>),
    Expose(Vec<String>),
    /// Key/value pairs, values as written.
    Env(Vec<(String, String)>),
    Add(Add),
    Copy(Copy),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Arg(Vec<ArgDef>),
    /// The trigger, parsed; `original` is its text as stored in the image config.
    Onbuild {
        trigger: Box<Instruction>,
        original: String,
    },
    StopSignal(String),
    Healthcheck(Healthcheck),
    Shell(Vec<String>),
    Maintainer(String),
}

/// An instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned {
    pub instruction: Instruction,
    pub span: Span,
    /// The logical source line (continuations joined).
    pub original: String,
}

/// A parsed and interpreted Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub directives: Directives,
    pub instructions: Vec<Spanned>,
}

impl Dockerfile {
    /// Parses and interprets `src`; `file` names it in errors.
    pub fn parse(src: &str, file: &str) -> Result<Dockerfile, Error> {
        let ast = parser::parse(src, file)?;
        Self::from_ast(&ast, file)
    }

    /// Interprets an already parsed [`Ast`].
    pub fn from_ast(ast: &Ast, file: &str) -> Result<Dockerfile, Error> {
        let mut instructions = Vec::with_capacity(ast.nodes.len());
        let mut seen_from = false;
        for node in &ast.nodes {
            let loc = |col: usize| Location {
                file: file.to_string(),
                line: node.span.start_line,
                col,
            };
            let instruction = interpret(node).map_err(|(message, col)| Error::Dockerfile {
                location: loc(col.unwrap_or(node.span.col)),
                message,
                hint: None,
            })?;
            match &instruction {
                Instruction::From(_) => seen_from = true,
                Instruction::Arg(_) => {}
                _ if !seen_from => {
                    return Err(Error::Dockerfile {
                        location: loc(node.span.col),
                        message: format!(
                            "no build stage in current context: {} before the first FROM",
                            node.name()
                        ),
                        hint: Some("only ARG may come before the first FROM".to_string()),
                    });
                }
                _ => {}
            }
            instructions.push(Spanned {
                instruction,
                span: node.span,
                original: node.original.clone(),
            });
        }
        Ok(Dockerfile {
            directives: ast.directives.clone(),
            instructions,
        })
    }
}

/// One build stage: its FROM and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage<'a> {
    /// 0-based position among the stages (`COPY --from=0`).
    pub index: usize,
    pub from: &'a From,
    pub from_span: Span,
    pub instructions: &'a [Spanned],
}

impl Dockerfile {
    /// The `ARG`s before the first `FROM` (usable in `FROM` lines).
    pub fn meta_args(&self) -> Vec<&ArgDef> {
        self.instructions
            .iter()
            .take_while(|i| !matches!(i.instruction, Instruction::From(_)))
            .flat_map(|i| match &i.instruction {
                Instruction::Arg(defs) => defs.iter().collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// The build stages in file order.
    pub fn stages(&self) -> Vec<Stage<'_>> {
        let starts: Vec<usize> = self
            .instructions
            .iter()
            .enumerate()
            .filter(|(_, i)| matches!(i.instruction, Instruction::From(_)))
            .map(|(n, _)| n)
            .collect();
        starts
            .iter()
            .enumerate()
            .filter_map(|(index, &start)| {
                let end = starts
                    .get(index + 1)
                    .copied()
                    .unwrap_or(self.instructions.len());
                match &self.instructions[start].instruction {
                    Instruction::From(from) => Some(Stage {
                        index,
                        from,
                        from_span: self.instructions[start].span,
                        instructions: &self.instructions[start + 1..end],
                    }),
                    _ => None,
                }
            })
            .collect()
    }

    /// The stage named `name` (case-insensitive) or with that index.
    pub fn stage(&self, name: &str) -> Option<Stage<'_>> {
        let lower = name.to_ascii_lowercase();
        let stages = self.stages();
        let by_name = stages
            .iter()
            .position(|s| s.from.name.as_deref() == Some(lower.as_str()));
        let pos = by_name.or_else(|| name.parse::<usize>().ok().filter(|i| *i < stages.len()))?;
        stages.into_iter().nth(pos)
    }
}

/// `(message, column on the first line if known)`.
type Fail = (String, Option<usize>);

fn fail<T>(m: impl Into<String>) -> Result<T, Fail> {
    Err((m.into(), None))
}

#[derive(Clone, Copy, PartialEq)]
enum FlagKind {
    Bool,
    String,
    Strings,
}

#[derive(Default)]
struct Flags {
    values: Vec<(String, Vec<String>)>,
}

impl Flags {
    /// `BuildKit`'s `BFlags.Parse`: `--name=value`, `--name` for booleans.
    fn parse(node: &Node, allowed: &[(&str, FlagKind)]) -> Result<Flags, Fail> {
        let mut out = Flags::default();
        // Flags appear in order on the line; search each after the previous one.
        let line = node.original.trim_start();
        let mut from = 0;
        for raw in &node.flags {
            let col = line[from..].find(raw.as_str()).map(|i| {
                from += i + raw.len();
                node.span.col + line[..from - raw.len()].chars().count()
            });
            let Some(arg) = raw.strip_prefix("--") else {
                return Err((format!("arg should start with -- : {raw}"), col));
            };
            let (name, value) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (arg, None),
            };
            let Some(&(_, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
                return Err((format!("unknown flag: {name}"), col));
            };
            let existing = out.values.iter_mut().find(|(n, _)| n == name);
            if existing.is_some() && kind != FlagKind::Strings {
                return Err((format!("duplicate flag specified: {name}"), col));
            }
            let value = match kind {
                FlagKind::Bool => match value.map(str::to_ascii_lowercase).as_deref() {
                    None | Some("true") => "true".to_string(),
                    Some("false") => "false".to_string(),
                    Some(v) => {
                        return Err((
                            format!("expecting boolean value for flag {name}, not: {v}"),
                            col,
                        ));
                    }
                },
                _ => match value {
                    Some(v) => v.to_string(),
                    None => return Err((format!("missing a value on flag: {name}"), col)),
                },
            };
            match existing {
                Some((_, vs)) => vs.push(value),
                None => out.values.push((name.to_string(), vec![value])),
            }
        }
        Ok(out)
    }

    fn string(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.last().cloned())
    }
    fn strings(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
    fn bool(&self, name: &str) -> bool {
        self.string(name).is_some_and(|v| v == "true")
    }
}

fn command(node: &Node, what: &str) -> Result<Command, Fail> {
    let words = node.words();
    if node.json {
        Ok(Command::Exec(words.to_vec()))
    } else if words.is_empty() {
        fail(format!("{what} requires at least one argument"))
    } else {
        Ok(Command::Shell(words.join(" ")))
    }
}

fn pairs(node: &Node, what: &str) -> Result<Vec<(String, String)>, Fail> {
    let w = node.words();
    if w.is_empty() {
        return fail(format!("{what} requires at least one argument"));
    }
    let mut out = Vec::new();
    for c in w.chunks(3) {
        if c[0].is_empty() {
            return fail(format!("{what} names can not be blank"));
        }
        out.push((c[0].clone(), c.get(1).cloned().unwrap_or_default()));
    }
    Ok(out)
}

fn exactly_one(node: &Node, what: &str) -> Result<String, Fail> {
    match node.words() {
        [one] => Ok(one.clone()),
        _ => fail(format!("{what} requires exactly one argument")),
    }
}

fn interpret(node: &Node) -> Result<Instruction, Fail> {
    use FlagKind::{Bool, String as Str, Strings};
    let name = node.name();
    let no_flags = || Flags::parse(node, &[]);
    let words = node.words();
    Ok(match name.as_str() {
        "FROM" => {
            let f = Flags::parse(node, &[("platform", Str)])?;
            let (image, stage) = match words {
                [image] => (image.clone(), None),
                [image, kw, n] if kw.eq_ignore_ascii_case("as") => {
                    let n = n.to_ascii_lowercase();
                    let valid = n.starts_with(|c: char| c.is_ascii_lowercase())
                        && n.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c)
                        });
                    if !valid {
                        return fail(format!(
                            "invalid name for build stage: {}, name can't start with a number or contain symbols",
                            parser::go_quote(&n)
                        ));
                    }
                    (image.clone(), Some(n))
                }
                [_, kw] if kw.eq_ignore_ascii_case("as") => {
                    return fail("FROM ... AS requires a stage name after AS");
                }
                _ => return fail("FROM requires either one or three arguments"),
            };
            Instruction::From(From {
                image,
                platform: f.string("platform"),
                name: stage,
            })
        }
        "RUN" => {
            let f = Flags::parse(
                node,
                &[("mount", Strings), ("network", Str), ("security", Str)],
            )?;
            let mut mounts = Vec::new();
            for m in f.strings("mount") {
                mounts.push(parse_mount(&m).map_err(|e| (e, None))?);
            }
            let network = f.string("network");
            if let Some(n) = &network
                && !matches!(n.as_str(), "default" | "none" | "host")
            {
                return fail(format!("unsupported network mode {}", parser::go_quote(n)));
            }
            let security = f.string("security");
            if let Some(s) = &security
                && !matches!(s.as_str(), "sandbox" | "insecure")
            {
                return fail(format!("unsupported security mode {}", parser::go_quote(s)));
            }
            Instruction::Run(Run {
                command: command(node, "RUN")?,
                mounts,
                network,
                security,
                heredocs: node.heredocs.clone(),
            })
        }
        "CMD" => {
            no_flags()?;
            // A bare `CMD` is an empty shell form, as in BuildKit.
            Instruction::Cmd(if words.is_empty() && !node.json {
                Command::Shell(String::new())
            } else {
                command(node, "CMD")?
            })
        }
        "ENTRYPOINT" => {
            no_flags()?;
            Instruction::Entrypoint(if words.is_empty() && !node.json {
                Command::Shell(String::new())
            } else {
                command(node, "ENTRYPOINT")?
            })
        }
        "LABEL" => {
            no_flags()?;
            Instruction::Label(pairs(node, "LABEL")?)
        }
        "ENV" => {
            no_flags()?;
            Instruction::Env(pairs(node, "ENV")?)
        }
        "EXPOSE" => {
            no_flags()?;
            if words.is_empty() {
                return fail("EXPOSE requires at least one argument");
            }
            Instruction::Expose(words.to_vec())
        }
        "ADD" | "COPY" => {
            let (srcs, dest) = match words {
                [srcs @ .., dest] if !srcs.is_empty() => {
                    // Heredoc words (`<<EOF`) are inline sources, carried in `heredocs`.
                    let is_heredoc = |w: &String| {
                        !node.heredocs.is_empty()
                            && matches!(parser::parse_heredoc(w), Ok(Some(h)) if node.heredocs.iter().any(|d| d.name == h.name))
                    };
                    (
                        srcs.iter().filter(|w| !is_heredoc(w)).cloned().collect(),
                        dest.clone(),
                    )
                }
                _ => {
                    return fail(format!(
                        "{name} requires at least two arguments, but only one was provided. Destination could not be determined"
                    ));
                }
            };
            if name == "ADD" {
                let f = Flags::parse(
                    node,
                    &[
                        ("chown", Str),
                        ("chmod", Str),
                        ("checksum", Str),
                        ("keep-git-dir", Bool),
                        ("link", Bool),
                        ("exclude", Strings),
                    ],
                )?;
                Instruction::Add(Add {
                    sources: srcs,
                    dest,
                    chown: f.string("chown"),
                    chmod: f.string("chmod"),
                    checksum: f.string("checksum"),
                    keep_git_dir: f.bool("keep-git-dir"),
                    link: f.bool("link"),
                    exclude: f.strings("exclude"),
                    heredocs: node.heredocs.clone(),
                })
            } else {
                let f = Flags::parse(
                    node,
                    &[
                        ("from", Str),
                        ("chown", Str),
                        ("chmod", Str),
                        ("link", Bool),
                        ("parents", Bool),
                        ("exclude", Strings),
                    ],
                )?;
                Instruction::Copy(Copy {
                    sources: srcs,
                    dest,
                    from: f.string("from"),
                    chown: f.string("chown"),
                    chmod: f.string("chmod"),
                    link: f.bool("link"),
                    parents: f.bool("parents"),
                    exclude: f.strings("exclude"),
                    heredocs: node.heredocs.clone(),
                })
            }
        }
        "VOLUME" => {
            no_flags()?;
            if words.is_empty() {
                return fail("VOLUME requires at least one argument");
            }
            if words.iter().any(|w| w.trim().is_empty()) {
                return fail("VOLUME specified can not be an empty string");
            }
            Instruction::Volume(words.to_vec())
        }
        "USER" => {
            no_flags()?;
            Instruction::User(exactly_one(node, "USER")?)
        }
        "WORKDIR" => {
            no_flags()?;
            Instruction::Workdir(exactly_one(node, "WORKDIR")?)
        }
        "STOPSIGNAL" => {
            no_flags()?;
            Instruction::StopSignal(exactly_one(node, "STOPSIGNAL")?)
        }
        "MAINTAINER" => {
            no_flags()?;
            Instruction::Maintainer(exactly_one(node, "MAINTAINER")?)
        }
        "ARG" => {
            no_flags()?;
            if words.is_empty() {
                return fail("ARG requires at least one argument");
            }
            let mut defs = Vec::new();
            for w in words {
                let (n, d) = match w.split_once('=') {
                    Some((n, d)) => (n, Some(d.to_string())),
                    None => (w.as_str(), None),
                };
                if n.is_empty() {
                    return fail("ARG names can not be blank");
                }
                defs.push(ArgDef {
                    name: n.to_string(),
                    default: d,
                });
            }
            Instruction::Arg(defs)
        }
        "ONBUILD" => {
            no_flags()?;
            let Args::Sub(sub) = &node.args else {
                return fail("ONBUILD requires at least one argument");
            };
            let sub_name = sub.name();
            if matches!(sub_name.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return fail(format!("{sub_name} isn't allowed as an ONBUILD trigger"));
            }
            let mut sub = (**sub).clone();
            sub.span = Span {
                col: sub.span.col,
                ..node.span
            };
            Instruction::Onbuild {
                trigger: Box::new(interpret(&sub)?),
                original: node.rest.clone(),
            }
        }
        "HEALTHCHECK" => {
            let f = Flags::parse(
                node,
                &[
                    ("interval", Str),
                    ("timeout", Str),
                    ("start-period", Str),
                    ("start-interval", Str),
                    ("retries", Str),
                ],
            )?;
            let Some(kind) = words.first() else {
                return fail("HEALTHCHECK requires an argument");
            };
            match kind.to_ascii_uppercase().as_str() {
                "NONE" => {
                    if words.len() > 1 {
                        return fail("HEALTHCHECK NONE takes no arguments");
                    }
                    Instruction::Healthcheck(Healthcheck::None)
                }
                "CMD" => {
                    let rest = &words[1..];
                    let cmd = if node.json {
                        if rest.is_empty() {
                            return fail("Missing command after HEALTHCHECK CMD");
                        }
                        Command::Exec(rest.to_vec())
                    } else {
                        match rest {
                            [c] => Command::Shell(c.clone()),
                            _ => return fail("Missing command after HEALTHCHECK CMD"),
                        }
                    };
                    let dur = |n: &str| -> Result<Option<Duration>, Fail> {
                        match f.string(n) {
                            None => Ok(None),
                            Some(v) => {
                                let d = parse_go_duration(&v)
                                    .map_err(|e| (format!("--{n}: {e}"), None))?;
                                if !d.is_zero() && d < Duration::from_millis(1) {
                                    return fail(format!("--{n} cannot be less than 1ms"));
                                }
                                Ok(Some(d))
                            }
                        }
                    };
                    let retries = match f.string("retries") {
                        None => None,
                        Some(v) => Some(v.parse::<u32>().map_err(|_| {
                            (
                                format!("--retries must be a non-negative integer, not {v}"),
                                None,
                            )
                        })?),
                    };
                    Instruction::Healthcheck(Healthcheck::Cmd {
                        command: cmd,
                        interval: dur("interval")?,
                        timeout: dur("timeout")?,
                        start_period: dur("start-period")?,
                        start_interval: dur("start-interval")?,
                        retries,
                    })
                }
                other => {
                    return fail(
                        format!("Unknown type {}", parser::go_quote(other))
                            + " in HEALTHCHECK (try CMD)",
                    );
                }
            }
        }
        "SHELL" => {
            no_flags()?;
            if !node.json {
                return fail("SHELL requires the arguments to be in JSON form");
            }
            if words.is_empty() {
                return fail("SHELL requires at least one argument");
            }
            Instruction::Shell(words.to_vec())
        }
        other => return fail(format!("unknown instruction: {other}")),
    })
}

/// Parses a `--mount` value: CSV of `key=value` or bare boolean keys.
pub fn parse_mount(value: &str) -> Result<Mount, String> {
    let fields = split_csv(value)?;
    let mut kind = MountType::Bind;
    for f in &fields {
        if let Some(("type", t)) = f.split_once('=').map(|(k, v)| (k.trim(), v)) {
            kind = match t.to_ascii_lowercase().as_str() {
                "bind" => MountType::Bind,
                "cache" => MountType::Cache,
                "secret" => MountType::Secret,
                "ssh" => MountType::Ssh,
                "tmpfs" => MountType::Tmpfs,
                _ => return Err(format!("unsupported mount type {}", parser::go_quote(t))),
            };
        }
    }
    let mut m = Mount {
        kind,
        target: None,
        source: None,
        from: None,
        readonly: matches!(kind, MountType::Bind),
        id: None,
        sharing: Sharing::Shared,
        required: false,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        env: None,
    };
    let parse_bool = |k: &str, v: Option<&str>| -> Result<bool, String> {
        match v.map(str::to_ascii_lowercase).as_deref() {
            None | Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(format!("invalid value for {k}: {v}")),
        }
    };
    let num = |k: &str, v: &str, radix: u32| -> Result<u32, String> {
        u32::from_str_radix(v, radix).map_err(|_| format!("invalid value for {k}: {v}"))
    };
    for f in fields {
        let (k, v) = match f.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
            None => (f.trim().to_ascii_lowercase(), None),
        };
        let need = |v: Option<String>| {
            v.ok_or_else(|| format!("invalid field '{f}' must be a key=value pair"))
        };
        match k.as_str() {
            "type" => {}
            "target" | "dst" | "destination" => m.target = Some(need(v)?),
            "source" | "src" => m.source = Some(need(v)?),
            "from" => m.from = Some(need(v)?),
            "readonly" | "ro" => m.readonly = parse_bool(&k, v.as_deref())?,
            "readwrite" | "rw" => m.readonly = !parse_bool(&k, v.as_deref())?,
            "required" => m.required = parse_bool(&k, v.as_deref())?,
            "id" => m.id = Some(need(v)?),
            "sharing" => {
                let v = need(v)?;
                m.sharing = match v.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => {
                        return Err(format!(
                            "unsupported sharing value {}",
                            parser::go_quote(&v)
                        ));
                    }
                };
            }
            "mode" => m.mode = Some(num(&k, &need(v)?, 8)?),
            "uid" => m.uid = Some(num(&k, &need(v)?, 10)?),
            "gid" => m.gid = Some(num(&k, &need(v)?, 10)?),
            "size" => {
                let v = need(v)?;
                m.size =
                    Some(parse_size(&v).ok_or_else(|| format!("invalid value for size: {v}"))?);
            }
            "env" => m.env = Some(need(v)?),
            _ => return Err(format!("unexpected key '{k}' in '{f}'")),
        }
    }
    match m.kind {
        MountType::Secret | MountType::Ssh => {}
        _ if m.target.is_none() => return Err("mount destination not set".to_string()),
        _ => {}
    }
    if m.kind == MountType::Secret
        && m.target.is_none()
        && m.env.is_none()
        && m.id.is_none()
        && m.source.is_none()
    {
        return Err("secret mount needs an id, a source, a target or an env".to_string());
    }
    Ok(m)
}

/// encoding/csv's reading of one record: `,`-separated, `"` quoting with `""` escapes.
fn split_csv(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if at_start && c == '"' {
            at_start = false;
            loop {
                match chars.next() {
                    None => return Err(format!("extraneous or missing \" in quoted-field: {s}")),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        cur.push('"');
                    }
                    Some('"') => break,
                    Some(c) => cur.push(c),
                }
            }
            continue;
        }
        at_start = false;
        if c == ',' {
            out.push(std::mem::take(&mut cur));
            at_start = true;
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    Ok(out)
}

/// `--mount=type=tmpfs,size=…`: docker's `RAMInBytes`, as `BuildKit` reads it.
fn parse_size(v: &str) -> Option<u64> {
    keel_go::ram_in_bytes(v.trim())
        .ok()
        .and_then(|n| u64::try_from(n).ok())
}

/// Go's `time.ParseDuration` for non-negative values (`1h2m3.5s`, `300ms`, `0`).
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    match keel_go::parse_duration(s) {
        Ok(ns) if ns >= 0 => Ok(Duration::from_nanos(ns.unsigned_abs())),
        _ => Err(format!("time: invalid duration {}", parser::go_quote(s))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Instruction {
        let df = Dockerfile::parse(&format!("FROM scratch\n{src}\n"), "Dockerfile").unwrap();
        df.instructions[1].instruction.clone()
    }

    fn fail(src: &str) -> String {
        Dockerfile::parse(&format!("FROM scratch\n{src}\n"), "Dockerfile")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn from_forms() {
        let df = Dockerfile::parse(
            "ARG V=1\nFROM --platform=$BUILDPLATFORM alpine:$V AS Build\n",
            "D",
        )
        .unwrap();
        assert_eq!(
            df.instructions[1].instruction,
            Instruction::From(From {
                image: "alpine:$V".into(),
                platform: Some("$BUILDPLATFORM".into()),
                name: Some("build".into())
            })
        );
        assert_eq!(
            Dockerfile::parse("FROM alpine AS\n", "D")
                .unwrap_err()
                .to_string(),
            "D:1:1: FROM ... AS requires a stage name after AS"
        );
        assert!(
            Dockerfile::parse("FROM a AS 1x\n", "D")
                .unwrap_err()
                .to_string()
                .contains("invalid name for build stage")
        );
        assert!(Dockerfile::parse("FROM a b c d\n", "D").is_err());
    }

    #[test]
    fn run_mounts_network_security() {
        let Instruction::Run(r) = one(
            "RUN --mount=type=cache,target=/root/.cache,id=c,sharing=locked --mount=type=secret,id=tok,env=TOKEN,required --mount=type=bind,from=build,source=/out,target=/in,rw --mount=type=tmpfs,target=/t,size=64m --network=none --security=insecure make",
        ) else {
            panic!()
        };
        assert_eq!(r.command, Command::Shell("make".into()));
        assert_eq!(r.mounts.len(), 4);
        assert_eq!(r.mounts[0].kind, MountType::Cache);
        assert_eq!(r.mounts[0].sharing, Sharing::Locked);
        assert_eq!(r.mounts[1].env.as_deref(), Some("TOKEN"));
        assert!(r.mounts[1].required);
        assert_eq!(r.mounts[2].from.as_deref(), Some("build"));
        assert!(!r.mounts[2].readonly);
        assert_eq!(r.mounts[3].size, Some(64 << 20));
        assert_eq!(r.network.as_deref(), Some("none"));
        assert_eq!(r.security.as_deref(), Some("insecure"));
        let Instruction::Run(r) = one("RUN [\"echo\", \"a b\"]") else {
            panic!()
        };
        assert_eq!(r.command, Command::Exec(vec!["echo".into(), "a b".into()]));
    }

    #[test]
    fn run_errors() {
        assert_eq!(
            fail("RUN --mount=type=nfs,target=/x true"),
            "Dockerfile:2:1: unsupported mount type \"nfs\""
        );
        assert_eq!(
            fail("RUN --bogus true"),
            "Dockerfile:2:5: unknown flag: bogus"
        );
        assert_eq!(
            fail("RUN --network true"),
            "Dockerfile:2:5: missing a value on flag: network"
        );
        assert!(fail("RUN --mount=type=cache true").contains("mount destination not set"));
        assert!(fail("RUN --network=bridge true").contains("unsupported network mode"));
    }

    #[test]
    fn copy_and_add_flags() {
        let Instruction::Copy(c) = one(
            "COPY --from=build --chown=1:2 --chmod=755 --link --parents --exclude=*.tmp --exclude=x a b /dst/",
        ) else {
            panic!()
        };
        assert_eq!(c.sources, ["a", "b"]);
        assert_eq!(c.dest, "/dst/");
        assert_eq!(c.from.as_deref(), Some("build"));
        assert!(c.link && c.parents);
        assert_eq!(c.exclude, ["*.tmp", "x"]);
        let Instruction::Add(a) = one(
            "ADD --checksum=sha256:abc --keep-git-dir=true --link=false --chown=u https://example.com/x.tgz /x",
        ) else {
            panic!()
        };
        assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
        assert!(a.keep_git_dir && !a.link);
        assert_eq!(a.sources, ["https://example.com/x.tgz"]);
        assert!(fail("COPY onlyone").contains("requires at least two arguments"));
        assert!(fail("COPY --from x /y").contains("missing a value on flag: from"));
        assert!(fail("ADD --link=maybe a b").contains("expecting boolean value"));
        let Instruction::Copy(c) = one("COPY <<EOF /file\nhello\nEOF") else {
            panic!()
        };
        assert!(c.sources.is_empty());
        assert_eq!(c.heredocs[0].content, "hello\n");
    }

    #[test]
    fn env_label_arg_forms() {
        assert_eq!(
            one("ENV a b c"),
            Instruction::Env(vec![("a".into(), "b c".into())])
        );
        assert_eq!(
            one("ENV a=1 b=\"x y\""),
            Instruction::Env(vec![
                ("a".into(), "1".into()),
                ("b".into(), "\"x y\"".into())
            ])
        );
        assert_eq!(
            one("LABEL k=v"),
            Instruction::Label(vec![("k".into(), "v".into())])
        );
        assert_eq!(
            one("ARG a b=2"),
            Instruction::Arg(vec![
                ArgDef {
                    name: "a".into(),
                    default: None
                },
                ArgDef {
                    name: "b".into(),
                    default: Some("2".into())
                }
            ])
        );
        assert!(fail("ENV a=1 b").contains("can't find = in \"b\""));
        assert!(fail("ENV").contains("ENV requires at least one argument"));
    }

    #[test]
    fn healthcheck_forms() {
        assert_eq!(
            one("HEALTHCHECK NONE"),
            Instruction::Healthcheck(Healthcheck::None)
        );
        assert_eq!(
            one(
                "HEALTHCHECK --interval=1m30s --timeout=3s --start-period=1s --start-interval=500ms --retries=3 CMD curl -f http://localhost/"
            ),
            Instruction::Healthcheck(Healthcheck::Cmd {
                command: Command::Shell("curl -f http://localhost/".into()),
                interval: Some(Duration::from_secs(90)),
                timeout: Some(Duration::from_secs(3)),
                start_period: Some(Duration::from_secs(1)),
                start_interval: Some(Duration::from_millis(500)),
                retries: Some(3),
            })
        );
        assert!(fail("HEALTHCHECK --interval=5 CMD x").contains("invalid duration"));
        assert!(fail("HEALTHCHECK --retries=-1 CMD x").contains("--retries"));
        assert!(fail("HEALTHCHECK CONNECT x").contains("Unknown type"));
        assert!(fail("HEALTHCHECK CMD").contains("Missing command"));
        assert!(fail("HEALTHCHECK CMD []").contains("Missing command"));
        assert!(fail("HEALTHCHECK NONE x").contains("takes no arguments"));
    }

    #[test]
    fn simple_instructions() {
        assert_eq!(one("USER a:b"), Instruction::User("a:b".into()));
        assert_eq!(one("WORKDIR /a b"), Instruction::Workdir("/a b".into()));
        assert_eq!(
            one("STOPSIGNAL SIGKILL"),
            Instruction::StopSignal("SIGKILL".into())
        );
        assert_eq!(one("MAINTAINER me"), Instruction::Maintainer("me".into()));
        assert_eq!(
            one("EXPOSE 80/tcp 53/udp"),
            Instruction::Expose(vec!["80/tcp".into(), "53/udp".into()])
        );
        assert_eq!(
            one("VOLUME [\"/a\", \"/b\"]"),
            Instruction::Volume(vec!["/a".into(), "/b".into()])
        );
        assert_eq!(
            one("SHELL [\"/bin/bash\", \"-c\"]"),
            Instruction::Shell(vec!["/bin/bash".into(), "-c".into()])
        );
        assert!(fail("SHELL /bin/bash").contains("JSON form"));
        assert_eq!(one("CMD []"), Instruction::Cmd(Command::Exec(vec![])));
        assert_eq!(
            one("ENTRYPOINT echo hi"),
            Instruction::Entrypoint(Command::Shell("echo hi".into()))
        );
        assert!(fail("VOLUME [\"\"]").contains("empty string"));
        assert!(fail("USER").contains("exactly one"));
    }

    #[test]
    fn onbuild() {
        let Instruction::Onbuild { trigger, original } = one("ONBUILD RUN make") else {
            panic!()
        };
        assert_eq!(original, "RUN make");
        assert!(matches!(*trigger, Instruction::Run(_)));
        assert!(fail("ONBUILD FROM x").contains("isn't allowed as an ONBUILD trigger"));
        assert!(fail("ONBUILD ONBUILD RUN x").contains("isn't allowed"));
    }

    #[test]
    fn instruction_before_from() {
        let e = Dockerfile::parse("RUN x\nFROM a\n", "D").unwrap_err();
        assert!(e.to_string().starts_with("D:1:1: no build stage"), "{e}");
    }

    #[test]
    fn errors_carry_file_line_col() {
        let cases = [
            (
                "FROM a\nFROM b AS\n",
                "df:2:1: FROM ... AS requires a stage name after AS",
            ),
            (
                "FROM a\n  COPY --chmod 1 a b\n",
                "df:2:8: missing a value on flag: chmod",
            ),
            ("FROM a\nCOPY --nope=1 a b\n", "df:2:6: unknown flag: nope"),
            (
                "FROM a\nRUN --mount=type=bind,bogus=1,target=/x y\n",
                "df:2:1: unexpected key 'bogus' in 'bogus=1'",
            ),
            (
                "FROM a\n\tCMD [\"a\", [\"b\"]]\n",
                "df:2:2: when using JSON array syntax, arrays must be comprised of strings only",
            ),
            (
                "FROM a\nRUN <<EOF\nx\n",
                "df:2:1: unterminated heredoc \"EOF\"",
            ),
            ("FROM a\nRUNN x\n", "df:2:1: unknown instruction: RUNN"),
            (
                "FROM a\nENV a=b c\n",
                "df:2:1: Syntax error - can't find = in \"c\". Must be of the form: name=value",
            ),
            (
                "FROM a\nHEALTHCHECK --interval=1us CMD x\n",
                "df:2:1: --interval cannot be less than 1ms",
            ),
            (
                "FROM a\nCOPY --link --link a b\n",
                "df:2:13: duplicate flag specified: link",
            ),
            ("FROM a\nONBUILD COPY --x a b\n", "df:2:14: unknown flag: x"),
            (
                "FROM a\nWORKDIR\n",
                "df:2:1: WORKDIR requires exactly one argument",
            ),
            (
                "FROM a\nRUN \\\n\n",
                "df:2:1: RUN requires at least one argument",
            ),
        ];
        for (src, want) in cases {
            let got = Dockerfile::parse(src, "df").unwrap_err().to_string();
            assert_eq!(got, want, "for {src:?}");
        }
    }

    #[test]
    fn stages_and_meta_args() {
        let df = Dockerfile::parse(
            "ARG BASE=alpine\nFROM $BASE AS Build\nRUN make\nFROM scratch\nCOPY --from=build /out /\n",
            "D",
        )
        .unwrap();
        assert_eq!(df.meta_args()[0].name, "BASE");
        let stages = df.stages();
        assert_eq!(stages.len(), 2);
        assert_eq!(stages[0].from.name.as_deref(), Some("build"));
        assert_eq!(stages[0].instructions.len(), 1);
        assert_eq!(stages[1].instructions.len(), 1);
        assert_eq!(stages[1].from_span.start_line, 4);
        assert_eq!(df.stage("BUILD").unwrap().index, 0);
        assert_eq!(df.stage("1").unwrap().from.image, "scratch");
        assert!(df.stage("nope").is_none());
    }

    #[test]
    fn go_durations() {
        assert_eq!(
            parse_go_duration("1h2m3s").unwrap(),
            Duration::from_secs(3723)
        );
        assert_eq!(
            parse_go_duration("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("-1s").is_err());
        assert!(parse_go_duration("").is_err());
    }

    /// Regression: durations and sizes were summed in an f64 (Go sums
    /// integers exactly), and `size=` refused `BuildKit`'s `1.5m` and `1 GiB`.
    #[test]
    fn durations_and_sizes_like_buildkit() {
        assert_eq!(
            parse_go_duration("2562047h47m16.854775807s").unwrap(),
            Duration::from_nanos(i64::MAX.unsigned_abs())
        );
        assert_eq!(
            parse_go_duration("1.000000001s").unwrap(),
            Duration::from_nanos(1_000_000_001)
        );
        assert_eq!(parse_size("1.5m"), Some(3 << 19));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("-1"), None);
    }
}
