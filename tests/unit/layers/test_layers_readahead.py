"""layers/_readahead.py: the bytes of the stream, in order; the stream's errors raised at the
read that reaches them; close() stops a filler that is ahead, promptly."""

from __future__ import annotations

import io
import os
import time

import pytest

from builder.errors import LayerError
from builder.layers._readahead import ReadAhead


def _read_all(ra: ReadAhead, size: int) -> bytes:
    out = bytearray()
    view = memoryview(bytearray(size))
    while n := ra.readinto(view):
        out += view[:n]
    return bytes(out)


@pytest.mark.parametrize("read_size", [1, 511, 512, 4096, 1 << 20])
def test_bytes_in_order_whatever_the_read_size(read_size: int) -> None:
    data = os.urandom(300_000)
    ra = ReadAhead(io.BytesIO(data), chunk=65536, depth=2)
    try:
        assert _read_all(ra, read_size) == data
        assert ra.readinto(memoryview(bytearray(10))) == 0  # EOF stays EOF
    finally:
        ra.close()


class _Failing(io.RawIOBase):
    """Gives `good` bytes, then raises LayerError."""

    def __init__(self, good: bytes) -> None:
        self.good = memoryview(good)

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        if not self.good:
            raise LayerError("layer sha256:ab: cannot be decompressed: corrupt")
        n = min(len(buf), len(self.good))
        buf[:n] = self.good[:n]
        self.good = self.good[n:]
        return n


def test_an_error_is_raised_after_the_bytes_before_it() -> None:
    ra = ReadAhead(_Failing(b"x" * 100_000), chunk=4096, depth=2)
    got = bytearray()
    view = memoryview(bytearray(1000))
    with pytest.raises(LayerError, match="cannot be decompressed"):
        while n := ra.readinto(view):
            got += view[:n]
    assert bytes(got) == b"x" * 100_000
    ra.close()


class _Endless(io.RawIOBase):
    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        buf[:] = b"\0" * len(buf)
        return len(buf)


def test_close_stops_a_filler_that_is_ahead() -> None:
    ra = ReadAhead(_Endless(), chunk=4096, depth=2)
    ra.readinto(memoryview(bytearray(10)))
    started = time.monotonic()
    ra.close()  # the filler is blocked on a full queue
    assert time.monotonic() - started < 2


def test_readview_lends_the_bytes_in_order_and_mixes_with_readinto() -> None:
    data = os.urandom(200_000)
    ra = ReadAhead(io.BytesIO(data), chunk=65536, depth=2)
    got = bytearray()
    view = memoryview(bytearray(777))
    try:
        while True:
            lent = ra.readview(10_000)
            got += lent
            n = ra.readinto(view)
            got += view[:n]
            if not lent and not n:
                break
        assert bytes(got) == data
    finally:
        ra.close()
