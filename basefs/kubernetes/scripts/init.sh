#!/bin/sh
# Prepare this host for kubeadm; sealer runs it on every host (cwd: the rootfs, SEALER_* set)
# before the kubernetes runtime plugin installs kubeadm, kubelet and kubectl. Idempotent: a second
# run changes nothing. Every change is recorded under $state, and clean.sh undoes exactly those.
#
#   /etc/hosts     a tagged block: apiserver.cluster.local (the stable endpoint the kubeconfig and
#                  every join name) -> on a worker 127.0.0.1, where the runtime's local haproxy
#                  balances over every master; on a master that serves the API already (master0,
#                  or a joined master on a re-run) itself; on a master yet to join master0, whose
#                  API server its join needs (the runtime points it at itself once joined)
#   kernel         IPv4 forwarding and bridged traffic through iptables (the container-runtime
#                  prerequisites kubeadm's preflight checks), in /etc/sysctl.d and applied now
#   containerd     the release tarball into /usr/local, runc and crictl into /usr/local/bin, the
#                  CNI plugins (when the image has them) into /opt/cni/bin, the config and unit,
#                  started - unless the host already has a containerd, which is then used
set -eu
: "${SEALER_HOST_IP:?run by sealer}" "${SEALER_MASTER0:?run by sealer}" "${SEALER_ROLE:?run by sealer}"

state=/var/lib/sealer/kubernetes-host
mkdir -p "$state"

# --- /etc/hosts, rewritten in place (it may be a bind mount), without our old block -------------
BEGIN='# BEGIN sealer kubernetes: apiserver.cluster.local'
END='# END sealer kubernetes: apiserver.cluster.local'
tmp=$(mktemp /etc/.hosts.sealer-kubernetes.XXXXXX)
trap 'rm -f "$tmp"' EXIT
if [ -f /etc/hosts ]; then
	awk -v b="$BEGIN" -v e="$END" '$0 == b {skip = 1; next} $0 == e {skip = 0; next} !skip' /etc/hosts > "$tmp"
fi
if [ "$SEALER_ROLE" != master ]; then
	endpoint=127.0.0.1
elif [ "$SEALER_HOST_IP" = "$SEALER_MASTER0" ] || [ -f /etc/kubernetes/manifests/kube-apiserver.yaml ]; then
	endpoint=$SEALER_HOST_IP
else
	endpoint=$SEALER_MASTER0
fi
printf '%s\n%s apiserver.cluster.local\n%s\n' "$BEGIN" "$endpoint" "$END" >> "$tmp"
cat "$tmp" > /etc/hosts

# --- kernel settings -------------------------------------------------------------------------------
# br_netfilter provides net.bridge.*; load it only when missing (and keep it across reboots).
if [ ! -f "$state/modules-load.recorded" ]; then
	[ -e /etc/modules-load.d/sealer-kubernetes.conf ] || echo /etc/modules-load.d/sealer-kubernetes.conf >> "$state/files"
	: > "$state/modules-load.recorded"
fi
mkdir -p /etc/modules-load.d
printf 'overlay\nbr_netfilter\n' > /etc/modules-load.d/sealer-kubernetes.conf
if [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
	modprobe br_netfilter
fi
# The values before the first run, for clean.sh to put back.
if [ ! -f "$state/sysctl.orig" ]; then
	for key in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables; do
		echo "$key=$(sysctl -n "$key")"
	done > "$state/sysctl.orig"
fi
cat > /etc/sysctl.d/99-sealer-kubernetes.conf <<'CONF'
net.ipv4.ip_forward = 1
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
CONF
# Only this file: `sysctl --system` would re-apply every other file of the machine too.
sysctl -q -p /etc/sysctl.d/99-sealer-kubernetes.conf

# --- containerd ----------------------------------------------------------------------------------
one() {  # the one file of the rootfs matching $1, or nothing
	for f in $1; do
		if [ -f "$f" ]; then echo "$f"; fi
	done
}
containerd_tar=$(one 'cri/containerd-*.tar.gz')
crictl_tar=$(one 'cri/crictl-*.tar.gz')
cni_tar=$(one 'cri/cni-plugins-*.tgz')

if [ ! -f "$state/cri-ours" ] && command -v containerd >/dev/null 2>&1; then
	echo "containerd is already installed ($(command -v containerd)): using it"
else
	for f in "$containerd_tar" "$crictl_tar" cri/runc; do
		if [ ! -f "$f" ]; then
			echo "the image lacks ${f:-a cri/ tarball}: see basefs/kubernetes/README.md" >&2
			exit 1
		fi
	done
	[ -f "$state/cri-ours" ] || { [ -e /etc/cni ] || : > "$state/etc-cni-ours"; }
	: > "$state/cri-ours"
	# Record what is about to be created (what does not exist yet and is not recorded), before
	# creating it, so that clean.sh can undo a half-done install, and an upgrade's new files too.
	touch "$state/files"
	{
		tar -tzf "$containerd_tar" | sed -n 's#^\(\./\)\{0,1\}\(bin/[^/][^/]*\)$#/usr/local/\2#p'
		tar -tzf "$crictl_tar" | sed -n 's#^\(\./\)\{0,1\}\([^/][^/]*\)$#/usr/local/bin/\2#p'
		if [ -n "$cni_tar" ]; then
			tar -tzf "$cni_tar" | sed -n 's#^\(\./\)\{0,1\}\([^/][^/]*\)$#/opt/cni/bin/\2#p'
		fi
		echo /usr/local/bin/runc
		echo /etc/containerd/config.toml
		echo /etc/crictl.yaml
		echo /etc/systemd/system/containerd.service
	} | while read -r f; do
		if [ ! -e "$f" ] && ! grep -qxF "$f" "$state/files"; then echo "$f"; fi
	done >> "$state/files"
	tar -C /usr/local -xzf "$containerd_tar"
	install -m 0755 cri/runc /usr/local/bin/runc
	tar -C /usr/local/bin -xzf "$crictl_tar"
	if [ -n "$cni_tar" ]; then
		mkdir -p /opt/cni/bin
		tar -C /opt/cni/bin -xzf "$cni_tar"
	fi
	# The sandbox (pause) image is the one this image's kubeadm lists, so that it is in
	# images/*.tar whatever release the image carries (kubeadm 1.30 uses pause 3.9, 1.31 3.10).
	pause=$(bin/kubeadm config images list --kubernetes-version "$(bin/kubeadm version -o short)" | grep '/pause:' || true)
	if [ -z "$pause" ]; then echo "bin/kubeadm lists no pause image" >&2; exit 1; fi
	mkdir -p /etc/containerd
	sed "s#^\([[:space:]]*sandbox_image = \).*#\1\"$pause\"#" etc/containerd/config.toml > /etc/containerd/.config.toml.sealer
	mv /etc/containerd/.config.toml.sealer /etc/containerd/config.toml
	install -m 0644 etc/crictl.yaml /etc/crictl.yaml
	install -D -m 0644 etc/systemd/containerd.service /etc/systemd/system/containerd.service
	systemctl daemon-reload
	systemctl enable containerd
	# restart, not start: a second run with a changed config.toml must take effect
	systemctl restart containerd
fi
i=0
until [ -S /run/containerd/containerd.sock ]; do
	i=$((i + 1))
	if [ "$i" -gt 300 ]; then echo "containerd's socket /run/containerd/containerd.sock did not appear" >&2; exit 1; fi
	sleep 0.1
done
echo "kubernetes host prepared on $SEALER_HOST_IP ($SEALER_ROLE): apiserver.cluster.local -> $endpoint"
