"""Local store commands: images, inspect, tag, rmi, prune, fsck, save, load."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from builder.build.cache import StepCache
from builder.cli._filter import matches, parse_filters
from builder.cli._format import parse_format, render_parsed, to_json
from builder.cli._inspect import inspect_document
from builder.cli._options import open_store
from builder.cli.output import human_size, print_json, print_table, print_warning
from builder.diffdirs import check_store, repair_store
from builder.diffdirs import prune as prune_store
from builder.errors import ImageInUse, ImageNotFound, StoreError, UsageError
from builder.image.descriptor import Platform
from builder.image.reference import Reference
from builder.store import archive
from builder.store.identity import ImageRecord, remove_image
from builder.store.layout import Store


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _created(value: str | None) -> str:
    if not value:
        return "-"
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return when.strftime("%Y-%m-%d %H:%M:%S")


def _record_doc(r: ImageRecord) -> dict[str, Any]:
    """One image as `images --format json` prints it and `--format TEMPLATE` sees it."""
    ref = Reference.parse(r.name)
    return {
        "name": r.name,
        "repository": ref.familiar_name,
        "tag": ref.tag or "<none>",
        "id": r.image_id.hex,
        "digest": str(r.digest),
        "platforms": [str(p) for p in r.platforms],
        "created": r.created,
        "stored": r.stored,
        "size": r.size,
        "labels": dict(r.labels),
        **({"problem": r.problem} if r.problem else {}),
    }


@click.command()
@click.option(
    "--format",
    "fmt",
    default="table",
    show_default=True,
    help="table, json, or a Go template per image, e.g. '{{.Repository}}:{{.Tag}} {{.ID}}'.",
)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="reference=PATTERN (glob on the name) or label=KEY[=VALUE]; repeat: same key OR, keys AND.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only image IDs (short, each once).")
@click.pass_context
def images(ctx: click.Context, fmt: str, filters: tuple[str, ...], quiet: bool) -> None:
    """List the images in the local store.

    CREATED is when an image entered this store: the config's `created` is reproducible
    (SOURCE_DATE_EPOCH, default 1970-01-01); `sealer inspect` shows both.
    """
    wanted = parse_filters(filters)
    template = None if quiet or fmt in ("table", "json") else parse_format(fmt)
    records = [r for r in open_store(ctx).images() if matches(r, wanted)]
    if quiet:
        for short in dict.fromkeys(r.image_id.short for r in records if r.problem is None):
            click.echo(short)
        return
    if template is not None:
        for r in records:
            click.echo(render_parsed(template, _record_doc(r)))
    elif fmt == "json":
        print_json([_record_doc(r) for r in records])
    else:
        rows = [
            [
                Reference.parse(r.name).familiar,
                r.image_id.short if r.problem is None else "BROKEN",
                ",".join(str(p) for p in r.platforms),
                _created(r.stored or r.created),
                human_size(r.size) if r.problem is None else "-",
            ]
            for r in records
        ]
        print_table(["IMAGE NAME", "IMAGE ID", "PLATFORMS", "CREATED", "SIZE"], rows)
    for r in records:
        if r.problem is not None:
            familiar = Reference.parse(r.name).familiar
            print_warning(f"{familiar} is broken: {r.problem} (remove it: sealer rmi {familiar})")


@click.command()
@click.argument("name")
@click.option(
    "-f",
    "--format",
    "fmt",
    help="json, or a Go template, e.g. '{{index .OCIv1.Config.Labels \"k\"}}' or '{{json .Layers}}'.",
)
@click.option("--platform", help="Platform to show for a multi-platform image (default: this host's).")
@click.option(
    "--unpack", is_flag=True, help="Unpack the layers into overlay2/ and show their directories (`dir`)."
)
@click.pass_context
def inspect(ctx: click.Context, name: str, fmt: str | None, platform: str | None, unpack: bool) -> None:
    """Show an image's manifest, config, sealer extension and layers as JSON (read-only)."""
    template = parse_format(fmt) if fmt and fmt.strip() != "json" else None  # before any work
    store = open_store(ctx)
    wanted = Platform.parse(platform) if platform else None
    if unpack:
        with store.gc_lock(exclusive=False):  # a prune must not free the blobs being unpacked
            doc = inspect_document(store, name, wanted, unpack=True)
    else:
        doc = inspect_document(store, name, wanted, unpack=False)
    if template is not None:
        click.echo(render_parsed(template, doc))
    elif fmt:
        click.echo(to_json(doc))
    else:
        print_json(doc)


@click.command()
@click.argument("source")
@click.argument("targets", nargs=-1, required=True)
@click.pass_context
def tag(ctx: click.Context, source: str, targets: tuple[str, ...]) -> None:
    """Give an image more names: sealer tag SOURCE|IMAGE_ID TARGET..."""
    store = open_store(ctx)
    for target in targets:
        store.tag(source, target)


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Remove an image ID's names even when it has several.")
@click.option(
    "--prune/--no-prune", default=True, show_default=True, help="Free the blobs no name reaches any more."
)
@click.pass_context
def rmi(ctx: click.Context, names: tuple[str, ...], force: bool, prune: bool) -> None:
    """Remove images: a NAME loses that name; an IMAGE ID (12+ hex digits) or digest loses
    every name of that image (with -f when there are several, as docker)."""
    store = open_store(ctx)
    missing = []
    refused: ImageInUse | None = None
    for name in names:
        try:
            removed = remove_image(store, name, force=force)
        except ImageNotFound:
            missing.append(name)
            continue
        except ImageInUse as err:
            refused = refused or err
            continue
        for full in removed:
            click.echo(f"untagged: {Reference.parse(full).familiar}")
    if prune:
        result, _ = prune_store(store)
        if result.removed_blobs:
            click.echo(f"freed {human_size(result.freed_bytes)} in {len(result.removed_blobs)} blobs")
    if missing:
        raise ImageNotFound(f"no such image: {', '.join(missing)}", hint="see `sealer images`")
    if refused is not None:
        raise refused


@click.command()
@click.option("-a", "--all", "everything", is_flag=True, help="Also clear the build cache.")
@click.pass_context
def prune(ctx: click.Context, everything: bool) -> None:
    """Remove blobs, unpacked layers and temp files that no image uses."""
    store = open_store(ctx)
    result, dirs = prune_store(store)
    cleared = StepCache(store.cache_dir).clear() if everything else 0
    click.echo(
        f"removed {len(result.removed_blobs)} blobs ({human_size(result.freed_bytes)}), {dirs} unpacked layers"
        + (f", {cleared} build cache entries" if everything else "")
        + (
            f", {result.removed_tmp_dirs} leftovers of dead sealer processes"
            if result.removed_tmp_dirs
            else ""
        )
    )


@click.command()
@click.option(
    "--repair",
    is_flag=True,
    help="Delete corrupt blobs, remove the names of incomplete images and the unpacked layers that "
    "differ from their blobs (unpacked again when next needed), sweep dead processes' leftovers.",
)
@click.pass_context
def fsck(ctx: click.Context, repair: bool) -> None:
    """Check the store: every name resolves, every blob is there and matches its digest.

    \b
    Unpacked layers (overlay2/<id>/diff) are compared with their blobs too: every
    path's type, each file's size and sha256, symlink targets, whiteouts and opaque
    dirs, and nothing extra. Their files are not fsynced when unpacked (for speed, as
    docker and containerd do), so a power loss can leave them empty, missing or
    zeroed; a build or a local run would use them as they are.

    Read-only unless --repair; exits 1 while problems remain.
    """
    root = ctx.find_root().obj.get("root") if ctx.find_root().obj else None
    store = Store.open(root, create=False, sweep=False)
    if repair:
        result = repair_store(store)
        for name in result.removed_names:
            click.echo(f"removed name: {Reference.parse(name).familiar}")
        for digest in result.removed_blobs:
            click.echo(f"removed corrupt blob: {digest}")
        for digest in result.removed_diff_dirs:
            click.echo(f"removed unpacked layer: {digest}")
        if result.swept:
            click.echo(f"removed {result.swept} leftovers of dead sealer processes")
    report = check_store(store)
    for problem in report.problems:
        click.echo(f"problem: {problem.message}")
    if report.leftovers:
        click.echo(f"leftovers: {report.leftovers} temp entries of dead sealer processes")
    problems = _count(len(report.problems), "problem")
    click.echo(
        f"{_count(report.names, 'name')}, {_count(report.blobs, 'blob')} ({report.unreachable_blobs} "
        f"unreachable: `sealer prune` frees them), {_count(report.diff_dirs, 'unpacked layer')}, {problems}"
    )
    if not report.ok:
        raise StoreError(
            f"the store at {store.root} has {problems}"
            + (f" and {_count(report.leftovers, 'leftover')}" if report.leftovers else ""),
            hint="`sealer fsck --repair` removes broken names, leftovers and the unpacked layers that differ "
            "from their blobs (unpacked again from the verified blob when next needed)",
        )


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(allow_dash=True, path_type=str),
    help="File (a directory for oci-dir) to write; - or none: stdout, when it is not a terminal.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(archive.FORMATS),
    default="oci-archive",
    show_default=True,
    help="oci-archive (skopeo oci-archive:), docker-archive (docker load), oci-dir (skopeo oci:).",
)
@click.pass_context
def save(ctx: click.Context, names: tuple[str, ...], output: str | None, fmt: str) -> None:
    """Write images to an archive file, a layout directory or stdout (as docker save)."""
    store = open_store(ctx)
    if output is not None and output != "-":
        archive.save(store, list(names), Path(output), fmt=fmt)
        return
    if fmt == "oci-dir":
        raise UsageError("--format oci-dir writes a directory, not a stream", hint="give one with -o DIR")
    stdout = sys.stdout.buffer
    if stdout.isatty():
        raise UsageError(
            "refusing to write an archive to a terminal", hint="give a file with -o, or redirect stdout"
        )
    archive.save(store, list(names), stdout, fmt=fmt)
    stdout.flush()


@click.command()
@click.option(
    "-i",
    "--input",
    "source",
    type=click.Path(exists=True, allow_dash=True, path_type=str),
    help="OCI or docker archive, or OCI layout directory; - or none: stdin, when it is not a terminal.",
)
@click.option("--name", help="Name for an image whose archive entry carries only a tag or no name.")
@click.pass_context
def load(ctx: click.Context, source: str | None, name: str | None) -> None:
    """Load images from an OCI archive (sealer save, skopeo oci-archive:), a docker archive
    (docker save, skopeo docker-archive:), an OCI layout directory, or stdin."""
    store = open_store(ctx)
    if source is not None and source != "-":
        loaded = archive.load(store, Path(source), name=name)
    else:
        stdin = sys.stdin.buffer
        if source is None and stdin.isatty():
            raise UsageError(
                "load needs an archive: -i FILE, or one on stdin",
                hint="sealer load -i images.tar, or sealer load < images.tar",
            )
        loaded = archive.load(store, stdin, name=name)
    for n in loaded:
        click.echo(f"loaded: {Reference.parse(n).familiar}")


COMMANDS = [images, inspect, tag, rmi, prune, fsck, save, load]
