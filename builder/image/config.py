"""OCI image configs (`application/vnd.oci.image.config.v1+json`), docker's too.

Reading is tolerant: fields docker, buildah or skopeo write that we do not model (`User`,
`ExposedPorts`, `container_config`, `docker_version`, ...) are kept in `extra` and written back
when a derived config is encoded, so `FROM` a docker-built base keeps them. A parsed config keeps
its own bytes, so its digest (the image ID) is what the source stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from builder.errors import InvalidDigest, InvalidManifest
from builder.image._json import CanonicalDocument, load_object, string_list, string_map
from builder.image.descriptor import Descriptor, Platform
from builder.image.digest import Digest
from builder.image.mediatypes import OCI_CONFIG

# Keys we model, in the order we write them (the image-spec's order).
_CONTAINER_KEYS = ("Env", "Entrypoint", "Cmd", "WorkingDir", "Labels")
_CONFIG_KEYS = ("created", "author", "architecture", "variant", "os", "config", "rootfs", "history")


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """The `config` object: what a container started from the image would get."""

    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.env:
            out["Env"] = list(self.env)
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = dict(sorted(self.labels.items()))
        for key in sorted(self.extra):
            out[key] = self.extra[key]
        return out

    @classmethod
    def from_json(cls, obj: Any) -> ContainerConfig:
        if obj is None:
            return cls()
        if not isinstance(obj, dict):
            raise InvalidManifest("image config `config` must be an object")
        cmd = obj.get("Cmd")
        entrypoint = obj.get("Entrypoint")
        working_dir = obj.get("WorkingDir") or ""
        if not isinstance(working_dir, str):
            raise InvalidManifest("image config WorkingDir must be a string")
        return cls(
            env=string_list(obj.get("Env"), "image config Env", InvalidManifest),
            cmd=None if cmd is None else string_list(cmd, "image config Cmd", InvalidManifest),
            entrypoint=None
            if entrypoint is None
            else string_list(entrypoint, "image config Entrypoint", InvalidManifest),
            labels=string_map(obj.get("Labels"), "image config Labels", InvalidManifest),
            working_dir=working_dir,
            extra={k: v for k, v in obj.items() if k not in _CONTAINER_KEYS and v is not None},
        )


@dataclass(frozen=True, slots=True)
class History:
    """One history entry; `empty_layer` entries (ENV, LABEL, CMD ...) have no diff_id."""

    created: str | None = None
    created_by: str = ""
    comment: str = ""
    empty_layer: bool = False
    author: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.created:
            out["created"] = self.created
        if self.author:
            out["author"] = self.author
        if self.created_by:
            out["created_by"] = self.created_by
        if self.comment:
            out["comment"] = self.comment
        if self.empty_layer:
            out["empty_layer"] = True
        return out

    @classmethod
    def from_json(cls, obj: Any) -> History:
        if not isinstance(obj, dict):
            raise InvalidManifest("image config history entries must be objects")
        values = {k: obj.get(k) for k in ("created", "created_by", "comment", "author")}
        if not all(v is None or isinstance(v, str) for v in values.values()):
            raise InvalidManifest("image config history fields must be strings")
        return cls(
            created=values["created"],
            created_by=values["created_by"] or "",
            comment=values["comment"] or "",
            empty_layer=bool(obj.get("empty_layer", False)),
            author=values["author"] or "",
        )


@dataclass(frozen=True, slots=True)
class ImageConfig(CanonicalDocument):
    """An image config: platform, creation time, container config, diff_ids and history."""

    architecture: str
    os: str
    variant: str | None = None
    created: str | None = None
    author: str = ""
    config: ContainerConfig = field(default_factory=ContainerConfig)
    diff_ids: tuple[Digest, ...] = ()
    history: tuple[History, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    raw: bytes | None = field(default=None, compare=False, repr=False)

    @classmethod
    def empty(cls, platform: Platform, created: str) -> ImageConfig:
        """The config of `FROM scratch`: no layers, no history, only platform and time.

        `created` is an RFC 3339 string the caller derives from SOURCE_DATE_EPOCH, so that
        the same build gives the same digest.
        """
        return cls(platform.architecture, platform.os, platform.variant, created)

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant or None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.created:
            out["created"] = self.created
        if self.author:
            out["author"] = self.author
        out["architecture"] = self.architecture
        if self.variant:
            out["variant"] = self.variant
        out["os"] = self.os
        out["config"] = self.config.to_json()
        out["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in self.diff_ids]}
        if self.history:
            out["history"] = [h.to_json() for h in self.history]
        for key in sorted(self.extra):
            out[key] = self.extra[key]
        return out

    def descriptor(self, media_type: str = OCI_CONFIG) -> Descriptor:
        data = self.to_bytes()
        return Descriptor(media_type, Digest.from_bytes(data), len(data))

    @classmethod
    def from_bytes(cls, data: bytes) -> ImageConfig:
        """Parse a config as docker, buildah, skopeo or we wrote it; keep its bytes."""
        obj = load_object(data, "image config", InvalidManifest)
        arch, os_name = obj.get("architecture"), obj.get("os")
        if not isinstance(arch, str) or not isinstance(os_name, str):
            raise InvalidManifest("image config has no architecture/os")
        rootfs = obj.get("rootfs")
        if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
            raise InvalidManifest('image config rootfs must be {"type": "layers", ...}')
        raw_ids = rootfs.get("diff_ids") or []
        if not isinstance(raw_ids, list):
            raise InvalidManifest("image config rootfs.diff_ids must be an array")
        try:
            diff_ids = tuple(Digest.parse(str(d)) for d in raw_ids)
        except InvalidDigest as err:
            raise InvalidManifest(f"image config has an invalid diff_id: {err}") from None
        history = obj.get("history") or []
        if not isinstance(history, list):
            raise InvalidManifest("image config history must be an array")
        for key in ("created", "author", "variant"):
            if obj.get(key) is not None and not isinstance(obj[key], str):
                raise InvalidManifest(f"image config {key} must be a string")
        return cls(
            architecture=arch,
            os=os_name,
            variant=obj.get("variant") or None,
            created=obj.get("created"),
            author=obj.get("author") or "",
            config=ContainerConfig.from_json(obj.get("config")),
            diff_ids=diff_ids,
            history=tuple(History.from_json(h) for h in history),
            extra={k: v for k, v in obj.items() if k not in _CONFIG_KEYS and v is not None},
            raw=bytes(data),
        )

    # -- functional derivation: every method returns a new config without raw bytes ----------

    def _derive(self, **changes: Any) -> ImageConfig:
        return replace(self, raw=None, **changes)

    def with_layer(self, diff_id: Digest, history: History) -> ImageConfig:
        """Append a layer's diff_id and the history entry that made it."""
        if history.empty_layer:
            history = replace(history, empty_layer=False)
        return self._derive(diff_ids=(*self.diff_ids, diff_id), history=(*self.history, history))

    def with_history(self, history: History) -> ImageConfig:
        """Append a history entry for an instruction that made no layer (ENV, LABEL, CMD ...)."""
        return self._derive(history=(*self.history, replace(history, empty_layer=True)))

    def with_labels(self, labels: Mapping[str, str]) -> ImageConfig:
        """Merge `labels` into the config's labels (later values win, as LABEL does)."""
        merged = {**self.config.labels, **labels}
        return self._derive(config=replace(self.config, labels=merged))

    def with_env(self, env: Mapping[str, str] | Iterable[str]) -> ImageConfig:
        """Set environment variables (`KEY=VALUE` strings or a mapping), replacing same keys."""
        items = env.items() if isinstance(env, Mapping) else (e.partition("=")[::2] for e in env)
        current = [e.partition("=") for e in self.config.env]
        order = [k for k, _, _ in current]
        values = {k: v for k, _, v in current}
        for key, value in items:
            if key not in values:
                order.append(key)
            values[key] = value
        return self._derive(config=replace(self.config, env=tuple(f"{k}={values[k]}" for k in order)))

    def with_cmd(self, cmd: Iterable[str] | None) -> ImageConfig:
        return self._derive(config=replace(self.config, cmd=None if cmd is None else tuple(cmd)))

    def with_entrypoint(self, entrypoint: Iterable[str] | None) -> ImageConfig:
        value = None if entrypoint is None else tuple(entrypoint)
        return self._derive(config=replace(self.config, entrypoint=value))

    def with_working_dir(self, working_dir: str) -> ImageConfig:
        return self._derive(config=replace(self.config, working_dir=working_dir))

    def with_created(self, created: str) -> ImageConfig:
        return self._derive(created=created)

    def with_author(self, author: str) -> ImageConfig:
        return self._derive(author=author)
