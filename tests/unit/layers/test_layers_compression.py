from __future__ import annotations

import gzip
import hashlib
import io
import random
import shutil
import subprocess

import pytest

from builder.layers.compression import (
    GZIP_HEADER,
    Compression,
    detect_compression,
    open_compressor,
    open_decompressed,
)


def compressible(n: int, seed: int = 7) -> bytes:
    """Binary-like data: repeated random 'instructions' with noise, about 3:1 under zstd -3."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randint(2, 12)) for _ in range(512)]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words)
        if rng.random() < 0.1:
            out += rng.randbytes(4)
    return bytes(out[:n])


def compress(kind: Compression, data: bytes, *, threads: int | None = None, pieces: int = 1) -> bytes:
    sink = io.BytesIO()
    c = open_compressor(kind, sink, threads=threads)
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        c.write(memoryview(data)[i : i + step])
    c.close()
    assert not sink.closed
    return sink.getvalue()


@pytest.mark.parametrize("kind", list(Compression))
def test_round_trip_and_detection(kind: Compression) -> None:
    data = compressible(3 << 20)
    blob = compress(kind, data, pieces=7)
    assert detect_compression(blob[:4]) is kind
    assert open_decompressed(io.BytesIO(blob)).read() == data
    assert open_decompressed(io.BytesIO(blob), kind).read() == data
    assert compress(kind, data, pieces=3) == blob  # reproducible, whatever the write sizes


def test_zstd_output_independent_of_worker_count() -> None:
    data = compressible(24 << 20, seed=3)  # several 8 MB zstd jobs
    one = compress(Compression.ZSTD, data, threads=1, pieces=11)
    two = compress(Compression.ZSTD, data, threads=2, pieces=5)
    assert hashlib.sha256(one).digest() == hashlib.sha256(two).digest()
    assert compress(Compression.ZSTD, data, pieces=2) == one  # the machine's default worker count


def test_gzip_header_is_fixed_and_readable_by_gzip() -> None:
    blob = compress(Compression.GZIP, b"hello" * 1000)
    assert blob[:10] == GZIP_HEADER == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    assert gzip.decompress(blob) == b"hello" * 1000
    assert compress(Compression.GZIP, b"") == GZIP_HEADER + b"\x03\x00" + bytes(8)


def test_command_line_tools_read_our_frames() -> None:
    data = compressible(1 << 20)
    for tool, kind in (("zstd", Compression.ZSTD), ("gzip", Compression.GZIP)):
        exe = shutil.which(tool)
        assert exe, f"{tool} is required"
        out = subprocess.run([exe, "-dc"], input=compress(kind, data), capture_output=True, check=True)
        assert out.stdout == data


def test_zstd_frame_has_checksum_and_no_content_size() -> None:
    blob = compress(Compression.ZSTD, b"abc" * 100)
    descriptor = blob[4]
    assert descriptor & 0x04  # Content_Checksum_flag
    assert descriptor >> 6 == 0 and not descriptor & 0x20  # no Frame_Content_Size


def test_concatenated_frames_and_members_read_as_one_stream() -> None:
    for kind in (Compression.ZSTD, Compression.GZIP):
        blob = compress(kind, b"one") + compress(kind, b"two")
        assert open_decompressed(io.BytesIO(blob)).read() == b"onetwo"


def test_detection_of_plain_and_short_streams() -> None:
    assert detect_compression(b"") is Compression.NONE
    assert detect_compression(b"ustar") is Compression.NONE
    assert open_decompressed(io.BytesIO(b"ab")).read() == b"ab"
