#!/usr/bin/env bash
# Installs what forge's tests and demo need on a fresh Debian machine (run as root).
# Everything comes from Debian's packages: there is no Docker Hub here.
set -euo pipefail
pkgs=(
  busybox-static   # base images for tests and examples
  docker-registry  # the CNCF distribution server the registry tests push to
  skopeo umoci podman buildah runc   # oracles nobody here wrote
  docker.io        # Docker 20.10: docker load/run of forge's archives and pushes; its CLI drives 28.5
  debootstrap      # the Debian trixie chroot where Docker 28.5 (the reference builder) runs
  apache2-utils    # htpasswd for the Basic-auth registry test
  gcc libc6-dev    # a static system-call probe for the sandbox tests
  openssl iproute2 zstd bzip2 xz-utils gzip jq curl ca-certificates
  iptables         # NAT and isolation rules of forge's bridged networks
  uidmap           # newuidmap/newgidmap for rootless forge
  util-linux-extra # fincore: what a write past the page cache left in it
  docker-compose   # compose 1.29 against forge serve
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The OCI schema tests validate with Python's jsonschema (draft-04 plus `referencing`).
python3 -c 'import jsonschema, referencing' 2>/dev/null || pip install -q 'jsonschema>=4.18'
# forge serve's tests drive it with the Docker SDK for Python too.
python3 -c 'import docker' 2>/dev/null || pip install -q 'docker>=7'
command -v cargo >/dev/null || { echo "install-deps: cargo is missing (the machine's rustup toolchain)"; exit 1; }
echo "install-deps: ok"
