"""The kubeadm stand-ins: kubeadm, kubelet, kubectl and the container runtime they need
(containerd, ctr, crictl, runc), one zipapp each (entry "standins.kubernetes:main", which
dispatches on the program name). Their units (kubelet.service with kubeadm's 10-kubeadm.conf
drop-in, containerd.service) run under the generic systemctl stand-in (systemd.py).

    kubeadm version [-o short]
    kubeadm init --config F [--upload-certs]
    kubeadm join --config F
    kubeadm token create [--ttl D] [--kubeconfig F]
    kubeadm init phase upload-certs --upload-certs [--config F] [--certificate-key K]
    kubeadm reset -f
    kubeadm upgrade apply -y vX.Y.Z | kubeadm upgrade node
    kubeadm init phase certs apiserver --config F | init phase upload-config kubeadm --config F |
            certs check-expiration | certs renew all      (kubeadm_certs.py: `sealer cert`)
    kubelet [flags]                  run by kubelet.service + 10-kubeadm.conf (as upstream)
    kubectl [--kubeconfig F] get nodes [-o wide|name] [--no-headers] | drain NODE
            --ignore-daemonsets [--delete-emptydir-data] [--force] [--timeout D] | cordon NODE |
            uncordon NODE | delete node NODE | label node NODE k=v... k-... [--overwrite] |
            taint node NODE key[=value]:Effect... key[:Effect]-... [--overwrite] | version --client |
            get configmap NAME [-n NS] [-o json] | create -f FILE | replace -f FILE (ConfigMaps) |
            get --raw /readyz [--server URL]
    containerd [--config F]          Type=notify daemon on /run/containerd/containerd.sock; an
                                     image kubeadm's preflight or the kubelet misses is pulled
                                     through the CRI registry config_path's <registry>/hosts.toml
                                     (each host, then server; ca, skip_verify, header): the
                                     manifest GET over HTTPS must answer 200 (pull_image)
    ctr [-n NS] images import FILE | images ls [-q] ; crictl images ; runc --version

State where the real tools keep it (all private on the test hosts):
    /etc/kubernetes/{admin,super-admin,kubelet,controller-manager,scheduler}.conf, pki/ca.crt and
        ca.key (a real self-signed CA made with openssl, so the join hash is real), pki/apiserver.crt
        (real, with the SANs), manifests/{etcd,kube-apiserver,kube-controller-manager,kube-scheduler}.yaml
    /var/lib/kubelet/config.yaml, kubeadm-flags.env     what kubeadm writes for the kubelet
    /var/lib/etcd/member/standin-state.json   the cluster (core.serve_api's state: nodes, etcd
        members, bootstrap tokens, the kube-system Secrets/ConfigMaps kubeadm uses), on the
        master that ran `kubeadm init`
    /run/standin-kubelet/pods/<pod>.json      the static pods the kubelet runs ("containers")
    (a node's "labels" and "taints" are kept on it in the cluster state, as Node metadata.labels and
    spec.taints; kubeadm's mark-control-plane puts node-role.kubernetes.io/control-plane:NoSchedule)
    /run/containerd/standin-images.json       containerd's images by namespace

How it hangs together: `kubeadm init` checks like kubeadm's preflight (root, ports, files,
ip_forward, containerd, every image of the version imported), writes the PKI, kubeconfigs,
kubelet config and static pod manifests, restarts the kubelet through systemctl and waits for the
API. The kubelet runs each static pod as a detached process (so, as containers, they outlive a
kubelet restart): etcd and the two controllers hold their ports; the kube-apiserver serves the
API on every master (core.make_api_proxy) from its local etcd; the etcd created with
--initial-cluster-state=new keeps the data (core.serve_api on 2379), the others relay to it (one
shared state; real stacked etcd replicates). Clients check what TLS would: the name they dial must
be in the answering apiserver's certificate SANs (GET /tls-sans); a TLS client (haproxy's health
checks) gets a real TLS session with that certificate.
Joins check like kubeadm's token discovery: the token's Secret, the CA's public key hash against
caCertHashes, then for a control plane the uploaded certificates, decrypted with the certificate
key (2 h lifetime, a wrong key fails the MAC). The kubelet registers with the bootstrap token
(403 when unknown or expired). `kubeadm reset` removes its own etcd member through the API while
the cluster is reachable, stops the kubelet, kills the static pods and removes kubeadm's files.

Deliberate differences: no TLS (names are checked against SANs instead), no pods but static ones,
containerd keeps its images under /run (/var/lib/containerd is not private on the test hosts),
kubeconfigs carry a token instead of a client certificate, drain cordons and then, having no pods
to evict, records `evicted: true` on the Node (a Patched event, so a cordon is told from a drain),
the kubelet adds a control plane's etcd member as it registers (kubeadm's control-plane-join phase
does, right after).

Fault points, so a test can break init or join half-way for real: when the file
/run/standin-fault/<point> exists on the host as kubeadm reaches <point>, kubeadm removes it and
kills itself with SIGKILL (as an OOM kill or a lost session would: no cleanup, the kubelet and the
static pods it started keep running), having written what the real kubeadm has by then.
    kubeadm-init-control-plane-up   init: PKI, kubeconfigs, kubelet config and static pod
                                    manifests written, the kubelet started, the API answering;
                                    nothing uploaded yet (no kubeadm-config, no kubelet token)
    kubeadm-join-kubelet-config     join: (a control plane: certificates downloaded, admin.conf,
                                    static pod manifests) pki/ca.crt, bootstrap-kubelet.conf with
                                    the token, the kubelet's config.yaml and flags written; the
                                    kubelet not yet started
    kubeadm-join-registered         join: the kubelet did its TLS bootstrap (kubelet.conf) and
                                    registered its Node (Ready: it heartbeats), a control plane
                                    with its etcd member; bootstrap-kubelet.conf still there, a
                                    control plane not yet marked
And as upstream, `kubeadm join` refuses a node name whose Node is still Ready in the cluster (once
its kubelet stops, a Node stays Ready for core.NODE_GRACE_S, 40 s, unless someone deletes it).

Over the house ~400 lines: eight upstream programs that must agree on files and state.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from . import core

ENDPOINT = "apiserver.cluster.local"
API_PORT = 6443
CRI_SOCKET = "/run/containerd/containerd.sock"
IMAGES_STATE = "/run/containerd/standin-images.json"
K8S_NS = "k8s.io"
KUBE_DIR = Path("/etc/kubernetes")
PKI = KUBE_DIR / "pki"
MANIFESTS = KUBE_DIR / "manifests"
ADMIN_CONF = KUBE_DIR / "admin.conf"
KUBELET_CONF = KUBE_DIR / "kubelet.conf"
BOOTSTRAP_CONF = KUBE_DIR / "bootstrap-kubelet.conf"
CONFS = ("admin.conf", "super-admin.conf", "kubelet.conf", "controller-manager.conf", "scheduler.conf")
KUBELET_DIR = Path("/var/lib/kubelet")
KUBELET_CONFIG = KUBELET_DIR / "config.yaml"
FLAGS_ENV = KUBELET_DIR / "kubeadm-flags.env"
PODS_DIR = Path("/run/standin-kubelet/pods")
STATE_NAME = "member/standin-state.json"
FAULT_DIR = core.FAULT_DIR
CERTS_TTL_S = 7200.0  # kubeadm deletes the uploaded certificates after two hours
TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
KEY_RE = re.compile(r"^[a-f0-9]{64}$")
KUBEADM_VERSIONS = ("kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta4")
# kubeadm's constants per minor version: etcd, CoreDNS and pause image tags.
ADDONS = {
    29: ("3.5.12-0", "v1.11.1", "3.9"),
    30: ("3.5.15-0", "v1.11.3", "3.9"),
    31: ("3.5.15-0", "v1.11.3", "3.10"),
    32: ("3.5.16-0", "v1.11.3", "3.10"),
}
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
CONTROL_PLANE_PORTS = (6443, 10259, 10257, 10250, 2379, 2380)
POD_PORTS = {"etcd": (2379, 2380), "kube-controller-manager": (10257,), "kube-scheduler": (10259,)}
# The top-level fields of each kind (v1beta3 and v1beta4 together): kubeadm decodes strictly.
FIELDS = {
    "InitConfiguration": {
        "apiVersion", "kind", "bootstrapTokens", "nodeRegistration", "localAPIEndpoint",
        "certificateKey", "skipPhases", "patches", "timeouts", "dryRun",
    },
    "ClusterConfiguration": {
        "apiVersion", "kind", "etcd", "networking", "kubernetesVersion", "controlPlaneEndpoint",
        "apiServer", "controllerManager", "scheduler", "dns", "proxy", "certificatesDir",
        "imageRepository", "featureGates", "clusterName", "encryptionAlgorithm",
        "certificateValidityPeriod", "caCertificateValidityPeriod",
    },
    "JoinConfiguration": {
        "apiVersion", "kind", "nodeRegistration", "caCertPath", "discovery", "controlPlane",
        "skipPhases", "patches", "timeouts", "dryRun",
    },
}  # fmt: skip


def version() -> str:
    data = core.bundled("version")
    return data.decode() if data else "v1.30.14"


def _parse_version(text: str) -> tuple[int, int, int]:
    match = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", str(text))
    if match is None:
        core.die(f'couldn\'t parse Kubernetes version "{text}"')
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def images_for(kube_version: str, repository: str = "registry.k8s.io") -> list[str]:
    """`kubeadm config images list` of this version."""
    _, minor, _ = _parse_version(kube_version)
    etcd, coredns, pause = ADDONS.get(minor, ADDONS[max(ADDONS)])
    out = [f"{repository}/{name}:{kube_version}" for name in
           ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")]  # fmt: skip
    return [*out, f"{repository}/coredns/coredns:{coredns}", f"{repository}/pause:{pause}",
            f"{repository}/etcd:{etcd}"]  # fmt: skip


# --- the upstream files --------------------------------------------------------------------------


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _tar_gz(out: Path, members: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tar.addfile(info, io.BytesIO(data))
    out.write_bytes(buf.getvalue())


def images_tarball(images: list[str]) -> bytes:
    """An OCI archive as `ctr images export` writes it: oci-layout, index.json naming each image
    (io.containerd.image.name), one tiny manifest blob each."""
    buf = io.BytesIO()
    manifests, blobs = [], {}
    for name in images:
        body = json.dumps({"schemaVersion": 2, "config": {}, "layers": [], "stand-in": name}).encode()
        digest = hashlib.sha256(body).hexdigest()
        blobs[f"blobs/sha256/{digest}"] = body
        manifests.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": f"sha256:{digest}",
                "size": len(body),
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                },
            }
        )
    members = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps({"schemaVersion": 2, "manifests": manifests}).encode(),
        **blobs,
    }
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_upstream_files(out: Path, version: str) -> None:
    """The files basefs/kubernetes/upstream.yaml names, as stand-ins reporting `version`."""
    files = {"version": version.encode()}
    for name in ("kubeadm", "kubelet", "kubectl"):
        core.write_zipapp("standins.kubernetes:main", out / name, files=files)
    arch = _arch()
    scratch = out / ".standin-build"
    scratch.mkdir(exist_ok=True)

    def app(name: str) -> bytes:
        return core.write_zipapp("standins.kubernetes:main", scratch / name, files=files).read_bytes()

    _tar_gz(
        out / f"containerd-1.7.22-linux-{arch}.tar.gz",
        {f"bin/{n}": app(n) for n in ("containerd", "ctr", "containerd-shim-runc-v2")},
    )
    _tar_gz(out / f"crictl-v1.30.1-linux-{arch}.tar.gz", {"crictl": app("crictl")})
    (out / f"runc.{arch}").write_bytes(app("runc"))
    (out / f"runc.{arch}").chmod(0o755)
    (out / f"kube-images-{version}.tar").write_bytes(images_tarball(images_for(version)))
    shutil.rmtree(scratch)


# --- small pieces --------------------------------------------------------------------------------


def fault(point: str) -> None:
    """Die here like a crash when the test asked for it (core.crash_at; the points: docstring)."""
    core.crash_at(point)


def _log(message: str) -> None:
    print(message, flush=True)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in (
        "true",
        "false",
        "null",
        "yes",
        "no",
        "on",
        "off",
        "~",
    ):
        return text  # as kubeadm writes kubeconfigs (server: https://...), no quotes
    return json.dumps(text)


_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./:@+=-]*")


def dump_yaml(value: Any, indent: int = 0) -> str:
    """Block YAML that core.load_yaml reads back (strings double-quoted, no nested lists)."""
    return "".join(line + "\n" for line in _yaml_lines(value, indent))


def _yaml_lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            k = key if re.match(r"^[A-Za-z0-9_./-]+$", str(key)) else json.dumps(str(key))
            if isinstance(item, dict | list) and item:
                out.append(f"{pad}{k}:")
                out += _yaml_lines(item, indent + 2)
            else:
                empty = "{}" if isinstance(item, dict) else "[]" if isinstance(item, list) else _scalar(item)
                out.append(f"{pad}{k}: {empty}")
        return out
    for item in value:
        if isinstance(item, dict) and item:
            sub = _yaml_lines(item, indent + 2)
            out.append(f"{pad}- {sub[0][indent + 2 :]}")
            out += sub[1:]
        else:
            out.append(f"{pad}- {_scalar(item)}")
    return out


def load_documents(text: str, path: str) -> list[dict[str, Any]]:
    """A multi-document YAML file (split on "---" lines), each a mapping."""
    docs: list[dict[str, Any]] = []
    chunks = re.split(r"^---[ \t]*$", text, flags=re.MULTILINE)
    for i, chunk in enumerate(chunks, 1):
        try:
            doc = core.load_yaml(chunk, f"{path} (document {i})")
        except core.YamlError as err:
            core.die(f"error unmarshaling {path}: {err}")
        if doc is None:
            continue
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
            core.die(f"{path}: document {i}: 'Kind' or 'apiVersion' is missing")
        docs.append(doc)
    return docs


def _ttl_s(text: str) -> float | None:
    """A Go duration as kubeadm's --ttl takes it ("15m", "24h0m0s", "0" = never)."""
    if text in ("0", "0s"):
        return None
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        core.die(f'invalid argument "{text}" for "--ttl" flag: time: invalid duration "{text}"')
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def _hostname() -> str:
    return socket.gethostname().lower()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        core.die(f"openssl {args[0]}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def ca_hash(pem: str) -> str:
    """sha256 of the CA's DER SubjectPublicKeyInfo, as kubeadm pins it."""
    der = _openssl("x509", "-pubkey", "-noout", stdin=pem.encode())
    der = _openssl("pkey", "-pubin", "-outform", "der", stdin=der)
    return "sha256:" + hashlib.sha256(der).hexdigest()


# --- containerd, ctr, crictl ---------------------------------------------------------------------


def _cri_call(request: dict[str, Any], address: str = CRI_SOCKET) -> dict[str, Any]:
    """One JSON request to containerd over its socket; dies the way ctr does when it is down."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(address)
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as err:
        core.die(
            f'failed to dial "{address}": connection error: desc = "transport: Error while dialing: '
            f'dial unix {address}: connect: {err.strerror or err}"'
        )
    reply: dict[str, Any] = json.loads(data or b"{}")
    if "error" in reply:
        core.die(str(reply["error"]))
    return reply


def _cri_up(address: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(address)
    except OSError:
        return False
    return True


def cri_images(namespace: str = K8S_NS) -> set[str]:
    return set(_cri_call({"op": "list", "namespace": namespace}).get("images", []))


def ensure_images(images: list[str], namespace: str = K8S_NS) -> set[str]:
    """What containerd holds of `images` after it pulled the missing ones (as kubeadm's preflight
    and the kubelet have it pull); a pull that fails is logged, the image stays missing."""
    present = cri_images(namespace)
    missing = [i for i in images if i not in present]
    for image in missing:
        reply = _cri_call({"op": "pull", "namespace": namespace, "image": image})
        if not reply.get("ok"):
            _log(f'E "PullImage from image service failed" err="{reply.get("reason")}" image="{image}"')
    return cri_images(namespace) if missing else present


MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
))  # fmt: skip


def _image_parts(image: str) -> tuple[str, str, str]:
    """(registry host, repository, tag) of a reference, as containerd resolves it."""
    first, _, rest = image.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        first, rest = "docker.io", image if "/" in image else f"library/{image}"
    repo, _, tag = rest.rpartition(":") if ":" in rest.rsplit("/", 1)[-1] else (rest, "", "latest")
    return first, repo, tag


def pull_image(image: str, certs_dir: str | None) -> str | None:
    """containerd's pull of `image`'s manifest through the registry hosts of its hosts.toml
    (`certs_dir`: the CRI plugin's registry.config_path): each [host."URL"] in order, then
    `server`, each with its `ca`, `skip_verify` and `header`. None when one answered 200, else
    why not. No hosts.toml for the registry: the host is air-gapped, nothing to ask."""
    import ssl
    import tomllib
    import urllib.error
    import urllib.request

    registry, repo, tag = _image_parts(image)
    hosts_file = Path(certs_dir or "/nonexistent") / registry / "hosts.toml"
    if not hosts_file.is_file():
        return f"failed to pull {image}: air-gapped, and no {hosts_file}"
    conf = tomllib.loads(hosts_file.read_text())
    endpoints = list((conf.get("host") or {}).items())
    if conf.get("server"):
        endpoints.append((str(conf["server"]), conf))
    errors = []
    for url, spec in endpoints:
        context = None
        if url.startswith("https://"):
            ca = spec.get("ca")
            context = ssl.create_default_context(cafile=ca[0] if isinstance(ca, list) else ca)
            if spec.get("skip_verify"):
                context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        headers = {
            str(k): ", ".join(v) if isinstance(v, list) else str(v)
            for k, v in (spec.get("header") or {}).items()
        }
        request = urllib.request.Request(
            f"{url.rstrip('/')}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES, **headers}
        )
        https = urllib.request.HTTPSHandler(context=context)
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({}), https).open(
                request, timeout=5
            ) as reply:
                if reply.status == 200:
                    return None
        except (urllib.error.URLError, OSError, ValueError) as err:
            errors.append(f"{url}: {err}")
    return f"failed to pull {image}: " + ("; ".join(errors) or f"no host in {hosts_file}")


def containerd_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="containerd", allow_abbrev=False)
    p.add_argument("-c", "--config", default="/etc/containerd/config.toml")
    p.add_argument("-v", "--version", action="store_true")
    opts = p.parse_args(argv)
    if opts.version:
        print("containerd github.com/containerd/containerd v1.7.22 (stand-in)")
        return 0
    import tomllib

    config = Path(opts.config)
    if config.is_file():
        try:
            settings = tomllib.loads(config.read_text())
        except tomllib.TOMLDecodeError as err:
            core.die(f"failed to load TOML from {config}: {err}")
        if settings.get("version") not in (2, 3):
            core.die(f"{config}: unsupported config version {settings.get('version')!r} (want 2 or 3)")
    cri_plugin = (
        (settings if config.is_file() else {}).get("plugins", {}).get("io.containerd.grpc.v1.cri", {})
    )
    certs_dir = (cri_plugin.get("registry") or {}).get("config_path")
    core.exit_on_sigterm()
    Path(CRI_SOCKET).parent.mkdir(parents=True, exist_ok=True)
    Path(CRI_SOCKET).unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(CRI_SOCKET)
    server.listen(16)
    state = core.StateFile(IMAGES_STATE)

    def handle(conn: socket.socket) -> None:
        with conn:
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            request = json.loads(data)
            ns = str(request.get("namespace") or "default")
            reply: dict[str, Any]
            if request.get("op") == "import":
                with state.edit() as images:
                    known = images.setdefault(ns, [])
                    known += [i for i in request.get("images", []) if i not in known]
                reply = {"ok": True}
            elif request.get("op") == "pull":
                image = str(request.get("image"))
                reason = pull_image(image, certs_dir)
                if reason is None:
                    with state.edit() as images:
                        known = images.setdefault(ns, [])
                        known += [image] if image not in known else []
                    _log(f"pulled {image}")
                reply = {"ok": reason is None, "reason": reason}
            elif request.get("op") == "list":
                reply = {"images": sorted(state.read().get(ns, []))}
            else:
                reply = {"error": f"unknown request {request.get('op')!r}"}
            conn.sendall(json.dumps(reply).encode() + b"\n")

    core.notify_ready("serving")
    _log(f"containerd successfully booted; serving on {CRI_SOCKET}")
    try:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
    finally:
        Path(CRI_SOCKET).unlink(missing_ok=True)


def _archive_images(path: Path) -> list[str]:
    """The image names of an OCI archive (index.json) or a docker-save one (manifest.json)."""
    try:
        with tarfile.open(path) as tar:
            names = tar.getnames()
            if "index.json" in names:
                index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
                found = [m.get("annotations", {}).get("io.containerd.image.name") for m in index["manifests"]]
                return [n for n in found if n]
            if "manifest.json" in names:
                manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
                return [t for m in manifest for t in m.get("RepoTags") or []]
    except (OSError, tarfile.TarError, ValueError, KeyError) as err:
        core.die(f"ctr: {path}: unrecognized image format: {err}")
    core.die(f"ctr: {path}: unrecognized image format (no index.json or manifest.json)")


def ctr_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ctr", allow_abbrev=False)
    p.add_argument("-n", "--namespace", default=os.environ.get("CONTAINERD_NAMESPACE", "default"))
    p.add_argument("-a", "--address", default=CRI_SOCKET)
    p.add_argument("words", nargs="+")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--all-platforms", action="store_true")
    opts = p.parse_args(argv)
    words = opts.words
    if words[:1] == ["version"]:
        print("Client:\n  Version:  v1.7.22 (stand-in)")
        return 0
    if words[:1] not in (["images"], ["image"], ["i"]) or len(words) < 2:
        core.die(f"ctr: the stand-in knows `images import FILE` and `images ls`, not {' '.join(words)!r}")
    if words[1] == "import":
        if len(words) != 3:
            core.die("ctr: images import takes exactly one archive")
        names = _archive_images(Path(words[2]))
        _cri_call({"op": "import", "namespace": opts.namespace, "images": names}, opts.address)
        for name in names:
            print(f"unpacking {name} (sha256:{hashlib.sha256(name.encode()).hexdigest()})...done")
        return 0
    if words[1] in ("ls", "list"):
        for name in sorted(_cri_call({"op": "list", "namespace": opts.namespace}, opts.address)["images"]):
            print(name if opts.quiet else f"{name}\tapplication/vnd.oci.image.manifest.v1+json")
        return 0
    core.die(f"ctr: unknown images command {words[1]!r}")


def crictl_main(argv: list[str]) -> int:
    if argv[:1] == ["images"]:
        print("IMAGE                                     TAG                 IMAGE ID            SIZE")
        for name in sorted(cri_images()):
            repo, _, tag = name.rpartition(":")
            print(f"{repo:<41} {tag:<19} {hashlib.sha256(name.encode()).hexdigest()[:13]}       1kB")
        return 0
    if argv[:1] in (["version"], ["--version"]):
        print("crictl version v1.30.1 (stand-in)")
        return 0
    core.die(f"crictl: the stand-in knows `images` and `version`, not {' '.join(argv)!r}")


# --- kubeconfigs, secrets and the API ------------------------------------------------------------


def kubeconfig(server: str, ca_pem: str, user: str, token: str) -> str:
    cluster = {
        "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode(),
        "server": server,
    }
    return dump_yaml(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"cluster": cluster, "name": "kubernetes"}],
            "contexts": [{"context": {"cluster": "kubernetes", "user": user}, "name": f"{user}@kubernetes"}],
            "current-context": f"{user}@kubernetes",
            "preferences": {},
            "users": [{"name": user, "user": {"token": token}}],
        }
    )


def read_kubeconfig(path: Path) -> tuple[str, str, str]:
    """(server, CA PEM, token) of a kubeconfig, as client-go loads it (first cluster and user)."""
    try:
        data = core.load_yaml(path.read_text(), str(path))
    except OSError as err:
        core.die(f'error loading config file "{path}": {err.strerror}')
    except core.YamlError as err:
        core.die(f'error loading config file "{path}": {err}')
    try:
        cluster = data["clusters"][0]["cluster"]
        user = data["users"][0]["user"]
        return (
            str(cluster["server"]),
            base64.b64decode(cluster["certificate-authority-data"]).decode(),
            str(user["token"]),
        )
    except (TypeError, KeyError, IndexError, ValueError):
        core.die(f'error loading config file "{path}": not a kubeconfig with a cluster and a user')


def api(server: str) -> core.ApiClient:
    """A client of `server` that refuses, as TLS verification would, a name or address the
    serving apiserver's certificate does not carry."""
    client = core.ApiClient(server)
    host = client.base.removeprefix("http://").rsplit(":", 1)[0]
    try:
        address = socket.gethostbyname(host)
    except OSError as err:
        core.die(f"dial tcp: lookup {host}: {err}")
    try:
        sans = client.serving_sans()  # the certificate of whichever apiserver answers (a balancer's pick)
    except core.ApiError as err:
        if err.status == 0:
            core.die(
                f"The connection to the server {host}:{API_PORT} was refused - did you specify the right host or port?"
            )
        core.die(f"tls: handshake with the apiserver at {address} failed: {err.message}")
    if host not in sans:
        core.die(
            f"tls: failed to verify certificate: x509: certificate is valid for {', '.join(sans)}, not {host}"
        )
    return client


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except core.ApiError as err:
        if err.status == 0:
            core.die(err.message)
        if err.status == 404:
            core.die(f"Error from server (NotFound): {err.message}")
        core.die(f"Error from server: {err.message}")


def _keystream(key: bytes, n: int) -> bytes:
    return b"".join(hashlib.sha256(key + i.to_bytes(8, "big")).digest() for i in range(n // 32 + 1))[:n]


def seal(key_hex: str, payload: dict[str, str]) -> str:
    """The kubeadm-certs Secret: the control-plane certificates encrypted with the certificate
    key (a SHA-256 keystream here; AES-GCM upstream) and authenticated, so a wrong key fails."""
    key = bytes.fromhex(key_hex)
    plain = json.dumps(payload).encode()
    cipher = bytes(a ^ b for a, b in zip(plain, _keystream(key, len(plain)), strict=True))
    mac = hmac.new(key, cipher, hashlib.sha256).hexdigest()
    key_id = hashlib.sha256(key).hexdigest()[:16]
    return json.dumps({"data": base64.b64encode(cipher).decode(), "mac": mac, "key_id": key_id,
                       "uploaded_at": time.time()})  # fmt: skip


def unseal(key_hex: str, sealed: str) -> dict[str, str]:
    key = bytes.fromhex(key_hex)
    box = json.loads(sealed)
    cipher = base64.b64decode(box["data"])
    if not hmac.compare_digest(hmac.new(key, cipher, hashlib.sha256).hexdigest(), box["mac"]):
        core.die("error downloading certs: error decrypting data: cipher: message authentication failed")
    plain = bytes(a ^ b for a, b in zip(cipher, _keystream(key, len(cipher)), strict=True))
    result: dict[str, str] = json.loads(plain)
    return result


# --- the kubelet ---------------------------------------------------------------------------------


KUBELET_FLAGS = (
    "bootstrap-kubeconfig", "kubeconfig", "config", "container-runtime-endpoint", "node-ip",
    "hostname-override", "node-labels", "register-with-taints", "pod-infra-container-image", "v",
)  # fmt: skip


def _kubelet_args(argv: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for arg in argv:
        name, eq, value = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or not eq:
            core.die(f"unknown flag or a flag without =value: {arg!r} (the stand-in takes --flag=value)")
        if name not in KUBELET_FLAGS:
            core.die(f"unknown flag: --{name}")
        out[name] = value
    return out


def _manifest(path: Path) -> dict[str, Any]:
    pod = core.load_yaml(path.read_text(), str(path))
    try:
        container = pod["spec"]["containers"][0]
        mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts") or []}
        return {
            "name": pod["metadata"]["name"],
            "image": container["image"],
            "command": list(container["command"]),
            # the container's view of the host: (mountPath, hostPath, type) of each hostPath volume
            "volumes": [
                (mounts[v["name"]], v["hostPath"]["path"], v["hostPath"].get("type", ""))
                for v in pod["spec"].get("volumes") or []
                if v["name"] in mounts
            ],
        }
    except (TypeError, KeyError, IndexError):
        core.die(f"{path}: not a static Pod manifest")


def _flag(command: list[str], name: str) -> str | None:
    for arg in command:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def pod_alive(record: dict[str, Any]) -> bool:
    pid = record.get("pid")
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0] != "Z" and int(fields[19]) == record.get("start_time")


def kill_pods() -> list[str]:
    """Stop every static pod "container" (kubeadm reset removes them through the CRI)."""
    killed = []
    for path in sorted(PODS_DIR.glob("*.json")):
        record = json.loads(path.read_text())
        if pod_alive(record):
            os.killpg(int(record["pid"]), signal.SIGTERM)
            for _ in range(100):
                if not pod_alive(record):
                    break
                time.sleep(0.05)
            if pod_alive(record):
                os.killpg(int(record["pid"]), signal.SIGKILL)
            killed.append(record["name"])
        path.unlink()
    return killed


def _start_pod(manifest: Path, pod: dict[str, Any], digest: str) -> None:
    PODS_DIR.mkdir(parents=True, exist_ok=True)
    log = open(PODS_DIR / f"{pod['name']}.log", "ab")  # noqa: SIM115 (handed to the child)
    with log:
        proc = subprocess.Popen(
            [sys.executable, sys.argv[0], "--standin-static-pod", str(manifest)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    stat = Path(f"/proc/{proc.pid}/stat").read_text()
    start = int(stat[stat.rindex(")") + 2 :].split()[19])
    record = {
        "name": pod["name"],
        "pid": proc.pid,
        "start_time": start,
        "image": pod["image"],
        "digest": digest,
    }
    core.write_file(PODS_DIR / f"{pod['name']}.json", json.dumps(record), 0o644)


def _sandbox_image(config: Path = Path("/etc/containerd/config.toml")) -> str:
    """containerd's sandbox (pause) image: its config's, else containerd 1.7's default."""
    import tomllib

    default = "registry.k8s.io/pause:3.8"
    if not config.is_file():
        return default
    cri = tomllib.loads(config.read_text()).get("plugins", {}).get("io.containerd.grpc.v1.cri", {})
    return str(cri.get("sandbox_image") or default)


def sync_pods(static_dir: Path) -> None:
    """One pass of the kubelet's static pod loop: start what a manifest asks for (when its
    image is in containerd), restart what changed, stop what lost its manifest."""
    wanted = {}
    for path in sorted(static_dir.glob("*.yaml")) if static_dir.is_dir() else []:
        text = path.read_text()
        pod = _manifest(path)
        wanted[pod["name"]] = (path, pod, hashlib.sha256(text.encode()).hexdigest())
    sandbox = _sandbox_image()
    images = ensure_images(list(dict.fromkeys([sandbox, *(pod["image"] for _, pod, _ in wanted.values())])))
    for name, (path, pod, digest) in wanted.items():
        record_path = PODS_DIR / f"{name}.json"
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
        if record.get("digest") == digest and pod_alive(record):
            continue
        if sandbox not in images:  # containerd cannot make the pod's sandbox, and cannot pull
            _log(
                f'E "Failed to create sandbox for pod" err="failed to get sandbox image \\"{sandbox}\\"" pod="{name}"'
            )
            continue
        if pod["image"] not in images:
            _log(
                f'E "Failed to pull image" err="ErrImageNeverPull: {pod["image"]} is not present" pod="{name}"'
            )
            continue
        if pod_alive(record):
            os.killpg(int(record["pid"]), signal.SIGTERM)
            for _ in range(100):
                if not pod_alive(record):
                    break
                time.sleep(0.05)
        _start_pod(path, pod, digest)
        _log(f'I "Started static pod" pod="kube-system/{name}" image="{pod["image"]}"')
    for path in PODS_DIR.glob("*.json") if PODS_DIR.is_dir() else []:
        record = json.loads(path.read_text())
        if record["name"] not in wanted:
            if pod_alive(record):
                os.killpg(int(record["pid"]), signal.SIGTERM)
            path.unlink()


def certificate_sans(path: Path) -> list[str]:
    """The subjectAltName entries of a certificate, as TLS clients check them."""
    text = _openssl("x509", "-noout", "-ext", "subjectAltName", "-in", str(path)).decode()
    found = re.findall(r"(?:DNS|IP Address):([^,\s]+)", text)
    return [str(f) for f in found]


def _check_audit_policy(pod: dict[str, Any]) -> None:
    """The apiserver container sees the host only through its hostPath volumes: the kubelet
    checks each volume's type (File: an existing file), then the apiserver reads
    --audit-policy-file inside the container, so the host file the flag names is the one under
    the mount that covers it, and a flag outside every mount fails. (DirectoryOrCreate is not
    acted on: /var/log is this machine's on the test hosts.)"""
    for _mount, host, kind in pod["volumes"]:
        if kind == "File" and not Path(host).is_file():
            core.die(f"MountVolume.SetUp failed for volume: hostPath type check failed: {host} is not a file")
    value = _flag(pod["command"], "audit-policy-file")
    if value is None:
        return
    covering = [(m, h) for m, h, _ in pod["volumes"] if (value + "/").startswith(m.rstrip("/") + "/")]
    if not covering:  # no mount: not in the container
        core.die(f'Error: loading audit policy file: failed to read file path "{value}": '
                 f"open {value}: no such file or directory")  # fmt: skip
    mount, host = max(covering, key=lambda mh: len(mh[0]))
    core.check_audit_policy({"audit-policy-file": host + value[len(mount.rstrip("/")) :]})


def _first_peer(etcd: dict[str, Any], own_name: str) -> str:
    """The client address (HOST:2379) of the first other member --initial-cluster names: the
    member that holds the stand-in's data (the one created new: members join in order)."""
    for entry in str(_flag(etcd["command"], "initial-cluster") or "").split(","):
        name, _, url = entry.partition("=")
        if name and name != own_name:
            return url.removeprefix("https://").rsplit(":", 1)[0] + ":2379"
    core.die("etcd: --initial-cluster names no other member to join")


def static_pod_main(manifest: Path) -> int:
    """A static pod's "container". etcd created new (kubeadm init's) holds the cluster's data
    and serves it on 2379; an etcd that joined relays its 2379 to that one (real stacked etcd
    replicates; here one member keeps the data, so losing master0's etcd loses the cluster,
    losing any one API server does not). Every master's kube-apiserver serves the API on 6443
    from its local etcd (--etcd-servers, as kubeadm writes it), with its certificate: TLS to
    a TLS client (haproxy's health checks), its SANs on /tls-sans. The controllers hold ports."""
    core.exit_on_sigterm()
    pod = _manifest(manifest)
    name = pod["name"]
    if name == "etcd":
        _held = core.hold_ports([2380])
        data_dir = Path(_flag(pod["command"], "data-dir") or "/var/lib/etcd")
        if _flag(pod["command"], "initial-cluster-state") == "new":
            _log(f"etcd: serving the cluster's data on 0.0.0.0:2379 from {data_dir / STATE_NAME}")
            core.make_api_server(data_dir / STATE_NAME, "0.0.0.0", 2379).serve_forever()
        peer = _first_peer(pod, str(_flag(pod["command"], "name")))
        _log(f"etcd: relaying 2379 to the member that holds the data, {peer}")
        core.forward_port(2379, peer)
    elif name == "kube-apiserver":
        _check_audit_policy(pod)
        sans = certificate_sans(PKI / "apiserver.crt")
        etcd = str(_flag(pod["command"], "etcd-servers") or "https://127.0.0.1:2379").split(",")[0]
        upstream = "http://" + etcd.removeprefix("https://").removeprefix("http://")
        server = core.make_api_proxy(upstream, "0.0.0.0", API_PORT, sans=sans,
                                     cert=PKI / "apiserver.crt", key=PKI / "apiserver.key")  # fmt: skip
        _log(f"serving the API on 0.0.0.0:{API_PORT} from {upstream}, certificate SANs {', '.join(sans)}")
        server.serve_forever()
    else:
        _held = core.hold_ports(POD_PORTS.get(name, ()))
    while True:
        time.sleep(3600)


def kubelet_main(argv: list[str]) -> int:
    if argv in (["--version"], ["version"]):
        print(f"Kubernetes {version()}")
        return 0
    if argv and argv[0] == "--standin-static-pod":
        return static_pod_main(Path(argv[1]))
    flags = _kubelet_args(argv)
    config_path = Path(flags.get("config", ""))
    if not flags.get("config") or not config_path.is_file():
        core.die(
            f'"command failed" err="failed to load kubelet config file, path: {config_path}, error: '
            f'open {config_path}: no such file or directory"'
        )
    config = core.load_yaml(config_path.read_text(), str(config_path))
    if not isinstance(config, dict) or config.get("kind") != "KubeletConfiguration":
        core.die(f"{config_path}: not a KubeletConfiguration")
    if config.get("cgroupDriver", "cgroupfs") not in ("systemd", "cgroupfs"):
        core.die(f"{config_path}: invalid cgroupDriver {config.get('cgroupDriver')!r}")
    endpoint = flags.get("container-runtime-endpoint", "unix://" + CRI_SOCKET).removeprefix("unix://")
    _cri_call({"op": "list", "namespace": K8S_NS}, endpoint)
    core.exit_on_sigterm()
    _held = core.hold_ports([10250])
    name = flags.get("hostname-override") or _hostname()
    ip = flags.get("node-ip") or socket.gethostbyname(socket.gethostname())
    static_dir = Path(str(config.get("staticPodPath") or MANIFESTS))
    _register(flags, name, ip, static_dir)
    client = api(read_kubeconfig(Path(flags.get("kubeconfig", KUBELET_CONF)))[0])
    beat = 0.0
    while True:
        _sync_logged(static_dir)
        if time.monotonic() - beat > 5:
            try:
                client.patch_node(name, heartbeat=True)
            except core.ApiError as err:
                _log(f'E "Error updating node status" err="{err.message}"')
            beat = time.monotonic()
        time.sleep(0.5)


def _sync_logged(static_dir: Path) -> None:
    """sync_pods, a failure logged and retried next time as the kubelet does (containerd may be
    restarting: a stand-in's die() is SystemExit(1)); a stop (SIGTERM: SystemExit(0)) ends it."""
    try:
        sync_pods(static_dir)
    except (OSError, ValueError) as err:
        _log(f"E static pods: {err}")
    except SystemExit as err:
        if err.code == 0:
            raise
        _log("E static pods: see the error above")


def _register(flags: dict[str, str], name: str, ip: str, static_dir: Path) -> None:
    """Register the Node: with kubelet.conf's credential (retried, as the kubelet does, while
    the apiserver is its own static pod still starting or its credential not yet known), or by
    TLS bootstrap with the bootstrap token (refused: the kubelet exits), writing kubelet.conf."""
    kubeconfig_path = Path(flags.get("kubeconfig", KUBELET_CONF))
    bootstrap_path = Path(flags.get("bootstrap-kubeconfig", BOOTSTRAP_CONF))
    control_plane = (static_dir / "kube-apiserver.yaml").is_file()
    role = "control-plane" if control_plane else "worker"
    extra = {"roles": "control-plane" if control_plane else "<none>", "kubelet": version()}
    if control_plane:
        extra["peer_url"] = f"https://{ip}:2380"
    if kubeconfig_path.is_file():
        server, _, token = read_kubeconfig(kubeconfig_path)
        deadline = time.monotonic() + 120
        while True:  # the apiserver may be this kubelet's own static pod, not started yet
            _sync_logged(static_dir)
            if core.ApiClient(server).healthy() or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        client = api(server)
        try:
            client.get_node(name)
            _log(f'I "Node already registered" node="{name}"')
            client.patch_node(name, version=version())
            return
        except core.ApiError as err:
            if err.status != 404:
                core.die(f'"Unable to register node with API server" err="{err.message}"')
        member = control_plane and _etcd_member(static_dir)
        while True:
            try:
                client.join(token, role, name, ip, version(), member=member, **extra)
                break
            except core.ApiError as err:
                _log(f'E "Unable to register node with API server" err="{err.message}" node="{name}"')
                time.sleep(0.5)
        _log(f'I "Successfully registered node" node="{name}"')
        return
    if not bootstrap_path.is_file():
        core.die(
            f'"failed to run Kubelet: unable to load bootstrap kubeconfig: stat {bootstrap_path}: no such file or directory"'
        )
    server, ca_pem, token = read_kubeconfig(bootstrap_path)
    client = api(server)
    match = TOKEN_RE.match(token)
    try:
        client.join(token, role, name, ip, version(), member=control_plane and _etcd_member(static_dir),
                    bootstrap_token_id=match.group(1) if match else None, **extra)  # fmt: skip
    except core.ApiError as err:
        core.die(
            f'"failed to run Kubelet: cannot create certificate signing request: Unauthorized" ({err.message})'
        )
    credential = client.create_token(role, None, f"node-{secrets.token_hex(16)}")
    core.write_file(kubeconfig_path, kubeconfig(server, ca_pem, f"system:node:{name}", credential))
    _log(f'I "Successfully registered node" node="{name}" (TLS bootstrap)')


def _etcd_member(static_dir: Path) -> bool:
    return (static_dir / "etcd.yaml").is_file()


# --- kubeadm: configuration ----------------------------------------------------------------------


def read_config(path: Path, kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """kind -> document of a kubeadm --config file, checked as kubeadm's strict decoding does."""
    try:
        text = path.read_text()
    except OSError as err:
        core.die(f"unable to read config from {str(path)!r}: {err.strerror}")
    out: dict[str, dict[str, Any]] = {}
    versions = set()
    for doc in load_documents(text, str(path)):
        kind, api_version = str(doc["kind"]), str(doc["apiVersion"])
        if api_version.startswith("kubeadm.k8s.io/"):
            if api_version not in KUBEADM_VERSIONS:
                core.die(f'{path}: no kind "{kind}" is registered for version "{api_version}"')
            unknown = set(doc) - FIELDS.get(kind, set(doc))
            if unknown:
                core.die(f'{path}: strict decoding error: unknown field "{sorted(unknown)[0]}" in {kind}')
            versions.add(api_version)
        elif kind not in ("KubeletConfiguration", "KubeProxyConfiguration"):
            core.die(f'{path}: no kind "{kind}" is registered for version "{api_version}"')
        if kind in out:
            core.die(f"{path}: a second {kind} document")
        out[kind] = doc
    if len(versions) > 1:
        core.die(f"{path}: mixed kubeadm API versions {sorted(versions)}")
    if kinds and all(k not in out for k in kinds):
        core.die(f"{path}: no {' or '.join(kinds)} document")
    return out


def _valid_ip(text: object, where: str) -> str:
    try:
        socket.inet_aton(str(text))
    except OSError:
        core.die(f"{where}: {text!r} is not a valid IP address")
    return str(text)


def _registration(doc: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(criSocket, kubeletExtraArgs) of a nodeRegistration, v1beta3 map or v1beta4 list."""
    reg = doc.get("nodeRegistration") or {}
    cri = str(reg.get("criSocket") or f"unix://{CRI_SOCKET}")
    args = reg.get("kubeletExtraArgs") or {}
    if doc["apiVersion"].endswith("v1beta3"):
        if not isinstance(args, dict):
            core.die(f"{doc['kind']}.nodeRegistration.kubeletExtraArgs: expected a map in v1beta3")
        extra = {str(k): str(v) for k, v in args.items()}
    else:
        if not isinstance(args, list) or not all(isinstance(a, dict) and "name" in a for a in args):
            core.die(
                f"{doc['kind']}.nodeRegistration.kubeletExtraArgs: expected a list of name/value in v1beta4"
            )
        extra = {str(a["name"]): str(a.get("value", "")) for a in args}
    return cri, extra


def _preflight(
    ports: tuple[int, ...], *, control_plane: bool, images: list[str], cri: str, ca_cert: bool = False
) -> None:
    """kubeadm's preflight; `ca_cert`: a worker join's FileAvailable check of pki/ca.crt."""
    errors = []
    if os.geteuid() != 0:
        errors.append("[ERROR IsPrivilegedUser]: user is not running as root")
    for port in ports:
        if not _port_free(port):
            errors.append(f"[ERROR Port-{port}]: Port {port} is in use")
    for name in (*CONFS, "bootstrap-kubelet.conf"):
        if (KUBE_DIR / name).exists():
            errors.append(
                f"[ERROR FileAvailable--etc-kubernetes-{name.replace('.', '-')}]: {KUBE_DIR / name} already exists"
            )
    if ca_cert and (PKI / "ca.crt").exists():
        errors.append(f"[ERROR FileAvailable--etc-kubernetes-pki-ca.crt]: {PKI / 'ca.crt'} already exists")
    if MANIFESTS.is_dir() and any(MANIFESTS.iterdir()):
        errors.append(
            "[ERROR DirAvailable--etc-kubernetes-manifests]: /etc/kubernetes/manifests is not empty"
        )
    if control_plane and Path("/var/lib/etcd").is_dir() and any(Path("/var/lib/etcd").iterdir()):
        errors.append("[ERROR DirAvailable--var-lib-etcd]: /var/lib/etcd is not empty")
    if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "1":
        errors.append(
            "[ERROR FileContent--proc-sys-net-ipv4-ip_forward]: /proc/sys/net/ipv4/ip_forward contents are not set to 1"
        )
    endpoint = cri.removeprefix("unix://")
    if not cri.startswith("unix://"):
        errors.append(f"[ERROR CRI]: criSocket {cri!r}: want unix:///path")
    elif not _cri_up(endpoint):
        errors.append(f"[ERROR CRI]: container runtime is not running: {endpoint} does not answer")
    present = ensure_images(images) if images and not errors else set()
    for image in images:
        if image not in present:
            errors.append(
                f"[ERROR ImagePull]: failed to pull image {image}: air-gapped, and not in containerd"
            )
    if subprocess.run(["systemctl", "is-enabled", "--quiet", "kubelet"], check=False).returncode != 0:
        print(
            "\t[WARNING Service-Kubelet]: kubelet service is not enabled, please run 'systemctl enable kubelet.service'"
        )
    if errors:
        core.die("[preflight] Some fatal errors occurred:\n\t" + "\n\t".join(errors)
                 + "\n[preflight] If you know what you are doing, you can make a check non-fatal with "
                 "`--ignore-preflight-errors=...`")  # fmt: skip


def _kubelet_files(kubelet_config: dict[str, Any], cri: str, extra: dict[str, str]) -> None:
    config = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
              "staticPodPath": str(MANIFESTS), "cgroupDriver": "systemd", **kubelet_config}  # fmt: skip
    core.write_file(KUBELET_CONFIG, dump_yaml(config), 0o644)
    args = [f"--container-runtime-endpoint={cri}", *(f"--{k}={v}" for k, v in extra.items())]
    core.write_file(FLAGS_ENV, f'KUBELET_KUBEADM_ARGS="{" ".join(args)}"\n', 0o644)


def _restart_kubelet() -> None:
    proc = subprocess.run(["systemctl", "restart", "kubelet"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        core.die(f"[kubelet-start] couldn't restart the kubelet: {proc.stderr.strip()}")


def _kubelet_failed() -> str | None:
    proc = subprocess.run(["systemctl", "is-active", "kubelet"], capture_output=True, text=True, check=False)
    if proc.stdout.strip() == "active":
        return None
    status = subprocess.run(["systemctl", "status", "kubelet"], capture_output=True, text=True, check=False)
    return status.stdout.strip()


def _pod_manifest(
    name: str, image: str, command: list[str], volumes: list[dict[str, Any]] | None = None
) -> str:
    container: dict[str, Any] = {"name": name, "image": image, "command": command}
    spec: dict[str, Any] = {"hostNetwork": True, "containers": [container]}
    if volumes:  # ClusterConfiguration extraVolumes, as kubeadm's controlplane phase writes them
        container["volumeMounts"] = [
            {"name": v["name"], "mountPath": v["mountPath"], "readOnly": bool(v.get("readOnly", False))}
            for v in volumes
        ]
        spec["volumes"] = [
            {"name": v["name"], "hostPath": {"path": v["hostPath"], "type": v.get("pathType", "")}}
            for v in volumes
        ]
    return dump_yaml(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": "kube-system",
                "labels": {"component": name, "tier": "control-plane"},
            },
            "spec": spec,
        }
    )


def _extra_args(component: dict[str, Any]) -> list[str]:
    """A control-plane component's extraArgs as flags: a map in v1beta3, name/value pairs in v1beta4."""
    args = component.get("extraArgs") or {}
    pairs = args.items() if isinstance(args, dict) else ((a["name"], a["value"]) for a in args)
    return [f"--{k}={v}" for k, v in pairs]


def write_manifests(cluster: dict[str, Any], ip: str, name: str, initial_cluster: str, state: str) -> None:
    repo = str(cluster.get("imageRepository") or "registry.k8s.io")
    v = str(cluster["kubernetesVersion"])
    etcd_tag = images_for(v)[-1].rsplit(":", 1)[1]
    data_dir = str(((cluster.get("etcd") or {}).get("local") or {}).get("dataDir") or "/var/lib/etcd")
    pods = {
        "etcd": (f"{repo}/etcd:{etcd_tag}", ["etcd", f"--name={name}", f"--data-dir={data_dir}",
                 f"--advertise-client-urls=https://{ip}:2379", f"--initial-advertise-peer-urls=https://{ip}:2380",
                 f"--initial-cluster={initial_cluster}", f"--initial-cluster-state={state}"]),
        "kube-apiserver": (f"{repo}/kube-apiserver:{v}", ["kube-apiserver", f"--advertise-address={ip}",
                           f"--secure-port={API_PORT}", "--etcd-servers=https://127.0.0.1:2379"]),
        "kube-controller-manager": (f"{repo}/kube-controller-manager:{v}", ["kube-controller-manager"]),
        "kube-scheduler": (f"{repo}/kube-scheduler:{v}", ["kube-scheduler"]),
    }  # fmt: skip
    api_server = cluster.get("apiServer") or {}
    pods["kube-apiserver"][1].extend(_extra_args(api_server))
    for pod, (image, command) in pods.items():
        volumes = list(api_server.get("extraVolumes") or []) if pod == "kube-apiserver" else None
        core.write_file(MANIFESTS / f"{pod}.yaml", _pod_manifest(pod, image, command, volumes), 0o600)


def _apiserver_cert(cluster: dict[str, Any], ip: str, name: str) -> list[str]:
    """apiserver.crt signed by the CA, with kubeadm's SANs plus certSANs; returns the SANs."""
    endpoint = str(cluster.get("controlPlaneEndpoint") or "").rsplit(":", 1)[0]
    sans = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
            name, "10.96.0.1", ip, *([endpoint] if endpoint else []),
            *[str(s) for s in ((cluster.get("apiServer") or {}).get("certSANs") or [])]]  # fmt: skip
    sans = list(dict.fromkeys(sans))
    alt = ",".join(f"IP:{s}" if re.match(r"^[\d.]+$", s) else f"DNS:{s}" for s in sans)
    key = PKI / "apiserver.key"
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(PKI / "apiserver.csr"), "-subj", "/CN=kube-apiserver")  # fmt: skip
    ext = PKI / "apiserver.ext"
    ext.write_text(f"subjectAltName={alt}\n")
    _openssl("x509", "-req", "-in", str(PKI / "apiserver.csr"), "-CA", str(PKI / "ca.crt"), "-CAkey",
             str(PKI / "ca.key"), "-CAcreateserial", "-days", "365", "-extfile", str(ext),
             "-out", str(PKI / "apiserver.crt"))  # fmt: skip
    for leftover in (PKI / "apiserver.csr", ext, PKI / "ca.srl"):
        leftover.unlink(missing_ok=True)
    return sans


def _wait_api(client: core.ApiClient, what: str, timeout_s: float = 60) -> None:
    try:
        client.wait_ready(timeout_s)
    except core.ApiError:
        failed = _kubelet_failed()
        core.die(f"[{what}] the control plane did not come up within {timeout_s:g}s"
                 + (f"; the kubelet:\n{failed}" if failed else ""))  # fmt: skip


def _cluster_config(client: core.ApiClient) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(client.get_secret("kubeadm-config"))
    except core.ApiError as err:
        core.die(f"unable to fetch the kubeadm-config ConfigMap: {err.message}")
    return data


def _wait_pods(images: dict[str, str], timeout_s: float = 60) -> None:
    """Until the kubelet runs each static pod with its new image (kubeadm's upgrade waits so)."""
    deadline = time.monotonic() + timeout_s
    while True:
        running = {}
        for path in PODS_DIR.glob("*.json") if PODS_DIR.is_dir() else []:
            record = json.loads(path.read_text())
            if pod_alive(record):
                running[record["name"]] = record["image"]
        if all(running.get(n) == i for n, i in images.items()):
            return
        if time.monotonic() > deadline:
            core.die(
                f"[upgrade/staticpods] timed out waiting for the static pods to run {images}; running {running}"
            )
        time.sleep(0.2)


# --- kubeadm: commands ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        core.die(message)


def _new_ca() -> str:
    PKI.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(PKI / "ca.key"),
             "-out", str(PKI / "ca.crt"), "-days", "3650", "-subj", "/CN=kubernetes")  # fmt: skip
    (PKI / "ca.key").chmod(0o600)
    for name in (
        "sa.key",
        "sa.pub",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
        "etcd/ca.crt",
        "etcd/ca.key",
    ):
        core.write_file(
            PKI / name, f"-----BEGIN STAND-IN {name}-----\n{secrets.token_hex(32)}\n-----END STAND-IN-----\n"
        )
    return (PKI / "ca.crt").read_text()


SHARED_CERTS = ("ca.crt", "ca.key", "sa.key", "sa.pub", "front-proxy-ca.crt", "front-proxy-ca.key",
                "etcd/ca.crt", "etcd/ca.key")  # fmt: skip


def upload_certs(client: core.ApiClient, key: str | None, pki: Path = PKI) -> str:
    key = key or secrets.token_hex(32)
    if not KEY_RE.match(key):
        core.die("the certificate key must be a hex encoded 32 byte string (64 hex characters)")
    payload = {name: (pki / name).read_text() for name in SHARED_CERTS}
    call(client.put_secret, "kubeadm-certs", seal(key, payload), CERTS_TTL_S)
    print('[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace')
    print("[upload-certs] Using certificate key:")
    print(key)
    return key


def new_token(client: core.ApiClient, ttl_s: float | None) -> str:
    """A bootstrap token: its Secret (bootstrap-token-<id>, for discovery) and the API's token."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    token_id = "".join(secrets.choice(alphabet) for _ in range(6))
    secret = "".join(secrets.choice(alphabet) for _ in range(16))
    token = f"{token_id}.{secret}"
    call(client.put_secret, f"bootstrap-token-{token_id}", secret, ttl_s)
    call(client.create_token, "bootstrap", ttl_s, token, allows=["control-plane", "worker"])
    return token


def kubeadm_init(argv: list[str]) -> int:
    p = _Parser(prog="kubeadm init", allow_abbrev=False)
    p.add_argument("--config", required=True)
    p.add_argument("--upload-certs", action="store_true")
    p.add_argument("-v", "--v")
    opts = p.parse_args(argv)
    docs = read_config(Path(opts.config), ("InitConfiguration", "ClusterConfiguration"))
    init = docs.get("InitConfiguration") or {"apiVersion": KUBEADM_VERSIONS[0], "kind": "InitConfiguration"}
    cluster = dict(docs.get("ClusterConfiguration") or {})
    own = version()
    cluster.setdefault("kubernetesVersion", own)
    kv = str(cluster["kubernetesVersion"])
    if _parse_version(kv) > _parse_version(own):
        core.die(f'this version of kubeadm only supports deploying clusters with the control plane version >= '
                 f'v1.{_parse_version(own)[1] - 1}.0. Current version: {kv} is newer than kubeadm {own}')  # fmt: skip
    if _parse_version(kv)[1] < _parse_version(own)[1] - 1:
        core.die(f"this version of kubeadm only supports deploying clusters with the control plane version >= "
                 f"v1.{_parse_version(own)[1] - 1}.0. Current version: {kv}")  # fmt: skip
    endpoint = init.get("localAPIEndpoint") or {}
    ip = _valid_ip(endpoint.get("advertiseAddress"), "InitConfiguration.localAPIEndpoint.advertiseAddress")
    cri, extra = _registration(init)
    plane = str(cluster.get("controlPlaneEndpoint") or f"{ip}:{API_PORT}")
    name = _hostname()
    print(f"[init] Using Kubernetes version: {kv}")
    print("[preflight] Running pre-flight checks")
    repo = str(cluster.get("imageRepository") or "registry.k8s.io")
    _preflight(CONTROL_PLANE_PORTS, control_plane=True, images=images_for(kv, repo), cri=cri)
    print('[certs] Generating "ca" certificate and key')
    ca_pem = _new_ca()
    sans = _apiserver_cert(cluster, ip, name)
    print(f"[certs] apiserver serving cert is signed for DNS names and IPs [{' '.join(sans)}]")
    credential = f"admin-{secrets.token_hex(16)}"
    server = f"https://{plane}"
    for conf in CONFS:
        user = {"kubelet.conf": f"system:node:{name}"}.get(conf, conf.removesuffix(".conf"))
        local = (
            f"https://{ip}:{API_PORT}" if conf in ("controller-manager.conf", "scheduler.conf") else server
        )
        token = f"node-{secrets.token_hex(16)}" if conf == "kubelet.conf" else credential
        core.write_file(KUBE_DIR / conf, kubeconfig(local, ca_pem, user, token))
        print(f'[kubeconfig] Writing "{conf}" kubeconfig file')
    kubelet_doc = {
        k: v for k, v in (docs.get("KubeletConfiguration") or {}).items() if k not in ("apiVersion", "kind")
    }
    _kubelet_files(kubelet_doc, cri, extra)
    members = f"{name}=https://{ip}:2380"
    write_manifests(cluster, ip, name, members, "new")
    print('[control-plane] Creating static Pod manifests in "/etc/kubernetes/manifests"')
    print("[kubelet-start] Starting the kubelet")
    _restart_kubelet()
    client = core.ApiClient(f"https://{ip}:{API_PORT}")
    _wait_api(client, "wait-control-plane")
    fault("kubeadm-init-control-plane-up")
    # what the cluster-info ConfigMap, kubeadm-config and kubelet-config hold upstream
    call(client.put_secret, "cluster-info", ca_pem)
    call(client.put_secret, "kubeadm-config", json.dumps(cluster))
    call(client.put_secret, "kubelet-config", json.dumps(kubelet_doc))
    call(client.create_token, "control-plane", None, read_kubeconfig(KUBELET_CONF)[2])
    call(client.create_token, "admin", None, credential)
    print('[upload-config] Storing the configuration used in ConfigMap "kubeadm-config"')
    key = upload_certs(client, init.get("certificateKey")) if opts.upload_certs else None
    deadline = time.monotonic() + 60
    while True:  # the kubelet registers the node; kubeadm waits for it to mark it
        try:
            client.get_node(name)
            break
        except core.ApiError:
            if time.monotonic() > deadline:
                core.die(f"[mark-control-plane] error patching node {name!r}: timed out waiting for the node")
            time.sleep(0.2)
    call(
        client.patch_node,
        name,
        roles="control-plane",
        taints=[CONTROL_PLANE_TAINT],
    )
    print(f"[mark-control-plane] Marking the node {name} as control-plane")
    token = new_token(client, 24 * 3600)
    print(f"[bootstrap-token] Using token: {token}")
    print("[addons] Applied essential addon: CoreDNS\n[addons] Applied essential addon: kube-proxy\n")
    print("Your Kubernetes control-plane has initialized successfully!\n")
    join = f"kubeadm join {plane} --token {token} --discovery-token-ca-cert-hash {ca_hash(ca_pem)}"
    if key:
        print(f"  {join} \\\n\t--control-plane --certificate-key {key}\n")
    print(f"  {join}")
    return 0


def kubeadm_join(argv: list[str]) -> int:
    p = _Parser(prog="kubeadm join", allow_abbrev=False)
    p.add_argument("--config", required=True)
    p.add_argument("-v", "--v")
    opts = p.parse_args(argv)
    docs = read_config(Path(opts.config), ("JoinConfiguration",))
    join = docs.get("JoinConfiguration")
    if join is None:
        core.die(f"{opts.config}: no JoinConfiguration")
    discovery = (join.get("discovery") or {}).get("bootstrapToken") or {}
    token = str(discovery.get("token") or "")
    match = TOKEN_RE.match(token)
    if match is None:
        core.die(f'the bootstrap token "{token}" was not of the form "^([a-z0-9]{{6}})\\.([a-z0-9]{{16}})$"')
    hashes = discovery.get("caCertHashes") or []
    if not hashes or not all(re.match(r"^sha256:[a-f0-9]{64}$", str(h)) for h in hashes):
        core.die(f"invalid discovery token CA certificate hash {hashes!r}: want sha256:<64 hex>")
    endpoint = str(discovery.get("apiServerEndpoint") or "")
    if not re.match(r"^[^:]+:\d+$", endpoint):
        core.die(f"discovery.bootstrapToken.apiServerEndpoint {endpoint!r}: want HOST:PORT")
    control = join.get("controlPlane")
    cri, extra = _registration(join)
    ip = extra.get("node-ip") or socket.gethostbyname(socket.gethostname())
    name = _hostname()
    print("[preflight] Running pre-flight checks")
    if control is None:  # a control plane's checks need the cluster's version: after discovery
        _preflight((10250,), control_plane=False, images=[], cri=cri, ca_cert=True)
    client = api(f"https://{endpoint}")
    # token discovery: cluster-info, validated with the token's Secret, pinned by the CA hash
    try:
        ca_pem = client.get_secret("cluster-info")
        expected = client.get_secret(f"bootstrap-token-{match.group(1)}")
    except core.ApiError as err:
        if err.status == 0:
            core.die(f"couldn't validate the identity of the API Server: {err.message}")
        core.die(f'couldn\'t validate the identity of the API Server: token id "{match.group(1)}" is invalid '
                 "for this cluster or it has expired. Use \"kubeadm token create\" on the control-plane node "
                 "to create a new valid token")  # fmt: skip
    if expected != match.group(2):
        core.die(
            f'couldn\'t validate the identity of the API Server: token id "{match.group(1)}": the secret does not match'
        )
    pinned = ca_hash(ca_pem)
    if pinned not in hashes:
        core.die(
            f'cluster CA found in cluster-info ConfigMap is invalid: none of the public keys "{pinned}" are pinned'
        )
    print(
        f'[discovery] Cluster info signature and contents are valid and TLS certificate validates against pinned roots, will use API Server "{endpoint}"'
    )
    cluster = _cluster_config(client)
    if control is not None:
        key = str(control.get("certificateKey") or "")
        if not KEY_RE.match(key):
            core.die("the certificate key must be a hex encoded 32 byte string (64 hex characters)")
        local = control.get("localAPIEndpoint") or {}
        ip = _valid_ip(
            local.get("advertiseAddress") or ip,
            "JoinConfiguration.controlPlane.localAPIEndpoint.advertiseAddress",
        )
        kv = str(cluster["kubernetesVersion"])
        _preflight(CONTROL_PLANE_PORTS, control_plane=True,
                   images=images_for(kv, str(cluster.get("imageRepository") or "registry.k8s.io")), cri=cri)  # fmt: skip
        try:
            sealed = client.get_secret("kubeadm-certs")
        except core.ApiError as err:
            core.die(f'error downloading certs: error downloading the secret: Secret "kubeadm-certs" was not found '
                     f'in the "kube-system" Namespace. This Secret might have expired ({err.message})')  # fmt: skip
        for path, text in unseal(key, sealed).items():
            core.write_file(PKI / path, text)
        print(
            '[download-certs] Downloading the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace'
        )
        _apiserver_cert(cluster, ip, name)
        credential = f"admin-{secrets.token_hex(16)}"
        call(client.create_token, "admin", None, credential)
        for conf in ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf"):
            core.write_file(
                KUBE_DIR / conf,
                kubeconfig(f"https://{endpoint}", ca_pem, conf.removesuffix(".conf"), credential),
            )
        members = [m for m in call(client.members) if m.get("name") != name]
        initial = ",".join([*(f"{m['name']}={m.get('peer_url') or 'https://' + m['ip'] + ':2380'}" for m in members),
                            f"{name}=https://{ip}:2380"])  # fmt: skip
        write_manifests(cluster, ip, name, initial, "existing")
        print(
            "[control-plane] Creating static Pod manifests; [etcd] Announced new etcd member joining the cluster"
        )
    core.write_file(PKI / "ca.crt", ca_pem, 0o644)
    core.write_file(
        BOOTSTRAP_CONF, kubeconfig(f"https://{endpoint}", ca_pem, "tls-bootstrap-token-user", token)
    )
    _refuse_ready_node(client, name)
    kubelet_doc = json.loads(call(client.get_secret, "kubelet-config"))
    _kubelet_files(kubelet_doc, cri, {**extra, "node-ip": ip})
    fault("kubeadm-join-kubelet-config")
    print(
        "[kubelet-start] Starting the kubelet\n[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap"
    )
    _restart_kubelet()
    deadline = time.monotonic() + 60
    while not KUBELET_CONF.is_file():
        failed = _kubelet_failed()
        if failed:
            core.die(f"[kubelet-start] the kubelet failed:\n{failed}")
        if time.monotonic() > deadline:
            core.die("[kubelet-start] timed out waiting for the kubelet to perform the TLS Bootstrap")
        time.sleep(0.2)
    fault("kubeadm-join-registered")
    BOOTSTRAP_CONF.unlink()
    if control is not None:
        call(client.patch_node, name, roles="control-plane", certificate_key_id=json.loads(sealed)["key_id"],
             taints=[CONTROL_PLANE_TAINT])  # fmt: skip
        _wait_api(core.ApiClient(f"https://{ip}:{API_PORT}"), "control-plane-join")
        print("\nThis node has joined the cluster and a new control plane instance was created")
    else:
        print("\nThis node has joined the cluster")
    return 0


def _refuse_ready_node(client: core.ApiClient, name: str) -> None:
    """kubelet-start's check before the TLS bootstrap (the bootstrap token may get nodes): a new
    kubelet must not take over a Node of the same name that is still Ready."""
    try:
        node = client.get_node(name)
    except core.ApiError as err:
        if err.status == 404:
            return
        core.die(f'error execution phase kubelet-start: cannot get Node "{name}": {err.message}')
    if node.get("ready"):
        core.die(
            f'error execution phase kubelet-start: a Node with name "{name}" and status "Ready" already exists '
            "in the cluster. You must delete the existing Node or change the name of this new joining Node"
        )


def kubeadm_token(argv: list[str]) -> int:
    p = _Parser(prog="kubeadm token", allow_abbrev=False)
    p.add_argument("verb", choices=("create",))
    p.add_argument("--ttl", default="24h0m0s")
    p.add_argument("--kubeconfig", default=str(ADMIN_CONF))
    opts = p.parse_args(argv)
    ttl = _ttl_s(opts.ttl)
    client = api(read_kubeconfig(Path(opts.kubeconfig))[0])
    print(new_token(client, ttl))
    return 0


def kubeadm_upload_certs(argv: list[str]) -> int:
    p = _Parser(prog="kubeadm init phase upload-certs", allow_abbrev=False)
    p.add_argument("--upload-certs", action="store_true")
    p.add_argument("--config")
    p.add_argument("--certificate-key")
    p.add_argument("--kubeconfig", default=str(ADMIN_CONF))
    opts = p.parse_args(argv)
    if not opts.upload_certs:
        print("[upload-certs] Skipping phase. Please see --upload-certs")
        return 0
    pki = PKI
    if opts.config:
        docs = read_config(Path(opts.config), ("InitConfiguration", "ClusterConfiguration"))
        pki = Path(str((docs.get("ClusterConfiguration") or {}).get("certificatesDir") or PKI))
    client = api(read_kubeconfig(Path(opts.kubeconfig))[0])
    upload_certs(client, opts.certificate_key, pki)
    return 0


def kubeadm_reset(argv: list[str]) -> int:
    p = _Parser(prog="kubeadm reset", allow_abbrev=False)
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--cri-socket")
    p.add_argument("-v", "--v")
    opts = p.parse_args(argv)
    if not opts.force:
        core.die("[reset] Are you sure you want to proceed? [y/N]: aborted reset operation (use -f)")
    etcd = MANIFESTS / "etcd.yaml"
    control_plane = etcd.is_file()
    if control_plane:
        ip = _flag(_manifest(etcd)["command"], "advertise-client-urls") or ""
        address = ip.removeprefix("https://").rsplit(":", 1)[0]
        try:
            client = api(read_kubeconfig(ADMIN_CONF)[0])
            mine = [m for m in client.members() if m.get("ip") == address]
            for member in mine:
                client.remove_member(member["name"])
                print(f"[reset] Removed etcd member {member['name']} ({address}) from the cluster")
        except (core.ApiError, SystemExit) as err:
            print(f"W [reset] Failed to remove etcd member: {err}; continuing", file=sys.stderr)
    print("[reset] Stopping the kubelet service")
    subprocess.run(["systemctl", "stop", "kubelet"], check=False)
    killed = kill_pods()
    print(f"[reset] Removing containers: {', '.join(killed) or 'none'}")
    for path in [*(KUBE_DIR / c for c in (*CONFS, "bootstrap-kubelet.conf")), PKI, MANIFESTS]:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    MANIFESTS.mkdir(parents=True, exist_ok=True)
    # the data dirs' contents (the dirs may be mount points)
    for data_dir in (KUBELET_DIR, *([Path("/var/lib/etcd")] if control_plane else [])):
        for entry in data_dir.iterdir() if data_dir.is_dir() else []:
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    if control_plane:
        print("[reset] Deleted contents of the etcd data directory: /var/lib/etcd")
    print(
        "The reset process does not clean CNI configuration, iptables or IPVS tables, or your kubeconfig files."
    )
    return 0


def kubeadm_upgrade(argv: list[str]) -> int:
    if argv[:1] == ["node"]:
        return _upgrade_node(argv[1:])
    p = _Parser(prog="kubeadm upgrade apply", allow_abbrev=False)
    p.add_argument("verb", choices=("apply",))
    p.add_argument("target")
    p.add_argument("-y", "--yes", action="store_true")
    p.add_argument("--kubeconfig", default=str(ADMIN_CONF))
    opts = p.parse_args(argv)
    if not opts.yes:
        core.die("[upgrade/confirm] Are you sure you want to proceed? [y/N]: aborted (use -y)")
    own, target = version(), str(opts.target)
    client = api(read_kubeconfig(Path(opts.kubeconfig))[0])
    cluster = _cluster_config(client)
    current = str(cluster["kubernetesVersion"])
    t, c, k = _parse_version(target), _parse_version(current), _parse_version(own)
    if t > k:
        core.die(f'Specified version to upgrade to "{target}" is higher than the kubeadm version "{own}". '
                 "Upgrade kubeadm first using the tool you used to install kubeadm")  # fmt: skip
    if t < c:
        core.die(f'Specified version to upgrade to "{target}" is lower than the cluster version "{current}"')
    if t[0] != c[0] or t[1] > c[1] + 1:
        core.die(
            f'Specified version to upgrade to "{target}" is too high; kubeadm can upgrade only 1 minor version at a time'
        )
    print(f'[upgrade/version] You have chosen to change the cluster version to "{target}"')
    cluster["kubernetesVersion"] = target
    _upgrade_static_pods(cluster)
    call(client.put_secret, "kubeadm-config", json.dumps(cluster))
    print(f'[upgrade/successful] SUCCESS! Your cluster was upgraded to "{target}". Enjoy!')
    return 0


def _upgrade_static_pods(cluster: dict[str, Any]) -> None:
    etcd = MANIFESTS / "etcd.yaml"
    if not etcd.is_file():
        return
    target = str(cluster["kubernetesVersion"])
    repo = str(cluster.get("imageRepository") or "registry.k8s.io")
    wanted = images_for(target, repo)
    present = ensure_images(wanted)  # kubeadm upgrade's preflight pulls them, as init's does
    missing = [i for i in wanted if i not in present]
    if missing:
        core.die(
            f"[preflight] Some fatal errors occurred: [ERROR ImagePull]: failed to pull image {missing[0]}"
        )
    command = _manifest(etcd)["command"]
    name = _flag(command, "name") or _hostname()
    ip = (_flag(command, "advertise-client-urls") or "").removeprefix("https://").rsplit(":", 1)[0]
    write_manifests(cluster, ip, name, _flag(command, "initial-cluster") or "",
                    _flag(command, "initial-cluster-state") or "new")  # fmt: skip
    images = {pod: _manifest(MANIFESTS / f"{pod}.yaml")["image"] for pod in
              ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")}  # fmt: skip
    _wait_pods(images)
    _wait_api(core.ApiClient(f"https://{ip}:{API_PORT}"), "upgrade/staticpods")
    print(f"[upgrade/staticpods] Component static pods upgraded to {target}")


def _upgrade_node(argv: list[str]) -> int:
    p = _Parser(prog="kubeadm upgrade node", allow_abbrev=False)
    p.add_argument("--kubeconfig")
    opts = p.parse_args(argv)
    control_plane = (MANIFESTS / "etcd.yaml").is_file()
    path = Path(opts.kubeconfig or (ADMIN_CONF if control_plane else KUBELET_CONF))
    client = api(read_kubeconfig(path)[0])
    cluster = _cluster_config(client)
    target = str(cluster["kubernetesVersion"])
    if _parse_version(target) > _parse_version(version()):
        core.die(
            f'the cluster version "{target}" is higher than this kubeadm "{version()}": upgrade kubeadm first'
        )
    if control_plane:
        _upgrade_static_pods(cluster)
    print("[upgrade] The configuration for this node was successfully updated!")
    print("[upgrade] Now you should go ahead and upgrade the kubelet package using your package manager.")
    return 0


def kubeadm_config_images_list(argv: list[str]) -> int:
    """`kubeadm config images list --kubernetes-version V [--image-repository R]`: offline only
    with an exact version (a label such as "stable" would be looked up on the internet)."""
    p = _Parser(prog="kubeadm config images list", allow_abbrev=False)
    p.add_argument("--kubernetes-version", required=True)
    p.add_argument("--image-repository", default="registry.k8s.io")
    opts = p.parse_args(argv)
    if not re.fullmatch(r"v\d+\.\d+\.\d+", opts.kubernetes_version):
        core.die(f'unable to get URL "https://dl.k8s.io/release/{opts.kubernetes_version}.txt": air-gapped')
    print("\n".join(images_for(opts.kubernetes_version, opts.image_repository)))
    return 0


def kubeadm_main(argv: list[str]) -> int:
    if not argv:
        core.die("missing command: init, join, token, reset, upgrade or version")
    command, rest = argv[0], argv[1:]
    if command == "version":
        if rest in (["-o", "short"], ["-oshort"], ["--output=short"]):
            print(version())
        elif not rest:
            major, minor, _ = _parse_version(version())
            print(
                f'kubeadm version: &version.Info{{Major:"{major}", Minor:"{minor}", GitVersion:"{version()}"}}'
            )
        else:
            core.die(f"version: unknown arguments {rest}")
        return 0
    if command == "init" and rest[:2] == ["phase", "upload-certs"]:
        return kubeadm_upload_certs(rest[2:])
    if command == "certs" or (
        command == "init" and rest[:2] in (["phase", "certs"], ["phase", "upload-config"])
    ):
        from . import kubeadm_certs  # sealer cert's commands

        if command == "certs":
            return kubeadm_certs.certs(rest)
        if rest[1] == "upload-config":
            return kubeadm_certs.phase_upload_config(rest[2:])
        if rest[2:3] != ["apiserver"]:
            core.die("the stand-in knows `init phase certs apiserver`")
        return kubeadm_certs.phase_certs_apiserver(rest[3:])
    if command == "config" and rest[:2] == ["images", "list"]:
        return kubeadm_config_images_list(rest[2:])
    commands: dict[str, Callable[[list[str]], int]] = {
        "init": kubeadm_init,
        "join": kubeadm_join,
        "token": kubeadm_token,
        "reset": kubeadm_reset,
        "upgrade": kubeadm_upgrade,
    }
    if command not in commands:
        core.die(f'unknown command "{command}" for "kubeadm"')
    return commands[command](rest)


# --- kubectl -------------------------------------------------------------------------------------


def _age(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


def _node_row(node: dict[str, Any], wide: bool) -> list[str]:
    status = "Ready" if node.get("ready") else "NotReady"
    if node.get("unschedulable"):
        status += ",SchedulingDisabled"
    row = [node["name"], status, str(node.get("roles") or "<none>"), _age(time.time() - node["joined_at"]),
           str(node.get("version"))]  # fmt: skip
    if wide:
        row += [node["ip"], "<none>", "Stand-in Linux", platform.release(), "containerd://1.7.22"]
    return row


# `kubectl label node` and `kubectl taint node`, shared with the k3s and k0s stand-ins (whose
# `k3s kubectl` and `k0s kubectl` embed upstream kubectl). A node keeps "labels" (a mapping) and
# "taints" (a list of {key, value?, effect}, as Node spec.taints); each command reads the node,
# applies kubectl's rules (staging/src/k8s.io/kubectl/pkg/cmd/label, .../cmd/taint) and patches
# the whole field back (real kubectl sends a patch with a resourceVersion; nothing here races).

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_VALUE_RULE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)


def _check_key(key: str, spec: str) -> None:
    """A qualified name ([DNS-subdomain prefix/]name, name at most 63), as label and taint keys."""
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        core.die(f"error: invalid {spec}: prefix part {prefix!r} must be a DNS subdomain")
    if len(name) > 63 or not _NAME_PART.match(name):
        core.die(
            f"error: invalid {spec}: name part {name!r} must consist of alphanumeric characters, '-', '_' "
            "or '.', and must start and end with an alphanumeric character, at most 63 characters"
        )


def _check_value(value: str, spec: str) -> None:
    if len(value) > 63 or (value and not _NAME_PART.match(value)):
        core.die(f"error: invalid {spec}: {value!r}: {_VALUE_RULE}")


def _node_target(verb: str, args: list[str]) -> tuple[str, list[str]]:
    """`node NAME SPEC...` or `node/NAME SPEC...` -> (NAME, specs)."""
    if args and args[0].partition("/")[0] in ("node", "nodes", "no") and "/" in args[0]:
        name, specs = args[0].partition("/")[2], args[1:]
    elif len(args) >= 2 and args[0] in ("node", "nodes", "no"):
        name, specs = args[1], args[2:]
    else:
        core.die(f"error: the stand-in kubectl {verb}s only nodes: {verb} node NAME ...")
    if not specs:
        core.die(f"error: at least one {'label' if verb == 'label' else 'taint'} update is required")
    return name, specs


def kubectl_label(
    args: list[str], overwrite: bool, get: Callable[[str], dict[str, Any]], patch: Callable[..., Any]
) -> int:
    """`kubectl label node NAME k=v... k-... [--overwrite]`: a key that has another value needs
    --overwrite (kubectl's validateNoOverwrites); removing a missing label is only a notice."""
    name, specs = _node_target("label", args)
    add: dict[str, str] = {}
    remove: list[str] = []
    for spec in specs:
        if spec.endswith("-") and "=" not in spec:
            _check_key(spec[:-1], f"label spec {spec!r}")
            remove.append(spec[:-1])
            continue
        key, eq, value = spec.partition("=")
        if not eq:
            core.die(f"error: invalid label spec: {spec}")
        _check_key(key, f"label spec {spec!r}")
        _check_value(value, f"label value {spec!r}")
        add[key] = value
    node = get(name)
    labels: dict[str, str] = dict(node.get("labels") or {})
    if not overwrite:
        taken = [f"'{k}' already has a value ({labels[k]}), and --overwrite is false"
                 for k, v in add.items() if k in labels and labels[k] != v]  # fmt: skip
        if taken:
            core.die("error: " + "; ".join(taken))
    new = {**labels, **add}
    for key in remove:
        if key not in new:
            print(f'label "{key}" not found.')
        new.pop(key, None)
    if new == labels:
        print(f"node/{name} not labeled")
        return 0
    patch(name, labels=new)
    print(f"node/{name} labeled")
    return 0


def _parse_taint(spec: str) -> tuple[dict[str, str], bool]:
    """`key[=value]:Effect` (add) or `key[:Effect]-` (remove) -> (taint, removing)."""
    removing = spec.endswith("-")
    body = spec[:-1] if removing else spec
    key_value, colon, effect = body.partition(":")
    if not colon and not removing:
        core.die(f"error: invalid taint spec: {spec}, unknown taint spec")
    if colon and effect not in TAINT_EFFECTS:
        core.die(
            f"error: invalid taint spec: {spec}, invalid taint effect: {effect}, unsupported taint effect"
        )
    key, eq, value = key_value.partition("=")
    if removing and eq:
        core.die(f"error: invalid taint spec: {spec}, a taint to remove has no value")
    _check_key(key, f"taint spec {spec!r}")
    _check_value(value, f"taint spec {spec!r}")
    taint = {"key": key, **({"value": value} if value else {}), "effect": effect}
    return taint, removing


def _taint_text(taint: dict[str, str]) -> str:
    value = f"={taint['value']}" if taint.get("value") else ""
    return f"{taint['key']}{value}:{taint['effect']}" if taint.get("effect") else taint["key"]


def kubectl_taint(
    args: list[str], overwrite: bool, get: Callable[[str], dict[str, Any]], patch: Callable[..., Any]
) -> int:
    """`kubectl taint node NAME key[=value]:Effect... key[:Effect]-... [--overwrite]`: adding a
    taint whose key and effect the node has already needs --overwrite, which replaces its value;
    removing a taint the node lacks fails the whole command (kubectl's reorganizeTaints)."""
    name, specs = _node_target("taint", args)
    adds: list[dict[str, str]] = []
    removes: list[dict[str, str]] = []
    for spec in specs:
        taint, removing = _parse_taint(spec)
        (removes if removing else adds).append(taint)
    node = get(name)
    old: list[dict[str, str]] = list(node.get("taints") or [])
    if not overwrite:
        exists = [
            t["key"] for t in adds if any((o["key"], o["effect"]) == (t["key"], t["effect"]) for o in old)
        ]
        if exists:
            core.die(
                f"error: node {name} already has {','.join(exists)} taint(s) with same effect(s) "
                "and --overwrite is false"
            )
    same = {(t["key"], t["effect"]) for t in adds}
    new = [*adds, *(o for o in old if (o["key"], o["effect"]) not in same)]
    for taint in removes:
        kept = [o for o in new if not (o["key"] == taint["key"] and taint["effect"] in ("", o["effect"]))]
        if len(kept) == len(new):
            core.die(f'error: taint "{_taint_text(taint)}" not found')
        new = kept
    patch(name, taints=new)
    print(
        f"node/{name} {'modified' if overwrite or (adds and removes) else 'tainted' if adds else 'untainted'}"
    )
    return 0


def kubectl_main(argv: list[str]) -> int:
    p = _Parser(prog="kubectl", allow_abbrev=False)
    verbs = ("get", "drain", "cordon", "uncordon", "delete", "label", "taint", "version", *core.WRITE_VERBS)
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
    p.add_argument("--client", action="store_true")
    p.add_argument("--raw")  # `get --raw /readyz` (or /healthz, /livez): the API server's health
    p.add_argument("--server")  # instead of the kubeconfig's (its credentials still apply)
    opts = p.parse_args(argv)
    if opts.verb == "version":
        print(f"Client Version: {version()}")
        return 0
    path = (
        opts.kubeconfig
        or os.environ.get("KUBECONFIG")
        or str(Path(os.environ.get("HOME", "/root")) / ".kube/config")
    )
    client = api(opts.server or read_kubeconfig(Path(path))[0])
    if opts.verb in ("label", "taint"):
        verb = kubectl_label if opts.verb == "label" else kubectl_taint
        return verb(
            opts.args,
            opts.overwrite,
            lambda n: dict(call(client.get_node, n)),
            lambda n, **f: call(client.patch_node, n, **f),
        )
    if opts.verb == "get" and opts.raw is not None:
        if opts.raw not in ("/readyz", "/healthz", "/livez"):
            core.die(f"error: the stand-in kubectl gets --raw only /readyz, /healthz, /livez, not {opts.raw}")
        if not client.healthy():
            core.die(f"The connection to the server {client.url} was refused")
        print("ok")
        return 0
    args = [a for part in opts.args for a in part.split("/", 1)]
    if core.is_configmap_command(opts.verb, args):
        return core.kubectl_configmaps(
            client, opts.verb, args, namespace=opts.namespace, filename=opts.filename, output=opts.output
        )
    if opts.verb == "get":
        if not args or args[0] not in ("nodes", "node", "no"):
            core.die(f"error: the stand-in kubectl gets only nodes, not {' '.join(args) or 'nothing'}")
        nodes = [call(client.get_node, n) for n in args[1:]] if len(args) > 1 else call(client.nodes)
        if opts.output == "json":
            print(json.dumps({"kind": "List", "items": nodes}, indent=2))
        elif opts.output == "name":
            print("\n".join(f"node/{n['name']}" for n in nodes))
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
            table = ([] if opts.no_headers else [headers]) + [_node_row(n, wide) for n in nodes]
            widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
            for r in table:
                print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        return 0
    if opts.verb == "delete":
        if len(args) != 2 or args[0] not in ("node", "nodes", "no"):
            core.die("error: the stand-in kubectl deletes only one node: delete node NAME")
        call(client.delete_node, args[1])
        print(f'node "{args[1]}" deleted')
        return 0
    if len(args) != 1:
        core.die(f"error: {opts.verb} takes one node name")
    name = args[0]
    if opts.verb == "drain":
        if not opts.ignore_daemonsets:
            core.die(f"error: unable to drain node {name!r}: cannot delete DaemonSet-managed Pods "
                     "(use --ignore-daemonsets to ignore): kube-system/kube-proxy")  # fmt: skip
        call(client.patch_node, name, unschedulable=True)
        print(f"node/{name} cordoned")
        call(client.patch_node, name, evicted=True)
        print(f"node/{name} drained")
        return 0
    unschedulable = opts.verb == "cordon"
    call(client.patch_node, name, unschedulable=unschedulable, evicted=False)
    print(f"node/{name} {'cordoned' if unschedulable else 'uncordoned'}")
    return 0


# --- entry ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    prog = os.path.basename(sys.argv[0]) if sys.argv else "kubeadm"
    programs: dict[str, Callable[[list[str]], int]] = {
        "kubeadm": kubeadm_main,
        "kubelet": kubelet_main,
        "kubectl": kubectl_main,
        "containerd": containerd_main,
        "ctr": ctr_main,
        "crictl": crictl_main,
    }
    if prog in ("runc", "containerd-shim-runc-v2"):
        if args in (["--version"], ["-v"]):
            print(f"{prog} version 1.1.14 (stand-in)")
            return 0
        core.die(f"{prog}: the stand-in runs no containers")
    if prog not in programs:
        core.die(f"{prog}: not a program of the kubeadm stand-ins ({', '.join(programs)})")
    return programs[prog](args)
