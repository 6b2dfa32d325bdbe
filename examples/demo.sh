#!/usr/bin/env bash
# `make demo`: build the example images into the embedded default store, list and inspect them.
set -euo pipefail
cd "$(dirname "$0")/.."
SEALER=.venv/bin/sealer
echo "== sealer build -t demo/k3s-rootfs:v1 examples/rootfs"
$SEALER build -t demo/k3s-rootfs:v1 examples/rootfs
# The app's manifest names docker.io/library/nginx; a build pulls such images into the
# image's registry/ (bundling). This machine has no internet, so the demo skips that step.
echo "== sealer build --no-image-bundle -t demo/nginx-app:v1 examples/app"
$SEALER build --no-image-bundle -t demo/nginx-app:v1 examples/app
echo "== sealer images"
$SEALER images
echo "== sealer inspect demo/k3s-rootfs:v1 (extension and layer directories)"
$SEALER inspect demo/k3s-rootfs:v1 --format '{{json .ImageExtension}}'
$SEALER inspect --unpack demo/k3s-rootfs:v1 --format '{{json .Layers}}'
echo "== sealer inspect demo/nginx-app:v1 --format '{{.ImageExtension.Launch.Cmds}}'"
$SEALER inspect demo/nginx-app:v1 --format '{{.ImageExtension.Launch.Cmds}}'
