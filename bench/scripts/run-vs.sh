#!/usr/bin/env bash
# Container startup: wall time of `run --rm IMG true` (create, start, exit, remove) for forge,
# podman and Docker 28.5, on the same busybox image imported into each, N rounds in one run.
# Each round runs the three once, in an order that rotates from round to round (so none always
# pays for the previous one's writeback); medians per engine and ratios. All three with
# `--network none`: no bridge or NAT set-up is timed (bench/scripts/network-vs.sh times that).
# usage: bench/scripts/run-vs.sh   (as root; N=30 by default; Docker 28.5 must be up, see
#        ../shared/anchors/start-dockerd-modern.sh; podman uses ../shared/anchors/containers.conf)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-30}
work=$(mktemp -d /tmp/forge-bench-run.XXXXXX)
tag=forge-bench-busybox:$$
export CONTAINERS_CONF=${CONTAINERS_CONF:-$(cd ../shared/anchors 2>/dev/null && pwd)/containers.conf}
export DOCKER_HOST=${DOCKER_HOST:-unix:///tmp/forge-anchors/trixie/run/modern/docker.sock}
docker version --format '{{.Server.Version}}' >/dev/null || { echo "Docker is not up: run ../shared/anchors/start-dockerd-modern.sh" >&2; exit 1; }

cleanup() {
    docker rmi -f "$tag" >/dev/null 2>&1 || true
    podman rmi -f "localhost/$tag" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
cargo build --release --locked -p forge >/dev/null
forge=$(pwd)/target/release/forge

bash scripts/busybox-rootfs.sh "$work/bb.tar"
"$forge" --root "$work/store" import "$work/bb.tar" "$tag" >/dev/null
podman import -q "$work/bb.tar" "localhost/$tag" >/dev/null
docker import "$work/bb.tar" "$tag" >/dev/null

run_forge() { "$forge" --root "$work/store" run --rm --network none "$tag" true; }
run_podman() { podman run --rm --network none "localhost/$tag" true; }
run_docker() { docker run --rm --network none "$tag" true; }
engines=(forge podman docker)

# One of each first: caches warm, images unpacked.
for e in "${engines[@]}"; do "run_$e" >/dev/null; done
for e in "${engines[@]}"; do : >"$work/$e.ms"; done
for round in $(seq 0 $((N - 1))); do
    for k in 0 1 2; do
        e=${engines[$(((round + k) % 3))]}
        s=$(date +%s%N)
        "run_$e" >/dev/null
        echo $((($(date +%s%N) - s) / 1000)) >>"$work/$e.ms"
    done
done

median() { sort -n "$1" | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.1f", m / 1000}'; }
f=$(median "$work/forge.ms"); p=$(median "$work/podman.ms"); d=$(median "$work/docker.ms")
echo "run --rm busybox true, median of $N rounds (ms), $(nproc) cores, $(date -u +%F)"
echo
echo "| engine | median ms | forge / engine |"
echo "|---|---|---|"
printf '| forge %s | %s | 1.00 |\n' "$("$forge" --version | awk '{print $2}')" "$f"
printf '| podman %s | %s | %.2f |\n' "$(podman version --format '{{.Client.Version}}')" "$p" "$(echo "$f / $p" | bc -l)"
printf '| docker %s | %s | %.2f |\n' "$(docker version --format '{{.Server.Version}}')" "$d" "$(echo "$f / $d" | bc -l)"
