#!/usr/bin/env bash
# Bridged networking, forge against podman (its netavark/CNI bridge), in one run on one machine.
#
# usage: bench/scripts/network-vs.sh          (as root; RUNS=5 by default, MIB=1024; FORGE_BIN
#        to time a forge binary already built instead of building the release one)
#
#   up       : `run --rm busybox true` on the default bridge, and with --network none (what the
#              bridge costs), median seconds
#   published: MIB MiB from the host into a container through a published port on 127.0.0.1
#              (forge: its userland proxy; podman: its port forwarder), MiB/s
#   c2c      : MIB MiB from one container to another by name on a user network, MiB/s
# Prints one table and the ratios (podman / forge for times, forge / podman for throughput).
# Docker's bridge is left out: the reference daemon runs without a bridge or iptables rules
# (see ../shared/anchors), and a second daemon with them would rewrite the host's firewall.
# podman leaves its default bridge (cni-podman0) and its CNI chains behind, as it always does.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
RUNS=${RUNS:-5}
MIB=${MIB:-1024}
work=/tmp/forge-bench-network
export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo/../shared/anchors/containers.conf}

if [ -z "${FORGE_BIN:-}" ]; then
  cargo build --release --locked -p forge >/dev/null
  FORGE_BIN=$repo/target/release/forge
fi
forge="$FORGE_BIN --root $work/forge"
rm -rf $work && mkdir -p $work
bash "$repo/scripts/busybox-rootfs.sh" $work/busybox.tar >/dev/null
$forge import $work/busybox.tar busybox:latest >/dev/null
podman import -q $work/busybox.tar localhost/forge-bench-busybox >/dev/null
cleanup() {
  $forge rm -f srv >/dev/null 2>&1 || true
  podman rm -f forge-bench-srv >/dev/null 2>&1 || true
  podman network rm -f forge-bench >/dev/null 2>&1 || true
  podman rmi -f localhost/forge-bench-busybox >/dev/null 2>&1 || true
  $forge network prune >/dev/null 2>&1 || true
}
trap cleanup EXIT

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
timed() { local t0; t0=$(now); "$@" >/dev/null; echo "$(now) - $t0" | bc; }

up() { # TOOL NETWORK
  case $1 in
    forge) timed $forge run --rm --network "$2" busybox true ;;
    podman) timed podman run --rm --network "$2" localhost/forge-bench-busybox true ;;
  esac
}

# MiB/s of MIB MiB pushed from the host to 127.0.0.1:PORT, where a container drains it (its
# server takes connection after connection, so the readiness probe costs nothing).
published() { # TOOL
  local port=18931 t serve='while true; do nc -l -p 9000 > /dev/null; done'
  case $1 in
    forge) ($forge run --rm --name srv -p 127.0.0.1:$port:9000 busybox sh -c "$serve" >/dev/null 2>&1 &) ;;
    podman) podman run -d --rm --name forge-bench-srv -p 127.0.0.1:$port:9000 localhost/forge-bench-busybox sh -c "$serve" >/dev/null ;;
  esac
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  sleep 0.5
  t=$(timed bash -c "dd if=/dev/zero bs=1M count=$MIB 2>/dev/null > /dev/tcp/127.0.0.1/$port")
  case $1 in forge) $forge rm -f srv >/dev/null 2>&1 || true ;; podman) podman rm -f forge-bench-srv >/dev/null 2>&1 || true ;; esac
  echo "$MIB / $t" | bc -l
}

c2c() { # TOOL
  local t script="for i in \$(seq 100); do dd if=/dev/zero bs=1M count=$MIB 2>/dev/null | nc srv 9000 && exit 0; sleep 0.1; done"
  case $1 in
    forge) $forge network create forge-bench >/dev/null 2>&1 || true
           ($forge run --rm --name srv --network forge-bench busybox sh -c 'nc -l -p 9000 > /dev/null' >/dev/null 2>&1 &); sleep 1
           t=$(timed $forge run --rm --network forge-bench busybox sh -c "$script")
           $forge rm -f srv >/dev/null 2>&1 || true ;;
    podman) podman network create forge-bench >/dev/null 2>&1 || true
            podman run -d --rm --name forge-bench-srv --network forge-bench localhost/forge-bench-busybox sh -c 'nc -l -p 9000 > /dev/null' >/dev/null; sleep 1
            # By address: the CNI network here has no name resolution (no dnsname plugin).
            local ip; ip=$(podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' forge-bench-srv)
            t=$(timed podman run --rm --network forge-bench localhost/forge-bench-busybox sh -c "${script//nc srv/nc $ip}")
            podman rm -f forge-bench-srv >/dev/null 2>&1 || true ;;
  esac
  echo "$MIB / $t" | bc -l
}

declare -A r
for tool in forge podman; do
  r[$tool.up]=$(for _ in $(seq $RUNS); do up $tool bridge; done | median)
  r[$tool.none]=$(for _ in $(seq $RUNS); do up $tool none; done | median)
  r[$tool.pub]=$(published $tool)
  r[$tool.c2c]=$(c2c $tool)
done
printf '%-28s %10s %10s %8s\n' measure forge podman ratio
printf '%-28s %10.3f %10.3f %8.2f\n' "up, bridge (s)" ${r[forge.up]} ${r[podman.up]} "$(echo "${r[podman.up]} / ${r[forge.up]}" | bc -l)"
printf '%-28s %10.3f %10.3f %8.2f\n' "up, none (s)" ${r[forge.none]} ${r[podman.none]} "$(echo "${r[podman.none]} / ${r[forge.none]}" | bc -l)"
printf '%-28s %10.0f %10.0f %8.2f\n' "host->127.0.0.1:port (MiB/s)" ${r[forge.pub]} ${r[podman.pub]} "$(echo "${r[forge.pub]} / ${r[podman.pub]}" | bc -l)"
printf '%-28s %10.0f %10.0f %8.2f\n' "container->container (MiB/s)" ${r[forge.c2c]} ${r[podman.c2c]} "$(echo "${r[forge.c2c]} / ${r[podman.c2c]}" | bc -l)"
