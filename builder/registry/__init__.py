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


class _Deferred(types.ModuleType):
    """Stands for a module until an attribute of it is used, then imports the real one. The
    stdlib's LazyLoader cannot do this on Python 3.11: a second `import M` reads the module's
    `__spec__`, which loads it."""

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        return getattr(real, name)


class _DeferredJsonschema(_Deferred):
    """Stands for `jsonschema`: oras-py imports it at module level (provider.py, oci.py) but
    calls it only in `jsonschema.validate` of manifests it builds itself (`upload_manifest`,
    `push`), paths `_oras` never takes: our manifests go up and come down as exact bytes.
    jsonschema and its referencing/attrs/rpds stack are ~35 ms of every `sealer push`/`pull`
    start-up (python -X importtime; issue 16)."""


class _DeferredCharsetNormalizer(_Deferred):
    """Stands for `charset_normalizer`: requests imports it (requests.compat) only to guess the
    encoding of a response's `.text` when the server names none; `_oras` reads bytes and JSON
    (oras-py reads `.text` only to log a refused token request, and the real module loads
    then). ~4 ms of every push and pull start-up. requests reads its `__version__` at import:
    served from the installed distribution's metadata (urllib3 has imported importlib.metadata
    by then)."""

    def __getattr__(self, name: str) -> Any:
        if name == "__path__":  # asked by `from charset_normalizer import __version__`
            assert self.__spec__ is not None  # set by _defer
            return self.__spec__.submodule_search_locations
        if name == "__version__":
            from importlib.metadata import version

            return version(self.__name__)
        return super().__getattr__(name)


def _defer(name: str, stand_in_type: type[_Deferred]) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    stand_in = stand_in_type(name)
    stand_in.__spec__ = spec
    sys.modules[name] = stand_in


# Before `_oras` imports oras-py and requests: importing this package runs it first.
_defer("jsonschema", _DeferredJsonschema)
_defer("charset_normalizer", _DeferredCharsetNormalizer)
# requests imports idna at start-up only to alias it as requests.packages.idna; it and urllib3
# use it (importing it again) for host names that are not ASCII. ~1.5 ms.
_defer("idna", _Deferred)
