//! The progress bar on stderr while buyers run: only when stderr is a
//! terminal and not `--quiet`. It reads one atomic counter of the engine.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::Control;

pub struct Progress {
    bar: Option<ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Start showing progress of a race of `total` attempts (None: timed).
    pub fn start(
        enabled: bool,
        label: &str,
        total: Option<u64>,
        control: Arc<Control>,
    ) -> Progress {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                task: None,
            };
        }
        let bar = match total {
            Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template(
                        "{prefix:>14} {bar:30} {pos}/{len} attempts {per_sec}",
                    )
                    .expect("valid template"),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template(
                    "{prefix:>14} {spinner} {pos} attempts {per_sec} {elapsed}",
                )
                .expect("valid template"),
            ),
        };
        bar.set_prefix(label.to_string());
        let b = bar.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                b.set_position(control.done.load(Ordering::Relaxed));
            }
        });
        Progress {
            bar: Some(bar),
            task: Some(task),
        }
    }

    pub fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
