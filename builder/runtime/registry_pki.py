"""The local cluster registry's key material, made on the controller and kept in the cluster's
state: a CA, the registry's server certificate and key, and the bcrypt htpasswd of its user.

(Contract shared by the registry service phase and the hosts' trust/mirror phase; the
functions that make and keep the material follow it here.)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RegistryMaterial:
    """What the hosts receive: `ca_pem` (every host trusts it), `cert_pem`/`key_pem` (the
    registry hosts serve with them; SANs: the domain, every registry host, the configured names
    and addresses) and `htpasswd` (bcrypt; None without a username). Secrets stay out of repr."""

    ca_pem: str
    cert_pem: str
    key_pem: str = field(repr=False)
    htpasswd: str | None = field(default=None, repr=False)
