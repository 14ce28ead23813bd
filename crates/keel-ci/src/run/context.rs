//! Expression contexts at run time and evaluation of template tokens
//! (`${{ }}` inside strings, keys and values) against them.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::expr::value::{Object, Value};
use crate::expr::{self, FuncSig, Functions};
use crate::filters::Pattern;
use crate::template::{TKind, Token};

/// Every context name, so that an expression naming one that is empty here
/// (e.g. `needs` in a job without needs) evaluates to null instead of failing.
pub const CONTEXTS: &[&str] = &[
    "github", "env", "vars", "job", "jobs", "steps", "runner", "secrets", "strategy", "matrix",
    "needs", "inputs",
];

/// The status and file functions available while running.
pub fn functions() -> Vec<FuncSig> {
    let f = |name: &str, min, max| FuncSig {
        name: name.into(),
        min,
        max,
    };
    vec![
        f("success", 0, usize::MAX),
        f("failure", 0, usize::MAX),
        f("always", 0, 0),
        f("cancelled", 0, 0),
        f("hashfiles", 1, 255),
    ]
}

/// Job status as the status functions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Failure,
    Cancelled,
}

/// Implements the status functions and `hashFiles` for one evaluation.
#[derive(Debug)]
pub struct Host<'a> {
    pub status: Status,
    pub workspace: &'a Path,
}

impl Functions for Host<'_> {
    fn call(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        Some(Ok(match name {
            "success" => Value::Bool(self.status == Status::Success),
            "failure" => Value::Bool(self.status == Status::Failure),
            "cancelled" => Value::Bool(self.status == Status::Cancelled),
            "always" => Value::Bool(true),
            "hashfiles" => {
                let patterns: Vec<String> = args.iter().map(Value::coerce_string).collect();
                return Some(hash_files(self.workspace, &patterns).map(Value::String));
            }
            _ => return None,
        }))
    }
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if p.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            walk(&p, root, out);
        } else if ft.is_file() {
            out.push(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
        }
    }
}

/// The files `hashFiles` patterns select (relative to `workspace`, sorted,
/// `.git` left out); `!pattern` excludes, later patterns win.
pub fn matched_files(workspace: &Path, patterns: &[String]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    walk(workspace, workspace, &mut files);
    let compiled: Vec<(bool, Pattern)> = patterns
        .iter()
        .map(|p| {
            let (neg, body) = p
                .strip_prefix('!')
                .map_or((false, p.as_str()), |b| (true, b));
            let body = body.trim_start_matches("./");
            let body = body
                .strip_prefix(&format!("{}/", workspace.display()))
                .unwrap_or(body);
            (neg, Pattern::new(body))
        })
        .collect();
    files.retain(|f| {
        let rel = f.to_string_lossy();
        let mut hit = false;
        for (neg, p) in &compiled {
            if p.is_match(&rel) {
                hit = !neg;
            }
        }
        hit
    });
    files
}

/// `hashFiles` as GitHub's runner computes it: SHA-256 over the SHA-256 of
/// each matching file (sorted by path), hex; empty when nothing matches.
/// (act hashes the files' concatenated contents instead.)
pub fn hash_files(workspace: &Path, patterns: &[String]) -> Result<String, String> {
    let files = matched_files(workspace, patterns);
    if files.is_empty() {
        return Ok(String::new());
    }
    let mut outer = Sha256::new();
    for f in files {
        let data = std::fs::read(workspace.join(&f))
            .map_err(|e| format!("hashFiles: {}: {e}", f.display()))?;
        outer.update(Sha256::digest(&data));
    }
    Ok(hex(&outer.finalize()))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Evaluates `src` (an expression without `${{ }}`).
pub fn eval(src: &str, ctx: &Object, host: &Host) -> Result<Value, String> {
    let e = expr::compile(src, CONTEXTS, &functions()).map_err(|e| e.to_string())?;
    expr::evaluate(e.as_ref(), ctx, host).map_err(|e| e.to_string())
}

/// A token's value with its expressions evaluated.
pub fn eval_token(t: &Token, ctx: &Object, host: &Host) -> Result<Value, String> {
    Ok(match &t.kind {
        TKind::Null | TKind::Insert => Value::Null,
        TKind::Bool(b) => Value::Bool(*b),
        TKind::Number(n) => Value::Number(*n),
        TKind::String(s) => Value::String(s.clone()),
        TKind::Expr(e) => eval(e, ctx, host)?,
        TKind::Seq(items) => {
            // An expression item that yields an array is spliced in (act's
            // evalmatrix-merge-array case: `[x, ${{ fromJSON('[..]') }}]`).
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                match (eval_token(i, ctx, host)?, &i.kind) {
                    (Value::Array { items: a, .. }, TKind::Expr(_)) => {
                        out.extend(a.iter().cloned());
                    }
                    (v, _) => out.push(v),
                }
            }
            Value::array(out)
        }
        TKind::Map(m) => {
            let mut o = Object::new();
            for (k, v) in m {
                if matches!(k.kind, TKind::Insert) {
                    if let Value::Object(ins) = eval_token(v, ctx, host)? {
                        for (ik, iv) in ins.iter() {
                            o.insert(ik.clone(), iv.clone());
                        }
                    }
                    continue;
                }
                let key = eval_token(k, ctx, host)?.coerce_string();
                o.insert(key, eval_token(v, ctx, host)?);
            }
            Value::object(o)
        }
    })
}

/// A token evaluated and coerced to a string.
pub fn eval_string(t: &Token, ctx: &Object, host: &Host) -> Result<String, String> {
    eval_token(t, ctx, host).map(|v| match v {
        v @ (Value::Array { .. } | Value::Object(_)) => v.to_json_pretty(),
        v => v.coerce_string(),
    })
}

/// A mapping token as ordered string pairs (env, with, outputs).
pub fn eval_pairs(
    t: Option<&Token>,
    ctx: &Object,
    host: &Host,
) -> Result<Vec<(String, String)>, String> {
    let Some(t) = t else { return Ok(Vec::new()) };
    match eval_token(t, ctx, host)? {
        Value::Object(o) => Ok(o
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    match v {
                        Value::Array { .. } | Value::Object(_) => v.to_json_pretty(),
                        v => v.coerce_string(),
                    },
                )
            })
            .collect()),
        Value::Null => Ok(Vec::new()),
        v => Err(format!("expected a mapping, got {}", v.kind().name())),
    }
}

/// A string-keyed object from pairs.
pub fn object_of(pairs: &[(String, String)]) -> Value {
    Value::object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// Sets `env[k]` (case-sensitive keys, like a process environment).
pub fn set_env(env: &mut Vec<(String, String)>, k: &str, v: &str) {
    if let Some(e) = env.iter_mut().find(|(x, _)| x == k) {
        e.1 = v.to_string();
    } else {
        env.push((k.to_string(), v.to_string()));
    }
}
