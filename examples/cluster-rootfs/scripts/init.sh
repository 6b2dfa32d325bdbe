#!/bin/sh
# Install the demo on this host; sealer runs it from the rootfs (cwd) on every host, with the
# cluster env and SEALER_* set. Idempotent: running it again changes nothing.
set -eu
: "${SEALER_ROOTFS:?run by sealer}" "${SEALER_CLUSTER:?run by sealer}"
state=/var/lib/sealer/demo/$SEALER_CLUSTER

mkdir -p /usr/local/bin /etc/sealer-demo "$state"
cp bin/sealer-demo /usr/local/bin/sealer-demo.tmp
chmod 0755 /usr/local/bin/sealer-demo.tmp
mv /usr/local/bin/sealer-demo.tmp /usr/local/bin/sealer-demo
cp etc/sealer-demo/demo.conf /etc/sealer-demo/demo.conf
printf 'role=%s\nmasters=%s\nnodes=%s\ncolor=%s\n' \
	"$SEALER_ROLE" "$SEALER_MASTERS" "$SEALER_NODES" "${DEMO_COLOR:-}" > /etc/sealer-demo/env

running() {
	[ -f "$state/service.pid" ] || return 1
	pid=$(cat "$state/service.pid")
	[ -n "$pid" ] && grep -q demo-service "/proc/$pid/cmdline" 2>/dev/null
}
if ! running; then
	rm -f "$state/service.pid"
	setsid sh "$SEALER_ROOTFS/bin/demo-service" "$state" > "$state/service.log" 2>&1 < /dev/null &
	i=0
	while [ ! -s "$state/service.pid" ]; do
		i=$((i + 1))
		if [ "$i" -gt 100 ]; then echo "demo-service did not start" >&2; exit 1; fi
		sleep 0.05
	done
fi
echo "sealer-demo installed on $SEALER_HOST_IP as $SEALER_ROLE (service pid $(cat "$state/service.pid"))"
