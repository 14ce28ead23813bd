//! Quick in-process checks of console rendering (the differential suite
//! against the real terraform is `tests/terraform_console.rs`).

use std::collections::BTreeMap;

use keel_hcl::console::console_line;
use keel_hcl::funcs::Functions;

fn run(e: &str) -> String {
    let f = Functions::terraform();
    match console_line(e, &BTreeMap::new(), &f, std::path::Path::new(".")) {
        Ok(s) => s,
        Err(d) => format!("ERROR {}", d.0[0].summary),
    }
}

#[test]
fn basics() {
    for (e, want) in [
        ("1+1", "2"),
        ("\"a${1+1}b\"", "\"a2b\""),
        ("[for x in [1,2]: x*2]", "[\n  2,\n  4,\n]"),
        ("{for k, v in {a=1}: v => k}", "{\n  \"1\" = \"a\"\n}"),
        ("[{a=1},{a=2}][*].a", "[\n  1,\n  2,\n]"),
        ("tolist([{a=1},{a=2}])[*].a", "tolist([\n  1,\n  2,\n])"),
        ("true ? 1 : \"x\"", "\"1\""),
        ("upper(\"x\")", "\"X\""),
        ("\"%{ for x in [1,2] ~}\n${x}\n%{~ endfor }\"", "\"12\""),
        ("\"%{if true}y%{else}n%{endif}\"", "\"y\""),
        ("try(nosuch.x, 3)", "3"),
        ("can(1/\"x\")", "false"),
        ("sensitive(1) + 1", "(sensitive value)"),
        ("nosuch(1)", "ERROR Call to unknown function"),
    ] {
        assert_eq!(run(e), want, "{e}");
    }
}
