//! The parsers never panic, whatever they are handed (random text and
//! mutations of real workflow snippets).

use proptest::prelude::*;

use keel_ci::workflow::{ParseOptions, parse_with};

/// A caller with permissions, a called workflow, background steps, tags,
/// anchors and a block scalar: the paths GitHub's limits and checks take.
const CALLER: &str = "permissions:\n  actions: read\non: push\njobs:\n  c:\n    uses: o/r/.github/workflows/c.yml@v1\n    with:\n      n: !!int 3\n  s:\n    runs-on: [a]# x\n    steps:\n      - id: srv\n        run: &a |\n          x ${{ github.sha }}\n        background: true\n      - wait: [srv]\n      - wait-all:\n      - cancel: srv\n";
const CALLED: &str = "on:\n  workflow_call:\n    inputs:\n      n:\n        type: number\npermissions: write-all\njobs:\n  d:\n    permissions:\n      contents: write\n    uses: o/r/.github/workflows/c.yml@v1\n";

fn options(small: bool) -> ParseOptions {
    let mut o = ParseOptions::github();
    o.background_steps = true;
    if small {
        o.max_depth = 4;
        o.max_file_size = 300;
        o.max_result_size = 2_000;
        o.max_job_limit = 2;
        o.max_nested_reusable_depth = 3;
    }
    o
}

const SNIPPET: &str = "on:\n  push:\n    branches: [main]\njobs:\n  a:\n    runs-on: ubuntu-latest\n    strategy:\n      matrix:\n        x: [1, 2]\n    steps:\n      - run: echo ${{ matrix.x }}\n        if: success() && github.ref == 'x'\n  b:\n    needs: a\n    uses: ./.github/workflows/r.yml\n";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn expressions(src in "\\PC{0,60}") {
        let _ = keel_ci::expr::eval_str(&src, &keel_ci::expr::Object::new(), &[], &keel_ci::expr::NoFunctions);
    }

    #[test]
    fn expression_like(src in "[a-z()\\[\\]'.,!=<>&|* 0-9]{0,40}") {
        let mut ctx = keel_ci::expr::Object::new();
        ctx.insert("a", keel_ci::expr::Value::array(vec![keel_ci::expr::Value::Number(1.0)]));
        let _ = keel_ci::expr::eval_str(&src, &ctx, &[], &keel_ci::expr::NoFunctions);
    }

    #[test]
    fn workflows(src in "\\PC{0,200}") {
        let _ = keel_ci::workflow::parse("w.yml", &src);
    }

    #[test]
    fn mutated_workflows(pos in 0usize..SNIPPET.len(), junk in "[-:{}\\[\\]$'\" \\n#&*!|>a-z0-9]{0,8}") {
        let mut s = SNIPPET.to_string();
        let p = (0..=pos).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        s.insert_str(p, &junk);
        let _ = keel_ci::workflow::parse("w.yml", &s);
    }

    /// GitHub's limits, anchors refused, tags, background steps and
    /// reusable-workflow loading (permissions, nesting, job counts).
    #[test]
    fn mutated_reusable_calls(
        pos in 0usize..CALLER.len(),
        called_pos in 0usize..CALLED.len(),
        junk in "[-:{}\\[\\]$'\" \\n#&*!|>a-z0-9]{0,8}",
        small in any::<bool>(),
        anchors in any::<bool>(),
    ) {
        let insert = |text: &str, at: usize| {
            let mut s = text.to_string();
            let p = (0..=at).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
            s.insert_str(p, &junk);
            s
        };
        let (caller, called) = (insert(CALLER, pos), insert(CALLED, called_pos));
        let mut opts = options(small);
        opts.allow_anchors = anchors;
        if let Ok(wf) = parse_with("w.yml", &caller, &opts) {
            let _ = keel_ci::reusable::load(&wf, &opts, &mut |_| Some(called.clone()));
        }
    }

    #[test]
    fn dotnet_numbers(bits in any::<u64>()) {
        let n = f64::from_bits(bits);
        let s = keel_ci::expr::value::dotnet_g15(n);
        // 15 significant digits read back within rounding.
        if n.is_finite() {
            let back: f64 = s.parse().unwrap();
            prop_assert!((back - n).abs() <= n.abs() * 1e-14, "{n:e} -> {s}");
        }
    }

    #[test]
    fn runner_files(src in "\\PC{0,120}") {
        let _ = keel_ci::commands::parse_env_file(&src);
        let _ = keel_ci::commands::parse_command(&src);
        let _ = keel_ci::filters::selected(std::slice::from_ref(&src), "main");
    }
}
