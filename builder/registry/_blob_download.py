"""Blob download: `BlobDownloads`, a blob streamed into a sink.

Digest and size checks are done by the sink (the store's BlobWriter); an interrupted transfer
resumes with `Range: bytes=N-` when the registry honours it (206), else restarts from byte 0
(the sink is `reset`). Every resume draws from the operation's `RetryBudget`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import requests

from builder.errors import RegistryUnavailable
from builder.registry._http import READ_BLOCK, ProgressHook, RegistryHttp
from builder.registry.budget import RetryBudget
from builder.registry.errors import error_from_exception, is_retryable_exception


class DownloadSink(Protocol):
    """Where a download goes: `write` bytes; `reset` drops them to start again from byte 0."""

    def write(self, data: bytes) -> int: ...

    def reset(self) -> None: ...


class BlobDownloads(RegistryHttp):
    """The blob download request of `OrasRegistry`; see the module docstring."""

    def download_blob_to(
        self,
        repository: str,
        digest: str,
        size: int,
        sink: DownloadSink,
        *,
        progress: ProgressHook | None,
        budget: RetryBudget,
    ) -> None:
        """Stream a blob into `sink`; resume with Range after a dropped connection (within budget)."""
        what = f"blob {digest} from {self.host}/{repository}"
        url = self.url(f"/v2/{repository}/blobs/{digest}")
        offset = 0
        while True:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            response = self.do_request(url, "GET", headers=headers, stream=True, budget=budget, what=what)
            if response.status_code == 200 and offset:
                sink.reset()  # the registry ignored Range: start again from byte 0
                if progress is not None:
                    progress(-offset)
                offset = 0
            elif response.status_code not in (200, 206):
                raise self._fail(response, what)
            try:
                for chunk in _iter_body(response):
                    sink.write(chunk)
                    offset += len(chunk)
                    budget.progress()
                    if progress is not None:
                        progress(len(chunk))
            except requests.RequestException as exc:
                if not is_retryable_exception(exc):
                    raise error_from_exception(exc, host=self.host, what=what) from None
                budget.retry(
                    self.host,
                    what,
                    RegistryUnavailable(
                        f"{self.host}: transfer of {what} interrupted at {offset} bytes", temporary=True
                    ),
                )
                continue
            finally:
                response.close()
            if offset >= size:
                return
            budget.retry(
                self.host,
                what,
                RegistryUnavailable(
                    f"{self.host}: {what} ended after {offset} of {size} bytes", temporary=True
                ),
            )


def _iter_body(response: requests.Response) -> Iterator[bytes]:
    for chunk in response.iter_content(chunk_size=READ_BLOCK):
        if chunk:
            yield chunk
