//! Cache plumbing: a step's key, a hit, and storing what a miss made (its
//! layer blob committed in the background).

use std::path::Path;

use serde_json::json;

use super::state::State;
use super::{At, Engine, now, sha};
use crate::Event;
use crate::cache::{self, Entry, Inputs, LayerRef};
use crate::error::{BuildError, Result};

/// A layer a step made: its reference, and its blob still to be committed.
pub(super) struct NewLayer {
    pub(super) layer: LayerRef,
    pub(super) blob: keel_oci::blobs::FinishedBlob,
}

impl Engine<'_> {
    pub(super) fn position(&self, stage: usize, n: usize) -> String {
        sha(&format!("{}\n{stage}\n{n}", self.position_base))
    }

    /// Takes the step from the cache if it is there (and checks out).
    pub(super) fn hit(&self, st: &mut State, label: &str, step: usize, key: &str) -> bool {
        if self.opts.no_cache {
            return false;
        }
        let Some(entry) = self.cache.get(key, self.store.blobs()) else {
            return false;
        };
        self.emit(Event::Cached {
            stage: label.to_string(),
            step,
        });
        st.push(entry.layer, entry.history);
        st.key = key.to_string();
        true
    }

    /// Runs one step through the cache: a hit reuses the stored result, a miss
    /// runs `make` and stores what it made.
    pub(super) fn cached(
        &self,
        st: &mut State,
        At {
            stage,
            label,
            step,
            position,
        }: At<'_>,
        inputs: Inputs,
        created_by: &str,
        make: impl FnOnce(&mut State) -> Result<Option<NewLayer>>,
    ) -> Result<()> {
        let key = inputs.key();
        if self.hit(st, label, step, &key) {
            return Ok(());
        }
        let pos = self.position(stage, position);
        if self.opts.explain_cache && !self.opts.no_cache {
            let old = self.cache.position(&pos);
            self.emit(Event::Explain {
                stage: label.to_string(),
                step,
                reason: cache::explain(old.as_ref(), &inputs),
            });
        }
        let made = make(st)?;
        let mut history = json!({"created": now(), "created_by": created_by});
        if let Some(a) = st.author() {
            history["author"] = json!(a);
        }
        if made.is_none() {
            history["empty_layer"] = json!(true);
        }
        self.cache.remember_position(&pos, &inputs);
        let layer = made.as_ref().map(|m| m.layer.clone());
        let mut entry = Entry {
            layer: layer.clone(),
            history: history.clone(),
            inputs,
            verified: None,
        };
        match made {
            None => self.cache.put(&key, &entry)?,
            Some(NewLayer { layer, blob }) => {
                // The next steps run on the layer's snapshot, not its blob:
                // the blob's fsync and the cache entry, which must wait for
                // it, go on in the background ([`Engine::wait_commits`]).
                let (cache, blobs, key) =
                    (self.cache.clone(), self.store.blobs().clone(), key.clone());
                let handle = std::thread::spawn(move || -> Result<()> {
                    blob.commit_checked()?;
                    entry.verified = cache::fresh_stat(&blobs, &layer);
                    cache.put(&key, &entry)
                });
                self.commits.lock().expect("lock").push(handle);
            }
        }
        st.push(layer, history);
        st.key = key;
        Ok(())
    }

    /// Waits for the layer blobs (and cache entries) being committed in the
    /// background; the first error is the build's.
    pub(super) fn wait_commits(&self) -> Result<()> {
        let handles = std::mem::take(&mut *self.commits.lock().expect("lock"));
        let mut first = Ok(());
        for h in handles {
            let r = h.join().unwrap_or_else(|_| {
                Err(BuildError::Io {
                    what: "commit layer blob to",
                    path: self.store.blobs().tmp_dir().to_path_buf(),
                    source: std::io::Error::other("the commit thread panicked"),
                })
            });
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    pub(super) fn inputs(st: &State, instruction: String) -> Inputs {
        Inputs {
            parent: st.key.clone(),
            instruction,
            ..Inputs::default()
        }
    }

    /// Writes `dir` (an unmounted overlay upper dir) as a layer blob on top
    /// of `parent`; `None` when empty. `dir` itself becomes the new chain's
    /// snapshot, so the next step needs no unpacking.
    pub(super) fn layer_from(&self, dir: &Path, parent: &[LayerRef]) -> Result<Option<NewLayer>> {
        let parent: Vec<String> = parent.iter().map(|l| l.diff_id.clone()).collect();
        Ok(self.store.layer_from_dir(dir, &parent)?.map(|l| NewLayer {
            layer: LayerRef {
                digest: l.blob.digest().to_string(),
                diff_id: l.blob.digest().to_string(),
                size: l.blob.size(),
                media_type: String::new(),
            },
            blob: l.blob,
        }))
    }
}
