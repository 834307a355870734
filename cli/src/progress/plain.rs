//! `--progress plain`: `#N ...` lines, as buildx's plain mode.

use std::io::Write;

use forge_builder::Event;

use super::{usage, StepNumbers};

#[derive(Default)]
pub struct Plain {
    numbers: StepNumbers,
}

impl Plain {
    pub(super) fn print(&self, e: Event) {
        let mut err = std::io::stderr().lock();
        let n = |id: &str| self.numbers.of(id);
        let _ = match e {
            Event::StepStarted { id, stage, text, .. } => writeln!(err, "#{} [{stage}] {text}", n(&id)),
            Event::StepCached { id } => writeln!(err, "#{} CACHED", n(&id)),
            Event::CacheMiss { id, reason, .. } => writeln!(err, "#{} cache miss: {reason}", n(&id)),
            Event::Output { id, line, .. } => writeln!(err, "#{} {line}", n(&id)),
            Event::StepDone { id, elapsed, cpu_time, peak_memory } => {
                writeln!(err, "#{} DONE {:.1}s{}", n(&id), elapsed.as_secs_f64(), usage(cpu_time, peak_memory))
            }
            Event::Warning { message } => writeln!(err, "WARNING: {message}"),
        };
    }
}
