#!/bin/sh
# Undo init.sh and init-registry.sh; sealer runs it on every leaving host after the k0s runtime
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

# The registry init-registry.sh started, if it is still ours and alive.
state=/var/lib/sealer/k0s-registry
if [ -f "$state/registry.pid" ]; then
	pid=$(cat "$state/registry.pid")
	if [ -n "$pid" ] && grep -q registry "/proc/$pid/cmdline" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		i=0
		while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do i=$((i + 1)); sleep 0.05; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
fi
rm -rf "$state"
rm -f /etc/k0s/containerd.d/sealer-registry.toml
rmdir /etc/k0s/containerd.d /etc/k0s 2>/dev/null || true
echo "k0s host cleaned on ${SEALER_HOST_IP:-this host}"
