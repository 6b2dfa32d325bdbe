#!/usr/bin/env bash
# The main job of `make demo`, on containers: the example cluster image built, run on 1 master
# and 2 nodes that are Docker containers, what init.sh did on each, a re-run that moves nothing,
# then `sealer delete --all`. Offline, about 15 s.
#
# The engine: DOCKER_HOST or /var/run/docker.sock when one answers; else, as root with Debian's
# docker.io installed, a private dockerd started here (own data-root, exec-root, pidfile and
# socket under a temp dir, `--bridge none --iptables=false`: it touches neither this machine's
# networking nor another Docker) and stopped by its PID at the end, also on failure. Without
# either, one line says so and the demo goes on without it.
set -euo pipefail
cd "$(dirname "$0")/.."
SEALER=$PWD/.venv/bin/sealer
PY=$PWD/.venv/bin/python
work=$(mktemp -d /tmp/sealer-demo-XXXXXX)
dockerd_pid=""
cleanup() {
	if [ -n "$dockerd_pid" ]; then
		kill -TERM "$dockerd_pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$dockerd_pid" 2>/dev/null || true
		# dockerd stops the containerd it started; if it was killed first, that one goes too
		containerd_pid=$(cat "$work/exec/containerd/containerd.pid" 2>/dev/null || true)
		if [ -n "$containerd_pid" ]; then kill -TERM "$containerd_pid" 2>/dev/null || true; fi
	fi
	rm -rf "$work"
}
trap cleanup EXIT

engine_answers() { "$PY" -c 'from builder.registry.docker_daemon import connect_engine; connect_engine().close()' 2>/dev/null; }

if ! engine_answers; then
	if [ "$(id -u)" != 0 ] || ! command -v dockerd >/dev/null; then
		echo "== clusters on docker: skipped (no Docker engine answers at ${DOCKER_HOST:-/var/run/docker.sock}, and none can be started here: needs root and docker.io)"
		exit 0
	fi
	echo "== starting a private dockerd for the demo (socket $work/d.sock)"
	dockerd --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/dockerd.pid" \
		-H "unix://$work/d.sock" --bridge none --iptables=false --ip6tables=false \
		>"$work/dockerd.log" 2>&1 </dev/null &
	dockerd_pid=$!
	export DOCKER_HOST="unix://$work/d.sock"
	for _ in $(seq 200); do engine_answers && break; sleep 0.1; done
	engine_answers || { echo "== clusters on docker: skipped (dockerd did not start: $(tail -1 "$work/dockerd.log"))"; exit 0; }
fi
export SEALER_STATE_HOME="$work/state"  # the demo's cluster state, gone with the demo

echo "== make node-image: the containers' image, from this machine's programs (offline)"
"$PY" -m builder.runtime.infra.node_image
echo "== sealer build -t demo/cluster-rootfs:v1 examples/cluster-rootfs"
$SEALER build -t demo/cluster-rootfs:v1 examples/cluster-rootfs
echo "== sealer run demo/cluster-rootfs:v1 --provider docker --masters 1 --nodes 2 --cluster demo"
$SEALER run demo/cluster-rootfs:v1 --provider docker --masters 1 --nodes 2 --cluster demo
echo "== sealer cluster status"
$SEALER cluster status
echo "== what init.sh did on each host (sealer exec cat /etc/sealer-demo/env)"
$SEALER exec cat /etc/sealer-demo/env
echo "== what the launch did on master0"
$SEALER exec --roles master cat /var/lib/sealer/demo/demo/launched
echo "== sealer run again: every host already has the rootfs (0 B delivered)"
$SEALER run demo/cluster-rootfs:v1 --provider docker --masters 1 --nodes 2 --cluster demo
echo "== sealer delete --all -y: clean.sh on every host, then the containers and the network go"
$SEALER delete --all -y
