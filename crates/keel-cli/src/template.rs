//! docker's `--format`: a Go `text/template` (keel-gotmpl) run once per
//! object with docker's function map (`json`, `join`, `split`, `title`,
//! `lower`, `upper`, `pad`, `truncate`; `println` and the rest are Go's
//! builtins), the `table` prefix (a header row, then tabwriter columns) and
//! the bare word `json` (one JSON object per line). The objects are the
//! docker-shaped JSON each command already builds for `-o json`.

use std::collections::BTreeMap;

use anyhow::Context;
use keel_gotmpl::{FuncDef, Imp, Templates, Ty, Value, gofmt};

/// A parsed `--format`.
pub struct Template {
    templates: Templates,
    /// The fields the text names (`.Names` …): a table's header needs
    /// them even when there are no rows to take them from.
    fields: Vec<String>,
    table: bool,
    json: bool,
    headers: &'static [(&'static str, &'static str)],
    /// docker's container context: `.Labels` is `k=v,…`, `.Label "k"` one value.
    label_context: bool,
}

/// A row of a command whose docker formatter context has a `Label` method
/// (`ps`): its fields, plus the labels the method reads.
#[derive(Debug)]
struct Row {
    fields: BTreeMap<String, Value>,
    labels: BTreeMap<String, String>,
}

impl keel_gotmpl::Object for Row {
    fn type_name(&self) -> String {
        "*formatter.ContainerContext".into()
    }
    fn field(&self, name: &str) -> Option<Value> {
        self.fields.get(name).cloned()
    }
    fn method(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>> {
        (name == "Label").then(|| {
            let k = text_of(args.first().unwrap_or(&Value::Nil));
            Ok(Value::string(
                self.labels.get(&k).cloned().unwrap_or_default(),
            ))
        })
    }
    fn display(&self) -> String {
        format!("{:?}", self.fields.keys().collect::<Vec<_>>())
    }
    fn method_arity(&self, name: &str) -> Option<usize> {
        (name == "Label").then_some(1)
    }
    fn kind(&self) -> &'static str {
        "struct"
    }
    fn struct_fields(&self) -> Option<Vec<(String, Value)>> {
        Some(
            self.fields
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }
}

/// docker's `Labels()` of a formatter context: `k=v` pairs joined by commas.
fn joined_labels(o: &serde_json::Value) -> (serde_json::Value, BTreeMap<String, String>) {
    let labels: BTreeMap<String, String> = o
        .get("Labels")
        .and_then(|l| l.as_object())
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let mut o = o.clone();
    if let Some(m) = o.as_object_mut() {
        let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        m.insert("Labels".into(), serde_json::Value::String(text.join(",")));
    }
    (o, labels)
}

fn text_of(v: &Value) -> String {
    gofmt::sprint_value(v)
}

fn plain(params: &[Ty], f: fn(&[Value]) -> Result<Value, String>) -> FuncDef {
    FuncDef {
        params: params.to_vec(),
        variadic: None,
        imp: Imp::Plain(f),
    }
}

/// Go's `strings.Title`: the first letter of each word upper-cased, a word
/// starting after anything but a letter, digit, `_` or `'`.
fn title(s: &str) -> String {
    let mut prev_sep = true;
    s.chars()
        .map(|c| {
            let out = if prev_sep {
                c.to_uppercase().next().unwrap_or(c)
            } else {
                c
            };
            prev_sep = !(c.is_alphanumeric() || c == '_' || c == '\'');
            out
        })
        .collect()
}

fn strings_of(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::List(l) => Ok(l.iter().map(text_of).collect()),
        Value::Nil | Value::Invalid => Ok(Vec::new()),
        other => Err(format!(
            "wrong type for value; expected []string; got {}",
            other.type_name()
        )),
    }
}

/// docker/cli's `templates.basicFunctions`.
fn docker_funcs() -> Vec<(&'static str, FuncDef)> {
    use Ty::{Any, Int, Str, Value as V};
    vec![
        (
            "json",
            plain(&[Any], |a| {
                serde_json::to_string(&a[0].to_json())
                    .map(Value::string)
                    .map_err(|e| e.to_string())
            }),
        ),
        (
            "split",
            plain(&[Str, Str], |a| {
                let s = text_of(&a[0]);
                let sep = text_of(&a[1]);
                let parts: Vec<Value> = if sep.is_empty() {
                    s.chars().map(|c| Value::string(c.to_string())).collect()
                } else {
                    s.split(sep.as_str()).map(Value::str).collect()
                };
                Ok(Value::typed_list(parts, keel_gotmpl::Elem::Str))
            }),
        ),
        (
            "join",
            plain(&[V, Str], |a| {
                Ok(Value::string(strings_of(&a[0])?.join(&text_of(&a[1]))))
            }),
        ),
        (
            "title",
            plain(&[Str], |a| Ok(Value::string(title(&text_of(&a[0]))))),
        ),
        (
            "lower",
            plain(&[Str], |a| Ok(Value::string(text_of(&a[0]).to_lowercase()))),
        ),
        (
            "upper",
            plain(&[Str], |a| Ok(Value::string(text_of(&a[0]).to_uppercase()))),
        ),
        (
            "pad",
            plain(&[Str, Int, Int], |a| {
                let n = |v: &Value| usize::try_from(v.as_int().unwrap_or(0)).unwrap_or(0);
                Ok(Value::string(format!(
                    "{}{}{}",
                    " ".repeat(n(&a[1])),
                    text_of(&a[0]),
                    " ".repeat(n(&a[2]))
                )))
            }),
        ),
        (
            "truncate",
            plain(&[Str, Int], |a| {
                let n = usize::try_from(a[1].as_int().unwrap_or(0)).unwrap_or(0);
                Ok(Value::string(text_of(&a[0]).chars().take(n).collect()))
            }),
        ),
    ]
}

/// docker's column title for a field (`RunningFor` is "CREATED", …), else
/// the field name split at its capitals and upper-cased.
fn header_of(field: &str) -> String {
    let known = match field {
        "ID" => Some("ID"),
        "RunningFor" | "CreatedSince" => Some("CREATED"),
        "Names" => Some("NAMES"),
        "Repository" => Some("REPOSITORY"),
        "CPUPerc" => Some("CPU %"),
        "MemPerc" => Some("MEM %"),
        "MemUsage" => Some("MEM USAGE / LIMIT"),
        "NetIO" => Some("NET I/O"),
        "BlockIO" => Some("BLOCK I/O"),
        "PIDs" => Some("PIDS"),
        _ => None,
    };
    if let Some(k) = known {
        return k.to_string();
    }
    let mut out = String::new();
    let chars: Vec<char> = field.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if i > 0
            && c.is_uppercase()
            && (chars[i - 1].is_lowercase() || chars.get(i + 1).is_some_and(|n| n.is_lowercase()))
        {
            out.push(' ');
        }
        out.extend(c.to_uppercase());
    }
    out
}

impl Template {
    /// Parses a `--format` value. `\t` and `\n` written as two characters
    /// are a tab and a newline, as docker reads them.
    pub fn parse(format: &str) -> anyhow::Result<Self> {
        let mut text = format;
        let table = text.starts_with("table");
        if table {
            text = &text["table".len()..];
        }
        let text = text
            .trim_matches(' ')
            .replace("\\t", "\t")
            .replace("\\n", "\n");
        let json = !table && text == "json";
        let mut templates = Templates::go_with(docker_funcs());
        templates.root_name = "format".into();
        templates
            .parse("format", &text)
            .map_err(|e| anyhow::anyhow!("template parsing error: {e}"))?;
        let fields = text
            .split('.')
            .skip(1)
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .filter(|f| f.chars().next().is_some_and(char::is_uppercase))
            .collect();
        Ok(Template {
            templates,
            fields,
            table,
            json,
            headers: &[],
            label_context: false,
        })
    }

    /// Column titles of this command's fields where docker's differ from
    /// the generic ones (`ID` is "CONTAINER ID" for ps, "IMAGE ID" for images).
    #[must_use]
    pub fn headers(mut self, h: &'static [(&'static str, &'static str)]) -> Self {
        self.headers = h;
        self
    }

    /// The objects are docker containers: `.Labels` prints `k=v,…` and
    /// `.Label "k"` one label, as docker's `ps` formatter has them.
    #[must_use]
    pub fn label_context(mut self) -> Self {
        self.label_context = true;
        self
    }

    /// `--format` given: the template; absent: `None`.
    pub fn from_flag(format: Option<&str>) -> anyhow::Result<Option<Self>> {
        format.map(Self::parse).transpose()
    }

    /// Renders `objects` (each followed by a newline, docker's rule); a table
    /// gets a header row from `default_headers` fields' titles and aligned
    /// columns.
    pub fn render(&self, objects: &[serde_json::Value]) -> anyhow::Result<String> {
        if self.label_context {
            let rows: Vec<_> = objects.iter().map(joined_labels).collect();
            let objs: Vec<_> = rows.iter().map(|(o, _)| o.clone()).collect();
            // Only a template that calls `.Label` gets the context object
            // (`json .` and the like keep seeing plain fields).
            let method = self.fields.iter().any(|f| f == "Label");
            return self.render_with(&objs, |i, v| match v {
                Value::Map(m) if method => Value::Object(std::rc::Rc::new(Row {
                    fields: m.borrow().clone(),
                    labels: rows[i].1.clone(),
                })),
                v => v,
            });
        }
        self.render_with(objects, |_, v| v)
    }

    fn render_with(
        &self,
        objects: &[serde_json::Value],
        wrap: impl Fn(usize, Value) -> Value,
    ) -> anyhow::Result<String> {
        if self.json {
            let mut out = String::new();
            for o in objects {
                out.push_str(&serde_json::to_string(o)?);
                out.push('\n');
            }
            return Ok(out);
        }
        let mut out = String::new();
        if self.table {
            let mut header = BTreeMap::new();
            let first_keys = objects
                .first()
                .and_then(|o| o.as_object())
                .map(|m| m.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default();
            for k in first_keys.iter().chain(&self.fields) {
                let title = self
                    .headers
                    .iter()
                    .find(|(f, _)| f == k)
                    .map_or_else(|| header_of(k), |(_, t)| (*t).to_string());
                header.insert(k.clone(), Value::string(title));
            }
            // With no rows docker still prints the header; fields it could
            // not name are left empty.
            let (text, _) = self
                .templates
                .execute_partial("format", &Value::map(header));
            out.push_str(&text.replace("<no value>", ""));
            out.push('\n');
        }
        for (i, o) in objects.iter().enumerate() {
            let v = wrap(i, Value::from_json(o, true));
            let text = self
                .templates
                .execute("format", &v)
                .map_err(|e| anyhow::anyhow!("template parsing error: {e}"))?;
            out.push_str(&text);
            out.push('\n');
        }
        Ok(if self.table { tabwriter(&out) } else { out })
    }

    /// Prints what [`Template::render`] gives.
    pub fn print(&self, objects: &[serde_json::Value]) -> anyhow::Result<()> {
        print!("{}", self.render(objects).context("--format")?);
        Ok(())
    }
}

/// Go's `tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)` as docker's formatter
/// uses it: each tab-terminated cell padded to its column's widest cell plus
/// three, at least ten; a line's last cell is not aligned.
fn tabwriter(text: &str) -> String {
    tabwriter_min(text, 10)
}

/// [`tabwriter`] with another minimum cell width (docker compose's tables
/// use `tabwriter.NewWriter(w, 20, 1, 3, ' ', 0)`).
pub(crate) fn tabwriter_min(text: &str, min: usize) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for cells in &lines {
        for (i, c) in cells.iter().enumerate().take(cells.len().saturating_sub(1)) {
            if widths.len() <= i {
                widths.push(min);
            }
            widths[i] = widths[i].max(c.chars().count() + 3);
        }
    }
    let mut out = String::new();
    for cells in &lines {
        let n = cells.len();
        for (i, c) in cells.iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                out.push_str(&" ".repeat(widths[i] - c.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(f: &str, objs: &[serde_json::Value]) -> String {
        Template::parse(f).unwrap().render(objs).unwrap()
    }

    #[test]
    fn docker_functions() {
        let o = json!({"Args": ["a", "b"], "Name": "web server", "Labels": {"z": "1", "a": "<x>"}});
        assert_eq!(
            render("{{join .Args \",\"}}", std::slice::from_ref(&o)),
            "a,b\n"
        );
        assert_eq!(
            render("{{upper .Name}}|{{title .Name}}", std::slice::from_ref(&o)),
            "WEB SERVER|Web Server\n"
        );
        assert_eq!(
            render("{{json .Labels}}", std::slice::from_ref(&o)),
            "{\"a\":\"<x>\",\"z\":\"1\"}\n"
        );
        assert_eq!(
            render(
                "{{range split .Name \" \"}}[{{.}}]{{end}}",
                std::slice::from_ref(&o)
            ),
            "[web][server]\n"
        );
        assert_eq!(
            render("{{println .Name}}", std::slice::from_ref(&o)),
            "web server\n\n"
        );
        assert_eq!(
            render("{{pad .Name 1 2}}|{{truncate .Name 3}}", &[o]),
            " web server  |web\n"
        );
    }

    #[test]
    fn table_has_header_and_columns() {
        let objs = [
            json!({"ID": "abc", "Names": "one"}),
            json!({"ID": "abcdefabcdef", "Names": "two"}),
        ];
        assert_eq!(
            render("table {{.ID}}\\t{{.Names}}", &objs),
            "ID             NAMES\nabc            one\nabcdefabcdef   two\n"
        );
        assert_eq!(
            render("json", &objs[..1]),
            "{\"ID\":\"abc\",\"Names\":\"one\"}\n"
        );
        // No rows: the header still names the columns.
        assert_eq!(
            render("table {{.ID}}\\t{{upper .Names}}", &[]),
            "ID        NAMES\n"
        );
    }

    #[test]
    fn bad_templates_are_one_clear_error() {
        let e = Template::parse("{{.ID").err().unwrap().to_string();
        assert!(
            e.starts_with("template parsing error: template: format:1"),
            "{e}"
        );
        let e = Template::parse("{{nosuch .ID}}").err().unwrap().to_string();
        assert!(e.contains("function \"nosuch\" not defined"), "{e}");
    }
}
