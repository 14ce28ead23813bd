//! `OpenAPI` documents of every served kind, generated from the schemas the
//! `k8s-openapi` types carry (schemars, Kubernetes' definition names and
//! descriptions): `/openapi/v3` (a root listing one document per group
//! version) and `/openapi/v2` (JSON). Each kind's definition carries
//! `x-kubernetes-group-version-kind`, which `kubectl explain` looks up; the
//! PATCH operations list `fieldValidation`, from which kubectl learns that the
//! server validates fields itself. The same definitions drive the generic
//! required-field check in [`crate::validate`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use crate::resources::{RESOURCES, Resource};

const REF_V3: &str = "#/components/schemas/";

/// Every definition, in `OpenAPI` 3 form.
pub(crate) struct Schemas {
    /// By Kubernetes' name (`io.k8s.api.apps.v1.Deployment`).
    pub defs: Map<String, Value>,
    /// Definition name of each served resource, keyed by `(group, version, plural)`.
    names: BTreeMap<(&'static str, &'static str, &'static str), String>,
}

impl Schemas {
    /// The definition of a resource's kind.
    pub fn of(&self, r: &Resource) -> Option<&Value> {
        self.defs
            .get(self.names.get(&(r.group, r.version, r.plural))?)
    }

    /// Follows a `$ref` (also one wrapped in a one-element `allOf`).
    pub fn resolve<'a>(&'a self, mut s: &'a Value) -> &'a Value {
        for _ in 0..8 {
            let r = s
                .get("$ref")
                .or_else(|| s.pointer("/allOf/0/$ref"))
                .and_then(Value::as_str);
            match r
                .and_then(|r| r.strip_prefix(REF_V3))
                .and_then(|n| self.defs.get(n))
            {
                Some(d) => s = d,
                None => return s,
            }
        }
        s
    }
}

pub(crate) static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| {
    let mut g = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut names = BTreeMap::new();
    for r in RESOURCES.iter() {
        let s = (r.schema)(&mut g);
        if let Some(name) = s
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|x| x.strip_prefix(REF_V3))
        {
            names.insert((r.group, r.version, r.plural), name.to_string());
        }
    }
    let mut defs = g.take_definitions(true);
    crate::strategic::add_patch_meta(&mut defs);
    // k8s-openapi's structs always carry metadata, so their schemas list it
    // as required; Kubernetes' own documents never do (kubectl's client-side
    // validation would refuse objects without it).
    for d in defs.values_mut() {
        if let Some(req) = d.get_mut("required").and_then(Value::as_array_mut) {
            req.retain(|f| f != "metadata");
            if req.is_empty()
                && let Some(o) = d.as_object_mut()
            {
                o.remove("required");
            }
        }
    }
    for r in RESOURCES.iter() {
        let Some(d) = names
            .get(&(r.group, r.version, r.plural))
            .and_then(|n| defs.get_mut(n))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let gvk = json!({"group": r.group, "kind": r.kind, "version": r.version});
        match d
            .entry("x-kubernetes-group-version-kind")
            .or_insert_with(|| json!([]))
        {
            Value::Array(a) if !a.contains(&gvk) => a.push(gvk),
            _ => {}
        }
    }
    Schemas { defs, names }
});

/// Names of the definitions `roots` refer to, transitively (roots included).
fn reachable<'a>(roots: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix(REF_V3))
                {
                    out.push(r.to_string());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.into_iter().map(String::from).collect();
    while let Some(n) = todo.pop() {
        if seen.insert(n.clone())
            && let Some(d) = SCHEMAS.defs.get(&n)
        {
            refs(d, &mut todo);
        }
    }
    seen
}

fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The built-in group versions (documents are built once; custom
/// resources are not in them).
fn served_gvs() -> Vec<(String, String)> {
    let mut gvs = vec![(String::new(), "v1".to_string())];
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        let gv = (r.group.to_string(), r.version.to_string());
        if !gvs.contains(&gv) {
            gvs.push(gv);
        }
    }
    gvs
}

/// The serialized v3 document of each group version with its hash.
static V3_DOCS: LazyLock<BTreeMap<String, (String, Vec<u8>)>> = LazyLock::new(|| {
    served_gvs()
        .into_iter()
        .filter_map(|(g, v)| {
            let doc = build_v3_gv(&g, &v)?;
            let bytes = serde_json::to_vec(&doc).ok()?;
            let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
            let hash = digest.as_ref()[..16]
                .iter()
                .fold(String::new(), |mut acc, b| {
                    let _ = std::fmt::Write::write_fmt(&mut acc, format_args!("{b:02X}"));
                    acc
                });
            Some((gv_key(&g, &v), (hash, bytes)))
        })
        .collect()
});

/// `/openapi/v3`: where each group version's document lives.
pub fn v3_root() -> Value {
    let paths: Map<String, Value> = V3_DOCS
        .iter()
        .map(|(k, (hash, _))| {
            (
                k.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{k}?hash={hash}")}),
            )
        })
        .collect();
    json!({ "paths": paths })
}

/// The serialized `OpenAPI` v3 document of one group version (`api/v1`,
/// `apis/apps/v1`).
pub fn v3_gv(path: &str) -> Option<&'static [u8]> {
    V3_DOCS.get(path).map(|(_, b)| b.as_slice())
}

fn query_params(v2: bool) -> Vec<Value> {
    [
        "dryRun",
        "fieldManager",
        "fieldValidation",
        "force",
        "pretty",
    ]
    .iter()
    .map(|n| {
        if v2 {
            json!({"name": n, "in": "query", "type": "string", "uniqueItems": true})
        } else {
            json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
        }
    })
    .collect()
}

/// Item-path operations of the resources of one group version.
fn paths(rs: &[&Resource], v2: bool) -> Map<String, Value> {
    let mut paths = Map::new();
    for r in rs {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let (path, verbs): (String, &[&str]) = if r.verbs.stored() {
            let item = if r.namespaced {
                format!(
                    "{}/namespaces/{{namespace}}/{}/{{name}}",
                    r.gv_path(),
                    r.plural
                )
            } else {
                format!("{}/{}/{{name}}", r.gv_path(), r.plural)
            };
            (item, &["get", "put", "patch", "delete"])
        } else {
            (format!("{}/{}", r.gv_path(), r.plural), &["post"])
        };
        let ops: Map<String, Value> = verbs
            .iter()
            .map(|verb| {
                (
                    (*verb).to_string(),
                    json!({
                        "operationId": format!("{verb}{}", r.kind),
                        "x-kubernetes-action": verb,
                        "x-kubernetes-group-version-kind": gvk,
                        "parameters": query_params(v2),
                        "responses": {"200": {"description": "OK"}},
                    }),
                )
            })
            .collect();
        paths.insert(path, Value::Object(ops));
    }
    paths
}

fn build_v3_gv(group: &str, version: &str) -> Option<Value> {
    let rs: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if rs.is_empty() {
        return None;
    }
    let roots: Vec<&str> = rs
        .iter()
        .filter_map(|r| SCHEMAS.names.get(&(r.group, r.version, r.plural)))
        .map(String::as_str)
        .collect();
    let schemas: Map<String, Value> = reachable(roots)
        .into_iter()
        .filter_map(|n| SCHEMAS.defs.get(&n).map(|d| (n, d.clone())))
        .collect();
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::GIT_VERSION},
        "paths": paths(&rs, false),
        "components": {"schemas": schemas},
    }))
}

/// The Swagger 2.0 document: every definition and operation.
static V2: LazyLock<Value> = LazyLock::new(|| {
    let rs: Vec<&Resource> = RESOURCES.iter().collect();
    let doc = json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::GIT_VERSION},
        "paths": paths(&rs, true),
        "definitions": SCHEMAS.defs,
    });
    // Swagger 2.0 has no `nullable`; its definitions live elsewhere.
    let text = serde_json::to_string(&doc)
        .unwrap_or_default()
        .replace("\"#/components/schemas/", "\"#/definitions/")
        .replace(",\"nullable\":true", "")
        .replace("\"nullable\":true,", "");
    serde_json::from_str(&text).unwrap_or(Value::Null)
});

/// `/openapi/v2` as JSON.
pub static V2_JSON: LazyLock<Vec<u8>> =
    LazyLock::new(|| serde_json::to_vec(&*V2).unwrap_or_default());

/// The media type of `/openapi/v2` in protobuf (gnostic's `openapi.v2.Document`).
// Go's mime parser refuses the `@` of the type clients ask for, so the
// answer is labelled as kube-openapi labels it.
pub const V2_PROTO_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `/openapi/v2` as the protobuf kubectl asks for: it reads the PATCH
/// operations' parameters (is `fieldValidation` supported?) and, for kinds
/// without PATCH, validates client-side against the definitions.
pub static V2_PROTO: LazyLock<Vec<u8>> = LazyLock::new(|| v2pb::document(&V2));

/// A writer of gnostic's `OpenAPIv2.proto` messages (field numbers from that
/// file); only what the document above uses.
mod v2pb {
    use serde_json::Value;

    #[derive(Default)]
    struct Msg(Vec<u8>);

    impl Msg {
        fn varint(&mut self, mut v: u64) {
            while v >= 0x80 {
                self.0.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.0.push(v as u8);
        }
        fn key(&mut self, field: u32, wire: u8) {
            self.varint(u64::from(field << 3 | u32::from(wire)));
        }
        fn bytes(&mut self, field: u32, b: &[u8]) {
            self.key(field, 2);
            self.varint(b.len() as u64);
            self.0.extend_from_slice(b);
        }
        fn str(&mut self, field: u32, s: &str) {
            if !s.is_empty() {
                self.bytes(field, s.as_bytes());
            }
        }
        fn msg(&mut self, field: u32, m: &Msg) {
            self.bytes(field, &m.0);
        }
        fn boolean(&mut self, field: u32, b: bool) {
            if b {
                self.key(field, 0);
                self.varint(1);
            }
        }
        fn int(&mut self, field: u32, v: i64) {
            self.key(field, 0);
            self.varint(v as u64);
        }
        fn double(&mut self, field: u32, v: f64) {
            self.key(field, 1);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// `Any` holding a value as YAML, as gnostic stores extensions.
    fn any(v: &Value) -> Msg {
        let mut m = Msg::default();
        m.str(2, &serde_yaml_ng::to_string(v).unwrap_or_default());
        m
    }

    fn named_any(name: &str, v: &Value) -> Msg {
        let mut m = Msg::default();
        m.str(1, name);
        m.msg(2, &any(v));
        m
    }

    fn schema(value: &Value) -> Msg {
        let mut m = Msg::default();
        let Some(o) = value.as_object() else {
            return m;
        };
        let st = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or_default();
        m.str(1, st("$ref"));
        m.str(2, st("format"));
        m.str(3, st("title"));
        m.str(4, st("description"));
        if let Some(d) = o.get("default") {
            m.msg(5, &any(d));
        }
        for (k, f) in [("maximum", 7), ("minimum", 9)] {
            if let Some(x) = o.get(k).and_then(Value::as_f64) {
                m.double(f, x);
            }
        }
        for (k, f) in [
            ("maxLength", 11),
            ("minLength", 12),
            ("maxItems", 14),
            ("minItems", 15),
        ] {
            if let Some(x) = o.get(k).and_then(Value::as_i64) {
                m.int(f, x);
            }
        }
        m.str(13, st("pattern"));
        m.boolean(
            16,
            o.get("uniqueItems").and_then(Value::as_bool) == Some(true),
        );
        for r in o
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            m.str(19, r.as_str().unwrap_or_default());
        }
        for e in o
            .get("enum")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            m.msg(20, &any(e));
        }
        match o.get("additionalProperties") {
            Some(Value::Bool(allowed)) => {
                let mut item = Msg::default();
                item.key(2, 0);
                item.varint(u64::from(*allowed));
                m.msg(21, &item);
            }
            Some(sub @ Value::Object(_)) => {
                let mut item = Msg::default();
                item.msg(1, &schema(sub));
                m.msg(21, &item);
            }
            _ => {}
        }
        if let Some(t) = o.get("type").and_then(Value::as_str) {
            let mut ti = Msg::default();
            ti.str(1, t);
            m.msg(22, &ti);
        }
        if let Some(items) = o.get("items") {
            let mut ii = Msg::default();
            ii.msg(1, &schema(items));
            m.msg(23, &ii);
        }
        for a in o
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            m.msg(24, &schema(a));
        }
        if let Some(props) = o.get("properties").and_then(Value::as_object) {
            let mut p = Msg::default();
            for (name, v) in props {
                let mut ns = Msg::default();
                ns.str(1, name);
                ns.msg(2, &schema(v));
                p.msg(1, &ns);
            }
            m.msg(25, &p);
        }
        for (k, v) in o.iter().filter(|(k, _)| k.starts_with("x-")) {
            m.msg(31, &named_any(k, v));
        }
        m
    }

    fn operation(op: &Value) -> Msg {
        let mut m = Msg::default();
        m.str(5, op["operationId"].as_str().unwrap_or_default());
        for p in op["parameters"].as_array().into_iter().flatten() {
            let mut q = Msg::default();
            q.str(2, p["in"].as_str().unwrap_or_default());
            q.str(4, p["name"].as_str().unwrap_or_default());
            q.str(6, p["type"].as_str().unwrap_or_default());
            q.boolean(20, p["uniqueItems"].as_bool() == Some(true));
            let mut nb = Msg::default();
            nb.msg(3, &q);
            let mut param = Msg::default();
            param.msg(2, &nb);
            let mut item = Msg::default();
            item.msg(1, &param);
            m.msg(8, &item);
        }
        let mut resp = Msg::default();
        resp.str(1, "OK");
        let mut rv = Msg::default();
        rv.msg(1, &resp);
        let mut nr = Msg::default();
        nr.str(1, "200");
        nr.msg(2, &rv);
        let mut rs = Msg::default();
        rs.msg(1, &nr);
        m.msg(9, &rs);
        if let Some(o) = op.as_object() {
            for (k, v) in o.iter().filter(|(k, _)| k.starts_with("x-")) {
                m.msg(13, &named_any(k, v));
            }
        }
        m
    }

    pub(super) fn document(doc: &Value) -> Vec<u8> {
        let mut d = Msg::default();
        d.str(1, "2.0");
        let mut info = Msg::default();
        info.str(
            1,
            doc.pointer("/info/title")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        info.str(
            2,
            doc.pointer("/info/version")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        d.msg(2, &info);
        let mut paths = Msg::default();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            let mut pi = Msg::default();
            for (verb, f) in [
                ("get", 2),
                ("put", 3),
                ("post", 4),
                ("delete", 5),
                ("patch", 8),
            ] {
                if let Some(op) = item.get(verb) {
                    pi.msg(f, &operation(op));
                }
            }
            let mut np = Msg::default();
            np.str(1, path);
            np.msg(2, &pi);
            paths.msg(2, &np);
        }
        d.msg(8, &paths);
        let mut defs = Msg::default();
        for (name, s) in doc["definitions"].as_object().into_iter().flatten() {
            let mut ns = Msg::default();
            ns.str(1, name);
            ns.msg(2, &schema(s));
            defs.msg(1, &ns);
        }
        d.msg(9, &defs);
        d.0
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use serde_json::json;

        #[test]
        fn encodes_nested_messages() {
            let s = schema(
                &json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}}),
            );
            // required (19): key 0x9a 0x01, len 1, "a"
            assert!(s.0.windows(4).any(|w| w == [0x9a, 0x01, 1, b'a']));
            // type (22) holding TypeItem{value: "object"}
            assert!(s.0.windows(4).any(|w| w == [0xb2, 0x01, 8, 0x0a]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    #[test]
    fn every_kind_has_a_definition_with_its_gvk() {
        for r in RESOURCES.iter() {
            let d = SCHEMAS
                .of(r)
                .unwrap_or_else(|| panic!("no schema for {}", r.kind));
            let gvks = d["x-kubernetes-group-version-kind"].as_array().unwrap();
            assert!(
                gvks.iter().any(|g| g["kind"] == r.kind
                    && g["group"] == r.group
                    && g["version"] == r.version),
                "{}: {gvks:?}",
                r.kind
            );
        }
        let dep = SCHEMAS
            .of(find("apps", "v1", "deployments").unwrap())
            .unwrap();
        let spec = SCHEMAS.resolve(&dep["properties"]["spec"]);
        let strategy = SCHEMAS.resolve(&spec["properties"]["strategy"]);
        assert!(
            strategy["description"]
                .as_str()
                .unwrap()
                .contains("replace existing pods")
        );
    }

    #[test]
    fn documents_per_group_version() {
        let root = v3_root();
        let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
        let doc: Value = serde_json::from_slice(v3_gv("apis/apps/v1").unwrap()).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        assert!(schemas.contains_key("io.k8s.api.apps.v1.DeploymentStrategy"));
        assert!(schemas.contains_key("io.k8s.api.core.v1.PodSpec"));
        assert!(!schemas.contains_key("io.k8s.api.rbac.v1.Role"));
        let p = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(p["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(v3_gv("apis/nope/v1").is_none());
        let v2: Value = serde_json::from_slice(&V2_JSON).unwrap();
        assert!(v2["definitions"]["io.k8s.api.rbac.v1.Role"].is_object());
        assert!(!String::from_utf8_lossy(&V2_JSON).contains("#/components/schemas/"));
    }
}
