#!/usr/bin/env bash
# The main job end to end, on a fresh Debian machine as root, with no internet but Debian's packages:
#   make a busybox base image -> forge build examples/hello -> push to a local docker-registry
#   -> pull into an empty store -> run the image with forge run, and under podman.
# Everything it makes lives in one temporary directory (kept on failure, for a look).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
# Lowercase only: podman turns an oci: path into an image name, which must be lowercase.
work=/tmp/forge-demo-$$-$(date +%s)
mkdir -p "$work"
step() { printf '\n==> %s\n' "$*"; }
fail() {
  echo
  echo "forge demo FAILED at: ${current:-setup}"
  echo "  the demo's files are kept in $work (registry log: $work/registry.log)"
  echo "  re-run with: bash -x scripts/demo.sh   to see every command"
}
trap 'fail' ERR
# The stores' bridges and firewall rules (RUN steps and containers use forge's bridge).
prune_networks() { for s in "$work/store" "$work/store2"; do [ -d "$s/forge/network" ] && "$forge" --root "$s" network prune >/dev/null 2>&1; done; true; }
cleanup() { [ -n "${registry_pid:-}" ] && kill "$registry_pid" 2>/dev/null; [ -n "${forge:-}" ] && prune_networks; true; }
trap cleanup EXIT

current="installing Debian packages"; step "$current"
bash scripts/install-deps.sh

current="building forge (release)"; step "$current"
cargo build --release --locked -p forge
forge="$repo/target/release/forge"

current="making a busybox base image from Debian's busybox-static"; step "$current"
bash scripts/busybox-rootfs.sh "$work/busybox-rootfs.tar"
"$forge" --root "$work/store" import "$work/busybox-rootfs.tar" busybox:latest

current="forge build -t hello:1 examples/hello"; step "$current"
"$forge" --root "$work/store" build --progress plain -t hello:1 examples/hello

current="starting docker-registry on 127.0.0.1"; step "$current"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $work/registry-data}}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
ref="127.0.0.1:$port/demo/hello:1"

current="forge push $ref"; step "$current"
"$forge" --root "$work/store" push hello:1 "$ref"

current="forge pull $ref into an empty store"; step "$current"
"$forge" --root "$work/store2" pull "$ref"

current="forge store fsck of the pulled store"; step "$current"
"$forge" --root "$work/store2" store fsck

current="forge run --rm of the pulled image"; step "$current"
out_forge=$("$forge" --root "$work/store2" run --rm "$ref")
echo "$out_forge"

current="podman run of the pulled image (from forge's store, an OCI layout)"; step "$current"
export CONTAINERS_CONF="$repo/scripts/podman/containers.conf"
out_podman=$(podman --root "$work/podman" --runroot "$work/podman-run" --storage-driver overlay \
  run --rm --network none "oci:$work/store2:$ref")
echo "$out_podman"

current="checking the output"; step "$current"
grep -q "Hello from forge" <<<"$out_podman" || { echo "the image did not print its greeting under podman"; false; }
[ "$out_forge" = "$out_podman" ] || { echo "forge run and podman run printed different things"; false; }
trap - ERR
prune_networks
rm -rf "$work"
echo
echo "forge demo: OK (built, pushed, pulled and ran examples/hello with forge and podman)"
