//! Benchmarks live in `benches/` and comparison scripts in `scripts/`.
