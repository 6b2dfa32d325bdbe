"""The local cluster registry's key material, made on the controller and kept in the cluster's
state: a CA, the registry's server certificate and key, and the bcrypt htpasswd of its user.

    ~/.sealer/<cluster>/registry/   ca.crt ca.key server.crt server.key htpasswd   (0600, 0700 dir)

`load_or_make` is what every run, join, apply and upgrade calls: the CA is made once and never
again (every host trusts it); the server certificate is issued again only when its SANs must
change (a registry host joins or leaves, the Clusterfile's cert.subjectAltName changes), when
it was not signed by the kept CA, or when less than RENEW_BEFORE of it is left; the htpasswd
only when the credentials change (checked against the kept hash, so no password is stored
twice). `RegistryMaterial.changed` then says every registry host must get it, not only the
hosts the action works on. `planned` is the dry-run's stand-in: nothing is made or written.

ECDSA P-256 keys (what Go's TLS stack, containerd's and distribution's, prefers and is fast
with); the CA is a path-length-0 CA for 10 years, the server certificate a serverAuth leaf of
two years. bcrypt lines are written `$2y$` as Apache's `htpasswd -B` writes them: distribution
checks them with golang.org/x/crypto/bcrypt, which takes $2a$, $2b$ and $2y$ alike.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from builder._fs import atomic_write
from builder.runtime.cluster import Cluster

CA_VALIDITY = datetime.timedelta(days=3650)
SERVER_VALIDITY = datetime.timedelta(days=730)
RENEW_BEFORE = datetime.timedelta(days=90)  # a server certificate with less left is issued again
WAVE_VALIDITY = datetime.timedelta(days=1)  # fan-out's wave servers live for one delivery
# distribution checks the password on every request, bcrypt included: cost 10 is ~50 ms of CPU
# a request there, which made the registry the busiest process of a fan-out delivery (every
# layer of every host is a request). 5 is `htpasswd -B`'s default and ~2 ms; a higher cost
# would guard nothing here, the password being on every host in hosts.toml and config.json.
BCRYPT_ROUNDS = 5
STATE_DIR = "registry"
_BACKDATE = datetime.timedelta(minutes=5)  # hosts whose clocks run a little behind accept it


@dataclass(frozen=True, slots=True)
class RegistryMaterial:
    """What the hosts receive: `ca_pem` (every host trusts it), `cert_pem`/`key_pem` (the
    registry hosts serve with them; SANs: the domain, every registry host, the configured names
    and addresses) and `htpasswd` (bcrypt; None without a username). Secrets stay out of repr.

    An insecure registry (plain HTTP) has no TLS material: `ca_pem`, `cert_pem` and `key_pem`
    are "". `changed`: this action made a new server certificate or htpasswd, so every registry
    host must get it (the cluster's other registry hosts too, not only the action's targets)."""

    ca_pem: str
    cert_pem: str
    key_pem: str = field(repr=False)
    htpasswd: str | None = field(default=None, repr=False)
    changed: bool = False

    @property
    def has_tls(self) -> bool:
        return bool(self.cert_pem)


def server_sans(cluster: Cluster) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(DNS names, IP addresses) the server certificate must name: the domain and the
    configured names; every registry host's address and the configured addresses."""
    spec = cluster.registry
    names = tuple(dict.fromkeys((spec.domain, *spec.san_dns)))
    ips = tuple(dict.fromkeys((*(h.ip for h in cluster.registry_hosts), *spec.san_ips)))
    return names, ips


def planned(cluster: Cluster) -> RegistryMaterial | None:
    """The dry-run's material: placeholders, nothing made or read (None: no local registry)."""
    spec = cluster.registry
    if spec.external:
        return None
    htpasswd = f"{spec.username}:<bcrypt of the password>" if spec.username is not None else None
    if spec.insecure:
        return RegistryMaterial("", "", "", htpasswd)
    return RegistryMaterial(
        f"<CA certificate of cluster {cluster.name}>",
        f"<server certificate of {spec.domain}>",
        "<server key>",
        htpasswd,
    )


def load_or_make(
    state_dir: Path, cluster: Cluster, *, now: datetime.datetime | None = None
) -> RegistryMaterial | None:
    """The cluster's material, kept in `state_dir`/registry and made or renewed as the module
    docstring says (None: an external registry, nothing local to serve)."""
    spec = cluster.registry
    if spec.external:
        return None
    now = now or datetime.datetime.now(datetime.UTC)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # as ClusterState makes it
    directory = state_dir / STATE_DIR
    directory.mkdir(mode=0o700, exist_ok=True)
    htpasswd, htpasswd_changed = _htpasswd(directory, spec.username, spec.password)
    if spec.insecure:
        return RegistryMaterial("", "", "", htpasswd, changed=htpasswd_changed)
    ca_key, ca_cert = _ca(directory, cluster.name, now)
    names, ips = server_sans(cluster)
    key, cert, cert_changed = _server(directory, ca_key, ca_cert, spec.domain, names, ips, now)
    return RegistryMaterial(
        _pem(ca_cert),
        _pem(cert),
        _key_pem(key).decode(),
        htpasswd,
        changed=cert_changed or htpasswd_changed,
    )


# --- the CA and the server certificate -------------------------------------------------------------


def _write(path: Path, data: bytes) -> None:
    atomic_write(path, data, mode=0o600)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _read_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _ca(
    directory: Path, cluster: str, now: datetime.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The kept CA, else a new one. Never made again once kept: every host trusts it."""
    key, cert = _read_key(directory / "ca.key"), _read_cert(directory / "ca.crt")
    if key is not None and cert is not None and cert.public_key() == key.public_key():
        return key, cert
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sealer registry CA of cluster {cluster}")])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(directory / "ca.key", _key_pem(key))
    _write(directory / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _sans_of(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return set(ext.get_values_for_type(x509.DNSName)), {
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)
    }


def _server(
    directory: Path,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    domain: str,
    names: tuple[str, ...],
    ips: tuple[str, ...],
    now: datetime.datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, bool]:
    """The kept server certificate while it still fits, else a new one (the key is kept)."""
    key, cert = _read_key(directory / "server.key"), _read_cert(directory / "server.crt")
    if (
        key is not None
        and cert is not None
        and cert.public_key() == key.public_key()
        and _signed_by(cert, ca_cert)
        and _sans_of(cert) == (set(names), set(ips))
        and cert.not_valid_after_utc - now > RENEW_BEFORE
    ):
        return key, cert, False
    if key is None:
        key = _new_key()
        _write(directory / "server.key", _key_pem(key))
    cert = _issue(
        ca_key, ca_cert, key, domain, names, ips, min(now + SERVER_VALIDITY, ca_cert.not_valid_after_utc), now
    )
    _write(directory / "server.crt", cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, True


def wave_certificate(
    state_dir: Path, ips: tuple[str, ...], *, now: datetime.datetime | None = None
) -> tuple[str, str] | None:
    """(certificate, key) PEM for fan-out's wave servers: the hosts `ips`, signed by the
    cluster's kept CA, valid a day, the key new and kept nowhere but in the plan (the wave
    servers are stopped and their files removed when the delivery ends). None when this
    machine does not hold the CA key (a cluster imported without it)."""
    directory = state_dir / STATE_DIR
    ca_key, ca_cert = _read_key(directory / "ca.key"), _read_cert(directory / "ca.crt")
    if ca_key is None or ca_cert is None or not ips:
        return None
    now = now or datetime.datetime.now(datetime.UTC)
    key = _new_key()
    cert = _issue(ca_key, ca_cert, key, "sealer fan-out wave", (), ips, now + WAVE_VALIDITY, now)
    return _pem(cert), _key_pem(key).decode()


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    names: tuple[str, ...],
    ips: tuple[str, ...],
    not_after: datetime.datetime,
    now: datetime.datetime,
) -> x509.Certificate:
    """A server certificate for `key` naming `names` and `ips`, signed by the CA."""
    public = key.public_key()
    san: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


# --- the htpasswd ---------------------------------------------------------------------------------------


def _htpasswd(directory: Path, username: str | None, password: str | None) -> tuple[str | None, bool]:
    """The kept htpasswd line while it is for these credentials, else a new one."""
    path = directory / "htpasswd"
    if username is None or password is None:
        if path.exists():
            os.unlink(path)
            return None, True
        return None, False
    try:
        kept = path.read_text().strip()
    except OSError:
        kept = ""
    user, _, hashed = kept.partition(":")
    if user == username and hashed[4:7] == f"{BCRYPT_ROUNDS:02d}$" and _matches(password, hashed):
        return kept + "\n", False  # another cost (an older sealer's 10) is hashed again
    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()
    line = f"{username}:$2y${digest[4:]}\n"
    _write(path, line.encode())
    return line, True


def _matches(password: str, hashed: str) -> bool:
    # python's bcrypt takes $2b$ (and $2a$); what we write is $2y$, the same algorithm
    normal = "$2b$" + hashed[4:] if hashed.startswith("$2y$") else hashed
    try:
        return bcrypt.checkpw(password.encode(), normal.encode())
    except ValueError:
        return False
