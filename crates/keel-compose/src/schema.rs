//! The compose-spec JSON schema's rules, as Rust tables: property names per
//! object (unknown ones refused unless `x-` prefixed), value types, enums and
//! required properties. Values are checked after interpolation, so numbers and
//! booleans given as strings are accepted where compose casts them.

use crate::yaml::{Kind, Node, Scalar};

/// A value type of the schema.
#[derive(Debug)]
pub enum T {
    Any,
    Str,
    Int,
    Num,
    Bool,
    StrOrNum,
    /// A Go duration string (`1m30s`) or a number of seconds.
    Duration,
    Enum(&'static [&'static str]),
    List(&'static T),
    /// Mapping with arbitrary keys.
    Map(&'static T),
    /// Mapping with known keys; the second slice lists required ones.
    Obj(&'static [(&'static str, T)], &'static [&'static str]),
    /// The first alternative whose shape (scalar, list, mapping) fits is checked.
    OneOf(&'static [T]),
    NullOr(&'static T),
    /// `["K=V", ...]` or `{K: scalar-or-null}`.
    ListOrDict,
    /// A string or a list of strings.
    StrOrList,
    /// Another table, by reference (lets statics nest).
    Ref(&'static T),
}

use T::{
    Any, Bool, Duration, Enum, Int, List, ListOrDict, Map, NullOr, Num, Obj, OneOf, Str, StrOrList,
    StrOrNum,
};

const STR_LIST: T = List(&Str);

static BUILD: T = Obj(
    &[
        ("context", Str),
        ("dockerfile", Str),
        ("dockerfile_inline", Str),
        ("entitlements", STR_LIST),
        ("args", ListOrDict),
        ("ssh", ListOrDict),
        ("labels", ListOrDict),
        ("cache_from", STR_LIST),
        ("cache_to", STR_LIST),
        ("no_cache", Bool),
        ("additional_contexts", ListOrDict),
        ("network", Str),
        ("provenance", Any),
        ("sbom", Any),
        ("pull", Bool),
        ("target", Str),
        ("shm_size", StrOrNum),
        ("extra_hosts", ListOrDict),
        ("isolation", Str),
        ("privileged", Bool),
        ("secrets", List(&SERVICE_REF)),
        ("tags", STR_LIST),
        ("ulimits", Map(&ULIMIT)),
        ("platforms", STR_LIST),
    ],
    &[],
);

static ULIMIT: T = OneOf(&[Int, Obj(&[("soft", Int), ("hard", Int)], &["soft", "hard"])]);

/// Short (`- name`) or long service references to secrets and configs.
static SERVICE_REF: T = OneOf(&[
    Str,
    Obj(
        &[
            ("source", Str),
            ("target", Str),
            ("uid", Str),
            ("gid", Str),
            ("mode", StrOrNum),
        ],
        &["source"],
    ),
]);

static DEPENDS_ON: T = OneOf(&[
    STR_LIST,
    Map(&Obj(
        &[
            (
                "condition",
                Enum(&[
                    "service_started",
                    "service_healthy",
                    "service_completed_successfully",
                ]),
            ),
            ("restart", Bool),
            ("required", Bool),
        ],
        &["condition"],
    )),
]);

static RESOURCE: T = Obj(
    &[
        ("cpus", StrOrNum),
        ("memory", StrOrNum),
        ("pids", Int),
        ("devices", List(&Any)),
        ("generic_resources", List(&Any)),
    ],
    &[],
);

static DEPLOY: T = Obj(
    &[
        ("mode", Str),
        ("endpoint_mode", Str),
        ("replicas", Int),
        ("labels", ListOrDict),
        ("rollback_config", Any),
        ("update_config", Any),
        (
            "resources",
            Obj(
                &[
                    ("limits", T::Ref(&RESOURCE)),
                    ("reservations", T::Ref(&RESOURCE)),
                ],
                &[],
            ),
        ),
        (
            "restart_policy",
            Obj(
                &[
                    ("condition", Enum(&["none", "on-failure", "any"])),
                    ("delay", Duration),
                    ("max_attempts", Int),
                    ("window", Duration),
                ],
                &[],
            ),
        ),
        ("placement", Any),
    ],
    &[],
);

static HEALTHCHECK: T = Obj(
    &[
        ("disable", Bool),
        ("interval", Duration),
        ("retries", Num),
        ("test", StrOrList),
        ("timeout", Duration),
        ("start_period", Duration),
        ("start_interval", Duration),
    ],
    &[],
);

static PORT: T = OneOf(&[
    StrOrNum,
    Obj(
        &[
            ("name", Str),
            ("mode", Str),
            ("host_ip", Str),
            ("target", StrOrNum),
            ("published", StrOrNum),
            ("protocol", Str),
            ("app_protocol", Str),
        ],
        &["target"],
    ),
]);

static VOLUME_MOUNT: T = OneOf(&[
    Str,
    Obj(
        &[
            (
                "type",
                Enum(&["bind", "volume", "tmpfs", "cluster", "npipe", "image"]),
            ),
            ("source", Str),
            ("target", Str),
            ("read_only", Bool),
            ("consistency", Str),
            (
                "bind",
                Obj(
                    &[
                        ("propagation", Str),
                        ("create_host_path", Bool),
                        (
                            "recursive",
                            Enum(&["enabled", "disabled", "writable", "readonly"]),
                        ),
                        ("selinux", Enum(&["z", "Z"])),
                    ],
                    &[],
                ),
            ),
            (
                "volume",
                Obj(
                    &[("nocopy", Bool), ("subpath", Str), ("labels", ListOrDict)],
                    &[],
                ),
            ),
            ("tmpfs", Obj(&[("size", StrOrNum), ("mode", StrOrNum)], &[])),
            ("image", Obj(&[("subpath", Str)], &[])),
        ],
        &["type"],
    ),
]);

static NET_ATTACH: T = Obj(
    &[
        ("aliases", STR_LIST),
        ("ipv4_address", Str),
        ("ipv6_address", Str),
        ("link_local_ips", STR_LIST),
        ("mac_address", Str),
        ("driver_opts", Map(&StrOrNum)),
        ("priority", Num),
        ("gw_priority", Num),
    ],
    &[],
);

static ENV_FILE: T = OneOf(&[
    Str,
    List(&OneOf(&[
        Str,
        Obj(
            &[("path", Str), ("required", Bool), ("format", Str)],
            &["path"],
        ),
    ])),
]);

pub static SERVICE: T = Obj(
    &[
        ("annotations", ListOrDict),
        ("attach", Bool),
        ("build", OneOf(&[Str, BUILD_REF])),
        ("blkio_config", Any),
        ("cap_add", STR_LIST),
        ("cap_drop", STR_LIST),
        ("cgroup", Enum(&["host", "private"])),
        ("cgroup_parent", Str),
        ("command", NullOr(&StrOrList)),
        ("configs", List(&SERVICE_REF)),
        ("container_name", Str),
        ("cpu_count", Int),
        ("cpu_percent", Int),
        ("cpu_shares", StrOrNum),
        ("cpu_quota", StrOrNum),
        ("cpu_period", StrOrNum),
        ("cpu_rt_period", StrOrNum),
        ("cpu_rt_runtime", StrOrNum),
        ("cpus", StrOrNum),
        ("cpuset", Str),
        ("credential_spec", Any),
        ("depends_on", DEPENDS_ON_REF),
        ("deploy", NullOr(&DEPLOY)),
        ("develop", Any),
        ("device_cgroup_rules", STR_LIST),
        ("devices", List(&Any)),
        ("dns", StrOrList),
        ("dns_opt", STR_LIST),
        ("dns_search", StrOrList),
        ("domainname", Str),
        ("entrypoint", NullOr(&StrOrList)),
        ("env_file", ENV_FILE_REF),
        ("label_file", StrOrList),
        ("environment", ListOrDict),
        ("expose", List(&StrOrNum)),
        (
            "extends",
            OneOf(&[Str, Obj(&[("service", Str), ("file", Str)], &["service"])]),
        ),
        ("external_links", STR_LIST),
        ("extra_hosts", ListOrDict),
        ("gpus", Any),
        ("group_add", List(&StrOrNum)),
        ("healthcheck", HEALTHCHECK_REF),
        ("hostname", Str),
        ("image", Str),
        ("init", Bool),
        ("ipc", Str),
        ("isolation", Str),
        ("labels", ListOrDict),
        ("links", STR_LIST),
        (
            "logging",
            Obj(&[("driver", Str), ("options", Map(&Any))], &[]),
        ),
        ("mac_address", Str),
        ("mem_limit", StrOrNum),
        ("mem_reservation", StrOrNum),
        ("mem_swappiness", Int),
        ("memswap_limit", StrOrNum),
        ("network_mode", Str),
        ("networks", OneOf(&[STR_LIST, Map(&NullOr(&NET_ATTACH))])),
        ("oom_kill_disable", Bool),
        ("oom_score_adj", Int),
        ("pid", NullOr(&Str)),
        ("pids_limit", StrOrNum),
        ("platform", Str),
        ("ports", List(&PORT)),
        ("post_start", List(&Any)),
        ("pre_stop", List(&Any)),
        ("privileged", Bool),
        ("profiles", STR_LIST),
        ("pull_policy", Str),
        ("read_only", Bool),
        ("restart", Str),
        ("runtime", Str),
        ("scale", Int),
        ("security_opt", STR_LIST),
        ("shm_size", StrOrNum),
        ("secrets", List(&SERVICE_REF)),
        ("sysctls", ListOrDict),
        ("stdin_open", Bool),
        ("stop_grace_period", Duration),
        ("stop_signal", Str),
        ("storage_opt", Any),
        ("tmpfs", StrOrList),
        ("tty", Bool),
        ("ulimits", Map(&ULIMIT)),
        ("use_api_socket", Bool),
        ("user", Str),
        ("uts", Str),
        ("userns_mode", Str),
        ("volumes", List(&VOLUME_MOUNT)),
        ("volumes_from", STR_LIST),
        ("working_dir", Str),
    ],
    &[],
);

// Statics referenced from inside other statics' tables must be addressable
// as values of `T`; these aliases wrap them.
const BUILD_REF: T = T::Ref(&BUILD);
const DEPENDS_ON_REF: T = T::Ref(&DEPENDS_ON);
const HEALTHCHECK_REF: T = T::Ref(&HEALTHCHECK);
const ENV_FILE_REF: T = T::Ref(&ENV_FILE);

static EXTERNAL: T = OneOf(&[Bool, Obj(&[("name", Str)], &[])]);

static NETWORK: T = Obj(
    &[
        ("name", Str),
        ("driver", Str),
        ("driver_opts", Map(&StrOrNum)),
        (
            "ipam",
            Obj(
                &[
                    ("driver", Str),
                    ("config", List(&Any)),
                    ("options", Map(&Str)),
                ],
                &[],
            ),
        ),
        ("external", T::Ref(&EXTERNAL)),
        ("internal", Bool),
        ("enable_ipv4", Bool),
        ("enable_ipv6", Bool),
        ("attachable", Bool),
        ("labels", ListOrDict),
    ],
    &[],
);

static VOLUME: T = Obj(
    &[
        ("name", Str),
        ("driver", Str),
        ("driver_opts", Map(&StrOrNum)),
        ("external", T::Ref(&EXTERNAL)),
        ("labels", ListOrDict),
    ],
    &[],
);

static SECRET: T = Obj(
    &[
        ("name", Str),
        ("environment", Str),
        ("file", Str),
        ("content", Str),
        ("external", T::Ref(&EXTERNAL)),
        ("labels", ListOrDict),
        ("driver", Str),
        ("driver_opts", Map(&StrOrNum)),
        ("template_driver", Str),
    ],
    &[],
);

static INCLUDE: T = OneOf(&[
    Str,
    Obj(
        &[
            ("path", StrOrList),
            ("env_file", StrOrList),
            ("project_directory", Str),
        ],
        &["path"],
    ),
]);

/// The whole compose file.
pub static FILE: T = Obj(
    &[
        ("version", Str),
        ("name", Str),
        ("include", List(&INCLUDE)),
        ("services", Map(&NullOr(&SERVICE))),
        ("networks", Map(&NullOr(&NETWORK))),
        ("volumes", Map(&NullOr(&VOLUME))),
        ("secrets", Map(&SECRET)),
        ("configs", Map(&SECRET)),
        ("models", Any),
    ],
    &[],
);

impl T {
    fn shape_fits(&self, n: &Node) -> bool {
        match self {
            T::Ref(t) => t.shape_fits(n),
            Any => true,
            Str | Int | Num | Bool | StrOrNum | Duration | Enum(_) => {
                matches!(n.kind, Kind::Scalar(_)) && !n.is_null()
            }
            List(_) => matches!(n.kind, Kind::Seq(_)),
            Map(_) | Obj(..) => matches!(n.kind, Kind::Map(_)),
            OneOf(alts) => alts.iter().any(|a| a.shape_fits(n)),
            NullOr(t) => n.is_null() || t.shape_fits(n),
            ListOrDict => matches!(n.kind, Kind::Seq(_) | Kind::Map(_)),
            StrOrList => matches!(n.kind, Kind::Seq(_) | Kind::Scalar(Scalar::Str(_))),
        }
    }

    fn describe(&self) -> String {
        match self {
            T::Ref(t) => t.describe(),
            Any => "any value".into(),
            Str => "a string".into(),
            Int => "an integer".into(),
            Num => "a number".into(),
            Bool => "a boolean".into(),
            StrOrNum => "a string or number".into(),
            Duration => "a duration".into(),
            Enum(v) => format!("one of {}", v.join(", ")),
            List(_) => "a list".into(),
            Map(_) | Obj(..) => "a mapping".into(),
            OneOf(alts) => alts
                .iter()
                .map(T::describe)
                .collect::<Vec<_>>()
                .join(" or "),
            NullOr(t) => format!("null or {}", t.describe()),
            ListOrDict => "a list or a mapping".into(),
            StrOrList => "a string or a list of strings".into(),
        }
    }
}

/// A schema violation: where, the path, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub node_pos: crate::yaml::Pos,
    pub path: String,
    pub message: String,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn scalar_is_int(n: &Node) -> bool {
    match &n.kind {
        Kind::Scalar(Scalar::Int(_)) => true,
        Kind::Scalar(Scalar::Str(s)) => s.trim().parse::<i64>().is_ok(),
        _ => false,
    }
}
fn scalar_is_num(n: &Node) -> bool {
    match &n.kind {
        Kind::Scalar(Scalar::Int(_) | Scalar::Float(_)) => true,
        Kind::Scalar(Scalar::Str(s)) => s.trim().parse::<f64>().is_ok(),
        _ => false,
    }
}
/// Booleans compose casts from strings (YAML 1.1 forms included).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "on" => Some(true),
        "false" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// Checks `n` against `t`; the first violation wins.
pub fn check(n: &Node, t: &T, path: &str) -> Result<(), Violation> {
    let fail = |message: String| Violation {
        node_pos: n.pos.clone(),
        path: path.to_string(),
        message,
    };
    match t {
        T::Ref(inner) => check(n, inner, path),
        Any => Ok(()),
        Str => match &n.kind {
            Kind::Scalar(Scalar::Str(_)) => Ok(()),
            _ => Err(fail(format!("must be a string, not {}", n.type_name()))),
        },
        StrOrNum => match &n.kind {
            Kind::Scalar(Scalar::Str(_) | Scalar::Int(_) | Scalar::Float(_)) => Ok(()),
            _ => Err(fail(format!(
                "must be a string or number, not {}",
                n.type_name()
            ))),
        },
        Int => {
            if scalar_is_int(n) {
                Ok(())
            } else {
                Err(fail(format!(
                    "must be an integer, not {}",
                    describe_value(n)
                )))
            }
        }
        Num => {
            if scalar_is_num(n) {
                Ok(())
            } else {
                Err(fail(format!("must be a number, not {}", describe_value(n))))
            }
        }
        Bool => match &n.kind {
            Kind::Scalar(Scalar::Bool(_)) => Ok(()),
            Kind::Scalar(Scalar::Str(s)) if parse_bool(s).is_some() => Ok(()),
            _ => Err(fail(format!(
                "must be a boolean, not {}",
                describe_value(n)
            ))),
        },
        Duration => match &n.kind {
            Kind::Scalar(Scalar::Int(_) | Scalar::Float(_)) => Ok(()),
            Kind::Scalar(Scalar::Str(s)) => crate::normalize::parse_duration(s)
                .map(|_| ())
                .ok_or_else(|| fail(format!("invalid duration {s:?}"))),
            _ => Err(fail(format!("must be a duration, not {}", n.type_name()))),
        },
        Enum(values) => match n.scalar_text() {
            Some(s) if values.contains(&s.as_str()) => Ok(()),
            _ => Err(fail(format!(
                "must be one of {}, not {}",
                values.join(", "),
                describe_value(n)
            ))),
        },
        List(item) => {
            let Some(items) = n.as_seq() else {
                return Err(fail(format!("must be a list, not {}", n.type_name())));
            };
            for (i, it) in items.iter().enumerate() {
                check(it, item, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        Map(value) => {
            let Some(m) = n.as_map() else {
                return Err(fail(format!("must be a mapping, not {}", n.type_name())));
            };
            for e in m {
                if e.key.starts_with("x-") {
                    continue;
                }
                check(&e.value, value, &join(path, &e.key))?;
            }
            Ok(())
        }
        Obj(props, required) => {
            let Some(m) = n.as_map() else {
                return Err(fail(format!("must be a mapping, not {}", n.type_name())));
            };
            for e in m {
                if e.key.starts_with("x-") {
                    continue;
                }
                match props.iter().find(|(k, _)| *k == e.key) {
                    Some((_, t)) => check(&e.value, t, &join(path, &e.key))?,
                    None => {
                        return Err(Violation {
                            node_pos: e.key_pos.clone(),
                            path: join(path, &e.key),
                            message: format!("additional property {:?} is not allowed", e.key),
                        });
                    }
                }
            }
            for r in *required {
                if !m.iter().any(|e| e.key == *r) {
                    return Err(fail(format!("required property {r:?} is missing")));
                }
            }
            Ok(())
        }
        OneOf(alts) => match alts.iter().find(|a| a.shape_fits(n)) {
            Some(a) => check(n, a, path),
            None => Err(fail(format!(
                "must be {}, not {}",
                t.describe(),
                n.type_name()
            ))),
        },
        NullOr(inner) => {
            if n.is_null() {
                Ok(())
            } else {
                check(n, inner, path)
            }
        }
        ListOrDict => match &n.kind {
            Kind::Seq(items) => {
                for (i, it) in items.iter().enumerate() {
                    if it.as_str().is_none() {
                        return Err(Violation {
                            node_pos: it.pos.clone(),
                            path: format!("{path}[{i}]"),
                            message: format!("must be a string, not {}", it.type_name()),
                        });
                    }
                }
                Ok(())
            }
            Kind::Map(m) => {
                for e in m {
                    if !matches!(e.value.kind, Kind::Scalar(_)) {
                        return Err(Violation {
                            node_pos: e.value.pos.clone(),
                            path: join(path, &e.key),
                            message: format!(
                                "must be a string, number, boolean or null, not {}",
                                e.value.type_name()
                            ),
                        });
                    }
                }
                Ok(())
            }
            Kind::Scalar(_) => Err(fail(format!(
                "must be a list or a mapping, not {}",
                n.type_name()
            ))),
        },
        StrOrList => match &n.kind {
            Kind::Scalar(Scalar::Str(_)) => Ok(()),
            Kind::Seq(items) => {
                for (i, it) in items.iter().enumerate() {
                    if it.scalar_text().is_none() || it.is_null() {
                        return Err(Violation {
                            node_pos: it.pos.clone(),
                            path: format!("{path}[{i}]"),
                            message: format!("must be a string, not {}", it.type_name()),
                        });
                    }
                }
                Ok(())
            }
            _ => Err(fail(format!(
                "must be a string or a list of strings, not {}",
                n.type_name()
            ))),
        },
    }
}

fn describe_value(n: &Node) -> String {
    match n.scalar_text() {
        Some(s) if !n.is_null() => format!("{s:?}"),
        _ => n.type_name().to_string(),
    }
}
