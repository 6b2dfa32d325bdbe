#!/bin/sh
# Undo init.sh; sealer runs it on every leaving host after the kubernetes
# runtime plugin's `kubeadm reset -f`. Idempotent and safe on a half-installed host: each step
# copes with its target being absent, and only what init.sh recorded as created is removed
# (a containerd that was there before stays, and so do containerd's image store
# /var/lib/containerd and any file init.sh did not create).
set -u
state=/var/lib/sealer/kubernetes-host

# The tagged /etc/hosts blocks, rewritten in place.
if [ -f /etc/hosts ]; then
	tmp=$(mktemp /etc/.hosts.sealer-kubernetes.XXXXXX) || exit 1
	awk '/^# BEGIN sealer kubernetes: / {skip = 1; next} /^# END sealer kubernetes: / {skip = 0; next} !skip' \
		/etc/hosts > "$tmp" && cat "$tmp" > /etc/hosts
	rm -f "$tmp"
fi

# The cluster registry, its mirrors and its CA are sealer's own (registry-service and
# registry-trust, undone by registry-remove and registry-untrust before this runs).

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
