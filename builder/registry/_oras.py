"""The HTTP side of one registry host: oras-py's `Registry`, with what is wrong for us overridden.

Kept from oras-py: the `requests` session (cookies ignored, TLS settings), the `prefix` scheme,
`_get_location` (some registries answer relative Location headers, oras-py #78) and the bearer
token request of its TokenAuth backend (`request_token`: realm/service/scope, with Basic
credentials when we have them). Overridden:

- `do_request`: bounded retries with exponential backoff and full jitter on dropped/refused
  connections, timeouts, 5xx and 429 (Retry-After honoured), where oras-py retries everything,
  SSL errors excepted, with fixed sleeps of 3**n seconds; Basic challenges (htpasswd
  registries) as well as Bearer ones, where oras-py's token backend only knows Bearer; every
  failure mapped into `builder.errors`, never a ValueError/requests exception.
- Blob upload streams from the file (oras-py's `put_upload` reads the whole blob into memory:
  400 MB RSS for a 380 MB layer): a monolithic PUT whose body is read 1 MB at a time, or
  chunked PATCHes of `chunk_size` bytes each streamed the same way.
- Blob download streams into a sink with digest/size checks done by the sink, and resumes an
  interrupted transfer with `Range: bytes=N-` when the registry honours it (206), else restarts.
- Manifests go up and come down as exact bytes with their media type (oras-py re-encodes a dict).

This module moves bytes; what to move (policy) lives in `client.py`. It runs past ~400 lines
because each override keeps oras-py's method shape next to the reason it differs.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import oras.auth.utils
import oras.provider
import requests

from builder.errors import AuthError, NotFound, RegistryError, RegistryUnavailable
from builder.registry.auth import Credentials
from builder.registry.errors import (
    TEMPORARY_STATUS,
    error_from_exception,
    error_from_response,
    is_plain_http_answer,
    is_retryable_exception,
)

log = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
MAX_MANIFEST_BYTES = 16 << 20
READ_BLOCK = 1 << 20
BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 8.0
PROBE_TIMEOUT_S = 5.0

RetryHook = Callable[[str, int, float, str], None]
ProgressHook = Callable[[int], None]


class Sink(Protocol):
    """Where a download goes: `write` bytes; `reset` drops them to start again from byte 0."""

    def write(self, data: bytes) -> int: ...

    def reset(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest or index as the registry returned it."""

    data: bytes
    media_type: str
    digest: str | None  # the Docker-Content-Digest header, when the registry sent one


def backoff_s(attempt: int) -> float:
    """Full-jitter exponential backoff (AWS architecture blog): uniform in [0, base * 2**n]."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2**attempt))) + 0.05


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


class OrasRegistry(oras.provider.Registry):  # type: ignore[misc]
    """One registry host (`host` as a reference spells it: `127.0.0.1:5000`, `docker.io`)."""

    def __init__(
        self,
        host: str,
        *,
        plain_http: bool,
        verify: bool | str,
        credentials: Credentials | None,
        retries: int,
        timeout_s: float,
        on_retry: RetryHook | None = None,
    ) -> None:
        super().__init__(hostname=host, insecure=plain_http, tls_verify=verify, auth_backend="token")
        self.host = host
        self.api_host = "registry-1.docker.io" if host == "docker.io" else host
        self.credentials = credentials
        if credentials is not None:
            self.auth.set_basic_auth(credentials.username, credentials.password)
        self.retries = max(0, retries)
        self.timeout = (min(10.0, timeout_s), timeout_s)
        self.on_retry = on_retry
        self._authorization: str | None = None  # the header that last worked

    # -- plumbing ---------------------------------------------------------------------------

    def url(self, path: str, **query: str) -> str:
        base = f"{self.prefix}://{self.api_host}{path}"
        return f"{base}?{urlencode(query)}" if query else base

    def _request_once(
        self, method: str, url: str, headers: dict[str, str], data: Any, stream: bool
    ) -> requests.Response:
        sent = dict(headers)
        if self._authorization:
            sent["Authorization"] = self._authorization
        response: requests.Response = self.session.request(
            method,
            url,
            headers=sent,
            data=data,
            stream=stream,
            timeout=self.timeout,
            verify=self._tls_verify,
        )
        if response.status_code != 401 or not self._authenticate(response, sent.get("Authorization")):
            return response
        response.close()
        if data is not None and hasattr(data, "seek"):
            data.seek(0)
        sent["Authorization"] = self._authorization or ""
        retried: requests.Response = self.session.request(
            method,
            url,
            headers=sent,
            data=data,
            stream=stream,
            timeout=self.timeout,
            verify=self._tls_verify,
        )
        return retried

    def _authenticate(self, response: requests.Response, sent: str | None) -> bool:
        """Answer a 401 challenge; False when we have nothing new to offer (the 401 stands).

        `sent` is the Authorization header of the refused request: comparing with it (not with
        the shared state, which another thread may just have set) tells refused credentials
        from a request that went out before the credentials were known.
        """
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if self.credentials is None:
                return False
            header = f"Basic {self.credentials.basic}"
            if sent == header:
                return False  # these credentials were just refused
            self._authorization = header
            return True
        if scheme == "bearer":
            parsed = oras.auth.utils.parse_auth_header(challenge)
            if not parsed.realm:
                return False
            token = self.auth.request_token(parsed)
            if not token or sent == f"Bearer {token}":
                return False
            self._authorization = f"Bearer {token}"
            return True
        return False

    def do_request(
        self,
        url: str,
        method: str = "GET",
        data: Any = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        stream: bool = False,
        *,
        what: str = "the registry",
        retry: bool = True,
    ) -> requests.Response:
        """One request with auth and bounded retries; RegistryUnavailable when nothing answers.

        HTTP error statuses are returned, not raised (callers know what a 404 means to them),
        except that 5xx/429 are retried first. `retry=False` for bodies that cannot be resent.
        """
        if json is not None:
            raise TypeError("send JSON as bytes with its media type")
        attempt = 0
        while True:
            try:
                response = self._request_once(method, url, headers or {}, data, stream)
            except requests.RequestException as exc:
                if not retry or attempt >= self.retries or not is_retryable_exception(exc):
                    raise error_from_exception(exc, host=self.host, what=what) from None
                reason = error_from_exception(exc, host=self.host, what=what).message
                delay = backoff_s(attempt)
            else:
                if not retry or attempt >= self.retries or response.status_code not in TEMPORARY_STATUS:
                    return response
                reason = f"HTTP {response.status_code}"
                delay = backoff_s(attempt)
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    delay = min(float(retry_after), BACKOFF_CAP_S * 4)
                response.close()
            attempt += 1
            self._retrying(what, attempt, delay, reason)
            if data is not None and hasattr(data, "seek"):
                data.seek(0)

    def _retrying(self, what: str, attempt: int, delay: float, reason: str) -> None:
        log.info("retrying %s in %.2fs (attempt %d): %s", what, delay, attempt, reason)
        if self.on_retry is not None:
            self.on_retry(what, attempt, delay, reason)
        time.sleep(delay)

    def _fail(self, response: requests.Response, what: str) -> RegistryError:
        err = error_from_response(response, host=self.host, what=what)
        response.close()
        return err

    # -- scheme and login -------------------------------------------------------------------

    def speaks_tls(self) -> bool:
        """Probe `https://HOST/v2/` once: False only when the server answered in plain HTTP."""
        try:
            self.session.get(
                f"https://{self.api_host}/v2/",
                timeout=(PROBE_TIMEOUT_S, PROBE_TIMEOUT_S),
                verify=self._tls_verify,
            ).close()
        except requests.exceptions.SSLError as exc:
            return not is_plain_http_answer(exc)
        except requests.RequestException:
            return True  # no answer at all: let the real request report it
        return True

    def check_login(self) -> None:
        """GET /v2/ with the credentials (Basic or through the token flow); AuthError if refused."""
        response = self.do_request(self.url("/v2/"), "GET", what="the registry API (/v2/)")
        if response.status_code == 200:
            response.close()
            return
        if response.status_code in (401, 403):
            response.close()
            raise AuthError(
                f"{self.host}: login refused for user {self.credentials.username if self.credentials else '?'!r}",
                status=response.status_code,
                code="UNAUTHORIZED",
                hint="check the user name and password",
            )
        raise self._fail(response, "the registry API (/v2/)")

    # -- manifests --------------------------------------------------------------------------

    def head_manifest(self, repository: str, reference: str) -> tuple[str | None, str, int] | None:
        """(digest header, media type, size) of a manifest, or None when there is none."""
        what = f"manifest {self.host}/{repository}:{reference}"
        response = self.do_request(
            self.url(f"/v2/{repository}/manifests/{reference}"),
            "HEAD",
            headers={"Accept": MANIFEST_ACCEPT},
            what=what,
        )
        response.close()
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, what)
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        size = int(response.headers.get("Content-Length") or -1)
        return response.headers.get("Docker-Content-Digest"), media_type, size

    def fetch_manifest(self, repository: str, reference: str, *, what: str) -> Manifest:
        """GET a manifest or index (any OCI/Docker v2 type); NotFound naming `what`."""
        response = self.do_request(
            self.url(f"/v2/{repository}/manifests/{reference}"),
            "GET",
            headers={"Accept": MANIFEST_ACCEPT},
            stream=True,
            what=what,
        )
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

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str | None:
        """PUT exact bytes under a tag or digest; returns the registry's digest header."""
        what = f"manifest {self.host}/{repository}:{reference}"
        response = self.do_request(
            self.url(f"/v2/{repository}/manifests/{reference}"),
            "PUT",
            data=data,
            headers={"Content-Type": media_type},
            what=what,
        )
        if response.status_code not in (200, 201, 202):
            raise self._fail(response, what)
        response.close()
        return response.headers.get("Docker-Content-Digest")

    # -- blobs ------------------------------------------------------------------------------

    def has_blob(self, repository: str, digest: str) -> bool:
        what = f"blob {digest} in {self.host}/{repository}"
        response = self.do_request(self.url(f"/v2/{repository}/blobs/{digest}"), "HEAD", what=what)
        response.close()
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self._fail(response, what)

    def start_upload(
        self, repository: str, *, mount: str | None = None, source: str | None = None
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
            what=what,
        )
        response.close()
        if response.status_code == 201 and query:
            return None
        if response.status_code != 202:
            raise self._fail(response, what)
        location = self._get_location(response, self._container(repository))
        if not location:
            raise RegistryError(f"{self.host}: the registry started an upload without a Location header")
        return str(location)

    def open_upload(self, repository: str) -> str:
        """POST a plain upload session; returns its URL."""
        location = self.start_upload(repository)
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
    ) -> None:
        """Send `path` to an upload session, streamed; monolithic when chunk_size <= 0."""
        what = f"blob {digest} to {self.host}/{repository}"
        body: _FileBody | None
        if chunk_size > 0 and size > chunk_size:
            offset = 0
            while offset < size:
                length = min(chunk_size, size - offset)
                body = _FileBody(path, offset, length, progress)
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
                        what=what,
                        retry=False,
                    )
                finally:
                    body.close()
                if response.status_code != 202:
                    raise self._fail(response, what)
                response.close()
                location = str(self._get_location(response, self._container(repository)) or location)
                offset += length
            body = None
        else:
            body = _FileBody(path, 0, size, progress)
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
                what=what,
                retry=False,
            )
        finally:
            if body is not None:
                body.close()
        if response.status_code not in (201, 204):
            raise self._fail(response, what)
        response.close()

    def download_blob_to(
        self, repository: str, digest: str, size: int, sink: Sink, *, progress: ProgressHook | None
    ) -> None:
        """Stream a blob into `sink`; resume with Range after a dropped connection (bounded)."""
        what = f"blob {digest} from {self.host}/{repository}"
        url = self.url(f"/v2/{repository}/blobs/{digest}")
        offset = 0
        failures = 0
        while True:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            response = self.do_request(url, "GET", headers=headers, stream=True, what=what)
            if response.status_code == 200 and offset:
                sink.reset()  # the registry ignored Range: start again from byte 0
                if progress is not None:
                    progress(-offset)
                offset = 0
            elif response.status_code not in (200, 206):
                raise self._fail(response, what)
            try:
                for chunk in _iter_body(response):
                    sink.write(chunk)
                    offset += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
            except requests.RequestException as exc:
                failures += 1
                if failures > self.retries or not is_retryable_exception(exc):
                    raise error_from_exception(exc, host=self.host, what=what) from None
                self._retrying(
                    what, failures, backoff_s(failures - 1), f"transfer interrupted at {offset} bytes"
                )
                continue
            finally:
                response.close()
            if offset >= size:
                return
            failures += 1
            if failures > self.retries:
                raise RegistryUnavailable(
                    f"{self.host}: {what} ended after {offset} of {size} bytes", temporary=True
                )
            self._retrying(what, failures, backoff_s(failures - 1), f"short read at {offset} bytes")


def _iter_body(response: requests.Response) -> Iterator[bytes]:
    for chunk in response.iter_content(chunk_size=READ_BLOCK):
        if chunk:
            yield chunk


__all__ = ["MANIFEST_ACCEPT", "Manifest", "NotFound", "OrasRegistry", "Sink", "backoff_s"]
