//! docker's argument order for commands that end in a container command
//! (`run IMAGE CMD…`, `create`, `exec CONTAINER CMD…`, `top`, compose's
//! `run`/`exec`): docker's parser (pflag without interspersed flags) stops
//! at the first positional, so `keel run busybox -l` runs `-l` in the
//! container. clap's `trailing_var_arg` only starts after the command's
//! first word, and would take a known flag (`-l`, `-e`, `-a`) there as its
//! own. [`docker_order`] puts a `--` right after the positionals that come
//! before such a command, reading which options take a value from clap's own
//! definition, so no flag list is repeated here.

use std::ffi::{OsStr, OsString};

use clap::{Arg, Command};

/// Whether `a` consumes the next word as its value (`--name web`); an option
/// whose value must be attached (`-i=false`) or is optional does not.
fn takes_next(a: &Arg) -> bool {
    a.get_action().takes_values()
        && !a.is_require_equals_set()
        && a.get_num_args().is_none_or(|r| r.min_values() > 0)
}

fn long<'a>(c: &'a Command, name: &str) -> Option<&'a Arg> {
    c.get_arguments().find(|a| {
        a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|al| al.contains(&name))
    })
}

fn short(c: &Command, ch: char) -> Option<&Arg> {
    c.get_arguments().find(|a| {
        a.get_short() == Some(ch) || a.get_all_short_aliases().is_some_and(|al| al.contains(&ch))
    })
}

/// How many words option `w` of command `c` spans (1, or 2 when its value
/// is the next word).
fn option_words(c: &Command, w: &str) -> usize {
    if let Some(name) = w.strip_prefix("--") {
        if name.contains('=') {
            return 1;
        }
        return long(c, name).map_or(1, |a| 1 + usize::from(takes_next(a)));
    }
    // A cluster of shorts (`-it`, `-p8080:80`): the first that takes a value
    // takes the rest of the word, or the next word if nothing is left.
    let chars: Vec<char> = w.chars().skip(1).collect();
    for (i, ch) in chars.iter().enumerate() {
        match short(c, *ch) {
            Some(a) if a.get_action().takes_values() => {
                let rest = i + 1 < chars.len();
                return if rest || !takes_next(a) { 1 } else { 2 };
            }
            Some(_) => {}
            None => return 1,
        }
    }
    1
}

/// The positionals a command takes before a trailing container command,
/// `None` when it has no such command.
fn leading_positionals(c: &Command) -> Option<usize> {
    let pos: Vec<&Arg> = c.get_positionals().collect();
    let last = pos.last()?;
    (last.is_trailing_var_arg_set() && pos.len() > 1).then_some(pos.len() - 1)
}

/// `args` (the program name first) with a `--` after the positionals that
/// precede a trailing container command, when anything follows them (a
/// `--` before them ends the options as usual).
pub fn docker_order(cli: &Command, args: Vec<OsString>) -> Vec<OsString> {
    let mut cmd = cli.clone();
    cmd.build();
    let mut c = &cmd;
    let mut i = 1;
    let mut seen = 0;
    while i < args.len() {
        let Some(w) = args[i].to_str() else {
            return args;
        };
        if w == "--" {
            return args;
        }
        if w.starts_with('-') && w.len() > 1 {
            i += option_words(c, w);
            continue;
        }
        if seen == 0
            && let Some(sub) = c.find_subcommand(OsStr::new(w))
        {
            c = sub;
            i += 1;
            continue;
        }
        let Some(n) = leading_positionals(c) else {
            return args;
        };
        seen += 1;
        i += 1;
        if seen == n {
            // A `--` of the user's after the image is the command's too,
            // as docker passes it on.
            if i < args.len() {
                let mut out = args;
                out.insert(i, OsString::from("--"));
                return out;
            }
            return args;
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn order(line: &str) -> String {
        let args = line.split(' ').map(OsString::from).collect();
        docker_order(&crate::Cli::command(), args)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_dash_after_the_image_belongs_to_the_command() {
        for (line, want) in [
            ("keel run busybox -l", "keel run busybox -- -l"),
            (
                "keel run --rm -e A=1 busybox -e X",
                "keel run --rm -e A=1 busybox -- -e X",
            ),
            (
                "keel --root /r container run -it --name w -p8080:80 img -a",
                "keel --root /r container run -it --name w -p8080:80 img -- -a",
            ),
            (
                "keel create --label k=v img ls -l",
                "keel create --label k=v img -- ls -l",
            ),
            (
                "keel exec -e X=1 web ls -la",
                "keel exec -e X=1 web -- ls -la",
            ),
            (
                "keel compose -p x run --rm web -e",
                "keel compose -p x run --rm web -- -e",
            ),
            (
                "keel compose exec -T web ls -l",
                "keel compose exec -T web -- ls -l",
            ),
            // Nothing after the image: unchanged; a `--` after it is the command's.
            ("keel run busybox", "keel run busybox"),
            ("keel run busybox -- -l", "keel run busybox -- -- -l"),
            ("keel run -- busybox -l", "keel run -- busybox -l"),
            // An image named like a subcommand is still the image.
            ("keel run ps -l", "keel run ps -- -l"),
            // Commands without a trailing container command are left alone.
            ("keel ps -a -l", "keel ps -a -l"),
            ("keel infra plan -var k=v", "keel infra plan -var k=v"),
            ("keel rm -f web", "keel rm -f web"),
        ] {
            assert_eq!(order(line), want, "{line}");
        }
    }
}
