//! Printers for the builder's progress [`Event`]s: a live view on a terminal (`tty`), `#N ...`
//! lines as buildx's plain mode (`plain`), or one JSON object per line for tools (`json`).

mod json;
mod plain;
mod tty;

use std::sync::Mutex;
use std::time::Duration;

use forge_builder::{Event, Progress};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// A live view, one line per running step.
    Tty,
    /// Plain lines.
    Plain,
    /// JSON lines.
    Json,
}

/// Renders build events on standard error in one mode, or not at all (`--quiet`).
pub enum Printer {
    Quiet,
    Tty(tty::Tty),
    Plain(plain::Plain),
    Json,
}

impl Printer {
    /// A printer for `mode`; `None` prints nothing.
    pub fn new(mode: Option<ProgressMode>) -> Printer {
        match mode {
            None => Printer::Quiet,
            Some(ProgressMode::Tty) => Printer::Tty(tty::Tty::default()),
            Some(ProgressMode::Plain) => Printer::Plain(plain::Plain::default()),
            Some(ProgressMode::Json) => Printer::Json,
        }
    }
}

impl Progress for Printer {
    fn event(&self, e: Event) {
        match self {
            Printer::Quiet => {}
            Printer::Tty(t) => t.print(e),
            Printer::Plain(p) => p.print(e),
            Printer::Json => json::print(&e),
        }
    }
}

/// Numbers steps in the order they start, as buildx does (`#1`, `#2`, ...).
#[derive(Default)]
struct StepNumbers(Mutex<Vec<String>>);

impl StepNumbers {
    fn of(&self, id: &str) -> usize {
        let mut order = self.0.lock().unwrap();
        match order.iter().position(|s| s == id) {
            Some(i) => i + 1,
            None => {
                order.push(id.to_string());
                order.len()
            }
        }
    }
}

/// ` cpu 1.20s peak 30.5 MiB`, for RUN steps.
fn usage(cpu_time: Option<Duration>, peak_memory: Option<u64>) -> String {
    let mut extra = String::new();
    if let Some(cpu) = cpu_time {
        extra.push_str(&format!(" cpu {:.2}s", cpu.as_secs_f64()));
    }
    if let Some(mem) = peak_memory {
        extra.push_str(&format!(" peak {:.1} MiB", mem as f64 / (1 << 20) as f64));
    }
    extra
}
