#!/usr/bin/env bash
# Bridged networking, forge against Docker 28.5 (its own bridge, docker-proxy) and podman (its
# netavark/CNI bridge), in one run on one machine.
#
# usage: bench/scripts/network-vs.sh   (as root; RUNS=5 by default, MIB=1024, REQS=1000; FORGE_BIN
#        to time a forge binary already built instead of building the release one; TOOLS to
#        pick among "forge docker podman")
#
#   up         : `run --rm busybox true` on the default bridge, and with --network none (what
#                the bridge costs), median seconds
#   pub lo/br  : curl on the host GETs MIB MiB from a busybox httpd in a container through a
#                port published on 0.0.0.0, at 127.0.0.1 and at the bridge's own address
#                (forge: its userland proxy; docker: docker-proxy, as it runs without iptables
#                here; podman: its port forwarder), MiB/s
#   direct     : the same from the container's address: the bridge alone, no proxy
#   c2c        : busybox wget GETs MIB MiB from another container by name on a user network
#                (podman's CNI network here has no name resolution: by address), MiB/s,
#                median of RUNS
#   req        : one GET of 4 KiB the same way (a loop of REQS), median of RUNS, milliseconds
# Prints one table and the ratios (other / forge for times, forge / other for throughput:
# above 1 means forge is better).
#
# Docker: the reference daemon (../shared/anchors/start-dockerd-modern.sh) runs with
# --bridge=none, so this starts a second dockerd from the same chroot, on a data-root,
# exec-root, socket and pidfile of its own, with a bridge of its own (fdbench0, made here) and
# --iptables=false --ip6tables=false --ip-masq=false --ip-forward=false: the host's firewall and
# sysctls are left alone (traffic between the host and the bridge needs neither NAT nor
# forwarding). It is stopped, and its bridge, mount and data removed, at the end.
# podman leaves its default bridge (cni-podman0) and its CNI chains behind, as it always does.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
RUNS=${RUNS:-5}
MIB=${MIB:-1024}
REQS=${REQS:-1000}
TOOLS=${TOOLS:-forge docker podman}
work=/tmp/forge-bench-network
export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo/../shared/anchors/containers.conf}
chroot_dir=/tmp/forge-anchors/trixie
dk_bridge=fdbench0 dk_subnet=10.231.7 dk_pool=10.232.0.0/16
dk_sock=$chroot_dir/run/netbench/docker.sock dk_pidfile=$chroot_dir/run/netbench/pid

if [ -z "${FORGE_BIN:-}" ]; then
  cargo build --release --locked -p forge >/dev/null
  FORGE_BIN=$repo/target/release/forge
fi
forge="$FORGE_BIN --root $work/forge"
docker="docker -H unix://$dk_sock"
rm -rf $work && mkdir -p $work
bash "$repo/scripts/busybox-rootfs.sh" $work/busybox.tar >/dev/null
$forge import $work/busybox.tar busybox:latest >/dev/null
podman import -q $work/busybox.tar localhost/forge-bench-busybox >/dev/null

dk_started=
start_docker() {
  [ -x $chroot_dir/usr/sbin/dockerd ] || bash "$repo/../shared/anchors/start-dockerd-modern.sh" >/dev/null
  if ip -4 route | grep -q "^$dk_subnet\." || ip link show $dk_bridge >/dev/null 2>&1; then
    echo "$dk_bridge or $dk_subnet.0/24 is in use on this host: change dk_bridge/dk_subnet" >&2; exit 1
  fi
  ip link add $dk_bridge type bridge
  ip addr add $dk_subnet.1/24 dev $dk_bridge
  ip link set $dk_bridge up
  mkdir -p $chroot_dir/run/netbench
  mountpoint -q $chroot_dir || { echo "run start-dockerd-modern.sh first (it mounts the chroot)" >&2; exit 1; }
  dk_started=1
  setsid chroot $chroot_dir dockerd --data-root /var/lib/netbench --exec-root /run/netbench/exec \
    -H unix:///run/netbench/docker.sock --pidfile /run/netbench/pid --bridge=$dk_bridge \
    --iptables=false --ip6tables=false --ip-masq=false --ip-forward=false \
    --default-address-pool base=$dk_pool,size=24 > $work/dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 120); do $docker version >/dev/null 2>&1 && break; sleep 0.5; done
  $docker version >/dev/null || { echo "the bench dockerd did not come up: $work/dockerd.log" >&2; exit 1; }
  $docker import $work/busybox.tar forge-bench-busybox:latest >/dev/null
}

stop_docker() {
  [ -n "$dk_started" ] || return 0
  $docker rm -f $($docker ps -aq) >/dev/null 2>&1 || true
  $docker network rm forge-bench >/dev/null 2>&1 || true
  if [ -s $dk_pidfile ]; then
    local pid; pid=$(cat $dk_pidfile)
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  mountpoint -q $chroot_dir/var/lib/netbench && umount $chroot_dir/var/lib/netbench
  rm -rf $chroot_dir/var/lib/netbench $chroot_dir/run/netbench
  ip link del $dk_bridge 2>/dev/null || true
}

cleanup() {
  $forge rm -f srv cli >/dev/null 2>&1 || true
  podman rm -f forge-bench-srv forge-bench-cli >/dev/null 2>&1 || true
  podman network rm -f forge-bench >/dev/null 2>&1 || true
  podman rmi -f localhost/forge-bench-busybox >/dev/null 2>&1 || true
  $forge network prune >/dev/null 2>&1 || true
  stop_docker
}
trap cleanup EXIT
trap 'exit 130' INT TERM
[[ " $TOOLS " == *" docker "* ]] && start_docker

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
timed() { local t0; t0=$EPOCHREALTIME; "$@" >/dev/null; echo "$EPOCHREALTIME - $t0" | bc; }

# TOOL run|rm|exec|ip|network-create ARGS: the one place the three CLIs differ.
t() {
  local tool=$1 verb=$2 cli image=busybox; shift 2
  case $tool in
    forge) cli=$forge ;;
    docker) cli=$docker image=forge-bench-busybox ;;
    podman) cli=podman image=localhost/forge-bench-busybox ;;
  esac
  case $verb in
    run) # NAME|- NETWORK|- [run flags...] -- ARGS...
      local name=$1 net=$2 flags=(); shift 2
      while [ "$1" != -- ]; do flags+=("$1"); shift; done; shift
      [ "$name" != - ] && flags+=(--name "$(n $tool $name)")
      [ "$net" != - ] && flags+=(--network "$net")
      if [ $tool = forge ] && [[ " ${flags[*]} " == *" -d "* ]]; then
        # forge has no daemon: a detached container is a forge process in the background.
        local f=() ; for x in "${flags[@]}"; do [ "$x" != -d ] && f+=("$x"); done
        (setsid $cli run "${f[@]}" $image "$@" >/dev/null 2>&1 < /dev/null &)
        for _ in $(seq 100); do $cli ps | grep -q " $(n $tool $name)\$" && break; sleep 0.1; done
      elif [[ " ${flags[*]} " == *" -d "* ]]; then
        $cli run "${flags[@]}" $image "$@" >/dev/null
      else
        $cli run "${flags[@]}" $image "$@"
      fi ;;
    rm) for x in "$@"; do $cli rm -f "$(n $tool $x)" >/dev/null 2>&1 || true; done ;;
    exec) local name=$1; shift; $cli exec "$(n $tool $name)" "$@" ;;
    ip) # NAME NETWORK: its address there
      case $tool in
        forge) $forge network inspect "$2" | python3 -c 'import json,sys; print(next(c["IPv4Address"] for c in json.load(sys.stdin)[0]["Containers"] if sys.argv[1] in c["Names"]))' "$1" ;;
        *) $cli inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(n $tool $1)" ;;
      esac ;;
    gateway) # the default bridge's own address
      case $tool in
        forge) python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["gateway"])' $work/forge/forge/network/networks/bridge.json ;;
        docker) echo $dk_subnet.1 ;;
        podman) podman network inspect podman -f '{{range .Subnets}}{{.Gateway}}{{end}}' ;;
      esac ;;
    network-create) $cli network create forge-bench >/dev/null 2>&1 || true ;;
  esac
}
n() { [ $1 = forge ] && echo $2 || echo forge-bench-$2; } # a container's name for TOOL

up() { timed t $1 run - "$2" --rm -- true; } # TOOL NETWORK

# A busybox httpd serving /www/big, MIB MiB of zeros (a sparse file: no disk to read), and
# /www/f, 4 KiB. (Not `nc -l`: busybox nc closes the connection when its own stdin ends, and a
# detached container's stdin is empty, so a sender measured a refused transfer.)
serve='mkdir -p /www && head -c 4096 /dev/zero > /www/f && dd of=/www/big bs=1M count=0 seek='$MIB' 2>/dev/null && exec httpd -f -p 8080 -h /www'

# MiB/s of a GET of /big from the host to ADDRESS:PORT (curl's own measure), after checking
# that the whole file came.
fetch() { # ADDRESS PORT
  for _ in $(seq 100); do curl -sf -o /dev/null "http://$1:$2/f" && break; sleep 0.1; done
  local out; out=$(curl -sf -o /dev/null -w '%{size_download} %{speed_download}' "http://$1:$2/big")
  [ "${out% *}" = $((MIB * 1048576)) ] || { echo "short transfer from $1:$2: $out" >&2; exit 1; }
  echo "${out#* } / 1048576" | bc -l
}

published() { # TOOL: sets r[TOOL.lo], r[TOOL.br], r[TOOL.direct]
  local port=18931 gw ip
  t $1 run srv - -d -p $port:8080 -- sh -c "$serve"
  gw=$(t $1 gateway)
  case $1 in forge) ip=$(t $1 ip srv bridge 2>/dev/null || true) ;; *) ip=$(t $1 ip srv) ;; esac
  # forge's default network lists no names: find srv's address from inside it.
  [ -n "$ip" ] || ip=$(t $1 exec srv sh -c "ip -4 -o addr show eth0 | awk '{print \$4}' | cut -d/ -f1")
  r[$1.lo]=$(fetch 127.0.0.1 $port)
  r[$1.br]=$(fetch "$gw" $port)
  r[$1.direct]=$(fetch "$ip" 8080)
  t $1 rm srv
}

# By name (podman: by address) over a user network: MiB/s of a GET of /big, and the median
# milliseconds of a GET of /f in a loop of REQS, both timed inside the client from
# /proc/uptime (10 ms steps, over seconds), so the container's start is not counted. (Not
# `docker exec`: on this machine it runs the command in the host's namespaces.)
c2c() { # TOOL: sets r[TOOL.c2c], r[TOOL.req]
  local target script
  target=$(n $1 srv)
  t $1 network-create
  t $1 run srv forge-bench -d -- sh -c "$serve"
  [ $1 = podman ] && target=$(t $1 ip srv)
  script="get() { wget -q -O /dev/null http://$target:8080/\$1; }
    up() { cut -d' ' -f1 /proc/uptime; }
    for i in \$(seq 100); do get f && break; sleep 0.1; done
    a=\$(up); get big || exit 1; b=\$(up); i=0
    while [ \$i -lt $REQS ]; do get f || exit 1; i=\$((i+1)); done
    echo \$a \$b \$(up)"
  for _ in $(seq $RUNS); do t $1 run - forge-bench --rm -- sh -c "$script"; done > $work/c2c.$1
  r[$1.c2c]=$(awk -v m=$MIB '{print m / ($2 - $1)}' $work/c2c.$1 | median)
  r[$1.req]=$(awk -v n=$REQS '{print ($3 - $2) * 1000 / n}' $work/c2c.$1 | median)
  t $1 rm srv
}

declare -A r
for tool in $TOOLS; do
  r[$tool.up]=$(for _ in $(seq $RUNS); do up $tool bridge; done | median)
  r[$tool.none]=$(for _ in $(seq $RUNS); do up $tool none; done | median)
  published $tool
  c2c $tool
done

others=(${TOOLS/forge/})
row() { # LABEL KEY FORMAT better(lower|higher)
  printf '%-30s' "$1"
  for tool in $TOOLS; do printf " %10${3}" "${r[$tool.$2]}"; done
  for o in "${others[@]}"; do
    if [ $4 = lower ]; then printf ' %10.2f' "$(echo "${r[$o.$2]} / ${r[forge.$2]}" | bc -l)"
    else printf ' %10.2f' "$(echo "${r[forge.$2]} / ${r[$o.$2]}" | bc -l)"; fi
  done
  echo
}
printf '%-30s' measure; for tool in $TOOLS; do printf ' %10s' $tool; done; for o in "${others[@]}"; do printf ' %10s' "vs $o"; done; echo
row "up, bridge (s)" up .3f lower
row "up, none (s)" none .3f lower
row "host->127.0.0.1:port (MiB/s)" lo .0f higher
row "host->bridge IP:port (MiB/s)" br .0f higher
row "host->container IP (MiB/s)" direct .0f higher
row "container->container (MiB/s)" c2c .0f higher
row "request by name (ms)" req .3f lower
