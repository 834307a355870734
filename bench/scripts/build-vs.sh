#!/usr/bin/env bash
# forge build against Docker 28.5's built-in BuildKit (the reference, ../shared/anchors/
# start-dockerd-modern.sh) on the anchor workloads W1-W5, in one run on one machine.
# Docker 20.10 and buildah are optional extra columns (EXTRA="docker20 buildah").
#
# usage: bench/scripts/build-vs.sh       (as root)
#   env: RUNS=4  WORKLOADS="w1-small-files ..."  SCENARIOS="cold noop change push"  EXTRA=""
#        (SCENARIOS="noop change" alone: an untimed cold build first)
#        FORGE=path/to/forge (default: target/release/forge, built here)
#        FORGE_FLAGS="--compression gzip" (extra `forge build` flags, e.g. to time eager compression)
#        TRASH_AGE=65 (seconds to wait after deleting and syncing a workload's old stores)
#        WORK=/tmp/forge-bench-build (scratch directory, removed first: one per concurrent run)
# Both builders run RUN steps with --network none.
#
# Scenarios:
#   cold   : no build cache (forge: an empty store; docker: --no-cache, as its daemon is shared);
#            the base image pulled (and unpacked) before the timing
#   noop   : the same build again, nothing changed
#   change : late.txt (COPYed in the last steps) rewritten before the build
#   push   : a cold build, then a push to a fresh, empty registry (both timed together)
# Each run alternates which builder goes first (the second pays for the first one's writeback),
# with `sync` before every timed build. Prints per-run lines, then the medians, the ratios
# (forge / BuildKit, lower is better) and forge's peak RSS as a markdown table. The step events
# of each of forge's cold builds stay in $WORK/events-WORKLOAD-RUN, to see where a slow one went.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
RUNS=${RUNS:-4}
WORKLOADS=${WORKLOADS:-"w1-small-files w2-big-layer w3-multi-stage w4-many-steps w5-debian"}
SCENARIOS=${SCENARIOS:-"cold noop change push"}
EXTRA=${EXTRA:-}
A=/tmp/forge-anchors
REG=127.0.0.1:5000
work=${WORK:-/tmp/forge-bench-build}
tools="forge docker $EXTRA"

# ---- reference tools and data (../shared/anchors/README.md)
mkdir -p $A && cp "$repo/../shared/anchors/"* $A/ 2>/dev/null || true
bash $A/start-registry.sh >/dev/null
curl -fsS http://$REG/v2/base/busybox/manifests/latest -o /dev/null \
  -H 'Accept: application/vnd.oci.image.manifest.v1+json' || bash $A/make-base.sh >/dev/null
[ -f $A/workloads/w5-debian/Dockerfile ] || bash $A/make-workloads.sh >/dev/null
if ! curl -fsS http://$REG/v2/base/debian/manifests/bookworm -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json'; then
  echo "no debian base in $REG (make-base.sh's debootstrap failed?): W5 left out" >&2
  WORKLOADS=${WORKLOADS//w5-debian/}
fi
if [ -z "${FORGE:-}" ]; then
  cargo build --release --locked -p forge >/dev/null
  FORGE=$repo/target/release/forge
fi
bash $A/start-dockerd-modern.sh >/dev/null
sock28=unix://$A/trixie/run/modern/docker.sock sock20=unix://$A/dockerd/docker.sock
docker28() { DOCKER_HOST=$sock28 DOCKER_BUILDKIT=1 /usr/bin/docker "$@"; }
if [[ " $EXTRA " == *" docker20 "* ]]; then bash $A/start-dockerd.sh >/dev/null; fi
docker() { docker28 "$@"; }
docker20() { DOCKER_HOST=$sock20 DOCKER_BUILDKIT=1 /usr/bin/docker "$@"; }
export CONTAINERS_CONF=$A/containers.conf
buildah="buildah --root $work/buildah --runroot $work/buildah-run --storage-driver overlay"

# ext4 without a journal (this machine's) skips, in every inode allocation, the inodes deleted
# in the last 60 s, or the last 6 minutes while their inode table is not written back: a build
# right after a big delete spent 80% of its time there (`recently_deleted`). So deleted stores
# are synced, then left to age past that window.
age_deleted() { sync; sleep ${TRASH_AGE:-65}; }
# BuildKit's build cache of the --no-cache builds, pruned at the start and the end of a run: it
# grew by 16.7 GB over one day's runs and filled this machine's disk. Not between workloads,
# where its deletes would land just before the next workload's first timing. (Pruning there was
# not what made W2's first cold builds slow: they stayed slow without it; see the README.)
prune_buildkit() {
  for t in $tools; do
    case $t in docker|docker20) $t builder prune -af >/dev/null 2>&1 || true ;; esac
  done
}
# A previous run's stores go first (see prepare).
umount $work/registry 2>/dev/null || true
prune_buildkit
[ -d $work ] && rm -rf $work
age_deleted
mkdir -p $work/trash
registry_pid=
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && { wait "$registry_pid" 2>/dev/null || true; }
  for w in $WORKLOADS; do echo "late file v1" > $A/workloads/$w/late.txt; done
  umount $work/registry 2>/dev/null || true
  rm -rf $work/registry
}
trap cleanup EXIT

base_of() { case $1 in w5-*) echo $REG/base/debian:bookworm ;; *) echo $REG/base/busybox:latest ;; esac; }
for b in $(for w in $WORKLOADS; do base_of $w; done | sort -u); do
  docker28 pull -q $b >/dev/null
  [[ " $EXTRA " == *" docker20 "* ]] && docker20 pull -q $b >/dev/null
done

# forge's peak RSS (KiB, the largest process of its tree), appended per command; the other
# builders run under the same wrapper, so each timing pays for it alike.
rss_of="/usr/bin/time -f %M -a -o $work/rss"
same_wrapper="/usr/bin/time -o /dev/null"
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# A fresh registry (empty storage, free port) for one push run; docker trusts 127.0.0.0/8 over HTTP.
# Its storage is a tmpfs: on the disk it shared forge's block groups (it lived beside forge's
# store), and on ext4 without a journal every inode allocation skips, one buffer look-up each, the
# inodes deleted in the last minutes (6 while their inode-table block is dirty). The ~100 files
# each push run's registry deleted (its uploads, then itself) were skipped in each of the next
# forge build's 6,000 allocations: W1 builds took 0.4 s or 1.7-3.5 s by where they landed (traced
# with ext4_free_inode / ext4_allocate_inode on 2026-12-01; a slow one spent 65% of its CPU in
# `recently_deleted`), while BuildKit's store, elsewhere on the disk, never met them.
start_push_registry() {
  mkdir -p $work/registry
  mountpoint -q $work/registry || mount -t tmpfs -o size=8g,mode=0700 forge-bench-registry $work/registry
  rm -rf $work/registry/* && mkdir -p $work/registry/data
  push_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  sed -e "s#rootdirectory: .*#rootdirectory: $work/registry/data#" -e "s#addr: .*#addr: 127.0.0.1:$push_port#" \
    $A/registry-config.yml > $work/registry/config.yml
  /usr/bin/docker-registry serve $work/registry/config.yml > $work/registry/log 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do curl -fsS http://127.0.0.1:$push_port/v2/ >/dev/null 2>&1 && return; sleep 0.05; done
  echo "push registry did not start: $(cat $work/registry/log)" >&2; exit 1
}
stop_push_registry() { kill "$registry_pid"; wait "$registry_pid" 2>/dev/null || true; registry_pid=; }

prepare() { # TOOL WORKLOAD SCENARIO
  local b; b=$(base_of $2)
  # A tagged build leaves its big layers' tars to a background `forge store finish-tags` (nice
  # 19; see the README): it is waited for here, untimed, so that its writes do not land in the
  # next timing (the next cold build, or the other builder's).
  [ -d $work/forge ] && $FORGE --root $work/forge store finish-tags >/dev/null
  case $3 in
    cold|push)
      case $1 in
        # The previous store is moved aside, not deleted: on ext4 without a journal, inodes freed
        # in the last seconds are skipped (each one read back) when new files are allocated, so
        # an `rm -rf` just before the timing charged forge for deleting its own last store.
        forge) [ -d $work/forge ] && mv $work/forge $work/trash/forge-$(date +%s%N)
               $FORGE --root $work/forge pull -q --unpack $b >/dev/null ;;
        # The daemon is shared: --no-cache (below) rather than a prune of everyone's cache.
        # The last cold build's image stays until the next run (clear_kept), as forge's store
        # does: an `rmi` here deleted its files just before the next timing, whichever builder
        # came next paid for it (W1: 5,000 files), and forge came next in every other run.
        docker|docker20) ;;
        buildah) $buildah rmi -a -f >/dev/null 2>&1 || true; $buildah pull -q --tls-verify=false $b >/dev/null ;;
      esac ;;
  esac
  [ $3 = push ] && start_push_registry
  daemons_idle
  sync
}

# The reference daemons' CPU ticks (user + system), summed.
daemon_ticks() {
  local pids; pids=$(pgrep -x 'dockerd|containerd' 2>/dev/null | sed 's#.*#/proc/&/stat#')
  # A daemon that exits meanwhile is left out of the sum, not an error.
  if [ -n "$pids" ]; then awk '{ s += $14 + $15 } END { print s + 0 }' $pids 2>/dev/null || true; else echo 0; fi
}
# Waits (untimed, at most 30 s) until dockerd and containerd are idle: no more than 2 ticks in
# half a second. After a build or a push dockerd keeps working for seconds (after a cold W2
# build on 2026-12-01: 6 s at 0.3-1.2 cores), which landed on the next timing, whichever builder
# it was; forge's own background work (finishing tags) is waited for above, alike.
daemons_idle() {
  local prev now
  prev=$(daemon_ticks)
  for _ in $(seq 60); do
    sleep 0.5
    now=$(daemon_ticks)
    [ $((now - prev)) -le 2 ] && return
    prev=$now
  done
}

build() { # TOOL WORKLOAD SCENARIO
  local ctx=$A/workloads/$2 nc=
  case $3 in cold|push) nc=--no-cache ;; esac
  case $1 in
    # Cold: the progress events give each RUN step's CPU time (from its cgroup), for the limit below.
    forge) if [ $3 = cold ]; then
             $rss_of $FORGE --root $work/forge build --network none ${FORGE_FLAGS:-} --progress json -t bench/$2 $ctx 2>$work/events
           else
             $rss_of $FORGE --root $work/forge build --network none ${FORGE_FLAGS:-} -q -t bench/$2 $ctx
           fi ;;
    docker) DOCKER_HOST=$sock28 DOCKER_BUILDKIT=1 $same_wrapper /usr/bin/docker build $nc --network none -q -t bench/$2 $ctx ;;
    docker20) DOCKER_HOST=$sock20 DOCKER_BUILDKIT=1 $same_wrapper /usr/bin/docker build $nc --network none -q -t bench/$2 $ctx ;;
    buildah) $same_wrapper $buildah bud --isolation chroot --layers --pull=never -q -t bench/$2 $ctx ;;
  esac >/dev/null
}

push() { # TOOL WORKLOAD
  local dest=127.0.0.1:$push_port/bench/$2:1
  case $1 in
    forge) $rss_of $FORGE --root $work/forge push -q bench/$2 $dest ;;
    docker) docker28 tag bench/$2 $dest && docker28 push -q $dest && docker28 rmi $dest ;;
    docker20) docker20 tag bench/$2 $dest && docker20 push -q $dest && docker20 rmi $dest ;;
    buildah) $buildah push -q --tls-verify=false bench/$2 docker://$dest ;;
  esac >/dev/null
}

# The physical limit of a cold build whose RUN steps are CPU-bound (W3): the RUN steps' own CPU
# seconds (each from its cgroup, in forge's `StepDone` events) spread over every core.
run_cpu_per_core() { # EVENTS
  python3 -c 'import json,sys
t=0.0
for l in open(sys.argv[1]):
    try: e=json.loads(l)
    except ValueError: continue
    if isinstance(e, dict) and e.get("event") == "step_done": t += e.get("cpu_time") or 0
print(t / int(sys.argv[2]))' "$1" "$(nproc)"
}

# The stores set aside and the other builders' images go after each workload, then age (see
# age_deleted), and before a run when forge's stores set aside hold more than 1 GiB: what is kept
# grows by about 5 GiB per W2 run, and on this VM (DAMON pages out cold memory) both builders ran
# W2 twice as slowly from the second run on. Small ones stay until the workload ends, as
# BuildKit's cache of the earlier runs does (its `rmi` frees next to nothing while the cache holds
# the layers): a W1 store deleted before each run (6,400 inodes, in forge's block groups) was
# still skipped by the next forge build (see start_push_registry; aging does not help, as the
# first new inode in a block dirties it again). Not within a run: a delete lands on whichever
# builder comes next.
clear_kept() { # WORKLOAD [run]
  for t in $tools; do
    case $t in docker|docker20) { $t rmi -f bench/$1 && $t image prune -f; } >/dev/null 2>&1 || true ;; esac
  done
  if [ "${2:-}" != run ] || [ "$(du -sm $work/trash | cut -f1)" -gt 1024 ]; then
    rm -rf $work/trash/* && age_deleted
  fi
}

declare -A times rss limit
for w in $WORKLOADS; do
  # noop and change time a rebuild: without cold among the scenarios, an untimed cold build
  # of each tool comes first.
  if [[ " $SCENARIOS " != *" cold "* ]]; then
    for t in $tools; do prepare $t $w cold; build $t $w cold; done
    rm -f $work/rss
  fi
  for i in $(seq $RUNS); do
    [ $i -gt 1 ] && clear_kept $w run
    # Alternate the order: odd runs forge first, even runs forge last.
    order=$tools; [ $((i % 2)) = 0 ] && order=$(echo $tools | tr ' ' '\n' | tac | tr '\n' ' ')
    for s in $SCENARIOS; do
      [ $s = change ] && date +%s%N > $A/workloads/$w/late.txt
      for t in $order; do
        # noop and change run on what this tool's cold build left; push starts cold again,
        # so it comes last.
        prepare $t $w $s
        # Bash's own clock, read in place: a `date`, or even `$(...)` (a fork), charged each
        # timing up to 1 ms, a tenth of a no-op rebuild.
        start=$EPOCHREALTIME
        build $t $w $s
        [ $s = push ] && push $t $w
        end=$EPOCHREALTIME
        [ $s = push ] && stop_push_registry
        t_s=$(echo "$end - $start" | bc)
        if [ $t = forge ]; then rss[$w,$s]="${rss[$w,$s]:-} $(sort -n $work/rss | tail -1)"; rm -f $work/rss; fi
        if [ $t = forge ] && [ $s = cold ]; then
          mv $work/events $work/events-$w-$i
          limit[$w]="${limit[$w]:-} $(run_cpu_per_core $work/events-$w-$i)"
        fi
        times[$t,$w,$s]="${times[$t,$w,$s]:-} $t_s"
        printf '%s run %d %s %s: %.3f s\n' $w $i $s $t $t_s >&2
      done
    done
    echo "late file v1" > $A/workloads/$w/late.txt
  done
  clear_kept $w
done

prune_buildkit

med() { printf '%s\n' $1 | median; }
head="| workload | scenario | forge s | BuildKit 28.5 s | forge / BuildKit |"
sep="|---|---|---|---|---|"
for t in $EXTRA; do head="$head $t s | forge / $t |"; sep="$sep---|---|"; done
printf '\n%s forge peak RSS MiB |\n%s---|\n' "$head" "$sep"
for w in $WORKLOADS; do
  for s in $SCENARIOS; do
    f=$(med "${times[forge,$w,$s]}") d=$(med "${times[docker,$w,$s]}")
    line=$(printf '| %s | %s | %.3f | %.3f | %.2f× |' ${w%%-*} $s $f $d "$(echo "$f / $d" | bc -l)")
    for t in $EXTRA; do
      o=$(med "${times[$t,$w,$s]}")
      line="$line $(printf '%.3f | %.2f× |' $o "$(echo "$f / $o" | bc -l)")"
    done
    maxrss=$(printf '%s\n' ${rss[$w,$s]} | sort -n | tail -1)
    printf '%s %.1f |\n' "$line" "$(echo "$maxrss / 1024" | bc -l)"
  done
done
if [[ " $SCENARIOS " == *" cold "* ]]; then
  printf '\n| workload | forge cold s | RUN CPU s / %d cores (the limit) | forge / limit |\n|---|---|---|---|\n' "$(nproc)"
  for w in $WORKLOADS; do
    f=$(med "${times[forge,$w,cold]}") l=$(med "${limit[$w]}")
    printf '| %s | %.3f | %.3f | %s |\n' ${w%%-*} $f $l "$(echo "$l > 0" | bc -l | grep -q 1 && printf '%.2f×' "$(echo "$f / $l" | bc -l)" || echo -)"
  done
fi
echo
echo "(medians of $RUNS runs, builders alternating which goes first, sync before each build; push = cold build +"
echo " push to an empty local registry; ratio < 1 means forge is faster; RSS = largest process of forge's tree,"
echo " max over runs; $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u '+%F %H:%M UTC'))"
