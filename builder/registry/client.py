"""Push, pull, resolve, exists, login and logout of ClusterImages: the policy on top of `_oras`.

`RegistryClient` puts together push (`_push.py`), pull (`_pull.py`) and the plumbing both share
(`_client_base.py`: registries per host, budgets, events, threads, blob-location cache), and
holds the small operations itself: resolve, exists, login and logout. `RegistryOptions`
(options.py) and `is_loopback` are re-exported here, where callers import them.

Scheme: `plain_http=True` always uses http, `False` always https. `None` (the default) uses
https, except for loopback registries (`localhost`, 127.0.0.0/8, `::1`): there one TLS probe of
`/v2/` decides, and plain HTTP is used only when the port answers in plain HTTP (as docker
treats 127.0.0.0/8 as an insecure registry). A loopback registry that speaks TLS is verified.

Time: each operation (push, pull, resolve, exists, login) draws its retries and its waiting
from one `RetryBudget` (budget.py), shared by its blobs and threads.
"""

from __future__ import annotations

from builder.image.descriptor import Descriptor
from builder.registry import auth
from builder.registry._client_base import is_loopback
from builder.registry._pull import PullClient, _media_type
from builder.registry._push import PushClient
from builder.registry.options import RegistryOptions


class RegistryClient(PushClient, PullClient):
    """Moves images between a `Store` and OCI registries; see the module docstring."""

    # -- resolve / exists -------------------------------------------------------------------

    def resolve(self, ref: str) -> Descriptor:
        """The descriptor of `ref`'s manifest or index on the registry; NotFound if none."""
        budget = self._budget()
        target = self._target(ref)
        what = f"manifest {target.ref}"
        got = target.registry.fetch_manifest(
            target.repository, target.tag_or_digest, what=what, budget=budget
        )
        digest = self._check_manifest_digest(target, got.data, got.digest)
        media_type = _media_type(got.data, got.media_type, what)
        return Descriptor(media_type, digest, len(got.data))

    def exists(self, ref: str) -> bool:
        """True when `ref` names a manifest or index on the registry."""
        budget = self._budget()
        target = self._target(ref)
        found = target.registry.head_manifest(target.repository, target.tag_or_digest, budget=budget)
        return found is not None

    # -- login / logout ---------------------------------------------------------------------

    def login(self, registry: str, username: str, password: str) -> None:
        """Check the credentials against `registry` (GET /v2/), then keep them: in the credential
        helper the auth file names for it, else in the file."""
        host = _registry_host(registry)
        credentials = auth.Credentials(username, password)
        budget = self._budget()  # before the TLS probe, which counts against it
        client = self._new_registry(host, credentials)
        try:
            client.check_login(budget=budget)
        finally:
            client.session.close()
        auth.store_credentials(self.auth_file, host, credentials)
        with self._lock:
            self._registries.pop(host, None)

    def logout(self, registry: str) -> bool:
        """Forget the credentials for `registry` (helper and file); False when there were none."""
        host = _registry_host(registry)
        with self._lock:
            self._registries.pop(host, None)
        return auth.remove_credentials(self.auth_file, host)


def _registry_host(text: str) -> str:
    """`https://reg.example:5000/` -> `reg.example:5000`; docker hub aliases -> `docker.io`."""
    host = text.strip()
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix) :]
    host = host.split("/", 1)[0]
    if host in ("index.docker.io", "registry-1.docker.io"):
        return "docker.io"
    return host


__all__ = ["RegistryClient", "RegistryOptions", "is_loopback"]
