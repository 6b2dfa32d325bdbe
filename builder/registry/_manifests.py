"""Manifest requests: `ManifestRequests` (HEAD, GET, PUT of a manifest or index).

Manifests go up and come down as exact bytes with their media type (oras-py re-encodes a
dict), so the digest the client computed is the digest the registry stores. A manifest PUT
must answer 201 (202 from registries that followed the 2015 spec, distribution#142/#744), not
a bare 200: a lie there would turn into a false success.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

from builder.errors import RegistryError, RegistryUnavailable
from builder.registry._http import RegistryHttp
from builder.registry.budget import RetryBudget

MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
MAX_MANIFEST_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest or index as the registry returned it."""

    data: bytes
    media_type: str
    digest: str | None  # the Docker-Content-Digest header, when the registry sent one


class ManifestRequests(RegistryHttp):
    """The manifest requests of `OrasRegistry`; see the module docstring."""

    def _manifest_request(
        self,
        method: str,
        repository: str,
        reference: str,
        *,
        budget: RetryBudget,
        what: str,
        stream: bool = False,
    ) -> requests.Response:
        """HEAD or GET a manifest or index, accepting every OCI/Docker v2 type."""
        return self.do_request(
            self.url(f"/v2/{repository}/manifests/{reference}"),
            method,
            headers={"Accept": MANIFEST_ACCEPT},
            stream=stream,
            budget=budget,
            what=what,
        )

    def head_manifest(
        self, repository: str, reference: str, *, budget: RetryBudget
    ) -> tuple[str | None, str, int] | None:
        """(digest header, media type, size or -1) of a manifest, or None when there is none."""
        what = f"manifest {self.host}/{repository}:{reference}"
        response = self._manifest_request("HEAD", repository, reference, budget=budget, what=what)
        response.close()
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, what)
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        length = response.headers.get("Content-Length", "")
        size = int(length) if length.isdigit() else -1
        return response.headers.get("Docker-Content-Digest") or None, media_type, size

    def fetch_manifest(self, repository: str, reference: str, *, what: str, budget: RetryBudget) -> Manifest:
        """GET a manifest or index (any OCI/Docker v2 type); NotFound naming `what`."""
        response = self._manifest_request("GET", repository, reference, budget=budget, what=what, stream=True)
        if response.status_code != 200:
            raise self._fail(response, what)
        try:
            data = response.raw.read(MAX_MANIFEST_BYTES + 1, decode_content=True)
        except Exception as exc:  # urllib3 errors while reading the body
            raise RegistryUnavailable(
                f"{self.host}: connection lost while reading {what}", temporary=True
            ) from exc
        finally:
            response.close()
        if len(data) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"{what} is larger than {MAX_MANIFEST_BYTES} bytes; refusing it")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(data, media_type, response.headers.get("Docker-Content-Digest"))

    def put_manifest(
        self, repository: str, reference: str, data: bytes, media_type: str, *, budget: RetryBudget
    ) -> str | None:
        """PUT exact bytes under a tag or digest; returns the registry's digest header.

        The spec answer is 201 Created; 202 is what distribution answered before 2015
        (distribution#142, #744) and is still accepted. A 200 is not a registry's answer."""
        what = f"manifest {self.host}/{repository}:{reference}"
        response = self.do_request(
            self.url(f"/v2/{repository}/manifests/{reference}"),
            "PUT",
            data=data,
            headers={"Content-Type": media_type},
            budget=budget,
            what=what,
        )
        if response.status_code not in (201, 202):
            raise self._unexpected(response, f"PUT of {what}", "201 Created")
        response.close()
        return response.headers.get("Docker-Content-Digest") or None
