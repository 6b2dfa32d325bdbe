"""Moving images between the local store and OCI registries, on top of oras-py.

Public names: `client.RegistryClient` (push, pull, resolve, exists, login, logout) and
`client.RegistryOptions`; the progress events in `events`; `auth` (docker config.json).
`_oras.OrasRegistry` (oras-py's Registry, subclassed) moves the bytes; `errors` maps HTTP and
network failures into `builder.errors`. Imports `builder.store` and `builder.image` only; never
layers, build, runtime or cli.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any


class _DeferredJsonschema(types.ModuleType):
    """Stands for `jsonschema` until an attribute of it is used, then imports the real one.

    oras-py imports jsonschema at module level (provider.py, oci.py) but calls it only in
    `jsonschema.validate` of manifests it builds itself (`upload_manifest`, `push`), paths
    `_oras` never takes: our manifests go up and come down as exact bytes. jsonschema and its
    referencing/attrs/rpds stack are ~35 ms of every `sealer push`/`pull` start-up (python -X
    importtime; issue 16). The stdlib's LazyLoader cannot do this on Python 3.11: a second
    `import jsonschema` reads the module's `__spec__`, which loads it.
    """

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        return getattr(real, name)


def _defer_jsonschema() -> None:
    if "jsonschema" in sys.modules:
        return
    spec = importlib.util.find_spec("jsonschema")
    if spec is None:
        return
    stand_in = _DeferredJsonschema("jsonschema")
    stand_in.__spec__ = spec
    sys.modules["jsonschema"] = stand_in


_defer_jsonschema()  # before `_oras` imports oras-py: importing this package runs it first
