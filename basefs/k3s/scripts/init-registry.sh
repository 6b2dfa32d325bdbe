#!/bin/sh
# k3s needs no registry started by sealer: the air-gap image tarball in
# /var/lib/rancher/k3s/agent/images/ is imported by every node at start. So this starts
# nothing (sealer runs it on every host after init.sh; it only says so).
#
# To pull from a private registry or a mirror instead, ship etc/k3s/registries.yaml in an image
# built FROM this one; sealer's k3s plugin copies it to /etc/rancher/k3s/registries.yaml on
# every node before install, and k3s's containerd reads it at start
# (docs.k3s.io/installation/private-registry):
#
#   mirrors:
#     docker.io:
#       endpoint:
#         - "https://registry.example.internal:5000"
#   configs:
#     "registry.example.internal:5000":
#       tls:
#         ca_file: /etc/rancher/k3s/registry-ca.crt
#
# A change to registries.yaml takes effect when k3s restarts on the node.
set -eu
echo "k3s: no registry to start (air-gap images; see scripts/init-registry.sh for registries.yaml)"
