"""Reading one object from a cluster's API server, as a kubeconfig says to reach it: what
`sealer cluster import` needs (GET kube-system/sealer-clusterfile), with no kubectl on this
machine. The standard library's http.client over TLS, verified with the kubeconfig's CA.

A kubeconfig (clientcmd's format) is read as kubectl reads it: the current context (or the
only one), its cluster's `server`, `certificate-authority-data` or `certificate-authority`,
and its user's `token`, `tokenFile`, or client certificate and key (`-data` or file paths,
relative to the kubeconfig's directory). What this client cannot honour is refused by name
rather than ignored: `insecure-skip-tls-verify` (the certificate is always verified),
`tls-server-name`, `exec` and `auth-provider` plugins, basic auth.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import json
import os
import ssl
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from builder.errors import ClusterError
from builder.runtime._bounded_yaml import BoundedLoader

MAX_KUBECONFIG_BYTES = 1 << 20
MAX_RESPONSE_BYTES = 8 << 20  # a ConfigMap holds at most 1 MiB of data; JSON adds escapes
TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class KubeAccess:
    """How to reach and authenticate to one API server (from `read_kubeconfig`)."""

    server: str  # https://HOST:PORT[/PREFIX]
    ca_pem: str | None  # None: the system's CA store
    token: str | None = field(default=None, repr=False)
    client_cert_pem: str | None = field(default=None, repr=False)
    client_key_pem: str | None = field(default=None, repr=False)


def _fail(path: Path, message: str, hint: str | None = None) -> ClusterError:
    return ClusterError(
        f"--kubeconfig {path}: {message}",
        hint=hint or "give the admin kubeconfig of the cluster (on a master: /etc/kubernetes/admin.conf)",
    )


def _named(entries: Any, name: str, what: str, path: Path) -> Mapping[str, Any]:
    for entry in entries or ():
        if isinstance(entry, dict) and entry.get("name") == name and isinstance(entry.get(what), dict):
            found: Mapping[str, Any] = entry[what]
            return found
    raise _fail(path, f"no {what} named {name!r}")


def _data_or_file(section: Mapping[str, Any], key: str, base: Path, path: Path) -> str | None:
    """`KEY-data` (base64) or `KEY` (a file, relative to the kubeconfig's directory)."""
    data = section.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(str(data), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise _fail(path, f"{key}-data is not base64 of a PEM file") from None
    name = section.get(key)
    if not name:
        return None
    file = base / str(name)
    try:
        return file.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise _fail(path, f"{key} {file}: {getattr(err, 'strerror', None) or err}") from None


def read_kubeconfig(path: Path) -> KubeAccess:
    """The current context's server and credentials; ClusterError naming --kubeconfig."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_KUBECONFIG_BYTES + 1)
        text = raw.decode()
    except (OSError, UnicodeDecodeError) as err:
        raise _fail(path, f"cannot read it: {getattr(err, 'strerror', None) or err}") from None
    if len(raw) > MAX_KUBECONFIG_BYTES:
        raise _fail(path, f"larger than {MAX_KUBECONFIG_BYTES >> 20} MiB: not a kubeconfig")
    loader = BoundedLoader(text, path=str(path))
    try:
        config = loader.get_single_data()
    except yaml.YAMLError as err:
        raise _fail(path, f"not YAML: {str(err).splitlines()[0]}") from None
    finally:
        loader.dispose()
    if not isinstance(config, dict) or config.get("kind", "Config") != "Config":
        raise _fail(path, "not a kubeconfig (kind: Config)")
    contexts = [c for c in config.get("contexts") or () if isinstance(c, dict)]
    current = config.get("current-context") or (contexts[0].get("name") if len(contexts) == 1 else None)
    if not current:
        raise _fail(path, "no current-context", hint="set current-context in the kubeconfig")
    context = _named(contexts, str(current), "context", path)
    cluster = _named(config.get("clusters"), str(context.get("cluster")), "cluster", path)
    user = _named(config.get("users"), str(context.get("user")), "user", path) if context.get("user") else {}
    base = path.parent
    for key in ("insecure-skip-tls-verify", "tls-server-name", "proxy-url"):
        if cluster.get(key):
            raise _fail(path, f"cluster {context.get('cluster')!r}: {key} is not supported", hint=_AUTH_HINT)
    for key in ("exec", "auth-provider", "username", "password"):
        if user.get(key):
            raise _fail(path, f"user {context.get('user')!r}: {key} is not supported", hint=_AUTH_HINT)
    server = str(cluster.get("server") or "")
    parsed = urllib.parse.urlsplit(server)
    if parsed.scheme != "https" or not parsed.hostname:
        raise _fail(path, f"server {server!r} is not an https:// URL")
    token: str | None = str(user["token"]) if user.get("token") else None
    if not token and user.get("tokenFile"):
        try:
            token = (base / str(user["tokenFile"])).read_text().strip()
        except OSError as err:
            raise _fail(path, f"tokenFile {user['tokenFile']}: {err.strerror}") from None
    cert = _data_or_file(user, "client-certificate", base, path)
    client_key = _data_or_file(user, "client-key", base, path)
    if (cert is None) != (client_key is None):
        raise _fail(path, "a client certificate needs its key, and a key its certificate")
    if not token and cert is None:
        raise _fail(path, f"user {context.get('user')!r} has neither a token nor a client certificate")
    ca_pem = _data_or_file(cluster, "certificate-authority", base, path)
    return KubeAccess(server.rstrip("/"), ca_pem, token, cert, client_key)


_AUTH_HINT = "use a kubeconfig with the cluster's CA and a token or client certificate (admin.conf has them)"


@contextlib.contextmanager
def _tls_context(access: KubeAccess) -> Iterator[ssl.SSLContext]:
    try:
        context = (
            ssl.create_default_context(cadata=access.ca_pem)
            if access.ca_pem
            else ssl.create_default_context()
        )
    except ssl.SSLError as err:
        raise ClusterError(
            f"the kubeconfig's certificate-authority is not a PEM certificate: {err.reason}"
        ) from None
    if access.client_cert_pem and access.client_key_pem:
        # load_cert_chain reads files only: the key lives for this call in a 0700 dir of ours
        with tempfile.TemporaryDirectory(prefix="sealer-kube-") as tmp:
            cert, key = Path(tmp) / "client.crt", Path(tmp) / "client.key"
            for file, text in ((cert, access.client_cert_pem), (key, access.client_key_pem)):
                fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(text)
            try:
                context.load_cert_chain(str(cert), str(key))
            except ssl.SSLError as err:
                raise ClusterError(
                    f"the kubeconfig's client certificate or key is unusable: {err.reason}"
                ) from None
    yield context


def get_object(access: KubeAccess, api_path: str, *, timeout_s: float = TIMEOUT_S) -> dict[str, Any] | None:
    """GET `api_path` (/api/v1/...) as JSON; None when the API server says NotFound. Every other
    failure (unreachable, TLS not verified, refused credentials, not an API server) is a
    one-line ClusterError naming the server."""
    parsed = urllib.parse.urlsplit(access.server)
    host, port = parsed.hostname or "", parsed.port or 443
    where = access.server
    headers = {"Accept": "application/json", "User-Agent": "sealer"}
    if access.token:
        headers["Authorization"] = f"Bearer {access.token}"
    with _tls_context(access) as context:
        conn = http.client.HTTPSConnection(host, port, context=context, timeout=timeout_s)
        try:
            conn.request("GET", parsed.path.rstrip("/") + api_path, headers=headers)
            response = conn.getresponse()
            body = response.read(MAX_RESPONSE_BYTES + 1)
        except ssl.SSLCertVerificationError as err:
            raise ClusterError(
                f"the API server at {where} failed TLS verification: {err.verify_message or err.reason}",
                hint="the kubeconfig's certificate-authority must have signed the server's certificate, "
                "for the name or address in its server URL",
            ) from None
        except (OSError, http.client.HTTPException) as err:
            reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
            raise ClusterError(f"cannot reach the API server at {where}: {reason}") from None
        finally:
            conn.close()
    if len(body) > MAX_RESPONSE_BYTES:
        raise ClusterError(f"the API server at {where} answered more than {MAX_RESPONSE_BYTES} bytes")
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    status = response.status
    if status == 200 and isinstance(answer, dict):
        return answer
    message = answer.get("message") if isinstance(answer, dict) else None
    if status == 404 and isinstance(answer, dict) and answer.get("reason") == "NotFound":
        return None
    if status == 401:
        raise ClusterError(
            f"the API server at {where} refused the kubeconfig's credentials (401 Unauthorized)",
            hint="the token or client certificate may have expired: take a fresh admin kubeconfig",
        )
    if status == 403:
        raise ClusterError(f"the API server at {where} forbids this: {message or 'Forbidden'}")
    raise ClusterError(
        f"the API server at {where} answered HTTP {status} to GET {api_path}"
        + (f": {message}" if message else " (is it a Kubernetes API server?)")
    )


def configmap_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{urllib.parse.quote(namespace, safe='')}/configmaps/{urllib.parse.quote(name, safe='')}"


__all__ = ["KubeAccess", "configmap_path", "get_object", "read_kubeconfig"]
