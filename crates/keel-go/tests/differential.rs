//! keel-go against Go itself: every primitive gets the same inputs (edge
//! cases and a few thousand proptest-generated ones per primitive) as the Go
//! program in tests/goref, and must give the same output, or the same error
//! text, byte for byte. Needs golang-go and golang-github-docker-go-units-dev
//! (scripts/lib.sh installs both); a missing Go fails the test.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::TestRunner;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    )
}

/// Builds the Go reference once per test process (tests run on threads).
fn goref() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goref/main.go");
        let dir = target_dir().join("keel-go-goref");
        std::fs::create_dir_all(&dir).expect("create goref dir");
        // Built under a per-process name, then renamed: parallel test
        // binaries cannot race (Go's build cache makes the rebuild cheap).
        let tmp = dir.join(format!("goref.{}", std::process::id()));
        let bin = dir.join("goref");
        let out = Command::new("go")
            .args(["build", "-o"])
            .arg(&tmp)
            .arg(&src)
            // Debian's GOPATH holds docker/go-units (golang-github-docker-go-units-dev).
            .env("GOPATH", "/usr/share/gocode")
            .env("GO111MODULE", "off")
            .env("GOCACHE", dir.join("cache"))
            .env("GOFLAGS", "")
            .output()
            .expect("run go build (is golang-go installed? see scripts/lib.sh)");
        assert!(
            out.status.success(),
            "building the Go reference failed (golang-github-docker-go-units-dev installed?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, &bin).expect("install goref");
        bin
    })
    .clone()
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex from goref"))
        .collect()
}

/// One request: an op and its (byte) arguments.
type Req = (&'static str, Vec<Vec<u8>>);

/// Go's answers, in order: `Ok(output)` or `Err(error text)`.
fn go(reqs: &[Req]) -> Vec<Result<String, String>> {
    let mut child = Command::new(goref())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start goref");
    let mut input = String::new();
    for (op, args) in reqs {
        input.push_str(op);
        for a in args {
            input.push('\t');
            input.push_str(&hex(a));
        }
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out: Vec<Result<String, String>> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| {
            let l = l.expect("read goref");
            let (tag, h) = l.split_once('\t').expect("goref answer");
            let text = String::from_utf8(unhex(h)).expect("goref output is UTF-8");
            if tag == "ok" { Ok(text) } else { Err(text) }
        })
        .collect();
    writer.join().unwrap().expect("write to goref");
    assert!(child.wait().unwrap().success(), "goref failed");
    assert_eq!(out.len(), reqs.len(), "goref answered every request");
    out
}

/// `n` values of a proptest strategy, deterministic across runs.
fn sample<S: Strategy>(s: S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| s.new_tree(&mut runner).expect("generate").current())
        .collect()
}

/// Runs `reqs` through Go and `ours`, and fails listing every difference.
fn compare(reqs: &[Req], ours: impl Fn(&Req) -> Result<String, String>) {
    let theirs = go(reqs);
    let mut diffs = Vec::new();
    for (r, want) in reqs.iter().zip(theirs) {
        let got = ours(r);
        if got != want {
            let args: Vec<String> =
                r.1.iter()
                    .map(|a| format!("{:?}", String::from_utf8_lossy(a)))
                    .collect();
            diffs.push(format!(
                "{} {}: go {want:?}, keel {got:?}",
                r.0,
                args.join(" ")
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {} differ from Go:\n{}",
        diffs.len(),
        reqs.len(),
        diffs
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn req1(op: &'static str, a: impl AsRef<[u8]>) -> Req {
    (op, vec![a.as_ref().to_vec()])
}

fn s(r: &Req, i: usize) -> &str {
    std::str::from_utf8(&r.1[i]).expect("UTF-8 argument")
}

#[test]
fn parse_duration_like_go() {
    let mut inputs: Vec<String> = [
        "",
        "0",
        "+0",
        "-0",
        "00",
        "0s",
        "1",
        "-",
        "+",
        ".",
        "-.",
        ".s",
        "+.s",
        "1.",
        "1.s",
        ".5s",
        "1.5h",
        "1.1h",
        "-1.5h",
        "1h1m1s",
        "1h-1m",
        "1s1s",
        "5 s",
        " 5s",
        "5s ",
        "3d",
        "3S",
        "1µs",
        "1μs",
        "1us",
        "2ms",
        "3ns",
        "9223372036854775807ns",
        "9223372036854775808ns",
        "-9223372036854775808ns",
        "-9223372036854775809ns",
        "2562047h47m16.854775807s",
        "2562047h47m16.854775808s",
        "-2562047h47m16.854775808s",
        "2562048h",
        "9223372036854775.807us",
        "9223372036854775807999ns",
        "0.000000000000000000001h",
        "1.00000000000000000000000001s",
        "0.9999999999999999999999999999h",
        "1e3s",
        "0x10s",
        "1_0s",
        "∞s",
        "1é",
        "1\"s",
        "1\\s",
        "1\u{7f}s",
        "1\ns",
        "1\u{b5}",
        ".0000000000000000000000000000000000001ns",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    inputs.extend(sample(
        r"[-+]?(([0-9]{0,21}(\.[0-9]{0,25})?)(ns|us|µs|μs|ms|s|m|h|d|M|))(([0-9]{0,4}(\.[0-9]{0,4})?)(ns|us|ms|s|m|h|)){0,3}",
        3000,
    ));
    inputs.extend(sample(r"\PC{0,8}", 500));
    inputs.extend(sample(r"[-+0-9.hms]{0,10}", 1000));
    let reqs: Vec<Req> = inputs.iter().map(|s| req1("dur", s)).collect();
    compare(&reqs, |r| {
        keel_go::parse_duration(s(r, 0))
            .map(|d| d.to_string())
            .map_err(|e| e.to_string())
    });
}

#[test]
fn format_duration_like_go() {
    let mut values: Vec<i64> = vec![
        0,
        1,
        -1,
        999,
        1_000,
        1_001,
        999_999,
        1_000_000,
        1_500_000,
        999_999_999,
        1_000_000_000,
        59_999_999_999,
        60_000_000_000,
        3_599_999_999_999,
        3_600_000_000_000,
        i64::MAX,
        i64::MIN,
        i64::MIN + 1,
    ];
    values.extend(sample(any::<i64>(), 1500));
    values.extend(sample(-10_000_000_000_000i64..10_000_000_000_000, 1500));
    values.extend(sample(-2_000_000i64..2_000_000, 500));
    let reqs: Vec<Req> = values
        .iter()
        .map(|v| req1("durstr", v.to_string()))
        .collect();
    compare(&reqs, |r| {
        Ok(keel_go::format_duration(s(r, 0).parse().unwrap()))
    });
}

/// Debian ships go-units 0.4.0 while docker vendors 0.5.0 (keel's grammar,
/// pinned by the v0.5.0 cases in units.rs). Both agree on
/// `digits[.digits]... [space] [unit [b|ib]]`, so that is what goes to Go:
/// the numbers, rounding, unit tables and int64 overflow are Go's.
#[test]
fn sizes_like_go_units() {
    let mut inputs: Vec<String> = [
        "0",
        "1",
        "1.5",
        "1.5.5",
        "1k",
        "1 k",
        "1 K",
        "1kb",
        "1KiB",
        "1m",
        "1g",
        "1t",
        "1p",
        "1P",
        "1b",
        "1 b",
        "1 ",
        "0.3MB",
        "32.3 mb",
        "8796093022207.99999t",
        "8192p",
        "8191.9999p",
        "9223372036854775807",
        "9223372036854775808",
        "99999999999999999999999999p",
        "0.0000000000000000001k",
        "000001.5k",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    inputs.extend(sample(
        r"[0-9]{1,22}(\.[0-9]{1,22}){0,2} ?([kmgtpKMGTP]([bB]|[iI][bB])?|[bB])?",
        3000,
    ));
    let mut reqs: Vec<Req> = inputs.iter().map(|s| req1("ram", s)).collect();
    reqs.extend(inputs.iter().map(|s| req1("fhs", s)));
    compare(&reqs, |r| {
        let f = if r.0 == "ram" {
            keel_go::ram_in_bytes
        } else {
            keel_go::from_human_size
        };
        f(s(r, 0)).map(|n| n.to_string()).map_err(|e| e.to_string())
    });
}

#[test]
#[allow(clippy::cast_precision_loss)] // any f64 will do
fn human_sizes_like_go_units() {
    let mut values: Vec<f64> = vec![
        0.0,
        1.0,
        999.0,
        999.5,
        999.4999,
        1000.0,
        1024.0,
        999_499.0,
        999_500.0,
        999_999.0,
        1_048_576.0,
        4_261_234.0,
        1e27,
        1e30,
        0.5,
        1e-5,
        f64::MAX,
    ];
    values.extend(sample(0.0f64..1e6, 800));
    values.extend(sample(0u64..u64::MAX, 800).into_iter().map(|v| v as f64));
    values.extend(sample(0u64..100_000_000, 800).into_iter().map(|v| v as f64));
    let mut reqs: Vec<Req> = Vec::new();
    for v in &values {
        let bits = format!("{:016x}", v.to_bits());
        for p in [1usize, 3, 4, 6] {
            reqs.push(("hsp", vec![bits.clone().into(), p.to_string().into()]));
        }
        reqs.push(req1("bytes", &bits));
    }
    compare(&reqs, |r| {
        let f = f64::from_bits(u64::from_str_radix(s(r, 0), 16).unwrap());
        Ok(if r.0 == "hsp" {
            keel_go::units::human_size_with_precision(f, s(r, 1).parse().unwrap())
        } else {
            keel_go::units::bytes_size(f)
        })
    });
}

#[test]
fn human_duration_like_go_units() {
    const S: i64 = 1_000_000_000;
    let mut values: Vec<i64> = vec![
        -S,
        0,
        999_999_999,
        S,
        59 * S,
        60 * S,
        119 * S,
        120 * S,
        3599 * S,
        5399 * S,
        5400 * S,
        5_400 * S - 1,
        47 * 3600 * S,
        48 * 3600 * S - 1,
        14 * 24 * 3600 * S,
        60 * 24 * 3600 * S,
        730 * 24 * 3600 * S,
        i64::MAX,
        i64::MIN,
    ];
    values.extend(sample(0i64..200_000 * S, 1500));
    values.extend(sample(0i64..800 * 24 * 3600 * S, 1000));
    values.extend(sample(any::<i64>(), 500));
    let reqs: Vec<Req> = values.iter().map(|v| req1("hdur", v.to_string())).collect();
    compare(&reqs, |r| {
        Ok(keel_go::units::human_duration(s(r, 0).parse().unwrap()))
    });
}

#[test]
fn path_clean_like_go() {
    let mut inputs: Vec<String> = [
        "",
        ".",
        "..",
        "/",
        "//",
        "///a",
        "a/",
        "a//b",
        "./a",
        "../a",
        "/..",
        "/../..",
        "a/..",
        "a/../..",
        "a/./b/../../c",
        "...",
        "a/...",
        "/a/b/c/../../../..",
        "é/./ü/..",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    inputs.extend(sample(r"[a./]{0,16}", 3000));
    inputs.extend(sample(r"(/|\.|\.\.|ab|é)(/|\.|\.\.|ab|é|//){0,8}", 1500));
    let reqs: Vec<Req> = inputs.iter().map(|s| req1("clean", s)).collect();
    compare(&reqs, |r| Ok(keel_go::path::clean(s(r, 0))));
}

#[test]
fn quote_like_go() {
    let mut strings: Vec<String> = [
        "",
        "a",
        "\"",
        "\\",
        "\u{0}\u{7}\u{8}\u{c}\n\r\t\u{b}\u{1b}\u{7f}",
        "\u{a0}\u{ad}\u{2028}",
        "\u{feff}\u{200b}\u{e000}\u{fffd}\u{ffff}",
        "\u{10ffff}\u{e0001}\u{1f600}",
        "☺ 日本語",
        "'",
        "`",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    strings.extend(sample(any::<String>(), 2000));
    strings.extend(sample(r"[\x00-\x7f]{0,12}", 1000));
    let mut bytes: Vec<Vec<u8>> = vec![
        b"\xff".to_vec(),
        b"a\xc3".to_vec(),
        b"\xc3\x28".to_vec(),
        b"\xed\xa0\x80".to_vec(),
        b"\xf4\x90\x80\x80".to_vec(),
        b"\xc0\x80".to_vec(),
        b"\xef\xbf\xbd".to_vec(),
        b"\xf0\x9f\x98".to_vec(),
    ];
    bytes.extend(sample(proptest::collection::vec(any::<u8>(), 0..24), 2000));
    let mut reqs: Vec<Req> = Vec::new();
    for s in &strings {
        reqs.push(req1("quote", s));
        reqs.push(req1("qascii", s));
    }
    reqs.extend(bytes.iter().map(|b| req1("quote", b)));
    let mut chars: Vec<char> = sample(any::<char>(), 2000);
    chars.extend(['\'', '"', '\\', '\0', '\u{7f}', '\u{ad}', '\u{10ffff}']);
    reqs.extend(chars.iter().map(|c| req1("qrune", (*c as u32).to_string())));
    compare(&reqs, |r| {
        Ok(match r.0 {
            "quote" => keel_go::quote_bytes(&r.1[0]),
            "qascii" => keel_go::strconv::quote_to_ascii(s(r, 0)),
            _ => keel_go::strconv::quote_rune(char::from_u32(s(r, 0).parse().unwrap()).unwrap()),
        })
    });
}

/// Every code point, so the generated table in src/isprint.rs is Go's.
#[test]
fn is_print_like_go() {
    let want = go(&[("isprint", vec![])]).remove(0).unwrap();
    let mut ranges = Vec::new();
    let mut start: Option<u32> = None;
    for c in 0..=0x11_0000u32 {
        let p = char::from_u32(c).is_some_and(keel_go::strconv::is_print);
        match (p, start) {
            (true, None) => start = Some(c),
            (false, Some(s)) => {
                ranges.push(format!("{s:x}-{:x}", c - 1));
                start = None;
            }
            _ => {}
        }
    }
    let got = ranges.join(",");
    if got != want {
        let path = target_dir().join("keel-go-isprint.txt");
        std::fs::write(&path, &want).unwrap();
        panic!(
            "strconv.IsPrint differs from Go's; Go's ranges are in {}",
            path.display()
        );
    }
}

#[test]
fn parse_float_like_go() {
    let mut inputs: Vec<String> = [
        "",
        "0",
        "-0",
        "+0",
        "1",
        "1.",
        ".5",
        ".",
        "1e",
        "1e+",
        "1e5",
        "1E-5",
        "1.e1",
        ".e1",
        "1_000",
        "1__0",
        "_1",
        "1_",
        "1_.5",
        "1._5",
        "0x",
        "0x1",
        "0x1p4",
        "0X1P-2",
        "0x.8p1",
        "0x1.p1",
        "0x_1p4",
        "0x1_0p0",
        "0x1.fffffffffffffp1023",
        "0x1.fffffffffffff8p1023",
        "0x1p-1074",
        "0x1p-1075",
        "0x1.8p-1075",
        "0x1p-1080",
        "0x123456789abcdef123p0",
        "inf",
        "+Inf",
        "-INF",
        "infinity",
        "-Infinity",
        "infin",
        "nan",
        "NaN",
        "+nan",
        "-nan",
        "1e400",
        "-1e400",
        "1e-400",
        "4.9e-324",
        "2.4703282292062328e-324",
        "2.4703282292062327e-324",
        "1.7976931348623158e308",
        "1.7976931348623159e308",
        "1e99999999999",
        "1e-99999999999",
        "00x1p1",
        "1e1_0",
        "1e_10",
        "0b101",
        "0o17",
        " 1",
        "1 ",
        "+-1",
        "1.5.5",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    inputs.extend(sample(
        r"[-+]?[0-9_]{0,20}(\.[0-9_]{0,20})?([eE][-+]?[0-9_]{1,4})?",
        2000,
    ));
    inputs.extend(sample(
        r"[-+]?0[xX][0-9a-fA-F_]{0,20}(\.[0-9a-fA-F_]{0,20})?([pP][-+]?[0-9]{1,4})?",
        2000,
    ));
    inputs.extend(sample(r"[-+.0-9eEinfatyINFATY_ ]{0,10}", 1000));
    let reqs: Vec<Req> = inputs.iter().map(|s| req1("pfloat", s)).collect();
    compare(&reqs, |r| {
        keel_go::strconv::parse_float(s(r, 0))
            .map(|f| {
                // Go's NaN has a payload bit Rust's has not; both are NaN.
                let bits = if f.is_nan() {
                    0x7ff8_0000_0000_0001
                } else {
                    f.to_bits()
                };
                format!("{bits:016x}")
            })
            .map_err(|e| e.to_string())
    });
}

#[test]
fn format_g_like_go() {
    let mut values: Vec<f64> = vec![
        0.0,
        -0.0,
        1.0,
        0.5,
        2.5,
        999.5,
        100.0,
        1e21,
        1e-5,
        0.0001,
        123_456_789.0,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    values.extend(sample(any::<f64>(), 1000));
    values.extend(sample(-1e7f64..1e7, 1000));
    values.extend(sample(0.0f64..1.0, 500));
    let mut reqs: Vec<Req> = Vec::new();
    for v in &values {
        for p in [0usize, 1, 2, 3, 4, 6, 10, 17] {
            reqs.push((
                "fmtg",
                vec![format!("{:016x}", v.to_bits()).into(), p.to_string().into()],
            ));
        }
    }
    compare(&reqs, |r| {
        let f = f64::from_bits(u64::from_str_radix(s(r, 0), 16).unwrap());
        Ok(keel_go::strconv::format_g(f, s(r, 1).parse().unwrap()))
    });
}
