//! Loading a configuration: every `.tf` and `.tf.json` file of a module
//! directory, decoded into variables, locals, outputs, resources, data
//! sources, module calls (local paths, loaded recursively), moved / import /
//! removed / check blocks and the `terraform` block, with terraform's
//! diagnostics for what is wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keel_hcl::diag::{Diagnostic, Diagnostics, Range, Sources};
use keel_hcl::json::{JsonSchema, parse_json_body};
use keel_hcl::syntax::{Attribute, Block, Body, Expr, Reference, parse_body};
use keel_hcl::typeexpr::{Defaults, type_constraint};
use keel_hcl::{Type, Value};

/// A validation rule or condition.
#[derive(Clone, Debug)]
pub struct Rule {
    pub condition: Expr,
    pub error_message: Option<Expr>,
    pub range: Range,
}

#[derive(Clone, Debug)]
pub struct Variable {
    pub name: String,
    pub ty: Type,
    pub defaults: Defaults,
    pub default: Option<Expr>,
    pub description: Option<String>,
    pub sensitive: bool,
    pub nullable: bool,
    pub validations: Vec<Rule>,
    pub range: Range,
}

#[derive(Clone, Debug)]
pub struct Output {
    pub name: String,
    pub expr: Expr,
    pub sensitive: bool,
    pub description: Option<String>,
    pub depends_on: Vec<Reference>,
    pub preconditions: Vec<Rule>,
    pub range: Range,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    Managed,
    Data,
}

#[derive(Clone, Debug, Default)]
pub enum IgnoreChanges {
    #[default]
    None,
    All,
    Attrs(Vec<String>),
}

#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    pub create_before_destroy: bool,
    pub prevent_destroy: bool,
    pub ignore_changes: IgnoreChanges,
    pub replace_triggered_by: Vec<Expr>,
    pub preconditions: Vec<Rule>,
    pub postconditions: Vec<Rule>,
}

#[derive(Clone, Debug)]
pub struct Resource {
    pub mode: Mode,
    pub ty: String,
    pub name: String,
    /// The body without meta-arguments.
    pub body: Body,
    pub count: Option<Expr>,
    pub for_each: Option<Expr>,
    pub depends_on: Vec<Reference>,
    /// `provider = aws.west`: the provider's local name and alias.
    pub provider: Option<(String, Option<String>)>,
    pub lifecycle: Lifecycle,
    pub range: Range,
}

impl Resource {
    /// `type.name` or `data.type.name`.
    pub fn key(&self) -> String {
        match self.mode {
            Mode::Managed => format!("{}.{}", self.ty, self.name),
            Mode::Data => format!("data.{}.{}", self.ty, self.name),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ModuleCall {
    pub name: String,
    pub source: String,
    pub count: Option<Expr>,
    pub for_each: Option<Expr>,
    pub inputs: BTreeMap<String, Attribute>,
    pub depends_on: Vec<Reference>,
    /// `providers = { test.second = test.backup }`: child key, parent key.
    pub providers: Vec<(String, String)>,
    pub module: Box<Module>,
    pub range: Range,
}

#[derive(Clone, Debug)]
pub struct Moved {
    pub from: Reference,
    pub to: Reference,
    pub range: Range,
}

#[derive(Clone, Debug)]
pub struct Import {
    pub to: Reference,
    pub id: Expr,
    pub range: Range,
}

#[derive(Clone, Debug)]
pub struct Removed {
    pub from: Reference,
    pub destroy: bool,
    pub range: Range,
}

#[derive(Clone, Debug)]
pub struct Check {
    pub name: String,
    pub asserts: Vec<Rule>,
    pub range: Range,
}

/// The `backend` block of `terraform`.
#[derive(Clone, Debug)]
pub struct Backend {
    pub kind: String,
    pub config: BTreeMap<String, Value>,
    pub range: Range,
}

#[derive(Clone, Debug)]
pub struct ProviderConfig {
    pub name: String,
    pub alias: Option<String>,
    pub body: Body,
}

/// One module: the files of one directory.
#[derive(Clone, Debug, Default)]
pub struct Module {
    pub dir: PathBuf,
    pub variables: BTreeMap<String, Variable>,
    pub locals: BTreeMap<String, Attribute>,
    pub outputs: BTreeMap<String, Output>,
    pub resources: BTreeMap<String, Resource>,
    pub calls: BTreeMap<String, ModuleCall>,
    pub providers: Vec<ProviderConfig>,
    pub required_providers: BTreeMap<String, String>,
    /// `required_providers` version constraints by local name.
    pub provider_versions: BTreeMap<String, String>,
    pub moved: Vec<Moved>,
    pub imports: Vec<Import>,
    pub removed: Vec<Removed>,
    pub checks: Vec<Check>,
    pub backend: Option<Backend>,
    pub required_version: Vec<String>,
}

fn json_schema() -> JsonSchema {
    let lifecycle = JsonSchema::default()
        .block("precondition", 0, JsonSchema::default())
        .block("postcondition", 0, JsonSchema::default());
    let res = JsonSchema::default()
        .block("lifecycle", 0, lifecycle)
        .block("provisioner", 1, JsonSchema::default())
        .block("connection", 0, JsonSchema::default())
        .block(
            "dynamic",
            1,
            JsonSchema::default().block("content", 0, JsonSchema::default()),
        );
    JsonSchema::default()
        .block(
            "variable",
            1,
            JsonSchema::default().block("validation", 0, JsonSchema::default()),
        )
        .block(
            "output",
            1,
            JsonSchema::default().block("precondition", 0, JsonSchema::default()),
        )
        .block("locals", 0, JsonSchema::default())
        .block("resource", 2, res.clone())
        .block("data", 2, res)
        .block("module", 1, JsonSchema::default())
        .block("provider", 1, JsonSchema::default())
        .block(
            "terraform",
            0,
            JsonSchema::default()
                .block("backend", 1, JsonSchema::default())
                .block("required_providers", 0, JsonSchema::default())
                .block("cloud", 0, JsonSchema::default()),
        )
        .block("moved", 0, JsonSchema::default())
        .block("import", 0, JsonSchema::default())
        .block(
            "removed",
            0,
            JsonSchema::default().block("lifecycle", 0, JsonSchema::default()),
        )
        .block(
            "check",
            1,
            JsonSchema::default().block("assert", 0, JsonSchema::default()),
        )
}

fn err(summary: &str, detail: impl Into<String>, r: &Range) -> Diagnostic {
    Diagnostic::error(summary, detail, Some(r.clone()))
}

/// Evaluates a constant expression (no references), as meta-arguments like
/// `sensitive = true` must be.
pub fn const_value(e: &Expr) -> Result<Value, Diagnostics> {
    let vars = BTreeMap::new();
    let funcs = keel_hcl::Functions::terraform();
    keel_hcl::eval(
        e,
        &keel_hcl::Scope {
            vars: &vars,
            funcs: &funcs,
            base_dir: PathBuf::new(),
        },
    )
}

fn const_bool(a: &Attribute) -> Result<bool, Diagnostics> {
    let v = const_value(&a.expr)?;
    keel_hcl::convert::convert(&v, &Type::Bool)
        .ok()
        .and_then(|v| v.as_bool())
        .ok_or_else(|| {
            Diagnostics::from(err(
                "Invalid value",
                "A bool value is required here.",
                a.expr.range(),
            ))
        })
}

fn const_string(a: &Attribute) -> Result<String, Diagnostics> {
    let v = const_value(&a.expr)?;
    keel_hcl::convert::convert(&v, &Type::String)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .ok_or_else(|| {
            Diagnostics::from(err(
                "Invalid value",
                "A string value is required here.",
                a.expr.range(),
            ))
        })
}

/// A static traversal; JSON syntax gives strings to parse.
pub fn traversal(e: &Expr) -> Option<Reference> {
    if let Expr::Literal(v, r) = e
        && let Some(s) = v.as_str()
    {
        let parsed = keel_hcl::syntax::parse_expr(&r.filename, s).ok()?;
        return parsed.as_traversal();
    }
    e.as_traversal()
}

fn traversal_list(a: &Attribute) -> Result<Vec<Reference>, Diagnostics> {
    let items: Vec<&Expr> = match &a.expr {
        Expr::Tuple(items, _) => items.iter().collect(),
        e => {
            return Err(err(
                "Invalid expression",
                "A static list expression is required.",
                e.range(),
            )
            .into());
        }
    };
    items
        .into_iter()
        .map(|e| traversal(e).ok_or_else(|| err("Invalid expression", "A single static variable reference is required: only attribute access and indexing with constant keys. No calculations, function calls, template expressions, etc are allowed here.", e.range()).into()))
        .collect()
}

fn rules(b: &Body, kind: &str, diags: &mut Diagnostics) -> Vec<Rule> {
    let mut out = Vec::new();
    for blk in b.blocks_of(kind) {
        match blk.body.attr("condition") {
            Some(c) => out.push(Rule {
                condition: c.expr.clone(),
                error_message: blk.body.attr("error_message").map(|a| a.expr.clone()),
                range: blk.range.clone(),
            }),
            None => diags.push(err(
                "Missing required argument",
                "The argument \"condition\" is required, but no definition was found.",
                &blk.range,
            )),
        }
    }
    out
}

fn check_attrs(b: &Body, allowed: &[&str], blocks: &[&str], diags: &mut Diagnostics) {
    for a in &b.attributes {
        if !allowed.contains(&a.name.as_str()) {
            diags.push(err(
                "Unsupported argument",
                format!("An argument named {:?} is not expected here.", a.name),
                &a.name_range,
            ));
        }
    }
    for bl in &b.blocks {
        if !blocks.contains(&bl.kind.as_str()) {
            diags.push(err(
                "Unsupported block type",
                format!("Blocks of type {:?} are not expected here.", bl.kind),
                &bl.type_range,
            ));
        }
    }
}

fn need_labels(b: &Block, n: usize, what: &str, diags: &mut Diagnostics) -> bool {
    if b.labels.len() != n {
        let detail = if b.labels.len() < n {
            format!("All {} blocks must have {n} labels ({what}).", b.kind)
        } else {
            format!(
                "Extraneous label for {}. Only {n} labels (name) are expected for {} blocks.",
                b.kind, b.kind
            )
        };
        diags.push(err(
            if b.labels.len() < n {
                "Missing name for ".to_string() + &b.kind
            } else {
                "Extraneous label for ".to_string() + &b.kind
            }
            .as_str(),
            detail,
            &b.type_range,
        ));
        return false;
    }
    true
}

/// Loads the module in `dir`, recording sources for diagnostics.
pub fn load_module(dir: &Path, sources: &mut Sources) -> Result<Module, Diagnostics> {
    load_module_at(dir, dir, sources, 0)
}

fn load_module_at(
    root: &Path,
    dir: &Path,
    sources: &mut Sources,
    depth: usize,
) -> Result<Module, Diagnostics> {
    let mut diags = Diagnostics::new();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let ext = p.extension().map(std::ffi::OsStr::to_ascii_lowercase);
                let json = ext.as_deref() == Some(std::ffi::OsStr::new("json"))
                    && n.to_ascii_lowercase().ends_with(".tf.json");
                !n.starts_with('.')
                    && (ext.as_deref() == Some(std::ffi::OsStr::new("tf")) || json)
                    && p.is_file()
            })
            .collect(),
        Err(e) => {
            return Err(Diagnostics::error(
                "Failed to read module directory",
                format!(
                    "Module directory {} does not exist or cannot be read: {e}.",
                    dir.display()
                ),
                None,
            ));
        }
    };
    files.sort();
    let mut m = Module {
        dir: dir.to_path_buf(),
        ..Module::default()
    };
    for f in &files {
        let name = display_name(root, f);
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                diags.push(Diagnostic::error(
                    "Failed to read file",
                    format!("The file {name:?} could not be read: {e}."),
                    None,
                ));
                continue;
            }
        };
        sources.add(&name, &text);
        let body = if name.to_ascii_lowercase().ends_with(".json") {
            parse_json_body(&name, &text, &json_schema())
        } else {
            parse_body(&name, &text)
        };
        match body {
            Ok(b) => decode_file(&b, &mut m, root, sources, depth, &mut diags),
            Err(d) => diags.extend(d),
        }
    }
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(m)
    }
}

fn display_name(root: &Path, f: &Path) -> String {
    f.strip_prefix(root)
        .map_or_else(|_| f.display().to_string(), |p| p.display().to_string())
}

fn decode_file(
    b: &Body,
    m: &mut Module,
    root: &Path,
    sources: &mut Sources,
    depth: usize,
    diags: &mut Diagnostics,
) {
    for a in &b.attributes {
        diags.push(err(
            "Unsupported argument",
            format!("An argument named {:?} is not expected here.", a.name),
            &a.name_range,
        ));
    }
    for blk in &b.blocks {
        match blk.kind.as_str() {
            "variable" => {
                if !need_labels(blk, 1, "name", diags) {
                    continue;
                }
                decode_variable(blk, m, diags);
            }
            "locals" => {
                for a in &blk.body.attributes {
                    if m.locals.contains_key(&a.name) {
                        diags.push(err("Duplicate local value definition", format!("A local value named {:?} was already defined. Local value names must be unique within a module.", a.name), &a.name_range));
                    }
                    m.locals.insert(a.name.clone(), a.clone());
                }
                for bl in &blk.body.blocks {
                    diags.push(err("Unsupported block type", format!("Blocks of type {:?} are not expected here.", bl.kind), &bl.type_range));
                }
            }
            "output" => {
                if !need_labels(blk, 1, "name", diags) {
                    continue;
                }
                decode_output(blk, m, diags);
            }
            "resource" | "data" => {
                if !need_labels(blk, 2, "type and name", diags) {
                    continue;
                }
                decode_resource(blk, m, diags);
            }
            "module" => {
                if !need_labels(blk, 1, "name", diags) {
                    continue;
                }
                decode_call(blk, m, root, sources, depth, diags);
            }
            "provider" => {
                if !need_labels(blk, 1, "name", diags) {
                    continue;
                }
                let alias = blk.body.attr("alias").and_then(|a| const_string(a).ok());
                m.providers.push(ProviderConfig { name: blk.labels[0].clone(), alias, body: blk.body.clone() });
            }
            "terraform" => decode_terraform(blk, m, diags),
            "moved" => match (blk.body.attr("from").and_then(|a| traversal(&a.expr)), blk.body.attr("to").and_then(|a| traversal(&a.expr))) {
                (Some(from), Some(to)) => m.moved.push(Moved { from, to, range: blk.range.clone() }),
                _ => diags.push(err("Missing required argument", "A moved block requires the arguments \"from\" and \"to\", each a static reference.", &blk.range)),
            },
            "import" => match (blk.body.attr("to").and_then(|a| traversal(&a.expr)), blk.body.attr("id")) {
                (Some(to), Some(id)) => m.imports.push(Import { to, id: id.expr.clone(), range: blk.range.clone() }),
                _ => diags.push(err("Missing required argument", "An import block requires the arguments \"to\" and \"id\".", &blk.range)),
            },
            "removed" => match blk.body.attr("from").and_then(|a| traversal(&a.expr)) {
                Some(from) => {
                    let destroy = blk.body.blocks_of("lifecycle").next().and_then(|l| l.body.attr("destroy")).map_or(Ok(true), const_bool).unwrap_or(true);
                    m.removed.push(Removed { from, destroy, range: blk.range.clone() });
                }
                None => diags.push(err("Missing required argument", "A removed block requires the argument \"from\".", &blk.range)),
            },
            "check" => {
                if !need_labels(blk, 1, "name", diags) {
                    continue;
                }
                let asserts = rules(&blk.body, "assert", diags);
                for d in blk.body.blocks_of("data") {
                    if need_labels(d, 2, "type and name", diags) {
                        decode_resource(d, m, diags);
                    }
                }
                m.checks.push(Check { name: blk.labels[0].clone(), asserts, range: blk.range.clone() });
            }
            other => diags.push(err("Unsupported block type", format!("Blocks of type {other:?} are not expected here."), &blk.type_range)),
        }
    }
}

fn decode_variable(blk: &Block, m: &mut Module, diags: &mut Diagnostics) {
    let name = blk.labels[0].clone();
    check_attrs(
        &blk.body,
        &[
            "type",
            "default",
            "description",
            "sensitive",
            "nullable",
            "ephemeral",
        ],
        &["validation"],
        diags,
    );
    if m.variables.contains_key(&name) {
        diags.push(err("Duplicate variable declaration", format!("A variable named {name:?} was already declared. Variable names must be unique within a module."), &blk.type_range));
    }
    let (ty, defaults) = match blk.body.attr("type") {
        Some(a) => {
            // JSON syntax writes types as strings.
            let e = match &a.expr {
                Expr::Literal(v, r) if v.as_str().is_some() => {
                    keel_hcl::syntax::parse_expr(&r.filename, v.as_str().unwrap_or_default())
                        .unwrap_or_else(|_| a.expr.clone())
                }
                e => e.clone(),
            };
            match type_constraint(&e) {
                Ok(t) => t,
                Err(d) => {
                    diags.extend(d);
                    (Type::Dynamic, Defaults::default())
                }
            }
        }
        None => (Type::Dynamic, Defaults::default()),
    };
    let flag = |k: &str, def: bool, diags: &mut Diagnostics| match blk.body.attr(k).map(const_bool)
    {
        Some(Ok(b)) => b,
        Some(Err(d)) => {
            diags.extend(d);
            def
        }
        None => def,
    };
    let sensitive = flag("sensitive", false, diags);
    let nullable = flag("nullable", true, diags);
    let validations = rules(&blk.body, "validation", diags);
    m.variables.insert(
        name.clone(),
        Variable {
            name,
            ty,
            defaults,
            default: blk.body.attr("default").map(|a| a.expr.clone()),
            description: blk
                .body
                .attr("description")
                .and_then(|a| const_string(a).ok()),
            sensitive,
            nullable,
            validations,
            range: blk.range.clone(),
        },
    );
}

fn decode_output(blk: &Block, m: &mut Module, diags: &mut Diagnostics) {
    let name = blk.labels[0].clone();
    check_attrs(
        &blk.body,
        &[
            "value",
            "sensitive",
            "description",
            "depends_on",
            "ephemeral",
        ],
        &["precondition"],
        diags,
    );
    if m.outputs.contains_key(&name) {
        diags.push(err("Duplicate output definition", format!("An output named {name:?} was already defined. Output names must be unique within a module."), &blk.type_range));
    }
    let Some(v) = blk.body.attr("value") else {
        diags.push(err(
            "Missing required argument",
            "The argument \"value\" is required, but no definition was found.",
            &blk.range,
        ));
        return;
    };
    let sensitive = blk
        .body
        .attr("sensitive")
        .map(const_bool)
        .transpose()
        .unwrap_or_else(|d| {
            diags.extend(d);
            None
        });
    let depends_on = blk
        .body
        .attr("depends_on")
        .map(traversal_list)
        .transpose()
        .unwrap_or_else(|d| {
            diags.extend(d);
            None
        });
    m.outputs.insert(
        name.clone(),
        Output {
            name,
            expr: v.expr.clone(),
            sensitive: sensitive.unwrap_or(false),
            description: blk
                .body
                .attr("description")
                .and_then(|a| const_string(a).ok()),
            depends_on: depends_on.unwrap_or_default(),
            preconditions: rules(&blk.body, "precondition", diags),
            range: blk.range.clone(),
        },
    );
}

fn decode_resource(blk: &Block, m: &mut Module, diags: &mut Diagnostics) {
    let mode = if blk.kind == "data" {
        Mode::Data
    } else {
        Mode::Managed
    };
    let mut body = blk.body.clone();
    let take = |body: &mut Body, k: &str| -> Option<Attribute> {
        let i = body.attributes.iter().position(|a| a.name == k)?;
        Some(body.attributes.remove(i))
    };
    let count = take(&mut body, "count").map(|a| a.expr);
    let for_each = take(&mut body, "for_each").map(|a| a.expr);
    if let (Some(c), Some(_)) = (&count, &for_each) {
        diags.push(err("Invalid combination of \"count\" and \"for_each\"", "The \"count\" and \"for_each\" meta-arguments are mutually-exclusive, only one should be used to be explicit about the number of resources to be created.", c.range()));
    }
    let depends_on = take(&mut body, "depends_on")
        .map(|a| traversal_list(&a))
        .transpose()
        .unwrap_or_else(|d| {
            diags.extend(d);
            None
        });
    let provider = take(&mut body, "provider")
        .and_then(|a| traversal(&a.expr))
        .map(|r| {
            let alias = r.steps.first().and_then(|s| match s {
                keel_hcl::syntax::RefStep::Attr(a) => Some(a.clone()),
                _ => None,
            });
            (r.root, alias)
        });
    let mut lifecycle = Lifecycle::default();
    body.blocks.retain(|b| {
        match b.kind.as_str() {
            "lifecycle" => {
                decode_lifecycle(&b.body, &mut lifecycle, diags);
                false
            }
            // Provisioners and connections belong to provisioner plugins keel does not run.
            "provisioner" | "connection" => {
                diags.push(Diagnostic::warning(
                    "Provisioners are not run by keel",
                    format!(
                        "keel infra does not run {} blocks; the block is ignored.",
                        b.kind
                    ),
                    Some(b.type_range.clone()),
                ));
                false
            }
            _ => true,
        }
    });
    let r = Resource {
        mode,
        ty: blk.labels[0].clone(),
        name: blk.labels[1].clone(),
        body,
        count,
        for_each,
        depends_on: depends_on.unwrap_or_default(),
        provider,
        lifecycle,
        range: blk.range.clone(),
    };
    let key = r.key();
    if m.resources.contains_key(&key) {
        let what = if mode == Mode::Data {
            "data"
        } else {
            "resource"
        };
        diags.push(err(&format!("Duplicate {what} {:?} configuration", r.ty), format!("A {} {:?} {:?} was already declared. Resource names must be unique per type in each module.", what, r.ty, r.name), &blk.type_range));
    }
    m.resources.insert(key, r);
}

fn decode_lifecycle(b: &Body, l: &mut Lifecycle, diags: &mut Diagnostics) {
    check_attrs(
        b,
        &[
            "create_before_destroy",
            "prevent_destroy",
            "ignore_changes",
            "replace_triggered_by",
        ],
        &["precondition", "postcondition"],
        diags,
    );
    if let Some(a) = b.attr("create_before_destroy") {
        l.create_before_destroy = const_bool(a).unwrap_or_else(|d| {
            diags.extend(d);
            false
        });
    }
    if let Some(a) = b.attr("prevent_destroy") {
        l.prevent_destroy = const_bool(a).unwrap_or_else(|d| {
            diags.extend(d);
            false
        });
    }
    if let Some(a) = b.attr("ignore_changes") {
        l.ignore_changes = match &a.expr {
            Expr::Var(k, _) if k == "all" => IgnoreChanges::All,
            Expr::Literal(v, _) if v.as_str() == Some("all") => IgnoreChanges::All,
            _ => match traversal_list(a) {
                Ok(refs) => IgnoreChanges::Attrs(refs.into_iter().map(|r| r.root).collect()),
                Err(d) => {
                    diags.extend(d);
                    IgnoreChanges::None
                }
            },
        };
    }
    if let Some(a) = b.attr("replace_triggered_by") {
        match &a.expr {
            Expr::Tuple(items, _) => l.replace_triggered_by.clone_from(items),
            e => diags.push(err(
                "Invalid replace_triggered_by expression",
                "A list of resource references is required.",
                e.range(),
            )),
        }
    }
    l.preconditions = rules(b, "precondition", diags);
    l.postconditions = rules(b, "postcondition", diags);
}

fn decode_call(
    blk: &Block,
    m: &mut Module,
    root: &Path,
    sources: &mut Sources,
    depth: usize,
    diags: &mut Diagnostics,
) {
    let name = blk.labels[0].clone();
    if m.calls.contains_key(&name) {
        diags.push(err("Duplicate module call", format!("A module call named {name:?} was already defined. Module calls must have unique names within a module."), &blk.type_range));
        return;
    }
    let Some(src) = blk.body.attr("source") else {
        diags.push(err(
            "Missing required argument",
            "The argument \"source\" is required, but no definition was found.",
            &blk.range,
        ));
        return;
    };
    let source = match const_string(src) {
        Ok(s) => s,
        Err(d) => {
            diags.extend(d);
            return;
        }
    };
    if !(source.starts_with("./") || source.starts_with("../")) {
        diags.push(err("Module not installed", format!("keel infra loads modules from local paths (\"./...\" or \"../...\"); {source:?} is a registry or remote source.\nhint: vendor the module into the configuration and use a local path"), src.expr.range()));
        return;
    }
    if depth > 32 {
        diags.push(err(
            "Module nesting too deep",
            "Modules are nested more than 32 levels; a module probably calls itself.",
            &blk.range,
        ));
        return;
    }
    let dir = m.dir.join(&source);
    let child = match load_module_at(root, &dir, sources, depth + 1) {
        Ok(c) => c,
        Err(d) => {
            diags.extend(d);
            return;
        }
    };
    let mut inputs = BTreeMap::new();
    let mut count = None;
    let mut for_each = None;
    let mut depends_on = Vec::new();
    let mut providers = Vec::new();
    for a in &blk.body.attributes {
        match a.name.as_str() {
            "source" | "version" => {}
            "providers" => {
                if let Expr::Object(items, _) = &a.expr {
                    for (k, v) in items {
                        let key = match k {
                            keel_hcl::syntax::ObjKey::Name(n, _) => Some(n.clone()),
                            keel_hcl::syntax::ObjKey::Expr(e) => {
                                e.references().first().map(ToString::to_string)
                            }
                        };
                        if let (Some(k), Some(v)) = (key, v.references().first()) {
                            providers.push((k, v.to_string()));
                        }
                    }
                }
            }
            "count" => count = Some(a.expr.clone()),
            "for_each" => for_each = Some(a.expr.clone()),
            "depends_on" => {
                depends_on = traversal_list(a).unwrap_or_else(|d| {
                    diags.extend(d);
                    Vec::new()
                });
            }
            n => {
                if !child.variables.contains_key(n) {
                    diags.push(err(
                        "Unsupported argument",
                        format!("An argument named {n:?} is not expected here."),
                        &a.name_range,
                    ));
                }
                inputs.insert(n.to_string(), a.clone());
            }
        }
    }
    for (n, v) in &child.variables {
        if v.default.is_none() && !inputs.contains_key(n) && v.nullable {
            diags.push(err(
                "Missing required argument",
                format!("The argument {n:?} is required, but no definition was found."),
                &blk.range,
            ));
        }
    }
    m.calls.insert(
        name.clone(),
        ModuleCall {
            name,
            source,
            count,
            for_each,
            inputs,
            depends_on,
            providers,
            module: Box::new(child),
            range: blk.range.clone(),
        },
    );
}

fn decode_terraform(blk: &Block, m: &mut Module, diags: &mut Diagnostics) {
    for a in &blk.body.attributes {
        match a.name.as_str() {
            "required_version" => match const_string(a) {
                Ok(s) => m.required_version.push(s),
                Err(d) => diags.extend(d),
            },
            "experiments" | "language" => {}
            n => diags.push(err(
                "Unsupported argument",
                format!("An argument named {n:?} is not expected here."),
                &a.name_range,
            )),
        }
    }
    for b in &blk.body.blocks {
        match b.kind.as_str() {
            "backend" => {
                let mut config = BTreeMap::new();
                for a in &b.body.attributes {
                    match const_value(&a.expr) {
                        Ok(v) => {
                            config.insert(a.name.clone(), v);
                        }
                        Err(_) => diags.push(err(
                            "Variables not allowed",
                            "Variables may not be used here.",
                            a.expr.range(),
                        )),
                    }
                }
                m.backend = Some(Backend {
                    kind: b.labels.first().cloned().unwrap_or_default(),
                    config,
                    range: b.range.clone(),
                });
            }
            "required_providers" => {
                for a in &b.body.attributes {
                    let src = match const_value(&a.expr) {
                        Ok(v) => v
                            .as_map()
                            .and_then(|o| o.get("source"))
                            .and_then(|s| s.as_str().map(str::to_string))
                            .or_else(|| v.as_str().map(|_| format!("hashicorp/{}", a.name))),
                        Err(_) => None,
                    };
                    if let Some(v) = const_value(&a.expr).ok().and_then(|v| {
                        v.as_map()
                            .and_then(|o| o.get("version"))
                            .and_then(|s| s.as_str().map(str::to_string))
                    }) {
                        m.provider_versions.insert(a.name.clone(), v);
                    }
                    m.required_providers.insert(
                        a.name.clone(),
                        src.unwrap_or_else(|| format!("hashicorp/{}", a.name)),
                    );
                }
            }
            "cloud" => diags.push(err(
                "Unsupported block type",
                "keel infra has no HCP Terraform integration; use a backend block.",
                &b.type_range,
            )),
            "provider_meta" => {}
            other => diags.push(err(
                "Unsupported block type",
                format!("Blocks of type {other:?} are not expected here."),
                &b.type_range,
            )),
        }
    }
}

/// Checks `required_version` constraints against the terraform version keel speaks.
pub fn check_required_version(m: &Module) -> Result<(), Diagnostics> {
    let have = semver::Version::parse(crate::state::TERRAFORM_VERSION)
        .unwrap_or_else(|_| semver::Version::new(1, 11, 0));
    for c in &m.required_version {
        let req = c
            .replace("~>", "~")
            .split(',')
            .map(|p| {
                let p = p.trim();
                // Terraform's "~> 1.2" allows 1.x (>=1.2), semver's "~1.2" only 1.2.x.
                if let Some(v) = p.strip_prefix('~') {
                    let v = v.trim();
                    if v.matches('.').count() == 1 {
                        format!(
                            ">={v}, <{}",
                            v.split('.')
                                .next()
                                .and_then(|x| x.parse::<u64>().ok())
                                .map_or(0, |x| x + 1)
                        )
                    } else {
                        format!("~{v}")
                    }
                } else if p.starts_with(|c: char| c.is_ascii_digit()) {
                    format!("={p}")
                } else {
                    p.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        match semver::VersionReq::parse(&req) {
            Ok(r) if r.matches(&have) => {}
            _ => {
                return Err(Diagnostics::error(
                    "Unsupported Terraform Core version",
                    format!(
                        "This configuration does not support Terraform version {have}. To proceed, either choose another supported Terraform version or update this version constraint. Version constraints are normally set for good reason, so updating the constraint may lead to other errors or unexpected behavior."
                    ),
                    None,
                ));
            }
        }
    }
    for c in m.calls.values() {
        check_required_version(&c.module)?;
    }
    Ok(())
}
