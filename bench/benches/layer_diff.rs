//! Layer creation throughput: two-directory diff of a generated tree + tar + compression +
//! both sha256s, in MB/s of uncompressed input, for plain, gzip and zstd.
//!
//! With `FORGE_LAYER_ONESHOT=<dir>` the binary instead writes one layer of `<dir>` (codec from
//! `FORGE_LAYER_COMPRESSION`: gzip, zstd or none) to /dev/null and prints the digests: this is
//! what `bench/scripts/layer-vs-tar.sh` runs under `/usr/bin/time -v` to measure peak RSS.

use std::path::Path;
use std::time::Instant;

use criterion::{criterion_group, Criterion, Throughput};
use forge_layerstore::archive::Compression;
use forge_layerstore::diff::{write_layer, LayerOptions, LayerSource};

/// Writes `files` files of `size` bytes of base64-like text (about 25% compressible, like
/// typical binaries and text mixed) under `dir`.
fn make_tree(dir: &Path, files: usize, size: usize) -> u64 {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut total = 0;
    for i in 0..files {
        let sub = dir.join(format!("d{}", i % 16));
        std::fs::create_dir_all(&sub).unwrap();
        let data: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ALPHABET[(x % 64) as usize]
            })
            .collect();
        std::fs::write(sub.join(format!("f{i}")), &data).unwrap();
        total += size as u64;
    }
    total
}

fn codec(name: &str) -> Compression {
    match name {
        "zstd" => Compression::Zstd,
        "none" => Compression::None,
        _ => Compression::Gzip,
    }
}

fn oneshot(dir: &str) {
    let compression = codec(&std::env::var("FORGE_LAYER_COMPRESSION").unwrap_or_default());
    let out = std::fs::File::create("/dev/null").unwrap();
    let start = Instant::now();
    let info = write_layer(
        &LayerSource::Dirs {
            lower: None,
            upper: Path::new(dir),
        },
        &LayerOptions {
            compression,
            source_date_epoch: None,
        },
        out,
    )
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "diff {compression:?}: {} bytes in {secs:.2}s = {:.1} MB/s; diffID {} digest {}",
        info.uncompressed_size,
        info.uncompressed_size as f64 / secs / 1e6,
        info.diff_id,
        info.digest
    );
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = make_tree(tmp.path(), 64, 512 * 1024);
    let mut group = c.benchmark_group("layer diff (32 MiB tree)");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(10);
    for name in ["none", "gzip", "zstd"] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let opts = LayerOptions {
                    compression: codec(name),
                    source_date_epoch: None,
                };
                write_layer(
                    &LayerSource::Dirs {
                        lower: None,
                        upper: tmp.path(),
                    },
                    &opts,
                    std::io::sink(),
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    match std::env::var("FORGE_LAYER_ONESHOT") {
        Ok(dir) => oneshot(&dir),
        Err(_) => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
