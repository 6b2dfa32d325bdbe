"""A manifest the registry serves with bytes that do not hash to the digest asked for (by
digest) or announced (Docker-Content-Digest, by tag) is refused before anything is stored:
the check in `RegistryClient` that a no-op would let through (issue 11, item 6)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from builder.errors import DigestMismatch
from builder.registry.client import RegistryClient
from builder.store.layout import Store
from tests.component.registry._images import add_image
from tests.registry_fixtures import RegistryServer

pytestmark = pytest.mark.component


def _tamper_manifest(registry: RegistryServer, digest: str) -> None:
    """Change one digit of the config's size on the registry's disk: still valid JSON, same
    length (so no size check can notice), a different sha256."""
    data = registry.blob_data_path(digest)
    text = data.read_text()
    match = re.search(r'"size":\s*(\d)', text)
    assert match, text
    digit = match.group(1)
    other = "1" if digit != "1" else "2"
    data.write_text(text[: match.start(1)] + other + text[match.end(1) :])


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_pull_refuses_a_manifest_whose_bytes_do_not_match_its_digest(
    registry: RegistryServer, tmp_path: Path, by: str
) -> None:
    src = Store.open(tmp_path / "src")
    desc = add_image(src, "app:v1", [{"a": b"a" * 2_000}])
    tagged = f"{registry.host}/app:v1"
    RegistryClient().push(src, "app:v1", tagged)
    _tamper_manifest(registry, str(desc.digest))
    ref = tagged if by == "tag" else f"{registry.host}/app@{desc.digest}"

    dst = Store.open(tmp_path / "dst")
    with pytest.raises(DigestMismatch) as info:
        RegistryClient().pull(dst, ref)
    message = str(info.value)
    assert message.startswith("manifest ") and str(desc.digest) in message and "\n" not in message
    assert dst.refs.list() == []
    assert not dst.blobs.has(desc.digest)
    with pytest.raises(DigestMismatch):
        RegistryClient().resolve(ref)
