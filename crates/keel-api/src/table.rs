//! Server-side printing: `meta.k8s.io/v1` `Table` responses with the columns
//! `kubectl get` shows for each built-in kind (priority 1 columns are `-o wide`).

use serde_json::{Value, json};

fn s(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, seg| cur.get(seg))
}

fn n(v: &Value, path: &str) -> i64 {
    at(v, path).and_then(Value::as_i64).unwrap_or(0)
}

/// kubectl's TARGETS of an HPA (`cpu: 80%/50%`, `<unknown>` before the
/// first reading; at most two, then `+ N more...`), as Kubernetes' printer
/// writes them. Without metrics the default (CPU at 80%) is shown.
fn hpa_targets(o: &Value) -> String {
    let default = [
        json!({"type": "Resource", "resource": {"name": "cpu", "target": {"averageUtilization": 80}}}),
    ];
    let specs = match at(o, "spec.metrics").and_then(Value::as_array) {
        Some(m) if !m.is_empty() => m.as_slice(),
        _ => &default,
    };
    let statuses = at(o, "status.currentMetrics").and_then(Value::as_array);
    let unknown = || "<unknown>".to_string();
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let kind = spec["type"].as_str().unwrap_or_default();
            let field = match kind {
                "Resource" => "resource",
                "ContainerResource" => "containerResource",
                "Pods" => "pods",
                "Object" => "object",
                "External" => "external",
                _ => return "<unknown type>".to_string(),
            };
            let target = &spec[field]["target"];
            let cur = statuses
                .and_then(|st| st.get(i))
                .map(|st| &st[field]["current"])
                .filter(|c| c.is_object());
            let q = |v: &Value, k: &str| v.get(k).map(|x| s(Some(x))).filter(|x| !x.is_empty());
            match field {
                "resource" | "containerResource" => {
                    let name = s(spec[field].get("name"));
                    if let Some(avg) = q(target, "averageValue") {
                        let c = cur
                            .and_then(|c| q(c, "averageValue"))
                            .unwrap_or_else(unknown);
                        format!("{name}: {c}/{avg}")
                    } else {
                        let c = cur
                            .and_then(|c| c.get("averageUtilization"))
                            .map_or_else(unknown, |u| format!("{}%", s(Some(u))));
                        let t = q(target, "averageUtilization")
                            .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                        format!("{name}: {c}/{t}")
                    }
                }
                "pods" => {
                    let c = cur
                        .and_then(|c| q(c, "averageValue"))
                        .unwrap_or_else(unknown);
                    format!("{c}/{}", q(target, "averageValue").unwrap_or_default())
                }
                _ => {
                    if let Some(avg) = q(target, "averageValue") {
                        let c = cur
                            .and_then(|c| q(c, "averageValue"))
                            .unwrap_or_else(unknown);
                        format!("{c}/{avg} (avg)")
                    } else {
                        let c = cur.and_then(|c| q(c, "value")).unwrap_or_else(unknown);
                        format!("{c}/{}", q(target, "value").unwrap_or_default())
                    }
                }
            }
        })
        .collect();
    if list.len() > 2 {
        format!("{} + {} more...", list[..2].join(", "), list.len() - 2)
    } else {
        list.join(", ")
    }
}

fn or_none(x: String) -> String {
    if x.is_empty() { "<none>".into() } else { x }
}

/// `kubectl`'s short duration format: 45s, 5m, 3h, 2d, 1y.
pub fn human_age(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..=119 => format!("{secs}s"),
        120..=599 => format!("{}m{}s", secs / 60, secs % 60).replace("m0s", "m"),
        600..=10_799 => format!("{}m", secs / 60),
        10_800..=172_799 => format!("{}h", secs / 3600),
        172_800..=31_535_999 => format!("{}d", secs / 86_400),
        _ => format!("{}y", secs / 31_536_000),
    }
}

fn age(obj: &Value, field: &str) -> String {
    match at(obj, field).and_then(Value::as_str) {
        Some(ts) => age_of(ts),
        None => "<unknown>".into(),
    }
}

/// kubectl's age of a timestamp.
pub fn age_of(ts: &str) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => human_age(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

/// kubectl's Job row: the status from the conditions (in printJob's
/// order), `succeeded/completions` (`n/1 of p` for a work queue) and the
/// run time.
fn job_row(o: &Value, name: &str, a: String) -> Vec<Value> {
    let succeeded = n(o, "status.succeeded");
    let completions = match at(o, "spec.completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match n(o, "spec.parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let has = |t: &str| {
        at(o, "status.conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == t && c["status"] == "True"))
    };
    let status = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if at(o, "metadata.deletionTimestamp").is_some() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let time = |f: &str| {
        at(o, f)
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    };
    let duration = match (time("status.startTime"), time("status.completionTime")) {
        (None, _) => String::new(),
        (Some(st), None) => human_age(jiff::Timestamp::now().as_second() - st.as_second()),
        (Some(st), Some(done)) => human_age(done.as_second() - st.as_second()),
    };
    vec![
        json!(name),
        json!(status),
        json!(completions),
        json!(duration),
        json!(a),
    ]
}

fn join_list(v: Option<&Value>, f: impl Fn(&Value) -> String) -> String {
    v.and_then(Value::as_array)
        .map(|a| a.iter().map(f).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else { return String::new() };
    let map = sel.get("matchLabels").unwrap_or(sel);
    map.as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.is_string())
                .map(|(k, v)| format!("{k}={}", s(Some(v))))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn containers_images(obj: &Value) -> (String, String) {
    let c = at(obj, "spec.template.spec.containers");
    (
        join_list(c, |c| s(c.get("name"))),
        join_list(c, |c| s(c.get("image"))),
    )
}

/// Column names (with priority) and the cell function of one kind.
fn columns(kind: &str) -> Vec<(&'static str, &'static str, u8)> {
    // (name, type, priority)
    match kind {
        "Pod" => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        "Deployment" => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "string", 0),
            ("Available", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "ReplicaSet" => vec![
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "StatefulSet" => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
        ],
        "DaemonSet" => vec![
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Node Selector", "string", 0),
            ("Age", "string", 0),
        ],
        "Job" => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Completions", "string", 0),
            ("Duration", "string", 0),
            ("Age", "string", 0),
        ],
        "CronJob" => vec![
            ("Name", "string", 0),
            ("Schedule", "string", 0),
            ("Timezone", "string", 0),
            ("Suspend", "boolean", 0),
            ("Active", "integer", 0),
            ("Last Schedule", "string", 0),
            ("Age", "string", 0),
        ],
        "Service" => vec![
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        "ConfigMap" => vec![
            ("Name", "string", 0),
            ("Data", "integer", 0),
            ("Age", "string", 0),
        ],
        "Secret" => vec![
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Data", "integer", 0),
            ("Age", "string", 0),
        ],
        "Namespace" => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Age", "string", 0),
        ],
        "Node" => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
        ],
        "ServiceAccount" => vec![
            ("Name", "string", 0),
            ("Secrets", "integer", 0),
            ("Age", "string", 0),
        ],
        "PodDisruptionBudget" => vec![
            ("Name", "string", 0),
            ("Min Available", "string", 0),
            ("Max Unavailable", "string", 0),
            ("Allowed Disruptions", "integer", 0),
            ("Age", "string", 0),
        ],
        "Endpoints" => vec![
            ("Name", "string", 0),
            ("Endpoints", "string", 0),
            ("Age", "string", 0),
        ],
        "EndpointSlice" => vec![
            ("Name", "string", 0),
            ("AddressType", "string", 0),
            ("Ports", "string", 0),
            ("Endpoints", "string", 0),
            ("Age", "string", 0),
        ],
        "Ingress" => vec![
            ("Name", "string", 0),
            ("Class", "string", 0),
            ("Hosts", "string", 0),
            ("Address", "string", 0),
            ("Ports", "string", 0),
            ("Age", "string", 0),
        ],
        "HorizontalPodAutoscaler" => vec![
            ("Name", "string", 0),
            ("Reference", "string", 0),
            ("Targets", "string", 0),
            ("MinPods", "string", 0),
            ("MaxPods", "string", 0),
            ("Replicas", "string", 0),
            ("Age", "string", 0),
        ],
        "Lease" => vec![
            ("Name", "string", 0),
            ("Holder", "string", 0),
            ("Age", "string", 0),
        ],
        "Event" => vec![
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
        ],
        "StorageClass" => vec![
            ("Name", "string", 0),
            ("Provisioner", "string", 0),
            ("ReclaimPolicy", "string", 0),
            ("VolumeBindingMode", "string", 0),
            ("AllowVolumeExpansion", "string", 0),
            ("Age", "string", 0),
        ],
        "PersistentVolume" => vec![
            ("Name", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("Reclaim Policy", "string", 0),
            ("Status", "string", 0),
            ("Claim", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            ("Reason", "string", 0),
            ("Age", "string", 0),
            ("VolumeMode", "string", 1),
        ],
        "PersistentVolumeClaim" => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Volume", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            ("Age", "string", 0),
            ("VolumeMode", "string", 1),
        ],
        "ComponentStatus" => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Message", "string", 0),
            ("Error", "string", 0),
        ],
        _ => vec![("Name", "string", 0), ("Age", "string", 0)],
    }
}

fn cells(kind: &str, o: &Value) -> Vec<Value> {
    let name = s(at(o, "metadata.name"));
    let a = age(o, "metadata.creationTimestamp");
    let replicas_ready = |spec: &str, ready: &str| format!("{}/{}", n(o, ready), n(o, spec));
    match kind {
        "Pod" => {
            let statuses = at(o, "status.containerStatuses").and_then(Value::as_array);
            let total = at(o, "spec.containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses.map_or(0, |s| {
                s.iter()
                    .filter(|c| c.get("ready") == Some(&Value::Bool(true)))
                    .count()
            });
            let restarts: i64 = statuses.map_or(0, |s| {
                s.iter()
                    .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                    .sum()
            });
            let mut status = s(at(o, "status.reason"));
            if status.is_empty() {
                status = s(at(o, "status.phase"));
            }
            if status.is_empty() {
                status = "Pending".into();
            }
            if at(o, "metadata.deletionTimestamp").is_some() {
                status = "Terminating".into();
            }
            vec![
                json!(name),
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts.to_string()),
                json!(a),
                json!(or_none(s(at(o, "status.podIP")))),
                json!(or_none(s(at(o, "spec.nodeName")))),
                json!("<none>"),
                json!("<none>"),
            ]
        }
        "Deployment" => {
            let (c, i) = containers_images(o);
            vec![
                json!(name),
                json!(replicas_ready("spec.replicas", "status.readyReplicas")),
                json!(n(o, "status.updatedReplicas")),
                json!(n(o, "status.availableReplicas")),
                json!(a),
                json!(c),
                json!(i),
                json!(selector_string(at(o, "spec.selector"))),
            ]
        }
        "ReplicaSet" => {
            let (c, i) = containers_images(o);
            vec![
                json!(name),
                json!(n(o, "spec.replicas")),
                json!(n(o, "status.replicas")),
                json!(n(o, "status.readyReplicas")),
                json!(a),
                json!(c),
                json!(i),
                json!(selector_string(at(o, "spec.selector"))),
            ]
        }
        "StatefulSet" => {
            let (c, i) = containers_images(o);
            vec![
                json!(name),
                json!(replicas_ready("spec.replicas", "status.readyReplicas")),
                json!(a),
                json!(c),
                json!(i),
            ]
        }
        "DaemonSet" => vec![
            json!(name),
            json!(n(o, "status.desiredNumberScheduled")),
            json!(n(o, "status.currentNumberScheduled")),
            json!(n(o, "status.numberReady")),
            json!(n(o, "status.updatedNumberScheduled")),
            json!(n(o, "status.numberAvailable")),
            json!(or_none(selector_string(at(
                o,
                "spec.template.spec.nodeSelector"
            )))),
            json!(a),
        ],
        "Job" => job_row(o, &name, a),
        "CronJob" => vec![
            json!(name),
            json!(s(at(o, "spec.schedule"))),
            json!(or_none(s(at(o, "spec.timeZone")))),
            json!(match at(o, "spec.suspend").and_then(Value::as_bool) {
                Some(true) => "True",
                Some(false) => "False",
                None => "<unset>",
            }),
            json!(
                at(o, "status.active")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
            ),
            json!(match at(o, "status.lastScheduleTime") {
                Some(_) => age(o, "status.lastScheduleTime"),
                None => "<none>".into(),
            }),
            json!(a),
        ],
        "Service" => {
            let ty = s(at(o, "spec.type"));
            let ports = join_list(at(o, "spec.ports"), |p| {
                let proto = s(p.get("protocol"));
                let proto = if proto.is_empty() {
                    "TCP".into()
                } else {
                    proto
                };
                match p.get("nodePort") {
                    Some(np) => format!("{}:{}/{proto}", s(p.get("port")), s(Some(np))),
                    None => format!("{}/{proto}", s(p.get("port"))),
                }
            });
            let external = match ty.as_str() {
                // kubectl's: the ingress addresses, then the external IPs.
                "LoadBalancer" => {
                    let ing = join_list(at(o, "status.loadBalancer.ingress"), |i| {
                        s(i.get("ip").or_else(|| i.get("hostname")))
                    });
                    let ext = join_list(at(o, "spec.externalIPs"), |v| s(Some(v)));
                    let all: Vec<String> =
                        [ing, ext].into_iter().filter(|x| !x.is_empty()).collect();
                    if all.is_empty() {
                        "<pending>".to_string()
                    } else {
                        all.join(",")
                    }
                }
                "ExternalName" => s(at(o, "spec.externalName")),
                _ => or_none(join_list(at(o, "spec.externalIPs"), |v| s(Some(v)))),
            };
            vec![
                json!(name),
                json!(ty),
                json!(or_none(s(at(o, "spec.clusterIP")))),
                json!(external),
                json!(or_none(ports)),
                json!(a),
                json!(or_none(selector_string(at(o, "spec.selector")))),
            ]
        }
        "ConfigMap" => {
            let data = at(o, "data")
                .and_then(Value::as_object)
                .map_or(0, serde_json::Map::len)
                + at(o, "binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, serde_json::Map::len);
            vec![json!(name), json!(data), json!(a)]
        }
        "Secret" => {
            let data = at(o, "data")
                .and_then(Value::as_object)
                .map_or(0, serde_json::Map::len);
            vec![json!(name), json!(s(at(o, "type"))), json!(data), json!(a)]
        }
        "Namespace" => vec![json!(name), json!(s(at(o, "status.phase"))), json!(a)],
        "Node" => {
            let ready = at(o, "status.conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c.get("type") == Some(&json!("Ready"))))
                .map(|c| s(c.get("status")));
            let mut status = match ready.as_deref() {
                Some("True") => "Ready",
                _ => "NotReady",
            }
            .to_string();
            if at(o, "spec.unschedulable") == Some(&json!(true)) {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<String> = at(o, "metadata.labels")
                .and_then(Value::as_object)
                .map(|l| {
                    l.keys()
                        .filter_map(|k| {
                            k.strip_prefix("node-role.kubernetes.io/").map(String::from)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let ip = at(o, "status.addresses")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .find(|x| x.get("type") == Some(&json!("InternalIP")))
                })
                .map(|x| s(x.get("address")))
                .unwrap_or_default();
            vec![
                json!(name),
                json!(status),
                json!(or_none(roles.join(","))),
                json!(a),
                json!(s(at(o, "status.nodeInfo.kubeletVersion"))),
                json!(or_none(ip)),
            ]
        }
        "PodDisruptionBudget" => {
            let n_a = |v: Option<&Value>| {
                let x = s(v);
                if x.is_empty() { "N/A".to_string() } else { x }
            };
            vec![
                json!(name),
                json!(n_a(at(o, "spec.minAvailable"))),
                json!(n_a(at(o, "spec.maxUnavailable"))),
                json!(
                    at(o, "status.disruptionsAllowed")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                ),
                json!(a),
            ]
        }
        "ServiceAccount" => vec![
            json!(name),
            json!(
                at(o, "secrets")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
            ),
            json!(a),
        ],
        "Endpoints" => {
            let mut eps = Vec::new();
            for sub in at(o, "subsets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for addr in sub
                    .get("addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    for p in sub
                        .get("ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        eps.push(format!("{}:{}", s(addr.get("ip")), s(p.get("port"))));
                    }
                }
            }
            vec![json!(name), json!(or_none(eps.join(","))), json!(a)]
        }
        "EndpointSlice" => {
            // As kubectl's printer: ports, then at most 3 addresses.
            let ports = join_list(at(o, "ports"), |p| s(p.get("port")));
            let addrs: Vec<String> = at(o, "endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|e| {
                    e.get("addresses")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                })
                .map(|a| s(Some(a)))
                .collect();
            let mut shown = addrs.iter().take(3).cloned().collect::<Vec<_>>().join(",");
            if addrs.len() > 3 {
                use std::fmt::Write as _;
                let _ = write!(shown, " + {} more...", addrs.len() - 3);
            }
            vec![
                json!(name),
                json!(s(at(o, "addressType"))),
                json!(if ports.is_empty() {
                    "<unset>".to_string()
                } else {
                    ports
                }),
                json!(if shown.is_empty() {
                    "<unset>".to_string()
                } else {
                    shown
                }),
                json!(a),
            ]
        }
        "Ingress" => {
            let hosts = join_list(at(o, "spec.rules"), |r| s(r.get("host")));
            vec![
                json!(name),
                json!(or_none(s(at(o, "spec.ingressClassName")))),
                json!(if hosts.is_empty() {
                    "*".to_string()
                } else {
                    hosts
                }),
                json!(""),
                json!(if at(o, "spec.tls").is_some() {
                    "80, 443"
                } else {
                    "80"
                }),
                json!(a),
            ]
        }
        "HorizontalPodAutoscaler" => vec![
            json!(name),
            json!(format!(
                "{}/{}",
                s(at(o, "spec.scaleTargetRef.kind")),
                s(at(o, "spec.scaleTargetRef.name"))
            )),
            json!(hpa_targets(o)),
            json!(
                s(at(o, "spec.minReplicas"))
                    .chars()
                    .next()
                    .map_or("1".to_string(), |_| s(at(o, "spec.minReplicas")))
            ),
            json!(s(at(o, "spec.maxReplicas"))),
            json!(n(o, "status.currentReplicas").to_string()),
            json!(a),
        ],
        "Lease" => vec![
            json!(name),
            json!(s(at(o, "spec.holderIdentity"))),
            json!(a),
        ],
        "Event" => {
            let mut last = age(o, "lastTimestamp");
            if last == "<unknown>" {
                last = age(o, "eventTime");
            }
            vec![
                json!(last),
                json!(s(at(o, "type"))),
                json!(s(at(o, "reason"))),
                json!(format!(
                    "{}/{}",
                    s(at(o, "involvedObject.kind")).to_lowercase(),
                    s(at(o, "involvedObject.name"))
                )),
                json!(s(at(o, "message"))),
            ]
        }
        "ComponentStatus" => {
            let healthy = o
                .get("conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c["type"] == "Healthy"));
            let status = match healthy.map(|c| c["status"].as_str().unwrap_or_default()) {
                Some("True") => "Healthy",
                _ => "Unhealthy",
            };
            vec![
                json!(name),
                json!(status),
                json!(healthy.map(|c| s(c.get("message"))).unwrap_or_default()),
                json!(healthy.map(|c| s(c.get("error"))).unwrap_or_default()),
            ]
        }
        "StorageClass" | "PersistentVolume" | "PersistentVolumeClaim" => {
            storage_cells(kind, o, name, a)
        }
        _ => vec![json!(name), json!(a)],
    }
}

/// How much of each object a Table row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

fn row(kind: &str, o: &Value, include: Include) -> Value {
    row_with(cells(kind, o), o, include)
}

/// A Table row of `cells` carrying as much of `o` as `include` asks.
pub fn row_with(cells: Vec<Value>, o: &Value, include: Include) -> Value {
    let mut r = json!({ "cells": cells });
    match include {
        Include::None => {}
        Include::Metadata => {
            r["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": o.get("metadata").cloned().unwrap_or(Value::Null),
            });
        }
        Include::Object => r["object"] = o.clone(),
    }
    r
}

/// A Table of `objects` of `kind`.
pub fn table(kind: &str, objects: &[Value], meta: Value, include: Include) -> Value {
    let defs: Vec<Value> = columns(kind)
        .into_iter()
        .map(|(name, ty, prio)| {
            json!({
                "name": name,
                "type": ty,
                "format": if name == "Name" { "name" } else { "" },
                "description": "",
                "priority": prio,
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": defs,
        "rows": objects.iter().map(|o| row(kind, o, include)).collect::<Vec<_>>(),
    })
}

/// `kubectl get sc|pv|pvc` rows: the default class marked, access modes
/// abbreviated (RWO, ROX, RWX, RWOP), `<unset>` for what is not set.
fn storage_cells(kind: &str, o: &Value, name: String, a: String) -> Vec<Value> {
    let modes = |path: &str| {
        at(o, path)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|m| match m {
                "ReadWriteOnce" => "RWO",
                "ReadOnlyMany" => "ROX",
                "ReadWriteMany" => "RWX",
                "ReadWriteOncePod" => "RWOP",
                other => other,
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let unset = |x: String| if x.is_empty() { "<unset>".into() } else { x };
    let mode = || {
        let m = s(at(o, "spec.volumeMode"));
        if m.is_empty() { "Filesystem".into() } else { m }
    };
    match kind {
        "StorageClass" => {
            let default = o
                .pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
                .and_then(Value::as_str)
                == Some("true");
            let binding = s(at(o, "volumeBindingMode"));
            let reclaim = s(at(o, "reclaimPolicy"));
            vec![
                json!(if default {
                    format!("{name} (default)")
                } else {
                    name
                }),
                json!(s(at(o, "provisioner"))),
                json!(if reclaim.is_empty() {
                    "Delete".into()
                } else {
                    reclaim
                }),
                json!(if binding.is_empty() {
                    "Immediate".into()
                } else {
                    binding
                }),
                json!(
                    at(o, "allowVolumeExpansion")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string()
                ),
                json!(a),
            ]
        }
        "PersistentVolume" => {
            let claim = match (
                s(at(o, "spec.claimRef.namespace")),
                s(at(o, "spec.claimRef.name")),
            ) {
                (_, c) if c.is_empty() => String::new(),
                (ns, c) => format!("{ns}/{c}"),
            };
            vec![
                json!(name),
                json!(s(at(o, "spec.capacity.storage"))),
                json!(modes("spec.accessModes")),
                json!(s(at(o, "spec.persistentVolumeReclaimPolicy"))),
                json!(s(at(o, "status.phase"))),
                json!(claim),
                json!(s(at(o, "spec.storageClassName"))),
                json!(unset(s(at(o, "spec.volumeAttributesClassName")))),
                json!(s(at(o, "status.reason"))),
                json!(a),
                json!(mode()),
            ]
        }
        _ => {
            let phase = s(at(o, "status.phase"));
            let status = if at(o, "metadata.deletionTimestamp").is_some() {
                "Terminating".into()
            } else {
                phase
            };
            vec![
                json!(name),
                json!(status),
                json!(s(at(o, "spec.volumeName"))),
                json!(s(at(o, "status.capacity.storage"))),
                json!(modes("status.accessModes")),
                json!(s(at(o, "spec.storageClassName"))),
                json!(unset(s(at(o, "spec.volumeAttributesClassName")))),
                json!(a),
                json!(mode()),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_like_kubectl() {
        assert_eq!(human_age(5), "5s");
        assert_eq!(human_age(150), "2m30s");
        assert_eq!(human_age(180), "3m");
        assert_eq!(human_age(4000), "66m");
        assert_eq!(human_age(7200 * 3), "6h");
        assert_eq!(human_age(86_400 * 3), "3d");
    }

    #[test]
    fn hpa_targets_like_kubectl() {
        let cpu = json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}});
        let mem = json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}});
        let pods = json!({"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "10"}}});
        let hpa = json!({"spec": {"metrics": [cpu, mem, pods]}, "status": {"currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 80, "averageValue": "400m"}}},
            {"type": ""}]}});
        assert_eq!(
            hpa_targets(&hpa),
            "cpu: 80%/50%, memory: <unknown>/100Mi + 1 more..."
        );
        assert_eq!(hpa_targets(&json!({"spec": {}})), "cpu: <unknown>/80%");
        let obj = json!({"spec": {"metrics": [{"type": "Object", "object": {"target": {"type": "Value", "value": "2k"}}}, pods]},
            "status": {"currentMetrics": [{"type": "Object", "object": {"current": {"value": "1500"}}},
                {"type": "Pods", "pods": {"current": {"averageValue": "12"}}}]}});
        assert_eq!(hpa_targets(&obj), "1500/2k, 12/10");
    }

    #[test]
    fn pod_and_service_rows() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}], "nodeName": "n1"}, "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 2}]}});
        let t = table("Pod", &[pod], json!({}), Include::Metadata);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[0], "p");
        assert_eq!(cells[1], "1/1");
        assert_eq!(cells[2], "Running");
        assert_eq!(cells[3], "2");
        assert_eq!(cells[6], "n1");
        assert_eq!(
            t["columnDefinitions"].as_array().unwrap().len(),
            cells.as_array().unwrap().len()
        );
        let svc = json!({"metadata": {"name": "s"}, "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.5", "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": "a"}}});
        let t = table("Service", &[svc], json!({}), Include::None);
        assert_eq!(t["rows"][0]["cells"][4], "80/TCP");
        assert_eq!(t["rows"][0]["cells"][6], "app=a");
    }
}
