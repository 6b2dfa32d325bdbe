"""The Clusterfile's spec.registry: sealer's fields and defaults, the round trip of the saved
Clusterfile, and each bad input as one line naming the Clusterfile line."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from builder.errors import ClusterfileError
from builder.runtime.cluster import RegistrySpec
from builder.runtime.clusterfile import dump_clusterfile, parse_clusterfile

DOC = Path(__file__).resolve().parents[3] / "docs" / "clusterfile.md"

HEAD = """\
apiVersion: sealer.io/v2
kind: Cluster
metadata: {name: reg}
spec:
  image: demo/cluster:v1
  hosts:
    - {ips: [10.0.0.1, 10.0.0.2], roles: [master]}
    - {ips: [10.0.0.3], roles: [node]}
"""


def parse(registry: str) -> RegistrySpec:
    text = HEAD + textwrap.indent(textwrap.dedent(registry), "  ")
    return parse_clusterfile(text, path="Clusterfile").registry


def test_no_registry_is_the_local_default() -> None:
    c = parse_clusterfile(HEAD, path="Clusterfile")
    assert c.registry == RegistrySpec()
    assert (c.registry.domain, c.registry.port, c.registry.ha, c.registry.insecure) == (
        "sea.hub",
        5000,
        True,
        False,
    )
    assert [h.ip for h in c.registry_hosts] == ["10.0.0.1", "10.0.0.2"]
    assert "registry" not in dump_clusterfile(c)  # the default is not written


def test_local_registry_fields_and_round_trip() -> None:
    text = HEAD + textwrap.indent(
        textwrap.dedent("""\
        registry:
          localRegistry:
            domain: Hub.Example
            port: 5443
            username: admin
            password: "s3cret:x"
            ha: false
            insecure: false
            cert:
              subjectAltName:
                dnsNames: [registry.example.com, "*.hub.example"]
                ips: [10.0.0.100, "fd00::1"]
        """),
        "  ",
    )
    c = parse_clusterfile(text, path="Clusterfile")
    assert c.registry == RegistrySpec(
        domain="hub.example",
        port=5443,
        username="admin",
        password="s3cret:x",
        ha=False,
        san_dns=("registry.example.com", "*.hub.example"),
        san_ips=("10.0.0.100", "fd00::1"),
    )
    assert c.registry.endpoint == "hub.example:5443"
    assert [h.ip for h in c.registry_hosts] == ["10.0.0.1"]  # ha false: master0 only
    dumped = dump_clusterfile(c)
    assert "password: s3cret:x" in dumped  # the saved Clusterfile is 0600 state
    assert parse_clusterfile(dumped) == c


def test_external_registry() -> None:
    spec = parse("""\
        registry:
          externalRegistry: {domain: registry.example.com, username: u, password: p}
        """)
    assert spec.external and spec.endpoint == "registry.example.com" and spec.port == 443
    assert parse_clusterfile(dump_clusterfile(parse_clusterfile(HEAD, path="C"))).registry == RegistrySpec()
    c = parse_clusterfile(
        HEAD + "  registry:\n    externalRegistry: {domain: r.example, port: 5000}\n", path="Clusterfile"
    )
    assert c.registry.endpoint == "r.example:5000" and c.registry_hosts == ()
    assert parse_clusterfile(dump_clusterfile(c)) == c


def test_registry_password_stays_out_of_repr() -> None:
    spec = parse("registry: {localRegistry: {username: admin, password: hunter2}}\n")
    assert "hunter2" not in repr(spec)


BAD = [
    (
        "registry:\n  localRegistry: {domain: bad_name}\n",
        r"Clusterfile:10: spec.registry.localRegistry.domain: registry domain 'bad_name' is not a DNS name",
    ),
    (
        "registry:\n  localRegistry: {domain: 10.0.0.9}\n",
        r"Clusterfile:10: spec.registry.localRegistry.domain: registry domain '10.0.0.9' is not a DNS name",
    ),
    (
        "registry:\n  localRegistry:\n    port: 70000\n",
        r"Clusterfile:11: spec.registry.localRegistry.port: '70000' is not a port number \(1-65535\)",
    ),
    (
        "registry:\n  localRegistry:\n    port: 0\n",
        r"Clusterfile:11: spec.registry.localRegistry.port: '0' is not a port number",
    ),
    (
        "registry:\n  localRegistry:\n    username: admin\n",
        r"Clusterfile:11: spec.registry.localRegistry.username: a username without a password",
    ),
    (
        "registry:\n  localRegistry:\n    ha: true\n    password: x\n",
        r"Clusterfile:12: spec.registry.localRegistry.password: a password without a username",
    ),
    (
        "registry:\n  localRegistry: {}\n  externalRegistry: {domain: r.example}\n",
        r"Clusterfile:11: spec.registry.externalRegistry: localRegistry and externalRegistry together",
    ),
    (
        "registry:\n  localRegistry:\n    cert:\n      subjectAltName:\n        dnsNames: [ok.example, 'no way']\n",
        r"Clusterfile:13: spec.registry.localRegistry.cert.subjectAltName.dnsNames\[1\]: "
        r"'no way' is neither a DNS name nor an IP address",
    ),
    (
        "registry:\n  localRegistry:\n    cert:\n      subjectAltName:\n        ips: [10.0.0.1, reg.example]\n",
        r"Clusterfile:13: spec.registry.localRegistry.cert.subjectAltName.ips\[1\]: 'reg.example' is not an IP",
    ),
    (
        "registry:\n  localRegistry: {ha: maybe}\n",
        r"Clusterfile:10: spec.registry.localRegistry.ha: expected true or false",
    ),
    (
        "registry:\n  localRegistry: {domian: x}\n",
        r"Clusterfile:10: spec.registry.localRegistry.domian: unknown field",
    ),
    (
        "registry:\n  externalRegistry: {port: 443}\n",
        r"Clusterfile:10: spec.registry.externalRegistry.domain: missing",
    ),
    (
        "registry:\n  externalRegistry: {domain: r.example, ha: true}\n",
        r"Clusterfile:10: spec.registry.externalRegistry.ha: unknown field",
    ),
    (
        "registry:\n  localRegistry: {username: 'a:b', password: x}\n",
        r"Clusterfile:10: spec.registry.localRegistry: registry username 'a:b' is empty or has ':'",
    ),
]


@pytest.mark.parametrize(("registry", "message"), BAD, ids=[m.split(": ", 2)[-1][:40] for _, m in BAD])
def test_bad_registry_is_one_line_at_its_line(registry: str, message: str) -> None:
    with pytest.raises(ClusterfileError) as info:
        parse(registry)
    assert "\n" not in info.value.message
    assert re.match(message, info.value.message), info.value.message


def test_doc_registry_examples_load() -> None:
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL) if "registry:" in b]
    assert len(blocks) >= 2
    specs = [parse_clusterfile(b, path="docs/clusterfile.md").registry for b in blocks]
    assert any(s.external for s in specs) and any(s.has_auth and not s.external for s in specs)
