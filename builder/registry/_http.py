"""The request layer of one registry host: `RegistryHttp`, oras-py's `Registry` with its
requests, auth and scheme overridden; the blob and manifest requests build on it.

Kept from oras-py: the `requests` session (cookies ignored, TLS settings), the `prefix` scheme,
`_get_location` (some registries answer relative Location headers, oras-py #78) and the bearer
token request of its TokenAuth backend (`request_token`: realm/service/scope, with Basic
credentials when we have them). Overridden:

- `do_request`: retries on timeouts, dropped connections, 5xx and 429 (Retry-After honoured)
  drawn from the operation's `RetryBudget` (budget.py: one count and one no-progress deadline
  per push/pull, every connect and read bounded), where oras-py retries everything, SSL errors
  excepted, with fixed sleeps of 3**n seconds and no timeout. A refused connection before the
  registry answered fails at once, not retried: nothing listens on that port, and waiting 5 s
  of backoff for it to start only delayed the one-line error (docker and skopeo fail at once
  too); after an answer it is a restart, waited for (`budget.restarting`). Basic challenges
  (htpasswd registries) as well as Bearer ones, where oras-py's token backend only knows
  Bearer; every failure mapped into `builder.errors`, never a ValueError/requests exception.
  oras-py's own token requests get a default timeout through the session adapter.
- `speaks_tls` (the scheme probe of loopback registries) and `check_login` (GET /v2/).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import oras.auth.utils
import oras.provider
import requests
import requests.adapters

from builder.errors import AuthError, RegistryError
from builder.registry.auth import Credentials
from builder.registry.budget import RetryBudget
from builder.registry.errors import (
    TEMPORARY_STATUS,
    error_from_exception,
    error_from_response,
    error_from_status,
    is_plain_http_answer,
    is_refused,
    is_retryable_exception,
)

READ_BLOCK = 1 << 20  # bodies move 1 MB per read, both ways
PROBE_TIMEOUT_S = 5.0

ProgressHook = Callable[[int], None]


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


class RegistryHttp(oras.provider.Registry):  # type: ignore[misc]
    """One registry host (`host` as a reference spells it: `127.0.0.1:5000`, `docker.io`): its
    requests, auth, scheme probe and login check."""

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

        def send() -> requests.Response:
            response: requests.Response = self.session.request(
                method, url, headers=sent, data=data, stream=stream, timeout=timeout, verify=self._tls_verify
            )
            return response

        response = send()
        if response.status_code != 401 or not self._authenticate(response, sent.get("Authorization")):
            return response
        response.close()
        if data is not None and hasattr(data, "seek"):
            data.seek(0)
        sent["Authorization"] = self._authorization or ""
        return send()  # once more, with the answer to the challenge

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
