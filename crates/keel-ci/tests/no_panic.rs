//! The parsers never panic, whatever they are handed (random text and
//! mutations of real workflow snippets).

use proptest::prelude::*;

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

    #[test]
    fn runner_files(src in "\\PC{0,120}") {
        let _ = keel_ci::commands::parse_env_file(&src);
        let _ = keel_ci::commands::parse_command(&src);
        let _ = keel_ci::filters::selected(std::slice::from_ref(&src), "main");
    }
}
