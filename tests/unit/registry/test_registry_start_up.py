"""What `sealer push`/`pull` import before the first byte moves (issue 16: start-up is most of
push's distance to curl): oras-py's jsonschema is deferred until used, and works when used."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys
import builder.registry.client
print(type(sys.modules["jsonschema"]).__name__, "jsonschema.validators" in sys.modules)
import oras.provider
oras.provider.jsonschema.validate({"a": 1}, {"type": "object"})
try:
    oras.provider.jsonschema.validate({"a": 1}, {"type": "array"})
except oras.provider.jsonschema.ValidationError:
    print("refused")
"""


def test_jsonschema_is_deferred_until_used_and_then_validates() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["_DeferredJsonschema False", "refused"], out.stdout + out.stderr


def test_push_and_pull_commands_load_no_build_or_runtime_modules() -> None:
    probe = (
        "import sys, builder.cli.main, builder.cli.registry, builder.registry.client\n"
        "print(sorted(m for m in sys.modules if m.startswith(('builder.build', 'builder.runtime'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
