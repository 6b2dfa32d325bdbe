#!/bin/sh
# Undo init.sh: stop the service, remove the binary, the config and the state. Idempotent and
# safe on a half-installed host: every step copes with its target being absent.
set -u
state=/var/lib/sealer/demo/${SEALER_CLUSTER:-my-cluster}

# Ours and alive: an exited process (a zombie not yet reaped) has an empty cmdline.
alive() { grep -q demo-service "/proc/$1/cmdline" 2>/dev/null; }
if [ -f "$state/service.pid" ]; then
	pid=$(cat "$state/service.pid")
	if [ -n "$pid" ] && alive "$pid"; then
		kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		i=0
		while alive "$pid" && [ "$i" -lt 100 ]; do i=$((i + 1)); sleep 0.05; done
		if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
	fi
fi
rm -f /usr/local/bin/sealer-demo /usr/local/bin/sealer-demo.tmp
rm -rf /etc/sealer-demo "$state"
rmdir /var/lib/sealer/demo 2>/dev/null || true
echo "sealer-demo removed from ${SEALER_HOST_IP:-this host}"
