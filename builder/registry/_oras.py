"""The HTTP side of one registry host: `OrasRegistry`, oras-py's `Registry` with what is wrong
for us overridden, put together from one module per concern:

- `_http.py`: the request layer (retries within the operation's budget, Basic and Bearer
  auth, every failure mapped into `builder.errors`), the TLS probe, the login check;
- `_manifests.py`: manifests up and down as exact bytes;
- `_blob_upload.py`: blob existence, upload sessions, mounts, streamed uploads;
- `_blob_download.py`: streamed, resumed downloads into a sink.

These move bytes; what to move (policy) lives in `client.py` and its `_push`/`_pull`.
"""

from __future__ import annotations

from builder.errors import NotFound
from builder.registry._blob_download import BlobDownloads, DownloadSink
from builder.registry._blob_upload import BlobUploads
from builder.registry._manifests import MANIFEST_ACCEPT, Manifest, ManifestRequests
from builder.registry.errors import is_refused


class OrasRegistry(ManifestRequests, BlobUploads, BlobDownloads):
    """One registry host (`host` as a reference spells it: `127.0.0.1:5000`, `docker.io`)."""


__all__ = ["MANIFEST_ACCEPT", "DownloadSink", "Manifest", "NotFound", "OrasRegistry", "is_refused"]
