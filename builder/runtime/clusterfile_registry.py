"""The Clusterfile's `spec.registry` (sealer's `v2.Registry`), read and written.

    registry:
      localRegistry:            # the default when spec.registry is absent
        domain: sea.hub         # default sea.hub
        port: 5000              # default 5000
        username: admin         # with password: htpasswd auth (bcrypt); neither: no auth
        password: secret
        ha: true                # every master serves (default); false: master0 only
        insecure: false         # true: plain HTTP, no certificate
        cert:
          subjectAltName:
            dnsNames: [registry.example.com]
            ips: [10.0.0.100]
      externalRegistry:         # instead of localRegistry: a registry the user runs
        domain: registry.example.com
        port: 443               # default 443 (the endpoint is then the bare domain)
        username: admin
        password: secret

Field names and defaults are sealer's (types/api/v2 `LocalRegistry`, `ExternalRegistry`,
`RegistryConfig`, `TLSCert`, `SubjectAltName`). Kept apart from the Cluster document's
reader (clusterfile_cluster.py), which calls `read_registry` with its reader (strict fields,
errors at the line), and from clusterfile_writer.py, which calls `dump_registry`; the two
change together so load(dump(c)) == c holds.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import yaml

from builder.runtime.cluster_addresses import parse_ip
from builder.runtime.cluster_registry import (
    EXTERNAL_REGISTRY_PORT,
    RegistrySpec,
    check_registry_domain,
    check_san_dns,
)
from builder.runtime.clusterfile_reader import NodeReader

_REGISTRY_FIELDS = ("localRegistry", "externalRegistry")
_CONFIG_FIELDS = ("domain", "port", "username", "password")
_LOCAL_FIELDS = (*_CONFIG_FIELDS, "ha", "insecure", "cert")


def read_registry(reader: NodeReader, node: yaml.Node) -> RegistrySpec:
    """`spec.registry` as a RegistrySpec; each bad field fails at its own line."""
    where = "spec.registry"
    top = reader.mapping(node, where, _REGISTRY_FIELDS)
    if "localRegistry" in top and "externalRegistry" in top:
        reader.fail(
            top["externalRegistry"],
            f"{where}.externalRegistry",
            "localRegistry and externalRegistry together: the cluster uses one registry",
            hint="keep localRegistry (sealer serves it on the masters) or externalRegistry (yours)",
        )
    if "externalRegistry" in top:
        entry_where = f"{where}.externalRegistry"
        entry = reader.mapping(top["externalRegistry"], entry_where, _CONFIG_FIELDS)
        if "domain" not in entry:
            reader.fail(
                top["externalRegistry"], f"{entry_where}.domain", "missing", hint="the registry's DNS name"
            )
        return _spec(reader, top["externalRegistry"], entry_where, entry, external=True)
    if "localRegistry" not in top:
        return RegistrySpec()
    entry_where = f"{where}.localRegistry"
    entry = reader.mapping(top["localRegistry"], entry_where, _LOCAL_FIELDS)
    return _spec(reader, top["localRegistry"], entry_where, entry, external=False)


def _spec(
    reader: NodeReader, node: yaml.Node, where: str, entry: dict[str, yaml.Node], *, external: bool
) -> RegistrySpec:
    values: dict[str, Any] = {"external": external}
    if external:
        values["port"] = EXTERNAL_REGISTRY_PORT
    if "domain" in entry:
        domain = reader.required_string(entry["domain"], f"{where}.domain")
        values["domain"] = reader.check(
            entry["domain"], f"{where}.domain", partial(check_registry_domain, domain)
        )
    if "port" in entry:
        values["port"] = reader.port(entry["port"], f"{where}.port")
    for key in ("username", "password"):
        if key in entry:
            values[key] = reader.string(entry[key], f"{where}.{key}")
    for key in ("ha", "insecure"):
        if key in entry:
            values[key] = reader.boolean(entry[key], f"{where}.{key}")
    if "cert" in entry:
        values["san_dns"], values["san_ips"] = _sans(reader, entry["cert"], f"{where}.cert")
    for mine, other in (("username", "password"), ("password", "username")):
        if values.get(mine) is not None and values.get(other) is None:
            reader.fail(
                entry[mine],
                f"{where}.{mine}",
                f"a {mine} without a {other}",
                hint="give both username and password, or neither (no auth)",
            )
    return reader.check(node, where, lambda: RegistrySpec(**values))


def _sans(reader: NodeReader, node: yaml.Node, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    cert = reader.mapping(node, where, ("subjectAltName",))
    if "subjectAltName" not in cert:
        return (), ()
    san_where = f"{where}.subjectAltName"
    san = reader.mapping(cert["subjectAltName"], san_where, ("dnsNames", "ips"))
    dns: list[str] = []
    ips: list[str] = []
    if "dnsNames" in san:
        for i, name in enumerate(reader.strings(san["dnsNames"], f"{san_where}.dnsNames")):
            item = san["dnsNames"].value[i]
            dns.append(reader.check(item, f"{san_where}.dnsNames[{i}]", partial(check_san_dns, name)))
    if "ips" in san:
        for i, ip in enumerate(reader.strings(san["ips"], f"{san_where}.ips")):
            item = san["ips"].value[i]
            ips.append(
                reader.check(
                    item,
                    f"{san_where}.ips[{i}]",
                    partial(parse_ip, ip),
                    hint="ips take addresses; names go in dnsNames",
                )
            )
    return tuple(dns), tuple(ips)


def dump_registry(spec: RegistrySpec) -> dict[str, Any] | None:
    """`spec.registry` for `spec` (None for the default local registry: nothing to write)."""
    if spec == RegistrySpec():
        return None
    entry: dict[str, Any] = {"domain": spec.domain, "port": spec.port}
    if spec.username is not None:
        entry["username"] = spec.username
        entry["password"] = spec.password
    if spec.external:
        return {"externalRegistry": entry}
    entry["ha"] = spec.ha
    entry["insecure"] = spec.insecure
    if spec.san_dns or spec.san_ips:
        san: dict[str, list[str]] = {}
        if spec.san_dns:
            san["dnsNames"] = list(spec.san_dns)
        if spec.san_ips:
            san["ips"] = list(spec.san_ips)
        entry["cert"] = {"subjectAltName": san}
    return {"localRegistry": entry}


__all__ = ["dump_registry", "read_registry"]
