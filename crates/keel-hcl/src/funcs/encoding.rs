//! Encoding and hashing functions: base64 (and gzip), JSON, YAML (emitted as
//! cty-yaml emits it: quoted keys and strings, literal blocks for multi-line
//! strings), CSV, URL query escaping, text encodings, hashes, UUIDs, bcrypt.

use std::collections::BTreeMap;
use std::io::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::Digest as _;

use super::{FnError, Functions, def, p, p_any, s, str_fn};
use crate::num::Number;
use crate::render::{json_quote, to_json_string};
use crate::value::{Kind, Type, Value};

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{x:02x}"));
        s
    })
}

pub(super) fn register(f: &mut Functions) {
    str_fn(f, "base64encode", |a, _| {
        Ok(Value::string(B64.encode(s(&a[0]))))
    });
    str_fn(f, "base64decode", |a, _| {
        let b = B64
            .decode(s(&a[0]))
            .map_err(|_| FnError::Msg(format!("failed to decode base64 data {:?}", s(&a[0]))))?;
        String::from_utf8(b).map(Value::string).map_err(|_| {
            FnError::Msg("the result of decoding the provided string is not valid UTF-8".into())
        })
    });
    str_fn(f, "base64gzip", |a, _| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(s(&a[0]).as_bytes())
            .map_err(|e| FnError::Msg(e.to_string()))?;
        let out = gz.finish().map_err(|e| FnError::Msg(e.to_string()))?;
        Ok(Value::string(B64.encode(out)))
    });
    str_fn(f, "base64sha256", |a, _| {
        Ok(Value::string(
            B64.encode(sha2::Sha256::digest(s(&a[0]).as_bytes())),
        ))
    });
    str_fn(f, "base64sha512", |a, _| {
        Ok(Value::string(
            B64.encode(sha2::Sha512::digest(s(&a[0]).as_bytes())),
        ))
    });
    str_fn(f, "md5", |a, _| {
        Ok(Value::string(hex(&md5::Md5::digest(s(&a[0]).as_bytes()))))
    });
    str_fn(f, "sha1", |a, _| {
        Ok(Value::string(hex(&sha1::Sha1::digest(s(&a[0]).as_bytes()))))
    });
    str_fn(f, "sha256", |a, _| {
        Ok(Value::string(hex(&sha2::Sha256::digest(
            s(&a[0]).as_bytes(),
        ))))
    });
    str_fn(f, "sha512", |a, _| {
        Ok(Value::string(hex(&sha2::Sha512::digest(
            s(&a[0]).as_bytes(),
        ))))
    });
    str_fn(f, "urlencode", |a, _| {
        Ok(Value::string(query_escape(s(&a[0]))))
    });
    def(
        f,
        "jsonencode",
        vec![p_any("val")],
        None,
        Type::String,
        |a, _| {
            if !a[0].is_wholly_known() {
                return Ok(Value::unknown(Type::String));
            }
            Ok(Value::string(to_json_string(&a[0])))
        },
    );
    def(
        f,
        "jsondecode",
        vec![p("str", Type::String)],
        None,
        Type::Dynamic,
        |a, _| {
            let j: serde_json::Value =
                serde_json::from_str(s(&a[0])).map_err(|e| FnError::Msg(e.to_string()))?;
            Ok(crate::json::json_to_value(&j))
        },
    );
    def(
        f,
        "yamlencode",
        vec![p_any("value")],
        None,
        Type::String,
        |a, _| {
            if !a[0].is_wholly_known() {
                return Ok(Value::unknown(Type::String));
            }
            let mut out = String::new();
            yaml(&a[0], 0, &mut out, false);
            if !out.ends_with('\n') {
                out.push('\n');
            }
            Ok(Value::string(out))
        },
    );
    def(
        f,
        "yamldecode",
        vec![p("src", Type::String)],
        None,
        Type::Dynamic,
        |a, _| {
            let y: serde_yaml_ng::Value = serde_yaml_ng::from_str(s(&a[0]))
                .map_err(|e| FnError::Msg(format!("on line {e}")))?;
            Ok(from_yaml(&y))
        },
    );
    def(
        f,
        "csvdecode",
        vec![p("str", Type::String)],
        None,
        Type::Dynamic,
        |a, _| {
            let rows = parse_csv(s(&a[0])).map_err(FnError::Msg)?;
            let mut it = rows.into_iter();
            let Some(header) = it.next() else {
                return Err(FnError::Msg("missing header line".into()));
            };
            let ot = Type::Object(header.iter().map(|h| (h.clone(), Type::String)).collect());
            let mut out = Vec::new();
            for (i, r) in it.enumerate() {
                if r.len() != header.len() {
                    return Err(FnError::Msg(format!(
                        "record on line {}: wrong number of fields",
                        i + 2
                    )));
                }
                out.push(Value::object(
                    header
                        .iter()
                        .cloned()
                        .zip(r.into_iter().map(Value::string))
                        .collect(),
                ));
            }
            Ok(Value::list(ot, out))
        },
    );
    def(
        f,
        "textencodebase64",
        vec![p("string", Type::String), p("encoding", Type::String)],
        None,
        Type::String,
        |a, _| {
            let enc = s(&a[1]).to_ascii_uppercase().replace('_', "-");
            let st = s(&a[0]);
            let bytes: Vec<u8> = match enc.as_str() {
            "UTF-8" | "UTF8" => st.as_bytes().to_vec(),
            "UTF-16LE" => st.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            "UTF-16BE" => st.encode_utf16().flat_map(u16::to_be_bytes).collect(),
            "ISO-8859-1" | "LATIN1" => st
                .chars()
                .map(|c| u8::try_from(c as u32).map_err(|_| FnError::Arg(0, format!("the given string contains characters that cannot be represented in {}", s(&a[1])))))
                .collect::<Result<_, _>>()?,
            _ => return Err(FnError::Arg(1, format!("{:?} is not a supported IANA encoding name or alias in this Terraform version", s(&a[1])))),
        };
            Ok(Value::string(B64.encode(bytes)))
        },
    );
    def(
        f,
        "textdecodebase64",
        vec![p("source", Type::String), p("encoding", Type::String)],
        None,
        Type::String,
        |a, _| {
            let enc = s(&a[1]).to_ascii_uppercase().replace('_', "-");
            let b = B64.decode(s(&a[0])).map_err(|_| {
                FnError::Arg(0, "the given value is has an invalid base64 symbol".into())
            })?;
            let out = match enc.as_str() {
                "UTF-8" | "UTF8" => String::from_utf8_lossy(&b).into_owned(),
                "UTF-16LE" | "UTF-16BE" => {
                    let units: Vec<u16> = b
                        .chunks(2)
                        .map(|c| {
                            let pair = [c[0], *c.get(1).unwrap_or(&0)];
                            if enc == "UTF-16LE" {
                                u16::from_le_bytes(pair)
                            } else {
                                u16::from_be_bytes(pair)
                            }
                        })
                        .collect();
                    String::from_utf16_lossy(&units)
                }
                "ISO-8859-1" | "LATIN1" => b.iter().map(|&x| char::from(x)).collect(),
                _ => {
                    return Err(FnError::Arg(
                        1,
                        format!(
                            "{:?} is not a supported IANA encoding name or alias in this Terraform version",
                            s(&a[1])
                        ),
                    ));
                }
            };
            Ok(Value::string(out))
        },
    );
    def(f, "uuid", vec![], None, Type::String, |_, _| {
        Ok(Value::string(uuid::Uuid::new_v4().to_string()))
    });
    def(
        f,
        "uuidv5",
        vec![p("namespace", Type::String), p("name", Type::String)],
        None,
        Type::String,
        |a, _| {
            let ns = match s(&a[0]) {
                "dns" => uuid::Uuid::NAMESPACE_DNS,
                "url" => uuid::Uuid::NAMESPACE_URL,
                "oid" => uuid::Uuid::NAMESPACE_OID,
                "x500" => uuid::Uuid::NAMESPACE_X500,
                other => uuid::Uuid::parse_str(other).map_err(|_| {
                    FnError::Arg(0, format!("uuidv5() doesn't support namespace {other}"))
                })?,
            };
            Ok(Value::string(
                uuid::Uuid::new_v5(&ns, s(&a[1]).as_bytes()).to_string(),
            ))
        },
    );
    def(
        f,
        "bcrypt",
        vec![p("str", Type::String)],
        Some(p("cost", Type::Number)),
        Type::String,
        |a, _| {
            if a.len() > 2 {
                return Err(FnError::Msg(
                    "bcrypt() takes no more than two arguments".into(),
                ));
            }
            let cost = match a.get(1) {
                Some(c) => super::int_arg(c, 1)? as u32,
                None => 10,
            };
            let h = bcrypt::hash(s(&a[0]), cost)
                .map_err(|e| FnError::Msg(format!("error occured generating password {e}")))?;
            // Go's bcrypt writes the $2a$ prefix.
            Ok(Value::string(h.replacen("$2b$", "$2a$", 1)))
        },
    );
    def(
        f,
        "rsadecrypt",
        vec![p("ciphertext", Type::String), p("privatekey", Type::String)],
        None,
        Type::String,
        |a, _| {
            let ct = B64.decode(s(&a[0])).map_err(|_| {
                FnError::Arg(
                    0,
                    format!(
                        "failed to decode input {:?}: cipher text must be base64-encoded",
                        s(&a[0])
                    ),
                )
            })?;
            let key = rsa_private_key(s(&a[1])).map_err(|e| FnError::Arg(1, e))?;
            let mut out = vec![0u8; key.min_output_size()];
            // Go's crypto/rsa says only this, whatever went wrong.
            let plain = key.decrypt(&ct, &mut out).map_err(|_| {
                FnError::Msg("failed to decrypt: crypto/rsa: decryption error".into())
            })?;
            let plain = String::from_utf8_lossy(plain).into_owned();
            Ok(Value::string(plain))
        },
    );
}

/// An RSA private key in PEM, PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8
/// (`PRIVATE KEY`), as terraform's `rsadecrypt` reads them; the error is
/// terraform's wording.
fn rsa_private_key(pem: &str) -> Result<aws_lc_rs::rsa::Pkcs1PrivateDecryptingKey, String> {
    use aws_lc_rs::rsa::{Pkcs1PrivateDecryptingKey, PrivateDecryptingKey};
    let begin = pem
        .find("-----BEGIN ")
        .ok_or("invalid private key: ssh: no key found")?;
    let rest = &pem[begin + 11..];
    let label_end = rest
        .find("-----")
        .ok_or("invalid private key: ssh: no key found")?;
    let label = &rest[..label_end];
    let body_start = label_end + 5;
    let end = rest
        .find(&format!("-----END {label}-----"))
        .ok_or("invalid private key: ssh: no key found")?;
    let b64: String = rest[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = B64
        .decode(b64)
        .map_err(|_| "invalid private key: ssh: no key found")?;
    let pkcs8 = match label {
        "RSA PRIVATE KEY" => pkcs1_to_pkcs8(&der),
        "PRIVATE KEY" => der,
        "OPENSSH PRIVATE KEY" => {
            return Err(
                "invalid private key: keel reads RSA keys in PEM (PKCS#1 or PKCS#8); convert with `ssh-keygen -p -m PEM -f KEY`"
                    .into(),
            );
        }
        other => {
            return Err(format!(
                "invalid private key: ssh: unsupported key type {other:?}"
            ));
        }
    };
    let key = PrivateDecryptingKey::from_pkcs8(&pkcs8)
        .map_err(|e| format!("invalid private key: {e}"))?;
    Pkcs1PrivateDecryptingKey::new(key).map_err(|e| format!("invalid private key: {e}"))
}

/// Wraps a PKCS#1 `RSAPrivateKey` in a PKCS#8 `PrivateKeyInfo` (version 0,
/// rsaEncryption with NULL parameters).
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    fn der_len(n: usize, out: &mut Vec<u8>) {
        if n < 0x80 {
            out.push(u8::try_from(n).unwrap_or(0));
        } else {
            let bytes: Vec<u8> = n
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | u8::try_from(bytes.len()).unwrap_or(0));
            out.extend(bytes);
        }
    }
    const HEAD: [u8; 18] = [
        0x02, 0x01, 0x00, // version 0
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05,
        0x00, // rsaEncryption, NULL
    ];
    let mut octets = vec![0x04];
    der_len(pkcs1.len(), &mut octets);
    octets.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    der_len(HEAD.len() + octets.len(), &mut out);
    out.extend_from_slice(&HEAD);
    out.extend(octets);
    out
}

/// Go's url.QueryEscape.
fn query_escape(st: &str) -> String {
    let mut out = String::new();
    for b in st.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn yaml_scalar(v: &Value) -> Option<String> {
    Some(match &v.kind {
        Kind::Null(_) => "null".into(),
        Kind::Bool(b) => b.to_string(),
        Kind::Number(n) => n.to_string(),
        Kind::String(x) if !x.contains('\n') => json_quote(x)
            .replace("\\u003c", "<")
            .replace("\\u003e", ">")
            .replace("\\u0026", "&"),
        Kind::Map(_, m) | Kind::Object(m) if m.is_empty() => "{}".into(),
        Kind::List(_, e) | Kind::Set(_, e) | Kind::Tuple(e) if e.is_empty() => "[]".into(),
        _ => return None,
    })
}

/// Emits `v` at indentation `ind`; `inline` means the caller already wrote a
/// "- " or "key: " prefix on the current line.
fn yaml(v: &Value, ind: usize, out: &mut String, inline: bool) {
    let pad = " ".repeat(ind);
    if let Some(sc) = yaml_scalar(v) {
        out.push_str(&sc);
        out.push('\n');
        return;
    }
    match &v.kind {
        Kind::String(x) => {
            // Block content sits at the value's own indentation (at least 2).
            let pad = " ".repeat(ind.max(2));
            let chomp = if x.ends_with('\n') { "" } else { "-" };
            out.push_str(&format!("|{chomp}\n"));
            for l in x.trim_end_matches('\n').split('\n') {
                if l.is_empty() {
                    out.push('\n');
                } else {
                    out.push_str(&format!("{pad}{l}\n"));
                }
            }
        }
        Kind::Map(_, m) | Kind::Object(m) => {
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 || !inline {
                    out.push_str(&pad);
                }
                out.push_str(&json_quote(k));
                out.push(':');
                if yaml_scalar(x).is_some() || matches!(x.kind, Kind::String(_)) {
                    out.push(' ');
                    yaml(x, ind + 2, out, true);
                } else {
                    out.push('\n');
                    let child =
                        if matches!(x.kind, Kind::List(..) | Kind::Set(..) | Kind::Tuple(..)) {
                            ind
                        } else {
                            ind + 2
                        };
                    yaml(x, child, out, false);
                }
            }
        }
        Kind::List(_, e) | Kind::Set(_, e) | Kind::Tuple(e) => {
            for (i, x) in e.iter().enumerate() {
                if i > 0 || !inline {
                    out.push_str(&pad);
                }
                out.push_str("- ");
                yaml(x, ind + 2, out, true);
            }
        }
        _ => out.push('\n'),
    }
}

fn from_yaml(y: &serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match y {
        Y::Null => Value::dyn_null(),
        Y::Bool(b) => Value::bool(*b),
        Y::Number(n) => Value::number(
            Number::parse(&n.to_string())
                .unwrap_or_else(|_| Number::from_f64(n.as_f64().unwrap_or(0.0))),
        ),
        Y::String(st) => Value::string(st.clone()),
        Y::Sequence(sq) => Value::tuple(sq.iter().map(from_yaml).collect()),
        Y::Mapping(m) => {
            let mut out = BTreeMap::new();
            for (k, x) in m {
                let key = match k {
                    Y::String(st) => st.clone(),
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    _ => continue,
                };
                out.insert(key, from_yaml(x));
            }
            Value::object(out)
        }
        Y::Tagged(t) => from_yaml(&t.value),
    }
}

/// RFC 4180 CSV as Go's encoding/csv reads it.
fn parse_csv(src: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = src.chars().peekable();
    let mut quoted = false;
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                any = false;
            }
            c => field.push(c),
        }
    }
    if quoted {
        return Err("extraneous or missing \" in quoted-field".into());
    }
    if any {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}
