//! Differential suite: the real `terraform console` (terraform 1.11 on this
//! machine) and keel's console evaluate the same expressions; values must
//! print identically, errors must fail with the same summary.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use keel_hcl::console::console_line;
use keel_hcl::funcs::Functions;

const EXPRS: &[&str] = &[
    // literals and numbers (512-bit floats)
    "1",
    "-0.5",
    "1/3",
    "2/3",
    "1/7",
    "10/4",
    "2e100",
    "1.0e-3",
    "0.1+0.2",
    "9007199254740993",
    "123456789012345678901234567890",
    "1/0",
    "11 % 5.1",
    "-7 % 3",
    "3.14159265358979323846264338327950288419716939937510582097494459 + 1",
    "true",
    "null",
    "\"a\\nb\"",
    "\"x\\ty\\\"q\"",
    "\"héllo ✓\"",
    "\"\\u00e9\"",
    // collections and structural types
    "[]",
    "{}",
    "[1,\"a\"]",
    "{a=1, b=[true]}",
    "{a={b=1}}",
    "{\"x y\" = 1}",
    "tolist([1,2])",
    "toset([\"b\",\"a\"])",
    "tomap({a=1})",
    "tolist([])",
    "toset([])",
    "tomap({})",
    "tolist([\"a\",null])",
    "tomap({a=1,b=\"x\"})",
    "toset([1,1,2])",
    "tolist([[1],[2,3]])",
    // operators
    "1 == 1",
    "1 == \"1\"",
    "[1] == [1]",
    "{a=1} != {a=2}",
    "\"5\" + 1",
    "!true",
    "-(3)",
    "1 < 2 && 2 <= 2",
    "false || true",
    "2 * 3 - 4 / 2",
    "true ? 1 : 2",
    "false ? \"a\" : 2",
    "true ? [1] : []",
    // templates, for, splat
    "\"a${1+1}b\"",
    "\"%{if true}y%{else}n%{endif}\"",
    "\"%{for x in [1,2,3]}${x},%{endfor}\"",
    "\"%{ for x in [1,2] ~} ${x} %{~ endfor }\"",
    "[for x in [1,2]: x*2]",
    "[for i, x in [\"a\",\"b\"]: \"${i}=${x}\"]",
    "{for k, v in {a=1,b=2}: v => k}",
    "{for x in [\"a\",\"b\",\"a\"]: x => x...}",
    "[for x in [1,2,3]: x if x > 1]",
    "[{a=1},{a=2}][*].a",
    "[{a=1},{a=2}].*.a",
    "tolist([{a=[1]},{a=[2]}])[*].a[0]",
    "null[*]",
    "{a=1}[*].a",
    "{a=1}.a",
    "{a=1}[\"a\"]",
    "[1,2][1]",
    "[[1,2]][0][1]",
    // errors
    "nosuch(1)",
    "[1][5]",
    "{a=1}.b",
    "null.a",
    "1 + \"x\"",
    "upper(1,2)",
    "upper()",
    "\"${null}\"",
    "true ? 1 : [1]",
    "[for x in 1: x]",
    "toset([1])[0]",
    "tonumber(\"a\")",
    "tobool(\"x\")",
    "tostring([1])",
    "tolist({a=1})",
    "{for x in [1,1]: x => x}",
    // sensitivity and unknowns
    "sensitive(1)",
    "{a=sensitive(1)}",
    "[sensitive(1), 2]",
    "sensitive(\"a\") == \"a\"",
    "upper(sensitive(\"a\"))",
    "nonsensitive(sensitive(1))",
    "issensitive(sensitive(1))",
    "issensitive(1)",
    // string functions
    "upper(\"x\")",
    "lower(\"ÀB\")",
    "title(\"hello world-foo_bar\")",
    "chomp(\"a\\n\\n\")",
    "trimspace(\"  a \\n\")",
    "trim(\"?!a?!\", \"!?\")",
    "trimprefix(\"helloworld\", \"hello\")",
    "trimsuffix(\"helloworld\", \"world\")",
    "strrev(\"abc\")",
    "substr(\"hello\", 1, 3)",
    "substr(\"hello\", -3, 2)",
    "substr(\"hello\", 0, -1)",
    "indent(2, \"a\\nb\")",
    "join(\",\", [\"a\",\"b\"], [\"c\"])",
    "split(\",\", \"a,b,,c\")",
    "split(\"\", \"abc\")",
    "replace(\"hello\", \"l\", \"L\")",
    "replace(\"hello\", \"/l+/\", \"<$0>\")",
    "startswith(\"hello\", \"he\")",
    "endswith(\"hello\", \"lo\")",
    "strcontains(\"hello\", \"ell\")",
    "regex(\"(\\\\d+)-(\\\\d+)\", \"10-20\")",
    "regex(\"(?P<a>\\\\d+)\", \"x12\")",
    "regex(\"[a-z]+\", \"12ab\")",
    "regexall(\"[a-z]+\", \"ab cd\")",
    "format(\"%5.2f|%-4d|%04d|%q|%v|%#v|%e\", 3.14159, 7, -7, \"x\", [1], {a=1}, 12345.678)",
    "format(\"%s-%d\", \"a\", 3)",
    "format(\"%t %x %X %o %b\", true, 255, 255, 8, 5)",
    "formatlist(\"%s=%s\", [\"a\",\"b\"], \"x\")",
    "length(\"héllo\")",
    "length([1,2])",
    "length({a=1})",
    // collection functions
    "element([1,2,3], 5)",
    "index([\"a\",\"b\"], \"b\")",
    "contains([1,2], 2)",
    "concat([1],[\"a\"])",
    "concat([1],[2])",
    "coalesce(\"\", \"b\")",
    "coalesce(null, 2)",
    "coalescelist([], [1])",
    "compact([\"a\",\"\",\"b\"])",
    "distinct([1,2,1])",
    "flatten([[1],[[2]],[]])",
    "keys({b=1,a=2})",
    "keys(tomap({a=1}))",
    "values({b=1,a=2})",
    "lookup({a=1},\"a\")",
    "lookup({a=1},\"b\",\"x\")",
    "lookup(tomap({a=\"1\"}),\"b\",\"x\")",
    "merge({a=1},{b=\"x\"})",
    "merge(tomap({a=1}),tomap({b=2}))",
    "one([])",
    "one([1])",
    "range(3)",
    "range(1,4)",
    "range(5,1)",
    "range(0,1,0.25)",
    "reverse([1,2])",
    "slice([1,2,3],1,2)",
    "sort([\"b\",\"a\",\"c\"])",
    "sum([1,2.5])",
    "transpose({a=[\"1\",\"2\"],b=[\"2\"]})",
    "zipmap([\"a\",\"b\"],[1,2])",
    "chunklist([1,2,3],2)",
    "matchkeys([\"a\",\"b\"],[1,2],[2])",
    "setunion([1],[2])",
    "setintersection([1,2],[2,3])",
    "setsubtract([1,2],[2])",
    "setproduct([\"a\",\"b\"],[\"x\"])",
    "alltrue([true,false])",
    "anytrue([true,false])",
    "max(1,5,3)",
    "min(1,5,3)",
    // numeric
    "abs(-1.5)",
    "ceil(1.2)",
    "floor(-1.2)",
    "log(8,2)",
    "pow(2,10)",
    "pow(2,0.5)",
    "signum(-3)",
    "parseint(\"ff\",16)",
    "parseint(\"-101\",2)",
    // encoding and hashing
    "base64encode(\"hello\")",
    "base64decode(\"aGVsbG8=\")",
    "base64sha256(\"hello\")",
    "base64sha512(\"a\")",
    "md5(\"a\")",
    "sha1(\"a\")",
    "sha256(\"a\")",
    "sha512(\"a\")",
    "urlencode(\"a b&c/d~\")",
    "jsonencode({b=1.5,a=\"<x>\",c=[null,true]})",
    "jsondecode(\"{\\\"a\\\":[1,\\\"x\\\",null]}\")",
    "yamlencode({a=1,b=\"c\",d=[1,true,null],e={}})",
    "yamlencode([\"a\\nb\", \"yes\"])",
    "yamldecode(\"a: 1\\nb: [x, 2]\")",
    "csvdecode(\"a,b\\n1,2\\n3,4\")",
    "textencodebase64(\"hi\",\"UTF-16LE\")",
    "textdecodebase64(\"aABpAA==\",\"UTF-16LE\")",
    "uuidv5(\"dns\",\"example.com\")",
    // dates and networks
    "formatdate(\"DD MMM YYYY hh:mm ZZZ\", \"2018-01-02T23:12:01Z\")",
    "formatdate(\"EEEE, MMMM D, YYYY h:mm aa\", \"2018-01-02T23:12:01-08:00\")",
    "timeadd(\"2017-11-22T00:00:00Z\", \"10m\")",
    "timeadd(\"2017-11-22T00:00:00Z\", \"-1h30m\")",
    "timecmp(\"2017-11-22T00:00:00Z\", \"2017-11-22T01:00:00+01:00\")",
    "cidrsubnet(\"10.1.2.0/24\", 4, 15)",
    "cidrhost(\"10.12.112.0/20\", 16)",
    "cidrhost(\"10.12.112.0/20\", -2)",
    "cidrhost(\"fd00:fd12:3456:7890::/56\", 16)",
    "cidrsubnets(\"10.1.0.0/16\", 4, 4, 8, 4)",
    "cidrnetmask(\"172.16.0.0/12\")",
    "cidrsubnet(\"fd00:fd12:3456:7890::/56\", 16, 162)",
    // type conversion
    "tostring(1)",
    "tostring(true)",
    "tonumber(\"1.5\")",
    "tobool(\"true\")",
    "tostring(null)",
    "tolist(null)",
    "type(1)",
    "type({a=[1]})",
    "type(tolist([\"a\"]))",
    // misc
    "try(tonumber(\"x\"), 3)",
    "can(1/\"x\")",
    "can(1)",
    "basename(\"/a/b.txt\")",
    "dirname(\"/a/b.txt\")",
    "dirname(\"b.txt\")",
];

fn terraform(dir: &std::path::Path, expr: &str) -> (bool, String) {
    // console takes the state lock: one directory per thread.
    let dir = &dir.join(format!("{:?}", std::thread::current().id()).replace(['(', ')'], ""));
    std::fs::create_dir_all(dir).expect("dir");
    terraform_in(dir, expr)
}

/// `terraform console` in `dir` (its configuration, if any) on `expr`:
/// success and the value printed, or failure and the error's summary.
fn terraform_in(dir: &std::path::Path, expr: &str) -> (bool, String) {
    let mut child = Command::new("terraform")
        .arg("console")
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("terraform 1.11 must be installed (scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{expr}\n").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("terraform console");
    if out.status.success() {
        (
            true,
            String::from_utf8_lossy(&out.stdout).trim_end().to_string(),
        )
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = regex::Regex::new("\x1b\\[[0-9;]*m")
            .expect("re")
            .replace_all(&err, "")
            .to_string();
        let summary = err
            .lines()
            .find_map(|l| l.split("Error: ").nth(1))
            .unwrap_or("")
            .trim()
            .to_string();
        (false, summary)
    }
}

#[test]
fn same_values_as_terraform_console() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("tfrc"), "").expect("tfrc");
    let funcs = Functions::terraform();
    let results: Vec<(String, (bool, String))> = std::thread::scope(|s| {
        let chunks: Vec<&[&str]> = EXPRS.chunks(EXPRS.len().div_ceil(3)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| {
                s.spawn(|| {
                    c.iter()
                        .map(|e| ((*e).to_string(), terraform(dir.path(), e)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut failures = Vec::new();
    for (expr, (ok, want)) in &results {
        let got = console_line(expr, &BTreeMap::new(), &funcs, dir.path());
        let same = match (&got, ok) {
            (Ok(v), true) => v == want,
            (Err(d), false) => d.0.first().is_some_and(|x| &x.summary == want),
            _ => false,
        };
        if !same {
            let got = match got {
                Ok(v) => v,
                Err(d) => format!(
                    "error: {}",
                    d.0.first().map(|x| x.summary.clone()).unwrap_or_default()
                ),
            };
            let want = if *ok {
                want.clone()
            } else {
                format!("error: {want}")
            };
            failures.push(format!("{expr}\n  terraform: {want}\n  keel:      {got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );
}

/// `rsadecrypt` against terraform on keys openssl makes (PKCS#1 and
/// PKCS#8 PEM) and ciphertexts openssl encrypts with PKCS#1 v1.5 padding.
#[test]
fn rsadecrypt_as_terraform_console() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("openssl");
        assert!(o.status.success(), "openssl {args:?}: {o:?}");
    };
    openssl(&["genrsa", "-traditional", "-out", "k1.pem", "2048"]);
    openssl(&["genpkey", "-algorithm", "RSA", "-out", "k8.pem"]);
    std::fs::write(d.join("msg"), "hello ✓").expect("msg");
    for k in ["k1", "k8"] {
        openssl(&[
            "pkey",
            "-in",
            &format!("{k}.pem"),
            "-pubout",
            "-out",
            &format!("{k}.pub"),
        ]);
        openssl(&[
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            &format!("{k}.pub"),
            "-in",
            "msg",
            "-out",
            &format!("{k}.ct"),
        ]);
    }
    let p = |f: &str| d.join(f).display().to_string();
    let exprs = [
        format!(
            "rsadecrypt(filebase64({:?}), file({:?}))",
            p("k1.ct"),
            p("k1.pem")
        ),
        format!(
            "rsadecrypt(filebase64({:?}), file({:?}))",
            p("k8.ct"),
            p("k8.pem")
        ),
        // The other key: PKCS#1 v1.5 unpadding fails.
        format!(
            "rsadecrypt(filebase64({:?}), file({:?}))",
            p("k8.ct"),
            p("k1.pem")
        ),
        format!("rsadecrypt(\"not base64!\", file({:?}))", p("k1.pem")),
        format!("rsadecrypt(filebase64({:?}), \"no key here\")", p("k1.ct")),
    ];
    let failures = differences(d, &Functions::terraform(), &exprs, terraform);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The expressions `run` (terraform console) and keel's console evaluate
/// differently: values must print the same, errors share their summary.
fn differences(
    d: &std::path::Path,
    funcs: &Functions,
    exprs: &[impl AsRef<str>],
    run: fn(&std::path::Path, &str) -> (bool, String),
) -> Vec<String> {
    let mut failures = Vec::new();
    for e in exprs {
        let e = e.as_ref();
        let (ok, want) = run(d, e);
        let got = console_line(e, &BTreeMap::new(), funcs, d);
        let same = match (&got, ok) {
            (Ok(v), true) => *v == want,
            (Err(x), false) => x.0.first().is_some_and(|x| x.summary == want),
            _ => false,
        };
        if !same {
            failures.push(format!("{e}\n  terraform: {ok} {want:?}\n  keel: {got:?}"));
        }
    }
    failures
}

/// The built-in `terraform` provider's functions (declared under the local
/// name `tf`) against terraform's, in a configuration that declares it.
#[test]
fn terraform_provider_functions_as_terraform_console() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(
        d.join("main.tf"),
        "terraform {\n  required_providers {\n    tf = { source = \"terraform.io/builtin/terraform\" }\n  }\n}\n",
    )
    .expect("main.tf");
    let init = Command::new("terraform")
        .args(["init", "-no-color"])
        .current_dir(d)
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .output()
        .expect("terraform init");
    assert!(init.status.success(), "{init:?}");
    let mut funcs = Functions::terraform();
    keel_hcl::funcs::tfprovider::register(&mut funcs, "tf");
    let exprs = [
        r#"provider::tf::encode_tfvars({a=1, bbb={x=1, yyy=[1,{z=2, "q r"=3}]}, c="$${x}%%{y}\t\u0001", d=[], e={}, f=1.5, g=true, h=null})"#,
        r#"provider::tf::encode_tfvars(tomap({b="1", a="2"}))"#,
        r"provider::tf::encode_tfvars({})",
        r"provider::tf::encode_tfvars(1)",
        r#"provider::tf::encode_tfvars({"a b"=1})"#,
        r"provider::tf::encode_tfvars(null)",
        r"provider::tf::encode_expr({a=1, bbb={x=1, yyy=[1,{z=2}]}, c=null, d=[], e={}, f=1e30, g=-0.25})",
        r#"provider::tf::encode_expr(toset(["b","a"]))"#,
        r#"provider::tf::encode_expr([[1,2],{}, "x\ny"])"#,
        r#"provider::tf::encode_expr("plain")"#,
        r#"provider::tf::decode_tfvars("a = 1\nb = [1, \"x\"]\nc = { d = true }")"#,
        r#"provider::tf::decode_tfvars("a = x")"#,
        r#"provider::tf::decode_tfvars("a = upper(\"x\")")"#,
        r#"provider::tf::decode_tfvars("a = ")"#,
        r#"provider::tf::decode_tfvars("b { }")"#,
        r"provider::nope::encode_expr(1)",
    ];
    let failures = differences(d, &funcs, &exprs, terraform_in);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
