"""The k3s stand-ins: the `k3s` binary (entry "standins.k3s:main") and the upstream install.sh.

    k3s --version                     "k3s version v1.29.4+k3s1 (<commit>)" / "go version ..."
    k3s server [--cluster-init | --server URL] [flags]     a server (Type=notify daemon)
    k3s agent --server URL --token T [flags]                an agent (K3S_URL/K3S_TOKEN too)
    k3s kubectl get nodes [NAME] [-o wide] [--no-headers] | drain NAME --ignore-daemonsets
        --delete-emptydir-data [--timeout=D] [--force] | cordon NAME | uncordon NAME |
        delete node NAME | label node NAME k=v... [--overwrite] | taint node NAME
        key[=value]:Effect... [--overwrite]   (label and taint: the kubeadm stand-in's kubectl)
    install.sh                        the upstream script reduced to the air-gap path

State where the real k3s keeps it (paths are the upstream ones):
    /var/lib/rancher/k3s/server/token        K10<sha256 of the CA>::server:<secret>
    /var/lib/rancher/k3s/server/agent-token  K10<sha256 of the CA>::node:<agent secret>
    /var/lib/rancher/k3s/server/node-token   -> token (a symlink, as upstream)
    /var/lib/rancher/k3s/server/cred/passwd  "secret,user,uid,group" lines for the server and
                                             node users, written before the datastore: a
                                             --cluster-init server restarted before it wrote
                                             `token` recovers its secret from here, as upstream
    /var/lib/rancher/k3s/server/tls/         server-ca.crt, client-ca.crt, and
                                             serving-kube-apiserver.crt whose text header
                                             lists the SANs (as `openssl x509 -text` would)
    /var/lib/rancher/k3s/server/db/state.json  on the server started with --cluster-init: the
                                             "datastore" (core.serve_api's state: nodes,
                                             etcd members, tokens, events)
    /etc/rancher/k3s/k3s.yaml                admin kubeconfig, server https://127.0.0.1:6443
    /etc/rancher/node/password               the node password (bound to the node name)
    (a node's "labels", its --node-label flags and kubectl's, and "taints" are kept on it in the
    datastore, as Node metadata.labels and spec.taints)
    /var/lib/rancher/k3s/agent/              server-ca.crt, client-ca.crt, kubelet.kubeconfig

The --cluster-init server serves the API (core.serve_api) on 0.0.0.0:6443 of its host; joined
servers forward their 6443 to it (so their k3s.yaml works) and hold 2379/2380 as etcd would;
every node holds 10250 (kubelet). Joins check like upstream: the token's CA hash against the
server's CA (GET /cacerts equivalent), then the secret over the network (403: refused, the
service fails to start and install.sh fails). A server restarted with a different token than
its datastore's fails ("bootstrap data already found and encrypted with different token").
Deleting a server's node removes its etcd member (k3s's etcd controller does that upstream).

Fault points, for tests of resumed runs: a test creates /run/standin-fault/<point> on a host
(its /run is private); the stand-in reaching <point> removes the marker and dies like a crash
(SIGKILL: no cleanup, ports freed by the kernel), having written what upstream has by then, so
the next attempt on that host goes on:
    install-unit-written      install.sh, after the symlinks, killall and uninstall scripts, the
                              unit and its env file (K3S_TOKEN in it), before enable and start
    server-datastore-created  `k3s server --cluster-init`, first start: the datastore holds the
                              CA, tokens and bootstrap data, cred/passwd is written; no node, no
                              server/token, no k3s.yaml yet
    server-member-added       `k3s server --server`: the cluster has the node and its etcd
                              member; no bootstrap data, files or ports on the host yet
    agent-joined              `k3s agent`: the node joined (its password bound to its name), the
                              CA files are written; no kubelet.kubeconfig, never ready
A crashed service stays failed (an injected crash is one upstream would meet at every restart,
so the systemctl stand-in does not apply Restart= after it), so only a new start - install.sh
restarting it - brings it back.

Deliberate differences from upstream, for the tests' sake:
- etcd members are named after their node (upstream: node name plus a random suffix, kept in
  the server's db/etcd/name; a server that rejoins after a crash finds its own member by name
  and peer address and does not add another): here the same name's entry is replaced;
- the agent token is a separate secret unless --agent-token is given (upstream the agent
  token defaults to the server token), so a test can tell which token an agent used; a
  server token still admits agents, as upstream;
- a missing or unreadable air-gap image tarball in agent/images/ fails the start (upstream
  k3s would start and then fail to pull on an air-gapped host);
- config.yaml / registries.yaml are parsed with core.load_yaml (strict subset) and must be
  mappings; unknown config.yaml keys are warned about and skipped, as upstream;
- no containerd, no pods; drain only cordons (and records evicted=true).

Over the house ~400 lines because a third of it is the install.sh text, kept beside the k3s
stand-in whose unit file, env file and uninstall scripts it must agree with.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import platform
import re
import secrets
import socket
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

from . import core

DEFAULT_VERSION = "v1.29.4"
API_PORT = 6443
ETCD_PORTS = (2379, 2380)
KUBELET_PORT = 10250
HEARTBEAT_S = 5.0
DATA_DIR = Path("/var/lib/rancher/k3s")
SERVER_DIR = DATA_DIR / "server"
TLS_DIR = SERVER_DIR / "tls"
TOKEN_FILE = SERVER_DIR / "token"
AGENT_TOKEN_FILE = SERVER_DIR / "agent-token"
DB_FILE = SERVER_DIR / "db" / "state.json"
AGENT_DIR = DATA_DIR / "agent"
IMAGES_DIR = AGENT_DIR / "images"
CONFIG_DIR = Path("/etc/rancher/k3s")
CONFIG_FILE = CONFIG_DIR / "config.yaml"
REGISTRIES_FILE = CONFIG_DIR / "registries.yaml"
KUBECONFIG_FILE = CONFIG_DIR / "k3s.yaml"
NODE_PASSWORD_FILE = Path("/etc/rancher/node/password")
PASSWD_FILE = SERVER_DIR / "cred" / "passwd"
FAULT_DIR = core.FAULT_DIR
IMAGE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.lz4", ".tar.bz2")
_TOKEN_RE = re.compile(r"^K10([0-9a-f]{64})::([a-z]+):(.+)$")


def version() -> str:
    data = core.bundled("version")
    return data.decode().strip() if data else DEFAULT_VERSION


def full_version() -> str:
    return f"{version()}+k3s1"


def _commit() -> str:
    return hashlib.sha256(version().encode()).hexdigest()[:8]


# --- the upstream files ----------------------------------------------------------------------------


def write_upstream_files(out: Path, version: str) -> None:
    """k3s (the zipapp, reporting `version`), install.sh and an air-gap image tarball in `out`."""
    if not re.fullmatch(r"v\d+\.\d+\.\d+", version):
        raise ValueError(f"k3s stand-in version {version!r}: want vMAJOR.MINOR.PATCH")
    core.write_zipapp("standins.k3s:main", out / "k3s", files={"version": version.encode()})
    install = out / "install.sh"
    install.write_text(INSTALL_SH)
    install.chmod(0o755)
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    (out / f"k3s-airgap-images-{arch}.tar.zst").write_bytes(_airgap_tarball(version))


def _airgap_tarball(version: str) -> bytes:
    import zstandard  # the controller's (pytest's) dependency; never imported on a host

    images = [
        "docker.io/rancher/klipper-helm:v0.8.3-build20240228",
        "docker.io/rancher/mirrored-coredns-coredns:1.10.1",
        "docker.io/rancher/mirrored-pause:3.6",
        f"docker.io/rancher/k3s-standin:{version}",
    ]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = json.dumps([{"RepoTags": [i]} for i in images]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return zstandard.ZstdCompressor().compress(buf.getvalue())


# --- small helpers ---------------------------------------------------------------------------------


def _log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f'time="{stamp}" level=info msg="{message}"', file=sys.stderr, flush=True)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _pem(kind: str, payload: dict[str, Any]) -> str:
    body = base64.b64encode(json.dumps(payload, sort_keys=True).encode()).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n"


def format_token(ca: str, user: str, secret: str) -> str:
    return f"K10{_sha256(ca)}::{user}:{secret}"


def parse_token(token: str) -> tuple[str | None, str]:
    """(CA hash or None for a bare "short" token, secret)."""
    token = token.strip()
    if token.startswith("K10"):
        match = _TOKEN_RE.match(token)
        if match is None:
            core.die(f"invalid token format: {token[:12]}... (want K10<ca-hash>::<user>:<secret>)")
        return match.group(1), match.group(3)
    if not token or ":" in token:
        core.die("invalid token format (empty, or a bare token containing ':')")
    return None, token


# --- flags -----------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        core.die(f"{self.prog}: {message}")


def _parser(command: str) -> _Parser:
    p = _Parser(prog=f"k3s {command}", allow_abbrev=False, add_help=False)
    p.add_argument("--server", "-s")
    p.add_argument("--token", "-t")
    p.add_argument("--token-file")
    p.add_argument("--node-ip", "-i")
    p.add_argument("--node-name")
    p.add_argument("--node-label", action="append", default=[])
    p.add_argument("--node-taint", action="append", default=[])
    p.add_argument("--data-dir", "-d")
    p.add_argument("--config", "-c")
    p.add_argument("--kubelet-arg", action="append", default=[])
    p.add_argument("--kube-proxy-arg", action="append", default=[])
    p.add_argument("--debug", action="store_true")
    p.add_argument("--selinux", action="store_true")
    p.add_argument("--prefer-bundled-bin", action="store_true")
    p.add_argument("--private-registry")
    p.add_argument("--snapshotter")
    p.add_argument("--flannel-iface")
    p.add_argument("--node-external-ip")
    p.add_argument("--with-node-id", action="store_true")
    if command == "server":
        p.add_argument("--cluster-init", action="store_true")
        p.add_argument("--agent-token")
        p.add_argument("--agent-token-file")
        p.add_argument("--tls-san", action="append", default=[])
        p.add_argument("--write-kubeconfig", "-o")
        p.add_argument("--write-kubeconfig-mode")
        p.add_argument("--disable", action="append", default=[])
        for flag in (
            "--flannel-backend", "--cluster-cidr", "--service-cidr", "--cluster-dns", "--cluster-domain",
            "--advertise-address", "--bind-address", "--https-listen-port", "--default-local-storage-path",
            "--system-default-registry", "--egress-selector-mode", "--service-node-port-range",
        ):  # fmt: skip
            p.add_argument(flag)
        for flag in (
            "--kube-apiserver-arg", "--kube-controller-manager-arg", "--kube-scheduler-arg",
            "--etcd-arg",
        ):  # fmt: skip
            p.add_argument(flag, action="append", default=[])
        for flag in (
            "--disable-network-policy", "--disable-helm-controller", "--disable-kube-proxy",
            "--disable-cloud-controller", "--secrets-encryption", "--embedded-registry",
            "--etcd-expose-metrics", "--disable-scheduler", "--disable-apiserver",
        ):  # fmt: skip
            p.add_argument(flag, action="store_true")
    return p


def _config_args(parser: _Parser, path: Path) -> list[str]:
    """config.yaml as flags placed before the command line's (k3s does the same), strictly a
    mapping; keys that are no flag of this command are warned about and skipped, as upstream."""
    if not path.is_file():
        return []
    try:
        data = core.load_yaml(path.read_text(), str(path))
    except core.YamlError as err:
        core.die(f"failed to parse config file: {err}")
    if data is None:
        return []
    if not isinstance(data, dict):
        core.die(f"{path}: the config file must be a YAML mapping of flag names to values")
    known = {o for a in parser._actions for o in a.option_strings}
    out: list[str] = []
    for key, value in data.items():
        flag = f"--{key}"
        if flag not in known:
            print(f"Warning: Unknown flag --{key} found in config.yaml, skipping", file=sys.stderr)
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, bool):
                if item:
                    out.append(flag)
            elif isinstance(item, dict | list) or item is None:
                core.die(f"{path}: {key}: want a scalar or a list of scalars")
            else:
                out.append(f"{flag}={item}")
    return out


def _check_registries(path: Path) -> None:
    if not path.is_file():
        return
    try:
        data = core.load_yaml(path.read_text(), str(path))
    except core.YamlError as err:
        core.die(f"failed to parse registries.yaml: {err}")
    if data is None:
        return
    if not isinstance(data, dict):
        core.die(f"{path}: registries.yaml must be a YAML mapping (mirrors:, configs:)")
    for key in data:
        if key not in ("mirrors", "configs"):
            core.die(f"{path}: unknown key {key!r} (want mirrors and configs)")
    mirrors = data.get("mirrors") or {}
    if not isinstance(mirrors, dict):
        core.die(f"{path}: mirrors must be a mapping of registry names")
    for name, mirror in mirrors.items():
        endpoints = (mirror or {}).get("endpoint") if isinstance(mirror, dict) else None
        if not isinstance(endpoints, list) or not all(isinstance(e, str) for e in endpoints):
            core.die(f"{path}: mirrors.{name}.endpoint must be a list of URLs")
    if not isinstance(data.get("configs") or {}, dict):
        core.die(f"{path}: configs must be a mapping of registry hosts")


def _parse(command: str, argv: list[str]) -> argparse.Namespace:
    parser = _parser(command)
    config = Path(os.environ.get("K3S_CONFIG_FILE", str(CONFIG_FILE)))
    for i, arg in enumerate(argv):  # --config on the command line names another file
        if arg in ("--config", "-c") and i + 1 < len(argv):
            config = Path(argv[i + 1])
        elif arg.startswith("--config="):
            config = Path(arg.split("=", 1)[1])
    opts = parser.parse_args(_config_args(parser, config) + argv)
    env = os.environ
    opts.server = opts.server or env.get("K3S_URL")
    opts.token = opts.token or env.get("K3S_TOKEN")
    opts.token_file = opts.token_file or env.get("K3S_TOKEN_FILE")
    opts.node_name = opts.node_name or env.get("K3S_NODE_NAME")
    if opts.token is None and opts.token_file:
        try:
            opts.token = Path(opts.token_file).read_text().strip()
        except OSError as err:
            core.die(f"--token-file {opts.token_file}: {err.strerror}")
    if command == "server":
        opts.cluster_init = opts.cluster_init or env.get("K3S_CLUSTER_INIT", "").lower() == "true"
        opts.agent_token = opts.agent_token or env.get("K3S_AGENT_TOKEN")
        opts.write_kubeconfig_mode = opts.write_kubeconfig_mode or env.get("K3S_KUBECONFIG_MODE")
        if opts.agent_token is None and opts.agent_token_file:
            opts.agent_token = Path(opts.agent_token_file).read_text().strip()
        if opts.https_listen_port not in (None, str(API_PORT)):
            core.die(f"--https-listen-port {opts.https_listen_port}: the stand-in serves only {API_PORT}")
    if opts.data_dir not in (None, str(DATA_DIR)):
        core.die(f"--data-dir {opts.data_dir}: the stand-in keeps its data only in {DATA_DIR}")
    if opts.server is not None and not opts.server.startswith("https://"):
        core.die(f"--server {opts.server}: only https:// URLs are supported")
    _check_registries(REGISTRIES_FILE)
    return opts


# --- node start-up ---------------------------------------------------------------------------------


def _check_images() -> list[Path]:
    """The air-gap image tarballs (k3s imports them at start); this host cannot pull."""
    found = sorted(p for p in IMAGES_DIR.glob("*") if p.is_file() and p.name.endswith(IMAGE_SUFFIXES))
    if not found:
        core.die(f"no air-gap image tarball in {IMAGES_DIR}/ (k3s-airgap-images-<arch>.tar.zst): "
                 "this host is air-gapped and cannot pull the system images")  # fmt: skip
    for path in found:
        head = path.read_bytes()[:4]
        ok = {
            ".tar.zst": head == b"\x28\xb5\x2f\xfd",
            ".tar.gz": head[:2] == b"\x1f\x8b",
            ".tgz": head[:2] == b"\x1f\x8b",
            ".tar": tarfile.is_tarfile(path),
        }.get(next(s for s in IMAGE_SUFFIXES[::-1] if path.name.endswith(s)), True)
        if not ok:
            core.die(f"{path}: not a valid image tarball (bad magic for its suffix)")
        _log(f"Imported images from {path}")
    return found


def _identity(opts: argparse.Namespace) -> tuple[str, str]:
    name = opts.node_name or socket.gethostname()
    ip = opts.node_ip
    if not ip:
        try:
            ip = socket.gethostbyname(socket.gethostname())
        except OSError:
            core.die("cannot find the node IP: pass --node-ip")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((ip, 0))
        except OSError:
            core.die(f"--node-ip {ip} is not an address of this host")
    return name, ip


def _read_passwd() -> dict[str, str]:
    """server/cred/passwd as upstream keeps it ("secret,user,uid,group" lines): user -> secret.
    A server restarted before it wrote server/token recovers its token from here."""
    try:
        lines = PASSWD_FILE.read_text().splitlines()
    except FileNotFoundError:
        return {}
    out = {}
    for line in lines:
        parts = line.split(",")
        if len(parts) < 3:
            core.die(f"{PASSWD_FILE}: bad line (want secret,user,uid,group)")
        out[parts[1]] = parts[0]
    return out


def _write_passwd(secret: str, agent_secret: str) -> None:
    core.write_file(PASSWD_FILE, f"{agent_secret},node,node,k3s:agent\n{secret},server,server,k3s:server\n")


def _fault(point: str) -> None:
    """Die here like a crash when the test asked for it (core.crash_at; the points: module docstring)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    core.crash_at(point, f'time="{stamp}" level=info msg="stand-in fault {point}: dying here"')


def _node_password() -> str:
    if NODE_PASSWORD_FILE.is_file():
        return NODE_PASSWORD_FILE.read_text().strip()
    password = secrets.token_hex(16)
    core.write_file(NODE_PASSWORD_FILE, password + "\n")
    return password


def _kubeconfig(ca: str, name: str) -> str:
    ca_data = base64.b64encode(ca.encode()).decode()
    cert = base64.b64encode(_pem("CERTIFICATE", {"cn": "system:admin", "o": "system:masters"}).encode())
    key = base64.b64encode(_pem("EC PRIVATE KEY", {"key": secrets.token_hex(16)}).encode())
    return (
        "apiVersion: v1\nclusters:\n- cluster:\n"
        f"    certificate-authority-data: {ca_data}\n"
        f"    server: https://127.0.0.1:{API_PORT}\n  name: default\n"
        "contexts:\n- context:\n    cluster: default\n    user: default\n  name: default\n"
        "current-context: default\nkind: Config\npreferences: {}\nusers:\n- name: default\n  user:\n"
        f"    client-certificate-data: {cert.decode()}\n    client-key-data: {key.decode()}\n"
    )


def _server_sans(opts: argparse.Namespace, name: str, ip: str) -> list[str]:
    sans = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
            "localhost", name, "127.0.0.1", "::1", ip, "10.43.0.1"]  # fmt: skip
    for value in opts.tls_san:
        sans += [s for s in value.split(",") if s]
    return list(dict.fromkeys(sans))


def _write_server_files(
    opts: argparse.Namespace, ca: str, token: str, agent_token: str, sans: list[str]
) -> None:
    core.write_file(TLS_DIR / "server-ca.crt", ca, 0o644)
    core.write_file(TLS_DIR / "client-ca.crt", ca, 0o644)
    header = "X509v3 Subject Alternative Name: " + ", ".join(
        f"IP Address:{s}" if re.fullmatch(r"[0-9.]+|[0-9a-f:]+:[0-9a-f:]*", s) else f"DNS:{s}" for s in sans
    )
    core.write_file(
        TLS_DIR / "serving-kube-apiserver.crt", header + "\n" + _pem("CERTIFICATE", {"sans": sans}), 0o644
    )
    core.write_file(TOKEN_FILE, token + "\n")
    core.write_file(AGENT_TOKEN_FILE, agent_token + "\n")
    node_token = SERVER_DIR / "node-token"
    if not node_token.is_symlink():
        node_token.unlink(missing_ok=True)
        node_token.symlink_to(TOKEN_FILE)
    mode = int(opts.write_kubeconfig_mode, 8) if opts.write_kubeconfig_mode else 0o600
    kubeconfig = Path(opts.write_kubeconfig) if opts.write_kubeconfig else KUBECONFIG_FILE
    core.write_file(kubeconfig, _kubeconfig(ca, "default"), mode)


def _node_labels(client: core.ApiClient, name: str, flags: list[str]) -> dict[str, str]:
    """The node's labels after a (re)start: its --node-label flags over the labels it has (k3s
    sets its flags' labels at every start and keeps those set through the API since)."""
    try:
        labels = dict(client.get_node(name).get("labels") or {})
    except core.ApiError:
        labels = {}
    for flag in flags:
        key, eq, value = flag.partition("=")
        if not eq:
            core.die(f"--node-label {flag!r}: want key=value")
        labels[key] = value
    return labels


def _join_as(
    client: core.ApiClient, secret: str, role: str, name: str, ip: str, *, member: bool, **extra: Any
) -> dict[str, Any]:
    if "labels" in extra:
        extra["labels"] = _node_labels(client, name, extra["labels"])
    try:
        return client.join(
            secret, role, name, ip, full_version(), member=member, node_password=_node_password(), **extra
        )
    except core.ApiError as err:
        if err.status == 0:
            core.die(f"failed to contact the server {client.url}: {err.message}")
        core.die(f"failed to join {client.url} as {role} {name}: {err.message}")


def _verify_ca(client: core.ApiClient, ca_hash: str | None) -> str:
    try:
        ca = client.get_secret("k3s/cacerts")
    except core.ApiError as err:
        core.die(f"failed to get CA certs from {client.url}: {err.message}")
    if ca_hash is None:
        _log("Using a short token: the cluster CA is not verified")
    elif _sha256(ca) != ca_hash:
        core.die(f"token CA hash does not match the Cluster CA certificate hash: {ca_hash} != {_sha256(ca)}")
    return ca


def _run_node(client: core.ApiClient, name: str, held: list[socket.socket]) -> int:
    """Tell systemd we are up, then keep the node's heartbeat until stopped."""
    core.notify_ready()
    _log(f"k3s is up and running as node {name}")
    gone = False
    try:
        while True:
            time.sleep(HEARTBEAT_S)
            try:
                client.patch_node(name, heartbeat=True)
                gone = False
            except core.ApiError as err:
                if err.status == 404 and not gone:
                    _log(f"node {name} was deleted from the cluster")
                gone = err.status == 404
    finally:
        for sock in held:
            sock.close()


def server(argv: list[str]) -> int:
    core.exit_on_sigterm()
    opts = _parse("server", argv)
    # the embedded kube-apiserver reads its policy at start; k3s exits when it cannot
    core.check_audit_policy(dict(a.partition("=")[::2] for a in opts.kube_apiserver_arg))
    _check_images()
    name, ip = _identity(opts)
    sans = _server_sans(opts, name, ip)
    roles = "control-plane,etcd,master" if (opts.cluster_init or opts.server) else "control-plane,master"
    if opts.server:
        return _join_server(opts, name, ip, sans, roles)
    fresh = not DB_FILE.is_file()
    api = core.make_api_server(DB_FILE, "0.0.0.0", API_PORT)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    client = core.ApiClient(f"https://127.0.0.1:{API_PORT}")
    given = parse_token(opts.token)[1] if opts.token else None
    passwd = _read_passwd()
    if fresh:
        ca = _pem("CERTIFICATE", {"cn": f"k3s-server-ca@{int(time.time())}", "key": secrets.token_hex(16)})
        secret = given or passwd.get("server") or secrets.token_hex(16)
        agent_secret = (
            parse_token(opts.agent_token)[1]
            if opts.agent_token
            else passwd.get("node") or secrets.token_hex(16)
        )
        _write_passwd(secret, agent_secret)  # before the datastore, as upstream's genUsers
        token, agent_token = format_token(ca, "server", secret), format_token(ca, "node", agent_secret)
        client.put_secret("k3s/cacerts", ca)
        client.put_secret(f"k3s/bootstrap/{_sha256(secret)}", json.dumps({"agent_token": agent_token}))
        client.create_token("server", value=secret, allows=("server", "agent"))
        if agent_secret != secret:
            client.create_token("agent", value=agent_secret)
        _log(f"Cluster initialised (embedded etcd: {bool(opts.cluster_init)})")
        _fault("server-datastore-created")
    else:
        ca = client.get_secret("k3s/cacerts")
        stored = TOKEN_FILE.read_text().strip() if TOKEN_FILE.is_file() else ""
        secret = parse_token(stored)[1] if stored else (passwd.get("server") or given or "")
        if not secret:
            core.die(f"bootstrap data found in {DB_FILE.parent} but no token: pass --token")
        if given is not None and given != secret:
            core.die("bootstrap data already found and encrypted with different token")
        token = format_token(ca, "server", secret)
        agent_token = json.loads(client.get_secret(f"k3s/bootstrap/{_sha256(secret)}"))["agent_token"]
    held = core.hold_ports([*(ETCD_PORTS if opts.cluster_init else ()), KUBELET_PORT])
    _join_as(client, secret, "server", name, ip, member=bool(opts.cluster_init), roles=roles,
             tls_sans=sans, labels=opts.node_label, peer_url=f"https://{ip}:2380" if opts.cluster_init else "")  # fmt: skip
    _write_server_files(opts, ca, token, agent_token, sans)
    return _run_node(client, name, held)


def _join_server(opts: argparse.Namespace, name: str, ip: str, sans: list[str], roles: str) -> int:
    if not opts.token:
        core.die("--token is required to join a cluster (--server, K3S_TOKEN or --token-file)")
    ca_hash, secret = parse_token(opts.token)
    client = core.ApiClient(opts.server)
    ca = _verify_ca(client, ca_hash)
    _join_as(client, secret, "server", name, ip, member=True, roles=roles, tls_sans=sans,
             labels=opts.node_label, peer_url=f"https://{ip}:2380")  # fmt: skip
    _fault("server-member-added")
    try:
        bootstrap = json.loads(client.get_secret(f"k3s/bootstrap/{_sha256(secret)}"))
    except core.ApiError as err:
        core.die(
            f"failed to get bootstrap data from {client.url}: {err.message} (a server needs the server token)"
        )
    held = core.hold_ports([*ETCD_PORTS, KUBELET_PORT])
    parsed = client.base.removeprefix("http://")
    core.forward_port(API_PORT, parsed)
    _write_server_files(opts, ca, format_token(ca, "server", secret), bootstrap["agent_token"], sans)
    return _run_node(client, name, held)


def agent(argv: list[str]) -> int:
    core.exit_on_sigterm()
    opts = _parse("agent", argv)
    if not opts.server:
        core.die("--server (K3S_URL) is required for an agent")
    if not opts.token:
        core.die("--token is required for an agent (K3S_TOKEN or --token-file)")
    _check_images()
    name, ip = _identity(opts)
    ca_hash, secret = parse_token(opts.token)
    client = core.ApiClient(opts.server)
    ca = _verify_ca(client, ca_hash)
    _join_as(client, secret, "agent", name, ip, member=False, roles="<none>", labels=opts.node_label)
    core.write_file(AGENT_DIR / "server-ca.crt", ca, 0o644)
    core.write_file(AGENT_DIR / "client-ca.crt", ca, 0o644)
    _fault("agent-joined")
    core.write_file(
        AGENT_DIR / "kubelet.kubeconfig", _kubeconfig(ca, name).replace("127.0.0.1:6443", "127.0.0.1:6444")
    )
    held = core.hold_ports([KUBELET_PORT])
    return _run_node(client, name, held)


# --- kubectl ---------------------------------------------------------------------------------------


def _kube_client(kubeconfig: str | None) -> core.ApiClient:
    path = Path(kubeconfig or os.environ.get("KUBECONFIG") or KUBECONFIG_FILE)
    try:
        text = path.read_text()
    except OSError as err:
        core.die(f'error: error loading config file "{path}": {err.strerror}')
    match = re.search(r"^\s*server:\s*(\S+)\s*$", text, re.MULTILINE)
    if match is None:
        core.die(f"error: {path}: no cluster server in the kubeconfig")
    return core.ApiClient(match.group(1))


def _kube_call(client: core.ApiClient, call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except core.ApiError as err:
        if err.status == 0:
            host = client.base.removeprefix("http://")
            core.die(
                f"The connection to the server {host} was refused - did you specify the right host or port?"
            )
        if err.status == 404:
            core.die(f"Error from server (NotFound): {err.message}")
        core.die(f"Error from server: {err.message}")


def _age(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h" if s < 172800 else f"{s // 86400}d"


def _node_row(node: dict[str, Any], wide: bool) -> list[str]:
    status = "Ready" if node.get("ready") else "NotReady"
    if node.get("unschedulable"):
        status += ",SchedulingDisabled"
    row = [
        node["name"],
        status,
        node.get("roles", "<none>"),
        _age(time.time() - node["joined_at"]),
        node["version"],
    ]
    if wide:
        row += [node["ip"], "<none>", "Stand-in Linux", platform.release(), "containerd://1.7.15-k3s1"]
    return row


def _print_table(rows: list[list[str]], headers: list[str] | None) -> None:
    table = ([headers] if headers else []) + rows
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))] if table else []
    for r in table:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def kubectl(argv: list[str]) -> int:
    p = _Parser(prog="kubectl", allow_abbrev=False, add_help=False)
    verbs = ("get", "drain", "cordon", "uncordon", "delete", "label", "taint", *core.WRITE_VERBS)
    p.add_argument("verb", choices=verbs)
    p.add_argument("args", nargs="*")
    p.add_argument("-f", "--filename")  # create/replace: a ConfigMap (core.kubectl_configmaps)
    p.add_argument("-n", "--namespace")
    p.add_argument("--kubeconfig")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-o", "--output", choices=("wide", "name", "json"))
    p.add_argument("--no-headers", action="store_true")
    p.add_argument("--ignore-daemonsets", action="store_true")
    p.add_argument("--delete-emptydir-data", action="store_true")
    p.add_argument("--force", action="store_true")
    p.add_argument("--timeout")
    opts = p.parse_args(argv)
    client = _kube_client(opts.kubeconfig)
    if opts.verb in ("label", "taint"):
        # k3s kubectl is upstream kubectl: the label and taint rules are the kubeadm stand-in's
        from .kubernetes import kubectl_label, kubectl_taint

        verb = kubectl_label if opts.verb == "label" else kubectl_taint
        return verb(
            opts.args,
            opts.overwrite,
            lambda n: dict(_kube_call(client, client.get_node, n)),
            lambda n, **f: _kube_call(client, client.patch_node, n, **f),
        )
    args = (
        [a for part in opts.args for a in part.split("/", 1)] if opts.verb in ("get", "delete") else opts.args
    )
    if core.is_configmap_command(opts.verb, args):
        return core.kubectl_configmaps(
            client, opts.verb, args, namespace=opts.namespace, filename=opts.filename, output=opts.output
        )
    if opts.verb == "get":
        if not args or args[0] not in ("nodes", "node", "no"):
            core.die(f"error: the stand-in kubectl gets only nodes, not {' '.join(args) or 'nothing'}")
        if len(args) > 1:
            nodes = [_kube_call(client, client.get_node, n) for n in args[1:]]
        else:
            nodes = _kube_call(client, client.nodes)
        if opts.output == "json":
            print(json.dumps({"kind": "List", "items": nodes}, indent=2))
        elif opts.output == "name":
            for node in nodes:
                print(f"node/{node['name']}")
        elif not nodes:
            print("No resources found", file=sys.stderr)
        else:
            wide = opts.output == "wide"
            headers = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
            headers += (
                ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
                if wide
                else []
            )
            _print_table([_node_row(n, wide) for n in nodes], None if opts.no_headers else headers)
        return 0
    if opts.verb == "delete":
        if len(args) != 2 or args[0] not in ("node", "nodes", "no"):
            core.die("error: the stand-in kubectl deletes only one node: delete node NAME")
        node = _kube_call(client, client.get_node, args[1])
        _kube_call(client, client.delete_node, args[1])
        if "etcd" in str(node.get("roles", "")):
            # k3s's etcd controller removes a deleted server's member (upstream: etcd.go)
            try:
                client.remove_member(args[1])
            except core.ApiError as err:
                if err.status != 404:
                    core.die(f"Error from server: removing etcd member {args[1]}: {err.message}")
        print(f'node "{args[1]}" deleted')
        return 0
    if len(args) != 1:
        core.die(f"error: {opts.verb} takes one node name")
    name = args[0]
    if opts.verb == "drain":
        if not opts.ignore_daemonsets:
            core.die(f"error: unable to drain node {name!r}: cannot delete DaemonSet-managed Pods "
                     "(use --ignore-daemonsets to ignore): kube-system/svclb-traefik")  # fmt: skip
        if not opts.delete_emptydir_data:
            core.die(f"error: unable to drain node {name!r}: cannot delete Pods with local storage "
                     "(use --delete-emptydir-data to override): kube-system/metrics-server")  # fmt: skip
        _kube_call(client, client.patch_node, name, unschedulable=True)
        print(f"node/{name} cordoned")
        _kube_call(client, client.patch_node, name, evicted=True)
        print(f"node/{name} drained")
        return 0
    unschedulable = opts.verb == "cordon"
    _kube_call(client, client.patch_node, name, unschedulable=unschedulable, evicted=False)
    print(f"node/{name} {'cordoned' if unschedulable else 'uncordoned'}")
    return 0


# --- entry -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    prog = os.path.basename(sys.argv[0]) if sys.argv else "k3s"
    if prog == "kubectl":
        return kubectl(args)
    if prog in ("crictl", "ctr"):
        core.die(f"{prog} is not provided by the k3s stand-in")
    if not args:
        core.die("missing command: server, agent or kubectl (k3s --help lists them upstream)")
    command, rest = args[0], args[1:]
    if command in ("--version", "-v"):
        print(f"k3s version {full_version()} ({_commit()})")
        print("go version go1.21.9")
        return 0
    if command == "server":
        return server(rest)
    if command == "agent":
        return agent(rest)
    if command in ("kubectl", "k"):
        return kubectl(rest)
    core.die(f"unknown command {command!r} (the stand-in has server, agent, kubectl, --version)")


# The upstream get.k3s.io install.sh, reduced to what an air-gapped systemd host runs: the same
# environment variables, command detection, files (unit, .env, killall and uninstall scripts,
# symlinks), "no change detected" check and systemctl calls. Dropped: download, SELinux RPMs,
# openrc, and what would reach this machine's shared kernel or process table from a test host
# (modprobe ExecStartPre lines, iptables, killing processes by name, deleting interfaces).
INSTALL_SH = r"""#!/bin/sh
# k3s install.sh (sealer test stand-in: the air-gap path of the upstream script)
set -e
set -o noglob

info() { echo '[INFO] ' "$@"; }
fatal() { echo '[ERROR] ' "$@" >&2; exit 1; }

quote() {
    for arg in "$@"; do
        printf '%s\n' "$arg" | sed "s/'/'\\\\''/g;1s/^/'/;\$s/\$/'/"
    done
}
quote_indent() {
    printf ' \\\n'
    for arg in "$@"; do
        printf '\t%s \\\n' "$(quote "$arg")"
    done
}
escape() {
    printf '%s' "$@" | sed -e 's/\([][!#$%&()*;<=>?\_`{|}]\)/\\\1/g;'
}

verify_system() {
    if [ -x /bin/systemctl ] || type systemctl > /dev/null 2>&1; then
        return
    fi
    fatal 'Can not find systemd or openrc to use as a process supervisor for k3s'
}

setup_env() {
    case "$1" in
        (-*|"")
            if [ -z "${K3S_URL}" ]; then
                CMD_K3S=server
            else
                if [ -z "${K3S_TOKEN}" ] && [ -z "${K3S_TOKEN_FILE}" ]; then
                    fatal "Defaulted k3s exec command to 'agent' because K3S_URL is defined, but K3S_TOKEN or K3S_TOKEN_FILE is not defined."
                fi
                CMD_K3S=agent
            fi
        ;;
        (*)
            CMD_K3S=$1
            shift
        ;;
    esac
    case "${K3S_URL}" in
        ""|https://*) ;;
        *) fatal "Only https:// URLs are supported for K3S_URL (have ${K3S_URL})" ;;
    esac
    CMD_K3S_EXEC="${CMD_K3S}$(quote_indent "$@")"
    if [ -n "${INSTALL_K3S_NAME}" ]; then
        SYSTEM_NAME=k3s-${INSTALL_K3S_NAME}
    elif [ "${CMD_K3S}" = server ]; then
        SYSTEM_NAME=k3s
    else
        SYSTEM_NAME=k3s-${CMD_K3S}
    fi
    SYSTEMD_TYPE=${INSTALL_K3S_TYPE:-notify}
    BIN_DIR=${INSTALL_K3S_BIN_DIR:-/usr/local/bin}
    SYSTEMD_DIR=${INSTALL_K3S_SYSTEMD_DIR:-/etc/systemd/system}
    SERVICE_K3S=${SYSTEM_NAME}.service
    UNINSTALL_K3S_SH=${UNINSTALL_K3S_SH:-${BIN_DIR}/${SYSTEM_NAME}-uninstall.sh}
    KILLALL_K3S_SH=${KILLALL_K3S_SH:-${BIN_DIR}/k3s-killall.sh}
    FILE_K3S_SERVICE=${SYSTEMD_DIR}/${SERVICE_K3S}
    FILE_K3S_ENV=${SYSTEMD_DIR}/${SERVICE_K3S}.env
    PRE_INSTALL_HASHES=$(get_installed_hashes)
}

download_and_verify() {
    if [ "${INSTALL_K3S_SKIP_DOWNLOAD}" != true ] && [ "${INSTALL_K3S_SKIP_DOWNLOAD}" != binary ]; then
        fatal "this host is air-gapped and the stand-in install.sh cannot download k3s: set INSTALL_K3S_SKIP_DOWNLOAD=true with ${BIN_DIR}/k3s in place"
    fi
    info 'Skipping k3s download and verify'
    if [ ! -x "${BIN_DIR}/k3s" ]; then
        fatal "Executable k3s binary not found at ${BIN_DIR}/k3s"
    fi
}

create_symlinks() {
    [ "${INSTALL_K3S_SYMLINK}" = skip ] && return
    for cmd in kubectl crictl ctr; do
        if [ ! -e "${BIN_DIR}/${cmd}" ] || [ "${INSTALL_K3S_SYMLINK}" = force ]; then
            which_cmd=$(command -v ${cmd} 2>/dev/null || true)
            if [ -z "${which_cmd}" ] || [ "${INSTALL_K3S_SYMLINK}" = force ]; then
                info "Creating ${BIN_DIR}/${cmd} symlink to k3s"
                ln -sf k3s "${BIN_DIR}/${cmd}"
            else
                info "Skipping ${BIN_DIR}/${cmd} symlink to k3s, command exists in PATH at ${which_cmd}"
            fi
        else
            info "Skipping ${BIN_DIR}/${cmd} symlink to k3s, already exists"
        fi
    done
}

create_killall() {
    info "Creating killall script ${KILLALL_K3S_SH}"
    cat > "${KILLALL_K3S_SH}" << \EOF
#!/bin/sh
# k3s-killall.sh (stand-in: stops the k3s services; processes are the services' own)
set -x
for service in /etc/systemd/system/k3s*.service; do
    [ -s $service ] && systemctl stop $(basename $service)
done
rm -rf /run/k3s
EOF
    chmod 755 "${KILLALL_K3S_SH}"
}

create_uninstall() {
    info "Creating uninstall script ${UNINSTALL_K3S_SH}"
    cat > "${UNINSTALL_K3S_SH}" << EOF
#!/bin/sh
set -x
K3S_DATA_DIR=\${K3S_DATA_DIR:-/var/lib/rancher/k3s}

${KILLALL_K3S_SH}

if command -v systemctl; then
    systemctl disable ${SYSTEM_NAME}
    systemctl reset-failed ${SYSTEM_NAME}
    systemctl daemon-reload
fi

rm -f ${FILE_K3S_SERVICE}
rm -f ${FILE_K3S_ENV}

remove_uninstall() {
    rm -f ${UNINSTALL_K3S_SH}
}
trap remove_uninstall EXIT

if (ls ${SYSTEMD_DIR}/k3s*.service || ls /etc/init.d/k3s*) >/dev/null 2>&1; then
    set +x; echo 'Additional k3s services installed, skipping uninstall of k3s'; set -x
    exit
fi

for cmd in kubectl crictl ctr; do
    if [ -L ${BIN_DIR}/\$cmd ]; then
        rm -f ${BIN_DIR}/\$cmd
    fi
done

rm -rf /etc/rancher/k3s
rm -rf /run/k3s
rm -rf /run/flannel
rm -rf \${K3S_DATA_DIR}
rm -rf /var/lib/kubelet
rm -f ${BIN_DIR}/k3s
rm -f ${KILLALL_K3S_SH}
EOF
    chmod 755 "${UNINSTALL_K3S_SH}"
}

systemd_disable() {
    systemctl disable ${SYSTEM_NAME} >/dev/null 2>&1 || true
    rm -f "/etc/systemd/system/${SERVICE_K3S}" || true
    rm -f "/etc/systemd/system/${SERVICE_K3S}.env" || true
}

create_env_file() {
    info "env: Creating environment file ${FILE_K3S_ENV}"
    mkdir -p "${SYSTEMD_DIR}"
    touch "${FILE_K3S_ENV}"
    chmod 0600 "${FILE_K3S_ENV}"
    sh -c export | while read x v; do echo $v; done | grep -E '^(K3S|CONTAINERD)_' > "${FILE_K3S_ENV}" || true
    sh -c export | while read x v; do echo $v; done | grep -Ei '^(NO|HTTP|HTTPS)_PROXY' >> "${FILE_K3S_ENV}" || true
}

create_service_file() {
    info "systemd: Creating service file ${FILE_K3S_SERVICE}"
    cat > "${FILE_K3S_SERVICE}" << EOF
[Unit]
Description=Lightweight Kubernetes
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=${SYSTEMD_TYPE}
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-${FILE_K3S_ENV}
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStart=${BIN_DIR}/k3s \\
    ${CMD_K3S_EXEC}

EOF
}

get_installed_hashes() {
    sha256sum "${BIN_DIR}/k3s" "${FILE_K3S_SERVICE}" "${FILE_K3S_ENV}" 2>&1 || true
}

service_enable_and_start() {
    [ "${INSTALL_K3S_SKIP_ENABLE}" = true ] && return
    info "systemd: Enabling ${SYSTEM_NAME} unit"
    systemctl enable "${FILE_K3S_SERVICE}" >/dev/null
    systemctl daemon-reload >/dev/null
    [ "${INSTALL_K3S_SKIP_START}" = true ] && return
    POST_INSTALL_HASHES=$(get_installed_hashes)
    if [ "${PRE_INSTALL_HASHES}" = "${POST_INSTALL_HASHES}" ] && [ "${INSTALL_K3S_FORCE_RESTART}" != true ]; then
        info 'No change detected so skipping service start'
        return
    fi
    info "systemd: Starting ${SYSTEM_NAME}"
    systemctl restart ${SYSTEM_NAME}
}

# stand-in only: die like a crash when a test left /run/standin-fault/<point> (see k3s.py)
standin_fault() {
    if [ -e "/run/standin-fault/$1" ]; then
        rm -f "/run/standin-fault/$1"
        echo "[FAULT] stand-in fault $1: install.sh dies here" >&2
        kill -KILL $$
    fi
}

eval set -- $(escape "${INSTALL_K3S_EXEC}") $(quote "$@")

{
    verify_system
    setup_env "$@"
    download_and_verify
    create_symlinks
    create_killall
    create_uninstall
    systemd_disable
    create_env_file
    create_service_file
    standin_fault install-unit-written
    service_enable_and_start
}
"""
