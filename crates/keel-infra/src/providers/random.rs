//! `HashiCorp`'s `random` provider: every argument forces a new value, results
//! are computed once at create and kept in state.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use keel_hcl::{Number, Type, Value};
use rand::RngExt as _;

use super::{
    Attr, OpCtx, Provider, ResourceType, Schema, fill_unknown, get, get_bool, get_i64, get_str,
};

type ApplyFn = fn(&Value) -> Result<BTreeMap<&'static str, Value>, String>;

struct Random {
    schema: Schema,
    make: ApplyFn,
}

impl ResourceType for Random {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn apply(&self, prior: Option<&Value>, planned: &Value, _ctx: &OpCtx) -> Result<Value, String> {
        if let Some(p) = prior {
            // Only `keepers`-free updates reach here (everything forces replacement).
            return Ok(fill_unknown(planned, |k| get(p, k).cloned()));
        }
        let out = (self.make)(planned)?;
        Ok(fill_unknown(planned, |k| out.get(k).cloned()))
    }
}

fn keepers() -> Attr {
    Attr::optional(Type::map(Type::String)).force_new()
}

fn string_schema(sensitive: bool) -> Schema {
    let mut s = Schema::default()
        .attr("id", Attr::computed(Type::String))
        .attr("keepers", keepers())
        .attr("length", Attr::required(Type::Number).force_new())
        .attr(
            "result",
            if sensitive {
                Attr::computed(Type::String).sensitive()
            } else {
                Attr::computed(Type::String)
            },
        );
    for b in ["special", "upper", "lower", "numeric", "number"] {
        s = s.attr(b, Attr::opt_computed(Type::Bool).force_new());
    }
    for n in ["min_numeric", "min_upper", "min_lower", "min_special"] {
        s = s.attr(n, Attr::opt_computed(Type::Number).force_new());
    }
    s = s.attr("override_special", Attr::optional(Type::String).force_new());
    if sensitive {
        s = s.attr("bcrypt_hash", Attr::computed(Type::String).sensitive());
    }
    s
}

fn gen_string(cfg: &Value) -> Result<String, String> {
    let len = get_i64(cfg, "length").unwrap_or(0);
    if len < 1 {
        return Err("length must be at least 1".into());
    }
    let flag = |k: &str| get_bool(cfg, k).unwrap_or(true);
    let special = get_str(cfg, "override_special")
        .unwrap_or("!@#$%&*()-_=+[]{}<>:?")
        .to_string();
    let sets: Vec<(bool, String, i64)> = vec![
        (
            flag("upper"),
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ".into(),
            get_i64(cfg, "min_upper").unwrap_or(0),
        ),
        (
            flag("lower"),
            "abcdefghijklmnopqrstuvwxyz".into(),
            get_i64(cfg, "min_lower").unwrap_or(0),
        ),
        (
            flag("numeric") && flag("number"),
            "0123456789".into(),
            get_i64(cfg, "min_numeric").unwrap_or(0),
        ),
        (
            flag("special"),
            special,
            get_i64(cfg, "min_special").unwrap_or(0),
        ),
    ];
    let mut rng = rand::rng();
    let mut out: Vec<char> = Vec::new();
    let mut all = String::new();
    for (on, chars, min) in &sets {
        if *on {
            all.push_str(chars);
            let cs: Vec<char> = chars.chars().collect();
            for _ in 0..*min {
                out.push(cs[rng.random_range(0..cs.len())]);
            }
        }
    }
    let cs: Vec<char> = all.chars().collect();
    if cs.is_empty() {
        return Err("at least one character set must be enabled".into());
    }
    while (out.len() as i64) < len {
        out.push(cs[rng.random_range(0..cs.len())]);
    }
    // Shuffle so the minimums are not all at the front.
    for i in (1..out.len()).rev() {
        let j = rng.random_range(0..=i);
        out.swap(i, j);
    }
    Ok(out.into_iter().collect())
}

const PETS: &[&str] = &[
    "dog", "cat", "owl", "fox", "elk", "yak", "emu", "bat", "cod", "eel", "gnu", "hen", "ram",
    "ant", "bee", "koi", "seal", "mole", "lynx", "puma",
];
const ADJS: &[&str] = &[
    "brave", "calm", "eager", "fair", "gentle", "happy", "jolly", "kind", "lively", "proud",
    "quick", "sharp", "smart", "tidy", "witty", "noble", "vital", "super", "fond", "able",
];

pub(super) fn random() -> Provider {
    let mut r: BTreeMap<&'static str, Arc<dyn ResourceType>> = BTreeMap::new();
    r.insert(
        "random_id",
        Arc::new(Random {
            schema: Schema::default()
                .attr("id", Attr::computed(Type::String))
                .attr("keepers", keepers())
                .attr("byte_length", Attr::required(Type::Number).force_new())
                .attr("prefix", Attr::optional(Type::String).force_new())
                .attr("b64_url", Attr::computed(Type::String))
                .attr("b64_std", Attr::computed(Type::String))
                .attr("hex", Attr::computed(Type::String))
                .attr("dec", Attr::computed(Type::String)),
            make: |cfg| {
                let n = get_i64(cfg, "byte_length").unwrap_or(0).max(0) as usize;
                let mut b = vec![0u8; n];
                rand::rng().fill(&mut b[..]);
                let prefix = get_str(cfg, "prefix").unwrap_or("");
                let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&b);
                let hex: String = b.iter().fold(String::new(), |mut s, x| {
                    let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{x:02x}"));
                    s
                });
                let dec = num_bigint::BigUint::from_bytes_be(&b).to_string();
                Ok(BTreeMap::from([
                    ("id", Value::string(url.clone())),
                    ("b64_url", Value::string(format!("{prefix}{url}"))),
                    (
                        "b64_std",
                        Value::string(format!(
                            "{prefix}{}",
                            base64::engine::general_purpose::STANDARD.encode(&b)
                        )),
                    ),
                    ("hex", Value::string(format!("{prefix}{hex}"))),
                    ("dec", Value::string(format!("{prefix}{dec}"))),
                ]))
            },
        }),
    );
    r.insert(
        "random_string",
        Arc::new(Random {
            schema: string_schema(false),
            make: |cfg| {
                let s = gen_string(cfg)?;
                Ok(BTreeMap::from([
                    ("id", Value::string(s.clone())),
                    ("result", Value::string(s)),
                ]))
            },
        }),
    );
    r.insert(
        "random_password",
        Arc::new(Random {
            schema: string_schema(true),
            make: |cfg| {
                let s = gen_string(cfg)?;
                let hash = bcrypt::hash(&s, 10)
                    .map_err(|e| e.to_string())?
                    .replacen("$2b$", "$2a$", 1);
                Ok(BTreeMap::from([
                    ("id", Value::string("none")),
                    ("result", Value::string(s).with_sensitive()),
                    ("bcrypt_hash", Value::string(hash).with_sensitive()),
                ]))
            },
        }),
    );
    r.insert(
        "random_integer",
        Arc::new(Random {
            schema: Schema::default()
                .attr("id", Attr::computed(Type::String))
                .attr("keepers", keepers())
                .attr("min", Attr::required(Type::Number).force_new())
                .attr("max", Attr::required(Type::Number).force_new())
                .attr("seed", Attr::optional(Type::String).force_new())
                .attr("result", Attr::computed(Type::Number)),
            make: |cfg| {
                let (lo, hi) = (
                    get_i64(cfg, "min").unwrap_or(0),
                    get_i64(cfg, "max").unwrap_or(0),
                );
                if hi < lo {
                    return Err(
                        "minimum value needs to be smaller than or equal to maximum value".into(),
                    );
                }
                let n = rand::rng().random_range(lo..=hi);
                Ok(BTreeMap::from([
                    ("id", Value::string(n.to_string())),
                    ("result", Value::number(Number::from_i64(n))),
                ]))
            },
        }),
    );
    r.insert(
        "random_pet",
        Arc::new(Random {
            schema: Schema::default()
                .attr("id", Attr::computed(Type::String))
                .attr("keepers", keepers())
                .attr("length", Attr::opt_computed(Type::Number).force_new())
                .attr("prefix", Attr::optional(Type::String).force_new())
                .attr("separator", Attr::opt_computed(Type::String).force_new()),
            make: |cfg| {
                let n = get_i64(cfg, "length").unwrap_or(2).max(1) as usize;
                let sep = get_str(cfg, "separator").unwrap_or("-").to_string();
                let mut rng = rand::rng();
                let mut words: Vec<&str> = (1..n)
                    .map(|_| ADJS[rng.random_range(0..ADJS.len())])
                    .collect();
                words.push(PETS[rng.random_range(0..PETS.len())]);
                let mut id = words.join(&sep);
                if let Some(p) = get_str(cfg, "prefix") {
                    id = format!("{p}{sep}{id}");
                }
                Ok(BTreeMap::from([
                    ("id", Value::string(id)),
                    ("length", Value::int(n as i64)),
                    ("separator", Value::string(sep)),
                ]))
            },
        }),
    );
    r.insert(
        "random_uuid",
        Arc::new(Random {
            schema: Schema::default()
                .attr("id", Attr::computed(Type::String))
                .attr("keepers", keepers())
                .attr("result", Attr::computed(Type::String)),
            make: |_| {
                let u = super::random_uuid();
                Ok(BTreeMap::from([
                    ("id", Value::string(u.clone())),
                    ("result", Value::string(u)),
                ]))
            },
        }),
    );
    r.insert(
        "random_shuffle",
        Arc::new(Random {
            schema: Schema::default()
                .attr("id", Attr::computed(Type::String))
                .attr("keepers", keepers())
                .attr(
                    "input",
                    Attr::required(Type::list(Type::String)).force_new(),
                )
                .attr("result_count", Attr::optional(Type::Number).force_new())
                .attr("seed", Attr::optional(Type::String).force_new())
                .attr("result", Attr::computed(Type::list(Type::String))),
            make: |cfg| {
                let mut items: Vec<Value> = get(cfg, "input")
                    .and_then(Value::as_seq)
                    .map(<[Value]>::to_vec)
                    .unwrap_or_default();
                let mut rng = rand::rng();
                for i in (1..items.len()).rev() {
                    let j = rng.random_range(0..=i);
                    items.swap(i, j);
                }
                if let Some(n) = get_i64(cfg, "result_count") {
                    items.truncate(n.max(0) as usize);
                }
                Ok(BTreeMap::from([
                    ("id", Value::string("-")),
                    ("result", Value::list(Type::String, items)),
                ]))
            },
        }),
    );
    Provider {
        address: "registry.terraform.io/hashicorp/random",
        resources: r,
        data: BTreeMap::new(),
    }
}
