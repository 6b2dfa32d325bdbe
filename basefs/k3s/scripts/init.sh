#!/bin/sh
# Host preparation for k3s, run by sealer on every host (cwd = the rootfs, SEALER_* set)
# before its k3s plugin installs k3s. Idempotent, and safe on a half-prepared host: every
# edit of a system file is a line tagged "# sealer-managed k3s", replaced as a whole on each
# run and removed by clean.sh, which touches nothing else.
#
#   /etc/hosts   "<master0> apiserver.cluster.local": the stable API endpoint that the admin
#                kubeconfig sealer saves names, and that every k3s server has in its
#                certificate SANs (--tls-san)
set -eu
: "${SEALER_MASTER0:?run by sealer: SEALER_MASTER0 is not set}"
TAG="# sealer-managed k3s"
ENDPOINT=apiserver.cluster.local
HOSTS=/etc/hosts

# What k3s's install.sh and sealer's preflight need on the host.
for tool in sh sed grep sha256sum ss; do
	command -v "$tool" >/dev/null 2>&1 || { echo "init.sh: $tool is missing on $(hostname)" >&2; exit 1; }
done

line="$SEALER_MASTER0 $ENDPOINT $TAG"
touch "$HOSTS"
if grep -Fxq "$line" "$HOSTS" && [ "$(grep -Fc "$TAG" "$HOSTS")" -eq 1 ]; then
	echo "$HOSTS already maps $ENDPOINT to $SEALER_MASTER0"
else
	tmp=$(mktemp /tmp/sealer-hosts.XXXXXX)
	trap 'rm -f "$tmp"' EXIT
	grep -Fv "$TAG" "$HOSTS" > "$tmp" || true
	echo "$line" >> "$tmp"
	# rewrite in place rather than rename: /etc/hosts is often a bind mount (containers)
	cat "$tmp" > "$HOSTS"
	echo "$HOSTS: $ENDPOINT -> $SEALER_MASTER0"
fi
if grep -v "$TAG" "$HOSTS" | grep -Eq "^[^#]*[[:space:]]$ENDPOINT([[:space:]]|\$)"; then
	echo "init.sh: warning: $HOSTS has its own $ENDPOINT entry, which resolvers may prefer" >&2
fi
