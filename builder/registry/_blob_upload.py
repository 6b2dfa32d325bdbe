"""Blob upload: `BlobUploads` (existence check, upload sessions and cross-repository mounts,
streamed upload).

Blob upload streams from the file (oras-py's `put_upload` reads the whole blob into memory:
400 MB RSS for a 380 MB layer): a monolithic PUT whose body is read 1 MB at a time, or chunked
PATCHes of `chunk_size` bytes each streamed the same way. Answers are held to the distribution
spec where a lie would turn into a false success: a blob HEAD counts as "already there" only
with the blob's Content-Length (and digest, when sent), and an upload must end in 201/204.
A dropped upload is not replayed here (its body is a stream): the push starts a fresh session.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from builder.errors import RegistryError
from builder.registry._http import READ_BLOCK, ProgressHook, RegistryHttp
from builder.registry.budget import RetryBudget

log = logging.getLogger(__name__)


class _FileBody:
    """A request body read from `path[offset:offset+length]` in 1 MB blocks, re-readable.

    urllib3 reads a file body `blocksize` (16 KB) at a time; returning 1 MB per read is allowed
    (it sends what `read` returns) and costs 64x fewer Python round trips. `__len__` gives
    requests the Content-Length; `seek(0)` lets an auth retry send the body again.
    """

    def __init__(self, path: Path, offset: int, length: int, progress: ProgressHook | None) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._offset = offset
        self._length = length
        self._sent = 0
        self._progress = progress
        self._f.seek(offset)

    def __len__(self) -> int:
        return self._length - self._sent

    def read(self, n: int = -1) -> bytes:
        remaining = self._length - self._sent
        if remaining <= 0:
            return b""
        data = self._f.read(min(max(n, READ_BLOCK), remaining))
        self._sent += len(data)
        if self._progress is not None and data:
            self._progress(len(data))
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        if pos != 0 or whence != 0:
            raise OSError("only seek(0) is supported")
        if self._progress is not None and self._sent:
            self._progress(-self._sent)
        self._sent = 0
        self._f.seek(self._offset)
        return 0

    def tell(self) -> int:
        return self._sent

    def close(self) -> None:
        self._f.close()


class BlobUploads(RegistryHttp):
    """The blob upload requests of `OrasRegistry`; see the module docstring."""

    def has_blob(self, repository: str, digest: str, size: int, *, budget: RetryBudget) -> bool:
        """True when HEAD answers 200 with the blob's size as Content-Length and, when the
        registry sends one, its digest as Docker-Content-Digest (the spec requires both on a
        200; some registries leave the digest out). Anything less is "not there": the blob is
        uploaded, and the upload's own answer is checked."""
        what = f"blob {digest} in {self.host}/{repository}"
        response = self.do_request(
            self.url(f"/v2/{repository}/blobs/{digest}"), "HEAD", budget=budget, what=what
        )
        response.close()
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise self._fail(response, what)
        length = response.headers.get("Content-Length", "")
        header = response.headers.get("Docker-Content-Digest")
        if length.isdigit() and int(length) == size and (not header or header == digest):
            return True
        log.info(
            "%s: HEAD answered 200 with Content-Length %r and Docker-Content-Digest %r, not %d "
            "and %s: uploading the blob",
            what,
            length,
            header,
            size,
            digest,
        )
        return False

    def start_upload(
        self,
        repository: str,
        *,
        budget: RetryBudget,
        mount: str | None = None,
        source: str | None = None,
    ) -> str | None:
        """POST an upload session; with `mount`/`source` try a cross-repository mount first.

        Returns None when the mount succeeded (201), else the session URL to upload to.
        """
        query = {"mount": mount, "from": source} if mount and source else {}
        what = f"blob upload to {self.host}/{repository}"
        response = self.do_request(
            self.url(f"/v2/{repository}/blobs/uploads/", **query),
            "POST",
            headers={"Content-Length": "0"},
            budget=budget,
            what=what,
        )
        response.close()
        if response.status_code == 201 and query:
            return None
        if response.status_code != 202:
            raise self._unexpected(response, f"start of the {what}", "202 Accepted with a Location")
        location = self._get_location(response, self._container(repository))
        if not location:
            raise RegistryError(
                f"{self.host}: the registry started an upload without a Location header",
                hint="the server does not follow the OCI distribution spec; check the registry address",
            )
        return str(location)

    def open_upload(self, repository: str, *, budget: RetryBudget) -> str:
        """POST a plain upload session; returns its URL."""
        location = self.start_upload(repository, budget=budget)
        assert location is not None  # no mount asked, so no 201
        return location

    def _container(self, repository: str) -> Any:
        return self.get_container(f"{self.api_host}/{repository}")

    def upload_blob_file(
        self,
        repository: str,
        location: str,
        path: Path,
        digest: str,
        size: int,
        *,
        chunk_size: int,
        progress: ProgressHook | None,
        budget: RetryBudget,
    ) -> None:
        """Send `path` to an upload session, streamed; monolithic when chunk_size <= 0.

        Bytes leaving count as progress for the budget; the closing PUT may wait the whole
        budget for its answer (a registry may copy a big blob in its storage before it answers).
        """
        what = f"blob {digest} to {self.host}/{repository}"

        def moved(n: int) -> None:
            budget.progress()
            if progress is not None:
                progress(n)

        body: _FileBody | None
        if chunk_size > 0 and size > chunk_size:
            offset = 0
            while offset < size:
                length = min(chunk_size, size - offset)
                body = _FileBody(path, offset, length, moved)
                try:
                    response = self.do_request(
                        location,
                        "PATCH",
                        data=body,
                        headers={
                            "Content-Type": "application/octet-stream",
                            "Content-Range": f"{offset}-{offset + length - 1}",
                            "Content-Length": str(length),
                        },
                        budget=budget,
                        what=what,
                        retry=False,
                    )
                finally:
                    body.close()
                if response.status_code != 202:
                    raise self._unexpected(response, f"chunk of {what}", "202 Accepted")
                response.close()
                location = str(self._get_location(response, self._container(repository)) or location)
                offset += length
            body = None
        else:
            body = _FileBody(path, 0, size, moved)
        sep = "&" if "?" in location else "?"
        try:
            response = self.do_request(
                f"{location}{sep}{urlencode({'digest': digest})}",
                "PUT",
                data=body,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(body) if body else 0),
                },
                budget=budget,
                what=what,
                retry=False,
                read_timeout_s=budget.timeout_s,
            )
        finally:
            if body is not None:
                body.close()
        if response.status_code not in (201, 204):
            raise self._unexpected(response, f"upload of {what}", "201 Created")
        response.close()
        header = response.headers.get("Docker-Content-Digest")
        if header and header != digest:
            raise RegistryError(
                f"{self.host}: the registry stored blob {digest} of {repository} as {header}",
                hint="the registry or something between us changed the content",
            )
