//! `--progress json`: one event per line, for tools.

use forge_builder::Event;

pub(super) fn print(e: &Event) {
    eprintln!("{}", serde_json::to_string(e).unwrap_or_default());
}
