#!/bin/sh
# Undo init.sh and init-registry.sh; sealer runs it on every leaving host after the kubernetes
# runtime plugin's `kubeadm reset -f`. Idempotent and safe on a half-installed host: each step
# copes with its target being absent, and only what init.sh recorded as created is removed
# (a containerd that was there before stays, and so do containerd's image store
# /var/lib/containerd and any file init.sh did not create).
set -u
state=/var/lib/sealer/kubernetes-host

# The tagged /etc/hosts blocks (ours and init-registry.sh's), rewritten in place.
if [ -f /etc/hosts ]; then
	tmp=$(mktemp /etc/.hosts.sealer-kubernetes.XXXXXX) || exit 1
	awk '/^# BEGIN sealer kubernetes: / {skip = 1; next} /^# END sealer kubernetes: / {skip = 0; next} !skip' \
		/etc/hosts > "$tmp" && cat "$tmp" > /etc/hosts
	rm -f "$tmp"
fi

# The registry init-registry.sh started, if it is still ours and alive, and its mirror configs.
registry=/var/lib/sealer/kubernetes-registry
if [ -f "$registry/registry.pid" ]; then
	pid=$(cat "$registry/registry.pid")
	if [ -n "$pid" ] && grep -q registry "/proc/$pid/cmdline" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		i=0
		while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do i=$((i + 1)); sleep 0.05; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
fi
if [ -f "$registry/mirrors" ]; then
	while read -r dir; do rm -f "$dir/hosts.toml"; rmdir "$dir" 2>/dev/null || true; done < "$registry/mirrors"
	rmdir /etc/containerd/certs.d 2>/dev/null || true
fi
rm -rf "$registry"

# containerd, when init.sh installed it: stop it, then remove exactly the files it created.
if [ -f "$state/cri-ours" ]; then
	systemctl disable --now containerd 2>/dev/null || true
fi
if [ -f "$state/files" ]; then
	while read -r f; do rm -f "$f"; done < "$state/files"
fi
if [ -f "$state/cri-ours" ]; then
	systemctl daemon-reload 2>/dev/null || true
	rmdir /etc/containerd /opt/cni/bin /opt/cni 2>/dev/null || true
fi
# The pod network's config: an add-on writes it; kubeadm reset leaves it to be removed by hand.
if [ -f "$state/etc-cni-ours" ]; then
	rm -rf /etc/cni
fi

# Kernel settings: the values from before init.sh's first run.
rm -f /etc/sysctl.d/99-sealer-kubernetes.conf
if [ -f "$state/sysctl.orig" ]; then
	while IFS= read -r line; do
		sysctl -q -w "$line" 2>/dev/null || echo "could not restore $line" >&2
	done < "$state/sysctl.orig"
fi

rm -rf "$state"
echo "kubernetes host cleaned on ${SEALER_HOST_IP:-this host}"
