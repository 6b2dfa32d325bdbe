"""Progress events of push and pull; only `cli/output.py` turns them into text or rich bars.

Kept apart from `client.py` so that the CLI imports the event types without the client (and
without requests/oras). A blob moves through BlobStarted, BlobProgress* and one of BlobDone,
BlobSkipped or BlobMounted; manifests report ManifestDone; a retry reports Retrying first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class BlobStarted:
    """A blob transfer begins (`direction` "push" or "pull"); `size` bytes in all."""

    digest: str
    size: int
    media_type: str
    direction: Literal["push", "pull"]


@dataclass(frozen=True, slots=True)
class BlobProgress:
    """`done` of `size` bytes of `digest` have gone over the wire in this attempt and before."""

    digest: str
    done: int
    size: int


@dataclass(frozen=True, slots=True)
class BlobDone:
    """The blob was sent or received in full; `transferred` counts the bytes this run moved."""

    digest: str
    size: int
    transferred: int


@dataclass(frozen=True, slots=True)
class BlobSkipped:
    """Nothing moved: the registry (push) or the local store (pull) already had the blob."""

    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class BlobMounted:
    """Push only: the registry linked the blob from another repository (`source`)."""

    digest: str
    size: int
    source: str


@dataclass(frozen=True, slots=True)
class ManifestDone:
    """A manifest or index was pushed to, or fetched from, `reference`."""

    reference: str
    digest: str
    media_type: str


@dataclass(frozen=True, slots=True)
class Retrying:
    """A request failed in a way a retry can fix; the next attempt starts after `delay_s`."""

    what: str
    attempt: int
    delay_s: float
    reason: str


RegistryEvent = BlobStarted | BlobProgress | BlobDone | BlobSkipped | BlobMounted | ManifestDone | Retrying
