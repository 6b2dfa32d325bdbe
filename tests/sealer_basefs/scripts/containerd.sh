#!/bin/bash
# sealer runs `bash ROOTFS/scripts/containerd.sh` on every host, first, with the host's env.
# containerd (tgz/containerd.tgz: usr/bin/containerd, ctr, crictl, runc) unless the host has
# one, its unit and config; then enabled and (re)started.
set -e
scripts_path=$(cd "$(dirname "$0")" && pwd)
storage=${ContainerDataRoot:-/var/lib/containerd}
mkdir -p "$storage"
if ! containerd --version >/dev/null 2>&1; then
  tar -zxf "$scripts_path/../tgz/containerd.tgz" -C /
  cp -f "$scripts_path/../etc/containerd.service" /etc/systemd/system/containerd.service
  mkdir -p /etc/containerd
  cp -f "$scripts_path/../etc/containerd-config.toml" /etc/containerd/config.toml
fi
systemctl daemon-reload
systemctl enable containerd.service
systemctl restart containerd.service
