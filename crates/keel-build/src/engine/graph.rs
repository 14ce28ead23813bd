//! The stage graph: which stage or image a name means, what a target needs,
//! and the state a stage starts from (`FROM scratch`, an earlier stage, or an
//! image of the store).

use std::collections::{BTreeMap, BTreeSet};

use keel_dockerfile::shell;
use keel_dockerfile::{Instruction, Span};
use keel_oci::OciError;
use serde_json::{Value, json};

use super::state::State;
use super::{Engine, sha};
use crate::cache::LayerRef;
use crate::error::Result;

impl Engine<'_> {
    /// The stage an image name refers to, if any (names win over images).
    pub(super) fn stage_ref(&self, name: &str, before: usize, by_index: bool) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        let stages = self.df.stages();
        if let Some(s) = stages
            .iter()
            .take(before)
            .find(|s| s.from.name.as_deref() == Some(lower.as_str()))
        {
            return Some(s.index);
        }
        if by_index {
            return name.parse::<usize>().ok().filter(|i| *i < before);
        }
        None
    }

    pub(super) fn expand_meta(&self, s: &str) -> Result<String> {
        Ok(shell::expand(s, &self.meta, &self.escape())?)
    }

    /// The stages `target` depends on (itself included), in file order.
    pub(super) fn needed(&self, target: usize) -> Result<BTreeSet<usize>> {
        let mut need = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if !need.insert(i) {
                continue;
            }
            todo.extend(self.deps(i)?);
        }
        Ok(need)
    }

    /// Stages that stage `i` reads: its FROM, COPY --from, RUN --mount from.
    pub(super) fn deps(&self, i: usize) -> Result<Vec<usize>> {
        let stages = self.df.stages();
        let s = &stages[i];
        let mut out = Vec::new();
        let base = self.expand_meta(&s.from.image)?;
        if let Some(d) = self.stage_ref(&base, i, false) {
            out.push(d);
        }
        for ins in s.instructions {
            let from = match &ins.instruction {
                Instruction::Copy(c) => c.from.clone().into_iter().collect(),
                Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.clone()).collect(),
                _ => Vec::new(),
            };
            for f in from {
                let f = self.expand_meta(&f)?;
                if let Some(d) = self.stage_ref(&f, i, true) {
                    out.push(d);
                } else if self.stage_ref(&f, usize::MAX, true).is_some() {
                    return Err(self.step_err(
                        ins.span,
                        format!("stage {f:?} is defined after this use"),
                        None,
                    ));
                }
            }
        }
        Ok(out)
    }

    pub(super) fn base_state(&self, base: &str, i: usize, span: Span) -> Result<State> {
        let mut st = if base == "scratch" {
            State {
                image: json!({
                    "architecture": keel_oci::archive::host_arch(),
                    "os": "linux",
                    "config": {},
                    "rootfs": {"type": "layers", "diff_ids": []},
                    "history": [],
                }),
                layers: Vec::new(),
                key: sha("scratch"),
                args: BTreeMap::new(),
                pending: Vec::new(),
                cmd_set: false,
                default_path: false,
                hidden_path: false,
            }
        } else if let Some(d) = self.stage_ref(base, i, false) {
            let parent = self.wait_stage(d)?;
            let mut s = (*parent).clone();
            s.args.clear();
            s.cmd_set = false;
            if s.default_path {
                let env: Vec<String> = s
                    .env_list()
                    .into_iter()
                    .filter(|e| !e.starts_with("PATH="))
                    .collect();
                s.cfg().insert("Env".into(), json!(env));
                s.default_path = false;
                s.hidden_path = true;
            }
            s
        } else {
            let img = match self.store.resolve(base) {
                Ok(img) => img,
                Err(OciError::ImageNotFound(_)) => {
                    return Err(self.step_err(
                        span,
                        format!("base image {base} is not in the image store"),
                        Some(&format!(
                            "run keel pull {base}, or keel import a root filesystem as {base}"
                        )),
                    ));
                }
                Err(e) => return Err(e.into()),
            };
            let digests = img.layer_digests()?;
            let diff_ids = img.diff_ids()?;
            let layers = img
                .manifest
                .layers()
                .iter()
                .zip(digests.iter().zip(&diff_ids))
                .map(|(desc, (d, diff))| LayerRef {
                    digest: d.to_string(),
                    diff_id: diff.to_string(),
                    size: desc.size(),
                    media_type: keel_oci::image::media_type_str(desc.media_type()),
                })
                .collect();
            let mut image = img.config_json();
            if !image.get("config").is_some_and(Value::is_object) {
                image["config"] = json!({});
            }
            if !image.get("history").is_some_and(Value::is_array) {
                image["history"] = json!([]);
            }
            State {
                image,
                layers,
                key: sha(&format!("image {}", img.id())),
                args: BTreeMap::new(),
                pending: Vec::new(),
                cmd_set: false,
                default_path: false,
                hidden_path: false,
            }
        };
        // As buildah does: an image without PATH gets the default one.
        if !st.hidden_path {
            Self::default_path(&mut st);
        }
        Ok(st)
    }

    /// Layers of a stage (by name or index) or of an image, for `--from`.
    pub(super) fn layers_of(&self, from: &str, span: Span) -> Result<Vec<LayerRef>> {
        Ok(self.source_of(from, span)?.0)
    }

    /// Layers and cache identity of a `--from` source.
    pub(super) fn source_of(&self, from: &str, span: Span) -> Result<(Vec<LayerRef>, String)> {
        let from = self.expand_meta(from)?;
        if let Some(i) = self.stage_ref(&from, usize::MAX, true) {
            let s = self.wait_stage(i)?;
            return Ok((s.layers.clone(), s.key.clone()));
        }
        match self.store.resolve(&from) {
            Ok(img) => {
                let st = self.base_state(&from, 0, span)?;
                Ok((st.layers, format!("image {}", img.id())))
            }
            Err(OciError::ImageNotFound(_)) => Err(self.step_err(
                span,
                format!("--from={from}: no stage or image of that name"),
                Some(&format!(
                    "name an earlier stage (FROM … AS {from}), or keel pull {from}"
                )),
            )),
            Err(e) => Err(e.into()),
        }
    }
}
