"""Image references, normalised as docker does (distribution/reference `ParseNormalizedNamed`).

`app:v1` -> `docker.io/library/app:v1`; `user/app` -> `docker.io/user/app:latest`;
`localhost:5000/x` keeps its registry; the first path component is a registry when it holds a
`.` or `:`, is `localhost`, or has upper-case letters (docker's rule). The tag defaults to
`latest` only when there is no digest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from builder.errors import InvalidDigest, InvalidReference
from builder.image.digest import Digest

DEFAULT_REGISTRY = "docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
_LEGACY_REGISTRIES = {"index.docker.io", "registry-1.docker.io"}
NAME_MAX = 255

_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REGISTRY = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")

_HINT = "use [REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST] with a lower-case repository, e.g. myapp:v1"


def _bad(text: str, why: str, hint: str = _HINT) -> InvalidReference:
    return InvalidReference(f"invalid reference {text!r}: {why}", hint=hint)


@dataclass(frozen=True, slots=True)
class Reference:
    """A fully qualified image reference: registry, repository, and a tag and/or digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse and normalise `text`; InvalidReference with a hint on bad input."""
        if not text or not text.strip():
            raise _bad(text, "empty reference")
        if text != text.strip() or any(c.isspace() for c in text):
            raise _bad(text, "contains whitespace")
        remainder, digest = text, None
        if "@" in remainder:
            remainder, _, digest_text = remainder.partition("@")
            try:
                digest = Digest.parse(digest_text)
            except InvalidDigest:
                raise _bad(
                    text, f"invalid digest {digest_text!r}", "expected @sha256:<64 hex digits>"
                ) from None
        tag = None
        slash = remainder.rfind("/")
        colon = remainder.rfind(":")
        if colon > slash:
            remainder, tag = remainder[:colon], remainder[colon + 1 :]
            if not _TAG.match(tag):
                raise _bad(
                    text,
                    f"invalid tag {tag!r}",
                    "a tag is up to 128 of [A-Za-z0-9_.-], not starting with . or -",
                )
        if not remainder:
            raise _bad(text, "no repository name")
        if len(remainder) > NAME_MAX:
            raise _bad(text, f"name longer than {NAME_MAX} characters")
        registry, repository = _split_registry(remainder)
        if registry and not _REGISTRY.match(registry):
            raise _bad(text, f"invalid registry {registry!r}")
        if not registry:
            registry = DEFAULT_REGISTRY
        if registry in _LEGACY_REGISTRIES:
            registry = DEFAULT_REGISTRY
        if registry == DEFAULT_REGISTRY and "/" not in repository:
            repository = OFFICIAL_PREFIX + repository
        for component in repository.split("/"):
            if component != component.lower() and _COMPONENT.match(component.lower()):
                raise _bad(text, "repository name must be lowercase", f"try {text.lower()!r}")
            if not _COMPONENT.match(component):
                raise _bad(
                    text,
                    f"invalid repository component {component!r}",
                    "components are [a-z0-9] separated by single . or _, double __, or dashes",
                )
        if _HEX64.match(remainder):
            raise _bad(text, "a 64-hex-digit name is an image ID, not a repository", "use the ID itself")
        if len(f"{registry}/{repository}") > NAME_MAX:
            raise _bad(text, f"name longer than {NAME_MAX} characters")
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(registry, repository, tag, digest)

    @classmethod
    def is_valid(cls, text: str) -> bool:
        try:
            cls.parse(text)
        except InvalidReference:
            return False
        return True

    @property
    def name(self) -> str:
        """`registry/repository`, e.g. `docker.io/library/app`."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """The repository as docker prints it: `app`, `user/app`, `127.0.0.1:5000/app`."""
        if self.registry != DEFAULT_REGISTRY:
            return self.name
        if self.repository.startswith(OFFICIAL_PREFIX) and self.repository.count("/") == 1:
            return self.repository[len(OFFICIAL_PREFIX) :]
        return self.repository

    @property
    def familiar(self) -> str:
        """The short form docker prints: `app:v1`, `user/app:v1`, `127.0.0.1:5000/app:v1`."""
        return self.familiar_name + self._suffix()

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag else ""
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def with_tag(self, tag: str) -> Reference:
        """The same repository with `tag` (and no digest)."""
        if not _TAG.match(tag):
            raise _bad(tag, f"invalid tag {tag!r}")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: Digest) -> Reference:
        """The same repository and tag, pinned to `digest`."""
        return replace(self, digest=digest)

    def __str__(self) -> str:
        return self.name + self._suffix()


def _split_registry(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        return first, rest
    return "", name
