//! The parser, the expander and the ignore matcher never panic, whatever the input.

use keel_dockerfile::{Dockerfile, Ignore, NoEnv, Options, expand, expand_words, parse};
use proptest::prelude::*;

/// Text built from the characters that matter to the grammars, so that
/// random inputs reach deep into them, mixed with arbitrary Unicode.
fn tricky() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("RUN ".to_string()),
        Just("FROM ".to_string()),
        Just("COPY ".to_string()),
        Just("ONBUILD ".to_string()),
        Just("HEALTHCHECK ".to_string()),
        Just("ENV ".to_string()),
        Just("ARG ".to_string()),
        Just("--mount=type=cache,target=/x ".to_string()),
        Just("--from=a ".to_string()),
        Just("<<EOF".to_string()),
        Just("<<-'E'".to_string()),
        Just("EOF".to_string()),
        Just("\n".to_string()),
        Just("\\\n".to_string()),
        Just("# escape=`\n".to_string()),
        Just("[\"a\", \"b\"]".to_string()),
        Just("${a:-${b}}".to_string()),
        Just("**/".to_string()),
        "[ \\t\\\\`'\"$={}\\[\\]:?+*!#%/<-]{1,4}",
        "\\PC{0,6}",
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn parser_never_panics(src in tricky()) {
        let _ = parse(&src, "Dockerfile");
        let _ = Dockerfile::parse(&src, "Dockerfile");
        if let Ok(ast) = parse(&src, "Dockerfile") {
            let _ = ast.dump();
        }
    }

    #[test]
    fn parser_never_panics_on_any_string(src in "\\PC*") {
        let _ = Dockerfile::parse(&src, "Dockerfile");
    }

    #[test]
    fn expander_never_panics(word in tricky(), backtick in any::<bool>(), raw in any::<bool>(), skip in any::<bool>()) {
        let opts = Options {
            escape: if backtick { '`' } else { '\\' },
            raw_quotes: raw,
            raw_escapes: raw,
            skip_unset_env: skip,
            skip_process_quotes: false,
        };
        let env = vec![("a".to_string(), "x y".to_string())];
        let _ = expand(&word, &env, &opts);
        let _ = expand_words(&word, &NoEnv, &opts);
    }

    #[test]
    fn ignore_never_panics(src in tricky(), path in "[a-z/.*]{0,12}", dir in any::<bool>()) {
        if let Ok(ig) = Ignore::parse(&src, ".dockerignore") {
            let _ = ig.matches(&path, dir);
            let _ = ig.may_reinclude_below(&path);
        }
    }
}
