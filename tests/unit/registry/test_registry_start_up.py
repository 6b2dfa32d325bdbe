"""What `sealer push`/`pull` import before the first byte moves (issue 16: start-up is most of
push's distance to curl): oras-py's jsonschema and requests' charset_normalizer and idna are
deferred until used, and work when used."""

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


_CHARSET_PROBE = """
import sys
import builder.registry.client, requests, requests.help
stand_in = sys.modules["charset_normalizer"]
print(type(stand_in).__name__, "charset_normalizer.api" in sys.modules)
print(requests.help.info()["charset_normalizer"]["version"] == stand_in.__version__)
response = requests.models.Response()
response._content, response.encoding = "été, café et crème brûlée pour la naïve".encode(), None
print(response.apparent_encoding, response.text)
"""


def test_charset_normalizer_is_deferred_until_a_response_text_needs_it() -> None:
    out = subprocess.run([sys.executable, "-c", _CHARSET_PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        "_DeferredCharsetNormalizer False",
        "True",
        "utf-8 été, café et crème brûlée pour la naïve",
    ], out.stdout + out.stderr
    assert "Warning" not in out.stderr, out.stderr  # requests' dependency check saw the version


_IDNA_PROBE = """
import sys
import builder.registry.client, requests
print(type(sys.modules["idna"]).__name__, "idna.core" in sys.modules)
prepared = requests.models.PreparedRequest()
prepared.prepare_url("http://bücher.example:5000/v2/", None)
print(prepared.url)
"""


def test_idna_is_deferred_until_a_host_name_needs_it() -> None:
    out = subprocess.run([sys.executable, "-c", _IDNA_PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["_Deferred False", "http://xn--bcher-kva.example:5000/v2/"], (
        out.stdout + out.stderr
    )


def test_push_and_pull_commands_load_no_build_or_runtime_modules() -> None:
    probe = (
        "import sys, builder.cli.main, builder.cli.registry, builder.registry.client\n"
        "print(sorted(m for m in sys.modules if m.startswith(('builder.build', 'builder.runtime'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
