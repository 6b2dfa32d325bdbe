#!/bin/bash
# sealer runs `bash ROOTFS/scripts/uninstall-containerd.sh` on a host leaving the cluster,
# after kubeadm reset: containerd stopped and removed.
systemctl stop containerd
systemctl disable containerd
rm -f /etc/systemd/system/containerd.service
systemctl daemon-reload
rm -f /usr/bin/containerd /usr/bin/ctr /usr/bin/crictl /usr/bin/runc
rm -rf /etc/containerd
