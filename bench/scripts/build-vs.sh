#!/usr/bin/env bash
# forge build against docker build (BuildKit, Debian's docker.io 20.10) and buildah bud (chroot
# isolation, as in ../shared/anchors) on the anchor workloads W1-W4, in one run on one machine.
#
# usage: bench/scripts/build-vs.sh            (as root; RUNS=3 by default, WORKLOADS to pick)
#
# Scenarios, as in ../shared/anchors/bench-buildah.sh:
#   cold   : empty build cache and store but for the base image (prepared outside the timing)
#   noop   : the same build again, nothing changed
#   change : late.txt (COPYed in the last steps) rewritten before the build
# Prints one table: median seconds per tool, and how many times faster forge is (other / forge).
# W5 (Debian minbase) is left out: it needs debootstrap from a Debian mirror.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
RUNS=${RUNS:-3}
WORKLOADS=${WORKLOADS:-"w1-small-files w2-big-layer w3-multi-stage w4-many-steps"}
A=/tmp/forge-anchors
work=/tmp/forge-bench-build
base=127.0.0.1:5000/base/busybox:latest

mkdir -p $A && cp "$repo/../shared/anchors/"* $A/
[ -d $A/workloads/w1-small-files ] || REG=127.0.0.1:5000 bash $A/make-workloads.sh >/dev/null
cargo build --release --locked -p forge >/dev/null
forge="$repo/target/release/forge"
rm -rf $work && mkdir -p $work
bash "$repo/scripts/busybox-rootfs.sh" $work/busybox.tar

# docker: its own daemon, the base loaded from a forge archive.
bash $A/start-dockerd.sh >/dev/null
export DOCKER_HOST=unix://$A/dockerd/docker.sock DOCKER_BUILDKIT=1
docker=/usr/bin/docker
$forge --root $work/seed import $work/busybox.tar $base >/dev/null
$forge --root $work/seed save --format docker -o $work/busybox-docker.tar $base
$forge --root $work/seed save --format oci -o $work/busybox-oci.tar $base
$docker load -q -i $work/busybox-docker.tar >/dev/null

export CONTAINERS_CONF=$A/containers.conf
buildah="buildah --root $work/buildah --runroot $work/buildah-run --storage-driver overlay"

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

prepare() { # TOOL WORKLOAD SCENARIO
  case $3 in
    cold)
      case $1 in
        forge) rm -rf $work/forge && $forge --root $work/forge import $work/busybox.tar $base >/dev/null ;;
        buildah) $buildah rmi -a -f >/dev/null 2>&1 || true
                 $buildah pull -q oci-archive:$work/busybox-oci.tar >/dev/null && $buildah tag "$($buildah images -q | head -1)" $base ;;
        docker) $docker builder prune -af >/dev/null; $docker rmi -f bench/$2 >/dev/null 2>&1 || true ;;
      esac ;;
    change) date +%s%N > $A/workloads/$2/late.txt ;;
  esac
  sync
}

build() { # TOOL WORKLOAD
  ctx=$A/workloads/$2
  case $1 in
    forge) $forge --root $work/forge build -q -t bench/$2 $ctx ;;
    buildah) $buildah bud --isolation chroot --layers --pull=never -q -t bench/$2 $ctx ;;
    docker) $docker build --network none -q -t bench/$2 $ctx ;;
  esac >/dev/null
}

declare -A result
for w in $WORKLOADS; do
  for t in forge docker buildah; do
    for s in cold noop change; do
      times=()
      for _ in $(seq $RUNS); do
        # noop and change run after the cold runs, on what the last one built.
        prepare $t $w $s
        start=$(now); build $t $w; end=$(now)
        times+=("$(echo "$end - $start" | bc)")
      done
      result[$t,$w,$s]=$(printf '%s\n' "${times[@]}" | median)
    done
  done
done

printf '\n| workload | scenario | forge s | BuildKit s | buildah s | vs BuildKit | vs buildah |\n|---|---|---|---|---|---|---|\n'
for w in $WORKLOADS; do
  for s in cold noop change; do
    f=${result[forge,$w,$s]} d=${result[docker,$w,$s]} b=${result[buildah,$w,$s]}
    printf '| %s | %s | %.2f | %.2f | %.2f | %.1fx | %.1fx |\n' $w $s $f $d $b "$(echo "$d / $f" | bc -l)" "$(echo "$b / $f" | bc -l)"
  done
done
echo "(medians of $RUNS runs; 'vs' = other tool's time / forge's time; $(nproc) cores, $(date -u +%F))"
