//! `HashiCorp`'s `local`, `time`, `http`, `external` and `archive` providers.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use keel_hcl::{Type, Value};
use sha2::Digest as _;

use super::{
    Attr, DataType, OpCtx, Provider, ResourceType, Schema, fill_unknown, get, get_i64, get_str,
};

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{x:02x}"));
        s
    })
}

fn resolve(ctx: &OpCtx, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        ctx.cwd.join(p)
    }
}

fn hashes(b: &[u8]) -> BTreeMap<&'static str, Value> {
    let b64 = base64::engine::general_purpose::STANDARD;
    BTreeMap::from([
        ("id", Value::string(hex(&sha1::Sha1::digest(b)))),
        ("content_md5", Value::string(hex(&md5::Md5::digest(b)))),
        ("content_sha1", Value::string(hex(&sha1::Sha1::digest(b)))),
        (
            "content_sha256",
            Value::string(hex(&sha2::Sha256::digest(b))),
        ),
        (
            "content_base64sha256",
            Value::string(b64.encode(sha2::Sha256::digest(b))),
        ),
        (
            "content_sha512",
            Value::string(hex(&sha2::Sha512::digest(b))),
        ),
        (
            "content_base64sha512",
            Value::string(b64.encode(sha2::Sha512::digest(b))),
        ),
    ])
}

/// `local_file` / `local_sensitive_file`.
struct LocalFile {
    schema: Schema,
}

fn file_bytes(v: &Value) -> Result<Vec<u8>, String> {
    if let Some(c) = get_str(v, "content").or_else(|| get_str(v, "sensitive_content")) {
        return Ok(c.as_bytes().to_vec());
    }
    if let Some(c) = get_str(v, "content_base64") {
        return base64::engine::general_purpose::STANDARD
            .decode(c)
            .map_err(|e| e.to_string());
    }
    if let Some(src) = get_str(v, "source") {
        return std::fs::read(src).map_err(|e| format!("reading {src}: {e}"));
    }
    Err(
        "one of `content`, `sensitive_content`, `content_base64`, or `source` must be specified"
            .into(),
    )
}

impl ResourceType for LocalFile {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn apply(&self, _prior: Option<&Value>, planned: &Value, ctx: &OpCtx) -> Result<Value, String> {
        let path = get_str(planned, "filename").ok_or("filename is required")?;
        let path = resolve(ctx, path);
        let bytes = file_bytes(planned)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        std::fs::write(&path, &bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
        let perm = get_str(planned, "file_permission").unwrap_or("0777");
        if let Ok(mode) = u32::from_str_radix(perm, 8) {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
        }
        let h = hashes(&bytes);
        Ok(fill_unknown(planned, |k| match k {
            "file_permission" => Some(Value::string("0777")),
            "directory_permission" => Some(Value::string("0777")),
            k => h.get(k).cloned(),
        }))
    }
    fn delete(&self, prior: &Value, ctx: &OpCtx) -> Result<(), String> {
        if let Some(p) = get_str(prior, "filename") {
            match std::fs::remove_file(resolve(ctx, p)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("deleting {p}: {e}")),
            }
        }
        Ok(())
    }
    fn read(&self, prior: &Value, ctx: &OpCtx) -> Result<Option<Value>, String> {
        // A file changed or removed outside terraform is recreated.
        let Some(p) = get_str(prior, "filename") else {
            return Ok(Some(prior.clone()));
        };
        match std::fs::read(resolve(ctx, p)) {
            Ok(b) if get_str(prior, "id") == Some(hex(&sha1::Sha1::digest(&b)).as_str()) => {
                Ok(Some(prior.clone()))
            }
            _ => Ok(None),
        }
    }
}

fn local_file_schema(sensitive: bool) -> Schema {
    let mut s = Schema::default()
        .attr("filename", Attr::required(Type::String).force_new())
        .attr(
            "content_base64",
            Attr::optional(Type::String).force_new().sensitive(),
        )
        .attr("source", Attr::optional(Type::String).force_new())
        .attr(
            "file_permission",
            Attr::opt_computed(Type::String).force_new(),
        )
        .attr(
            "directory_permission",
            Attr::opt_computed(Type::String).force_new(),
        );
    s = if sensitive {
        s.attr(
            "content",
            Attr::optional(Type::String).force_new().sensitive(),
        )
    } else {
        s.attr("content", Attr::optional(Type::String).force_new())
            .attr(
                "sensitive_content",
                Attr::optional(Type::String).force_new().sensitive(),
            )
    };
    for k in [
        "id",
        "content_md5",
        "content_sha1",
        "content_sha256",
        "content_base64sha256",
        "content_sha512",
        "content_base64sha512",
    ] {
        s = s.attr(k, Attr::computed(Type::String));
    }
    s
}

struct LocalFileData {
    schema: Schema,
    sensitive: bool,
}

impl DataType for LocalFileData {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn read(&self, config: &Value, ctx: &OpCtx) -> Result<Value, String> {
        let p = get_str(config, "filename").ok_or("filename is required")?;
        let b = std::fs::read(resolve(ctx, p)).map_err(|e| format!("reading {p}: {e}"))?;
        let mut v = config.clone();
        for (k, x) in hashes(&b) {
            super::set(&mut v, k, x);
        }
        let content = Value::string(String::from_utf8_lossy(&b)).mark(self.sensitive);
        super::set(&mut v, "content", content);
        super::set(
            &mut v,
            "content_base64",
            Value::string(base64::engine::general_purpose::STANDARD.encode(&b))
                .mark(self.sensitive),
        );
        Ok(v)
    }
}

pub(super) fn local() -> Provider {
    let mut r: BTreeMap<&'static str, Arc<dyn ResourceType>> = BTreeMap::new();
    r.insert(
        "local_file",
        Arc::new(LocalFile {
            schema: local_file_schema(false),
        }),
    );
    r.insert(
        "local_sensitive_file",
        Arc::new(LocalFile {
            schema: local_file_schema(true),
        }),
    );
    let mut d: BTreeMap<&'static str, Arc<dyn DataType>> = BTreeMap::new();
    let data_schema = |sensitive: bool| {
        let mut s = Schema::default().attr("filename", Attr::required(Type::String));
        let c = if sensitive {
            Attr::computed(Type::String).sensitive()
        } else {
            Attr::computed(Type::String)
        };
        s = s.attr("content", c.clone()).attr("content_base64", c);
        for k in [
            "id",
            "content_md5",
            "content_sha1",
            "content_sha256",
            "content_base64sha256",
            "content_sha512",
            "content_base64sha512",
        ] {
            s = s.attr(k, Attr::computed(Type::String));
        }
        s
    };
    d.insert(
        "local_file",
        Arc::new(LocalFileData {
            schema: data_schema(false),
            sensitive: false,
        }),
    );
    d.insert(
        "local_sensitive_file",
        Arc::new(LocalFileData {
            schema: data_schema(true),
            sensitive: true,
        }),
    );
    Provider {
        address: "registry.terraform.io/hashicorp/local",
        resources: r,
        data: d,
    }
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// `time_static`: the time at creation (or `rfc3339` given), broken into parts.
struct TimeStatic {
    schema: Schema,
}

fn time_parts(t: chrono::DateTime<chrono::Utc>) -> BTreeMap<&'static str, Value> {
    use chrono::{Datelike, Timelike};
    let s = t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    BTreeMap::from([
        ("id", Value::string(s.clone())),
        ("rfc3339", Value::string(s)),
        ("year", Value::int(i64::from(t.year()))),
        ("month", Value::int(i64::from(t.month()))),
        ("day", Value::int(i64::from(t.day()))),
        ("hour", Value::int(i64::from(t.hour()))),
        ("minute", Value::int(i64::from(t.minute()))),
        ("second", Value::int(i64::from(t.second()))),
        ("unix", Value::int(t.timestamp())),
    ])
}

impl ResourceType for TimeStatic {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn apply(&self, prior: Option<&Value>, planned: &Value, _ctx: &OpCtx) -> Result<Value, String> {
        if let Some(p) = prior {
            return Ok(fill_unknown(planned, |k| get(p, k).cloned()));
        }
        let t = match get_str(planned, "rfc3339") {
            Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|e| format!("rfc3339: {e}"))?
                .with_timezone(&chrono::Utc),
            None => now(),
        };
        let parts = time_parts(t);
        Ok(fill_unknown(planned, |k| parts.get(k).cloned()))
    }
}

/// `time_sleep`: waits `create_duration` on create and `destroy_duration` on destroy.
struct TimeSleep {
    schema: Schema,
}

fn go_duration(s: &str) -> Option<std::time::Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(std::time::Duration::from_secs_f64(secs.max(0.0)))
}

impl ResourceType for TimeSleep {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn apply(&self, prior: Option<&Value>, planned: &Value, _ctx: &OpCtx) -> Result<Value, String> {
        if prior.is_none()
            && let Some(d) = get_str(planned, "create_duration")
        {
            std::thread::sleep(
                go_duration(d).ok_or_else(|| format!("invalid create_duration {d:?}"))?,
            );
        }
        Ok(fill_unknown(planned, |k| {
            (k == "id").then(|| Value::string(now().format("%Y-%m-%dT%H:%M:%SZ").to_string()))
        }))
    }
    fn delete(&self, prior: &Value, _ctx: &OpCtx) -> Result<(), String> {
        if let Some(d) = get_str(prior, "destroy_duration") {
            std::thread::sleep(
                go_duration(d).ok_or_else(|| format!("invalid destroy_duration {d:?}"))?,
            );
        }
        Ok(())
    }
}

pub(super) fn time() -> Provider {
    let mut r: BTreeMap<&'static str, Arc<dyn ResourceType>> = BTreeMap::new();
    let mut ts = Schema::default()
        .attr("rfc3339", Attr::opt_computed(Type::String).force_new())
        .attr(
            "triggers",
            Attr::optional(Type::map(Type::String)).force_new(),
        )
        .attr("id", Attr::computed(Type::String));
    for k in ["year", "month", "day", "hour", "minute", "second", "unix"] {
        ts = ts.attr(k, Attr::computed(Type::Number));
    }
    r.insert("time_static", Arc::new(TimeStatic { schema: ts }));
    r.insert(
        "time_sleep",
        Arc::new(TimeSleep {
            schema: Schema::default()
                .attr("create_duration", Attr::optional(Type::String))
                .attr("destroy_duration", Attr::optional(Type::String))
                .attr(
                    "triggers",
                    Attr::optional(Type::map(Type::String)).force_new(),
                )
                .attr("id", Attr::computed(Type::String)),
        }),
    );
    Provider {
        address: "registry.terraform.io/hashicorp/time",
        resources: r,
        data: BTreeMap::new(),
    }
}

/// `data "http"`: a GET (or `method`) over plain HTTP/1.1.
struct HttpData {
    schema: Schema,
}

fn http_request(
    method: &str,
    url: &str,
    headers: &BTreeMap<String, String>,
    body: Option<&str>,
) -> Result<(u16, BTreeMap<String, String>, Vec<u8>), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("{url}: only http:// URLs are supported by keel's built-in http data source")
    })?;
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nUser-Agent: keel\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    let resp = crate::http::plain_request(
        &addr,
        req.as_bytes(),
        std::time::Duration::from_secs(30),
        method.eq_ignore_ascii_case("HEAD"),
    )
    .map_err(|e| format!("Error making request: {e}"))?;
    let hdrs = resp.headers.into_iter().collect();
    Ok((resp.status, hdrs, resp.body))
}

impl DataType for HttpData {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn read(&self, config: &Value, _ctx: &OpCtx) -> Result<Value, String> {
        let url = get_str(config, "url").ok_or("url is required")?;
        let method = get_str(config, "method").unwrap_or("GET");
        let headers: BTreeMap<String, String> = get(config, "request_headers")
            .and_then(Value::as_map)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let (status, hdrs, body) =
            http_request(method, url, &headers, get_str(config, "request_body"))?;
        let text = String::from_utf8_lossy(&body).into_owned();
        let mut v = config.clone();
        super::set(&mut v, "id", Value::string(url));
        super::set(&mut v, "status_code", Value::int(i64::from(status)));
        super::set(&mut v, "response_body", Value::string(text.clone()));
        super::set(&mut v, "body", Value::string(text));
        super::set(
            &mut v,
            "response_body_base64",
            Value::string(base64::engine::general_purpose::STANDARD.encode(&body)),
        );
        super::set(
            &mut v,
            "response_headers",
            Value::map(
                Type::String,
                hdrs.into_iter()
                    .map(|(k, x)| (k, Value::string(x)))
                    .collect(),
            ),
        );
        Ok(v)
    }
}

pub(super) fn http() -> Provider {
    let mut d: BTreeMap<&'static str, Arc<dyn DataType>> = BTreeMap::new();
    d.insert(
        "http",
        Arc::new(HttpData {
            schema: Schema::default()
                .attr("url", Attr::required(Type::String))
                .attr("method", Attr::optional(Type::String))
                .attr("request_headers", Attr::optional(Type::map(Type::String)))
                .attr("request_body", Attr::optional(Type::String))
                .attr("request_timeout_ms", Attr::optional(Type::Number))
                .attr("insecure", Attr::optional(Type::Bool))
                .attr("id", Attr::computed(Type::String))
                .attr("status_code", Attr::computed(Type::Number))
                .attr("response_body", Attr::computed(Type::String))
                .attr("body", Attr::computed(Type::String))
                .attr("response_body_base64", Attr::computed(Type::String))
                .attr("response_headers", Attr::computed(Type::map(Type::String))),
        }),
    );
    Provider {
        address: "registry.terraform.io/hashicorp/http",
        resources: BTreeMap::new(),
        data: d,
    }
}

/// `data "external"`: runs `program` with `query` as JSON on stdin, reads a JSON object of strings.
struct External {
    schema: Schema,
}

impl DataType for External {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn read(&self, config: &Value, ctx: &OpCtx) -> Result<Value, String> {
        let prog: Vec<String> = get(config, "program")
            .and_then(Value::as_seq)
            .map(|s| {
                s.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let Some((cmd, args)) = prog.split_first() else {
            return Err("program must not be empty".into());
        };
        let query =
            get(config, "query").map_or_else(|| "{}".to_string(), keel_hcl::render::to_json_string);
        let dir =
            get_str(config, "working_dir").map_or_else(|| ctx.cwd.clone(), |d| resolve(ctx, d));
        let mut child = std::process::Command::new(cmd)
            .args(args)
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("failed to execute {cmd:?}: {e}"))?;
        child
            .stdin
            .take()
            .ok_or("stdin")?
            .write_all(query.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "External Program Execution Failed: The data source received an unexpected error while attempting to execute the program.\n\nProgram: {cmd}\nError Message: {}\nState: {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ));
        }
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("Unexpected External Program Results: The data source received unexpected results after executing the program. Program output must be a JSON encoded map of string keys and string values. ({e})"))?;
        let obj = j
            .as_object()
            .ok_or("program output must be a JSON object")?;
        let mut m = BTreeMap::new();
        for (k, x) in obj {
            let s = x.as_str().ok_or_else(|| {
                format!("Unexpected External Program Results: the value of {k:?} is not a string")
            })?;
            m.insert(k.clone(), Value::string(s));
        }
        let mut v = config.clone();
        super::set(&mut v, "id", Value::string("-"));
        super::set(&mut v, "result", Value::map(Type::String, m));
        Ok(v)
    }
}

pub(super) fn external() -> Provider {
    let mut d: BTreeMap<&'static str, Arc<dyn DataType>> = BTreeMap::new();
    d.insert(
        "external",
        Arc::new(External {
            schema: Schema::default()
                .attr("program", Attr::required(Type::list(Type::String)))
                .attr("query", Attr::optional(Type::map(Type::String)))
                .attr("working_dir", Attr::optional(Type::String))
                .attr("id", Attr::computed(Type::String))
                .attr("result", Attr::computed(Type::map(Type::String))),
        }),
    );
    Provider {
        address: "registry.terraform.io/hashicorp/external",
        resources: BTreeMap::new(),
        data: d,
    }
}

/// `data "archive_file"`: a zip of `source_file`, `source_dir` or `source_content`.
struct Archive {
    schema: Schema,
}

impl DataType for Archive {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn read(&self, config: &Value, ctx: &OpCtx) -> Result<Value, String> {
        if get_str(config, "type") != Some("zip") {
            return Err("archive type not supported: keel's archive_file writes zip".into());
        }
        let out = resolve(
            ctx,
            get_str(config, "output_path").ok_or("output_path is required")?,
        );
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(c) = get_str(config, "source_content") {
            files.push((
                get_str(config, "source_content_filename")
                    .ok_or("source_content_filename is required")?
                    .to_string(),
                c.as_bytes().to_vec(),
            ));
        }
        if let Some(f) = get_str(config, "source_file") {
            let p = resolve(ctx, f);
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((
                name,
                std::fs::read(&p).map_err(|e| format!("reading {f}: {e}"))?,
            ));
        }
        if let Some(d) = get_str(config, "source_dir") {
            let root = resolve(ctx, d);
            let mut entries: Vec<_> = walkdir::WalkDir::new(&root)
                .into_iter()
                .flatten()
                .filter(|e| e.file_type().is_file())
                .collect();
            entries.sort_by(|a, b| a.path().cmp(b.path()));
            for e in entries {
                let rel = e
                    .path()
                    .strip_prefix(&root)
                    .map_err(|e| e.to_string())?
                    .to_string_lossy()
                    .into_owned();
                files.push((rel, std::fs::read(e.path()).map_err(|x| x.to_string())?));
            }
        }
        let zip = write_zip(&files)?;
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(&out, &zip).map_err(|e| format!("writing {}: {e}", out.display()))?;
        let h = hashes(&zip);
        let mut v = config.clone();
        super::set(&mut v, "id", h["id"].clone());
        super::set(&mut v, "output_size", Value::int(zip.len() as i64));
        super::set(&mut v, "output_md5", h["content_md5"].clone());
        super::set(&mut v, "output_sha", h["content_sha1"].clone());
        super::set(&mut v, "output_sha256", h["content_sha256"].clone());
        super::set(
            &mut v,
            "output_base64sha256",
            h["content_base64sha256"].clone(),
        );
        super::set(&mut v, "output_sha512", h["content_sha512"].clone());
        super::set(
            &mut v,
            "output_base64sha512",
            h["content_base64sha512"].clone(),
        );
        Ok(v)
    }
}

/// A zip of deflated entries with fixed timestamps (reproducible, as `archive_file`'s).
fn write_zip(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in files {
        let mut enc =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).map_err(|e| e.to_string())?;
        let comp = enc.finish().map_err(|e| e.to_string())?;
        let crc = crc32fast::hash(data);
        let off = out.len() as u32;
        let (time, date) = (0u16, (1 << 5) | 1);
        let hdr = |sig: u32, central: bool| {
            let mut h = Vec::new();
            h.extend_from_slice(&sig.to_le_bytes());
            if central {
                h.extend_from_slice(&20u16.to_le_bytes());
            }
            h.extend_from_slice(&20u16.to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes());
            h.extend_from_slice(&8u16.to_le_bytes());
            h.extend_from_slice(&time.to_le_bytes());
            h.extend_from_slice(&(date as u16).to_le_bytes());
            h.extend_from_slice(&crc.to_le_bytes());
            h.extend_from_slice(&(comp.len() as u32).to_le_bytes());
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes());
            if central {
                h.extend_from_slice(&[0u8; 8]);
                h.extend_from_slice(&(0o100_644u32 << 16).to_le_bytes());
                h.extend_from_slice(&off.to_le_bytes());
            }
            h.extend_from_slice(name.as_bytes());
            h
        };
        out.extend(hdr(0x0403_4b50, false));
        out.extend_from_slice(&comp);
        central.extend(hdr(0x0201_4b50, true));
    }
    let cd_off = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_off.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

pub(super) fn archive() -> Provider {
    let mut d: BTreeMap<&'static str, Arc<dyn DataType>> = BTreeMap::new();
    let mut s = Schema::default()
        .attr("type", Attr::required(Type::String))
        .attr("output_path", Attr::required(Type::String))
        .attr("source_file", Attr::optional(Type::String))
        .attr("source_dir", Attr::optional(Type::String))
        .attr("source_content", Attr::optional(Type::String))
        .attr("source_content_filename", Attr::optional(Type::String))
        .attr("excludes", Attr::optional(Type::set(Type::String)))
        .attr("output_file_mode", Attr::optional(Type::String))
        .attr("output_size", Attr::computed(Type::Number));
    for k in [
        "id",
        "output_md5",
        "output_sha",
        "output_sha256",
        "output_base64sha256",
        "output_sha512",
        "output_base64sha512",
    ] {
        s = s.attr(k, Attr::computed(Type::String));
    }
    d.insert("archive_file", Arc::new(Archive { schema: s }));
    let _ = get_i64;
    Provider {
        address: "registry.terraform.io/hashicorp/archive",
        resources: BTreeMap::new(),
        data: d,
    }
}
