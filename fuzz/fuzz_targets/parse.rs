//! Any bytes: parsing, typing, dumping and lowering to a build graph must not panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(df) = forge_parser::parse_bytes(data, "Dockerfile") {
        let _ = df.dump();
        if let Ok(instructions) = df.instructions() {
            assert_eq!(instructions.len(), df.nodes().len());
        }
        let _ = forge_parser::dag::BuildGraph::new(&df, &Default::default());
    }
});
