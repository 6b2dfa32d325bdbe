"""Fixtures for the runtime component tests: real hosts (network + mount namespaces, own sshd)
from tests/hosts.py. `hosts3` is shared by a module; `host_factory` makes hosts for one test."""

from __future__ import annotations

from tests.hosts import host_factory, host_lab, hosts3

__all__ = ["host_factory", "host_lab", "hosts3"]
