"""Turn a parsed Kubefile into the ordered steps of one platform's build.

Planning is where variables are expanded, as Dockerfiles expand them: ARGs declared before FROM
are visible to FROM only (a later `ARG NAME` without a value brings one into the stage); after
FROM, ARG and ENV values (ENV wins) plus the built-ins ARCH, TARGETARCH, TARGETOS,
TARGETVARIANT, TARGETPLATFORM, BUILDARCH and BUILDPLATFORM. FROM, COPY, ADD, ENV, LABEL, APP,
APPENV and KUBEVERSION are expanded here; RUN, CMD, CMDS and APPCMDS are not, because a shell
expands them when they run (RUN with ARG+ENV in its environment). The base image is resolved
here too, so that a plan knows the apps it inherits.
"""

from __future__ import annotations

import json
from collections import ChainMap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import kubefile_grammar as kg
from builder.errors import ImageNotFound, RegistryError, SealerError, UsageError
from builder.image import mediatypes
from builder.image.config import ImageConfig
from builder.image.descriptor import Descriptor, Platform
from builder.image.extension import ContainerImage, ImageExtension, parse_container_images
from builder.image.manifest import Manifest
from builder.image.metadata import RUNTIME_LABELS
from builder.layers.compression import Compression
from builder.store.layout import Store
from kubefile_grammar.errors import InvalidArgument, LimitExceeded
from kubefile_grammar.limits import MAX_EXPANSION_CHARS, MAX_TOTAL_EXPANSION_CHARS

# Pulls FROM's image into the store for a platform (None: every platform of an index).
PullBase = Callable[[str, Platform | None], None]


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """Everything `sealer build` decides; the CLI fills it in."""

    context: Path
    kubefile: Path | None = None
    tags: tuple[str, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)
    platforms: tuple[Platform, ...] = ()
    no_cache: bool = False
    compression: Compression = Compression.ZSTD
    labels: Mapping[str, str] = field(default_factory=dict)
    source_date_epoch: int = 0
    image_type: str | None = None  # kube-installer | app-installer; None: decided from the Kubefile
    run_mode: Literal["auto", "overlay", "snapshot"] = "auto"  # how RUN gets its merged rootfs
    isolation: Literal["none", "chroot"] = "none"  # how RUN is kept from the host (steps/run.py)
    pull: Literal["always", "missing", "never"] = "missing"  # FROM: when to pull from the registry
    bundle_images: bool = True  # pull the container images the context references into registry/
    # Where bundled images come from: their registries, or all from the local Docker engine
    # (an imageList's `docker-daemon:NAME` entries come from the engine either way).
    image_source: Literal["registry", "docker-daemon"] = "registry"

    @property
    def kubefile_path(self) -> Path:
        return self.kubefile if self.kubefile is not None else self.context / "Kubefile"


@dataclass(frozen=True, slots=True)
class BaseImage:
    """The FROM image of one platform, read from the local store."""

    name: str
    manifest_descriptor: Descriptor
    manifest: Manifest
    config: ImageConfig
    extension: ImageExtension | None
    container_images: tuple[ContainerImage, ...]


@dataclass(frozen=True, slots=True)
class CopyStep:
    span: kg.Span
    text: str
    keyword: str  # COPY | ADD
    sources: tuple[str, ...]
    dest: str
    chmod: int | None


@dataclass(frozen=True, slots=True)
class RunStep:
    span: kg.Span
    text: str
    command: str | tuple[str, ...]
    env: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class AppStep:
    span: kg.Span
    text: str
    kind: str  # APP | CNI | CSI
    name: str
    sources: tuple[str, ...]  # local://, http://, https://, expanded


@dataclass(frozen=True, slots=True)
class ConfigStep:
    """An instruction that changes only the config or the sealer extension."""

    span: kg.Span
    text: str
    instruction: kg.Instruction
    items: tuple[tuple[str, str], ...] = ()  # expanded key/values (ENV, LABEL, APPENV)
    value: str = ""  # expanded single value (KUBEVERSION, MAINTAINER)


Step = CopyStep | RunStep | AppStep | ConfigStep


@dataclass(frozen=True, slots=True)
class Plan:
    kubefile: kg.Kubefile
    platform: Platform
    base: BaseImage | None
    steps: tuple[Step, ...]
    unused_build_args: tuple[str, ...]


def builtin_args(platform: Platform) -> dict[str, str]:
    host = Platform.host()
    return {
        "ARCH": platform.architecture,
        "TARGETARCH": platform.architecture,
        "TARGETOS": platform.os,
        "TARGETVARIANT": platform.variant or "",
        "TARGETPLATFORM": str(platform),
        "BUILDARCH": host.architecture,
        "BUILDPLATFORM": str(host),
    }


def _q(value: str) -> str:
    """Quote a word for a step's canonical text only when it needs it."""
    if value and all(c.isalnum() or c in "-_./:=@+,%~${}" for c in value):
        return value
    return json.dumps(value)


class _Scope:
    """The variables visible at one point of the Kubefile."""

    def __init__(
        self, kubefile: kg.Kubefile, builtins: Mapping[str, str], build_args: Mapping[str, str]
    ) -> None:
        self.kubefile = kubefile
        self.builtins = dict(builtins)
        self.build_args = dict(build_args)
        self.meta: dict[str, str] = {}
        self.args: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.consumed: set[str] = set()
        self.expanded_chars = 0  # all expansions so far, held to MAX_TOTAL_EXPANSION_CHARS
        # Views, not copies: merging the dicts for every expansion made 10,000 ENV lines quadratic.
        self._in_stage = ChainMap(self.env, self.args, self.builtins)  # ENV wins over ARG
        self._before_from = ChainMap(self.meta, self.builtins)

    def lookup(self, *, in_stage: bool) -> Mapping[str, str]:
        return self._in_stage if in_stage else self._before_from

    def expand(self, text: str, span: kg.Span, *, in_stage: bool = True) -> str:
        if "$" not in text and self.kubefile.escape not in text:
            return text  # nothing to expand, and the Kubefile's own size is capped
        try:
            value = kg.expand(
                text,
                self.lookup(in_stage=in_stage),
                escape=self.kubefile.escape,
                path=self.kubefile.path,
                span=span,
                max_chars=MAX_EXPANSION_CHARS,
            )
            self.expanded_chars += len(value)
            if self.expanded_chars > MAX_TOTAL_EXPANSION_CHARS:
                raise LimitExceeded(
                    f"variable expansions of this Kubefile pass {MAX_TOTAL_EXPANSION_CHARS} characters in all",
                    hint="large values used in many instructions add up; shorten them or COPY a file instead",
                    line=span.line,
                    column=span.column,
                )
        except kg.KubefileError as err:
            raise err.with_source(self.kubefile.path, self.kubefile.source) from None
        return value

    def declare(self, name: str, default: str | None, span: kg.Span, *, in_stage: bool) -> None:
        self.consumed.add(name)
        if name in self.build_args:
            value: str | None = self.build_args[name]
        elif default is not None:
            value = self.expand(default, span, in_stage=in_stage)
        elif in_stage and name in self.meta:
            value = self.meta[name]
        else:
            value = None
        target = self.args if in_stage else self.meta
        if value is not None:
            target[name] = value
        elif in_stage:
            # Declared without a value: visible to RUN as unset, as Docker does.
            target.pop(name, None)

    def run_env(self) -> tuple[tuple[str, str], ...]:
        merged = {**self.builtins, **self.args, **self.env}
        return tuple(sorted(merged.items()))


def load_base(store: Store, image: str, platform: Platform) -> BaseImage:
    """Resolve FROM in the local store for one platform."""
    desc = store.resolve(image)
    if desc.media_type in mediatypes.INDEXES:
        index = store.read_index(desc.digest)
        desc = index.select(platform)
    manifest = store.read_manifest(desc.digest)
    config = store.read_config(manifest.config.digest)
    base_platform = config.platform
    if base_platform is not None and base_platform.architecture and not base_platform.matches(platform):
        raise ImageNotFound(
            f"base image {image} is for {base_platform}, not {platform}",
            hint=f"build it for {platform} first, or pass --platform {base_platform}",
        )
    extension = None
    raw = manifest.annotations.get(mediatypes.ANNOTATION_SEALER_EXTENSION)
    if raw:
        extension = ImageExtension.from_json(raw)
    images: tuple[ContainerImage, ...] = ()
    raw_images = manifest.annotations.get(mediatypes.ANNOTATION_SEALER_CONTAINER_IMAGES)
    if raw_images:
        images = parse_container_images(raw_images)
    return BaseImage(image, desc, manifest, config, extension, images)


def resolve_base(
    store: Store,
    image: str,
    platform: Platform,
    policy: str,
    pull: PullBase | None,
    pull_platform: Platform | None,
) -> BaseImage:
    """FROM per the pull policy: `missing` uses the local store first, `always` pulls first,
    `never` only looks locally."""
    if policy == "always" and pull is not None:
        pull(image, pull_platform)
        return load_base(store, image, platform)
    try:
        return load_base(store, image, platform)
    except ImageNotFound:
        if policy == "never" or pull is None:
            raise
    pull(image, pull_platform)
    return load_base(store, image, platform)


def make_plan(
    kubefile: kg.Kubefile,
    options: BuildOptions,
    platform: Platform,
    store: Store,
    pull: PullBase | None = None,
    pull_platform: Platform | None = None,
) -> Plan:
    """Expand, resolve FROM (pulling it through `pull` per the policy) and check app references
    for one platform. `pull_platform` is what to pull: the platform, or None for all of them."""
    for key, value in options.labels.items():
        if key == mediatypes.LABEL_CLUSTER_RUNTIME and value not in RUNTIME_LABELS:
            raise UsageError(
                f"--label {key}={value}: unknown cluster runtime",
                hint=f"use one of {', '.join(RUNTIME_LABELS)}",
            )
    scope = _Scope(kubefile, builtin_args(platform), options.build_args)
    steps: list[Step] = []
    base: BaseImage | None = None
    seen_from = False
    for ins in kubefile.instructions:
        if isinstance(ins, kg.Arg):
            for name, default in ins.items:
                scope.declare(name, default, ins.span, in_stage=seen_from)
            continue
        if isinstance(ins, kg.From):
            seen_from = True
            image = scope.expand(ins.image, ins.span, in_stage=False)
            if image.lower() != "scratch":
                base_platform = (
                    Platform.parse(scope.expand(ins.platform, ins.span, in_stage=False))
                    if ins.platform
                    else platform
                )
                wanted = base_platform if ins.platform else pull_platform
                try:
                    base = resolve_base(store, image, base_platform, options.pull, pull, wanted)
                except SealerError as err:
                    raise _from_failed(err, kubefile, ins.span, image, options.pull) from None
                for item in base.config.config.env:
                    key, _, value = item.partition("=")
                    scope.env[key] = value
            continue
        steps.append(_plan_step(ins, scope))

    inherited = [a.name for a in base.extension.applications] if base and base.extension else []
    kg.check_app_references(kubefile, inherited)
    unused = tuple(sorted(set(options.build_args) - scope.consumed - set(scope.builtins)))
    return Plan(kubefile, platform, base, tuple(steps), unused)


def _plan_step(ins: kg.Instruction, scope: _Scope) -> Step:
    span = ins.span
    if isinstance(ins, kg.Copy | kg.Add):
        keyword = "ADD" if isinstance(ins, kg.Add) else "COPY"
        sources = tuple(scope.expand(s, span) for s in ins.sources)
        dest = scope.expand(ins.dest, span)
        chmod = None
        if ins.chmod is not None:
            chmod = _parse_chmod(scope.expand(ins.chmod, span), scope.kubefile, span)
        flag = f"--chmod={chmod:04o} " if chmod is not None else ""
        text = f"{keyword} {flag}{' '.join(_q(s) for s in sources)} {_q(dest)}"
        return CopyStep(span, text, keyword, sources, dest, chmod)
    if isinstance(ins, kg.Run):
        command = ins.command
        text = "RUN " + (command if isinstance(command, str) else json.dumps(list(command)))
        return RunStep(span, text, command, scope.run_env())
    if isinstance(ins, kg.App):
        name = scope.expand(ins.name, span)
        sources = tuple(scope.expand(s, span) for s in ins.sources)
        return AppStep(span, f"{ins.kind} {name} {' '.join(_q(s) for s in sources)}", ins.kind, name, sources)
    if isinstance(ins, kg.Env):
        items = tuple((k, scope.expand(v, span)) for k, v in ins.items)
        for key, value in items:
            scope.env[key] = value
        return ConfigStep(span, "ENV " + " ".join(f"{k}={_q(v)}" for k, v in items), ins, items=items)
    if isinstance(ins, kg.Label):
        items = tuple((scope.expand(k, span), scope.expand(v, span)) for k, v in ins.items)
        for key, value in items:
            if key == mediatypes.LABEL_CLUSTER_RUNTIME and value not in RUNTIME_LABELS:
                # Here, before any layer is built: the check at the end of the build came after
                # every COPY and RUN, and named no line.
                raise InvalidArgument(
                    f"LABEL {key}={value}: unknown cluster runtime",
                    hint=f"use one of {', '.join(RUNTIME_LABELS)} (none: only the image's scripts)",
                    path=scope.kubefile.path,
                    line=span.line,
                    column=span.column,
                ).with_source(scope.kubefile.path, scope.kubefile.source)
        return ConfigStep(span, "LABEL " + " ".join(f"{_q(k)}={_q(v)}" for k, v in items), ins, items=items)
    if isinstance(ins, kg.AppEnv):
        items = tuple((k, scope.expand(v, span)) for k, v in ins.items)
        text = f"APPENV {ins.app_name} " + " ".join(f"{k}={_q(v)}" for k, v in items)
        return ConfigStep(span, text, ins, items=items)
    if isinstance(ins, kg.KubeVersion):
        value = scope.expand(ins.version, span)
        if not value.strip():
            raise InvalidArgument(
                f"KUBEVERSION {ins.version} expands to nothing",
                hint="an ARG declared before FROM is seen only by FROM: declare it again after FROM "
                "(ARG NAME), give it a default, or pass --build-arg NAME=VALUE",
                path=scope.kubefile.path,
                line=span.line,
                column=span.column,
            )
        return ConfigStep(span, f"KUBEVERSION {value}", ins, value=value)
    if isinstance(ins, kg.Maintainer):
        return ConfigStep(span, f"MAINTAINER {ins.name}", ins, value=ins.name)
    return ConfigStep(span, ins.canonical(), ins)


def _from_failed(
    err: SealerError, kubefile: kg.Kubefile, span: kg.Span, image: str, policy: str
) -> SealerError:
    """`err` (of its own class and exit code) located at the FROM line, with what to do: a
    base that is neither in the store nor pullable printed the registry's DNS error alone."""
    where = f"{kubefile.path}:{span.line}:{span.column}: FROM {image}"
    if isinstance(err, ImageNotFound) and policy == "never":
        err.message = f"{where}: not in the local store (--pull never)"
        err.hint = f"sealer pull {image}, or build it first; `sealer images` lists the local images"
    elif isinstance(err, RegistryError):
        err.message = f"{where}: not in the local store, and pulling it failed: {err.message}"
        err.hint = (
            f"check the name (`sealer images` lists the local ones); sealer pull {image} once the registry "
            "answers (sealer login for a private one); --pull never builds from the local store only"
        )
    else:
        err.message = f"{where}: {err.message}"
    err.args = (err.message,)
    return err


def _parse_chmod(value: str, kubefile: kg.Kubefile, span: kg.Span) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise InvalidArgument(
            f"invalid --chmod value {value!r}",
            hint="use an octal mode such as --chmod=0755",
            path=kubefile.path,
            line=span.line,
            column=span.column,
        )
    return mode
