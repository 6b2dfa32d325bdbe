"""The HTTP side of one registry host: oras-py's `Registry`, with what is wrong for us overridden.

Kept from oras-py: the `requests` session (cookies ignored, TLS settings), the `prefix` scheme,
`_get_location` (some registries answer relative Location headers, oras-py #78) and the bearer
token request of its TokenAuth backend (`request_token`: realm/service/scope, with Basic
credentials when we have them). Overridden:

- `do_request`: retries on timeouts, dropped connections, 5xx and 429 (Retry-After honoured)
  drawn from the operation's `RetryBudget` (budget.py: one count and one no-progress deadline
  per push/pull, every connect and read bounded), where oras-py retries everything, SSL errors
  excepted, with fixed sleeps of 3**n seconds and no timeout. A refused connection fails at
  once, not retried: nothing listens on that port, and waiting 5 s of backoff for it to start
  only delayed the one-line error (docker and skopeo fail at once too). Basic
  challenges (htpasswd registries) as well as Bearer ones, where oras-py's token backend only
  knows Bearer; every failure mapped into `builder.errors`, never a ValueError/requests
  exception. oras-py's own token requests get a default timeout through the session adapter.
- Answers are held to the distribution spec where a lie would turn into a false success: a
  blob HEAD counts as "already there" only with the blob's Content-Length (and digest, when
  sent), an upload must end in 201/204, a manifest PUT in 201 (202 from registries that
  followed the 2015 spec, distribution#142/#744), not a bare 200.
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

import errno
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import oras.auth.utils
import oras.provider
import requests
import requests.adapters

from builder.errors import AuthError, NotFound, RegistryError, RegistryUnavailable
from builder.registry.auth import Credentials
from builder.registry.budget import RetryBudget
from builder.registry.errors import (
    TEMPORARY_STATUS,
    error_from_exception,
    error_from_response,
    error_from_status,
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
PROBE_TIMEOUT_S = 5.0

ProgressHook = Callable[[int], None]


class DownloadSink(Protocol):
    """Where a download goes: `write` bytes; `reset` drops them to start again from byte 0."""

    def write(self, data: bytes) -> int: ...

    def reset(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest or index as the registry returned it."""

    data: bytes
    media_type: str
    digest: str | None  # the Docker-Content-Digest header, when the registry sent one


class _DefaultTimeout(requests.adapters.HTTPAdapter):
    """Gives requests sent without a timeout one: oras-py's bearer-token request has none, so
    a token server that accepts the connection and never answers hung the command forever."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        return super().send(
            request,
            stream=stream,
            timeout=timeout if timeout is not None else self.timeout_s,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )


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
        request_timeout_s: float,
    ) -> None:
        super().__init__(hostname=host, insecure=plain_http, tls_verify=verify, auth_backend="token")
        self.host = host
        self.api_host = "registry-1.docker.io" if host == "docker.io" else host
        self.credentials = credentials
        if credentials is not None:
            self.auth.set_basic_auth(credentials.username, credentials.password)
        self.request_timeout_s = request_timeout_s
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, _DefaultTimeout(request_timeout_s))
        self._authorization: str | None = None  # the header that last worked

    # -- plumbing ---------------------------------------------------------------------------

    def url(self, path: str, **query: str) -> str:
        base = f"{self.prefix}://{self.api_host}{path}"
        return f"{base}?{urlencode(query)}" if query else base

    def _request_once(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        data: Any,
        stream: bool,
        timeout: tuple[float, float],
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
            timeout=timeout,
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
            timeout=timeout,
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
        budget: RetryBudget,
        what: str = "the registry",
        retry: bool = True,
        read_timeout_s: float | None = None,
    ) -> requests.Response:
        """One request with auth, retried within `budget`; RegistryUnavailable when nothing answers.

        HTTP error statuses are returned, not raised (callers know what a 404 means to them),
        except that 5xx/429 are retried first. `retry=False` for bodies that cannot be resent.
        """
        if json is not None:
            raise TypeError("send JSON as bytes with its media type")
        refusals = 0
        while True:
            timeout = budget.timeouts(self.host, what, read_s=read_timeout_s)
            delay: float | None = None
            error: RegistryError
            try:
                response = self._request_once(method, url, headers or {}, data, stream, timeout)
            except requests.RequestException as exc:
                error = error_from_exception(exc, host=self.host, what=what)
                if is_refused(exc):
                    # Before any answer: a closed port, final. After one: a restart, waited for
                    # here, or by the client's blob retry for a body that belongs to an upload
                    # session (`from exc` tells it what this was).
                    if not budget.answered or not retry:
                        raise error from exc
                    refusals += 1
                    budget.restarting(self.host, what, error, refusals)
                    if data is not None and hasattr(data, "seek"):
                        data.seek(0)
                    continue
                if not retry or not is_retryable_exception(exc):
                    raise error from None
            else:
                if response.status_code not in TEMPORARY_STATUS:
                    budget.progress()
                if not retry or response.status_code not in TEMPORARY_STATUS:
                    return response
                error = error_from_response(response, host=self.host, what=what)
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    delay = float(retry_after)
                response.close()
            budget.retry(self.host, what, error, delay)
            if data is not None and hasattr(data, "seek"):
                data.seek(0)

    def _fail(self, response: requests.Response, what: str) -> RegistryError:
        err = error_from_response(response, host=self.host, what=what)
        response.close()
        return err

    def _unexpected(self, response: requests.Response, what: str, expected: str) -> RegistryError:
        err = error_from_status(response, host=self.host, what=what, expected=expected)
        response.close()
        return err

    # -- scheme and login -------------------------------------------------------------------

    def speaks_tls(self) -> bool:
        """One TLS handshake with the registry's port: False only when it answered in plain HTTP.

        Only the handshake's outcome is wanted, so the probe's context loads no CA store:
        requests' own context loads the system's CAs first (`set_default_verify_paths`, 18 ms
        of a ~1 s `sealer push` here) for a connection closed at once. Certificates are
        verified on the real requests; no request is sent here.
        """
        wait = min(PROBE_TIMEOUT_S, self.request_timeout_s)
        where = urlsplit(f"https://{self.api_host}")
        host, port = where.hostname or self.api_host, where.port or 443
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection((host, port), timeout=wait) as sock:
                context.wrap_socket(sock, server_hostname=host).close()
        except ssl.SSLError as exc:
            return not is_plain_http_answer(exc)
        except (OSError, ValueError):
            return True  # no answer at all: let the real request report it
        return True

    def check_login(self, *, budget: RetryBudget) -> None:
        """GET /v2/ with the credentials (Basic or through the token flow); AuthError if refused."""
        what = "the registry API (/v2/)"
        response = self.do_request(self.url("/v2/"), "GET", budget=budget, what=what)
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
        raise self._fail(response, what)

    # -- manifests --------------------------------------------------------------------------

    def head_manifest(
        self, repository: str, reference: str, *, budget: RetryBudget
    ) -> tuple[str | None, str, int] | None:
        """(digest header, media type, size or -1) of a manifest, or None when there is none."""
        what = f"manifest {self.host}/{repository}:{reference}"
        response = self.do_request(
            self.url(f"/v2/{repository}/manifests/{reference}"),
            "HEAD",
            headers={"Accept": MANIFEST_ACCEPT},
            budget=budget,
            what=what,
        )
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
        response = self.do_request(
            self.url(f"/v2/{repository}/manifests/{reference}"),
            "GET",
            headers={"Accept": MANIFEST_ACCEPT},
            stream=True,
            budget=budget,
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

    # -- blobs ------------------------------------------------------------------------------

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

    def download_blob_to(
        self,
        repository: str,
        digest: str,
        size: int,
        sink: DownloadSink,
        *,
        progress: ProgressHook | None,
        budget: RetryBudget,
    ) -> None:
        """Stream a blob into `sink`; resume with Range after a dropped connection (within budget)."""
        what = f"blob {digest} from {self.host}/{repository}"
        url = self.url(f"/v2/{repository}/blobs/{digest}")
        offset = 0
        while True:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            response = self.do_request(url, "GET", headers=headers, stream=True, budget=budget, what=what)
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
                    budget.progress()
                    if progress is not None:
                        progress(len(chunk))
            except requests.RequestException as exc:
                if not is_retryable_exception(exc):
                    raise error_from_exception(exc, host=self.host, what=what) from None
                budget.retry(
                    self.host,
                    what,
                    RegistryUnavailable(
                        f"{self.host}: transfer of {what} interrupted at {offset} bytes", temporary=True
                    ),
                )
                continue
            finally:
                response.close()
            if offset >= size:
                return
            budget.retry(
                self.host,
                what,
                RegistryUnavailable(
                    f"{self.host}: {what} ended after {offset} of {size} bytes", temporary=True
                ),
            )


def is_refused(exc: BaseException) -> bool:
    """True when the connection was refused (ECONNREFUSED): `exc` or what it was raised from,
    through requests' and urllib3's wrapping (ConnectionError -> MaxRetryError.reason ->
    NewConnectionError -> ConnectionRefusedError). Implicit contexts are not followed: an error
    raised while handling a refusal is not itself one."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        cur = todo.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ConnectionRefusedError) or (
            isinstance(cur, OSError) and cur.errno == errno.ECONNREFUSED
        ):
            return True
        linked = [cur.__cause__, getattr(cur, "reason", None), *cur.args]
        todo.extend(item for item in linked if isinstance(item, BaseException))
    return False


def _iter_body(response: requests.Response) -> Iterator[bytes]:
    for chunk in response.iter_content(chunk_size=READ_BLOCK):
        if chunk:
            yield chunk


__all__ = ["MANIFEST_ACCEPT", "DownloadSink", "Manifest", "NotFound", "OrasRegistry", "is_refused"]
