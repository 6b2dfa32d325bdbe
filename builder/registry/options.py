"""How the registry client talks to registries: `RegistryOptions`, built by the CLI from
--tls-verify, --plain-http, --ca-cert, --authfile, --creds, --timeout.

Kept apart from the client so that the options are one small value type with visible defaults
(STYLE.md section 2); `client.py` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.registry import auth


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """How to talk to registries; the CLI builds it from --tls-verify, --plain-http, --ca-cert."""

    tls_verify: bool = True
    plain_http: bool | None = None  # None: https, plain http only for a loopback host without TLS
    ca_cert: Path | None = None
    auth_file: Path | None = None  # default: $DOCKER_CONFIG/config.json or ~/.docker/config.json
    # --creds: used for every registry instead of the auth file and its credential helpers
    credentials: auth.Credentials | None = None
    # Retries per operation (not per request or blob: an outage that cuts several blobs costs
    # one), shared by its threads; exponential backoff with full jitter (~4 s in all for 5) on
    # 5xx/429, dropped connections and timeouts. A refused connection is final before the
    # registry answered (nothing listens: one line at once) and waited for after (a restart,
    # until `timeout_s` without progress; budget.py). A push cut off for good is resumed by
    # running it again (done blobs are skipped).
    retries: int = 5
    # The longest an operation may go without progress (an answer, or bytes moving), retries
    # included; each connect or read waits a third of it. 30 s: a healthy registry answers in
    # milliseconds, 10 s of silence on one request is already far outside normal, and 30 s
    # leaves room for 2-3 such requests or a registry restart (docker-registry: < 1 s).
    timeout_s: float = 30.0
    chunk_size: int = 0  # 0: one streamed PUT per blob (fastest measured); >0: PATCH chunks
    max_workers: int = 3  # blobs moved at once


__all__ = ["RegistryOptions"]
