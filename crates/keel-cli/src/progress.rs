//! Transfer progress: bars on a terminal, plain lines otherwise (CI logs).

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use keel_oci::registry::{Progress, ProgressEvent};

pub struct CliProgress {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    verb: &'static str,
}

impl CliProgress {
    /// `verb` names the action in plain mode ("Pulling", "Pushing").
    pub fn new(verb: &'static str) -> Self {
        let multi = crate::output::stderr_is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        CliProgress {
            multi,
            bars: Mutex::new(HashMap::new()),
            verb,
        }
    }
}

impl Progress for CliProgress {
    fn event(&self, e: ProgressEvent) {
        let mut bars = self.bars.lock().expect("progress lock");
        match e {
            ProgressEvent::Start { digest, size } => {
                let short = digest.short().to_string();
                if let Some(m) = &self.multi {
                    let bar = m.add(ProgressBar::new(size));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix}: {msg} [{bar:30}] {bytes}/{total_bytes}",
                        )
                        .expect("template")
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(short.clone());
                    bar.set_message(self.verb);
                    bars.insert(short, bar);
                } else {
                    eprintln!("{short}: {} ({size} bytes)", self.verb);
                }
            }
            ProgressEvent::Advance { digest, bytes } => {
                if let Some(b) = bars.get(digest.short()) {
                    b.inc(bytes);
                }
            }
            ProgressEvent::Done { digest, status } => {
                let short = digest.short().to_string();
                if let Some(b) = bars.remove(&short) {
                    b.finish_with_message(status);
                } else if let Some(m) = &self.multi {
                    let _ = m.println(format!("{short}: {status}"));
                } else {
                    eprintln!("{short}: {status}");
                }
            }
        }
    }
}
