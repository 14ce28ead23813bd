//! Instructions that only change the image config (ENV, LABEL, EXPOSE, CMD,
//! ENTRYPOINT, WORKDIR, USER, VOLUME, STOPSIGNAL, HEALTHCHECK, SHELL,
//! MAINTAINER, ONBUILD) and the `$VAR` expansion every instruction uses.

use std::collections::BTreeMap;

use keel_dockerfile::shell::{self, Options};
use keel_dockerfile::{Command, Healthcheck, Instruction, Span};
use serde_json::json;

use super::state::{DEFAULT_PATH, State};
use super::{Engine, abs_path};
use crate::error::Result;

impl Engine<'_> {
    /// Puts the default PATH at the front of an Env without one.
    pub(super) fn default_path(st: &mut State) {
        let env = st.env_list();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            let mut v = vec![DEFAULT_PATH.to_string()];
            v.extend(env);
            st.cfg().insert("Env".into(), json!(v));
            st.default_path = true;
        }
        st.hidden_path = false;
    }

    /// Expands a word with the stage's ARGs and ENV, noting which ARGs it used.
    pub(super) fn expand(
        &self,
        st: &State,
        word: &str,
        used: &mut BTreeMap<String, String>,
    ) -> Result<String> {
        let env = st.lookup_env();
        Self::note_args(st, word, used);
        Ok(shell::expand(word, &env, &self.escape())?)
    }

    pub(super) fn expand_words(
        &self,
        st: &State,
        word: &str,
        used: &mut BTreeMap<String, String>,
    ) -> Result<Vec<String>> {
        let env = st.lookup_env();
        Self::note_args(st, word, used);
        Ok(shell::expand_words(word, &env, &self.escape())?)
    }

    pub(super) fn note_args(st: &State, word: &str, used: &mut BTreeMap<String, String>) {
        for (k, v) in &st.args {
            if word.contains(&format!("${k}")) || word.contains(&format!("${{{k}")) {
                used.insert(k.clone(), v.clone());
            }
        }
    }

    pub(super) fn expand_heredoc(
        &self,
        st: &State,
        text: &str,
        used: &mut BTreeMap<String, String>,
    ) -> Result<String> {
        let env = st.lookup_env();
        Self::note_args(st, text, used);
        let opts = Options {
            skip_process_quotes: true,
            ..self.escape()
        };
        Ok(shell::expand(text, &env, &opts)?)
    }

    /// Applies a metadata instruction to the config.
    #[allow(clippy::too_many_lines)]
    pub(super) fn metadata(
        &self,
        st: &mut State,
        ins: &Instruction,
        used: &mut BTreeMap<String, String>,
        span: Span,
    ) -> Result<()> {
        let shell_form = |st: &State, c: &Command| -> Vec<String> {
            match c {
                Command::Shell(s) => {
                    let mut v = st.shell();
                    v.push(s.clone());
                    v
                }
                Command::Exec(v) => v.clone(),
            }
        };
        match ins {
            Instruction::Env(pairs) => {
                let mut expanded = Vec::new();
                for (k, v) in pairs {
                    expanded.push((k.clone(), self.expand(st, v, used)?));
                }
                let mut env = st.env_list();
                for (k, v) in expanded {
                    if k == "PATH" {
                        st.default_path = false;
                        st.hidden_path = false;
                    }
                    // A variable set again keeps its place (docker, buildah).
                    let var = format!("{k}={v}");
                    match env
                        .iter_mut()
                        .find(|e| e.split('=').next() == Some(k.as_str()))
                    {
                        Some(e) => *e = var,
                        None => env.push(var),
                    }
                }
                st.cfg().insert("Env".into(), json!(env));
            }
            Instruction::Label(pairs) => {
                let mut expanded = Vec::new();
                for (k, v) in pairs {
                    expanded.push((self.expand(st, k, used)?, self.expand(st, v, used)?));
                }
                let labels = st.cfg().entry("Labels").or_insert_with(|| json!({}));
                if !labels.is_object() {
                    *labels = json!({});
                }
                for (k, v) in expanded {
                    labels[k] = json!(v);
                }
            }
            Instruction::Expose(ports) => {
                let mut list = Vec::new();
                for p in ports {
                    for w in self.expand_words(st, p, used)? {
                        let w = if w.contains('/') {
                            w
                        } else {
                            format!("{w}/tcp")
                        };
                        list.push(w);
                    }
                }
                let map = st.cfg().entry("ExposedPorts").or_insert_with(|| json!({}));
                if !map.is_object() {
                    *map = json!({});
                }
                for p in list {
                    map[p] = json!({});
                }
            }
            Instruction::Cmd(c) => {
                let v = shell_form(st, c);
                st.cfg().insert("Cmd".into(), json!(v));
                st.cmd_set = true;
            }
            Instruction::Entrypoint(c) => {
                let v = shell_form(st, c);
                st.cfg().insert("Entrypoint".into(), json!(v));
                // An inherited CMD does not survive a new ENTRYPOINT (Docker's rule).
                if !st.cmd_set {
                    st.cfg().remove("Cmd");
                }
            }
            Instruction::Workdir(w) => {
                let w = self.expand(st, w, used)?;
                let dir = abs_path(&st.workdir(), &w);
                let dir = if dir.len() > 1 {
                    dir.trim_end_matches('/').to_string()
                } else {
                    dir
                };
                st.cfg().insert("WorkingDir".into(), json!(dir));
                st.pending.retain(|(_, workdir)| !workdir);
                st.pending.push((dir, true));
            }
            Instruction::User(u) => {
                let u = self.expand(st, u, used)?;
                st.cfg().insert("User".into(), json!(u));
            }
            Instruction::Volume(vols) => {
                let mut list = Vec::new();
                for v in vols {
                    let v = self.expand(st, v, used)?;
                    if v.trim().is_empty() {
                        return Err(self.step_err(
                            span,
                            "VOLUME specified can not be an empty string",
                            None,
                        ));
                    }
                    list.push(v);
                }
                let map = st.cfg().entry("Volumes").or_insert_with(|| json!({}));
                if !map.is_object() {
                    *map = json!({});
                }
                for v in &list {
                    map[v.as_str()] = json!({});
                }
                st.pending
                    .extend(list.into_iter().map(|v| (abs_path("/", &v), false)));
            }
            Instruction::StopSignal(s) => {
                let s = self.expand(st, s, used)?;
                keel_runtime::engine::parse_signal(&s)
                    .map_err(|_| self.step_err(span, format!("invalid STOPSIGNAL {s:?}"), None))?;
                st.cfg().insert("StopSignal".into(), json!(s));
            }
            Instruction::Healthcheck(h) => {
                let v = match h {
                    Healthcheck::None => json!({"Test": ["NONE"]}),
                    Healthcheck::Cmd {
                        command,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => {
                        let test = match command {
                            Command::Shell(s) => json!(["CMD-SHELL", s]),
                            Command::Exec(v) => {
                                let mut t = vec!["CMD".to_string()];
                                t.extend(v.iter().cloned());
                                json!(t)
                            }
                        };
                        let mut m = json!({"Test": test});
                        let ns = |d: &std::time::Duration| json!(d.as_nanos() as u64);
                        if let Some(d) = interval {
                            m["Interval"] = ns(d);
                        }
                        if let Some(d) = timeout {
                            m["Timeout"] = ns(d);
                        }
                        if let Some(d) = start_period {
                            m["StartPeriod"] = ns(d);
                        }
                        if let Some(d) = start_interval {
                            m["StartInterval"] = ns(d);
                        }
                        if let Some(r) = retries {
                            m["Retries"] = json!(r);
                        }
                        m
                    }
                };
                st.cfg().insert("Healthcheck".into(), v);
            }
            Instruction::Shell(v) => {
                st.cfg().insert("Shell".into(), json!(v));
            }
            Instruction::Maintainer(m) => {
                st.image["author"] = json!(m);
            }
            Instruction::Onbuild { original, .. } => {
                let list = st.cfg().entry("OnBuild").or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                list.as_array_mut().expect("array").push(json!(original));
            }
            Instruction::From(_)
            | Instruction::Arg(_)
            | Instruction::Run(_)
            | Instruction::Copy(_)
            | Instruction::Add(_) => {}
        }
        Ok(())
    }
}
