//! Terraform-style flags (`-var k=v`, `-auto-approve`, `-lock=false`,
//! `--var=...`): Go's flag package accepts one or two dashes and `=` or a
//! separate value, and so does this parser.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

/// Parsed flags and positional arguments.
#[derive(Debug, Default)]
pub struct Flags {
    pub values: BTreeMap<String, Vec<String>>,
    pub bools: BTreeMap<String, bool>,
    pub args: Vec<String>,
}

impl Flags {
    /// `value_flags` take a value; `bool_flags` may be given as `-x` or `-x=false`.
    pub fn parse(raw: &[String], value_flags: &[&str], bool_flags: &[&str]) -> Result<Flags> {
        let mut f = Flags::default();
        let mut i = 0;
        while i < raw.len() {
            let a = &raw[i];
            i += 1;
            if a == "--" {
                f.args.extend(raw[i..].iter().cloned());
                break;
            }
            let Some(body) = a
                .strip_prefix("--")
                .or_else(|| a.strip_prefix('-'))
                .filter(|b| !b.is_empty() && a.len() > 1 && !a.starts_with("-="))
            else {
                f.args.push(a.clone());
                continue;
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            if value_flags.contains(&name.as_str()) {
                let v = match inline {
                    Some(v) => v,
                    None if i < raw.len() => {
                        i += 1;
                        raw[i - 1].clone()
                    }
                    None => bail!("flag needs an argument: -{name}"),
                };
                f.values.entry(name).or_default().push(v);
            } else if bool_flags.contains(&name.as_str()) {
                let b = match inline.as_deref() {
                    None | Some("true" | "1" | "t" | "T" | "TRUE" | "True") => true,
                    Some("false" | "0" | "f" | "F" | "FALSE" | "False") => false,
                    Some(other) => bail!("invalid boolean value {other:?} for -{name}"),
                };
                f.bools.insert(name, b);
            } else {
                bail!("flag provided but not defined: -{name}");
            }
        }
        Ok(f)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    pub fn flag(&self, name: &str, default: bool) -> bool {
        self.bools.get(name).copied().unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_flags() {
        let raw: Vec<String> = [
            "-var",
            "a=1",
            "--var=b=2",
            "-auto-approve",
            "-lock=false",
            "plan.out",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        let f = Flags::parse(&raw, &["var"], &["auto-approve", "lock"]).unwrap();
        assert_eq!(f.all("var"), vec!["a=1", "b=2"]);
        assert!(f.flag("auto-approve", false));
        assert!(!f.flag("lock", true));
        assert_eq!(f.args, vec!["plan.out"]);
        assert!(Flags::parse(&["-nope".to_string()], &[], &[]).is_err());
    }
}
