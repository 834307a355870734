//! Parser throughput on the real-world Dockerfile corpus (../shared/conformance/real-dockerfiles):
//! parse + type + lower to a build graph, reported by criterion in MB/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::Path;

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/real-dockerfiles");
    let mut files: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let p = e.ok()?.path().join("Dockerfile");
            std::fs::read(p).ok()
        })
        .collect();
    files.sort();
    files
}

fn bench(c: &mut Criterion) {
    let files = corpus();
    let bytes: usize = files.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("real-world corpus");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("parse", |b| {
        b.iter(|| {
            for f in &files {
                forge_parser::parse_bytes(f, "Dockerfile").unwrap();
            }
        })
    });
    group.bench_function("parse+instructions+graph", |b| {
        b.iter(|| {
            for f in &files {
                let df = forge_parser::parse_bytes(f, "Dockerfile").unwrap();
                forge_parser::dag::BuildGraph::new(&df, &Default::default()).unwrap();
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
