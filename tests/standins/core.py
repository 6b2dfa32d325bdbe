"""What every stand-in shares: strict failure, locked JSON state, a tiny HTTP "control plane",
its client, systemd's readiness protocol, port holding, and packing the package as a zipapp.

Stdlib only, and imported relatively (`from . import core`): the same file runs as
`tests.standins.core` in pytest and as `standins.core` inside the zipapp a fixture host runs
(hosts cannot see this checkout when it lives under /tmp, and have only /usr/bin/python3).

The API below is stable: the kubeadm, k3s and k0s stand-ins are written against it.

    die(message) -> NoReturn
        "<prog>: <message>" on stderr, exit 1 (prog: basename of argv[0], e.g. "k3s").
    StateFile(path)
        .edit()  context manager yielding the JSON object (a dict; {} when the file is missing);
                 an exclusive flock on "<path>.lock" is held across read, modify and write, and
                 the new content replaces the file by rename (never half-written). An exception
                 inside the block writes nothing.
        .read()  the current dict ({} when missing), no lock (renames are atomic).
    make_api_server(state_path, address, port) -> ThreadingHTTPServer (not yet serving)
    make_api_proxy(upstream, address, port, *, sans, cert=None, key=None) -> ThreadingHTTPServer
        An API server (kube-apiserver on every master) in front of the control plane at
        `upstream`: relays every request; GET /tls-sans -> the SANs of its certificate; with
        cert/key, a client opening with a TLS ClientHello gets a real TLS session (haproxy's
        check-ssl health checks), others plain HTTP.
    serve_api(state_path, address, port) -> None
        Blocking: the "control plane" that owns one cluster's state in `state_path` (a
        StateFile): tokens, nodes, members (etcd-like), secrets. Routes (JSON in and out, errors
        as {"error": message} with the status below):
            GET    /healthz                      {"ok": true}
            POST   /tokens  {role, ttl_s, value, allows}   -> {"token": value}
            POST   /join    {token, role, name, ip, version, member, **extra}
                   -> {"node": {...}, "members": [...]}; 403 unknown/expired token, or a token
                   that does not admit `role`, or a node name bound to another node_password
            GET    /nodes                        [node, ...]      (ordered by join time)
            GET    /nodes/NAME   PATCH /nodes/NAME {fields}   DELETE /nodes/NAME   (404: none)
            GET    /members                      [member, ...]
            GET    /events                       [{"time", "reason", "name", **fields}, ...]
                   in order: Joined (role, member), Patched (the fields; heartbeats are not
                   events), Deleted, MemberRemoved, TokenCreated (the role as name; never the
                   value) - so a test can check what happened in which order
            DELETE /members/NAME                 (404: no such member)
            PUT    /secrets/KEY {value, ttl_s}   GET /secrets/KEY -> {"value": ...} (404: none)
            GET    /api/v1/namespaces/NS/configmaps/NAME    the ConfigMap (404 NotFound)
            POST   /api/v1/namespaces/NS/configmaps         create: 201 (409 AlreadyExists)
            PUT    /api/v1/namespaces/NS/configmaps/NAME    replace: 200 (404 NotFound; 409
                   Conflict on a stale metadata.resourceVersion)
                   as the Kubernetes API has them: errors are Status objects (kind Status,
                   reason, message, code), 400 for a name or namespace that differs from the
                   URL's, 422 Invalid for a bad data key or data over 1 MiB; a request with an
                   Authorization header must carry `Bearer TOKEN` of a live token (else 401
                   Unauthorized); one without is let through (the stand-in clients send none)
        A node is {"name", "ip", "role", "version", "unschedulable", "joined_at", "last_seen",
        "ready", **extra}; "ready" is computed on read: last_seen (set at join and on every
        PATCH with {"heartbeat": true}) no older than NODE_GRACE_S, as the node controller's
        node-monitor-grace-period. A member is {"name", "ip", "peer_url"?}.
    ApiClient(url, timeout_s=5.0)
        url: http://H:P or https://H:P (https is spoken as plain HTTP: stand-ins do no TLS).
        .join(token, role, name, ip, version, *, member=False, **extra) -> dict
        .create_token(role, ttl_s=None, value=None, *, allows=None) -> str
             a token admits joins as `role`, or as any role in `allows` when given; `value`
             None mints a random one (k0s-style 32 hex chars), else stores `value` as given
        .nodes() -> list[dict]; .get_node(name) -> dict; .patch_node(name, **fields) -> dict
        .delete_node(name) -> None (also forgets the node's node_password binding)
        .members() -> list[dict]; .remove_member(name) -> None; .events() -> list[dict]
        .put_secret(key, value, ttl_s=None) -> None; .get_secret(key) -> str
        .get_configmap(ns, name) -> dict; .create_configmap(obj) -> dict; .replace_configmap(obj)
    is_configmap_command(verb, args) -> bool; kubectl_configmaps(client, verb, args, *, namespace,
            filename, output) -> int
        the ConfigMap verbs of every stand-in kubectl: `get configmap NAME [-o json]`,
        `create -f FILE`, `replace -f FILE` (JSON, or the YAML subset; FILE "-": stdin), with
        kubectl's messages and exit status
        .serving_sans() -> list[str] (the answering API server's certificate SANs)
        .healthy() -> bool; .wait_ready(timeout_s) -> None (ApiError(0, ...) on timeout)
        Every failure raises ApiError(status, message); status 0: the server is unreachable.
    notify_ready(status="") -> bool
        sd_notify("READY=1") to $NOTIFY_SOCKET (systemd's Type=notify protocol, which the
        systemctl stand-in implements); False when not run under a notify unit.
    hold_ports(ports, address="0.0.0.0") -> list[socket]
        listening TCP sockets that are never accepted: the ports are "in use" as the real
        daemon's would be (preflight checks see them with `ss`); die() when one is taken.
    forward_port(port, target, address="0.0.0.0") -> None
        a TCP forwarder thread (daemon) from address:port to target ("HOST:PORT").
    exit_on_sigterm() -> None
        SIGTERM raises SystemExit(0) in the main thread, so `finally` blocks run on stop.
    write_zipapp(entry, path, *, files=None) -> Path
        a self-contained executable zipapp of this package (interpreter /usr/bin/python3,
        main = `entry`, "standins.k3s:main" style; main(argv: list[str] | None) -> int);
        `files` (name -> bytes) are bundled and read back in the zipapp with bundled(name).
    bundled(name) -> bytes | None
    load_yaml(text, path="<yaml>") -> Any
        the block-YAML subset config files use (no PyYAML on the hosts); YamlError(path:line)
        on anything outside it (anchors, tags, block scalars...), never a guess.

Over the house ~400 lines: the control plane, its client and the YAML subset are the whole
shared surface, and three stand-ins import this one file.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import pkgutil
import re
import secrets as _secrets
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

NODE_GRACE_S = 40.0  # kube-controller-manager's default node-monitor-grace-period
INTERPRETER = "/usr/bin/python3"
PACKAGE = "standins"
_DATA_DIR = "_data"


def die(message: str) -> NoReturn:
    """Print "<prog>: <message>" on stderr and exit 1, as the upstream CLIs fail."""
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else PACKAGE
    print(f"{prog}: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


FAULT_DIR = Path("/run/standin-fault")
CRASHED_NOTE = "crashed."  # FAULT_DIR/crashed.<pid>: that process died of an injected fault


def crash_at(point: str, say: str = "") -> None:
    """A fault a test asked for: when FAULT_DIR/<point> exists on this host, remove it (so the
    next attempt passes), print `say` on stderr, and die as a crash does: SIGKILL, no cleanup,
    stdout flushed as an unbuffered Go program's would be.

    The fault stands for a crash that upstream would meet again at each automatic restart, so
    it leaves FAULT_DIR/crashed.<pid>: the systemctl stand-in then leaves the unit failed rather
    than applying its Restart= (as systemd ends such a loop at its start limit), and only a new
    start, sealer's re-run, brings it back."""
    marker = FAULT_DIR / point
    try:
        marker.unlink()
    except FileNotFoundError:
        return
    with contextlib.suppress(OSError):
        (FAULT_DIR / f"{CRASHED_NOTE}{os.getpid()}").touch()
    sys.stdout.flush()
    print(say or f"standin-fault: {point}: killed as {marker} asked", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def injected_crash(pid: int) -> bool:
    """Whether process `pid` died of a fault crash_at injected (the note is consumed)."""
    try:
        (FAULT_DIR / f"{CRASHED_NOTE}{pid}").unlink()
    except OSError:
        return False
    return True


def write_file(path: Path, text: str, mode: int = 0o600) -> None:
    """`text` into `path` whole (temp file, mode set, rename), its directory made if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


# --- state -----------------------------------------------------------------------------------------


class StateFile:
    """A JSON object in a file, changed only under an exclusive lock and replaced by rename."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        if not isinstance(data, dict):
            die(f"{self.path}: state is not a JSON object")
        return data

    @contextlib.contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self.read()
            yield data
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)


# --- the control plane -----------------------------------------------------------------------------


class ApiError(Exception):
    """A refused or failed API call: the HTTP status (0: unreachable) and the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


def _now() -> float:
    return time.time()


def _live_tokens(state: dict[str, Any]) -> dict[str, Any]:
    tokens: dict[str, Any] = state.setdefault("tokens", {})
    return tokens


def _view_node(node: dict[str, Any]) -> dict[str, Any]:
    out = dict(node)
    out["ready"] = _now() - float(node.get("last_seen", 0)) <= NODE_GRACE_S
    return out


def _join(state: dict[str, Any], body: dict[str, Any]) -> tuple[int, Any]:
    missing = [k for k in ("token", "role", "name", "ip", "version") if not body.get(k)]
    if missing:
        return HTTPStatus.BAD_REQUEST, {"error": f"join: missing {', '.join(missing)}"}
    token = _live_tokens(state).get(str(body["token"]))
    if token is None:
        return HTTPStatus.FORBIDDEN, {"error": "token is not valid (unknown token)"}
    if token.get("expires") is not None and _now() > float(token["expires"]):
        return HTTPStatus.FORBIDDEN, {"error": "token is not valid (expired)"}
    role = str(body["role"])
    if role not in token["allows"]:
        return HTTPStatus.FORBIDDEN, {
            "error": f"token is not valid for a {role} join (this {token['role']} token admits "
            f"{', '.join(token['allows'])})"
        }
    name = str(body["name"])
    nodes: dict[str, Any] = state.setdefault("nodes", {})
    passwords: dict[str, str] = state.setdefault("node_passwords", {})
    password = body.get("node_password")
    if password is not None:
        bound = passwords.get(name)
        if bound is not None and bound != password:
            return HTTPStatus.FORBIDDEN, {
                "error": f"node password rejected: duplicate hostname {name!r} or a password that does "
                "not match the one the node first joined with"
            }
        passwords[name] = str(password)
    member = bool(body.get("member"))
    extra = {k: v for k, v in body.items() if k not in ("token", "node_password", "member")}
    old = nodes.get(name, {})
    node = {
        "unschedulable": False,
        "joined_at": _now(),
        **old,
        **extra,
        "last_seen": _now(),
        "seq": old.get("seq", state.get("seq", 0) + 1),
    }
    state["seq"] = max(int(state.get("seq", 0)), int(node["seq"]))
    nodes[name] = node
    members: dict[str, Any] = state.setdefault("members", {})
    if member:
        entry = {"name": name, "ip": body["ip"], "seq": members.get(name, {}).get("seq", node["seq"])}
        if body.get("peer_url"):
            entry["peer_url"] = body["peer_url"]
        members[name] = entry
    _event(state, "Joined", name, role=role, member=member)
    return HTTPStatus.OK, {"node": _view_node(node), "members": _ordered(members)}


def _event(state: dict[str, Any], reason: str, name: str, **fields: Any) -> None:
    """Append to the event list (what happened, in order; never token values)."""
    events: list[dict[str, Any]] = state.setdefault("events", [])
    events.append({"time": _now(), "reason": reason, "name": name, **fields})


_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_CONFIGMAP_BYTES = 1 << 20  # core.MaxSecretSize, which ValidateConfigMap applies to ConfigMaps


def _status(code: int, reason: str, message: str, name: str | None = None) -> tuple[int, Any]:
    """A Kubernetes Status object, as the API server answers a failed request."""
    details = {"name": name, "kind": "configmaps"} if name else {}
    return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": message, "reason": reason, "details": details, "code": code}  # fmt: skip


def _authorized(state: dict[str, Any], header: str | None) -> bool:
    if header is None:
        return True
    kind, _, token = header.partition(" ")
    entry = _live_tokens(state).get(token) if kind == "Bearer" else None
    return entry is not None and (entry.get("expires") is None or _now() <= float(entry["expires"]))


def _configmaps(method: str, arg: str, body: dict[str, Any], state: dict[str, Any]) -> tuple[int, Any]:
    """/api/v1/namespaces/NS/configmaps[/NAME]: get, create and replace, as the API server."""
    parts = arg.split("/")
    if len(parts) not in (4, 5) or parts[:2] != ["v1", "namespaces"] or parts[3] != "configmaps":
        return _status(HTTPStatus.NOT_FOUND, "NotFound", "the server could not find the requested resource")
    ns, url_name = parts[2], parts[4] if len(parts) == 5 else None
    table: dict[str, Any] = state.setdefault("configmaps", {})
    if method == "GET" and url_name is not None:
        if f"{ns}/{url_name}" not in table:
            return _status(HTTPStatus.NOT_FOUND, "NotFound", f'configmaps "{url_name}" not found', url_name)
        return HTTPStatus.OK, table[f"{ns}/{url_name}"]
    if (method, url_name is None) not in (("POST", True), ("PUT", False)):
        return _status(HTTPStatus.METHOD_NOT_ALLOWED, "MethodNotAllowed", f"{method} is not supported here")
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    name = str(meta.get("name") or "")
    if body.get("kind") != "ConfigMap" or body.get("apiVersion") != "v1" or not name:
        return _status(HTTPStatus.BAD_REQUEST, "BadRequest", "the body is not a v1 ConfigMap with a name")
    if meta.get("namespace", ns) != ns:
        return _status(HTTPStatus.BAD_REQUEST, "BadRequest",
                       "the namespace of the provided object does not match the namespace sent on the request")  # fmt: skip
    if url_name is not None and name != url_name:
        return _status(HTTPStatus.BAD_REQUEST, "BadRequest",
                       f"the name of the object ({name}) does not match the name on the URL ({url_name})")  # fmt: skip
    data = body.get("data") or {}
    bad = [k for k, v in data.items() if not _CONFIGMAP_KEY.match(str(k)) or not isinstance(v, str)]
    size = sum(len(str(v).encode()) for v in data.values())
    if bad or size > MAX_CONFIGMAP_BYTES:
        why = f"data[{bad[0]}]: Invalid value" if bad else f"[]: Too long: over {MAX_CONFIGMAP_BYTES} bytes"
        return _status(HTTPStatus.UNPROCESSABLE_ENTITY, "Invalid", f'ConfigMap "{name}" is invalid: {why}')
    key, old = f"{ns}/{name}", table.get(f"{ns}/{name}")
    if method == "POST" and old is not None:
        return _status(HTTPStatus.CONFLICT, "AlreadyExists", f'configmaps "{name}" already exists', name)
    if method == "PUT" and old is None:
        return _status(HTTPStatus.NOT_FOUND, "NotFound", f'configmaps "{name}" not found', name)
    version = meta.get("resourceVersion")
    if old is not None and version is not None and version != old["metadata"]["resourceVersion"]:
        return _status(HTTPStatus.CONFLICT, "Conflict",
                       f'Operation cannot be fulfilled on configmaps "{name}": the object has been modified; '
                       "please apply your changes to the latest version and try again", name)  # fmt: skip
    state["resource_version"] = int(state.get("resource_version", 0)) + 1
    stored_meta = {**meta, "namespace": ns, "resourceVersion": str(state["resource_version"]),
                   "uid": old["metadata"]["uid"] if old else str(uuid.uuid4()),
                   "creationTimestamp": old["metadata"]["creationTimestamp"] if old
                   else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    table[key] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": stored_meta, "data": dict(data)}
    _event(state, "ConfigMapReplaced" if old else "ConfigMapCreated", key)
    return (HTTPStatus.OK if old else HTTPStatus.CREATED), table[key]


def _ordered(table: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(table.values(), key=lambda e: (int(e.get("seq", 0)), str(e.get("name", ""))))


class _Handler(BaseHTTPRequestHandler):
    server: _ApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"api: {self.command} {self.path} -> {args[1] if len(args) > 1 else ''}\n")

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return {}
        data = json.loads(self.rfile.read(length))
        if not isinstance(data, dict):
            raise ValueError("body is not a JSON object")
        return data

    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self) -> None:
        try:
            body = self._body()
        except ValueError as err:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"bad JSON body: {err}"})
            return
        parts = [urllib.parse.unquote(p) for p in self.path.split("?")[0].strip("/").split("/", 1)]
        route, arg = parts[0], parts[1] if len(parts) > 1 else None
        with self.server.state.edit() as state:
            status, payload = self._route(self.command, route, arg, body, state)
        self._reply(status, payload)

    def _route(
        self, method: str, route: str, arg: str | None, body: dict[str, Any], state: dict[str, Any]
    ) -> tuple[int, Any]:
        if (method, route, arg) == ("GET", "healthz", None):
            return HTTPStatus.OK, {"ok": True}
        if (method, route, arg) == ("POST", "join", None):
            return _join(state, body)
        if (method, route, arg) == ("POST", "tokens", None):
            role = body.get("role")
            if not role:
                return HTTPStatus.BAD_REQUEST, {"error": "tokens: missing role"}
            value = str(body.get("value") or _secrets.token_hex(16))
            ttl = body.get("ttl_s")
            _live_tokens(state)[value] = {
                "role": role,
                "allows": list(body.get("allows") or [role]),
                "expires": None if ttl is None else _now() + float(ttl),
            }
            _event(state, "TokenCreated", role, ttl_s=ttl)
            return HTTPStatus.OK, {"token": value}
        if route == "nodes":
            return self._nodes(method, arg, body, state)
        if route == "members":
            members: dict[str, Any] = state.setdefault("members", {})
            if method == "GET" and arg is None:
                return HTTPStatus.OK, _ordered(members)
            if method == "DELETE" and arg is not None:
                if members.pop(arg, None) is None:
                    return HTTPStatus.NOT_FOUND, {"error": f"member {arg!r} not found"}
                _event(state, "MemberRemoved", arg)
                return HTTPStatus.OK, {}
        if route == "api" and arg is not None:
            if not _authorized(state, self.headers.get("Authorization")):
                return _status(HTTPStatus.UNAUTHORIZED, "Unauthorized", "Unauthorized")
            return _configmaps(method, arg, body, state)
        if (method, route, arg) == ("GET", "events", None):
            return HTTPStatus.OK, state.get("events", [])
        if route == "secrets" and arg:
            table: dict[str, Any] = state.setdefault("secrets", {})
            if method == "PUT":
                if "value" not in body:
                    return HTTPStatus.BAD_REQUEST, {"error": "secret: missing value"}
                ttl = body.get("ttl_s")
                table[arg] = {"value": str(body["value"]), "expires": None if ttl is None else _now() + ttl}
                return HTTPStatus.OK, {}
            if method == "GET":
                entry = table.get(arg)
                if entry is None or (entry["expires"] is not None and _now() > entry["expires"]):
                    return HTTPStatus.NOT_FOUND, {"error": f"secret {arg!r} not found"}
                return HTTPStatus.OK, {"value": entry["value"]}
        return HTTPStatus.NOT_FOUND, {"error": f"no route {method} /{route}{'/' + arg if arg else ''}"}

    def _nodes(
        self, method: str, name: str | None, body: dict[str, Any], state: dict[str, Any]
    ) -> tuple[int, Any]:
        nodes: dict[str, Any] = state.setdefault("nodes", {})
        if name is None:
            if method == "GET":
                return HTTPStatus.OK, [_view_node(n) for n in _ordered(nodes)]
            return HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{method} /nodes"}
        node = nodes.get(name)
        if node is None:
            return HTTPStatus.NOT_FOUND, {"error": f'nodes "{name}" not found'}
        if method == "GET":
            return HTTPStatus.OK, _view_node(node)
        if method == "PATCH":
            if body.pop("heartbeat", False):
                node["last_seen"] = _now()
            protected = {"name", "seq", "joined_at", "last_seen"} & set(body)
            if protected:
                return HTTPStatus.BAD_REQUEST, {"error": f"cannot patch {', '.join(sorted(protected))}"}
            node.update(body)
            if body:
                _event(state, "Patched", name, **body)
            return HTTPStatus.OK, _view_node(node)
        if method == "DELETE":
            del nodes[name]
            state.setdefault("node_passwords", {}).pop(name, None)
            _event(state, "Deleted", name)
            return HTTPStatus.OK, {}
        return HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{method} /nodes/{name}"}

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()


class _ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: StateFile, address: str, port: int) -> None:
        self.state = state
        super().__init__((address, port), _Handler)


def make_api_server(state_path: Path | str, address: str, port: int) -> ThreadingHTTPServer:
    """The control plane server bound to address:port, not yet serving (tests run it in a thread
    and call .shutdown(); serve_api() serves it forever)."""
    try:
        return _ApiServer(StateFile(state_path), address, port)
    except OSError as err:
        die(f"cannot listen on {address}:{port}: {err.strerror}")


def serve_api(state_path: Path | str, address: str, port: int) -> None:
    """Serve the control plane on address:port until the process ends."""
    make_api_server(state_path, address, port).serve_forever()


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ApiProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # haproxy checks every 2 s: a line each would bury the log

    def _relay(self) -> None:
        if (self.command, self.path) == ("GET", "/tls-sans"):
            status, data = int(HTTPStatus.OK), json.dumps(self.server.sans).encode()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            request = urllib.request.Request(self.server.upstream + self.path, data=body, method=self.command)
            if body is not None:
                request.add_header("Content-Type", "application/json")
            if self.headers.get("Authorization"):  # the API server authenticates every request
                request.add_header("Authorization", self.headers["Authorization"])
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status, data = response.status, response.read()
            except urllib.error.HTTPError as err:
                status, data = err.code, err.read()
            except (urllib.error.URLError, OSError) as err:
                reason = getattr(err, "reason", err)
                status = int(HTTPStatus.BAD_GATEWAY)
                data = json.dumps(
                    {"error": f"the datastore {self.server.upstream} is unreachable: {reason}"}
                ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay


class _ApiProxy(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: str, address: str, port: int, sans: list[str], tls: Any) -> None:
        self.upstream, self.sans, self.tls = upstream.rstrip("/"), sans, tls
        super().__init__((address, port), _ProxyHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """A TLS ClientHello (first byte 0x16: haproxy's check-ssl health checks) is answered
        over TLS with the apiserver's certificate; anything else as plain HTTP (the stand-in
        clients' "https")."""
        request.settimeout(10)
        try:
            first = request.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        if first == b"\x16" and self.tls is not None:
            try:
                wrapped = self.tls.wrap_socket(request, server_side=True)
            except OSError:
                return
            with wrapped:
                super().finish_request(wrapped, client_address)
            return
        super().finish_request(request, client_address)


def make_api_proxy(
    upstream: str,
    address: str,
    port: int,
    *,
    sans: list[str],
    cert: Path | None = None,
    key: Path | None = None,
) -> ThreadingHTTPServer:
    """An API server in front of the control plane at `upstream` (http://H:P): every request
    relayed there (502 while it is unreachable), except GET /tls-sans, which answers `sans`: the
    names this server's certificate carries, what a TLS client would check. With `cert` and
    `key`, a client that speaks TLS gets it (a real handshake with that certificate)."""
    import ssl

    tls = None
    if cert is not None and key is not None:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(str(cert), str(key))
    try:
        return _ApiProxy(upstream, address, port, sans, tls)
    except OSError as err:
        die(f"cannot listen on {address}:{port}: {err.strerror}")


class ApiClient:
    """The control plane's client. Every call raises ApiError on failure (status 0: unreachable)."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname or not parsed.port:
            raise ApiError(0, f"bad server URL {url!r} (want https://HOST:PORT)")
        self.url = url
        self.base = f"http://{parsed.hostname}:{parsed.port}"
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            try:
                answer = json.loads(err.read())
                message = answer.get("error") or answer.get("message") or err.reason  # Status: message
            except ValueError:
                message = str(err.reason)
            raise ApiError(err.code, str(message)) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ApiError(0, f"cannot reach {self.url}: {reason}") from None

    def serving_sans(self) -> list[str]:
        """The SANs of the certificate the answering API server presents (make_api_proxy)."""
        return [str(s) for s in self._call("GET", "/tls-sans")]

    def healthy(self) -> bool:
        try:
            return bool(self._call("GET", "/healthz").get("ok"))
        except ApiError:
            return False

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.healthy():
            if time.monotonic() > deadline:
                raise ApiError(0, f"{self.url} did not answer within {timeout_s:g}s")
            time.sleep(0.05)

    def join(
        self, token: str, role: str, name: str, ip: str, version: str, *, member: bool = False, **extra: Any
    ) -> dict[str, Any]:
        body = {"token": token, "role": role, "name": name, "ip": ip, "version": version, "member": member}
        result: dict[str, Any] = self._call("POST", "/join", body | extra)
        return result

    def create_token(
        self,
        role: str,
        ttl_s: float | None = None,
        value: str | None = None,
        *,
        allows: Iterable[str] | None = None,
    ) -> str:
        body = {"role": role, "ttl_s": ttl_s, "value": value, "allows": list(allows) if allows else None}
        return str(self._call("POST", "/tokens", body)["token"])

    def nodes(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/nodes")
        return result

    def get_node(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/nodes/{urllib.parse.quote(name, safe='')}")
        return result

    def patch_node(self, name: str, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PATCH", f"/nodes/{urllib.parse.quote(name, safe='')}", fields)
        return result

    def delete_node(self, name: str) -> None:
        self._call("DELETE", f"/nodes/{urllib.parse.quote(name, safe='')}")

    def events(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/events")
        return result

    def members(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/members")
        return result

    def remove_member(self, name: str) -> None:
        self._call("DELETE", f"/members/{urllib.parse.quote(name, safe='')}")

    def put_secret(self, key: str, value: str, ttl_s: float | None = None) -> None:
        self._call("PUT", f"/secrets/{urllib.parse.quote(key, safe='')}", {"value": value, "ttl_s": ttl_s})

    def get_secret(self, key: str) -> str:
        return str(self._call("GET", f"/secrets/{urllib.parse.quote(key, safe='')}")["value"])

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", _configmap_path(namespace, name))
        return result

    def create_configmap(self, obj: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", _configmap_path(_namespace_of(obj)), obj)
        return result

    def replace_configmap(self, obj: dict[str, Any]) -> dict[str, Any]:
        name = str((obj.get("metadata") or {}).get("name") or "")
        result: dict[str, Any] = self._call("PUT", _configmap_path(_namespace_of(obj), name), obj)
        return result


def _namespace_of(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "default")


def _configmap_path(namespace: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{urllib.parse.quote(namespace, safe='')}/configmaps"
    return path + (f"/{urllib.parse.quote(name, safe='')}" if name is not None else "")


CONFIGMAP_NAMES = ("configmap", "configmaps", "cm")
WRITE_VERBS = ("create", "replace")  # of a whole object from a file (-f)


def is_configmap_command(verb: str, args: list[str]) -> bool:
    """What kubectl_configmaps serves: create/replace -f, and get of a ConfigMap."""
    return verb in WRITE_VERBS or (verb == "get" and bool(args) and args[0] in CONFIGMAP_NAMES)


def kubectl_configmaps(
    client: ApiClient,
    verb: str,
    args: list[str],
    *,
    namespace: str | None,
    filename: str | None,
    output: str | None,
) -> int:
    """kubectl's `get configmap NAME`, `create -f FILE` and `replace -f FILE` (ConfigMaps only)."""
    if verb == "get":
        if len(args) != 2:
            die("error: the stand-in kubectl gets one configmap: get configmap NAME")
        try:
            obj = client.get_configmap(namespace or "default", args[1])
        except ApiError as err:
            die(f"Error from server ({'NotFound' if err.status == 404 else err.status}): {err.message}")
        if output == "json":
            print(json.dumps(obj, indent=4))
        else:
            print(f"NAME{' ' * 20}DATA   AGE\n{obj['metadata']['name']:<24}{len(obj.get('data') or {}):<7}1s")
        return 0
    if not filename:
        die("error: must specify one of -f and -k")
    try:
        text = sys.stdin.read() if filename == "-" else Path(filename).read_text()
    except OSError as err:
        die(f'error: the path "{filename}" does not exist: {err.strerror}')
    try:
        obj = json.loads(text)
    except ValueError:
        obj = load_yaml(text, filename)
    if not isinstance(obj, dict) or obj.get("kind") != "ConfigMap":
        die(f"error: the stand-in kubectl {verb}s only ConfigMaps ({filename})")
    obj.setdefault("metadata", {}).setdefault("namespace", namespace or "default")
    try:
        made = client.create_configmap(obj) if verb == "create" else client.replace_configmap(obj)
    except ApiError as err:
        reasons = {404: "NotFound", 409: "AlreadyExists" if verb == "create" else "Conflict"}
        how = "creating" if verb == "create" else "replacing"
        reason = reasons.get(err.status, err.status)
        die(f'Error from server ({reason}): error when {how} "{filename}": {err.message}')
    print(f"configmap/{made['metadata']['name']} {verb}d")
    return 0


# --- daemons ---------------------------------------------------------------------------------------


def notify_ready(status: str = "") -> bool:
    """Tell the service manager the daemon is up (sd_notify READY=1), as Type=notify units must."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    message = "READY=1" + (f"\nSTATUS={status}" if status else "")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), "\0" + path[1:] if path.startswith("@") else path)
    return True


def hold_ports(ports: Iterable[int], address: str = "0.0.0.0") -> list[socket.socket]:
    """Listen on `ports` without accepting: they show as in use, as the real daemon's would."""
    held = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as err:
            sock.close()
            die(f"listen tcp {address}:{port}: bind: {err.strerror}")
        sock.listen(16)
        held.append(sock)
    return held


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def forward_port(port: int, target: str, address: str = "0.0.0.0") -> None:
    """Accept on address:port and relay each connection to target "HOST:PORT" (daemon threads)."""
    host, _, target_port = target.rpartition(":")
    (listener,) = hold_ports([port], address)

    def serve() -> None:
        while True:
            client, _ = listener.accept()
            try:
                upstream = socket.create_connection((host, int(target_port)), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()


def exit_on_sigterm() -> None:
    """SIGTERM (systemctl stop) ends the process through SystemExit, so cleanup code runs."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)


# --- packing ---------------------------------------------------------------------------------------


def write_zipapp(entry: str, path: Path | str, *, files: dict[str, bytes] | None = None) -> Path:
    """Write an executable zipapp of this package to `path` (atomically, mode 0755).

    `entry` is "standins.<module>:<function>"; the function takes argv (None: sys.argv[1:]) and
    returns the exit status. Deterministic: the same sources give the same bytes.
    """
    module, _, func = entry.partition(":")
    if not module.startswith(PACKAGE + ".") or not func.isidentifier():
        raise ValueError(f"entry {entry!r}: want '{PACKAGE}.<module>:<function>'")
    source_dir = Path(__file__).resolve().parent
    main = f"import sys\nfrom {module} import {func}\nsys.exit({func}())\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:

        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)

        add("__main__.py", main.encode())
        for src in sorted(source_dir.glob("*.py")):
            add(f"{PACKAGE}/{src.name}", src.read_bytes())
        for name, data in sorted((files or {}).items()):
            add(f"{PACKAGE}/{_DATA_DIR}/{name}", data)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(f"#!{INTERPRETER}\n".encode() + buf.getvalue())
    tmp.chmod(0o755)
    os.replace(tmp, out)
    return out


def bundled(name: str) -> bytes | None:
    """A file write_zipapp(files=...) bundled, or None (not in a zipapp, or not bundled)."""
    package = __package__ or PACKAGE
    try:
        return pkgutil.get_data(package, f"{_DATA_DIR}/{name}")
    except (FileNotFoundError, OSError):
        return None


# --- YAML (the subset config files use) -------------------------------------------------------------


class YamlError(Exception):
    """Text outside the YAML subset load_yaml reads, or not YAML at all (with path:line)."""


def load_yaml(text: str, path: str = "<yaml>") -> Any:
    """Parse the block YAML that runtime config files use, with no PyYAML on the hosts.

    Read: one document (an optional leading "---"), block mappings and sequences (a sequence
    may sit at its key's indentation), "- key: value" items, flow [a, b] and {a: b} of scalars,
    plain and quoted scalars (null/~, true/false, integers and floats typed as YAML 1.2 core),
    comments. Anything else - anchors, aliases, tags, block scalars (| >), multi-line plain
    scalars, tabs in indentation - raises YamlError naming the line, so a stand-in never
    guesses at a file the real parser would read differently.
    """
    lines: list[tuple[int, int, str]] = []  # (line number, indent, content)
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = _strip_comment(raw, path, number).rstrip()
        if not stripped.strip():
            continue
        body = stripped.lstrip(" ")
        if body.startswith("\t") or "\t" in stripped[: len(stripped) - len(body)]:
            raise YamlError(f"{path}:{number}: tabs are not allowed in indentation")
        if body in ("---", "...") and len(stripped) == len(body):
            if lines or body == "...":
                raise YamlError(f"{path}:{number}: only one document is supported")
            continue
        lines.append((number, len(stripped) - len(body), body))
    if not lines:
        return None
    value, end = _yaml_block(lines, 0, lines[0][1], path)
    if end != len(lines):
        number, _, body = lines[end]
        raise YamlError(f"{path}:{number}: unexpected {body!r} (bad indentation?)")
    return value


def _strip_comment(line: str, path: str, number: int) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"" and (i == 0 or line[i - 1] in " [{,:-"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def _yaml_block(lines: list[tuple[int, int, str]], i: int, indent: int, path: str) -> tuple[Any, int]:
    number, _, body = lines[i]
    if body == "-" or body.startswith("- "):
        items: list[Any] = []
        while (
            i < len(lines) and lines[i][1] == indent and (lines[i][2] == "-" or lines[i][2].startswith("- "))
        ):
            number, _, body = lines[i]
            rest = body[1:].lstrip(" ")
            i += 1
            if not rest:
                if i < len(lines) and lines[i][1] > indent:
                    value, i = _yaml_block(lines, i, lines[i][1], path)
                else:
                    value = None
            elif _is_mapping_line(rest):
                # "- key: value" opens a mapping whose other keys align with `key`
                inner = indent + (len(body) - len(rest))
                sub = [(number, inner, rest)]
                while i < len(lines) and lines[i][1] >= inner:
                    sub.append(lines[i])
                    i += 1
                value, used = _yaml_block(sub, 0, inner, path)
                if used != len(sub):
                    raise YamlError(f"{path}:{sub[used][0]}: bad indentation in a sequence item")
            else:
                value = _yaml_scalar(rest, path, number)
            items.append(value)
        return items, i
    if not _is_mapping_line(body):
        if i + 1 < len(lines) and lines[i + 1][1] >= indent:
            raise YamlError(f"{path}:{number}: multi-line plain scalars are not supported")
        return _yaml_scalar(body, path, number), i + 1
    mapping: dict[str, Any] = {}
    while i < len(lines) and lines[i][1] == indent:
        number, _, body = lines[i]
        if not _is_mapping_line(body):
            raise YamlError(f"{path}:{number}: expected 'key: value', got {body!r}")
        key_text, rest = _split_key(body)
        key = _yaml_scalar(key_text, path, number)
        if not isinstance(key, str):
            key = str(key).lower() if isinstance(key, bool) else str(key)
        if key in mapping:
            raise YamlError(f"{path}:{number}: duplicate key {key!r}")
        i += 1
        if rest:
            mapping[key] = _yaml_scalar(rest, path, number)
        elif i < len(lines) and (
            lines[i][1] > indent or (lines[i][1] == indent and lines[i][2].startswith("- "))
        ):
            mapping[key], i = _yaml_block(lines, i, lines[i][1], path)
        else:
            mapping[key] = None
    if i < len(lines) and lines[i][1] > indent:
        raise YamlError(f"{path}:{lines[i][0]}: unexpected indentation")
    return mapping, i


def _is_mapping_line(body: str) -> bool:
    try:
        _split_key(body)
    except ValueError:
        return False
    return True


def _split_key(body: str) -> tuple[str, str]:
    """("key", "rest") of "key: rest" / "key:"; ValueError when the line is not a mapping entry."""
    if body[:1] in "'\"":
        end = body.find(body[0], 1)
        while end != -1 and body[0] == "'" and body[end + 1 : end + 2] == "'":
            end = body.find("'", end + 2)
        if end == -1 or not body[end + 1 :].startswith(":"):
            raise ValueError(body)
        after = body[end + 2 :]
        if after and not after.startswith(" "):
            raise ValueError(body)
        return body[: end + 1], after.strip()
    if body[:1] in "[{":
        raise ValueError(body)
    for i, ch in enumerate(body):
        if ch == ":" and (i + 1 == len(body) or body[i + 1] == " "):
            return body[:i].rstrip(), body[i + 1 :].strip()
    raise ValueError(body)


def _yaml_scalar(text: str, path: str, number: int) -> Any:
    text = text.strip()
    if text[:1] in "&*!|>%@`":
        raise YamlError(
            f"{path}:{number}: {text[:1]!r} (anchors, aliases, tags, block scalars) is not supported"
        )
    if text.startswith("["):
        if not text.endswith("]"):
            raise YamlError(f"{path}:{number}: unterminated flow sequence")
        inner = text[1:-1].strip()
        return [_yaml_scalar(p, path, number) for p in _split_flow(inner, path, number)] if inner else []
    if text.startswith("{"):
        if not text.endswith("}"):
            raise YamlError(f"{path}:{number}: unterminated flow mapping")
        inner = text[1:-1].strip()
        out: dict[str, Any] = {}
        for part in _split_flow(inner, path, number) if inner else []:
            try:
                k, v = _split_key(part)
            except ValueError:
                raise YamlError(f"{path}:{number}: expected 'key: value' in {text!r}") from None
            out[str(_yaml_scalar(k, path, number))] = _yaml_scalar(v, path, number) if v else None
        return out
    if text.startswith('"'):
        if len(text) < 2 or not text.endswith('"'):
            raise YamlError(f"{path}:{number}: unterminated double-quoted string")
        try:
            return json.loads(text)
        except ValueError:
            raise YamlError(f"{path}:{number}: bad escape in {text}") from None
    if text.startswith("'"):
        if len(text) < 2 or not text.endswith("'"):
            raise YamlError(f"{path}:{number}: unterminated single-quoted string")
        return text[1:-1].replace("''", "'")
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    with contextlib.suppress(ValueError):
        return int(text, 0) if text.lstrip("+-")[:2] in ("0x", "0o") else int(text)
    if any(c.isdigit() for c in text):
        with contextlib.suppress(ValueError):
            return float(text)
    return text


def _split_flow(inner: str, path: str, number: int) -> list[str]:
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(inner):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:i].strip())
            start = i + 1
    parts.append(inner[start:].strip())
    if quote or depth:
        raise YamlError(f"{path}:{number}: unbalanced flow collection")
    return [p for p in parts if p]


def check_audit_policy(args: dict[str, str]) -> None:
    """What kube-apiserver does with --audit-policy-file at start: read it, or exit with its
    error (k8s.io/apiserver's audit policy reader). `args` are its flags, name -> value; the
    policy must be an audit.k8s.io Policy. The log is not written: on the test hosts its
    directory (/var/log/kubernetes) is this machine's, not the host's."""
    path = args.get("audit-policy-file")
    if path is None:
        return
    try:
        text = Path(path).read_text()
    except OSError as err:
        die(
            f'Error: loading audit policy file: failed to read file path "{path}": open {path}: {(err.strerror or str(err)).lower()}'
        )
    try:
        doc = load_yaml(text, path)
    except YamlError as err:
        die(f'Error: loading audit policy file: failed decoding file "{path}": {err}')
    if (
        not isinstance(doc, dict)
        or doc.get("kind") != "Policy"
        or not str(doc.get("apiVersion", "")).startswith("audit.k8s.io/")
    ):
        die(f'Error: loading audit policy file: failed decoding file "{path}": not an audit.k8s.io Policy')
