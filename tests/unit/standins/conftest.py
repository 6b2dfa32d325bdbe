"""The stand-ins' shared fixtures: `api`, a control plane (core.make_api_server) on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.standins import core
from tests.standins.core import ApiClient


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiClient]:
    server = core.make_api_server(tmp_path / "db.json", "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ApiClient(f"https://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
