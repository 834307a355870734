#!/usr/bin/env bash
# Request latency of the docker CLI against `forge serve` and against Docker 28.5's dockerd,
# in one run, alternating: `docker images` and `docker ps -a` (one HTTP round trip each after
# the client's /_ping), with busybox loaded on both sides. Mean of N runs of the whole client
# command (process start included, the same client binary for both), and dockerd/forge.
# `docker run --rm IMG true` is not measured yet: forge serve cannot start containers.
# usage: bench/scripts/serve-vs-dockerd.sh   (as root; N=30; FORGE=path to use a built binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-30}
DOCKER=${DOCKER:-/usr/bin/docker}   # Debian's docker.io 20.10 client, for both sides
work=/tmp/forge-bench-serve
rm -rf $work && mkdir -p $work
if [ -z "${FORGE:-}" ]; then
  cargo build --release --locked -p forge >/dev/null
  FORGE=$(pwd)/target/release/forge
fi
# The reference daemon is shared: started when down, never stopped here.
bash ../shared/anchors/start-dockerd-modern.sh >/dev/null
modern=unix:///tmp/forge-anchors/trixie/run/modern/docker.sock
sock=$work/api.sock
"$FORGE" --root $work/store serve -H unix://$sock 2>$work/serve.log &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null || true; wait $serve_pid 2>/dev/null || true' EXIT
bash scripts/busybox-rootfs.sh $work/bb.tar >/dev/null
"$FORGE" --root $work/store import $work/bb.tar forge-bench-busybox:1 >/dev/null
"$FORGE" --root $work/store save -o $work/bb-image.tar forge-bench-busybox:1
DOCKER_HOST=$modern "$DOCKER" load -i $work/bb-image.tar >/dev/null
for _ in $(seq 50); do [ -S $sock ] && break; sleep 0.1; done
# As many distinct images in forge's store as dockerd lists (it is shared and holds others'),
# so both answer lists of the same length: one-file images, each with its own content.
mkdir -p $work/tiny
for i in $(seq 2 "$(DOCKER_HOST=$modern "$DOCKER" images -q | sort -u | wc -l)"); do
  echo "$i" > $work/tiny/file && tar -C $work/tiny -cf $work/tiny.tar file
  "$FORGE" --root $work/store import $work/tiny.tar forge-bench-tiny:$i >/dev/null
done

mean_ms() { # host, command...
  local host=$1 s e; shift
  s=$(date +%s.%N)
  for _ in $(seq $N); do DOCKER_HOST=$host "$DOCKER" "$@" >/dev/null; done
  e=$(date +%s.%N)
  echo "($e - $s) * 1000 / $N" | bc -l
}
printf '| command | forge serve ms | dockerd 28.5 ms | dockerd/forge |\n|---|---|---|---|\n'
for cmd in "images" "ps -a"; do
  # shellcheck disable=SC2086
  mean_ms unix://$sock $cmd >/dev/null; mean_ms $modern $cmd >/dev/null   # warm up both
  # shellcheck disable=SC2086
  f=$(mean_ms unix://$sock $cmd)
  # shellcheck disable=SC2086
  d=$(mean_ms $modern $cmd)
  printf '| docker %s | %.1f | %.1f | %.2fx |\n' "$cmd" "$f" "$d" "$(echo "$d / $f" | bc -l)"
done
# dockerd is shared: it may hold other images and containers than forge's store.
count() { DOCKER_HOST=$1 "$DOCKER" "${@:2}" -q | sort -u | wc -l; }
echo "listed: forge $(count unix://$sock images) images, $(count unix://$sock ps -a) containers; dockerd $(count $modern images) images, $(count $modern ps -a) containers"
DOCKER_HOST=$modern "$DOCKER" rmi forge-bench-busybox:1 >/dev/null
