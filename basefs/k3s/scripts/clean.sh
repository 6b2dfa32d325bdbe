#!/bin/sh
# Undo init.sh exactly: remove the lines it tagged "# sealer-managed k3s" and nothing else.
# Idempotent; sealer runs it after the k3s plugin has uninstalled k3s (k3s-uninstall.sh /
# k3s-agent-uninstall.sh remove k3s's own files).
set -eu
TAG="# sealer-managed k3s"
HOSTS=/etc/hosts
if [ -f "$HOSTS" ] && grep -Fq "$TAG" "$HOSTS"; then
	tmp=$(mktemp /tmp/sealer-hosts.XXXXXX)
	trap 'rm -f "$tmp"' EXIT
	grep -Fv "$TAG" "$HOSTS" > "$tmp" || true
	cat "$tmp" > "$HOSTS"
	echo "$HOSTS: sealer-managed k3s entries removed"
else
	echo "$HOSTS: no sealer-managed k3s entries"
fi
