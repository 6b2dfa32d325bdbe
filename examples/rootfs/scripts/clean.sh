#!/bin/sh
# Undoes init.sh; safe to run twice and on a half-installed host.
set -eu
rm -f /usr/local/bin/k3s /etc/rancher/k3s/config.yaml
rmdir /etc/rancher/k3s 2>/dev/null || true
