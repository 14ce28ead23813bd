//! A stage's state between its steps: the image config being built, its
//! layers, the last step's cache key, ARGs in scope and what WORKDIR and
//! VOLUME still have to create.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::cache::LayerRef;

pub(super) const DEFAULT_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The state of a stage between steps.
#[derive(Debug, Clone)]
pub(super) struct State {
    /// The whole image config (`config`, `rootfs`, `history`, …).
    pub(super) image: Value,
    pub(super) layers: Vec<LayerRef>,
    /// Key of the last step (or of the base).
    pub(super) key: String,
    /// ARGs in scope with their values.
    pub(super) args: BTreeMap<String, String>,
    /// Directories WORKDIR/VOLUME need, created in the next layer (as
    /// buildah does): `true` marks the working directory, which only the last
    /// WORKDIR creates, owned by the USER in effect then.
    pub(super) pending: Vec<(String, bool)>,
    pub(super) cmd_set: bool,
    /// PATH in Env is the default added at FROM, not one the user set.
    pub(super) default_path: bool,
    /// A stage FROM an earlier stage whose PATH was only the default: buildah
    /// leaves it out of Env (RUN and `$PATH` still see it) and puts it back
    /// at the front at the end of the stage, so an `ENV PATH=…` there lands
    /// after the inherited variables.
    pub(super) hidden_path: bool,
}

impl State {
    pub(super) fn cfg(&mut self) -> &mut Map<String, Value> {
        let img = self.image.as_object_mut().expect("config is an object");
        img.entry("config")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("config.config is an object")
    }

    pub(super) fn cfg_get(&self, k: &str) -> Option<&Value> {
        self.image.get("config").and_then(|c| c.get(k))
    }

    pub(super) fn env_list(&self) -> Vec<String> {
        self.cfg_get("Env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The environment RUN and `$VAR` see: Env plus a hidden default PATH.
    pub(super) fn run_env(&self) -> Vec<String> {
        let mut env = self.env_list();
        if self.hidden_path && !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH.to_string());
        }
        env
    }

    /// What `$VAR` sees: ARGs, overridden by ENV.
    pub(super) fn lookup_env(&self) -> BTreeMap<String, String> {
        let mut m = self.args.clone();
        for e in self.run_env() {
            if let Some((k, v)) = e.split_once('=') {
                m.insert(k.to_string(), v.to_string());
            }
        }
        m
    }

    pub(super) fn shell(&self) -> Vec<String> {
        self.cfg_get("Shell")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
    }

    pub(super) fn workdir(&self) -> String {
        self.cfg_get("WorkingDir")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("/")
            .to_string()
    }

    pub(super) fn user(&self) -> String {
        self.cfg_get("User")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    pub(super) fn author(&self) -> Option<String> {
        self.image
            .get("author")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    pub(super) fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    pub(super) fn push(&mut self, layer: Option<LayerRef>, history: Value) {
        if let Some(l) = layer {
            self.layers.push(l);
        }
        let img = self.image.as_object_mut().expect("object");
        img.entry("history")
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .expect("history is a list")
            .push(history);
    }
}
