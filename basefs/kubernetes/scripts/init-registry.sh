#!/bin/sh
# Serve the image's bundled container images (the rootfs registry/ directory, in the
# docker-distribution layout; see docs/bundling.md) as sea.hub:5000 and let containerd pull
# through it. Run from the rootfs with the SEALER_* env on every host: master0 serves, every host
# resolves sea.hub and mirrors the usual registries to it with containerd's hosts.toml files
# (etc/containerd/config.toml sets config_path; containerd reads them per pull, no restart).
# Idempotent; clean.sh undoes it. Nothing to do for an image without bundled images: the
# Kubernetes images themselves come from images/*.tar, imported on every host.
set -eu
: "${SEALER_HOST_IP:?run by sealer}" "${SEALER_MASTER0:?run by sealer}" "${SEALER_ROOTFS:?run by sealer}"

if [ ! -d "$SEALER_ROOTFS/registry/docker" ]; then
	echo "no bundled images in $SEALER_ROOTFS/registry: no registry to serve"
	exit 0
fi

state=/var/lib/sealer/kubernetes-registry
mkdir -p "$state"

BEGIN='# BEGIN sealer kubernetes: sea.hub'
END='# END sealer kubernetes: sea.hub'
tmp=$(mktemp /etc/.hosts.sealer-kubernetes.XXXXXX)
trap 'rm -f "$tmp"' EXIT
awk -v b="$BEGIN" -v e="$END" '$0 == b {skip = 1; next} $0 == e {skip = 0; next} !skip' /etc/hosts > "$tmp"
printf '%s\n%s sea.hub\n%s\n' "$BEGIN" "$SEALER_MASTER0" "$END" >> "$tmp"
cat "$tmp" > /etc/hosts

: > "$state/mirrors.new"
for pair in docker.io=https://registry-1.docker.io registry.k8s.io=https://registry.k8s.io \
	quay.io=https://quay.io ghcr.io=https://ghcr.io sea.hub:5000=http://sea.hub:5000; do
	name=${pair%%=*}
	dir=/etc/containerd/certs.d/$name
	mkdir -p "$dir"
	printf 'server = "%s"\n\n[host."http://sea.hub:5000"]\n  capabilities = ["pull", "resolve"]\n' \
		"${pair#*=}" > "$dir/hosts.toml"
	echo "$dir" >> "$state/mirrors.new"
done
mv "$state/mirrors.new" "$state/mirrors"

if [ "$SEALER_HOST_IP" != "$SEALER_MASTER0" ]; then
	echo "sea.hub -> $SEALER_MASTER0 on $SEALER_HOST_IP"
	exit 0
fi
if [ -f "$state/registry.pid" ] && grep -q registry "/proc/$(cat "$state/registry.pid")/cmdline" 2>/dev/null; then
	echo "the registry already serves $SEALER_ROOTFS/registry"
	exit 0
fi
if [ -x "$SEALER_ROOTFS/bin/registry" ]; then
	registry="$SEALER_ROOTFS/bin/registry"
elif command -v docker-registry >/dev/null 2>&1; then
	registry=$(command -v docker-registry)
else
	echo "no registry binary: put distribution's registry in BIN_DIR (bin/registry) or install docker-registry" >&2
	exit 1
fi
cat > "$state/config.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $SEALER_ROOTFS/registry
http:
  addr: :5000
YAML
setsid "$registry" serve "$state/config.yml" > "$state/registry.log" 2>&1 < /dev/null &
echo $! > "$state/registry.pid"
echo "the registry on $SEALER_HOST_IP:5000 serves $SEALER_ROOTFS/registry"
