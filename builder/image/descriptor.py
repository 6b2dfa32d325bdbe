"""OCI content descriptors and platforms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from builder.errors import InvalidManifest, InvalidPlatform
from builder.image.digest import Digest

# GOARCH values the OCI image spec lists for `architecture`.
KNOWN_ARCHITECTURES = frozenset(
    {
        "386",
        "amd64",
        "arm",
        "arm64",
        "loong64",
        "mips",
        "mips64",
        "mips64le",
        "mipsle",
        "ppc64",
        "ppc64le",
        "riscv64",
        "s390x",
        "wasm",
    }
)


# GOARCH names the OCI spec uses, from the names `uname -m` and users type.
_ARCH_ALIASES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i386": "386", "i686": "386"}


@dataclass(frozen=True, slots=True)
class Platform:
    """`os/architecture[/variant]`, e.g. linux/amd64 or linux/arm64/v8."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().split("/")
        if len(parts) == 1 and parts[0]:
            # `--platform amd64` is accepted by docker too.
            parts = ["linux", parts[0]]
        hint = "use os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8"
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidPlatform(f"invalid platform {text!r}", hint=hint)
        arch = _ARCH_ALIASES.get(parts[1], parts[1])
        if arch not in KNOWN_ARCHITECTURES:
            raise InvalidPlatform(f"invalid platform {text!r}: unknown architecture {parts[1]!r}", hint=hint)
        return cls(parts[0], arch, parts[2] if len(parts) == 3 else None)

    @classmethod
    def host(cls) -> Platform:
        import platform

        machine = platform.machine().lower()
        arch = _ARCH_ALIASES.get(machine, machine)
        return cls("linux", arch, "v8" if arch == "arm64" else None)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Platform:
        return cls(str(obj.get("os", "")), str(obj.get("architecture", "")), obj.get("variant") or None)

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    def matches(self, other: Platform) -> bool:
        """True when os and architecture agree and the variants do not contradict."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        return self.variant is None or other.variant is None or self.variant == other.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """What points at a blob: media type, digest and size, plus optional annotations/platform."""

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Descriptor:
        try:
            media_type = obj["mediaType"]
            digest = Digest.parse(obj["digest"])
            size = obj["size"]
        except (KeyError, TypeError) as err:
            raise InvalidManifest(f"descriptor is missing {err}") from None
        if not isinstance(media_type, str) or not isinstance(size, int) or size < 0:
            raise InvalidManifest(f"descriptor {digest} has an invalid mediaType or size")
        platform = obj.get("platform")
        annotations = obj.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise InvalidManifest(f"descriptor {digest} has invalid annotations")
        return cls(
            media_type,
            digest,
            size,
            dict(annotations),
            Platform.from_json(platform) if isinstance(platform, dict) else None,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out

    def with_annotations(self, annotations: Mapping[str, str]) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, dict(annotations), self.platform)

    def with_platform(self, platform: Platform | None) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, dict(self.annotations), platform)
