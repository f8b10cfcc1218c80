#!/usr/bin/env bash
# The package as a user gets it: `npm pack`, install the tarball into an empty folder (only the npm
# registry is reached, for the dependencies), then restore a photo with the packaged default model.
#   bash scripts/pack-smoke.sh [photo]     (default: ../shared/data/whole/codeformer_01.jpg)
set -euo pipefail
cd "$(dirname "$0")/.."
photo=$(realpath "${1:-../shared/data/whole/codeformer_01.jpg}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tarball=$(npm pack --silent --pack-destination "$work" | tail -n 1)
echo "packed $tarball ($(du -h "$work/$tarball" | cut -f1))"
tar -tzf "$work/$tarball" | grep -E '(^|/)(test|scratch|runs|recipes|bench)/' && { echo "the package holds tests or scratch files"; exit 1; }
mkdir "$work/app"
cd "$work/app"
npm init -y >/dev/null
npm install --no-audit --no-fund --onnxruntime-node-install=skip "$work/$tarball"
npx osdface restore "$photo" -o out/
ls -l out/
test -s "out/$(basename "${photo%.*}").png"
echo "pack-smoke: ok"
