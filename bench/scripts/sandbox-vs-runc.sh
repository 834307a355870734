#!/usr/bin/env bash
# Per-step overhead of forge's sandbox against runc: start to exit of `true` in a busybox
# rootfs, N times each, in one run. forge: `forge debug run ROOTFS -- true` (overlay mount,
# namespaces, cgroup, pivot_root, exec); runc: `runc run` of a bundle with the same rootfs and
# runc's default spec (namespaces, cgroup, pivot_root, exec; no overlay).
# usage: bench/scripts/sandbox-vs-runc.sh   (as root; N=50 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-50}
work=/tmp/forge-bench-sandbox
rm -rf $work && mkdir -p $work/bundle/rootfs
cargo build --release --locked -p forge >/dev/null
forge=$(pwd)/target/release/forge
bash scripts/busybox-rootfs.sh $work/bb.tar
tar -C $work/bundle/rootfs -xf $work/bb.tar
(cd $work/bundle && runc spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"true"/' config.json)
time_n() { local s e; s=$(date +%s.%N); for i in $(seq $N); do "$@" >/dev/null; done; e=$(date +%s.%N); echo "($e - $s) * 1000 / $N" | bc -l; }
"$forge" debug run $work/bundle/rootfs -- true   # warm the page cache
f=$(time_n "$forge" debug run $work/bundle/rootfs -- true)
r=$(time_n runc --root $work/runc-state run -b $work/bundle forge-bench)
printf 'per step (start to exit of true), mean of %d: forge %.1f ms, runc %.1f ms, runc/forge %.2fx\n' $N "$f" "$r" "$(echo "$r / $f" | bc -l)"
