#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with seeds from the conformance data beside the repo
# (../shared/conformance) and from testdata/. The corpus is not committed.
set -euo pipefail
cd "$(dirname "$0")"
conf=../../shared/conformance
mkdir -p corpus/parse corpus/expand corpus/dockerignore
i=0
for f in "$conf"/buildkit-parser/testfiles/*/Dockerfile "$conf"/real-dockerfiles/*/Dockerfile ../testdata/*/Dockerfile ../examples/*/Dockerfile; do
  [ -f "$f" ] && cp "$f" "corpus/parse/seed-$((i++))"
done
grep -v '^#' "$conf/buildkit-shell/envVarTest" | cut -d'|' -f2 | sed 's/^ *//; s/ *$//' | while read -r w; do
  printf '%s' "$w" > "corpus/expand/seed-$((i++))"
done
tail -n +2 "$conf/dockerignore/patterns.tsv" | while IFS=$'\t' read -r pat path _; do
  printf '%s\n%s' "$pat" "$path" > "corpus/dockerignore/seed-$((i++))"
done
echo "seeded: $(ls corpus/parse | wc -l) parse, $(ls corpus/expand | wc -l) expand, $(ls corpus/dockerignore | wc -l) dockerignore"
