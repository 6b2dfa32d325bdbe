"""BlobStore: atomic, verified, deduplicated writes; verifying reads."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest

import builder.store.blobs as blobs_module
from builder._fs import start_writeback
from builder.errors import BlobNotFound, DigestMismatch, SizeMismatch
from builder.image.digest import Digest
from builder.store.blobs import BlobStore
from builder.store.gc import collect
from builder.store.layout import Store


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "oci", tmp_path / "tmp")


def _tmp_files(root: Path) -> list[Path]:
    return [p for p in (root / "tmp").rglob("*") if p.is_file()]


def test_writer_commit_puts_blob_at_digest_path(blobs: BlobStore, tmp_path: Path) -> None:
    with blobs.writer() as w:
        assert w.write(b"hello ") == 6
        w.write(memoryview(b"world"))
        digest, size = w.commit()
    assert digest == Digest.from_bytes(b"hello world") and size == 11
    assert blobs.path(digest).read_bytes() == b"hello world"
    assert blobs.path(digest) == tmp_path / "oci" / "blobs" / "sha256" / digest.hex
    assert oct(blobs.path(digest).stat().st_mode & 0o777) == "0o644"
    assert blobs.has(digest) and blobs.size(digest) == 11
    assert list(blobs.list()) == [digest]
    assert _tmp_files(tmp_path) == []


def test_writer_abandoned_midway_leaves_nothing(blobs: BlobStore, tmp_path: Path) -> None:
    digest = Digest.from_bytes(b"partial data")
    with pytest.raises(RuntimeError), blobs.writer(expected=digest) as w:
        w.write(b"partial")
        raise RuntimeError("killed mid-way")
    assert not blobs.path(digest).exists()
    assert _tmp_files(tmp_path) == []
    with blobs.writer() as w:
        w.write(b"never committed")
    assert list(blobs.list()) == []
    assert _tmp_files(tmp_path) == []


def _write_forever(root: str, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    store = BlobStore(Path(root) / "oci", Path(root) / "tmp")
    w = store.writer()
    w.write(b"x" * 4096)
    w.flush()
    ready.set()
    signal.pause()


def test_killed_writer_leaves_only_a_temp_file_that_gc_removes(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_write_forever, args=(str(tmp_path), ready))
    proc.start()
    try:
        assert ready.wait(10)
        assert len(_tmp_files(tmp_path)) == 1
        assert collect(store).removed_tmp_dirs == 0  # the writer is alive: its dir is locked
        assert len(_tmp_files(tmp_path)) == 1
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    assert list(store.blobs.list()) == []
    assert collect(store).removed_tmp_dirs == 1
    assert _tmp_files(tmp_path) == []


def test_expected_digest_mismatch_names_both(blobs: BlobStore) -> None:
    expected = Digest.from_bytes(b"good")
    with pytest.raises(DigestMismatch) as info, blobs.writer(expected=expected) as w:
        w.write(b"evil")
        w.commit()
    assert str(expected) in str(info.value) and str(Digest.from_bytes(b"evil")) in str(info.value)
    assert not blobs.path(expected).exists() and list(blobs.list()) == []


def test_expected_size_mismatch(blobs: BlobStore) -> None:
    with pytest.raises(SizeMismatch, match="expected 5 bytes, got 4"), blobs.writer(expected_size=5) as w:
        w.write(b"four")
        w.commit()
    with pytest.raises(SizeMismatch, match="larger than"), blobs.writer(expected_size=3) as w:
        w.write(b"four")
    assert list(blobs.list()) == []


def test_existing_blob_is_left_alone(blobs: BlobStore) -> None:
    digest, _ = blobs.put(b"same")
    inode = blobs.path(digest).stat().st_ino
    assert blobs.put(b"same") == (digest, 4)
    with blobs.writer() as w:
        w.write(b"same")
        assert w.commit() == (digest, 4)
        assert w.commit() == (digest, 4)  # idempotent
    assert blobs.path(digest).stat().st_ino == inode


def test_put_with_wrong_expectation(blobs: BlobStore) -> None:
    with pytest.raises(DigestMismatch):
        blobs.put(b"data", Digest.from_bytes(b"other"))


def test_verifying_reader(blobs: BlobStore) -> None:
    digest, size = blobs.put(b"trusted content")
    with blobs.open(digest) as f:
        assert f.read() == b"trusted content"
    assert blobs.read_bytes(digest) == b"trusted content"
    path = blobs.path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered content")
    with pytest.raises(DigestMismatch, match=str(digest)), blobs.open(digest) as f:
        f.read()
    with pytest.raises(DigestMismatch):
        blobs.read_bytes(digest, max_size=1 << 20) if blobs.size(digest) != size else blobs.read_bytes(digest)
    path.write_bytes(b"trusted content!")
    with pytest.raises(SizeMismatch), blobs.open(digest, expected_size=size) as f:
        f.read()


def test_verifying_reader_in_small_reads(blobs: BlobStore) -> None:
    data = os.urandom(3 << 20)
    digest, _ = blobs.put(data)
    out = bytearray()
    with blobs.open(digest) as f:
        while chunk := f.read(65536):
            out += chunk
    assert bytes(out) == data


def test_missing_blob(blobs: BlobStore) -> None:
    missing = Digest.from_bytes(b"nope")
    with pytest.raises(BlobNotFound):
        blobs.open(missing)
    with pytest.raises(BlobNotFound):
        blobs.size(missing)
    blobs.delete(missing)  # idempotent


def test_read_bytes_refuses_huge(blobs: BlobStore) -> None:
    digest, _ = blobs.put(b"x" * 100)
    with pytest.raises(SizeMismatch, match="more than"):
        blobs.read_bytes(digest, max_size=10)


def test_delete_and_list(blobs: BlobStore) -> None:
    a, _ = blobs.put(b"a")
    b, _ = blobs.put(b"b")
    (blobs.oci_dir / "blobs" / "sha256" / "not-a-digest").write_bytes(b"")
    assert sorted(blobs.list()) == sorted([a, b])
    blobs.delete(a)
    assert list(blobs.list()) == [b]


def test_writer_is_a_sink_for_other_code(blobs: BlobStore) -> None:
    import gzip
    import io
    import shutil

    with blobs.writer() as w:
        with gzip.GzipFile(fileobj=w, mode="wb", mtime=0) as gz:  # type: ignore[call-overload]
            shutil.copyfileobj(io.BytesIO(b"payload" * 1000), gz)
        digest, _ = w.commit()
    assert gzip.decompress(blobs.read_bytes(digest)) == b"payload" * 1000


def test_child_process_gets_its_own_temp_dir(blobs: BlobStore) -> None:
    blobs.put(b"parent")
    parent_dir = blobs.process_dir()
    ctx = multiprocessing.get_context("fork")
    q = ctx.SimpleQueue()

    def child() -> None:
        blobs.put(b"child")
        q.put(str(blobs.process_dir()))

    p = ctx.Process(target=child)
    p.start()
    p.join()
    assert p.exitcode == 0
    assert q.get() != str(parent_dir)
    assert parent_dir.is_dir()


def test_writer_starts_writeback_as_it_goes(blobs: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every WRITEBACK_STEP bytes the writer starts the disk writes of what it wrote (so that
    commit's fsync is short, issue 16); the ranges follow each other, and the blob is right."""
    ranges: list[tuple[int, int]] = []

    def record(fd: int, offset: int, length: int) -> None:
        ranges.append((offset, length))
        start_writeback(fd, offset, length)  # the real call, on a real file

    monkeypatch.setattr(blobs_module, "start_writeback", record)
    piece = os.urandom(3 << 20)
    total = 0
    with blobs.writer() as w:
        for _ in range(24):  # 72 MiB in 3 MiB writes
            w.write(piece)
            total += len(piece)
        digest, size = w.commit()
    assert size == total and blobs.path(digest).stat().st_size == total
    assert len(ranges) == 2 and ranges[0][0] == 0
    assert all(length >= blobs_module.WRITEBACK_STEP for _, length in ranges)
    assert ranges[1][0] == ranges[0][0] + ranges[0][1]


def test_start_writeback_ignores_what_cannot_be_written_back() -> None:
    r, w = os.pipe()
    try:
        start_writeback(w, 0, 10)  # ESPIPE: ignored, nothing raised
    finally:
        os.close(r)
        os.close(w)
