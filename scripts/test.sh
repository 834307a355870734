#!/usr/bin/env bash
# The whole test suite, as root: real overlayfs, namespaces, cgroups and a real registry.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d ../shared ]; then
  echo "test: ../shared is beside the repository: the conformance and reference-tool tests run too"
else
  echo "test: ../shared is absent (a plain clone): the tests that need it are skipped (each prints 'skipped:')"
fi
# --no-fail-fast: a red run lists every failing test, not only those of the first failing binary.
cargo test --workspace --locked --no-fail-fast
echo "forge: all tests passed"
