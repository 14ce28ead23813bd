//! keel-gotmpl against Go itself: the corpus and random templates must render
//! byte for byte the same as Go's text/template + sprig (tests/goref).

#![allow(clippy::format_push_string, clippy::unreadable_literal)]

mod support;

use support::{Case, compare, parse_corpus};

#[test]
fn corpus_matches_go() {
    let text = include_str!("corpus/cases.txt");
    let cases = parse_corpus(text);
    assert!(cases.len() >= 300, "corpus has {} cases", cases.len());
    let bad = compare(&cases);
    assert!(
        bad.is_empty(),
        "{} of {} cases differ:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
}

/// A seeded generator of random templates over a fixed data set.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
    fn operand(&mut self, depth: u32) -> String {
        let r = self.next() % 10;
        if depth > 2 || r < 5 {
            return self
                .pick(&[
                    ".a", ".s", ".f", ".l", ".m", ".m.x", ".m.y", ".nope", ".t", ".e", "1", "2.5",
                    "\"x\"", "true", "$", ".sl", ".big", "0", "-1",
                ])
                .to_string();
        }
        let f = self.pick(&[
            "len",
            "not",
            "print",
            "upper",
            "quote",
            "default \"d\"",
            "eq 1",
            "lt 1",
            "and .t",
            "or .e",
            "index .l",
            "printf \"%v\"",
            "printf \"%5.2f|%x|%q\" 1.5 255",
            "trunc 3",
            "b64enc",
            "sha1sum",
            "kindOf",
            "typeOf",
            "toString",
            "splitList \",\"",
            "join \"-\"",
            "ternary 1 2",
            "coalesce .nope",
            "hasKey .m",
            "regexMatch \"^[a-z]+$\"",
            "semverCompare \">=1.0\"",
            "title",
            "repeat 2",
            "until",
            "html",
            "urlquery",
            "js",
            "toString",
            "toJson",
            "add 1",
            "empty",
            "first",
            "list 1",
            "dict \"k\"",
            "toYaml",
            "ne .a",
            "ge 2",
        ]);
        format!("({f} {})", self.operand(depth + 1))
    }
    fn pipeline(&mut self) -> String {
        let mut p = self.operand(0);
        for _ in 0..(self.next() % 3) {
            let f = self.pick(&[
                "print",
                "quote",
                "len",
                "not",
                "upper",
                "toString",
                "default 3",
                "printf \"<%v>\"",
                "eq 1",
                "toJson",
                "indent 2",
                "trim",
            ]);
            p = format!("{p} | {f}");
        }
        p
    }
    fn body(&mut self, depth: u32) -> String {
        let mut out = String::new();
        for _ in 0..=(self.next() % 3) {
            let r = self.next() % 10;
            match r {
                0..=3 => out.push_str(&format!("{{{{{}}}}}", self.pipeline())),
                4 if depth < 2 => out.push_str(&format!(
                    "{{{{if {}}}}}{}{{{{else}}}}{}{{{{end}}}}",
                    self.pipeline(),
                    self.body(depth + 1),
                    self.body(depth + 1)
                )),
                5 if depth < 2 => out.push_str(&format!(
                    "{{{{range $i, $v := {}}}}}{{{{$i}}}}:{}{{{{end}}}}",
                    self.pick(&[".l", ".m", ".sl", ".el", ".nope", ".a"]),
                    self.body(depth + 1)
                )),
                6 if depth < 2 => out.push_str(&format!(
                    "{{{{with {}}}}}{}{{{{end}}}}",
                    self.pipeline(),
                    self.body(depth + 1)
                )),
                7 => out.push_str(&format!("{{{{- {} -}}}}", self.pipeline())),
                8 if depth < 2 => out.push_str(&format!(
                    "{{{{$x := {}}}}}{{{{range $i, $e := .l}}}}{{{{if eq $e 2}}}}{{{{{}}}}}{{{{end}}}}{{{{$x}}}}{{{{$x = $i}}}}{}{{{{end}}}}{{{{$x}}}}",
                    self.pipeline(),
                    self.pick(&["break", "continue"]),
                    self.body(depth + 1)
                )),
                _ => out.push_str(self.pick(&["x", " ", "\n", "a b", "{", "}"])),
            }
        }
        out
    }
}

#[test]
fn random_templates_match_go() {
    let data = serde_json::json!({"a":1,"s":"hello","f":1.5,"big":1000000,"t":true,"e":"","l":[1,2,3],"sl":["b","a"],"el":[],"m":{"x":1,"y":"two"}});
    // KEEL_DIFF_SEED explores other random templates; the default keeps CI reproducible.
    let seed = std::env::var("KEEL_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15);
    let mut g = Gen(seed | 1);
    let mut cases = Vec::new();
    for i in 0..1500 {
        cases.push(Case {
            name: format!("random{i}"),
            tmpl: g.body(0),
            data: data.clone(),
            ints: i % 2 == 0,
            missing: if i % 3 == 0 {
                keel_gotmpl::MissingKey::Zero
            } else {
                keel_gotmpl::MissingKey::Invalid
            },
            loose_err: false,
        });
    }
    let bad = compare(&cases);
    assert!(
        bad.is_empty(),
        "{} of {} random cases differ:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
}
