use super::*;

#[test]
fn statefulset_mounts_may_name_claim_templates() {
    // Regression: charts (vault, postgresql, redis, elasticsearch) mount
    // their volumeClaimTemplates and were refused with "Not found".
    let sts = json!({"metadata": {"name": "db"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "serviceName": "db",
        "volumeClaimTemplates": [{"metadata": {"name": "data"}}],
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "data", "mountPath": "/d"}, {"name": "gone", "mountPath": "/g"}]}]}}}});
    let fields: Vec<String> = validate("StatefulSet", &sts)
        .into_iter()
        .map(|c| c.field)
        .collect();
    assert_eq!(
        fields,
        ["spec.template.spec.containers[0].volumeMounts[1].name"]
    );
}

#[test]
fn null_fields_are_dropped_as_go_decoding_drops_them() {
    // Regression: prometheus' `strategy: {type: Recreate, rollingUpdate: null}`
    // was refused as "rollingUpdate may not be specified".
    let mut d = json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null}}});
    let typed = json!({"spec": {"strategy": {"type": "Recreate"}}});
    let mut unknown = Vec::new();
    unknown_fields(&mut d, &typed, "", false, &mut unknown);
    assert!(unknown.is_empty());
    assert_eq!(d, typed);
}

#[test]
fn dns_names() {
    assert!(is_dns_subdomain("a.b-c.d"));
    assert!(!is_dns_subdomain("Bad_Name"));
    assert!(!is_dns_subdomain("-a"));
    assert!(is_dns_label("abc-1"));
    assert!(!is_dns_label("a.b"));
    assert!(validate_name("Service", "a.b").is_some());
    assert!(validate_name("ConfigMap", "a.b").is_none());
    assert_eq!(
        validate_name("Pod", "").unwrap().reason,
        "FieldValueRequired"
    );
}

#[test]
fn typed_decoding_and_unknown_fields() {
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "bogus": 1}, "data": {"k": "v"}, "extra": {"x": 1}});
    let typed = typed_roundtrip("ConfigMap", &cm).unwrap();
    let mut unknown = Vec::new();
    unknown_fields(&mut cm, &typed, "", true, &mut unknown);
    assert_eq!(
        unknown,
        vec!["extra".to_string(), "metadata.bogus".to_string()]
    );
    assert!(cm.get("extra").is_none());
    assert!(typed_roundtrip("ConfigMap", &json!({"data": {"k": 5}})).is_err());
}

#[test]
fn deployment_selector_must_match() {
    let d = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let causes = validate("Deployment", &d);
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].field, "spec.template.metadata.labels");
}

#[test]
fn defaults_and_immutability() {
    let mut svc = json!({"spec": {"ports": [{"port": 80}]}});
    apply_defaults("Service", &mut svc, &mut || "10.43.0.9".into());
    assert_eq!(svc["spec"]["clusterIP"], "10.43.0.9");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
    let mut changed = svc.clone();
    changed["spec"]["clusterIP"] = json!("10.43.0.10");
    assert_eq!(validate_update("Service", &svc, &changed).len(), 1);
    let cm = json!({"immutable": true, "data": {"a": "1"}});
    let cm2 = json!({"immutable": true, "data": {"a": "2"}});
    assert_eq!(validate_update("ConfigMap", &cm, &cm2).len(), 1);
    let mut q = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": 1}}}]}});
    normalize_quantities(&mut q);
    assert_eq!(
        q["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "1"
    );
}

/// A valid object of `kind`, then `edit` applied to it.
fn object(kind: &str) -> Value {
    let pod = json!({"containers": [{"name": "c", "image": "nginx:1.25", "ports": [{"containerPort": 80, "name": "http"}]}]});
    let mut v = match kind {
        "Pod" => json!({"metadata": {"name": "p"}, "spec": pod}),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": pod}}})
        }
        "Job" => json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}),
        "Service" => {
            json!({"metadata": {"name": "s"}, "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]}})
        }
        _ => json!({"metadata": {"name": "x"}}),
    };
    apply_defaults(kind, &mut v, &mut || "10.43.0.1".into());
    v
}

#[test]
fn validation_messages_match_kubernetes() {
    let long = "a".repeat(64);
    // (kind, JSON pointer, value to set, field, message) — messages as
    // apimachinery words them.
    let cases: Vec<(&str, &str, Value, &str, String)> = vec![
        ("Pod", "/spec/containers/0/image", json!(""), "spec.containers[0].image", "Required value".into()),
        ("Pod", "/spec/containers", json!([]), "spec.containers", "Required value".into()),
        ("Pod", "/spec/containers/0/name", json!("Web_1"), "spec.containers[0].name", format!("Invalid value: \"Web_1\": {LABEL_MSG}")),
        ("Pod", "/spec/containers/0/ports/0/containerPort", json!(70000), "spec.containers[0].ports[0].containerPort", "Invalid value: 70000: must be between 1 and 65535, inclusive".into()),
        ("Pod", "/spec/containers/0/ports/0/containerPort", json!(0), "spec.containers[0].ports[0].containerPort", "Required value".into()),
        ("Pod", "/spec/containers/0/ports/0/name", json!("http-web-server-1"), "spec.containers[0].ports[0].name", "Invalid value: \"http-web-server-1\": must be no more than 15 characters".into()),
        ("Pod", "/spec/containers/0/ports/0/name", json!("80"), "spec.containers[0].ports[0].name", "Invalid value: \"80\": must contain at least one letter (a-z)".into()),
        ("Pod", "/spec/containers/0/ports/0/protocol", json!("XTP"), "spec.containers[0].ports[0].protocol", "Unsupported value: \"XTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"".into()),
        ("Pod", "/spec/containers/0/env", json!([{"name": "A=B", "value": "1"}]), "spec.containers[0].env[0].name", "Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='".into()),
        ("Pod", "/spec/containers/0/env", json!([{"value": "1"}]), "spec.containers[0].env[0].name", "Required value".into()),
        ("Pod", "/spec/containers/0/resources", json!({"limits": {"cpu": "-1"}}), "spec.containers[0].resources.limits[cpu]", "Invalid value: \"-1\": must be greater than or equal to 0".into()),
        ("Pod", "/spec/containers/0/resources", json!({"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}), "spec.containers[0].resources.requests", "Invalid value: \"2\": must be less than or equal to cpu limit of 1".into()),
        ("Pod", "/spec/containers/0/volumeMounts", json!([{"name": "data", "mountPath": "/d"}]), "spec.containers[0].volumeMounts[0].name", "Not found: \"data\"".into()),
        ("Pod", "/spec/containers/0/imagePullPolicy", json!("Sometimes"), "spec.containers[0].imagePullPolicy", "Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"".into()),
        ("Pod", "/spec/restartPolicy", json!("Sometimes"), "spec.restartPolicy", "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"".into()),
        ("Pod", "/metadata/labels", json!({"app": long}), "metadata.labels", format!("Invalid value: \"{long}\": must be no more than 63 characters")),
        ("Pod", "/metadata/labels", json!({"app": "a b"}), "metadata.labels", format!("Invalid value: \"a b\": {LABEL_VALUE_MSG}")),
        ("Pod", "/metadata/labels", json!({"bad key": "v"}), "metadata.labels", format!("Invalid value: \"bad key\": name part {QUALIFIED_MSG}")),
        ("Pod", "/metadata/labels", json!({"Example.com/app": "v"}), "metadata.labels", format!("Invalid value: \"Example.com/app\": prefix part {SUBDOMAIN_MSG}")),
        ("Pod", "/metadata/annotations", json!({"a/b/c": "v"}), "metadata.annotations", format!("Invalid value: \"a/b/c\": a qualified name {QUALIFIED_MSG} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")),
        ("Pod", "/metadata/annotations", json!({"big": "x".repeat(300_000)}), "metadata.annotations", "Too long: may not be more than 262144 bytes".into()),
        ("Deployment", "/spec/replicas", json!(-1), "spec.replicas", "Invalid value: -1: must be greater than or equal to 0".into()),
        ("Deployment", "/spec/template/metadata/labels", json!({"app": "b"}), "spec.template.metadata.labels", "Invalid value: map[string]string{\"app\":\"b\"}: `selector` does not match template `labels`".into()),
        ("Deployment", "/spec/strategy/rollingUpdate", json!({"maxSurge": 0, "maxUnavailable": 0}), "spec.strategy.rollingUpdate.maxUnavailable", "Invalid value: 0: may not be 0 when `maxSurge` is 0".into()),
        ("Deployment", "/spec/strategy/rollingUpdate/maxSurge", json!("120%"), "spec.strategy.rollingUpdate.maxSurge", "Invalid value: \"120%\": must not be greater than 100%".into()),
        ("Deployment", "/spec/strategy/type", json!("BlueGreen"), "spec.strategy.type", "Unsupported value: \"BlueGreen\": supported values: \"Recreate\", \"RollingUpdate\"".into()),
        ("Deployment", "/spec/progressDeadlineSeconds", json!(0), "spec.progressDeadlineSeconds", "Invalid value: 0: must be greater than minReadySeconds".into()),
        ("Deployment", "/spec/template/spec/restartPolicy", json!("Never"), "spec.template.spec.restartPolicy", "Unsupported value: \"Never\": supported values: \"Always\"".into()),
        ("StatefulSet", "/spec/template/spec/containers/0/image", json!(""), "spec.template.spec.containers[0].image", "Required value".into()),
        ("DaemonSet", "/spec/selector", json!({}), "spec.selector", "Invalid value: {}: empty selector is invalid for daemonset".into()),
        ("Job", "/spec/template/spec/restartPolicy", json!("Always"), "spec.template.spec.restartPolicy", "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"".into()),
        ("Job", "/spec/backoffLimit", json!(-2), "spec.backoffLimit", "Invalid value: -2: must be greater than or equal to 0".into()),
        ("Service", "/spec/ports/0/port", json!(0), "spec.ports[0].port", "Invalid value: 0: must be between 1 and 65535, inclusive".into()),
        ("Service", "/spec/ports", json!([{"port": 80, "name": "a"}, {"port": 81}]), "spec.ports[1].name", "Required value".into()),
        ("Service", "/spec/ports", json!([{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]), "spec.ports[1].name", "Duplicate value: \"a\"".into()),
        ("Service", "/spec/ports/0/targetPort", json!(0), "spec.ports[0].targetPort", "Invalid value: 0: must be between 1 and 65535, inclusive".into()),
        ("Service", "/spec/selector", json!({"app": "a b"}), "spec.selector", format!("Invalid value: \"a b\": {LABEL_VALUE_MSG}")),
        ("Service", "/spec/sessionAffinity", json!("Sticky"), "spec.sessionAffinity", "Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"".into()),
    ];
    for (kind, pointer, value, field, message) in cases {
        let mut obj = object(kind);
        assert!(
            validate(kind, &obj).is_empty(),
            "{kind} base: {:?}",
            validate(kind, &obj)
        );
        let (parent, last) = pointer.rsplit_once('/').unwrap();
        let target = obj
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("{pointer}"));
        match target {
            Value::Array(a) => a[last.parse::<usize>().unwrap()] = value,
            t => {
                t[last] = value;
            }
        }
        let causes = validate(kind, &obj);
        assert!(
            causes
                .iter()
                .any(|c| c.field == field && c.message == message),
            "{kind} {pointer}: want {field}: {message}\ngot {causes:#?}"
        );
    }
}

#[test]
fn defaults_fill_pod_templates_and_workloads() {
    let dep = object("Deployment");
    assert_eq!(dep["spec"]["replicas"], 1);
    assert_eq!(
        dep["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    assert_eq!(dep["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(dep["spec"]["progressDeadlineSeconds"], 600);
    let tmpl = &dep["spec"]["template"]["spec"];
    assert_eq!(tmpl["restartPolicy"], "Always");
    assert_eq!(tmpl["dnsPolicy"], "ClusterFirst");
    assert_eq!(tmpl["terminationGracePeriodSeconds"], 30);
    assert_eq!(tmpl["schedulerName"], "default-scheduler");
    assert_eq!(tmpl["securityContext"], json!({}));
    let ctr = &tmpl["containers"][0];
    assert_eq!(ctr["imagePullPolicy"], "IfNotPresent");
    assert_eq!(ctr["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(ctr["terminationMessagePolicy"], "File");
    assert_eq!(ctr["ports"][0]["protocol"], "TCP");
    for (image, policy) in [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("reg:5000/nginx", "Always"),
        ("reg:5000/nginx:1", "IfNotPresent"),
        ("nginx@sha256:ab", "IfNotPresent"),
    ] {
        let mut p = json!({"spec": {"containers": [{"name": "c", "image": image}]}});
        apply_defaults("Pod", &mut p, &mut String::new);
        assert_eq!(
            p["spec"]["containers"][0]["imagePullPolicy"], policy,
            "{image}"
        );
    }
    let job = object("Job");
    assert_eq!(
        (
            job["spec"]["backoffLimit"].as_i64(),
            job["spec"]["completions"].as_i64(),
            job["spec"]["parallelism"].as_i64()
        ),
        (Some(6), Some(1), Some(1))
    );
    assert_eq!(job["spec"]["completionMode"], "NonIndexed");
    let s = object("Service");
    assert_eq!(
        (
            s["spec"]["type"].as_str(),
            s["spec"]["sessionAffinity"].as_str()
        ),
        (Some("ClusterIP"), Some("None"))
    );
    assert_eq!(
        s["spec"]["ports"][0],
        json!({"port": 80, "protocol": "TCP", "targetPort": 80})
    );
    for kind in ["ReplicaSet", "StatefulSet", "DaemonSet"] {
        assert_eq!(
            object(kind)["spec"]["template"]["spec"]["dnsPolicy"],
            "ClusterFirst",
            "{kind}"
        );
    }
}

#[test]
fn quantities_parse_like_kubernetes() {
    for (q, v) in [
        ("1", 1.0),
        ("100m", 0.1),
        ("64Mi", 67_108_864.0),
        ("1.5Gi", 1_610_612_736.0),
        ("2e3", 2000.0),
        ("+1k", 1000.0),
        ("-1", -1.0),
    ] {
        assert!((parse_quantity(q).unwrap() - v).abs() < 1e-6, "{q}");
    }
    for q in ["", "abc", "1..2", "1Qi", "Mi", "1 Gi", "1e+"] {
        assert!(parse_quantity(q).is_err(), "{q}");
    }
    assert_eq!(parse_quantity("1Qi").unwrap_err(), QUANTITY_MSG);
    assert_eq!(
        parse_quantity("1kk").unwrap_err(),
        "unable to parse quantity's suffix"
    );
    let bad = json!({"spec": {"containers": [{"resources": {"limits": {"memory": "lots"}}}]}});
    assert_eq!(check_quantities(&bad).unwrap_err(), QUANTITY_MSG);
}

#[test]
fn cronjob_schedules_and_time_zones_are_checked() {
    let cj = |schedule: Value, tz: Option<&str>| {
        let mut v = json!({"metadata": {"name": "c"}, "spec": {"schedule": schedule,
            "jobTemplate": {"spec": {"template": {"spec": {}}}}}});
        if let Some(tz) = tz {
            v["spec"]["timeZone"] = json!(tz);
        }
        v
    };
    let fields = |v: &Value| -> Vec<String> {
        validate("CronJob", v)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    };
    assert!(fields(&cj(json!("*/5 * * * *"), Some("Europe/Berlin"))).is_empty());
    assert!(fields(&cj(json!("@hourly"), None)).is_empty());
    let bad = fields(&cj(json!("61 * * * *"), None));
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0].starts_with("spec.schedule: Invalid value: \"61 * * * *\": "),
        "{bad:?}"
    );
    let tz = fields(&cj(json!("0 * * * *"), Some("Mars/Olympus")));
    assert_eq!(
        tz,
        ["spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus"]
    );
    let with_tz = fields(&cj(json!("TZ=UTC 0 * * * *"), None));
    assert!(
        with_tz[0].contains("use timeZone field instead"),
        "{with_tz:?}"
    );
}

#[test]
fn node_ports_are_allocated_in_range_and_checked() {
    let mut svc = json!({"spec": {"type": "NodePort", "ports": [
        {"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 30500}]}});
    apply_defaults("Service", &mut svc, &mut || "10.43.0.9".into());
    let n = svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30_000..=32_767).contains(&n), "{n}");
    assert_ne!(n, 30_500);
    assert_eq!(svc["spec"]["ports"][1]["nodePort"], 30_500);
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");
    assert!(validate("Service", &svc).is_empty());
    let mut lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
    apply_defaults("Service", &mut lb, &mut || "10.43.0.9".into());
    assert!(lb["spec"]["ports"][0]["nodePort"].is_i64());
    let mut cip = json!({"spec": {"ports": [{"port": 80}]}});
    apply_defaults("Service", &mut cip, &mut || "10.43.0.9".into());
    assert!(cip["spec"]["ports"][0].get("nodePort").is_none());
    svc["spec"]["ports"][1]["nodePort"] = json!(8080);
    let causes = validate("Service", &svc);
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert_eq!(causes[0].field, "spec.ports[1].nodePort");
    cip["spec"]["ports"][0]["nodePort"] = json!(30_001);
    assert_eq!(validate("Service", &cip)[0].field, "spec.ports[0].nodePort");
}
