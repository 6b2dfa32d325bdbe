"""The numbers the progress display is fed, from real work: a build's byte counts add up to its
layers' sizes, and a delivery reports a host's bytes as they stream (tests/unit/cli/
test_cli_progress.py drives the renderers themselves)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from builder.build.events import BuildEvent, StepFinished, StepProgress
from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.image.descriptor import Platform
from builder.runtime import delivery
from builder.runtime.infra.local import LocalDriver
from builder.store.layout import Store
from tests.unit.runtime.test_runtime_delivery_stack import E, put_image
from tests.validate import validate_image

AMD64 = Platform("linux", "amd64")
BIG = 13 << 20  # four 4 MB slices of the tar writer: four progress reports


def test_build_reports_each_layer_size_once(store: Store, tmp_path: Path) -> None:
    """onepass reports a running total and the executor summed it again (a 189 MB build
    showed 4,529.9/188.7 MB): the last report of a step is its layer's tar size, as is the total."""
    ctx = tmp_path / "ctx"
    (ctx / "d").mkdir(parents=True)
    (ctx / "big.bin").write_bytes(os.urandom(BIG))
    for i in range(3):
        (ctx / "d" / f"f{i}").write_bytes(b"x" * (1000 + i))
    (ctx / "Kubefile").write_text("FROM scratch\nCOPY big.bin /\nCOPY d /d\n")
    events: list[BuildEvent] = []
    build_image(store, BuildOptions(context=ctx, tags=("p:1",), platforms=(AMD64,)), events.append)
    validate_image(store, "p:1")
    finished = {e.index: e for e in events if isinstance(e, StepFinished) and e.layer_digest}
    assert sorted(finished) == [1, 2]
    for index, step in finished.items():
        reports = [e for e in events if isinstance(e, StepProgress) and e.index == index]
        done = [e.bytes_done for e in reports]
        assert done == sorted(done) and done[-1] == step.uncompressed_size, (index, done)
        assert {e.bytes_total for e in reports} == {step.uncompressed_size}
    assert len([e for e in events if isinstance(e, StepProgress) and e.index == 1]) >= 4


def test_delivery_reports_bytes_as_they_stream(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host's byte count moves during a blob (it stayed at 0 B, then jumped to the full size)."""
    monkeypatch.setattr(delivery, "_PROGRESS_EVERY_S", 0.0)  # every drained write, not 10/s
    put_image(store, "t/big:1", [[E("big", data=os.urandom(BIG))], [E("small", data=b"s")]])
    image = delivery.prepare_image(store, "t/big:1", AMD64)
    events: list[delivery.DeliveryEvent] = []

    async def go() -> None:
        async with LocalDriver() as driver:
            await delivery.deliver(
                driver,
                store,
                image,
                "c1",
                {"localhost": {}},
                root=str(tmp_path / "host"),
                on_event=events.append,
            )

    asyncio.run(go())
    progress = [e for e in events if isinstance(e, delivery.HostProgress)]
    sizes = sum(layer.descriptor.size for layer in image.layers)
    sent = [e.bytes_sent for e in progress]
    assert sent == sorted(sent) and sent[0] > 0 and sent[-1] == sizes
    assert {e.bytes_total for e in progress} == {sizes}
    assert any(0 < n < image.layers[0].descriptor.size for n in sent), sent  # during the big blob
    assert (tmp_path / "host/data/c1/rootfs/big").stat().st_size == BIG
