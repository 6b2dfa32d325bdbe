"""The staging progress (resume without host blobs) and the keep_blobs option, without hosts:
the probe's parsing, which staging dir is continued, and what the commands keep."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.image.descriptor import Platform
from builder.runtime import _delivery_plan as plan
from builder.runtime import _delivery_shell as sh
from builder.runtime.delivery import plan_commands, prepare_image
from builder.store.layout import Store
from tests.unit.runtime.test_runtime_delivery_stack import E, put_image

AMD64 = Platform("linux", "amd64")
A, B, C = (f"sha256:{c * 64}" for c in "abc")
P = sh.Paths("/var/lib/sealer", "demo")


def probe(*lines: str) -> sh.Probe:
    return sh.parse_probe("\n".join(["link rootfs-x", *lines]) + "\n")


def test_the_probe_reports_the_staging_progress() -> None:
    got = probe("staging", f"staged {A}", f"staged {B}", "blob " + "d" * 64)
    assert got.has_staging and got.staged == (A, B) and got.blobs == {"d" * 64}
    assert not probe(f"staged {A}").has_staging and probe(f"staged {A}").staged == ()
    assert f"[ -d {P.staging('id')} ] && [ -f {P.progress('id')} ]" in sh.probe(P, "id")


@pytest.mark.parametrize(
    ("lines", "resume"),
    [
        (["staging"], 0),
        (["staging", f"staged {A}"], 1),
        (["staging", f"staged {A}", f"staged {B}", f"staged {C}"], 3),
        (["staging", f"staged {B}"], None),
        (["staging", f"staged {A}", f"staged {C}"], None),
        (["staging", f"staged {A}", f"staged {B}", f"staged {C}", f"staged {A}"], None),
        ([f"staged {A}"], None),
        ([], None),
    ],
)
def test_a_staging_dir_is_continued_only_when_its_progress_is_a_prefix(
    lines: list[str], resume: int | None
) -> None:
    assert plan.resume_from(probe(*lines), [A, B, C]) == resume


def test_prepare_keeps_the_staging_dir_only_when_resuming() -> None:
    fresh = sh.prepare(P, "id")
    assert f"rm -rf {P.data}/.staging-*" in fresh and f": > {P.progress('id')}" in fresh
    assert P.blobs not in fresh  # no blob dir without keep_blobs
    assert P.blobs in sh.prepare(P, "id", keep_blobs=True)
    resume = sh.prepare(P, "id", resume=True)
    assert "rm -rf -- /" not in resume and ".staging-id|.staging-id.layers) ;;" in resume


def test_uploads_record_progress_after_the_check_and_keep_blobs_only_when_asked() -> None:
    plain = sh.upload_extract(P, "id", "e" * 64, "zstd")
    assert 'tee -- "$F" | zstd -dcq | tar -x' in plain and ".partial-" not in plain
    assert plain.endswith(f"echo sha256:{'e' * 64} >> {P.progress('id')}")
    check = plain.index("exit 97")
    assert plain.index(f"rm -rf -- {P.staging('id')} {P.progress('id')}") < check < plain.index(">> ")
    kept = sh.upload_extract(P, "id", "e" * 64, "zstd", keep_blobs=True)
    assert 'tee -- "$P" "$F"' in kept and f'mv -f -- "$P" {P.blob("e" * 64)}' in kept
    assert kept.endswith(f">> {P.progress('id')}")
    for cmd in (sh.extract_blob(P, "id", "e" * 64, "zstd"), sh.stream_extract(P, "id", "f" * 64, A)):
        assert cmd.rstrip().endswith(f">> {P.progress('id')}")


def test_plan_commands_keeps_blobs_only_when_asked(tmp_path: Path) -> None:
    st = Store.open(tmp_path / "root")
    put_image(st, "t/x:1", [[E("a", data=b"1")]])
    image = prepare_image(st, "t/x:1", AMD64)
    assert not any(".partial-" in c for c in plan_commands(image, "demo", "h"))
    assert any(".partial-" in c for c in plan_commands(image, "demo", "h", keep_blobs=True))


def test_a_host_with_every_blob_runs_one_command_before_the_switch(tmp_path: Path) -> None:
    """Fan-out's fetchers and kept-blob re-deliveries: the prepare, the removals and each
    layer's unpack from the host's blobs are one round trip, in layer order, not two a layer."""
    st = Store.open(tmp_path / "root")
    put_image(
        st, "t/x:1", [[E("a", data=b"1")], [E("b", data=b"2"), E(".wh.a", data=b"")], [E("c", data=b"3")]]
    )
    image = prepare_image(st, "t/x:1", AMD64)
    items = plan.wanted_items(st, image, None)
    wanted = [str(i.digest) for i in items]
    has_all = probe(*(f"blob {i.digest.hex}" for i in items))
    ops, _ = plan.plan_host(P, "id", items, wanted, has_all, True)
    assert len(ops) == 2 and ops[0].present == 3 and ops[0].item is None
    unpacks = [ops[0].command.index(P.blob(i.digest.hex)) for i in items]
    assert unpacks == sorted(unpacks) and ops[0].command.index(f"rm -rf -- {P.staging('id')}/a") < unpacks[1]
    assert ops[1].command == sh.switch(P, "id", wanted, built=True)
