//! A .dockerignore text and a path: compiling, matching and the skip-dir answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use forge_parser::dockerignore::Dockerignore;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The last line is the path to test; the rest is the ignore file.
    let (patterns, path) = text.rsplit_once('\n').unwrap_or((text, "a/b/c"));
    if let Ok(ig) = Dockerignore::parse(patterns) {
        let _ = ig.is_excluded(path);
        let _ = ig.can_skip_dir(path);
    }
});
