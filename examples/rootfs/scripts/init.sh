#!/bin/sh
# Runs on every host before the cluster runtime starts: install binaries and configs.
set -eu
ROOTFS=${SEALER_ROOTFS:-$(cd "$(dirname "$0")/.." && pwd)}
install -m 0755 "$ROOTFS/bin/k3s" /usr/local/bin/k3s
mkdir -p /etc/rancher/k3s
cp "$ROOTFS/etc/config.yaml" /etc/rancher/k3s/config.yaml
