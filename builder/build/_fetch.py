"""Download of ADD/APP http(s) sources into the build's scratch directory."""

from __future__ import annotations

import os
import posixpath
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from builder.errors import FetchError

_TIMEOUT_S = 60
_CHUNK = 1 << 20


def fetch_url(url: str, dest_dir: Path) -> Path:
    """Download `url` into `dest_dir` under its base name; the file appears only when complete."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise FetchError(f"cannot fetch {url!r}: only http:// and https:// URLs are supported")
    name = posixpath.basename(parsed.path.rstrip("/")) or parsed.netloc
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / name
    partial = dest_dir / f".{name}.part"
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
    except (urllib.error.URLError, OSError, ValueError) as err:
        partial.unlink(missing_ok=True)
        if isinstance(err, urllib.error.HTTPError):
            reason: object = f"HTTP {err.code} {err.reason}"
        else:
            reason = getattr(err, "reason", None) or err
        raise FetchError(
            f"cannot fetch {url}: {reason}",
            hint="check the URL and the network, or download the file into the context and use local://",
        ) from None
    os.replace(partial, target)
    return target
