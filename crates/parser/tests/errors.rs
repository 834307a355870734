//! Error reporting: locations, carets and messages, and no input that panics.

mod common;

use forge_parser::dag::{BuildGraph, GraphOptions};

/// Parses, types and lowers `src`, whatever it is; only errors may come out, never a panic.
fn everything(src: &[u8]) {
    if let Ok(df) = forge_parser::parse_bytes(src, "Dockerfile") {
        let _ = df.dump();
        let _ = df.instructions();
        let _ = BuildGraph::new(&df, &GraphOptions::default());
    }
}

/// xorshift64*: a fixed sequence, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_corpus_never_panics() {
    let Some(corpus) = common::real_world_dockerfiles() else { return };
    // Pieces that reach the tricky paths: flags, quotes, escapes, heredocs, JSON, variables,
    // multi-byte characters whose bytes look like blanks to a byte-wise scanner.
    const PIECES: &[&str] = &[
        "\\", "`", "\"", "'", "\n", "\r\n", " ", "\t", "--", "--mount=", "type=cache,", "from=", "<<EOF\n", "<<-'E'\n", "EOF\n", "E\n",
        "[", "]", "\"a\",", "${", "}", ":-", "$", "#", "# escape=`\n", "=", "à", "\u{0830}", "\u{feff}", "ONBUILD ", "FROM ", "AS ",
        "COPY --from=", "RUN ", "HEALTHCHECK ", "CMD ", "ARG ", "ENV ", "0", "\u{0}",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..3000 {
        let (_, base) = &corpus[round % corpus.len()];
        let mut src = base.clone();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(src.len() + 1);
            match rng.below(3) {
                0 => {
                    let piece = PIECES[rng.below(PIECES.len())].as_bytes();
                    src.splice(at..at, piece.iter().copied());
                }
                1 => {
                    let end = (at + rng.below(40)).min(src.len());
                    src.drain(at..end);
                }
                _ => {
                    if at < src.len() {
                        src[at] = rng.next() as u8;
                    }
                }
            }
        }
        everything(&src);
        // Small files reach the end-of-input paths that big ones rarely do.
        everything(&src[..src.len().min(rng.below(200))]);
    }
}
