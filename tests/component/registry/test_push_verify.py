"""Push reports success only for what the registry really holds (issue 9, item 6).

The server here is a stand-in on purpose: the fault under test is a server that lies (answers
200 to everything, accepts a manifest with the wrong status, or says yes and stores nothing),
which no real registry does on request. It is a tiny in-memory registry (http.server in a
thread on 127.0.0.1) with the lies switched on one at a time; the same pushes against the real
docker-registry are covered by test_push_pull.py.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from builder.errors import RegistryError
from builder.registry.client import RegistryClient, RegistryOptions
from builder.registry.events import BlobDone, BlobSkipped, RegistryEvent
from builder.store.layout import Store
from tests.component.cli.test_cli import one_error_line
from tests.component.registry._images import add_image
from tests.conftest import SealerRunner

pytestmark = pytest.mark.component

BLOB = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
UPLOAD = re.compile(r"^/v2/(?P<repo>.+)/blobs/uploads/(?P<id>[0-9]*)$")
MANIFEST = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")
OPTIONS = RegistryOptions(plain_http=True, retries=1, timeout_s=5)


@dataclass
class LyingRegistry:
    """An in-memory registry that tells one `lie`: "ok-to-all" (200 and nothing else to every
    request), "manifest-put-200", "stores-nothing" (spec answers, nothing kept),
    "blob-head-size" (blob HEAD says 200 with a wrong Content-Length), "blob-head-no-digest"
    (blob HEAD without Docker-Content-Digest, as some registries do: not a lie)."""

    lie: str
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    port: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


def _handler(state: LyingRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _answer(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _serve(self) -> None:
            path, _, query = self.path.partition("?")
            body = self._body() if self.command in ("PUT", "POST", "PATCH") else b""
            if state.lie == "ok-to-all":
                return self._answer(200)
            if path == "/v2/":
                return self._answer(200)
            if (m := UPLOAD.match(path)) and self.command == "POST":
                return self._answer(202, {"Location": f"/v2/{m['repo']}/blobs/uploads/1"})
            if (m := UPLOAD.match(path)) and self.command == "PUT":
                digest = query.removeprefix("digest=").replace("%3A", ":")
                if state.lie != "stores-nothing":
                    state.blobs[digest] = body
                return self._answer(
                    201, {"Location": f"/v2/{m['repo']}/blobs/{digest}", "Docker-Content-Digest": digest}
                )
            if (m := BLOB.match(path)) and self.command in ("HEAD", "GET"):
                data = state.blobs.get(m["digest"])
                if data is None and state.lie != "blob-head-size":
                    return self._answer(404)
                if self.command == "HEAD" and state.lie == "blob-head-size":
                    self.send_response(200)
                    self.send_header("Content-Length", "1")
                    self.end_headers()
                    return None
                headers = {} if state.lie == "blob-head-no-digest" else {"Docker-Content-Digest": m["digest"]}
                return self._answer(200, headers, data or b"")
            if (m := MANIFEST.match(path)) and self.command == "PUT":
                digest = "sha256:" + hashlib.sha256(body).hexdigest()
                if state.lie != "stores-nothing":
                    media_type = self.headers.get("Content-Type", "")
                    state.manifests[m["ref"]] = state.manifests[digest] = (body, media_type)
                status = 200 if state.lie == "manifest-put-200" else 201
                return self._answer(status, {"Docker-Content-Digest": digest})
            if (m := MANIFEST.match(path)) and self.command in ("HEAD", "GET"):
                found = state.manifests.get(m["ref"])
                if found is None:
                    return self._answer(404)
                data, media_type = found
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                return self._answer(200, {"Content-Type": media_type, "Docker-Content-Digest": digest}, data)
            return self._answer(404)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler


@pytest.fixture
def liar(request: pytest.FixtureRequest) -> Iterator[LyingRegistry]:
    state = LyingRegistry(request.param)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("liar", ["ok-to-all", "manifest-put-200", "stores-nothing"], indirect=True)
def test_push_to_a_lying_server_fails_in_one_line(liar: LyingRegistry, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    desc = add_image(store, "app:v1", [{"a": b"a" * 5000}])
    if liar.lie == "manifest-put-200":  # a server that already holds the blobs: only the PUT lies
        for blob in (store.read_manifest(desc).config, *store.read_manifest(desc).layers):
            liar.blobs[str(blob.digest)] = store.blobs.read_bytes(blob.digest)
    with pytest.raises(RegistryError) as info:
        RegistryClient(OPTIONS).push(store, "app:v1", f"{liar.host}/app:v1")
    message = str(info.value)
    assert liar.host in message and "\n" not in message, message
    assert info.value.hint, "a lying server must come with a hint on what to check"


@pytest.mark.parametrize("liar", ["ok-to-all"], indirect=True)
def test_cli_push_to_a_server_answering_200_prints_no_digest(
    liar: LyingRegistry, sealer: SealerRunner, store: Store
) -> None:
    add_image(store, "app:v1", [{"a": b"a" * 5000}])
    result = sealer("push", "app:v1", f"{liar.host}/app:v1", "--plain-http", expect=1)
    assert result.stdout == ""
    assert liar.host in one_error_line(result.stderr)


@pytest.mark.parametrize("liar", ["blob-head-size", "blob-head-no-digest"], indirect=True)
def test_blob_head_is_trusted_only_with_the_right_size(liar: LyingRegistry, tmp_path: Path) -> None:
    """A HEAD 200 whose Content-Length is not the blob's size does not count as "already there";
    one without Docker-Content-Digest but with the right size does (some registries omit it)."""
    store = Store.open(tmp_path / "s")
    desc = add_image(store, "app:v1", [{"a": b"a" * 5000}, {"b": b"b" * 7000}])
    blobs = {str(b.digest) for b in (store.read_manifest(desc).config, *store.read_manifest(desc).layers)}
    ref = f"{liar.host}/app:v1"
    events: list[RegistryEvent] = []
    assert RegistryClient(OPTIONS, on_event=events.append).push(store, "app:v1", ref).digest == desc.digest
    assert {e.digest for e in events if isinstance(e, BlobDone)} == blobs
    assert set(liar.blobs) == blobs
    events.clear()
    RegistryClient(OPTIONS, on_event=events.append).push(store, "app:v1", ref)
    skipped = {e.digest for e in events if isinstance(e, BlobSkipped)}
    assert skipped == (set() if liar.lie == "blob-head-size" else blobs)
