//! Runner commands: `::name key=value::message` lines on a step's output and
//! the environment files (`GITHUB_ENV`, `GITHUB_OUTPUT`, `GITHUB_STATE`:
//! `NAME=value` or `NAME<<DELIMITER` heredocs; `GITHUB_PATH`: one path a line).

/// One `::command::` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub name: String,
    pub props: Vec<(String, String)>,
    pub message: String,
}

impl Command {
    pub fn prop(&self, key: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn unescape_data(s: &str) -> String {
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

fn unescape_prop(s: &str) -> String {
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
}

/// Parses a `::name props::message` line (leading whitespace allowed).
pub fn parse_command(line: &str) -> Option<Command> {
    let l = line.trim_start().strip_prefix("::")?;
    let end = l.find("::")?;
    let (head, message) = (&l[..end], &l[end + 2..]);
    let (name, props) = match head.find(' ') {
        Some(i) => (&head[..i], &head[i + 1..]),
        None => (head, ""),
    };
    if name.is_empty() {
        return None;
    }
    let props = props
        .split(',')
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_string(), unescape_prop(v)))
        })
        .collect();
    Some(Command {
        name: name.to_string(),
        props,
        message: unescape_data(message.trim_end_matches(['\r', '\n'])),
    })
}

/// Why an environment file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileCommandError {
    #[error("Invalid format '{0}'")]
    Format(String),
    #[error("Matching delimiter not found '{0}'")]
    Delimiter(String),
    #[error("Invalid environment variable name '{0}'")]
    Name(String),
}

/// Parses a `GITHUB_ENV`/`GITHUB_OUTPUT`/`GITHUB_STATE` file.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, FileCommandError> {
    let mut out = Vec::new();
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let eq = line.find('=');
        let heredoc = line.find("<<");
        match (eq, heredoc) {
            (Some(e), h) if h.is_none_or(|h| e < h) => {
                let name = &line[..e];
                if name.is_empty() {
                    return Err(FileCommandError::Format(line.to_string()));
                }
                out.push((name.to_string(), line[e + 1..].to_string()));
            }
            (_, Some(h)) => {
                let name = &line[..h];
                let delim = &line[h + 2..];
                if name.is_empty() || delim.is_empty() {
                    return Err(FileCommandError::Format(line.to_string()));
                }
                let mut value: Vec<&str> = Vec::new();
                let mut closed = false;
                for l in lines.by_ref() {
                    if l == delim {
                        closed = true;
                        break;
                    }
                    value.push(l);
                }
                if !closed {
                    return Err(FileCommandError::Delimiter(delim.to_string()));
                }
                out.push((name.to_string(), value.join("\n")));
            }
            _ => return Err(FileCommandError::Format(line.to_string())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let c = parse_command("::error file=app.js,line=1,title=A%2CB::Missing semicolon%0Aline2")
            .unwrap();
        assert_eq!(c.name, "error");
        assert_eq!(c.prop("file"), Some("app.js"));
        assert_eq!(c.prop("title"), Some("A,B"));
        assert_eq!(c.message, "Missing semicolon\nline2");
        assert_eq!(parse_command("::add-mask::x").unwrap().message, "x");
        assert_eq!(parse_command("::endgroup::").unwrap().name, "endgroup");
        assert!(parse_command(":: no").is_none());
        assert!(parse_command("echo ::x").is_none());
    }

    #[test]
    fn env_files() {
        let v = parse_env_file("A=1\nB<<EOF\nx\ny=z\nEOF\n\nC=a=b\r\n").unwrap();
        assert_eq!(
            v,
            [
                ("A".into(), "1".into()),
                ("B".into(), "x\ny=z".into()),
                ("C".into(), "a=b".into())
            ]
        );
        assert!(matches!(
            parse_env_file("B<<EOF\nx\n"),
            Err(FileCommandError::Delimiter(_))
        ));
        assert!(parse_env_file("novalue\n").is_err());
    }
}
