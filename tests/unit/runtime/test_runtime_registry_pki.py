"""The cluster registry's key material: made once, kept 0600 in the cluster's state, reused;
the server certificate issued again only when its SANs change or it nears expiry; the htpasswd
only when the credentials change. Checked with openssl and Apache's htpasswd, not only with
the library that made them."""

from __future__ import annotations

import datetime
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from builder.runtime import registry_pki
from builder.runtime.cluster import Cluster, HostSpec, RegistrySpec, Role

NOW = datetime.datetime(2026, 12, 6, tzinfo=datetime.UTC)


def cluster(masters: int = 2, **registry: object) -> Cluster:
    hosts = [HostSpec(f"10.0.0.{i + 1}", (Role.MASTER,)) for i in range(masters)]
    hosts.append(HostSpec("10.0.0.50", (Role.NODE,)))
    return Cluster("reg", "demo/x:v1", tuple(hosts), registry=RegistrySpec(**registry))  # type: ignore[arg-type]


def sans(pem: str) -> tuple[set[str], set[str]]:
    cert = x509.load_pem_x509_certificate(pem.encode())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)), {
        str(i) for i in ext.get_values_for_type(x509.IPAddress)
    }


def test_made_once_kept_0600_and_verified_by_openssl(tmp_path: Path) -> None:
    c = cluster(san_dns=("registry.example.com",), san_ips=("10.0.0.100",))
    m = registry_pki.load_or_make(tmp_path, c, now=NOW)
    assert m is not None and m.changed and m.has_tls and m.htpasswd is None
    state = tmp_path / "registry"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert sorted(p.name for p in state.iterdir()) == ["ca.crt", "ca.key", "server.crt", "server.key"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in state.iterdir())
    assert sans(m.cert_pem) == ({"sea.hub", "registry.example.com"}, {"10.0.0.1", "10.0.0.2", "10.0.0.100"})
    ca = x509.load_pem_x509_certificate(m.ca_pem.encode())
    server = x509.load_pem_x509_certificate(m.cert_pem.encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.not_valid_after_utc - NOW > datetime.timedelta(days=3600)
    assert datetime.timedelta(days=365) <= server.not_valid_after_utc - NOW <= datetime.timedelta(days=731)
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # openssl, as a TLS client would: the chain, the purpose, the name
    (tmp_path / "ca.pem").write_text(m.ca_pem)
    (tmp_path / "server.pem").write_text(m.cert_pem)
    at = str(int((NOW + datetime.timedelta(days=1)).timestamp()))
    for extra in (["-verify_hostname", "sea.hub"], ["-verify_ip", "10.0.0.2"]):
        subprocess.run(
            [
                "openssl",
                "verify",
                "-attime",
                at,
                "-purpose",
                "sslserver",
                *extra,
                "-CAfile",
                tmp_path / "ca.pem",
                tmp_path / "server.pem",
            ],
            check=True,
            capture_output=True,
        )
    bad = subprocess.run(
        [
            "openssl",
            "verify",
            "-attime",
            at,
            "-verify_hostname",
            "other.hub",
            "-CAfile",
            tmp_path / "ca.pem",
            tmp_path / "server.pem",
        ],
        capture_output=True,
    )
    assert bad.returncode != 0


def test_reused_by_later_runs(tmp_path: Path) -> None:
    first = registry_pki.load_or_make(tmp_path, cluster(), now=NOW)
    again = registry_pki.load_or_make(tmp_path, cluster(), now=NOW + datetime.timedelta(days=30))
    assert first is not None and again is not None
    assert (again.ca_pem, again.cert_pem, again.key_pem) == (first.ca_pem, first.cert_pem, first.key_pem)
    assert not again.changed


def test_a_master_joining_with_ha_reissues_the_server_certificate_only(tmp_path: Path) -> None:
    first = registry_pki.load_or_make(tmp_path, cluster(2), now=NOW)
    joined = registry_pki.load_or_make(tmp_path, cluster(3), now=NOW)
    assert first is not None and joined is not None
    assert joined.changed and joined.ca_pem == first.ca_pem and joined.cert_pem != first.cert_pem
    assert sans(joined.cert_pem)[1] == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
    left = registry_pki.load_or_make(tmp_path, cluster(1), now=NOW)
    assert left is not None and left.changed and sans(left.cert_pem)[1] == {"10.0.0.1"}


def test_without_ha_a_master_joining_changes_nothing(tmp_path: Path) -> None:
    first = registry_pki.load_or_make(tmp_path, cluster(1, ha=False), now=NOW)
    joined = registry_pki.load_or_make(tmp_path, cluster(3, ha=False), now=NOW)
    assert first is not None and joined is not None
    assert not joined.changed and joined.cert_pem == first.cert_pem


def test_renewed_near_expiry_with_the_same_ca(tmp_path: Path) -> None:
    first = registry_pki.load_or_make(tmp_path, cluster(), now=NOW)
    later = registry_pki.load_or_make(tmp_path, cluster(), now=NOW + datetime.timedelta(days=700))
    assert first is not None and later is not None
    assert later.changed and later.ca_pem == first.ca_pem and later.cert_pem != first.cert_pem


def test_a_lost_server_certificate_is_issued_again_by_the_kept_ca(tmp_path: Path) -> None:
    first = registry_pki.load_or_make(tmp_path, cluster(), now=NOW)
    (tmp_path / "registry" / "server.crt").write_text("garbage")
    again = registry_pki.load_or_make(tmp_path, cluster(), now=NOW)
    assert first is not None and again is not None and again.changed and again.ca_pem == first.ca_pem


def test_htpasswd_is_bcrypt_2y_checked_by_apache_htpasswd(tmp_path: Path) -> None:
    m = registry_pki.load_or_make(tmp_path, cluster(username="admin", password="s3cret pass"), now=NOW)
    assert m is not None and m.htpasswd is not None
    assert m.htpasswd.startswith("admin:$2y$05$") and "s3cret" not in repr(m)
    path = tmp_path / "registry" / "htpasswd"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (
        subprocess.run(["htpasswd", "-vb", path, "admin", "s3cret pass"], capture_output=True).returncode == 0
    )
    assert subprocess.run(["htpasswd", "-vb", path, "admin", "wrong"], capture_output=True).returncode != 0
    same = registry_pki.load_or_make(tmp_path, cluster(username="admin", password="s3cret pass"), now=NOW)
    assert same is not None and same.htpasswd == m.htpasswd and not same.changed
    other = registry_pki.load_or_make(tmp_path, cluster(username="admin", password="new"), now=NOW)
    assert other is not None and other.changed and other.htpasswd != m.htpasswd
    assert other.cert_pem == m.cert_pem  # credentials do not touch the certificate
    none = registry_pki.load_or_make(tmp_path, cluster(), now=NOW)
    assert none is not None and none.htpasswd is None and none.changed and not path.exists()


def test_a_kept_htpasswd_of_another_bcrypt_cost_is_hashed_again(tmp_path: Path) -> None:
    # an older sealer wrote cost 10: ~50 ms of the registry's CPU a request (registry_pki.BCRYPT_ROUNDS)
    (tmp_path / "registry").mkdir()
    old = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=10)).decode()
    (tmp_path / "registry" / "htpasswd").write_text(f"admin:$2y${old[4:]}\n")
    m = registry_pki.load_or_make(tmp_path, cluster(username="admin", password="s3cret"), now=NOW)
    assert m is not None and m.changed and m.htpasswd is not None and m.htpasswd.startswith("admin:$2y$05$")
    again = registry_pki.load_or_make(tmp_path, cluster(username="admin", password="s3cret"), now=NOW)
    assert again is not None and not again.changed and again.htpasswd == m.htpasswd


def test_insecure_has_no_tls_and_external_has_nothing(tmp_path: Path) -> None:
    m = registry_pki.load_or_make(tmp_path, cluster(insecure=True, username="u", password="p"), now=NOW)
    assert m is not None and not m.has_tls and m.ca_pem == "" and m.htpasswd is not None
    ext = replace(cluster(), registry=RegistrySpec(domain="r.example", external=True, port=443))
    assert registry_pki.load_or_make(tmp_path / "ext", ext) is None
    assert not (tmp_path / "ext").exists()


@pytest.mark.parametrize("insecure", [False, True])
def test_planned_makes_and_reads_nothing(tmp_path: Path, insecure: bool) -> None:
    m = registry_pki.planned(cluster(insecure=insecure, username="u", password="p"))
    assert m is not None and m.has_tls is not insecure and m.htpasswd == "u:<bcrypt of the password>"
    assert not list(tmp_path.iterdir())
