"""A minimal client of the Kubernetes CRI (runtime.v1) for the test hosts' real containerd: the
one call a kubelet makes to pull an image, `ImageService/PullImage`, as raw gRPC with the few
protobuf fields it needs encoded here (no generated code, no protobuf package).

    PullImageRequest  { ImageSpec image = 1; AuthConfig auth = 2; }
    ImageSpec         { string image = 1; }
    AuthConfig        { string username = 1; string password = 2; string auth = 3; }
    PullImageResponse { string image_ref = 1; }

`auth` is what a kubelet passes from its config.json (the base64 of user:password).
"""

from __future__ import annotations

from pathlib import Path

import grpc

PULL_IMAGE = "/runtime.v1.ImageService/PullImage"


class CRIError(Exception):
    """containerd refused the call: `code` is the gRPC status, the message its details."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2: strings and messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _first_string(message: bytes) -> str:
    """Field 1 of a message whose first field is a string (PullImageResponse.image_ref)."""
    if not message:
        return ""
    assert message[0] == (1 << 3 | 2), message[:8]
    length, shift, i = 0, 0, 1
    while True:
        byte = message[i]
        length |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return message[i : i + length].decode()


def pull_image(socket: Path, image: str, *, auth: str | None = None, timeout_s: float = 60) -> str:
    """PullImage `image` through containerd's CRI socket `socket`; returns the image ref (the
    image id containerd gives). `auth`: an AuthConfig.auth, as a kubelet sends it."""
    request = _field(1, _field(1, image.encode()))
    if auth is not None:
        request += _field(2, _field(3, auth.encode()))
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        call = channel.unary_unary(PULL_IMAGE, request_serializer=None, response_deserializer=None)
        try:
            response: bytes = call(request, timeout=timeout_s)
        except grpc.RpcError as err:
            raise CRIError(err.code(), err.details() or "") from None
    return _first_string(response)
