"""`sealer build`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import click

from builder.build.context import check_regular_file
from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.build.pull import Puller
from builder.cli._options import (
    TIMEOUT_ENV,
    RegistryCommand,
    make_registry_options,
    open_store,
    parse_key_values,
    registry_options,
)
from builder.cli.progress import build_progress
from builder.errors import UsageError
from builder.image.descriptor import Platform
from builder.layers.compression import Compression
from builder.registry.docker_daemon import DockerDaemon
from builder.store.layout import Store
from kubefile_grammar.limits import MAX_KUBEFILE_BYTES

if TYPE_CHECKING:
    from builder.registry.client import RegistryClient, RegistryOptions
    from builder.registry.events import RegistryEvent


def registry_puller(
    options: RegistryOptions | None, on_event: Callable[[RegistryEvent], None] | None = None
) -> Puller:
    """The build's registry access: one client (`options` None: its defaults), created and
    imported (requests, oras) only when the build first pulls; its events go to `on_event`."""
    client: RegistryClient | None = None

    def pull(
        store: Store, image: str, platform: Platform | None, tag_as: str | None, *, unpack: bool = False
    ) -> None:
        nonlocal client
        if client is None:
            from builder.registry.client import RegistryClient, RegistryOptions

            client = RegistryClient(options or RegistryOptions(), on_event)
        from builder.diffdirs import DiffDirUnpacker

        tees = DiffDirUnpacker(store) if unpack else None
        client.pull(store, image, platform=platform, all_platforms=platform is None, tag_as=tag_as, tees=tees)

    return pull


def _platforms(value: str | None) -> tuple[Platform, ...]:
    if not value:
        return ()
    out = []
    for item in value.split(","):
        platform = Platform.parse(item)
        if platform in out:
            raise UsageError(f"--platform {value!r} names {platform} twice")
        out.append(platform)
    return tuple(out)


def _key_values(values: tuple[str, ...], flag: str) -> dict[str, str]:
    """KEY=VALUE options; refuses bytes that are not UTF-8, which no image config can hold."""
    pairs = parse_key_values(values, flag)
    for key, value in pairs.items():
        for text in (key, value):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                shown = key.encode("ascii", "backslashreplace").decode("ascii")
                raise UsageError(
                    f"{flag} {shown}: not valid UTF-8", hint="pass keys and values as UTF-8 text"
                ) from None
    return pairs


def _source_date_epoch() -> int:
    raw = os.environ.get("SOURCE_DATE_EPOCH", "0")
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise UsageError(f"SOURCE_DATE_EPOCH={raw!r} is not a non-negative integer")
    return value


@click.command(cls=RegistryCommand)
@click.argument("context", type=click.Path(path_type=Path), default=".")
@click.option(
    "-t", "--tag", "tags", multiple=True, required=True, help="Name of the image, NAME[:TAG]; repeatable."
)
@click.option(
    "-f", "--file", "kubefile", type=click.Path(path_type=Path), help="Kubefile (default CONTEXT/Kubefile)."
)
@click.option("--build-arg", "build_args", multiple=True, metavar="K=V", help="Value of an ARG; repeatable.")
@click.option(
    "--platform",
    "platform",
    metavar="OS/ARCH[,...]",
    help="Target platform(s), e.g. linux/amd64,linux/arm64.",
)
@click.option("--no-cache", is_flag=True, help="Do not use the build cache.")
@click.option(
    "--compression",
    type=click.Choice(["zstd", "gzip"]),
    default="zstd",
    show_default=True,
    help="Layer compression.",
)
@click.option("--label", "labels", multiple=True, metavar="K=V", help="Set a config label; repeatable.")
@click.option(
    "--type",
    "image_type",
    type=click.Choice(["kube-installer", "app-installer"]),
    help="Image type (default: decided from the Kubefile).",
)
@click.option(
    "--run-mode",
    type=click.Choice(["auto", "overlay", "snapshot"]),
    default="auto",
    help="How RUN gets the merged rootfs (auto: overlay mount, else a snapshot).",
)
@click.option(
    "--isolation",
    type=click.Choice(["none", "chroot"]),
    default="none",
    show_default=True,
    help="RUN on the host in the rootfs dir (none), or chrooted into it in new mount and PID "
    "namespaces (chroot: needs root and a shell in the image).",
)
@click.option(
    "--pull",
    type=click.Choice(["always", "missing", "never"]),
    default="missing",
    show_default=True,
    help="When to pull FROM's image from its registry.",
)
@click.option(
    "--no-image-bundle", is_flag=True, help="Do not pull the container images the context references."
)
@click.option(
    "--image-source",
    type=click.Choice(["registry", "docker-daemon"]),
    default="registry",
    show_default=True,
    help="Where bundled images come from: their registries, or the local Docker engine (DOCKER_HOST "
    "or the default socket) for images in no registry. imageList lines `docker-daemon:NAME:TAG` "
    "come from the engine either way.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the image digest.")
@registry_options
@click.pass_context
def build(
    ctx: click.Context,
    context: Path,
    tags: tuple[str, ...],
    kubefile: Path | None,
    build_args: tuple[str, ...],
    platform: str | None,
    no_cache: bool,
    compression: str,
    labels: tuple[str, ...],
    image_type: str | None,
    run_mode: str,
    isolation: str,
    pull: str,
    no_image_bundle: bool,
    image_source: str,
    quiet: bool,
    tls_verify: bool,
    plain_http: bool,
    ca_cert: Path | None,
    authfile: Path | None,
    creds: str | None,
) -> None:
    """Build a ClusterImage from a Kubefile and a context directory.

    \b
    Examples:
      sealer build -t my-app:v1 .
      sealer build -t my-k3s:v1.29 --platform linux/amd64,linux/arm64 basefs/k3s
    """
    options = BuildOptions(
        context=context,
        kubefile=kubefile,
        tags=tags,
        build_args=_key_values(build_args, "--build-arg"),
        platforms=_platforms(platform),
        no_cache=no_cache,
        compression=Compression(compression),
        labels=_key_values(labels, "--label"),
        source_date_epoch=_source_date_epoch(),
        image_type=image_type,
        run_mode=cast(Literal["auto", "overlay", "snapshot"], run_mode),
        isolation=cast(Literal["none", "chroot"], isolation),
        pull=cast(Literal["always", "missing", "never"], pull),
        bundle_images=not no_image_bundle,
        image_source=cast(Literal["registry", "docker-daemon"], image_source),
    )
    # Only non-default flags build options now: the client's module pulls in requests/oras.
    registry = (
        make_registry_options(tls_verify, plain_http, ca_cert, authfile, creds=creds)
        if (not tls_verify or plain_http or ca_cert or authfile or creds or os.environ.get(TIMEOUT_ENV))
        else None
    )
    # Refused before anything opens it: a FIFO with no writer would block the build forever,
    # a device such as /dev/zero never ends. Reading stays with the build.
    check_regular_file(options.kubefile_path, limit_bytes=MAX_KUBEFILE_BYTES, what="Kubefile")
    store = open_store(ctx)
    progress = build_progress(quiet=quiet)
    try:
        # A pull's blobs show on the build's own display (bars on a terminal, lines otherwise).
        result = build_image(
            store, options, progress, pull=registry_puller(registry, progress.pull), daemon=DockerDaemon()
        )
    finally:
        progress.close()
    click.echo(str(result.descriptor.digest))
