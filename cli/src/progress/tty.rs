//! The live view on a terminal: one line per running step with its elapsed time and last
//! output line; a finished step keeps its summary line.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use forge_builder::Event;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::{usage, StepNumbers};

#[derive(Default)]
pub struct Tty {
    numbers: StepNumbers,
    state: Mutex<State>,
    multi: MultiProgress,
}

#[derive(Default)]
struct State {
    /// The line of each running step.
    bars: HashMap<String, ProgressBar>,
    /// A CACHED step's line says so when it finishes.
    cached: HashSet<String>,
}

impl Tty {
    pub(super) fn print(&self, e: Event) {
        match e {
            Event::StepStarted { id, stage, text, .. } => {
                let n = self.numbers.of(&id);
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(ProgressStyle::with_template("{spinner} {prefix} {elapsed:>4} {wide_msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
                bar.set_prefix(format!("#{n} [{stage}] {text}"));
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                self.state.lock().unwrap().bars.insert(id, bar);
            }
            Event::StepCached { id } => {
                self.state.lock().unwrap().cached.insert(id);
            }
            Event::CacheMiss { id, reason, .. } => {
                let _ = self.multi.println(format!("#{} cache miss: {reason}", self.numbers.of(&id)));
            }
            Event::Output { id, line, .. } => {
                if let Some(bar) = self.state.lock().unwrap().bars.get(&id) {
                    bar.set_message(line);
                }
            }
            Event::StepDone { id, elapsed, cpu_time, peak_memory } => {
                let mut st = self.state.lock().unwrap();
                let cached = st.cached.remove(&id);
                if let Some(bar) = st.bars.remove(&id) {
                    bar.set_style(ProgressStyle::with_template("  {prefix} {wide_msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
                    let what = if cached { "CACHED".to_string() } else { format!("DONE {:.1}s{}", elapsed.as_secs_f64(), usage(cpu_time, peak_memory)) };
                    bar.finish_with_message(what);
                }
            }
            Event::Warning { message } => {
                let _ = self.multi.println(format!("WARNING: {message}"));
            }
        }
    }
}
