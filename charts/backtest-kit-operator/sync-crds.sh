#!/bin/sh
# Copy the repository's CRDs (crds/*.yaml at the repository root) into this chart's crds/ directory,
# removing chart copies whose source was deleted. Run from anywhere:
#   charts/backtest-kit-operator/sync-crds.sh
# tests/chart checks that both directories hold byte-identical files.
set -eu
chart_dir=$(cd "$(dirname "$0")" && pwd)
src_dir=$(cd "$chart_dir/../../crds" && pwd)
dst_dir="$chart_dir/crds"
mkdir -p "$dst_dir"
for f in "$dst_dir"/*.yaml; do
  [ -e "$f" ] || continue
  [ -e "$src_dir/$(basename "$f")" ] || rm -f "$f"
done
for f in "$src_dir"/*.yaml; do
  [ -e "$f" ] || continue
  cp "$f" "$dst_dir/"
done
echo "synced $(ls "$dst_dir" | wc -l) CRD file(s) into $dst_dir"
