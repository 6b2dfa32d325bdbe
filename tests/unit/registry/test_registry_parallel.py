"""The order in which a push or pull starts its blobs (the largest alone, until its bytes move),
and the blob-location hints they leave, written without waiting for the disk."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from builder.image.descriptor import Descriptor
from builder.image.digest import Digest
from builder.registry.client import RegistryClient
from builder.registry.events import BlobProgress, BlobStarted, RegistryEvent
from builder.store.layout import Store


def _blob(n: int, size: int) -> Descriptor:
    return Descriptor("application/octet-stream", Digest.parse("sha256:" + f"{n:x}" * 64), size)


def test_largest_blob_starts_alone_until_its_bytes_move() -> None:
    big, small = _blob(1, 1000), [_blob(n, 10) for n in (2, 3, 4)]
    seen: list[str] = []
    lock = threading.Lock()
    events: list[RegistryEvent] = []
    client = RegistryClient(on_event=events.append)

    def work(desc: Descriptor) -> None:
        with lock:
            seen.append(f"start {desc.size}")
        client._emit(BlobStarted(str(desc.digest), desc.size, desc.media_type, "push"))
        if desc is big:
            time.sleep(0.1)  # its HEAD and POST: the others must not start meanwhile
            with lock:
                seen.append("big moving")
            client._emit(BlobProgress(str(desc.digest), 1, desc.size))
            time.sleep(0.1)

    client._parallel(work, [*small, big])
    assert seen[:2] == ["start 1000", "big moving"], seen
    assert sorted(seen[2:]) == ["start 10"] * 3
    assert len(events) == 5  # every event still reached on_event


def test_a_failing_largest_blob_fails_the_whole_and_starts_no_other() -> None:
    big, small = _blob(1, 1000), [_blob(n, 10) for n in (2, 3)]
    started: list[int] = []
    client = RegistryClient()

    def work(desc: Descriptor) -> None:
        started.append(desc.size)
        if desc is big:
            raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        client._parallel(work, [*small, big])
    assert started == [1000]


def test_blob_location_hints_are_written_without_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hint cache (digest -> repositories) is lossy by design: writing it must not wait for
    the disk (two fsyncs were ~4 ms of every push and pull, 15 ms on a busy disk)."""
    store = Store.open(tmp_path / "s")
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    client = RegistryClient()
    client._remember(store, "reg.example:5000", "team/app", [str(_blob(1, 1).digest)])
    assert synced == []
    assert client._read_cache(store) == {"reg.example:5000": {str(_blob(1, 1).digest): ["team/app"]}}
