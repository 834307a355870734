//! Any word, with a few variables set, under both escape characters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use forge_parser::expand::{expand_word, expand_words};

fuzz_target!(|data: &[u8]| {
    let Ok(word) = std::str::from_utf8(data) else { return };
    let vars = vec![("A".to_string(), "a b".to_string()), ("EMPTY".to_string(), String::new()), ("P".to_string(), "*/x?".to_string())];
    for escape in ['\\', '`'] {
        let _ = expand_word(word, &vars, escape);
        let _ = expand_words(word, &vars, escape);
    }
});
