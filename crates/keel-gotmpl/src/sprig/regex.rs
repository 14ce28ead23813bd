//! sprig's regex.go: `regexMatch`, `regexFind…`, `regexReplace…`,
//! `regexSplit`, `regexQuoteMeta` and their `must…` forms.

use std::collections::HashMap;

use super::{int, s, strs, vstr};
use crate::funcs::{FuncDef, Ty, def};
use crate::value::Value;

pub(super) fn regex(re: &str) -> Result<regex::Regex, String> {
    // Go panics in MustCompile; the message differs in its details from RE2's.
    regex::Regex::new(re).map_err(|_| {
        format!(
            "regexp: Compile({}): error parsing regexp",
            crate::gofmt::quote(re)
        )
    })
}

pub(super) fn register(m: &mut HashMap<&'static str, FuncDef>) {
    use Ty::{Int, Str};
    let mut add = |n: &'static str, p: &[Ty], v: Option<Ty>, f: crate::funcs::PlainFn| {
        m.insert(n, def(p, v, f));
    };
    add("regexMatch", &[Str, Str], None, |a| {
        Ok(Value::Bool(
            regex(s(&a[0])).is_ok_and(|r| r.is_match(s(&a[1]))),
        ))
    });
    add("mustRegexMatch", &[Str, Str], None, |a| {
        Ok(Value::Bool(regex(s(&a[0]))?.is_match(s(&a[1]))))
    });
    let rfindall: crate::funcs::PlainFn = |a| {
        let re = regex(s(&a[0]))?;
        let n = int(&a[2]);
        let it = re.find_iter(s(&a[1])).map(|m| m.as_str().to_string());
        let v: Vec<String> = if n < 0 {
            it.collect()
        } else {
            it.take(n as usize).collect()
        };
        Ok(strs(v))
    };
    add("regexFindAll", &[Str, Str, Int], None, rfindall);
    add("mustRegexFindAll", &[Str, Str, Int], None, rfindall);
    let rfind: crate::funcs::PlainFn = |a| {
        vstr(
            regex(s(&a[0]))?
                .find(s(&a[1]))
                .map(|m| m.as_str().to_string())
                .unwrap_or_default(),
        )
    };
    add("regexFind", &[Str, Str], None, rfind);
    add("mustRegexFind", &[Str, Str], None, rfind);
    let rrepl: crate::funcs::PlainFn = |a| {
        vstr(
            regex(s(&a[0]))?
                .replace_all(s(&a[1]), s(&a[2]))
                .into_owned(),
        )
    };
    add("regexReplaceAll", &[Str, Str, Str], None, rrepl);
    add("mustRegexReplaceAll", &[Str, Str, Str], None, rrepl);
    let rrepll: crate::funcs::PlainFn = |a| {
        vstr(
            regex(s(&a[0]))?
                .replace_all(s(&a[1]), regex::NoExpand(s(&a[2])))
                .into_owned(),
        )
    };
    add("regexReplaceAllLiteral", &[Str, Str, Str], None, rrepll);
    add("mustRegexReplaceAllLiteral", &[Str, Str, Str], None, rrepll);
    let rsplit: crate::funcs::PlainFn = |a| {
        let re = regex(s(&a[0]))?;
        let n = int(&a[2]);
        let v: Vec<String> = match n {
            ..0 => re.split(s(&a[1])).map(str::to_string).collect(),
            0 => Vec::new(),
            _ => re
                .splitn(s(&a[1]), n as usize)
                .map(str::to_string)
                .collect(),
        };
        Ok(strs(v))
    };
    add("regexSplit", &[Str, Str, Int], None, rsplit);
    add("mustRegexSplit", &[Str, Str, Int], None, rsplit);
    add("regexQuoteMeta", &[Str], None, |a| {
        vstr(regex::escape(s(&a[0])))
    });
}
