#!/usr/bin/env bash
# The whole test suite, as root: real overlayfs, namespaces, cgroups and a real registry.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
echo "forge: all tests passed"
