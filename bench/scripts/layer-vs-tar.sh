#!/usr/bin/env bash
# forge layer diff/apply vs GNU tar pipelines on one generated tree: wall time, throughput
# ratios and peak RSS (the acceptance bar is < 64 MiB whatever the layer size).
#
#   bench/scripts/layer-vs-tar.sh              # 512 MiB tree
#   LAYER_BENCH_MIB=4096 bench/scripts/layer-vs-tar.sh   # the 4 GiB check
#
# Runs the layer_diff / layer_apply bench binaries in their one-shot mode (FORGE_LAYER_ONESHOT)
# under /usr/bin/time -v. Work files go to $LAYER_BENCH_DIR (default /tmp/forge-layer-bench).
set -euo pipefail

MIB=${LAYER_BENCH_MIB:-512}
WORK=${LAYER_BENCH_DIR:-/tmp/forge-layer-bench}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

bin_of() { # cargo prints "Executable benches/<name>.rs (<path>)"
  (cd "$ROOT" && cargo bench -p forge-bench --bench "$1" --no-run 2>&1) |
    sed -n "s/.*Executable benches\/$1.rs (\(.*\))/\1/p" | tail -1
}
DIFF_BIN=$(bin_of layer_diff)
APPLY_BIN=$(bin_of layer_apply)

rm -rf "$WORK" && mkdir -p "$WORK/src"
# 64 MiB files of base64 text (about 75% of random entropy, like mixed binaries) plus 2000 small files.
echo "generating ${MIB} MiB tree in $WORK/src" >&2
n=$(( MIB / 64 )); [ "$n" -ge 1 ] || n=1
for i in $(seq 1 "$n"); do
  head -c $(( 48 * 1024 * 1024 )) /dev/urandom | base64 -w 0 > "$WORK/src/big$i"
done
mkdir -p "$WORK/src/small"
for i in $(seq 1 2000); do echo "small file $i" > "$WORK/src/small/f$i"; done
sync

# Runs a command under /usr/bin/time -v; prints "seconds maxrss_kib".
measure() {
  local log; log=$(mktemp)
  /usr/bin/time -v "$@" > /dev/null 2> "$log" || { cat "$log" >&2; exit 1; }
  local wall rss
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log" |
    awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")
  rm -f "$log"
  echo "$wall $rss"
}

row() { # name forge_secs forge_rss tar_secs tar_rss
  awk -v n="$1" -v fs="$2" -v fr="$3" -v ts="$4" -v tr="$5" -v mib="$MIB" 'BEGIN {
    printf "%-12s forge %6.2fs %7.1f MB/s  peak %5.1f MiB | tar %6.2fs %7.1f MB/s | forge/tar throughput %.2fx\n",
      n, fs, mib*1.048576/fs, fr/1024, ts, mib*1.048576/ts, ts/fs }'
}

echo "== ${MIB} MiB tree: diff + tar + compress + sha256 x2 (forge) vs tar -c | codec (no hashing)"
read -r fg fgr < <(FORGE_LAYER_ONESHOT="$WORK/src" FORGE_LAYER_COMPRESSION=gzip measure "$DIFF_BIN")
read -r tg tgr < <(measure sh -c "tar -C '$WORK/src' -c . | gzip -6 > /dev/null")
row "diff gzip" "$fg" "$fgr" "$tg" "$tgr"
read -r fz fzr < <(FORGE_LAYER_ONESHOT="$WORK/src" FORGE_LAYER_COMPRESSION=zstd measure "$DIFF_BIN")
read -r tz tzr < <(measure sh -c "tar -C '$WORK/src' -c . | zstd -3 -T2 > /dev/null")
row "diff zstd" "$fz" "$fzr" "$tz" "$tzr"

echo "== apply (decompress + sha256 + safe extract) vs tar -x"
(cd "$WORK/src" && tar -c . | zstd -3 -T2 -q > "$WORK/layer.tar.zst")
(cd "$WORK/src" && tar -c . | gzip -6 > "$WORK/layer.tar.gz")
for codec in gz zst; do
  rm -rf "$WORK/dst" "$WORK/dst-tar" && mkdir -p "$WORK/dst" "$WORK/dst-tar"
  read -r fa far < <(FORGE_LAYER_ONESHOT="$WORK/layer.tar.$codec" FORGE_LAYER_TARGET="$WORK/dst" measure "$APPLY_BIN")
  read -r ta tar_rss < <(measure tar -C "$WORK/dst-tar" -xf "$WORK/layer.tar.$codec")
  row "apply $codec" "$fa" "$far" "$ta" "$tar_rss"
done
rm -rf "$WORK"
