//! Small charts rendered by `keel chart template` and by the real Helm 4.1.4
//! side by side: stdout byte for byte, the same exit code, the same error
//! message. The cases probe every way a number enters a chart (values.yaml,
//! `-f`, `--set`, `--set-string`, `--set-json`, `--set-file`, Chart.yaml,
//! `fromYaml`/`fromJson`, template literals, sprig arithmetic, `toYaml` and
//! `toJson` output) plus YAML 1.1 scalars and Go regexp syntax, where keel
//! used to differ from Helm (issue 14, defect 3).

mod helm_peer;

use std::path::Path;

use helm_peer::{first_difference, helm_error, helm_template, keel_error, keel_template};

struct Case {
    name: &'static str,
    chart_yaml: &'static str,
    values: &'static str,
    templates: &'static [(&'static str, &'static str)],
    /// files beside chart/ (for -f and --set-file)
    files: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
}

const CHART: &str = "apiVersion: v2\nname: c\nversion: 0.1.0\n";

/// Prints a value the ways templates observe numbers.
const PROBE: &str = r#"{{- define "probe" -}}
{{ . }} | {{ printf "%T" . }} | {{ printf "%v %s %d" . . . }} | {{ kindOf . }} | {{ toString . }} | {{ quote . }} | {{ toJson . }} | {{ toYaml . }}
{{- end -}}
"#;

/// Probes every top-level value.
const PROBE_ALL: &str =
    "a: |\n{{- range $k, $v := .Values }}\n  {{ $k }}: {{ include \"probe\" $v }}\n{{- end }}\n";

const NUMBERS: &str = "big: 1000000\nsmall: 1\nzero: 0\nneg: -3\nf: 1.5\nexp: 1e3\nexpu: 2E6\ntiny: 0.000001\ntinier: 1e-7\nhuge: 1e21\nu64: 12345678901234567890\nover: 123456789012345678901234567890\nhex: 0x1F\noct: 017\noct12: 0o17\nbin: 0b101\nunder: 1_000\nplus: +5\ndot: .5\nnegzero: -0.0\nstr: \"12\"\nlist: [1, 2.5, 1000000]\nmap: {a: 1, b: 2.0}\n";

const CASES: &[Case] = &[
    Case {
        name: "values.yaml numbers",
        chart_yaml: CHART,
        values: NUMBERS,
        templates: &[("_p.tpl", PROBE), ("cm.yaml", PROBE_ALL)],
        files: &[],
        args: &[],
    },
    Case {
        name: "values as a whole document",
        chart_yaml: CHART,
        values: NUMBERS,
        templates: &[(
            "cm.yaml",
            "y:\n{{ toYaml .Values | indent 2 }}\nj: {{ toJson .Values | quote }}\npj: {{ toPrettyJson .Values | quote }}\nraw: {{ toRawJson .Values | quote }}\nv: {{ .Values | quote }}\n",
        )],
        files: &[],
        args: &[],
    },
    Case {
        name: "sprig arithmetic on values",
        chart_yaml: CHART,
        values: "big: 1000000\nsmall: 3\nf: 2.5\nneg: -7\ns: \"42\"\n",
        templates: &[(
            "cm.yaml",
            r#"add: {{ add .Values.small 1 }} {{ printf "%T" (add .Values.small 1) }}
add1: {{ add1 .Values.big }}
sub: {{ sub .Values.big .Values.small }}
mul: {{ mul .Values.f 2 }} {{ mul .Values.big .Values.big }}
div: {{ div .Values.big 3 }} {{ div .Values.f 2 }}
mod: {{ mod .Values.big 7 }}
max: {{ max .Values.small 2 .Values.f }} {{ printf "%T" (max .Values.small 2) }}
min: {{ min .Values.small 2 .Values.neg }}
maxf: {{ maxf .Values.small 2.75 }} minf: {{ minf .Values.f 1 }}
addf: {{ addf .Values.f 1 }} {{ printf "%T" (addf .Values.f 1) }}
subf: {{ subf .Values.big 0.5 }} mulf: {{ mulf .Values.f 3 }} divf: {{ divf .Values.big 3 }}
floor: {{ floor .Values.f }} ceil: {{ ceil .Values.f }} round: {{ round .Values.f 0 }} {{ round 2.675 2 }}
int: {{ int .Values.big }} {{ printf "%T" (int .Values.big) }} {{ int .Values.f }} {{ int .Values.s }}
int64: {{ int64 .Values.big }} {{ printf "%T" (int64 .Values.f) }}
float64: {{ float64 .Values.small }} {{ printf "%T" (float64 .Values.s) }} {{ float64 .Values.big }}
atoi: {{ atoi "12" }} toDecimal: {{ toDecimal "0777" }}
until: {{ until (int .Values.small) }} seq: {{ seq 3 }}
len: {{ len (until 4) }} {{ printf "%T" (len (list 1)) }}
default: {{ default 5 .Values.nope }} {{ printf "%T" (default 5 .Values.nope) }} {{ default 5 .Values.small }}
empty: {{ empty 0.0 }} {{ empty .Values.small }}
ternary: {{ ternary .Values.big 2 true }}
lit: {{ 1000000 }} {{ 1e6 }} {{ printf "%T %T %T %T" 1000000 1e6 1.0 0x10 }} {{ 0x10 }} {{ 1.0 }} {{ -0.5 }} {{ 'a' }}
cmp: {{ gt .Values.big 10.0 }} {{ lt .Values.f 3.0 }} {{ eq .Values.small 3.0 }}
str: {{ .Values.s | int | add 1 }}
"#,
        )],
        files: &[],
        args: &[],
    },
    Case {
        name: "eq of a float64 value with an int literal fails as in Go",
        chart_yaml: CHART,
        values: "n: 1\n",
        templates: &[("cm.yaml", "x: {{ eq .Values.n 1 }}\n")],
        files: &[],
        args: &[],
    },
    Case {
        name: "printf %d of a values number",
        chart_yaml: CHART,
        values: "port: 8080\n",
        templates: &[(
            "cm.yaml",
            "a: |\n  port: {{ printf \"%d\" .Values.port }}\n  x: {{ printf \"%d\" (int .Values.port) }} {{ printf \"%v %s %q %x %5.1f\" .Values.port .Values.port .Values.port .Values.port .Values.port }}\n",
        )],
        files: &[],
        args: &[],
    },
    Case {
        name: "--set keeps integers int64 and the rest strings",
        chart_yaml: CHART,
        values: "keep: 2\n",
        templates: &[("_p.tpl", PROBE), ("cm.yaml", PROBE_ALL)],
        files: &[],
        args: &[
            "--set",
            "i=1,big=1000000,f=1.5,e=1e3,t=true,F=FALSE,n=null,z=0,oct=007,neg=-5,plus=+5,hex=0x10",
            "--set",
            "list={1,2.5,x},m.k=3,idx[1]=4",
            "--set",
            "huge=99999999999999999999",
        ],
    },
    Case {
        name: "--set-string, --set-json and --set-file",
        chart_yaml: CHART,
        values: "",
        templates: &[("_p.tpl", PROBE), ("cm.yaml", PROBE_ALL)],
        files: &[("n.txt", "12\n")],
        args: &[
            "--set-string",
            "s=1,t=true",
            "--set-json",
            "j=1",
            "--set-json",
            "jo={\"x\":1.5,\"y\":[1,2],\"z\":1e6,\"w\":12345678901234567890}",
            "--set-json",
            "ja=[1000000]",
            "--set-file",
            "file=n.txt",
        ],
    },
    Case {
        name: "-f files override with float64 numbers",
        chart_yaml: CHART,
        values: "a: 1\nb: {c: 2}\n",
        templates: &[
            ("_p.tpl", PROBE),
            (
                "cm.yaml",
                "a: {{ include \"probe\" .Values.a }}\nc: {{ include \"probe\" .Values.b.c }}\nd: {{ include \"probe\" .Values.b.d }}\n",
            ),
        ],
        files: &[("over.yaml", "a: 1000000\nb: {d: 7}\n")],
        args: &["-f", "over.yaml"],
    },
    Case {
        name: "fromYaml and fromJson",
        chart_yaml: CHART,
        values: "",
        templates: &[
            ("_p.tpl", PROBE),
            (
                "cm.yaml",
                r#"{{- $y := fromYaml "a: 1\nb: 1.5\nc: 1000000\nd: [1, 2]\ne: yes\nf: 0x10" -}}
{{- $j := fromJson "{\"a\":1,\"c\":1000000,\"d\":[1,2]}" -}}
ya: {{ include "probe" $y.a }}
yc: {{ include "probe" $y.c }}
yd: {{ $y.d }} {{ printf "%T" (index $y.d 0) }}
ye: {{ include "probe" $y.e }}
yf: {{ include "probe" $y.f }}
ja: {{ include "probe" $j.a }}
jc: {{ include "probe" $j.c }}
arr: {{ fromYamlArray "[1, 2.5]" }} {{ fromJsonArray "[1000000]" }}
"#,
            ),
        ],
        files: &[],
        args: &[],
    },
    Case {
        name: "YAML 1.1 scalars in values",
        chart_yaml: CHART,
        values: "y: yes\nn: no\non: on\noff: off\nY: Y\nt: True\nnul: ~\nnul2: null\nempty:\ndate: 2024-01-02\nts: 2024-01-02T10:00:00Z\nver: 1.10\nsemver: 1.2.3\n",
        templates: &[("_p.tpl", PROBE), ("cm.yaml", PROBE_ALL)],
        files: &[],
        args: &[],
    },
    Case {
        name: "Chart.yaml numbers",
        chart_yaml: "apiVersion: v2\nname: c\nversion: 0.1.0\nappVersion: 1.10\nannotations:\n  n: \"1\"\n",
        values: "",
        templates: &[(
            "cm.yaml",
            "app: {{ .Chart.AppVersion }} {{ printf \"%T\" .Chart.AppVersion }}\nann: {{ .Chart.Annotations }}\nrev: {{ .Release.Revision }} {{ printf \"%T\" .Release.Revision }}\n",
        )],
        files: &[],
        args: &[],
    },
    Case {
        name: "Chart.yaml integer appVersion",
        chart_yaml: "apiVersion: v2\nname: c\nversion: 0.1.0\nappVersion: 2\n",
        values: "",
        templates: &[("cm.yaml", "app: {{ .Chart.AppVersion | quote }}\n")],
        files: &[],
        args: &[],
    },
    Case {
        name: "subchart values and globals stay float64",
        chart_yaml: "apiVersion: v2\nname: c\nversion: 0.1.0\ndependencies:\n- name: sub\n  version: 0.1.0\n",
        values: "global: {g: 10}\nsub: {x: 1000000}\n",
        templates: &[(
            "cm.yaml",
            "a: |\n  x: {{ .Values.sub.x }} g: {{ .Values.global.g }}\n",
        )],
        files: &[
            (
                "chart/charts/sub/Chart.yaml",
                "apiVersion: v2\nname: sub\nversion: 0.1.0\n",
            ),
            ("chart/charts/sub/values.yaml", "x: 1\ny: 2.0\n"),
            (
                "chart/charts/sub/templates/cm.yaml",
                "a: |\n  sub: {{ .Values.x }} {{ .Values.y }} {{ printf \"%T\" .Values.y }} {{ .Values.global.g }}\n",
            ),
        ],
        args: &[],
    },
    Case {
        name: "schema types with float64 values",
        chart_yaml: CHART,
        values: "replicas: 3\nratio: 0.5\n",
        templates: &[("cm.yaml", "r: {{ .Values.replicas }}\n")],
        files: &[(
            "chart/values.schema.json",
            "{\"type\":\"object\",\"properties\":{\"replicas\":{\"type\":\"integer\",\"minimum\":1},\"ratio\":{\"type\":\"number\"}}}",
        )],
        args: &[],
    },
    Case {
        name: "semver objects and comparisons of values numbers",
        chart_yaml: CHART,
        values: "num: 3\nf: 2.5\n",
        templates: &[(
            "cm.yaml",
            r#"a: |
  {{ semver "1.2.3" | toJson }} {{ semver "v1.2.3-rc.1+b5" }} {{ (semver "1.2").Minor }} {{ printf "%T" (semver "1.2.3") }} {{ (semver "1.2.3").Original }} {{ kindOf (semver "1") }}
  {{ (semver "1.2.3").LessThan (semver "1.3.0") }} {{ (semver "2.0.0").Compare (semver "1.0.0") }} {{ semver "1.2.3" | toYaml }}
  {{ eq .Values.num 3.0 }} {{ ne .Values.f 2.5 }} {{ lt .Values.num 4.5 }} {{ gt .Values.num 1.0 }}
"#,
        )],
        files: &[],
        args: &[],
    },
    Case {
        name: "comparing a values number with an int literal fails as in Go 1.25",
        chart_yaml: CHART,
        values: "num: 3\n",
        templates: &[("cm.yaml", "a: {{ lt .Values.num 4 }}\n")],
        files: &[],
        args: &[],
    },
    Case {
        name: "a values number where an int parameter is wanted",
        chart_yaml: CHART,
        values: "num: 3\n",
        templates: &[("cm.yaml", "a: {{ until .Values.num }}\n")],
        files: &[],
        args: &[],
    },
    Case {
        name: "coalescing warnings on stderr",
        chart_yaml: CHART,
        values: "ann: {a: 1}\nlist: [1]\nsub: {x: {y: 1}}\n",
        templates: &[("cm.yaml", "a: |\n  {{ toJson .Values }}\n")],
        files: &[("over.yaml", "ann: \"\"\nlist: {k: v}\nsub: {x: 3}\n")],
        args: &["-f", "over.yaml"],
    },
    Case {
        name: "regexMatch with Go's class syntax",
        chart_yaml: CHART,
        values: "",
        templates: &[(
            "cm.yaml",
            r#"a: {{ regexMatch "^[\\w-\\.]+$" "a-b.c" }}
b: {{ regexMatch "^[\\w-]+$" "a_b" }}
c: {{ regexFind "[[:alpha:]]+" "12abc34" }}
d: {{ regexReplaceAll "(?P<x>a)" "aa" "${x}b" }}
e: {{ regexMatch "\\Qa.b\\E" "a.b" }}
f: {{ regexSplit "\\s+" "a b  c" -1 }}
g: {{ regexMatch "^\\pL+$" "héllo" }}
h: {{ regexFindAll "[a-c-e]" "a-e" -1 }}
"#,
        )],
        files: &[],
        args: &[],
    },
    Case {
        name: "regexMatch error from Go's parser",
        chart_yaml: CHART,
        values: "",
        templates: &[("cm.yaml", "a: {{ regexMatch \"a(b\" \"ab\" }}\n")],
        files: &[],
        args: &[],
    },
    Case {
        name: "mustRegexMatch error from Go's parser",
        chart_yaml: CHART,
        values: "",
        templates: &[("cm.yaml", "a: {{ mustRegexMatch \"a**\" \"ab\" }}\n")],
        files: &[],
        args: &[],
    },
    Case {
        name: "leading blank and comment-only documents",
        chart_yaml: CHART,
        values: "on: true\n",
        templates: &[
            ("a.yaml", "\n\n---\nkind: A\n"),
            ("b.yaml", "{{- if .Values.on }}\n---\nkind: B\n{{- end }}\n"),
            ("c.yaml", "# only a comment\n"),
            ("d.yaml", "---\n---\nkind: D\n---\n"),
            ("e.yaml", "  \n\nkind: E\n"),
        ],
        files: &[],
        args: &[],
    },
];

/// How keel's run differs from Helm's, if it does: exit code, then the error
/// message for failures, else stdout byte for byte.
fn differs(name: &str, h: &std::process::Output, k: &std::process::Output) -> Option<String> {
    let (hout, kout) = (
        String::from_utf8_lossy(&h.stdout),
        String::from_utf8_lossy(&k.stdout),
    );
    let (herr, kerr) = (
        String::from_utf8_lossy(&h.stderr),
        String::from_utf8_lossy(&k.stderr),
    );
    if h.status.code() != k.status.code() {
        return Some(format!(
            "  {name}: exit code keel {:?}, helm {:?}\n      helm: {}\n      keel: {}",
            k.status.code(),
            h.status.code(),
            herr.trim_end(),
            kerr.trim_end()
        ));
    }
    if !h.status.success() {
        let (he, ke) = (helm_error(&herr), keel_error(&kerr));
        return (he != ke)
            .then(|| format!("  {name}: error differs\n      helm: {he}\n      keel: {ke}"));
    }
    if hout != kout {
        return Some(format!("  {name}: {}", first_difference(&hout, &kout)));
    }
    // warnings, as sets (Helm's order is Go's map order)
    let sorted = |s: &str| {
        let mut l: Vec<&str> = s.lines().collect();
        l.sort_unstable();
        l.join("\n")
    };
    (sorted(&herr) != sorted(&kerr))
        .then(|| format!("  {name}: stderr differs\n      helm: {herr:?}\n      keel: {kerr:?}"))
}

fn write_case(dir: &Path, c: &Case) {
    let chart = dir.join("chart");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(chart.join("Chart.yaml"), c.chart_yaml).unwrap();
    std::fs::write(chart.join("values.yaml"), c.values).unwrap();
    for (name, text) in c.templates {
        std::fs::write(chart.join("templates").join(name), text).unwrap();
    }
    for (name, text) in c.files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

#[test]
fn small_charts_render_as_helm_4_1_4_renders_them() {
    let home = tempfile::tempdir().unwrap();
    let mut bad = Vec::new();
    for c in CASES {
        let dir = tempfile::tempdir().unwrap();
        write_case(dir.path(), c);
        let mut args: Vec<String> = vec!["rel".into(), "chart/".into()];
        args.extend(c.args.iter().map(ToString::to_string));
        let h = helm_template(dir.path(), home.path(), &args);
        let k = keel_template(dir.path(), &args);
        bad.extend(differs(c.name, &h, &k));
    }
    assert!(
        bad.is_empty(),
        "{} of {} cases differ from Helm 4.1.4:\n{}",
        bad.len(),
        CASES.len(),
        bad.join("\n")
    );
}

/// keel's own test charts (crates/keel-chart/tests/charts and the
/// `keel chart create` scaffold) with the flags tests/golden.rs uses: the
/// keel-made snapshots there are regression guards; this is their evidence.
#[test]
fn keel_test_charts_render_as_helm_4_1_4_renders_them() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["chart", "create", "mychart"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let charts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../keel-chart/tests/charts");
    let c = |n: &str| charts.join(n).to_string_lossy().into_owned();
    let scenarios: Vec<Vec<String>> = vec![
        vec!["release-name".into(), "mychart".into()],
        vec![
            "web".into(),
            "mychart".into(),
            "-n".into(),
            "prod".into(),
            "--set".into(),
            "ingress.enabled=true,autoscaling.enabled=true,serviceAccount.create=false".into(),
            "--set".into(),
            "ingress.tls[0].secretName=tls,ingress.tls[0].hosts={a.example.com,b.example.com}"
                .into(),
            "--set".into(),
            "podAnnotations.checksum=abc,service.type=NodePort".into(),
        ],
        vec![
            "web".into(),
            "mychart".into(),
            "-n".into(),
            "prod".into(),
            "-s".into(),
            "templates/service.yaml".into(),
            "-s".into(),
            "templates/tests/*".into(),
        ],
        vec![
            "prod".into(),
            c("webapp"),
            "-n".into(),
            "shop".into(),
            "--include-crds".into(),
        ],
        vec![
            "canary".into(),
            c("webapp"),
            "-n".into(),
            "shop".into(),
            "--skip-tests".into(),
            "--is-upgrade".into(),
            "-f".into(),
            c("webapp-overrides.yaml"),
            "--set".into(),
            "redis.enabled=false".into(),
            "--set".into(),
            "tags.observability=true".into(),
            "--set-string".into(),
            "monitoring.interval=10".into(),
            "--set-json".into(),
            r#"ingress.paths=["/v2"]"#.into(),
        ],
        vec![
            "demo".into(),
            c("libuser"),
            "--set".into(),
            "database.url=postgres://db:5432/app".into(),
        ],
        vec!["demo".into(), c("libuser")],
        vec!["op".into(), c("operator"), "-n".into(), "ops".into()],
        vec![
            "op".into(),
            c("operator"),
            "-n".into(),
            "ops".into(),
            "--kube-version".into(),
            "1.20.4".into(),
        ],
        vec![
            "prod".into(),
            c("webapp"),
            "--kube-version".into(),
            "1.24".into(),
        ],
        // one failure per run: with several, Helm's order follows Go's random map order
        vec![
            "prod".into(),
            c("webapp"),
            "--set".into(),
            "replicaCount=0".into(),
        ],
        vec![
            "prod".into(),
            c("webapp"),
            "--set".into(),
            "image.pullPolicy=Sometimes".into(),
        ],
        vec![
            "prod".into(),
            c("webapp"),
            "--set".into(),
            "service.port=70000".into(),
        ],
        vec![
            "prod".into(),
            c("webapp"),
            "--set-string".into(),
            "replicaCount=3".into(),
        ],
        vec![
            "prod".into(),
            c("webapp"),
            "-s".into(),
            "templates/nope.yaml".into(),
        ],
        vec!["Bad_Name".into(), c("webapp")],
        vec!["prod".into(), c("webapp"), "--set".into(), "a.b".into()],
        vec!["prod".into(), c("webapp"), "--set".into(), "x=1,y".into()],
    ];
    let mut bad = Vec::new();
    for args in &scenarios {
        let h = helm_template(dir.path(), home.path(), args);
        let k = keel_template(dir.path(), args);
        bad.extend(differs(&args.join(" "), &h, &k));
    }
    assert!(
        bad.is_empty(),
        "{} of {} runs differ from Helm 4.1.4:\n{}",
        bad.len(),
        scenarios.len(),
        bad.join("\n")
    );
}

/// The values flags and their failures, on a chart that prints `.Values`.
#[test]
fn values_flags_read_and_fail_as_helm_4_1_4_does() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_case(
        dir.path(),
        &Case {
            name: "flags",
            chart_yaml: CHART,
            values: "base: 1\n",
            templates: &[("cm.yaml", "x: |\n  {{ toJson .Values }}\n")],
            files: &[
                ("n.txt", "12\n"),
                ("multi.yaml", "a: 1\n---\nb: {c: 2}\n---\nb: {d: 3}\n"),
            ],
            args: &[],
        },
    );
    let runs: &[&[&str]] = &[
        &["--set-json", "a=1,b=[1,2]"],
        &["--set-json", r#"a={"x":1},b=2"#],
        &["--set-json", "a=1", "--set-json", "b=true"],
        &["--set-literal", r"a=1,b=x\,y"],
        &["--set", "a={}", "--set-string", "s={}"],
        &["--set", "a[1]=x,a[0]=y", "--set", "b.c=1,b=2"],
        &["-f", "multi.yaml"],
        &["--set-file", "f=n.txt"],
        &["--set-json", "a"],
        &["--set-json", "a=[1"],
        &["--set-json", "a=1,b"],
        &["--set-file", "a=nope.txt"],
        &["-f", "nope.yaml"],
        &["-f", "chart"],
        &["--set", "a.b"],
        &["--set-string", "a"],
        &["--set-literal", "a"],
        &["--set-file", "a"],
        &["--set", "a[x]=1"],
    ];
    let mut bad = Vec::new();
    for extra in runs {
        let mut args: Vec<String> = vec!["rel".into(), "chart/".into()];
        args.extend(extra.iter().map(ToString::to_string));
        let h = helm_template(dir.path(), home.path(), &args);
        let k = keel_template(dir.path(), &args);
        bad.extend(differs(&extra.join(" "), &h, &k));
    }
    assert!(
        bad.is_empty(),
        "{} of {} runs differ from Helm 4.1.4:\n{}",
        bad.len(),
        runs.len(),
        bad.join("\n")
    );
}
