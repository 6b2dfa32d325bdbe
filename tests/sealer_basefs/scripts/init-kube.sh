#!/bin/bash
# sealer runs `cd ROOTFS/scripts && export RegistryURL=DOMAIN:PORT && bash init-kube.sh` on each
# host before its kubeadm init or join: kernel settings, the kube binaries into /usr/bin, the
# kubelet unit and kubeadm's drop-in, the kubelet enabled.
set -e
: "${RegistryURL:?sealer exports RegistryURL}"
if [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
  modprobe br_netfilter
fi
cat > /etc/sysctl.d/k8s.conf <<CONF
net.bridge.bridge-nf-call-ip6tables = 1
net.bridge.bridge-nf-call-iptables = 1
net.ipv4.ip_forward = 1
CONF
sysctl -p /etc/sysctl.d/k8s.conf
chmod -R 755 ../bin/*
cp ../bin/* /usr/bin
mkdir -p /etc/systemd/system/kubelet.service.d
cp ../etc/kubelet.service /etc/systemd/system/
cp ../etc/10-kubeadm.conf /etc/systemd/system/kubelet.service.d/
systemctl enable kubelet
