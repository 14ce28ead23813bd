//! The Compose Specification's merge rules for several `-f` files and for
//! `extends`: mappings merge key by key, sequences merge per field the way
//! compose-go does (ports and plain lists as unions, volumes by target,
//! secrets/configs by target, command/entrypoint/healthcheck.test replaced),
//! `!override` replaces and `!reset` removes.

use crate::yaml::{Kind, Node, Tag};
use std::fmt::Write as _;

fn canon_key(n: &Node) -> String {
    let mut s = String::new();
    write_key(n, &mut s);
    s
}

fn write_key(n: &Node, out: &mut String) {
    match &n.kind {
        Kind::Scalar(_) => {
            let _ = write!(out, "{}|", n.scalar_text().unwrap_or_else(|| "~".into()));
        }
        Kind::Seq(items) => {
            out.push('[');
            for i in items {
                write_key(i, out);
            }
            out.push(']');
        }
        Kind::Map(m) => {
            out.push('{');
            for e in m {
                let _ = write!(out, "{}:", e.key);
                write_key(&e.value, out);
            }
            out.push('}');
        }
    }
}

/// What identifies an entry of a merged sequence; equal identities replace.
fn identity(path: &str, item: &Node) -> Option<String> {
    let field = |k: &str| item.get(k).and_then(Node::scalar_text);
    match path {
        "volumes" => field("target"),
        "secrets" | "configs" => field("target").or_else(|| field("source")),
        "env_file" => field("path"),
        _ => None,
    }
}

fn replaces(path: &str) -> bool {
    matches!(path, "command" | "entrypoint" | "healthcheck.test")
}

/// Merges `over` into `base`; `path` is the key path inside a service.
#[allow(clippy::single_match_else)]
pub fn merge(base: &mut Node, over: Node, path: &str) {
    if over.tag == Some(Tag::Override) {
        *base = strip(over);
        return;
    }
    match (&mut base.kind, over.kind) {
        (Kind::Map(bm), Kind::Map(om)) => {
            // logging with another driver starts over.
            if path == "logging" {
                let bd = bm
                    .iter()
                    .find(|e| e.key == "driver")
                    .and_then(|e| e.value.scalar_text());
                let od = om
                    .iter()
                    .find(|e| e.key == "driver")
                    .and_then(|e| e.value.scalar_text());
                if bd.is_some() && od.is_some() && bd != od {
                    bm.clear();
                }
            }
            for e in om {
                if e.value.tag == Some(Tag::Reset) {
                    bm.retain(|x| x.key != e.key);
                    continue;
                }
                let sub = if path.is_empty() {
                    e.key.clone()
                } else {
                    format!("{path}.{}", e.key)
                };
                match bm.iter_mut().find(|x| x.key == e.key) {
                    Some(x) => merge(&mut x.value, e.value, &sub),
                    None => {
                        let mut e = e;
                        e.value = strip(e.value);
                        bm.push(e);
                    }
                }
            }
        }
        (Kind::Seq(bs), Kind::Seq(os)) => {
            if replaces(path) {
                *bs = os.into_iter().map(strip).collect();
                return;
            }
            for item in os {
                let item = strip(item);
                if let Some(id) = identity(path, &item) {
                    if let Some(slot) = bs
                        .iter_mut()
                        .find(|b| identity(path, b).as_deref() == Some(id.as_str()))
                    {
                        *slot = item;
                    } else {
                        bs.push(item);
                    }
                } else {
                    let k = canon_key(&item);
                    if !bs.iter().any(|b| canon_key(b) == k) {
                        bs.push(item);
                    }
                }
            }
        }
        (Kind::Map(_), Kind::Scalar(crate::yaml::Scalar::Null)) => {}
        (_, kind) => {
            *base = strip(Node {
                kind,
                pos: over.pos,
                tag: over.tag,
            });
        }
    }
}

/// Drops `!reset` entries and clears tags (what remains when nothing is
/// underneath to reset).
pub fn strip(mut n: Node) -> Node {
    n.tag = None;
    match &mut n.kind {
        Kind::Map(m) => {
            m.retain(|e| e.value.tag != Some(Tag::Reset));
            for e in m.iter_mut() {
                e.value = strip(std::mem::replace(
                    &mut e.value,
                    Node::null(e.key_pos.clone()),
                ));
            }
        }
        Kind::Seq(items) => {
            items.retain(|i| i.tag != Some(Tag::Reset));
            let taken = std::mem::take(items);
            *items = taken.into_iter().map(strip).collect();
        }
        Kind::Scalar(_) => {}
    }
    n
}

/// Merges two whole files.
#[allow(clippy::single_match_else)]
pub fn merge_files(base: &mut Node, over: Node) {
    let Kind::Map(om) = over.kind else { return };
    for e in om {
        if e.value.tag == Some(Tag::Reset) {
            base.remove(&e.key);
            continue;
        }
        match e.key.as_str() {
            "services" | "networks" | "volumes" | "secrets" | "configs" => {
                let Some(entries) = e.value.as_map().cloned() else {
                    continue;
                };
                if base.get(&e.key).is_none() {
                    base.set(&e.key, Node::map(Vec::new(), e.value.pos.clone()));
                }
                let section = base.get_mut(&e.key).unwrap();
                for se in entries {
                    if se.value.tag == Some(Tag::Reset) {
                        section.remove(&se.key);
                        continue;
                    }
                    match section.get_mut(&se.key) {
                        Some(b) => merge(b, se.value, ""),
                        None => {
                            let v = strip(se.value);
                            section.set(&se.key, v);
                        }
                    }
                }
            }
            _ => match base.get_mut(&e.key) {
                Some(b) => merge(b, e.value, &e.key),
                None => base.set(&e.key, strip(e.value)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn p(s: &str) -> Node {
        crate::yaml::parse(s, &Arc::from("t")).unwrap()
    }

    #[test]
    fn rules() {
        let mut b = p(
            "command: [a, b]\nenvironment: {A: '1', B: '2'}\ncap_add: [X]\nvolumes: [{target: /d, source: a}]\n",
        );
        let o = p(
            "command: [c]\nenvironment: {B: '3', A: !reset null}\ncap_add: [X, Y]\nvolumes: [{target: /d, source: b}]\n",
        );
        merge(&mut b, o, "");
        assert_eq!(
            crate::normalize::to_value(&b),
            crate::normalize::to_value(&p(
                "command: [c]\nenvironment: {B: '3'}\ncap_add: [X, Y]\nvolumes: [{target: /d, source: b}]\n"
            ))
        );
        let mut b = p("ports: [a, b]\nlabels: {a: '1'}\n");
        merge(
            &mut b,
            p("ports: !reset []\nlabels: !override {b: '2'}\n"),
            "",
        );
        assert_eq!(
            crate::normalize::to_value(&b),
            crate::normalize::to_value(&p("labels: {b: '2'}\n"))
        );
    }
}
