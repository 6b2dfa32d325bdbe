#!/bin/bash
# sealer runs `cd ROOTFS/scripts && bash init-registry.sh PORT DATADIR DOMAIN` on its registry
# hosts to start a registry serving DATADIR (ROOTFS/registry). This project's registry service
# serves registry/ itself, so it is never called; were it, it would leave this record.
echo "$@" >> /var/lib/sealer/sealer-basefs-init-registry
