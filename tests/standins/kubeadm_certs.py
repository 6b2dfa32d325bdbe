"""The kubeadm stand-in's certificate commands (dispatched from kubernetes.kubeadm_main), as
"Certificate Management with kubeadm" and "Reconfiguring a kubeadm cluster" document them:

    kubeadm init phase certs apiserver --config F      apiserver.crt/key from the config's
        ClusterConfiguration (certSANs) and InitConfiguration (advertise address, node name);
        an existing pair is kept ("Using existing apiserver certificate and key"), which is why
        the docs move the old pair aside first
    kubeadm init phase upload-config kubeadm --config F [--kubeconfig K]
        the ClusterConfiguration into the kubeadm-config ConfigMap (joins and upgrades read it)
    kubeadm certs check-expiration                      each certificate's expiry, a table
    kubeadm certs renew all                             every certificate signed again for a
        year, keeping its attributes (subject, SANs): the existing certificate is the source

The API server reads its certificate only when it starts: the static pod must be restarted
(kubernetes.static_pod_main takes the SANs at start).
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from pathlib import Path
from typing import Any

from . import core
from . import kubernetes as k


def _config(path: str) -> tuple[dict[str, Any], str, str]:
    docs = k.read_config(Path(path), ("InitConfiguration", "ClusterConfiguration"))
    cluster = dict(docs.get("ClusterConfiguration") or {})
    init = docs.get("InitConfiguration") or {}
    ip = str((init.get("localAPIEndpoint") or {}).get("advertiseAddress") or "")
    if not ip:
        core.die(f"{path}: InitConfiguration.localAPIEndpoint.advertiseAddress is needed here")
    name = str((init.get("nodeRegistration") or {}).get("name") or socket.gethostname())
    return cluster, ip, name


def phase_certs_apiserver(argv: list[str]) -> int:
    p = k._Parser(prog="kubeadm init phase certs apiserver", allow_abbrev=False)
    p.add_argument("--config", required=True)
    opts = p.parse_args(argv)
    cluster, ip, name = _config(opts.config)
    crt, key = k.PKI / "apiserver.crt", k.PKI / "apiserver.key"
    if crt.exists() and key.exists():
        print("[certs] Using existing apiserver certificate and key")
        return 0
    if not (k.PKI / "ca.key").is_file():
        core.die(f"couldn't load CA certificate ca: open {k.PKI / 'ca.key'}: no such file or directory")
    sans = k._apiserver_cert(cluster, ip, name)
    print('[certs] Generating "apiserver" certificate and key')
    print(f"[certs] apiserver serving cert is signed for DNS names and IPs {sans}")
    return 0


def phase_upload_config(argv: list[str]) -> int:
    if not argv or argv[0] != "kubeadm":
        core.die("the stand-in knows `init phase upload-config kubeadm`")
    p = k._Parser(prog="kubeadm init phase upload-config kubeadm", allow_abbrev=False)
    p.add_argument("--config", required=True)
    p.add_argument("--kubeconfig", default=str(k.ADMIN_CONF))
    opts = p.parse_args(argv[1:])
    cluster, _, _ = _config(opts.config)
    client = k.api(k.read_kubeconfig(Path(opts.kubeconfig))[0])
    stored = k._cluster_config(client)
    k.call(client.put_secret, "kubeadm-config", json.dumps({**stored, **cluster}))
    print(
        '[upload-config] Storing the configuration used in ConfigMap "kubeadm-config" in the "kube-system" Namespace'
    )
    return 0


def _certificates() -> list[Path]:
    """The leaf certificates (the CAs, ca.crt and front-proxy-ca.crt, are not renewed)."""
    return sorted(p for p in k.PKI.glob("*.crt") if p.name != "ca.crt" and not p.name.endswith("-ca.crt"))


def _enddate(path: Path) -> str:
    return k._openssl("x509", "-noout", "-enddate", "-in", str(path)).decode().strip().split("=", 1)[1]


def certs(argv: list[str]) -> int:
    if argv == ["check-expiration"]:
        print(f"{'CERTIFICATE':<25} {'EXPIRES':<25} EXTERNALLY MANAGED")
        for path in _certificates():
            print(f"{path.stem:<25} {_enddate(path):<25} no")
        print(f"\n{'CERTIFICATE AUTHORITY':<25} {'EXPIRES':<25} EXTERNALLY MANAGED")
        print(f"{'ca':<25} {_enddate(k.PKI / 'ca.crt'):<25} no")
        return 0
    if argv == ["renew", "all"]:
        for path in _certificates():
            _renew(path)
            print(f"certificate for {path.stem} renewed")
        print("\nDone renewing certificates. You must restart the kube-apiserver, kube-controller-manager, "
              "kube-scheduler and etcd, so that they can use the new certificates.")  # fmt: skip
        return 0
    core.die(f"the stand-in knows `certs check-expiration` and `certs renew all`, not {' '.join(argv)!r}")


def _renew(crt: Path) -> None:
    """`crt` signed again by the CA for a year with the same key, subject and SANs."""
    key = crt.with_suffix(".key")
    subject = k._openssl("x509", "-noout", "-subject", "-nameopt", "compat", "-in", str(crt)).decode()
    subject = "/" + re.sub(r"^subject=\s*", "", subject.strip()).replace(", ", "/")
    sans = k.certificate_sans(crt)
    csr, ext = crt.with_suffix(".csr"), crt.with_suffix(".ext")
    k._openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", subject)
    alt = ",".join(f"IP:{s}" if _is_ip(s) else f"DNS:{s}" for s in sans)
    ext.write_text(f"subjectAltName={alt}\n" if alt else "")
    k._openssl("x509", "-req", "-in", str(csr), "-CA", str(k.PKI / "ca.crt"), "-CAkey", str(k.PKI / "ca.key"),
               "-CAcreateserial", "-days", "365", "-extfile", str(ext), "-out", str(crt))  # fmt: skip
    for leftover in (csr, ext, k.PKI / "ca.srl"):
        leftover.unlink(missing_ok=True)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
