"""The content-addressed blob store of an OCI image layout (umoci's `cas`: knows no manifests).

Contract:
- Every blob is written through `BlobWriter`: bytes go to a temp file in this process's flock'ed
  directory under `tmp/`, hashed and counted as they pass; `commit()` fsyncs, checks the
  caller's expected digest and size, renames into `blobs/<alg>/<hex>` and fsyncs the directory.
  A partial or unverified file never sits at a digest path. A blob already present is left alone.
- Reads (`open`, `read_bytes`) verify: the digest is checked at EOF, the size as bytes arrive.
- `delete` is idempotent: a missing blob is not an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from builder._fs import fsync_dir, make_locked_dir, remove_tree, start_writeback
from builder.errors import BlobNotFound, DigestMismatch, SealerError, SizeMismatch, StoreError
from builder.image.digest import Digest

TMP_PREFIX = "proc-"
DEFAULT_MAX_READ = 64 << 20
WRITEBACK_STEP = 32 << 20  # a blob writer starts the disk writes of every 32 MiB as it goes

Buffer = bytes | bytearray | memoryview


class _ProcessDir:
    """This process's directory under tmp/, held with an exclusive flock until it goes away.

    Blob temp files and every scratch dir of the process (a build's, a RUN's overlay) live in
    it, so one lock tells the sweep (`Store.sweep`) whether all of it is in use or abandoned.
    """

    def __init__(self, tmp_dir: Path) -> None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self.pid = os.getpid()
        self.path, self.fd = make_locked_dir(tmp_dir, prefix=f"{TMP_PREFIX}{self.pid}-")
        self._finalizer = weakref.finalize(self, _release_process_dir, self.path, self.fd, self.pid)

    def close(self) -> None:
        self._finalizer()


def _release_process_dir(path: Path, fd: int, pid: int) -> None:
    # Only the creating process removes the dir: a forked child shares the lock, not ownership.
    if os.getpid() != pid:
        return
    with contextlib.suppress(SealerError, OSError):
        remove_tree(path)
    with contextlib.suppress(OSError):
        os.close(fd)


class BlobWriter:
    """A writable binary sink that becomes a blob on `commit()`, or nothing at all.

    Use as a context manager; leaving the block without commit (or on an error) deletes the
    temp file. `write` hashes and counts; with `expected_size` it fails as soon as more bytes
    arrive than promised, so hostile input cannot fill the disk.
    """

    def __init__(self, store: BlobStore, *, expected: Digest | None, expected_size: int | None) -> None:
        self._store = store
        fd, tmp = tempfile.mkstemp(prefix="blob-", dir=store.process_dir())
        self._tmp = Path(tmp)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._hasher = hashlib.new(expected.algorithm if expected else "sha256")
        self._expected = expected
        self._expected_size = expected_size
        self.size = 0
        self._written_back = 0
        self.result: tuple[Digest, int] | None = None

    # -- file protocol ---------------------------------------------------------------------

    def write(self, data: Buffer) -> int:
        if self._file is None:
            raise ValueError("write to a closed BlobWriter")
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        if self._expected_size is not None and self.size + n > self._expected_size:
            self.abort()
            label = f"blob {self._expected}" if self._expected else "blob"
            raise SizeMismatch(f"{label} is larger than its expected {self._expected_size} bytes")
        self._hasher.update(data)
        self._file.write(data)
        self.size += n
        if self.size - self._written_back >= WRITEBACK_STEP:
            # Start the disk writes now, so that commit's fsync has little left to wait for
            self._file.flush()
            start_writeback(self._file.fileno(), self._written_back, self.size - self._written_back)
            self._written_back = self.size
        return n

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def tell(self) -> int:
        return self.size

    @property
    def closed(self) -> bool:
        return self._file is None

    def close(self) -> None:
        """Abort unless committed (closing is not committing)."""
        self.abort()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()

    # -- outcome ---------------------------------------------------------------------------

    @property
    def digest(self) -> Digest:
        """The digest of what was written so far."""
        return Digest(self._hasher.name, self._hasher.hexdigest())

    def commit(self) -> tuple[Digest, int]:
        """Verify and move into place; returns (digest, size). Idempotent once committed."""
        if self.result is not None:
            return self.result
        if self._file is None:
            raise StoreError("commit of an aborted BlobWriter")
        digest, size = self.digest, self.size
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            if self._expected is not None and digest != self._expected:
                raise DigestMismatch(f"blob digest mismatch: expected {self._expected}, got {digest}")
            if self._expected_size is not None and size != self._expected_size:
                raise SizeMismatch(
                    f"blob {digest} size mismatch: expected {self._expected_size} bytes, got {size}"
                )
            final = self._store.path(digest)
            if final.exists():
                # Content-addressed: what is there is already these bytes. Leave it alone.
                os.unlink(self._tmp)
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(self._tmp, 0o644)
                os.rename(self._tmp, final)
                fsync_dir(final.parent)
        except BaseException:
            self.abort()
            raise
        self.result = (digest, size)
        return self.result

    def abort(self) -> None:
        """Drop the temp file (no-op after commit)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        if self.result is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)


class _VerifyingRaw(io.RawIOBase):
    """Raw reader that hashes what it returns and raises DigestMismatch at EOF on a mismatch."""

    def __init__(self, f: BinaryIO, digest: Digest, expected_size: int | None) -> None:
        self._f = f
        self._digest = digest
        self._hasher = hashlib.new(digest.algorithm)
        self._expected_size = expected_size
        self._size = 0
        self._verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Buffer) -> int:  # type: ignore[override]
        view = memoryview(b).cast("B")
        n = self._f.readinto(view)  # type: ignore[attr-defined]
        if n:
            self._hasher.update(view[:n])
            self._size += n
            if self._expected_size is not None and self._size > self._expected_size:
                raise SizeMismatch(
                    f"blob {self._digest} is larger than its expected {self._expected_size} bytes"
                )
            return int(n)
        self._verify()
        return 0

    def _verify(self) -> None:
        if self._verified:
            return
        if self._expected_size is not None and self._size != self._expected_size:
            raise SizeMismatch(
                f"blob {self._digest} size mismatch: expected {self._expected_size}, got {self._size}"
            )
        actual = Digest(self._hasher.name, self._hasher.hexdigest())
        if actual != self._digest:
            raise DigestMismatch(f"blob digest mismatch: expected {self._digest}, got {actual}")
        self._verified = True

    def close(self) -> None:
        self._f.close()
        super().close()


class BlobStore:
    """Blobs of one OCI layout (`oci_dir/blobs/<alg>/<hex>`), written via temp files in `tmp_dir`."""

    def __init__(self, oci_dir: str | os.PathLike[str], tmp_dir: str | os.PathLike[str]) -> None:
        self.oci_dir = Path(oci_dir)
        self.tmp_dir = Path(tmp_dir)
        self._proc: _ProcessDir | None = None
        # Writers may be opened from several threads (pull moves blobs in parallel): without
        # the lock two threads could each make a dir, and dropping one would delete the
        # other's temp files.
        self._proc_lock = threading.Lock()

    def process_dir(self) -> Path:
        """This process's locked temp dir (created on first use): for blob temp files and any
        scratch the process needs; the sweep reclaims it once the process is gone."""
        # After a fork the child gets its own dir (and lock), so gc never mistakes it for dead.
        with self._proc_lock:
            if self._proc is None or self._proc.pid != os.getpid() or not self._proc.path.is_dir():
                self._proc = _ProcessDir(self.tmp_dir)
            return self._proc.path

    def close(self) -> None:
        """Release this process's temp dir (also done when the store is garbage collected)."""
        if self._proc is not None:
            self._proc.close()
            self._proc = None

    def path(self, digest: Digest) -> Path:
        return self.oci_dir / "blobs" / digest.algorithm / digest.hex

    def writer(self, *, expected: Digest | None = None, expected_size: int | None = None) -> BlobWriter:
        """A new BlobWriter; see its docstring for the contract."""
        return BlobWriter(self, expected=expected, expected_size=expected_size)

    def put(self, data: bytes, expected: Digest | None = None) -> tuple[Digest, int]:
        """Store `data`; returns (digest, size). Cheap when the blob already exists."""
        if expected is None or expected.algorithm == "sha256":
            digest = Digest.from_bytes(data)
            if expected is not None and digest != expected:
                raise DigestMismatch(f"blob digest mismatch: expected {expected}, got {digest}")
            if self.has(digest):
                return digest, len(data)
        with self.writer(expected=expected, expected_size=len(data)) as w:
            w.write(data)
            return w.commit()

    def has(self, digest: Digest) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: Digest) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found in {self.oci_dir}") from None

    def open(self, digest: Digest, *, expected_size: int | None = None) -> BinaryIO:
        """A reader that raises DigestMismatch/SizeMismatch when the content is not `digest`."""
        try:
            f = open(self.path(digest), "rb", buffering=0)  # noqa: SIM115 - owned by the reader
        except FileNotFoundError:
            raise BlobNotFound(
                f"blob {digest} not found in {self.oci_dir}",
                hint="the image is incomplete; pull or load it again",
            ) from None
        return io.BufferedReader(_VerifyingRaw(f, digest, expected_size), buffer_size=1 << 20)

    def read_bytes(self, digest: Digest, max_size: int = DEFAULT_MAX_READ) -> bytes:
        """The whole blob, verified; for manifests and configs, refused above `max_size`."""
        size = self.size(digest)
        if size > max_size:
            raise SizeMismatch(f"blob {digest} is {size} bytes, more than the {max_size} allowed here")
        with self.open(digest, expected_size=size) as f:
            return f.read()

    def delete(self, digest: Digest) -> None:
        """Remove a blob; a missing blob is fine (idempotent)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(digest))

    def list(self) -> Iterator[Digest]:
        """Every blob present, in no particular order (stray non-digest names are skipped)."""
        root = self.oci_dir / "blobs"
        if not root.is_dir():
            return
        for alg_dir in root.iterdir():
            if not alg_dir.is_dir():
                continue
            for entry in alg_dir.iterdir():
                text = f"{alg_dir.name}:{entry.name}"
                if Digest.is_valid(text) and entry.is_file():
                    yield Digest.parse(text)
