//! What the projector shows of an explore replay (`replaying` runs it):
//! its title and summary, the steps so far in words, the swim-lane so
//! far, and where it is; and the channel the teacher's clicks go down.

use std::sync::mpsc::Sender;
use std::sync::Mutex;

use serde_json::{json, Value};
use tokio::sync::watch;

/// What the teacher's buttons send to the replay's thread.
pub enum Click {
    Next,
    Stop,
}

#[derive(Debug, Clone, Default)]
pub struct View {
    pub title: String,
    pub summary: String,
    pub log: String,
    pub swimlane: Option<String>,
    /// Waiting for a click.
    pub stepping: bool,
    /// Steps run so far, of how many the counterexample has.
    pub step: usize,
    pub steps: usize,
    pub done: bool,
}

/// The replay the room shows, if any.
pub struct Replay {
    view: Mutex<Option<View>>,
    pub clicks: Mutex<Option<Sender<Click>>>,
    /// Bumped after every change, for a click to wait on.
    pub changed: watch::Sender<u64>,
}

impl Default for Replay {
    fn default() -> Self {
        Replay {
            view: Mutex::new(None),
            clicks: Mutex::new(None),
            changed: watch::channel(0).0,
        }
    }
}

impl Replay {
    pub fn json(&self) -> Value {
        let v = self.view.lock().unwrap_or_else(|p| p.into_inner());
        match &*v {
            None => Value::Null,
            Some(v) => json!({
                "title": v.title,
                "summary": v.summary,
                "log": v.log,
                "swimlane_svg": v.swimlane,
                "stepping": v.stepping,
                "step": v.step,
                "steps": v.steps,
                "done": v.done,
            }),
        }
    }

    /// Whether a replay holds the lab.
    pub fn running(&self) -> bool {
        self.clicks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Change the view, then tell every page (`emit` gets the new JSON).
    pub fn update(&self, emit: impl FnOnce(&Value), f: impl FnOnce(&mut View)) {
        {
            let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
            f(v.get_or_insert_with(View::default));
        }
        self.changed.send_modify(|n| *n += 1);
        emit(&self.json());
    }

    /// Where the replay is: (steps run, done).
    pub fn progress(&self) -> (usize, bool) {
        let v = self.view.lock().unwrap_or_else(|p| p.into_inner());
        v.as_ref().map_or((0, true), |v| (v.step, v.done))
    }

    /// The replay has ended: the lab is free again.
    pub fn finish(&self, emit: impl FnOnce(&Value), f: impl FnOnce(&mut View)) {
        *self.clicks.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.update(emit, |v| {
            v.stepping = false;
            v.done = true;
            f(v);
        });
    }
}
