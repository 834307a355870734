//! Build progress as events: the library reports, the caller renders (a live view on a TTY,
//! plain lines, or one JSON object per line for tools).

use std::time::Duration;

use serde::Serialize;

/// Something that happened during a build.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A step starts. `id` is unique within the build (`stage/step`).
    StepStarted {
        /// `<stage index>/<step index>`.
        id: String,
        /// The stage's name or index.
        stage: String,
        /// The instruction, as written (variables unexpanded).
        text: String,
        /// Its line in the Dockerfile.
        line: usize,
    },
    /// The step's result was found in the cache; nothing ran.
    StepCached {
        /// The step.
        id: String,
    },
    /// A layer step missed the cache (reported with `--explain-cache`): why, compared with
    /// the nearest cached step (the one with the same parent and the fewest changed inputs).
    CacheMiss {
        /// The step.
        id: String,
        /// One line for people: `context file "src/main.c" changed`.
        reason: String,
        /// Every input that differs from the nearest candidate (empty when there is none).
        changes: Vec<CacheChange>,
    },
    /// A line of a RUN step's output.
    Output {
        /// The step.
        id: String,
        /// `stdout` or `stderr`.
        stream: &'static str,
        /// The line, without its newline (lossily decoded).
        line: String,
    },
    /// The step finished.
    StepDone {
        /// The step.
        id: String,
        /// Wall time.
        #[serde(with = "secs")]
        elapsed: Duration,
        /// CPU time of a RUN step, from its cgroup.
        #[serde(with = "opt_secs")]
        cpu_time: Option<Duration>,
        /// Peak memory of a RUN step in bytes, from its cgroup.
        peak_memory: Option<u64>,
    },
    /// A warning about the Dockerfile or the build's options.
    Warning {
        /// The text.
        message: String,
    },
}

/// One input of a step's cache key that differs from the nearest cached step's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheChange {
    /// What sort of input: `parent`, `instruction`, `arg`, `env`, `config`, `option`,
    /// `context-file`, `from-file` (a `COPY --from` file) or `mount-file` (a context file a
    /// `RUN --mount=type=bind` reads).
    pub kind: String,
    /// Which one: a path, a variable's name, an instruction's part.
    pub name: String,
    /// `changed`, `added` (only this build has it) or `removed` (only the cached step had it).
    pub change: &'static str,
}

/// Receives events; called from the threads that run stages, so it must be `Sync`.
pub trait Progress: Sync {
    /// One event.
    fn event(&self, event: Event);
}

/// Discards every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: Event) {}
}

impl<F: Fn(Event) + Sync> Progress for F {
    fn event(&self, event: Event) {
        self(event)
    }
}

mod secs {
    pub(super) fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

mod opt_secs {
    pub(super) fn serialize<S: serde::Serializer>(d: &Option<std::time::Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}
