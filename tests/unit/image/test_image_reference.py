"""Reference parsing: docker's normalisation, the familiar form, and bad input."""

from __future__ import annotations

import pytest

from builder.errors import InvalidReference
from builder.image.digest import Digest
from builder.image.reference import Reference

HEX = "a" * 64
DIG = f"sha256:{HEX}"


@pytest.mark.parametrize(
    ("text", "full", "familiar"),
    [
        ("app", "docker.io/library/app:latest", "app:latest"),
        ("app:v1", "docker.io/library/app:v1", "app:v1"),
        ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
        ("docker.io/app:v1", "docker.io/library/app:v1", "app:v1"),
        ("index.docker.io/library/app", "docker.io/library/app:latest", "app:latest"),
        ("docker.io/library/app:v1", "docker.io/library/app:v1", "app:v1"),
        ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
        ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"),
        ("127.0.0.1:5000/a/b:t", "127.0.0.1:5000/a/b:t", "127.0.0.1:5000/a/b:t"),
        ("registry.example.com/sealerio/kubernetes:v1.22.15", None, None),
        (f"app@{DIG}", f"docker.io/library/app@{DIG}", f"app@{DIG}"),
        (f"app:v1@{DIG}", f"docker.io/library/app:v1@{DIG}", f"app:v1@{DIG}"),
        ("a.b-c/d__e/f---g:T_ag.1-x", "a.b-c/d__e/f---g:T_ag.1-x", "a.b-c/d__e/f---g:T_ag.1-x"),
        ("Registry/app", "Registry/app:latest", "Registry/app:latest"),
        ("[::1]:5000/app", "[::1]:5000/app:latest", "[::1]:5000/app:latest"),
    ],
)
def test_parse(text: str, full: str | None, familiar: str | None) -> None:
    ref = Reference.parse(text)
    full = full or text
    assert str(ref) == full
    assert ref.familiar == (familiar or full)
    assert Reference.parse(str(ref)) == ref
    assert Reference.parse(ref.familiar) == ref


def test_parts() -> None:
    ref = Reference.parse(f"127.0.0.1:5000/a/b:t@{DIG}")
    assert ref.registry == "127.0.0.1:5000"
    assert ref.repository == "a/b"
    assert ref.tag == "t"
    assert ref.digest == Digest.parse(DIG)
    assert ref.name == "127.0.0.1:5000/a/b"
    assert Reference.parse(f"app@{DIG}").tag is None


def test_with_tag_and_digest() -> None:
    ref = Reference.parse("app:v1")
    assert str(ref.with_tag("v2")) == "docker.io/library/app:v2"
    assert str(ref.with_digest(Digest.parse(DIG))) == f"docker.io/library/app:v1@{DIG}"
    assert ref.with_digest(Digest.parse(DIG)).with_tag("v3").digest is None
    with pytest.raises(InvalidReference):
        ref.with_tag("-bad")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("  ", "empty"),
        ("App:v1", "lowercase"),
        ("user/App", "lowercase"),
        ("app:", "invalid tag"),
        ("app:-x", "invalid tag"),
        ("app:" + "t" * 129, "invalid tag"),
        ("app@sha256:abc", "invalid digest"),
        ("app@", "invalid digest"),
        ("a b", "whitespace"),
        ("app/", "component"),
        ("/app", "component"),
        ("ap$p", "component"),
        ("x/a..b", "component"),
        ("a..b/c", "invalid registry"),
        ("a.b_c/d", "invalid registry"),
        ("-app", "component"),
        (":v1", "no repository"),
        ("a" * 256, "longer than"),
        ("example.com/" + "a" * 250, "longer than"),
        (HEX, "image ID"),
        ("exa_mple.com:5000/app", "invalid registry"),
    ],
)
def test_bad_references(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReference, match=fragment) as info:
        Reference.parse(text)
    assert info.value.hint
    assert not Reference.is_valid(text)


def test_uppercase_hint_suggests_lowercase() -> None:
    with pytest.raises(InvalidReference) as info:
        Reference.parse("MyApp:v1")
    assert info.value.hint is not None and "myapp:v1" in info.value.hint
