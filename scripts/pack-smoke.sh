#!/usr/bin/env bash
# The package as a user gets it: `npm pack`, install the tarball into an empty folder (only the npm
# registry is reached, for the dependencies), then restore a photo with the packaged default model,
# and serve the browser app (`osdface web`) with no build step: its page and the model's manifest.
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
npx osdface web --port 0 > web.log 2>&1 &
web_pid=$!
for _ in $(seq 50); do grep -q 'http://' web.log && break; sleep 0.2; done
url=$(grep -o 'http://[^ ]*/' web.log | head -n 1)
curl -fsS -D headers.txt "$url" -o index.html
grep -qi 'cross-origin-embedder-policy: require-corp' headers.txt
grep -q '<title>' index.html
curl -fsS "${url}models/osdface-small/manifest.json" | grep -q '"osdface-small"'
kill "$web_pid"
echo "osdface web served $url"
echo "pack-smoke: ok"
