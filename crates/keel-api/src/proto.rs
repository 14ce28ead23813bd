//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`,
//! which kubectl's typed clients send for `kubectl create configmap` and the
//! like) into the JSON the rest of the server works on. The message schema is
//! `proto_schema.json`, generated from the descriptors compiled into kubectl
//! by `scripts/gen-k8s-proto-schema.py`.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::{Map, Value, json};

/// One field: (JSON name, protobuf type, repeated, message type name).
type Field = (String, u32, bool, String);

struct Message {
    map_entry: bool,
    fields: HashMap<u32, Field>,
}

fn schema() -> &'static HashMap<String, Message> {
    static SCHEMA: OnceLock<HashMap<String, Message>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let raw: Value =
            serde_json::from_str(include_str!("proto_schema.json")).unwrap_or(Value::Null);
        let mut out = HashMap::new();
        for (name, m) in raw.as_object().into_iter().flatten() {
            let mut fields = HashMap::new();
            for (num, f) in m.get("f").and_then(Value::as_object).into_iter().flatten() {
                let (Ok(num), Some(f)) = (num.parse::<u32>(), f.as_array()) else {
                    continue;
                };
                fields.insert(
                    num,
                    (
                        f.first()
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        f.get(1).and_then(Value::as_u64).unwrap_or(0) as u32,
                        f.get(2).and_then(Value::as_bool).unwrap_or(false),
                        f.get(3)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    ),
                );
            }
            out.insert(
                name.clone(),
                Message {
                    map_entry: m.get("m").and_then(Value::as_bool).unwrap_or(false),
                    fields,
                },
            );
        }
        out
    })
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let c = *self.b.get(self.i).ok_or("truncated varint")?;
            self.i += 1;
            x |= u64::from(c & 0x7f) << shift;
            if c < 0x80 {
                return Ok(x);
            }
        }
        Err("varint too long".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .i
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or("truncated field")?;
        let s = &self.b[self.i..end];
        self.i = end;
        Ok(s)
    }

    fn next(&mut self) -> Option<Result<(u32, Wire<'a>), String>> {
        if self.i >= self.b.len() {
            return None;
        }
        Some((|| {
            let key = self.varint()?;
            let num = (key >> 3) as u32;
            let w = match key & 7 {
                0 => Wire::Varint(self.varint()?),
                1 => Wire::Fixed64(u64::from_le_bytes(
                    self.take(8)?.try_into().map_err(|_| "fixed64")?,
                )),
                2 => {
                    let n = self.varint()? as usize;
                    Wire::Bytes(self.take(n)?)
                }
                5 => Wire::Fixed32(u32::from_le_bytes(
                    self.take(4)?.try_into().map_err(|_| "fixed32")?,
                )),
                t => return Err(format!("unsupported wire type {t}")),
            };
            Ok((num, w))
        })())
    }
}

fn scalar(ty: u32, w: &Wire<'_>) -> Result<Value, String> {
    Ok(match (ty, w) {
        (1, Wire::Fixed64(x)) => json!(f64::from_bits(*x)),
        (2, Wire::Fixed32(x)) => json!(f32::from_bits(*x)),
        (3, Wire::Varint(x)) | (16, Wire::Fixed64(x)) => json!(*x as i64),
        (18, Wire::Varint(x)) => json!(((*x >> 1) as i64) ^ -((*x & 1) as i64)),
        (5, Wire::Varint(x)) => json!(*x as i64 as i32),
        (17, Wire::Varint(x)) => json!((((*x >> 1) as i64) ^ -((*x & 1) as i64)) as i32),
        (4 | 13, Wire::Varint(x)) | (6, Wire::Fixed64(x)) => json!(*x),
        (8, Wire::Varint(x)) => json!(*x != 0),
        (9, Wire::Bytes(b)) => json!(String::from_utf8_lossy(b)),
        (12, Wire::Bytes(b)) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        (7, Wire::Fixed32(x)) => json!(*x),
        (15, Wire::Fixed32(x)) => json!(*x as i32),
        _ => return Err(format!("field of type {ty} has the wrong wire type")),
    })
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn timestamp(fields: &Map<String, Value>) -> Value {
    let secs = fields.get("seconds").and_then(Value::as_i64).unwrap_or(0);
    if secs == 0 {
        return Value::Null;
    }
    jiff::Timestamp::from_second(secs).map_or(Value::Null, |t| {
        json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
    })
}

/// Decodes one message of type `name` into JSON, dropping zero values the way
/// Go's `omitempty` does (map values are kept).
fn decode_message(b: &[u8], name: &str, depth: usize) -> Result<Value, String> {
    if depth > 64 {
        return Err("message nesting too deep".into());
    }
    let msg = schema()
        .get(name)
        .ok_or_else(|| format!("unknown protobuf message {name}"))?;
    let mut out = Map::new();
    let mut r = Reader { b, i: 0 };
    while let Some(item) = r.next() {
        let (num, w) = item?;
        let Some((fname, ty, repeated, tname)) = msg.fields.get(&num) else {
            continue;
        };
        let mut values = Vec::new();
        match (*ty, &w) {
            (11, Wire::Bytes(sub)) => {
                let sub_msg = schema().get(tname.as_str());
                if sub_msg.is_some_and(|m| m.map_entry) {
                    let entry = decode_entry(sub, tname, depth + 1)?;
                    let obj = out.entry(fname.clone()).or_insert_with(|| json!({}));
                    if let (Value::Object(o), Some((k, v))) = (obj, entry) {
                        o.insert(k, v);
                    }
                    continue;
                }
                values.push(special_or_message(sub, tname, depth + 1)?);
            }
            (t, Wire::Bytes(packed)) if *repeated && !matches!(t, 9 | 12 | 11) => {
                let mut pr = Reader { b: packed, i: 0 };
                while pr.i < packed.len() {
                    let wv = match t {
                        1 | 6 | 16 => Wire::Fixed64(u64::from_le_bytes(
                            pr.take(8)?.try_into().map_err(|_| "fixed64")?,
                        )),
                        2 | 7 | 15 => Wire::Fixed32(u32::from_le_bytes(
                            pr.take(4)?.try_into().map_err(|_| "fixed32")?,
                        )),
                        _ => Wire::Varint(pr.varint()?),
                    };
                    values.push(scalar(t, &wv)?);
                }
            }
            (t, w) => values.push(scalar(t, w)?),
        }
        if *repeated {
            let arr = out.entry(fname.clone()).or_insert_with(|| json!([]));
            if let Value::Array(a) = arr {
                a.extend(values);
            }
        } else if let Some(v) = values.pop() {
            out.insert(fname.clone(), v);
        }
    }
    if !msg.map_entry {
        out.retain(|_, v| !is_zero(v));
    }
    Ok(Value::Object(out))
}

fn decode_entry(b: &[u8], name: &str, depth: usize) -> Result<Option<(String, Value)>, String> {
    let Value::Object(mut m) = decode_message(b, name, depth)? else {
        return Ok(None);
    };
    let key = match m.remove("key") {
        Some(Value::String(s)) => s,
        Some(v) => v.to_string(),
        None => String::new(),
    };
    let value = m.remove("value").unwrap_or(Value::String(String::new()));
    Ok(Some((key, value)))
}

fn special_or_message(b: &[u8], name: &str, depth: usize) -> Result<Value, String> {
    let v = decode_message(b, name, depth)?;
    let Value::Object(m) = &v else { return Ok(v) };
    Ok(match name {
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time"
        | "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => timestamp(m),
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => {
            if m.get("type").and_then(Value::as_i64) == Some(1) {
                m.get("strVal").cloned().unwrap_or(json!(""))
            } else {
                m.get("intVal").cloned().unwrap_or(json!(0))
            }
        }
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => {
            m.get("string").cloned().unwrap_or(json!("0"))
        }
        "k8s.io.apimachinery.pkg.runtime.RawExtension"
        | "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            let raw = m
                .get("raw")
                .or_else(|| m.get("Raw"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            base64::engine::general_purpose::STANDARD
                .decode(raw)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null)
        }
        "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => {
            let ns = m.get("duration").and_then(Value::as_i64).unwrap_or(0);
            json!(format!("{}s", ns / 1_000_000_000))
        }
        _ => v,
    })
}

/// The protobuf package of an API group version.
fn package(api_version: &str) -> Option<String> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let short = match group {
        "" => "core",
        g => g.split('.').next().unwrap_or(g),
    };
    if !matches!(
        short,
        "core"
            | "apps"
            | "batch"
            | "networking"
            | "autoscaling"
            | "coordination"
            | "discovery"
            | "admissionregistration"
            | "authentication"
            | "authorization"
            | "certificates"
            | "events"
            | "flowcontrol"
            | "node"
            | "policy"
            | "rbac"
            | "scheduling"
            | "storage"
    ) {
        return None;
    }
    Some(format!("k8s.io.api.{short}.{version}"))
}

/// Decodes a `k8s\0`-prefixed `runtime.Unknown` envelope into a JSON object.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(b"k8s\x00")
        .ok_or("protobuf body lacks the k8s envelope prefix")?;
    let env = decode_message(rest, "k8s.io.apimachinery.pkg.runtime.Unknown", 0)?;
    let api_version = env
        .pointer("/typeMeta/apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = env
        .pointer("/typeMeta/kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let raw = env.get("raw").and_then(Value::as_str).unwrap_or_default();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|e| e.to_string())?;
    // Request options (Helm's Secret storage sends DeleteOptions as
    // protobuf) are meta/v1 types under whatever group version they name.
    let pkg = if kind.ends_with("Options") {
        "k8s.io.apimachinery.pkg.apis.meta.v1".to_string()
    } else {
        package(&api_version).ok_or_else(|| format!("no protobuf schema for {api_version}"))?
    };
    let mut obj = decode_message(&raw, &format!("{pkg}.{kind}"), 0)?;
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut x: u64, out: &mut Vec<u8>) {
        while x >= 0x80 {
            out.push((x as u8) | 0x80);
            x >>= 7;
        }
        out.push(x as u8);
    }

    fn field(num: u32, bytes: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(num << 3 | 2), out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    #[test]
    fn decodes_a_configmap_envelope() {
        let mut meta = Vec::new();
        field(1, b"cm1", &mut meta);
        field(2, b"", &mut meta); // empty generateName: dropped like omitempty
        let mut entry = Vec::new();
        field(1, b"k", &mut entry);
        field(2, b"", &mut entry); // empty map value: kept
        let mut cm = Vec::new();
        field(1, &meta, &mut cm);
        field(2, &entry, &mut cm);
        let mut tm = Vec::new();
        field(1, b"v1", &mut tm);
        field(2, b"ConfigMap", &mut tm);
        let mut env = b"k8s\x00".to_vec();
        field(1, &tm, &mut env);
        field(2, &cm, &mut env);
        let v = decode(&env).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"}, "data": {"k": ""}})
        );
    }

    #[test]
    fn decodes_delete_options() {
        // Regression: `helm uninstall` deletes its release Secret with a
        // protobuf DeleteOptions body, which was refused as invalid JSON.
        let mut opts = Vec::new();
        field(4, b"Background", &mut opts);
        let mut tm = Vec::new();
        field(1, b"v1", &mut tm);
        field(2, b"DeleteOptions", &mut tm);
        let mut env = b"k8s\x00".to_vec();
        field(1, &tm, &mut env);
        field(2, &opts, &mut env);
        let v = decode(&env).unwrap();
        assert_eq!(v["propagationPolicy"], "Background");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(b"nope").is_err());
        assert!(decode(b"k8s\x00\x0a\xff\xff\xff").is_err());
        for len in 0..64u8 {
            let junk: Vec<u8> = (0..len)
                .map(|i| i.wrapping_mul(37).wrapping_add(len))
                .collect();
            let mut b = b"k8s\x00".to_vec();
            b.extend(junk);
            let _ = decode(&b);
        }
    }
}
