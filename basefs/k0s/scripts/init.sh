#!/bin/sh
# Prepare this host for k0s; sealer runs it on every host (cwd: the rootfs) before the k0s
# runtime plugin installs anything. Idempotent: a second run rewrites the same block.
#
# apiserver.cluster.local is the stable endpoint the admin kubeconfig names and that every
# controller certificate carries (spec.api.sans): a master resolves it to itself, a node to
# master0. The entry lives in a tagged block of /etc/hosts that clean.sh removes again.
set -eu
: "${SEALER_HOST_IP:?run by sealer}" "${SEALER_MASTER0:?run by sealer}" "${SEALER_ROLE:?run by sealer}"

BEGIN='# BEGIN sealer k0s: apiserver.cluster.local'
END='# END sealer k0s: apiserver.cluster.local'

if [ "$SEALER_ROLE" = master ]; then target=$SEALER_HOST_IP; else target=$SEALER_MASTER0; fi

# Rewrite /etc/hosts in place (not by rename: it may be a bind mount), without our old block.
tmp=$(mktemp /etc/.hosts.sealer-k0s.XXXXXX)
trap 'rm -f "$tmp"' EXIT
if [ -f /etc/hosts ]; then
	awk -v b="$BEGIN" -v e="$END" '$0 == b {skip = 1; next} $0 == e {skip = 0; next} !skip' /etc/hosts > "$tmp"
fi
printf '%s\n%s apiserver.cluster.local\n%s\n' "$BEGIN" "$target" "$END" >> "$tmp"
cat "$tmp" > /etc/hosts

mkdir -p /etc/k0s
echo "k0s host prepared on $SEALER_HOST_IP ($SEALER_ROLE): apiserver.cluster.local -> $target"
