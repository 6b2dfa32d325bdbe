"""The `k0s` stand-in (entry "standins.k0s:main"): the k0s binary, as the runtime plugin uses it.

    k0s version                                        v1.29.4+k0s.0
    k0s install controller [-c FILE] [--token-file F] [--enable-worker] [--no-taints]
                           [--kubelet-extra-args=ARGS]  writes k0scontroller.service, enables it
    k0s install worker --token-file F [--kubelet-extra-args=ARGS]   writes k0sworker.service
        (either refuses when a k0s unit exists, unless --force replaces it)
    k0s controller ... / k0s worker ...                the daemons the units run
    k0s start | stop                                   `systemctl start|stop` of the installed unit
    k0s status                                         Version, Process ID, Role, Workloads, ...
    k0s token create --role=controller|worker [--expiry=DURATION] [--wait]
    k0s etcd member-list | etcd leave [--peer-address IP]
    k0s reset                                          refuses while k0s runs, as upstream
    k0s kubectl get nodes [-o wide] [--no-headers] | get --raw=/readyz | drain NAME
        --ignore-daemonsets --delete-emptydir-data [--timeout=D] | cordon|uncordon NAME |
        delete node NAME | delete controlnode.autopilot.k0sproject.io NAME [--ignore-not-found] |
        label node NAME k=v... [--overwrite] | taint node NAME key[=value]:Effect... [--overwrite]
        (label and taint: the kubeadm stand-in's kubectl; "labels" and "taints" kept on the node)
    k0s kubeconfig admin                               the admin kubeconfig, server https://ADDRESS:6443

State where k0s keeps it (/var/lib/k0s, /run/k0s, /etc/systemd/system):
    /var/lib/k0s/pki/ca.crt, server.crt (its text lists the SANs), admin.conf   controllers
    /var/lib/k0s/etcd/member.json              this controller's etcd member (name, peer URL)
    /var/lib/k0s/etcd/cluster.json             on the first controller: the cluster's "etcd"
                                               (core.serve_api's state: members, nodes, tokens)
    /var/lib/k0s/controller.json               the API URL this controller reaches, its address
    /var/lib/k0s/kubelet.conf                  nodes (workers, --enable-worker controllers)
    /var/lib/k0s/worker.json                   a joined worker: its API server and node IP
    /run/k0s/status.json                       the running daemon (upstream: status.sock)

The first controller serves the API (core.serve_api) on 0.0.0.0:6443 and its join API on 9443
(forwarded to 6443); joined controllers forward both to it and hold 2380 (etcd peer) and 8132
(konnectivity); nodes hold 10250. A join token is upstream's shape: base64 of a gzipped
kubeconfig naming the server (https://ADDRESS:9443 for controllers, :6443 for workers), the CA
and a bootstrap token; the joining daemon checks it over the network against the first
controller's API (403: unknown, expired, or minted for the other role; the start fails). A
restarted daemon that already joined needs no token (its controller.json or worker.json is
there), but the --token-file its unit names must exist at every start (k0s failed without it,
k0sctl #256); what it holds is read only for a join. A join records the token's id and server on
the node (`token_id`, `joined_via`: a kubelet's CSR names system:bootstrap:<id>), so a test can
tell which minted token a join used.

etcd, as far as joins see it: a joining controller's member is added by the join (core's
/join); it counts as started once the controller has written its member.json (a secret
"etcd-started/NAME" holding its peer URL), and until then `k0s etcd member-list` lists it
under the name "" as etcd lists an unstarted member. A join whose peer URL is already a member
fails as etcd's MemberAdd does ("Peer URLs already exists"); `k0s etcd leave` removes the member
started or not.

Fault injection, for resume tests: the daemon reaching a point below while the marker file
/run/standin-fault/<point> exists on its host removes the marker and dies by SIGKILL, as a crash
would (no cleanup; the systemctl stand-in then fails `k0s start`, and the unit stays failed):
    controller-member-added   a joining controller, after the join API added its etcd member
                              and it wrote pki/ca.crt; before its member starts (member.json,
                              controller.json, admin.conf are not written)
    worker-joined             a joining worker, after the join API accepted it (the node is
                              listed) and it wrote pki/ca.crt; before kubelet.conf and
                              worker.json, so its next start needs a token again

Deliberate differences from upstream, for the tests' sake:
- the units are Type=notify, so a daemon that fails at start fails `k0s start` at once (the
  real k0s start returns and the failure shows later in `k0s status`; a real joining controller
  refused by etcd retries forever);
- `k0s install` refuses when any k0s unit exists, not only its own role's (upstream's
  kardianos/service checks the one unit it writes);
- a node (a worker, or a controller with --enable-worker) refuses to start without an image
  bundle of its own version in /var/lib/k0s/images (upstream would start, then fail to pull
  with images.default_pull_policy Never);
- a joining controller refuses a config whose network, storage or externalAddress differ
  from the first controller's (the HA guide says they must match; upstream drifts silently);
- a controller without --enable-worker is kept in the node table marked kubelet=false and
  never shown by kubectl (upstream: it is no node at all);
- no containerd, no pods; drain only cordons.

Over the house ~400 lines: one file per stand-in binary, and k0s's CLI is this wide.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import gzip
import io
import json
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

from . import core

API_VERSION = "k0s.k0sproject.io/v1beta1"
KIND = "ClusterConfig"
API_PORT = 6443
JOIN_PORT = 9443
ETCD_PEER_PORT = 2380
KONNECTIVITY_PORT = 8132
KUBELET_PORT = 10250
HEARTBEAT_S = 5.0
DATA_DIR = Path("/var/lib/k0s")
PKI_DIR = DATA_DIR / "pki"
ETCD_DIR = DATA_DIR / "etcd"
IMAGES_DIR = DATA_DIR / "images"
CLUSTER_STATE = ETCD_DIR / "cluster.json"
CONTROLLER_FILE = DATA_DIR / "controller.json"
KUBELET_CONF = DATA_DIR / "kubelet.conf"
WORKER_FILE = DATA_DIR / "worker.json"
RUN_DIR = Path("/run/k0s")
STATUS_FILE = RUN_DIR / "status.json"
FAULT_DIR = core.FAULT_DIR
UNIT_DIR = Path("/etc/systemd/system")
UNITS = {"controller": "k0scontroller.service", "worker": "k0sworker.service"}
BIN = "/usr/local/bin/k0s"
DEFAULT_CONFIG = "/etc/k0s/k0s.yaml"
VERSION_ANNOTATION = "io.k0sproject.version"
_USERS = {"controller": "controller-bootstrap", "worker": "kubelet-bootstrap"}


def version() -> str:
    data = core.bundled("version")
    return data.decode().strip() if data else "v0.0.0+k0s.0"


def kubelet_version(k0s_version: str) -> str:
    """What a node reports: v1.29.4+k0s.0 -> v1.29.4+k0s."""
    return re.sub(r"\+k0s\.\d+$", "+k0s", k0s_version)


# --- the upstream files ----------------------------------------------------------------------------


def write_upstream_files(out: Path, version: str) -> None:
    """The k0s binary (this zipapp, reporting `version`+k0s.0) and the image bundle, named as
    the release page names them."""
    if not re.fullmatch(r"v\d+\.\d+\.\d+(\+k0s\.\d+)?", version):
        raise ValueError(f"k0s stand-in version {version!r}: want vMAJOR.MINOR.PATCH[+k0s.N]")
    full = version if "+k0s." in version else f"{version}+k0s.0"
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    core.write_zipapp("standins.k0s:main", out / f"k0s-{full}-{arch}", files={"version": full.encode()})
    (out / f"k0s-airgap-bundle-{full}-{arch}").write_bytes(_image_bundle(full))


def _image_bundle(full_version: str) -> bytes:
    """An (empty) OCI image layout archive, uncompressed like upstream's, carrying its version."""
    index = {"schemaVersion": 2, "manifests": [], "annotations": {VERSION_ANNOTATION: full_version}}
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": json.dumps(index).encode()}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _bundle_version(path: Path) -> str | None:
    try:
        with tarfile.open(path, mode="r:") as tar:
            member = tar.extractfile("index.json")
            if member is None:
                return None
            value = json.loads(member.read()).get("annotations", {}).get(VERSION_ANNOTATION)
            return str(value) if value else None
    except (OSError, tarfile.TarError, KeyError, ValueError):
        return None


# --- small helpers ---------------------------------------------------------------------------------


def _log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f'time="{stamp}" level=info msg="{message}"', file=sys.stderr, flush=True)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None


def _is_local(ip: str) -> bool:
    """Whether `ip` is an address of this host (binding to it works only then)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((ip, 0))
        return True
    except OSError:
        return False


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def _first_address() -> str:
    """The host's first global IPv4 address: what k0s takes for etcd when peerAddress is unset."""
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "scope", "global"], capture_output=True, text=True, check=False
    ).stdout.split()
    if "inet" not in out:
        core.die("no global IPv4 address for the etcd peer address")
    return out[out.index("inet") + 1].split("/")[0]


def _hostname() -> str:
    return socket.gethostname().lower()


def _duration_s(text: str) -> float:
    """A Go duration ("1h", "90m", "1h30m", "0s", "0")."""
    if text == "0":
        return 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        core.die(f'invalid argument "{text}" for "--expiry" flag: time: invalid duration "{text}"')
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        core.die(f"{self.prog}: {message}")


# --- config and tokens -----------------------------------------------------------------------------


def load_config(path: str) -> dict[str, Any]:
    """/etc/k0s/k0s.yaml, checked: a ClusterConfig of k0s.k0sproject.io/v1beta1 whose
    spec.api.address is this host's."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        core.die(f"failed to read config file {path}: {err.strerror}")
    try:
        doc = core.load_yaml(text, path)
    except core.YamlError as err:
        core.die(f"failed to parse config: {err}")
    if not isinstance(doc, dict):
        core.die(f"{path}: the config is not a mapping")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        core.die(
            f"{path}: unsupported config: apiVersion {doc.get('apiVersion')!r}, kind {doc.get('kind')!r} "
            f"(want {API_VERSION}, {KIND})"
        )
    api = (doc.get("spec") or {}).get("api") or {}
    if not isinstance(api, dict):
        core.die(f"{path}: spec.api is not a mapping")
    address = api.get("address")
    if not address or not _is_local(str(address)):
        core.die(f"{path}: spec.api.address {address!r} is not an address of this host")
    sans = api.get("sans") or []
    if not isinstance(sans, list) or not all(isinstance(s, str) for s in sans):
        core.die(f"{path}: spec.api.sans must be a list of strings")
    return doc


def _cluster_wide(config: dict[str, Any]) -> dict[str, Any]:
    """What the HA guide says must match on every controller (storage but the per-host etcd
    peerAddress)."""
    spec = config.get("spec") or {}
    storage = json.loads(json.dumps(spec.get("storage") or {}))
    (storage.get("etcd") or {}).pop("peerAddress", None)
    return {
        "network": spec.get("network"),
        "storage": storage,
        "externalAddress": (spec.get("api") or {}).get("externalAddress"),
    }


def encode_token(server: str, ca: str, role: str, secret: str) -> str:
    user = _USERS[role]
    kubeconfig = (
        "apiVersion: v1\nclusters:\n- cluster:\n"
        f"    certificate-authority-data: {base64.b64encode(ca.encode()).decode()}\n"
        f"    server: {server}\n  name: k0s\ncontexts:\n- context:\n    cluster: k0s\n"
        f"    user: {user}\n  name: k0s\ncurrent-context: k0s\nkind: Config\npreferences: {{}}\n"
        f"users:\n- name: {user}\n  user:\n    token: {secret}\n"
    )
    return base64.b64encode(gzip.compress(kubeconfig.encode(), mtime=0)).decode()


def decode_token(path: str) -> dict[str, str]:
    """The server, CA, user and bootstrap token of a join token file."""
    try:
        text = Path(path).read_text().strip()
    except OSError as err:
        core.die(f"failed to read token file {path}: {err.strerror}")
    try:
        kubeconfig = gzip.decompress(base64.b64decode(text, validate=True)).decode()
        doc = core.load_yaml(kubeconfig, path)
        cluster = doc["clusters"][0]["cluster"]
        user = doc["users"][0]
        return {
            "server": str(cluster["server"]),
            "ca": base64.b64decode(cluster["certificate-authority-data"]).decode(),
            "user": str(user["name"]),
            "token": str(user["user"]["token"]),
        }
    except (
        binascii.Error,
        OSError,
        EOFError,
        UnicodeDecodeError,
        core.YamlError,
        KeyError,
        IndexError,
        TypeError,
    ):
        core.die(f"failed to decode join token from {path}: not a k0s token")


# --- services --------------------------------------------------------------------------------------


def _installed() -> tuple[str, str] | None:
    for role, unit in UNITS.items():
        if (UNIT_DIR / unit).exists():
            return role, unit
    return None


def _systemctl(*args: str) -> int:
    tool = shutil.which("systemctl")
    if tool is None:
        core.die("systemctl not found: k0s install and start need systemd")
    return subprocess.run([tool, *args], check=False).returncode


def _running() -> dict[str, Any] | None:
    """The running daemon's status, when its process is alive."""
    status = _read_json(STATUS_FILE)
    if status is None:
        return None
    try:
        cmdline = Path(f"/proc/{int(status['pid'])}/cmdline").read_bytes()
    except (OSError, KeyError, ValueError):
        return None
    return status if b"k0s" in cmdline else None


def install(argv: list[str]) -> int:
    if not argv or argv[0] not in UNITS:
        core.die('install: want "controller" or "worker"')
    role, rest = argv[0], argv[1:]
    p = _Parser(prog=f"k0s install {role}", allow_abbrev=False, add_help=False)
    p.add_argument("--token-file")
    p.add_argument("--kubelet-extra-args")
    p.add_argument("--data-dir", default=str(DATA_DIR))
    p.add_argument("--force", action="store_true")
    if role == "controller":
        p.add_argument("-c", "--config", default=DEFAULT_CONFIG)
        p.add_argument("--enable-worker", action="store_true")
        p.add_argument("--no-taints", action="store_true")
    opts = p.parse_args(rest)
    if os.geteuid() != 0:
        core.die("this command must be run as root!")
    if opts.data_dir != str(DATA_DIR):
        core.die(f"the stand-in keeps its data in {DATA_DIR}, not {opts.data_dir}")
    found = _installed()
    if found is not None and not opts.force:
        core.die(f"failed to install k0s service: {UNIT_DIR / found[1]} already exists (k0s reset first)")
    args = [BIN, role, f"--data-dir={opts.data_dir}"]
    if role == "controller":
        load_config(opts.config)
        args.append(f"--config={opts.config}")
        if opts.no_taints and not opts.enable_worker:
            core.die("--no-taints only makes sense with --enable-worker")
        if opts.enable_worker:
            args.append("--enable-worker=true")
        if opts.no_taints:
            args.append("--no-taints=true")
    elif not opts.token_file:
        core.die("install worker: --token-file is required (a worker joins an existing cluster)")
    if opts.token_file:
        if not Path(opts.token_file).is_file():
            core.die(f"token file {opts.token_file} does not exist")
        args.append(f"--token-file={opts.token_file}")
    if opts.kubelet_extra_args:
        args.append(f"--kubelet-extra-args={opts.kubelet_extra_args}")
    unit = (
        "[Unit]\nDescription=k0s - Zero Friction Kubernetes\nDocumentation=https://docs.k0sproject.io\n"
        f"ConditionFileIsExecutable={BIN}\nAfter=network-online.target\nWants=network-online.target\n\n"
        "[Service]\nType=notify\nStartLimitInterval=5\nStartLimitBurst=10\n"
        f"ExecStart={' '.join(args)}\n"
        "RestartSec=10\nDelegate=yes\nKillMode=process\nLimitCORE=infinity\nTasksMax=infinity\n"
        "TimeoutStartSec=0\nLimitNOFILE=999999\nRestart=always\n\n[Install]\nWantedBy=multi-user.target\n"
    )
    core.write_file(UNIT_DIR / UNITS[role], unit, 0o644)
    if _systemctl("daemon-reload") or _systemctl("enable", UNITS[role]):
        core.die(f"failed to enable {UNITS[role]}")
    return 0


def start_stop(command: str) -> int:
    found = _installed()
    if found is None:
        core.die(f"failed to {command} k0s: k0s has not been installed as a service")
    status = _systemctl(command, found[1])
    if status:
        core.die(f"failed to {command} {found[1]} (systemctl exited {status})")
    return 0


def status_cmd(argv: list[str]) -> int:
    if argv:
        core.die(f"status: unknown arguments {argv}")
    status = _running()
    if status is None:
        core.die(
            f'status: can\'t get "status" via "{RUN_DIR}/status.sock": '
            f"dial unix {RUN_DIR}/status.sock: connect: no such file or directory"
        )
    print(f"Version: {status['version']}")
    print(f"Process ID: {status['pid']}")
    print(f"Role: {status['role']}")
    print(f"Workloads: {str(status['workloads']).lower()}")
    print("SingleNode: false")
    if status["workloads"]:
        print("Kube-api probing successful: true")
    return 0


def reset(argv: list[str]) -> int:
    p = _Parser(prog="k0s reset", allow_abbrev=False, add_help=False)
    p.add_argument("-c", "--config")
    p.add_argument("--data-dir", default=str(DATA_DIR))
    p.parse_args(argv)
    if os.geteuid() != 0:
        core.die("this command must be run as root!")
    found = _installed()
    active = found is not None and _systemctl("is-active", "--quiet", found[1]) == 0
    if _running() is not None or active:
        core.die("k0s seems to be running! please stop k0s before reset.")
    if found is not None:
        _systemctl("disable", found[1])
        (UNIT_DIR / found[1]).unlink()
        _systemctl("daemon-reload")
    # the data dir may be a mount point: empty it rather than remove it
    if DATA_DIR.is_dir():
        for child in DATA_DIR.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    _log("k0s cleanup operations done.")
    print("k0s cleanup operations done. To ensure a full reset, a node reboot is recommended.")
    return 0


# --- the daemons -----------------------------------------------------------------------------------


def _daemon_parser(role: str) -> _Parser:
    p = _Parser(prog=f"k0s {role}", allow_abbrev=False, add_help=False)
    p.add_argument("--data-dir", default=str(DATA_DIR))
    p.add_argument("--token-file")
    p.add_argument("--kubelet-extra-args", default="")
    if role == "controller":
        p.add_argument("--config", "-c", default=DEFAULT_CONFIG)
        p.add_argument("--enable-worker", default="false", choices=("true", "false"))
        p.add_argument("--no-taints", default="false", choices=("true", "false"))
    return p


def _node_ip(extra_args: str, default: str) -> str:
    match = re.search(r"--node-ip=(\S+)", extra_args)
    unknown = [a for a in extra_args.split() if not a.startswith("--node-ip=")]
    if unknown:
        core.die(f"kubelet: unknown extra args {unknown} (the stand-in kubelet takes --node-ip only)")
    ip = match.group(1) if match else default
    if not _is_local(ip):
        core.die(f"kubelet: --node-ip {ip} is not an address of this host")
    return ip


def _check_images() -> None:
    """A node needs the image bundle of its own version (images.default_pull_policy Never)."""
    found = sorted(IMAGES_DIR.glob("*")) if IMAGES_DIR.is_dir() else []
    versions = {p.name: _bundle_version(p) for p in found if p.is_file()}
    if version() not in versions.values():
        core.die(
            f"no image bundle for {version()} in {IMAGES_DIR} (found: {versions or 'nothing'}); "
            "an air-gapped node cannot pull k0s's images"
        )
    _log(f"imported image bundles {sorted(versions)}")


def _kubeconfig(server: str, user: str, ca: str) -> str:
    return (
        "apiVersion: v1\nclusters:\n- cluster:\n"
        f"    certificate-authority-data: {base64.b64encode(ca.encode()).decode()}\n"
        f"    server: {server}\n  name: local\ncontexts:\n- context:\n    cluster: local\n"
        f"    namespace: default\n    user: {user}\n  name: Default\ncurrent-context: Default\n"
        f"kind: Config\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n"
        f"    client-certificate-data: {base64.b64encode(secrets.token_bytes(24)).decode()}\n"
    )


def _join(api: core.ApiClient, token: dict[str, str], role: str, ip: str, **extra: Any) -> None:
    """Join with a decoded token. The node records the token's id (the public half, as a
    kubelet's CSR names system:bootstrap:<id>) and the server it named, so a test can tell which
    minted token a join used."""
    token_id = token["token"].split(".", 1)[0]
    try:
        api.join(
            token["token"],
            role,
            _hostname(),
            ip,
            kubelet_version(version()),
            token_id=token_id,
            joined_via=token["server"],
            **extra,
        )
    except core.ApiError as err:
        core.die(f"failed to join the cluster at {api.url}: {err.message}")


def _crash_at(point: str) -> None:
    """A fault a test asked for (core.crash_at; the points: module docstring)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    core.crash_at(point, f'time="{stamp}" level=info msg="fault injected at {point}: crashing"')


def _require_token_file(path: str | None) -> None:
    """The daemon opens its --token-file at every start, joined or not (k0sctl #256: k0s failed
    to start without it); its content is read only for a join."""
    if path and not Path(path).is_file():
        core.die(f"open {path}: no such file or directory")


def _started_key(name: str) -> str:
    return f"etcd-started/{name}"


def _serve(status: dict[str, Any], heartbeat: core.ApiClient | None, held: list[socket.socket]) -> int:
    """Report ready, then heartbeat (a node) until SIGTERM."""
    core.exit_on_sigterm()
    core.write_file(STATUS_FILE, json.dumps({**status, "pid": os.getpid(), "version": version()}), 0o644)
    core.notify_ready()
    _log(f"k0s {status['role']} {version()} started")
    try:
        while True:
            if heartbeat is not None:
                with contextlib.suppress(core.ApiError):
                    heartbeat.patch_node(_hostname(), heartbeat=True)
            time.sleep(HEARTBEAT_S)
    finally:
        STATUS_FILE.unlink(missing_ok=True)
        for sock in held:
            sock.close()


def controller(argv: list[str]) -> int:
    opts = _daemon_parser("controller").parse_args(argv)
    _require_token_file(opts.token_file)
    config = load_config(opts.config)
    api_cfg = config["spec"]["api"]
    # k0s runs kube-apiserver on the host with spec.api.extraArgs; it exits on a missing policy
    core.check_audit_policy({str(k): str(v) for k, v in (api_cfg.get("extraArgs") or {}).items()})
    address = str(api_cfg["address"])
    workloads = opts.enable_worker == "true"
    ip = _node_ip(opts.kubelet_extra_args, address) if workloads else address
    if workloads:
        _check_images()
    name = _hostname()
    # k0s's default peer address is the first non-loopback address, not api.address
    etcd_cfg = (config["spec"].get("storage") or {}).get("etcd") or {}
    peer = str(etcd_cfg.get("peerAddress") or _first_address())
    peer_url = f"https://{_host(peer)}:{ETCD_PEER_PORT}"
    sans = sorted({*api_cfg.get("sans", []), address, "127.0.0.1", "localhost", "kubernetes"})
    if api_cfg.get("externalAddress"):
        sans = sorted({*sans, str(api_cfg["externalAddress"])})
    held = core.hold_ports([ETCD_PEER_PORT, KONNECTIVITY_PORT])
    if workloads:
        held += core.hold_ports([KUBELET_PORT])
    joined = _read_json(CONTROLLER_FILE)
    first = joined["first"] if joined else not opts.token_file
    if first:
        if joined is None:
            ca = secrets.token_hex(16)
            core.write_file(PKI_DIR / "ca.crt", ca)
            now = time.time()
            with core.StateFile(CLUSTER_STATE).edit() as state:
                state["seq"] = 1
                state["members"] = {name: {"name": name, "ip": address, "peer_url": peer_url, "seq": 1}}
                state["nodes"] = {
                    name: {
                        "name": name,
                        "ip": ip,
                        "role": "controller",
                        "version": kubelet_version(version()),
                        "unschedulable": False,
                        "joined_at": now,
                        "last_seen": now,
                        "seq": 1,
                        "kubelet": workloads,
                        "roles": "control-plane",
                    }
                }
        server = core.make_api_server(CLUSTER_STATE, "0.0.0.0", API_PORT)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        core.forward_port(JOIN_PORT, f"127.0.0.1:{API_PORT}")
        api_url = f"https://127.0.0.1:{API_PORT}"
        api = core.ApiClient(api_url)
        api.wait_ready(10)
        api.put_secret("k0s/cluster-wide", json.dumps(_cluster_wide(config), sort_keys=True))
    else:
        if joined is None:
            token = decode_token(opts.token_file)
            if token["user"] != _USERS["controller"]:
                core.die(f"the token in {opts.token_file} is a {token['user']} token, not a controller token")
            leader = core.ApiClient(token["server"])
            try:
                wide = json.loads(leader.get_secret("k0s/cluster-wide"))
            except core.ApiError as err:
                core.die(f"cannot reach the cluster at {token['server']}: {err.message}")
            if wide != _cluster_wide(config):
                core.die(
                    f"{opts.config}: network, storage and externalAddress must match the cluster's {wide}"
                )
            try:
                taken = any(m.get("peer_url") == peer_url for m in leader.members())
            except core.ApiError as err:
                core.die(f"cannot reach the cluster at {token['server']}: {err.message}")
            if taken:  # etcd's MemberAdd, which k0s's join API calls (upstream retries forever)
                core.die(f"failed to join etcd as {peer_url}: etcdserver: Peer URLs already exists")
            _join(
                leader,
                token,
                "controller",
                ip,
                member=True,
                peer_url=peer_url,
                kubelet=workloads,
                roles="control-plane",
            )
            core.write_file(PKI_DIR / "ca.crt", token["ca"])
            _crash_at("controller-member-added")
            host = token["server"].split("://", 1)[1].rsplit(":", 1)[0]
            api_target = f"{host.strip('[]')}:{API_PORT}"
        else:
            api_target = str(joined["api_target"])
        core.forward_port(API_PORT, api_target)
        core.forward_port(JOIN_PORT, api_target)
        api_url = f"https://127.0.0.1:{API_PORT}"
        api = core.ApiClient(api_url)
        api.wait_ready(10)
    core.write_file(
        PKI_DIR / "server.crt",
        "Certificate:\n    X509v3 Subject Alternative Name:\n        "
        + ", ".join(f"DNS:{s}" for s in sans)
        + "\n",
    )
    core.write_file(
        PKI_DIR / "admin.conf",
        _kubeconfig(f"https://localhost:{API_PORT}", "admin", (PKI_DIR / "ca.crt").read_text()),
    )
    core.write_file(ETCD_DIR / "member.json", json.dumps({"name": name, "peer_url": peer_url}))
    record = {"first": first, "address": address, "external": api_cfg.get("externalAddress")}
    if not first:
        record["api_target"] = (joined or {}).get("api_target") or api_target
    core.write_file(CONTROLLER_FILE, json.dumps(record))
    if workloads:
        core.write_file(
            KUBELET_CONF,
            _kubeconfig(f"https://{_host(address)}:{API_PORT}", name, (PKI_DIR / "ca.crt").read_text()),
        )
    with contextlib.suppress(core.ApiError):
        api.put_secret(_started_key(name), peer_url)  # etcd: a started member publishes its name
        api.put_secret(f"controlnode/{name}", "present")
        if joined is not None:  # a restart (an upgrade): the new version
            api.patch_node(name, version=kubelet_version(version()))
    status = {
        "role": "controller+worker" if workloads else "controller",
        "workloads": workloads,
        "config": opts.config,
    }
    return _serve(status, api if workloads else None, held)


def worker(argv: list[str]) -> int:
    opts = _daemon_parser("worker").parse_args(argv)
    _require_token_file(opts.token_file)
    _check_images()
    conf = _read_json(WORKER_FILE)
    if conf is None:
        if not opts.token_file:
            core.die("worker: --token-file is required to join")
        token = decode_token(opts.token_file)
        if token["user"] != _USERS["worker"]:
            core.die(f"the token in {opts.token_file} is a {token['user']} token, not a worker token")
        api = core.ApiClient(token["server"])
        host = token["server"].split("://", 1)[1].rsplit(":", 1)[0].strip("[]")
        ip = _node_ip(opts.kubelet_extra_args, _route_ip(host))
        _join(api, token, "worker", ip, kubelet=True, roles="<none>")
        core.write_file(PKI_DIR / "ca.crt", token["ca"])  # k0s writes the CA before the kubelet bootstraps
        _crash_at("worker-joined")
        held = core.hold_ports([KUBELET_PORT])
        conf = {"server": token["server"], "ip": ip}
        core.write_file(KUBELET_CONF, _kubeconfig(token["server"], f"system:node:{_hostname()}", token["ca"]))
        core.write_file(WORKER_FILE, json.dumps(conf))
    else:
        held = core.hold_ports([KUBELET_PORT])
        api = core.ApiClient(str(conf["server"]))
        with contextlib.suppress(core.ApiError):
            api.patch_node(_hostname(), version=kubelet_version(version()))
    return _serve({"role": "worker", "workloads": True}, api, held)


def _route_ip(target: str) -> str:
    """The local address this host reaches `target` from (the kubelet's default node IP)."""
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((target, API_PORT))
        return str(sock.getsockname()[0])


# --- commands that talk to the local controller ----------------------------------------------------


def _local_api(what: str) -> tuple[core.ApiClient, dict[str, Any]]:
    status = _running()
    if status is None or not str(status["role"]).startswith("controller"):
        core.die(
            f"{what}: The connection to the server localhost:{API_PORT} was refused - "
            "is k0s running as a controller on this host?"
        )
    return core.ApiClient(f"https://127.0.0.1:{API_PORT}"), status


def _call(what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except core.ApiError as err:
        if err.status == 404:
            core.die(f"Error from server (NotFound): {err.message}")
        core.die(f"{what}: {err.message}")


def token(argv: list[str]) -> int:
    if not argv or argv[0] != "create":
        core.die('token: want "token create" (list/invalidate are not in the stand-in)')
    p = _Parser(prog="k0s token create", allow_abbrev=False, add_help=False)
    p.add_argument("--role", default="worker")
    p.add_argument("--expiry", default="0s")
    p.add_argument("--wait", action="store_true")
    opts = p.parse_args(argv[1:])
    if opts.role not in _USERS:
        core.die(f'unsupported role "{opts.role}"; supported roles are "controller" and "worker"')
    ttl = _duration_s(opts.expiry)
    api, _ = _local_api("token create")
    record = _read_json(CONTROLLER_FILE) or {}
    address = record.get("external") or record.get("address")
    port = JOIN_PORT if opts.role == "controller" else API_PORT
    secret = f"{secrets.token_hex(3)}.{secrets.token_hex(8)}"
    _call("token create", api.create_token, opts.role, ttl or None, secret, allows=[opts.role])
    print(
        encode_token(
            f"https://{_host(str(address))}:{port}", (PKI_DIR / "ca.crt").read_text(), opts.role, secret
        )
    )
    return 0


def etcd(argv: list[str]) -> int:
    if not argv or argv[0] not in ("member-list", "leave"):
        core.die('etcd: want "member-list" or "leave"')
    p = _Parser(prog=f"k0s etcd {argv[0]}", allow_abbrev=False, add_help=False)
    if argv[0] == "leave":
        p.add_argument("--peer-address")
    opts = p.parse_args(argv[1:])
    api, _ = _local_api(f"etcd {argv[0]}")
    members = _call("etcd", api.members)
    if argv[0] == "member-list":
        listed = {_listed_name(api, m): m.get("peer_url", "") for m in members}
        print(json.dumps({"members": listed}, separators=(",", ":")))
        return 0
    peer = opts.peer_address or str((_read_json(CONTROLLER_FILE) or {}).get("address"))
    url = f"https://{_host(peer)}:{ETCD_PEER_PORT}"
    for member in members:
        if member.get("peer_url") == url:
            _call("etcd leave", api.remove_member, member["name"])
            _call("etcd leave", api.put_secret, _started_key(member["name"]), "")
            _log(f"Successfully removed member {member['name']} ({url}) from the cluster")
            return 0
    core.die(f"etcd leave: no member with peer address {url}")


def _listed_name(api: core.ApiClient, member: dict[str, Any]) -> str:
    """A member's name as etcd lists it: "" until the member has started (k0s's member-list maps
    name to peer URL, so an added but never started member shows as "")."""
    try:
        started = api.get_secret(_started_key(str(member["name"]))) == member.get("peer_url")
    except core.ApiError:
        started = False
    return str(member["name"]) if started else ""


def _age(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 120:
        return f"{s}s"
    return f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


def kubectl(argv: list[str]) -> int:
    p = _Parser(prog="kubectl", allow_abbrev=False, add_help=False)
    verbs = ("get", "drain", "cordon", "uncordon", "delete", "label", "taint", *core.WRITE_VERBS)
    p.add_argument("verb", choices=verbs)
    p.add_argument("args", nargs="*")
    p.add_argument("-f", "--filename")  # create/replace: a ConfigMap (core.kubectl_configmaps)
    p.add_argument("-n", "--namespace")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-o", "--output", choices=("wide", "json"))
    p.add_argument("--no-headers", action="store_true")
    p.add_argument("--raw")
    p.add_argument("--ignore-daemonsets", action="store_true")
    p.add_argument("--delete-emptydir-data", action="store_true")
    p.add_argument("--ignore-not-found", action="store_true")
    p.add_argument("--force", action="store_true")
    p.add_argument("--timeout")
    opts = p.parse_args(argv)
    api, _ = _local_api("kubectl")
    cm_args = [a for part in opts.args for a in part.split("/", 1)]
    if core.is_configmap_command(opts.verb, cm_args):
        return core.kubectl_configmaps(
            api, opts.verb, cm_args, namespace=opts.namespace, filename=opts.filename, output=opts.output
        )
    if opts.verb in ("label", "taint"):
        # k0s kubectl is upstream kubectl: the label and taint rules are the kubeadm stand-in's
        from .kubernetes import kubectl_label, kubectl_taint

        def get(name: str) -> dict[str, Any]:
            node: dict[str, Any] = _call(opts.verb, api.get_node, name)
            if not node.get("kubelet", True):  # a controller without --enable-worker is no node
                core.die(f'Error from server (NotFound): nodes "{name}" not found')
            return node

        verb = kubectl_label if opts.verb == "label" else kubectl_taint
        return verb(opts.args, opts.overwrite, get, lambda n, **f: _call(opts.verb, api.patch_node, n, **f))
    if opts.verb == "get" and opts.raw is not None:
        if opts.raw not in ("/readyz", "/livez", "/healthz") or opts.args:
            core.die(f"error: the stand-in serves only /readyz, /livez and /healthz, not {opts.raw}")
        if not api.healthy():
            core.die("Error from server (InternalError): the server is not ready")
        print("ok")
        return 0
    if opts.verb == "get":
        if opts.args not in (["nodes"], ["node"], ["no"]):
            core.die(f"error: the stand-in kubectl gets only nodes, not {' '.join(opts.args) or 'nothing'}")
        nodes = [n for n in _call("get nodes", api.nodes) if n.get("kubelet", True)]
        rows = []
        for n in nodes:
            status = ("Ready" if n.get("ready") else "NotReady") + (
                ",SchedulingDisabled" if n.get("unschedulable") else ""
            )
            row = [
                n["name"],
                status,
                n.get("roles", "<none>"),
                _age(time.time() - n["joined_at"]),
                n["version"],
            ]
            if opts.output == "wide":
                row += [n["ip"], "<none>", "Stand-in Linux", platform.release(), "containerd://1.7.15"]
            rows.append(row)
        headers = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
        if opts.output == "wide":
            headers += ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
        table = rows if opts.no_headers else [headers, *rows]
        if not rows:
            print("No resources found", file=sys.stderr)
        widths = [max(len(r[i]) for r in table) for i in range(len(headers))] if table else []
        for r in table if rows else []:
            print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        return 0
    if opts.verb == "delete":
        if len(opts.args) != 2:
            core.die("error: the stand-in deletes one object: delete node|controlnode NAME")
        kind, name = opts.args
        if kind in ("node", "nodes", "no"):
            node = _call("delete node", api.get_node, name)
            if not node.get("kubelet", True):
                core.die(f'Error from server (NotFound): nodes "{name}" not found')
            _call("delete node", api.delete_node, name)
            print(f'node "{name}" deleted')
            return 0
        if kind in ("controlnode.autopilot.k0sproject.io", "controlnode", "controlnodes"):
            try:
                present = api.get_secret(f"controlnode/{name}") == "present"
            except core.ApiError:
                present = False
            if not present:
                if opts.ignore_not_found:
                    return 0
                core.die(
                    f'Error from server (NotFound): controlnodes.autopilot.k0sproject.io "{name}" not found'
                )
            _call("delete controlnode", api.put_secret, f"controlnode/{name}", "deleted")
            print(f'controlnode.autopilot.k0sproject.io "{name}" deleted')
            return 0
        core.die(f"error: the stand-in kubectl cannot delete {kind}")
    if len(opts.args) != 1:
        core.die(f"error: {opts.verb} takes one node name")
    name = opts.args[0]
    node = _call(opts.verb, api.get_node, name)
    if not node.get("kubelet", True):
        core.die(f'Error from server (NotFound): nodes "{name}" not found')
    if opts.verb == "drain":
        if not opts.ignore_daemonsets:
            core.die(f"error: unable to drain node {name!r}: cannot delete DaemonSet-managed Pods "
                     "(use --ignore-daemonsets to ignore): kube-system/kube-router")  # fmt: skip
        if not opts.delete_emptydir_data:
            core.die(f"error: unable to drain node {name!r}: cannot delete Pods with local storage "
                     "(use --delete-emptydir-data to override): kube-system/metrics-server")  # fmt: skip
        _call("drain", api.patch_node, name, unschedulable=True)
        print(f"node/{name} cordoned")
        _call("drain", api.patch_node, name, evicted=True)
        print(f"node/{name} drained")
        return 0
    unschedulable = opts.verb == "cordon"
    _call(opts.verb, api.patch_node, name, unschedulable=unschedulable, evicted=False)
    print(f"node/{name} {'cordoned' if unschedulable else 'uncordoned'}")
    return 0


def kubeconfig(argv: list[str]) -> int:
    if argv != ["admin"]:
        core.die('kubeconfig: the stand-in has "kubeconfig admin" only')
    try:
        text = (PKI_DIR / "admin.conf").read_text()
    except OSError:
        core.die(
            f"failed to read admin config: {PKI_DIR / 'admin.conf'}: no such file (is this a controller?)"
        )
    record = _read_json(CONTROLLER_FILE) or {}
    address = record.get("external") or record.get("address")
    print(text.replace(f"https://localhost:{API_PORT}", f"https://{_host(str(address))}:{API_PORT}"), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        core.die("missing command (install, start, stop, status, token, etcd, reset, kubectl, ...)")
    command, rest = args[0], args[1:]
    if command == "version":
        print(version())
        return 0
    handlers = {
        "install": install,
        "controller": controller,
        "worker": worker,
        "status": status_cmd,
        "token": token,
        "etcd": etcd,
        "reset": reset,
        "kubectl": kubectl,
        "kc": kubectl,
        "kubeconfig": kubeconfig,
    }
    if command in ("start", "stop"):
        if rest:
            core.die(f"{command}: unknown arguments {rest}")
        return start_stop(command)
    handler = handlers.get(command)
    if handler is None:
        core.die(f'unknown command "{command}" for "k0s"')
    return handler(rest)
