#!/usr/bin/env bash
# `make demo`: build the example images into the embedded default store, list and inspect them.
set -euo pipefail
cd "$(dirname "$0")/.."
SEALER=.venv/bin/sealer
echo "== sealer build -t demo/k3s-rootfs:v1 examples/rootfs"
$SEALER build -t demo/k3s-rootfs:v1 examples/rootfs
echo "== sealer build -t demo/nginx-app:v1 examples/app"
$SEALER build -t demo/nginx-app:v1 examples/app
echo "== sealer images"
$SEALER images
echo "== sealer inspect demo/k3s-rootfs:v1 (extension and layer directories)"
$SEALER inspect demo/k3s-rootfs:v1 --format '{{json .ImageExtension}}'
$SEALER inspect demo/k3s-rootfs:v1 --format '{{json .Layers}}'
echo "== sealer inspect demo/nginx-app:v1 --format '{{.ImageExtension.Launch.Cmds}}'"
$SEALER inspect demo/nginx-app:v1 --format '{{.ImageExtension.Launch.Cmds}}'
