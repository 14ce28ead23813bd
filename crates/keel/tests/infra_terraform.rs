//! `keel infra` against the real terraform 1.11 on this machine: the same
//! configurations (`terraform_data` with modules, `count`/`for_each`, lifecycle,
//! moved blocks) give the same plan summaries and outputs; each reads the
//! other's state; each respects the other's state lock; bad HCL gives
//! terraform's diagnostics.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn keel(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("infra")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run keel")
}

fn terraform(dir: &Path, args: &[&str]) -> Output {
    Command::new("terraform")
        .args(args)
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("terraform 1.11 must be installed (scripts/test.sh installs it)")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed:\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn line_with(s: &str, prefix: &str) -> String {
    s.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{s}"))
        .to_string()
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, body) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
}

fn outputs(o: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(o).unwrap();
    // Values and sensitivity must match; `type` spellings too.
    if let Some(m) = v.as_object_mut() {
        for x in m.values_mut() {
            x.as_object_mut().unwrap().remove("type");
        }
    }
    v
}

const MODULE: &str = r#"
variable "prefix" {
  type = string
}
variable "n" {
  type    = number
  default = 1
}
resource "terraform_data" "item" {
  count = var.n
  input = "${var.prefix}-${count.index}"
}
module "inner" {
  source = "./inner"
  tag    = var.prefix
}
output "items" {
  value = terraform_data.item[*].output
}
output "inner" {
  value = module.inner.tag
}
"#;

const INNER: &str = r#"
variable "tag" {
  type = string
}
resource "terraform_data" "t" {
  input = upper(var.tag)
}
output "tag" {
  value = terraform_data.t.output
}
"#;

const STEP1: &str = r#"
variable "names" {
  type    = list(string)
  default = ["a", "b", "c"]
}
variable "settings" {
  type = object({
    size  = optional(number, 3)
    label = optional(string)
  })
  default = {}
}
locals {
  base = "keel"
}
resource "terraform_data" "root" {
  input = { base = local.base, size = var.settings.size }
}
resource "terraform_data" "each" {
  for_each = toset(var.names)
  input    = "${each.key}-${terraform_data.root.output.base}"
  lifecycle {
    create_before_destroy = true
  }
}
resource "terraform_data" "counted" {
  count = 2
  input = count.index * var.settings.size
  lifecycle {
    ignore_changes = [input]
  }
}
module "m" {
  source   = "./mod"
  for_each = { x = 2, y = 1 }
  prefix   = each.key
  n        = each.value
}
output "each" {
  value = { for k, v in terraform_data.each : k => v.output }
}
output "counted" {
  value = terraform_data.counted[*].output
}
output "mods" {
  value = { for k, m in module.m : k => m.items }
}
output "inner" {
  value = [for m in module.m : m.inner]
}
output "secret" {
  value     = "s3cr3t"
  sensitive = true
}
"#;

/// Step 2: a changed input, a smaller `for_each`, counted inputs that `ignore_changes`
/// keeps, a renamed resource with a moved block, a changed module instance count.
const STEP2: &str = r#"
variable "names" {
  type    = list(string)
  default = ["a", "c"]
}
variable "settings" {
  type = object({
    size  = optional(number, 3)
    label = optional(string)
  })
  default = { size = 5 }
}
locals {
  base = "keel2"
}
resource "terraform_data" "root" {
  input = { base = local.base, size = var.settings.size }
}
moved {
  from = terraform_data.each
  to   = terraform_data.renamed
}
resource "terraform_data" "renamed" {
  for_each = toset(var.names)
  input    = "${each.key}-${terraform_data.root.output.base}"
  lifecycle {
    create_before_destroy = true
  }
}
resource "terraform_data" "counted" {
  count = 2
  input = count.index * var.settings.size
  lifecycle {
    ignore_changes = [input]
  }
}
module "m" {
  source   = "./mod"
  for_each = { x = 1, y = 3 }
  prefix   = each.key
  n        = each.value
}
output "each" {
  value = { for k, v in terraform_data.renamed : k => v.output }
}
output "counted" {
  value = terraform_data.counted[*].output
}
output "mods" {
  value = { for k, m in module.m : k => m.items }
}
output "inner" {
  value = [for m in module.m : m.inner]
}
output "secret" {
  value     = "s3cr3t"
  sensitive = true
}
"#;

#[test]
fn same_plans_and_outputs_as_terraform() {
    let base = tempfile::tempdir().unwrap();
    let (k, t) = (base.path().join("keel"), base.path().join("tf"));
    for d in [&k, &t] {
        write(
            d,
            &[
                ("main.tf", STEP1),
                ("mod/main.tf", MODULE),
                ("mod/inner/main.tf", INNER),
            ],
        );
    }
    ok(terraform(&t, &["init", "-no-color"]), "terraform init");
    ok(keel(&k, &["init", "-no-color"]), "keel init");

    let tp = ok(terraform(&t, &["plan", "-no-color"]), "terraform plan");
    let kp = ok(keel(&k, &["plan", "-no-color"]), "keel plan");
    assert_eq!(
        line_with(&kp, "Plan:"),
        line_with(&tp, "Plan:"),
        "step 1 plan\nkeel:\n{kp}\nterraform:\n{tp}"
    );

    let ta = ok(
        terraform(&t, &["apply", "-auto-approve", "-no-color"]),
        "terraform apply",
    );
    let ka = ok(
        keel(&k, &["apply", "-auto-approve", "-no-color"]),
        "keel apply",
    );
    assert_eq!(
        line_with(&ka, "Apply complete!"),
        line_with(&ta, "Apply complete!")
    );
    let to = ok(terraform(&t, &["output", "-json"]), "terraform output");
    let ko = ok(keel(&k, &["output", "-json"]), "keel output");
    assert_eq!(outputs(&ko), outputs(&to), "step 1 outputs");

    // No changes after apply, for both.
    let kp = ok(
        keel(&k, &["plan", "-no-color", "-detailed-exitcode"]),
        "keel plan after apply",
    );
    assert!(kp.contains("No changes."), "{kp}");

    for d in [&k, &t] {
        write(d, &[("main.tf", STEP2)]);
    }
    let tp = ok(terraform(&t, &["plan", "-no-color"]), "terraform plan 2");
    let kp = ok(keel(&k, &["plan", "-no-color"]), "keel plan 2");
    assert_eq!(
        line_with(&kp, "Plan:"),
        line_with(&tp, "Plan:"),
        "step 2 plan\nkeel:\n{kp}\nterraform:\n{tp}"
    );
    assert!(
        kp.contains("has moved to terraform_data.renamed")
            || kp.contains("(moved from terraform_data.each"),
        "{kp}"
    );
    let ta = ok(
        terraform(&t, &["apply", "-auto-approve", "-no-color"]),
        "terraform apply 2",
    );
    let ka = ok(
        keel(&k, &["apply", "-auto-approve", "-no-color"]),
        "keel apply 2",
    );
    assert_eq!(
        line_with(&ka, "Apply complete!"),
        line_with(&ta, "Apply complete!")
    );
    let to = ok(terraform(&t, &["output", "-json"]), "terraform output 2");
    let ko = ok(keel(&k, &["output", "-json"]), "keel output 2");
    assert_eq!(outputs(&ko), outputs(&to), "step 2 outputs");

    let td = ok(
        terraform(&t, &["destroy", "-auto-approve", "-no-color"]),
        "terraform destroy",
    );
    let kd = ok(
        keel(&k, &["destroy", "-auto-approve", "-no-color"]),
        "keel destroy",
    );
    assert_eq!(
        line_with(&kd, "Destroy complete!"),
        line_with(&td, "Destroy complete!")
    );
}

#[test]
fn each_reads_the_others_state() {
    let base = tempfile::tempdir().unwrap();
    let d = base.path();
    write(
        d,
        &[
            ("main.tf", STEP1),
            ("mod/main.tf", MODULE),
            ("mod/inner/main.tf", INNER),
        ],
    );
    ok(terraform(d, &["init", "-no-color"]), "terraform init");
    ok(
        keel(d, &["apply", "-auto-approve", "-no-color"]),
        "keel apply",
    );
    // terraform plans against keel's state: nothing to do.
    let tp = ok(
        terraform(d, &["plan", "-no-color", "-detailed-exitcode"]),
        "terraform plan on keel's state",
    );
    assert!(tp.contains("No changes."), "{tp}");
    // terraform changes things; keel plans against terraform's state: nothing to do.
    write(d, &[("main.tf", STEP2)]);
    ok(
        terraform(d, &["apply", "-auto-approve", "-no-color"]),
        "terraform apply",
    );
    let kp = ok(
        keel(d, &["plan", "-no-color", "-detailed-exitcode"]),
        "keel plan on terraform's state",
    );
    assert!(kp.contains("No changes."), "{kp}");
    let ko = ok(keel(d, &["output", "-json"]), "keel output");
    let to = ok(terraform(d, &["output", "-json"]), "terraform output");
    assert_eq!(outputs(&ko), outputs(&to));
    ok(
        keel(d, &["destroy", "-auto-approve", "-no-color"]),
        "keel destroy",
    );
    let tp = ok(
        terraform(d, &["plan", "-no-color"]),
        "terraform plan after keel destroy",
    );
    assert_eq!(
        line_with(&tp, "Plan:"),
        "Plan: 11 to add, 0 to change, 0 to destroy.",
        "{tp}"
    );
}

/// A process waiting at apply's confirmation prompt holds the state lock.
fn hold_lock(cmd: &mut Command) -> std::process::Child {
    let mut c = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the prompt: the lock is taken before planning.
    let mut out = c.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("Enter a value") {
        let n = std::io::Read::read(&mut out, &mut buf).unwrap();
        assert!(
            n > 0,
            "apply ended before prompting: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    c
}

#[test]
fn lock_is_shared_with_terraform() {
    let base = tempfile::tempdir().unwrap();
    let d = base.path();
    write(
        d,
        &[(
            "main.tf",
            "resource \"terraform_data\" \"a\" {\n  input = 1\n}\n",
        )],
    );
    ok(terraform(d, &["init", "-no-color"]), "terraform init");

    // keel holds the lock: terraform fails naming keel's lock.
    let mut k = hold_lock(
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["infra", "apply", "-no-color"])
            .current_dir(d),
    );
    let t = terraform(
        d,
        &["apply", "-auto-approve", "-no-color", "-lock-timeout=0s"],
    );
    assert!(!t.status.success());
    let tt = text(&t);
    assert!(
        tt.contains("Error acquiring the state lock")
            && tt.contains("OperationTypeApply")
            && tt.contains("Who:"),
        "{tt}"
    );
    // A second keel fails the same way.
    let k2 = keel(d, &["apply", "-auto-approve", "-no-color"]);
    assert!(!k2.status.success());
    let kt = text(&k2);
    assert!(
        kt.contains("Error acquiring the state lock") && kt.contains("ID:"),
        "{kt}"
    );
    k.stdin.take().unwrap().write_all(b"no\n").unwrap();
    assert!(!k.wait().unwrap().success(), "answering no cancels");

    // terraform holds the lock: keel fails naming terraform's lock holder.
    let mut t = hold_lock(
        Command::new("terraform")
            .args(["apply", "-no-color"])
            .env("TF_CLI_CONFIG_FILE", "/dev/null")
            .current_dir(d),
    );
    let k3 = keel(d, &["apply", "-auto-approve", "-no-color"]);
    assert!(!k3.status.success());
    let kt = text(&k3);
    assert!(
        kt.contains("Error acquiring the state lock") && kt.contains("Version:   1.11"),
        "{kt}"
    );
    t.stdin.take().unwrap().write_all(b"no\n").unwrap();
    let _ = t.wait();
    // With the lock free, keel applies.
    ok(
        keel(d, &["apply", "-auto-approve", "-no-color"]),
        "keel apply after the lock is released",
    );
}

#[test]
fn bad_hcl_gives_terraform_diagnostics() {
    for (name, src) in [
        (
            "unclosed",
            "resource \"terraform_data\" \"a\" {\n  input = 1\n",
        ),
        (
            "bad_arg",
            "resource \"terraform_data\" \"a\" {\n  bogus = 1\n}\n",
        ),
        ("undeclared", "output \"o\" {\n  value = var.nope\n}\n"),
        (
            "bad_ref",
            "output \"o\" {\n  value = terraform_data.missing.id\n}\n",
        ),
        ("dup", "variable \"a\" {}\nvariable \"a\" {}\n"),
    ] {
        let base = tempfile::tempdir().unwrap();
        let d = base.path();
        write(d, &[("main.tf", src)]);
        let t = terraform(d, &["validate", "-no-color"]);
        let k = keel(d, &["validate", "-no-color"]);
        assert!(
            !t.status.success() && !k.status.success(),
            "{name}: both must fail"
        );
        let (tt, kt) = (
            String::from_utf8_lossy(&t.stderr).into_owned(),
            String::from_utf8_lossy(&k.stderr).into_owned(),
        );
        assert_eq!(
            line_with(&kt, "Error:"),
            line_with(&tt, "Error:"),
            "{name}\nkeel:\n{kt}\nterraform:\n{tt}"
        );
        assert_eq!(
            line_with(&kt, "  on main.tf line"),
            line_with(&tt, "  on main.tf line"),
            "{name}\nkeel:\n{kt}\nterraform:\n{tt}"
        );
    }
}

/// `show -json PLANFILE` with ids (random in both) and versions blanked.
fn plan_json(dir: &Path, run: fn(&Path, &[&str]) -> Output) -> serde_json::Value {
    ok(run(dir, &["plan", "-no-color", "-out=p.plan"]), "plan -out");
    shown_json(dir, run, &["show", "-json", "p.plan"])
}

/// What `show -json …` prints, ids and versions blanked.
fn shown_json(dir: &Path, run: fn(&Path, &[&str]) -> Output, args: &[&str]) -> serde_json::Value {
    fn blank(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    // ids are random in both; versions are keel's and terraform's own.
                    if (k == "id" || k == "terraform_version") && x.is_string() {
                        *x = serde_json::Value::String("ID".into());
                    } else {
                        blank(x);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(blank),
            _ => {}
        }
    }
    let shown = ok(run(dir, args), "show -json");
    let text = shown
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default();
    let mut v: serde_json::Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("show -json printed no JSON ({e}):\n{shown}"));
    blank(&mut v);
    // terraform lists them in its analyzer's map order.
    if let Some(a) = v
        .get_mut("relevant_attributes")
        .and_then(serde_json::Value::as_array_mut)
    {
        a.sort_by_key(ToString::to_string);
    }
    v
}

/// `plan -json`'s lines as (type, message, change), timestamps and the
/// version line's text left out, sorted: terraform emits `planned_change`
/// lines as its parallel walk reaches each resource.
fn ui_lines(o: &str) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = o
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|j| j["type"] != "version" || j["ui"] == "1.2")
        .map(|j| {
            (
                j["type"].as_str().unwrap_or_default().to_string(),
                j["@message"].as_str().unwrap_or_default().to_string(),
                j.get("change")
                    .or_else(|| j.get("changes"))
                    .or_else(|| j.get("outputs"))
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            )
        })
        .map(|(t, m, c)| {
            if t == "version" {
                (t, String::new(), c)
            } else if let Some((head, _)) = m.split_once(" [id=") {
                // Refresh lines name each tool's own random ids.
                (t, head.to_string(), c)
            } else {
                (t, m, c)
            }
        })
        .collect();
    v.sort();
    v
}

fn same_lines(k: &[(String, String, String)], t: &[(String, String, String)], step: &str) {
    let only_k: Vec<_> = k.iter().filter(|x| !t.contains(x)).collect();
    let only_t: Vec<_> = t.iter().filter(|x| !k.contains(x)).collect();
    assert!(
        only_k.is_empty() && only_t.is_empty() && k.len() == t.len(),
        "{step}: plan -json lines differ\nonly keel: {only_k:#?}\nonly terraform: {only_t:#?}"
    );
}

const JSON_FIELDS: &[&str] = &[
    "variables",
    "planned_values",
    "resource_changes",
    "output_changes",
    "prior_state",
    "configuration",
    "relevant_attributes",
    "applyable",
    "complete",
    "errored",
];

/// Both apply the `p.plan` that [`plan_json`] saved.
fn apply_saved_plans(k: &Path, t: &Path) {
    ok(
        terraform(t, &["apply", "-auto-approve", "p.plan"]),
        "terraform apply",
    );
    ok(keel(k, &["apply", "-auto-approve", "p.plan"]), "keel apply");
}

fn same_json(k: &serde_json::Value, t: &serde_json::Value, step: &str) {
    let mut diffs = Vec::new();
    for f in JSON_FIELDS {
        if k.get(f) != t.get(f) {
            diffs.push(format!(
                "{f}:\n  keel:      {}\n  terraform: {}",
                k.get(f).map(ToString::to_string).unwrap_or_default(),
                t.get(f).map(ToString::to_string).unwrap_or_default()
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{step}: show -json differs\n{}",
        diffs.join("\n")
    );
}

#[test]
fn same_json_plans_as_terraform() {
    let base = tempfile::tempdir().unwrap();
    let (k, t) = (base.path().join("keel"), base.path().join("tf"));
    for d in [&k, &t] {
        write(
            d,
            &[
                ("main.tf", STEP1),
                ("mod/main.tf", MODULE),
                ("mod/inner/main.tf", INNER),
            ],
        );
    }
    ok(terraform(&t, &["init", "-no-color"]), "terraform init");
    ok(keel(&k, &["init", "-no-color"]), "keel init");
    let tl = ok(terraform(&t, &["plan", "-json"]), "terraform plan -json");
    let kl = ok(keel(&k, &["plan", "-json"]), "keel plan -json");
    same_lines(&ui_lines(&kl), &ui_lines(&tl), "step 1");
    same_json(
        &plan_json(&k, keel),
        &plan_json(&t, terraform),
        "step 1 (create)",
    );
    apply_saved_plans(&k, &t);
    // The state both wrote, as show -json prints it.
    let (ks, ts) = (
        shown_json(&k, keel, &["show", "-json"]),
        shown_json(&t, terraform, &["show", "-json"]),
    );
    assert!(
        ts["values"]["root_module"]["resources"]
            .as_array()
            .is_some_and(|r| r.len() > 3),
        "{ts}"
    );
    assert_eq!(ks["values"], ts["values"], "show -json of the state");
    for d in [&k, &t] {
        write(d, &[("main.tf", STEP2)]);
    }
    let tl = ok(terraform(&t, &["plan", "-json"]), "terraform plan -json 2");
    let kl = ok(keel(&k, &["plan", "-json"]), "keel plan -json 2");
    same_lines(&ui_lines(&kl), &ui_lines(&tl), "step 2");
    same_json(
        &plan_json(&k, keel),
        &plan_json(&t, terraform),
        "step 2 (update, replace, move, delete)",
    );
}

/// `relevant_attributes` in the root module: references from changed
/// resources and outputs, through locals and the referenced arguments.
const RELEVANT1: &str = r#"
resource "terraform_data" "a" {
  input = "a"
}
resource "terraform_data" "b" {
  input = terraform_data.a.output
}
locals {
  l = terraform_data.b.input
}
resource "terraform_data" "c" {
  count = 2
  input = "${local.l}-${count.index}"
}
resource "terraform_data" "d" {
  input            = terraform_data.c[0].id
  triggers_replace = [terraform_data.a]
}
resource "terraform_data" "quiet" {
  input = "stays"
}
resource "terraform_data" "e" {
  input = terraform_data.quiet.output
}
output "o" {
  value = terraform_data.c[1].output
}
output "all" {
  value = terraform_data.c[*].id
}
"#;

fn relevant_set(v: &serde_json::Value) -> Vec<String> {
    let mut s: Vec<String> = v["relevant_attributes"]
        .as_array()
        .map(|a| a.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    s.sort();
    s
}

#[test]
fn same_relevant_attributes_as_terraform() {
    let base = tempfile::tempdir().unwrap();
    let (k, t) = (base.path().join("keel"), base.path().join("tf"));
    for d in [&k, &t] {
        write(d, &[("main.tf", RELEVANT1)]);
    }
    ok(terraform(&t, &["init", "-no-color"]), "terraform init");
    ok(keel(&k, &["init", "-no-color"]), "keel init");
    let (kj, tj) = (plan_json(&k, keel), plan_json(&t, terraform));
    assert!(!relevant_set(&tj).is_empty(), "{tj}");
    assert_eq!(relevant_set(&kj), relevant_set(&tj), "create");
    apply_saved_plans(&k, &t);
    // Only `a` changes: what depends on it changes with it; `quiet` and
    // `e` do not.
    for d in [&k, &t] {
        write(
            d,
            &[(
                "main.tf",
                &RELEVANT1.replacen("input = \"a\"", "input = \"a2\"", 1),
            )],
        );
    }
    let (kj, tj) = (plan_json(&k, keel), plan_json(&t, terraform));
    assert!(!relevant_set(&tj).is_empty(), "{tj}");
    assert_eq!(relevant_set(&kj), relevant_set(&tj), "update");
}
