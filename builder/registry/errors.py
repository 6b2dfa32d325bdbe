"""Turn what a registry or the network says into `builder.errors` (one tree, nothing else escapes).

- An HTTP error answer becomes AuthError (401/403), NotFound (404, or a distribution error code
  such as MANIFEST_UNKNOWN/BLOB_UNKNOWN/NAME_UNKNOWN), or RegistryError with `status`, `code`
  and `temporary` (5xx, 429). The distribution error codes come from the JSON body
  (`{"errors": [{"code": ..., "message": ...}]}`, distribution's `errcode` package).
- A success status other than the one the distribution spec requires (a 200 where an upload
  must answer 202 or 201) becomes RegistryError saying so: a server that answers 200 to
  everything is not a registry, and taking its 200 as success reported pushes that never
  happened.
- A requests/urllib3 exception becomes RegistryUnavailable naming the host: connection refused,
  name resolution, timeouts, dropped connections, and TLS verification (with the flags to use).
- `is_refused`, `is_plain_http_answer`, `is_retryable_exception`: what the request layer asks
  of an exception to decide between final, retried and waited for.
"""

from __future__ import annotations

import errno
import json
import ssl
from typing import Any

import requests

from builder.errors import AuthError, NotFound, RegistryError, RegistryUnavailable

# Distribution error codes that mean "this name/tag/blob does not exist".
NOT_FOUND_CODES = frozenset({"MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_UNKNOWN", "BLOB_UPLOAD_UNKNOWN"})
AUTH_CODES = frozenset({"UNAUTHORIZED", "DENIED"})
TEMPORARY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
LOGIN_HINT = "log in first: sealer login {host} -u USER --password-stdin"
TLS_HINT = "pass --ca-cert FILE with the CA that signed {host}'s certificate, or --tls-verify=false"


def error_codes(response: requests.Response) -> list[tuple[str, str]]:
    """(code, message) pairs from a distribution error body; empty when there are none."""
    try:
        body: Any = json.loads(response.content[:65536] or b"{}")
    except (ValueError, requests.RequestException):
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    out = []
    for err in errors:
        if isinstance(err, dict):
            out.append((str(err.get("code", "")), str(err.get("message", ""))))
    return out


def error_from_response(response: requests.Response, *, host: str, what: str) -> RegistryError:
    """The error for a failed answer about `what` (e.g. `manifest 127.0.0.1:5000/app:v1`)."""
    status = response.status_code
    if status == 400 and b"HTTP request to an HTTPS server" in response.content[:512]:
        # Go's TLS server answers plain HTTP this way (net/http, server.go).
        return RegistryUnavailable(
            f"{host}: the registry speaks HTTPS, but plain HTTP was used for {what}",
            status=status,
            hint="drop --plain-http (add --ca-cert FILE or --tls-verify=false for a self-signed certificate)",
        )
    codes = error_codes(response)
    code = codes[0][0] if codes else None
    detail = (
        "; ".join(f"{c}: {m}" if m else c for c, m in codes)
        or f"HTTP {status} {response.reason or ''}".strip()
    )
    if status in (401, 403) or code in AUTH_CODES:
        verb = "denied" if status == 403 or code == "DENIED" else "requires authentication"
        return AuthError(
            f"{host}: access to {what} {verb} ({detail})",
            status=status,
            code=code,
            hint=LOGIN_HINT.format(host=host) + " (or check that the account may push/pull this repository)",
        )
    if status == 404 or code in NOT_FOUND_CODES:
        return NotFound(f"{what} not found on {host} ({detail})", status=status, code=code)
    temporary = status in TEMPORARY_STATUS or code in {"TOOMANYREQUESTS", "UNAVAILABLE"}
    return RegistryError(
        f"{host}: {what} failed: {detail}",
        status=status,
        code=code,
        temporary=temporary,
        hint="the registry may be overloaded; try again" if temporary else None,
    )


def error_from_status(response: requests.Response, *, host: str, what: str, expected: str) -> RegistryError:
    """The error for an answer that is not `expected` (e.g. "201 Created") about `what`."""
    status = response.status_code
    if status >= 400:
        return error_from_response(response, host=host, what=what)
    return RegistryError(
        f"{host}: {what} answered HTTP {status} where the OCI distribution spec requires {expected}",
        status=status,
        hint=f"the server at {host} does not behave as an OCI registry; check the address "
        "(a web server or proxy may answer there); nothing pushed there can be trusted",
    )


def _is_tls_verification(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(cur) or "certificate verify failed" in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return any(isinstance(arg, BaseException) and _is_tls_verification(arg) for arg in exc.args)


def is_plain_http_answer(exc: BaseException) -> bool:
    """True when a TLS handshake failed because the server speaks plain HTTP."""
    text = repr(exc)
    return "WRONG_VERSION_NUMBER" in text or "wrong version number" in text or "record layer failure" in text


def is_name_resolution(exc: BaseException) -> bool:
    text = repr(exc)
    return (
        "NameResolutionError" in text
        or "Name or service not known" in text
        or "nodename nor servname" in text
        or "Temporary failure in name resolution" in text
    )


def error_from_exception(exc: requests.RequestException, *, host: str, what: str) -> RegistryUnavailable:
    """The error for a request that got no HTTP answer at all."""
    if isinstance(exc, requests.exceptions.SSLError):
        if _is_tls_verification(exc):
            return RegistryUnavailable(
                f"{host}: TLS certificate verification failed while fetching {what}",
                hint=TLS_HINT.format(host=host),
            )
        if is_plain_http_answer(exc):
            return RegistryUnavailable(
                f"{host}: TLS handshake failed, the registry seems to speak plain HTTP",
                hint="pass --plain-http if you trust the network to this registry",
            )
        return RegistryUnavailable(
            f"{host}: TLS handshake failed ({exc.__class__.__name__})", hint=TLS_HINT.format(host=host)
        )
    if is_name_resolution(exc):
        return RegistryUnavailable(
            f"{host}: cannot resolve the registry host name",
            hint="check the registry name in the reference and your DNS",
        )
    if isinstance(exc, requests.exceptions.Timeout) or "timed out" in repr(exc):
        return RegistryUnavailable(
            f"{host}: timed out waiting for {what}",
            temporary=True,
            hint=f"check that the registry {host} is running and reachable; if it is only slow, "
            "raise --timeout (or SEALER_REGISTRY_TIMEOUT)",
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        refused = "Connection refused" in repr(exc) or "ConnectionRefusedError" in repr(exc)
        why = "connection refused" if refused else "connection lost"
        return RegistryUnavailable(
            f"{host}: {why} during {what}",
            temporary=True,
            hint="check that the registry is running and reachable, then run the command again",
        )
    return RegistryUnavailable(
        f"{host}: request for {what} failed ({exc.__class__.__name__})", temporary=True
    )


def is_retryable_exception(exc: requests.RequestException) -> bool:
    """Dropped or refused connections and timeouts; never TLS or name resolution failures."""
    if isinstance(exc, requests.exceptions.SSLError) or is_name_resolution(exc):
        return False
    return isinstance(
        exc,
        requests.exceptions.ConnectionError
        | requests.exceptions.Timeout
        | requests.exceptions.ChunkedEncodingError,
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
