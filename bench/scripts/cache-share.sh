#!/usr/bin/env bash
# Two CI runners sharing a build cache through a registry, on the anchor workloads, in one run:
#   forge A  : builds with --cache-to type=registry,ref=...,mode=max (not timed)
#   forge B  : an empty store but its base image, --cache-from the same ref (timed)
#   no-op    : A's store building again, nothing changed (timed): the local floor
#   BuildKit : Docker 28.5 (../shared/anchors/start-dockerd-modern.sh) doing what B does with
#              its registry cache: A builds with the inline cache and pushes; then its build
#              cache and the image are dropped and it builds with --cache-from (timed)
# Prints one table: median seconds, and B / no-op and BuildKit / B as ratios.
#
# usage: bench/scripts/cache-share.sh   (as root; RUNS=3, WORKLOADS="w1-small-files ... w4-many-steps")
# Needs the anchors' registry on 127.0.0.1:5000 with base/busybox (start-registry.sh, make-base.sh).
# Note: it runs `docker builder prune -af` on the Docker 28.5 daemon, which is shared: other
# users' BuildKit caches there are emptied too.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
RUNS=${RUNS:-3}
WORKLOADS=${WORKLOADS:-"w1-small-files w2-big-layer w3-multi-stage w4-many-steps"}
A=/tmp/forge-anchors
work=/tmp/forge-bench-cache
reg=127.0.0.1:5000
run_id=$(date +%s)

mkdir -p $A && cp "$repo/../shared/anchors/"* $A/
[ -d $A/workloads/w1-small-files ] || REG=$reg bash $A/make-workloads.sh >/dev/null
# FORGE=path picks another binary (a debug one, to try the script out).
if [ -z "${FORGE:-}" ]; then cargo build --release --locked -p forge >/dev/null; fi
forge=${FORGE:-$repo/target/release/forge}
# A store's default bridge and its firewall rules (its RUN steps use the default network) stay on
# the host until pruned: each store goes through here.
drop_store() { if [ -d "$1" ]; then $forge --root "$1" network prune >/dev/null 2>&1 || true; fi; rm -rf "$1"; }
for s in $work/a $work/b; do drop_store $s; done
rm -rf $work && mkdir -p $work
trap 'drop_store $work/a; drop_store $work/b' EXIT
export SOURCE_DATE_EPOCH=1700000000

bash $A/start-dockerd-modern.sh >/dev/null
export DOCKER_HOST=unix://$A/trixie/run/modern/docker.sock DOCKER_BUILDKIT=1
docker=/usr/bin/docker

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# Timed by bash's own clock, read in place: a `date`, or even `$(...)` (a fork), charged each
# timing up to 1 ms, a tenth of a no-op rebuild.
timed() { # COMMAND...: its wall time; a failure stops the run with its output
  local s e; s=$EPOCHREALTIME
  "$@" >/dev/null 2>$work/err || { echo "failed: $*" >&2; cat $work/err >&2; exit 1; }
  e=$EPOCHREALTIME; echo "$e - $s" | bc
}

# A store holding only the workload's base image, pulled outside the timing.
fresh_store() { # DIR WORKLOAD
  drop_store "$1"
  $forge --root "$1" pull -q "$(awk '/^FROM/ {print $2; exit}' $A/workloads/$2/Dockerfile)" >/dev/null
}

declare -A result
for w in $WORKLOADS; do
  ctx=$A/workloads/$w
  ref=$reg/forge-cache-bench/$w:$run_id
  bk=$reg/buildkit-cache-bench/$w:$run_id
  fresh_store $work/a $w
  $forge --root $work/a build -q --cache-to "type=registry,ref=$ref,mode=max" $ctx >/dev/null
  $docker builder prune -af >/dev/null
  $docker build -q --network none --build-arg BUILDKIT_INLINE_CACHE=1 -t $bk $ctx >/dev/null
  $docker push -q $bk >/dev/null
  b=() noop=() kit=()
  for i in $(seq $RUNS); do
    # Alternate the order, as build-vs.sh does: what runs right after BuildKit pays for its
    # clean-up (containerd deletes its snapshots, and ext4 without a journal then allocates
    # new inodes slowly), so each forge timing follows it in half the runs.
    order="b noop kit"; [ $((i % 2)) = 0 ] && order="kit noop b"
    for what in $order; do
      case $what in
        b) fresh_store $work/b $w; sync
           b+=("$(timed $forge --root $work/b build -q --cache-from "type=registry,ref=$ref" $ctx)") ;;
        noop) sync; noop+=("$(timed $forge --root $work/a build -q $ctx)") ;;
        kit) $docker builder prune -af >/dev/null; $docker rmi -f $bk >/dev/null 2>&1 || true; sync
             kit+=("$(timed $docker build -q --network none --cache-from $bk $ctx)") ;;
      esac
    done
  done
  result[$w,b]=$(printf '%s\n' "${b[@]}" | median)
  result[$w,noop]=$(printf '%s\n' "${noop[@]}" | median)
  result[$w,kit]=$(printf '%s\n' "${kit[@]}" | median)
done

printf '\n| workload | forge B (cache-from) s | forge local no-op s | BuildKit 28.5 cache-from s | B / no-op | BuildKit / B |\n|---|---|---|---|---|---|\n'
for w in $WORKLOADS; do
  b=${result[$w,b]} n=${result[$w,noop]} k=${result[$w,kit]}
  printf '| %s | %.4f | %.4f | %.2f | %.2fx | %.1fx |\n' $w $b $n $k "$(echo "$b / $n" | bc -l)" "$(echo "$k / $b" | bc -l)"
done
echo "(medians of $RUNS runs; $(nproc) cores, $(date -u +%F))"
