"""The `none` runtime: no cluster software at all. The image's own scripts (init.sh, clean.sh)
and its launch commands are the whole install, so every runtime phase is empty."""

from __future__ import annotations

from typing import ClassVar

from builder.runtime.plugins.base import RuntimePlugin


class NoneRuntime(RuntimePlugin):
    name: ClassVar[str] = "none"
    etcd: ClassVar[bool] = False
