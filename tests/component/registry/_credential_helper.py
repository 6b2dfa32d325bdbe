"""A real `docker-credential-NAME` program for the credential tests, written into a tmp dir that
is put first on PATH.

It speaks the docker-credential-helpers protocol (github.com/docker/docker-credential-helpers,
client/client.go): `get` reads a server URL on stdin and prints
`{"ServerURL", "Username", "Secret"}`, or "credentials not found in native keychain" with exit
1; `store` reads that JSON on stdin; `erase` reads a server URL; `list` prints {url: user}. Each
helper keeps its data in `NAME.json` next to it and logs every call (`get URL`) to `NAME.log`,
so a test sees which helper was asked what.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

NOT_FOUND = "credentials not found in native keychain"

_SCRIPT = """#!{python}
import json, sys
from pathlib import Path

here = Path(sys.argv[0])
db_path, log_path = here.parent / (here.name + ".json"), here.parent / (here.name + ".log")
db = json.loads(db_path.read_text()) if db_path.exists() else {{}}
action = sys.argv[1] if len(sys.argv) > 1 else ""
data = sys.stdin.read()
with log_path.open("a") as log:
    log.write(f"{{action}} {{data.strip() if action != 'store' else json.loads(data)['ServerURL']}}\\n")
if action == "get":
    entry = db.get(data.strip())
    if entry is None:
        print("{not_found}")
        sys.exit(1)
    print(json.dumps({{"ServerURL": data.strip(), "Username": entry[0], "Secret": entry[1]}}))
elif action == "store":
    doc = json.loads(data)
    db[doc["ServerURL"]] = [doc["Username"], doc["Secret"]]
    db_path.write_text(json.dumps(db))
elif action == "erase":
    if db.pop(data.strip(), None) is None:
        print("{not_found}")
        sys.exit(1)
    db_path.write_text(json.dumps(db))
elif action == "list":
    print(json.dumps({{k: v[0] for k, v in db.items()}}))
else:
    print("unknown action " + action)
    sys.exit(1)
"""


@dataclass(frozen=True)
class HelperBin:
    """The PATH directory holding the helpers; `install(NAME)` adds `docker-credential-NAME`."""

    bin_dir: Path

    def install(self, name: str, script: str | None = None) -> Path:
        path = self.bin_dir / f"docker-credential-{name}"
        path.write_text(script or _SCRIPT.format(python=sys.executable, not_found=NOT_FOUND))
        path.chmod(0o755)
        return path

    def data(self, name: str) -> dict[str, list[str]]:
        """{server URL: [user, secret]} as the helper holds it."""
        path = self.bin_dir / f"docker-credential-{name}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def seed(self, name: str, server: str, username: str, secret: str) -> None:
        data = self.data(name)
        data[server] = [username, secret]
        (self.bin_dir / f"docker-credential-{name}.json").write_text(json.dumps(data))

    def calls(self, name: str) -> list[str]:
        path = self.bin_dir / f"docker-credential-{name}.log"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def helper_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HelperBin:
    """An empty directory first on PATH for `docker-credential-*` programs."""
    bin_dir = tmp_path / "helper-bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return HelperBin(bin_dir)


def write_docker_config(docker_config: Path, doc: dict[str, object]) -> Path:
    path = docker_config / "config.json"
    path.write_text(json.dumps(doc))
    return path
