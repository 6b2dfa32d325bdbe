#!/bin/sh
# Undo init.sh; sealer runs it on every leaving host after the k0s runtime
# plugin's `k0s stop` / `k0s reset`. Idempotent and safe on a half-installed host: each step
# copes with its target being absent.
set -u

# The tagged /etc/hosts blocks, rewritten in place (it may be a bind mount).
if [ -f /etc/hosts ]; then
	tmp=$(mktemp /etc/.hosts.sealer-k0s.XXXXXX) || exit 1
	awk '/^# BEGIN sealer k0s: / {skip = 1; next} /^# END sealer k0s: / {skip = 0; next} !skip' /etc/hosts > "$tmp" \
		&& cat "$tmp" > /etc/hosts
	rm -f "$tmp"
fi

# The cluster registry and its containerd drop-in are sealer's own (registry-service and
# registry-trust, undone by registry-remove and registry-untrust before this runs).
rmdir /etc/k0s/containerd.d /etc/k0s 2>/dev/null || true
echo "k0s host cleaned on ${SEALER_HOST_IP:-this host}"
