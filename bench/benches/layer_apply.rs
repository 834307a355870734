//! Layer apply throughput: decompress + hash + safe extraction into a fresh directory, in MB/s
//! of uncompressed tar, for gzip and zstd layers of a generated tree.
//!
//! With `FORGE_LAYER_ONESHOT=<blob>` and `FORGE_LAYER_TARGET=<empty dir>` the binary applies
//! that one layer and prints the diffID: `bench/scripts/layer-vs-tar.sh` runs it under
//! `/usr/bin/time -v` to measure peak RSS.

use std::time::Instant;

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use forge_layerstore::archive::{apply_layer, ApplyOptions, Compression};
use forge_layerstore::diff::{write_layer, LayerOptions, LayerSource};

fn oneshot(blob: &str) {
    let target = std::env::var("FORGE_LAYER_TARGET").expect("FORGE_LAYER_TARGET");
    let file = std::io::BufReader::with_capacity(256 * 1024, std::fs::File::open(blob).unwrap());
    let start = Instant::now();
    let stats = apply_layer(
        file,
        std::path::Path::new(&target),
        &ApplyOptions::default(),
    )
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "apply {:?}: {} bytes in {secs:.2}s = {:.1} MB/s; diffID {}",
        stats.compression,
        stats.uncompressed_size,
        stats.uncompressed_size as f64 / secs / 1e6,
        stats.diff_id
    );
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let mut x: u64 = 0x2545f4914f6cdd1d;
    for i in 0..64 {
        let data: Vec<u8> = (0..512 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                    [(x % 64) as usize]
            })
            .collect();
        std::fs::write(src.join(format!("f{i}")), data).unwrap();
    }
    let mut group = c.benchmark_group("layer apply (32 MiB tree)");
    group.sample_size(10);
    for (name, compression) in [("gzip", Compression::Gzip), ("zstd", Compression::Zstd)] {
        let mut blob = Vec::new();
        let info = write_layer(
            &LayerSource::Dirs {
                lower: None,
                upper: &src,
            },
            &LayerOptions {
                compression,
                source_date_epoch: None,
            },
            &mut blob,
        )
        .unwrap();
        group.throughput(Throughput::Bytes(info.uncompressed_size));
        group.bench_function(name, |b| {
            b.iter_batched(
                || tempfile::tempdir_in(tmp.path()).unwrap(),
                |dst| apply_layer(&blob[..], dst.path(), &ApplyOptions::default()).unwrap(),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    match std::env::var("FORGE_LAYER_ONESHOT") {
        Ok(blob) => oneshot(&blob),
        Err(_) => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
