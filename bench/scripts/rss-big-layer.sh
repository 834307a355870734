#!/usr/bin/env bash
# Peak RSS of forge on one big layer: a RUN step writes SIZE of compressible text, then the image
# is pushed (compressed on the way) to a fresh local registry and saved. Prints GNU time's
# maximum resident set size (the largest process of forge's tree) and the wall time of each.
#
# usage: bench/scripts/rss-big-layer.sh      (as root)   env: MIB=4096, FORGE=target/release/forge
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
MIB=${MIB:-4096}
FORGE=${FORGE:-$repo/target/release/forge}
work=$(mktemp -d /tmp/forge-rss.XXXXXX)
registry_pid=
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && { wait "$registry_pid" 2>/dev/null || true; }
  # The store's bridge (and its subnet) go with it, as they would not with the directory alone.
  [ -d "$work/store" ] && $FORGE --root $work/store network prune >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

bash "$repo/scripts/busybox-rootfs.sh" $work/busybox.tar >/dev/null
$FORGE --root $work/store import $work/busybox.tar busybox:latest >/dev/null
mkdir -p $work/ctx
# 1 MiB of text repeated (busybox's head -c cannot count to 4G)
printf 'FROM busybox\nRUN yes "forge big layer line, compressible" | head -c 1048576 > /seed && i=0; while [ $i -lt %s ]; do cat /seed; i=$((i+1)); done > /big && rm /seed\n' "$MIB" > $work/ctx/Dockerfile

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p $work/registry
printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
  $work/registry/data $port > $work/registry/config.yml
/usr/bin/docker-registry serve $work/registry/config.yml > $work/registry/log 2>&1 &
registry_pid=$!
for _ in $(seq 100); do curl -fsS http://127.0.0.1:$port/v2/ >/dev/null 2>&1 && break; sleep 0.05; done

measure() { # LABEL COMMAND...
  local label=$1; shift
  /usr/bin/time -f '%M %e' -o $work/time "$@" >/dev/null
  read -r kib secs < $work/time
  printf '| %s MiB | %s | %.1f MiB | %s s |\n' "$MIB" "$label" "$(echo "$kib / 1024" | bc -l)" "$secs"
}
echo "| layer | command | peak RSS | wall |"
echo "|---|---|---|---|"
measure build $FORGE --root $work/store build -q --network none -t big:1 $work/ctx
measure push $FORGE --root $work/store push -q big:1 127.0.0.1:$port/big:1
measure save $FORGE --root $work/store save -o /dev/null big:1
