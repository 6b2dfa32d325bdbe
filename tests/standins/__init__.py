"""Stand-ins for the upstream executables that cannot be fetched on these machines (k3s and its
install.sh, kubeadm, k0s, systemctl): the only fakes the tests use.

They check arguments, tokens and config files strictly (a wrong one is a non-zero exit with a
clear message on stderr) and keep their state where the real ones do, so an end-to-end test
verifies order, files written and credentials passed over SSH. `core` is the shared part
(docstring there: the stable API); `systemd` is the systemctl stand-in; one module per runtime
(`k3s`, `kubernetes`, `k0s`: named as basefs/<runtime>) writes that runtime's upstream files with
`write_upstream_files(out, version)`.

Public here: make_bin_dir(runtime, out, version=None), install_systemctl(host),
systemctl_zipapp(path). This package imports only the standard library at module level and
only relatively inside itself: the same files run as `tests.standins.*` under pytest and as
`standins.*` inside the zipapps the hosts execute (which have no PyYAML and no checkout).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from . import core

if TYPE_CHECKING:
    from tests.hosts import TestHost

BASEFS = Path(__file__).resolve().parents[2] / "basefs"


def _default_version(runtime: str) -> str:
    """The `version` of basefs/<runtime>/upstream.yaml (what `make basefs` builds by default),
    as a "v1.2.3" version. (A regex, not YAML: this package also runs where PyYAML is not.)"""
    upstream = BASEFS / runtime / "upstream.yaml"
    match = re.search(r"^version:\s*[\"']?(v[0-9.]+)", upstream.read_text(), re.MULTILINE)
    if match is None:
        raise ValueError(f"{upstream}: no version to take the stand-in version from")
    return match.group(1)


def make_bin_dir(runtime: str, out: Path, version: str | None = None) -> Path:
    """Write the stand-in versions of the upstream files basefs/<runtime>/upstream.yaml names
    into `out` (created), as a user's BIN_DIR for `make basefs`; returns `out`.

    `version` ("v1.29.4"; default: basefs/<runtime>/upstream.yaml's version) is what the stand-ins
    report (`k3s --version`...), so an upgrade image is a second bin dir with a newer version.
    Checks that every required upstream.yaml source glob matches exactly one written file, so
    upstream.yaml and the stand-ins cannot drift apart.
    """
    import yaml  # only on the controller (pytest); the zipapps never import this function

    module = importlib.import_module(f"{__name__}.{runtime}")
    out.mkdir(parents=True, exist_ok=True)
    module.write_upstream_files(out, version or _default_version(runtime))
    upstream = yaml.safe_load((BASEFS / runtime / "upstream.yaml").read_text())
    for entry in upstream["files"]:
        matches = [p for p in out.glob(str(entry["source"])) if p.is_file()]
        if len(matches) != 1 and not (entry.get("optional") and not matches):
            raise AssertionError(
                f"stand-in {runtime}: upstream.yaml source {entry['source']!r} matches "
                f"{[p.name for p in matches]} in {out} (need exactly one)"
            )
    return out


def systemctl_zipapp(path: Path) -> Path:
    """The systemctl stand-in as an executable at `path`."""
    return core.write_zipapp("standins.systemd:main", path)


def install_systemctl(host: TestHost) -> Path:
    """Put the systemctl stand-in first on the host's PATH (/usr/local/bin/systemctl)."""
    return systemctl_zipapp(host.path("/usr/local/bin/systemctl"))


__all__ = ["core", "install_systemctl", "make_bin_dir", "systemctl_zipapp"]
