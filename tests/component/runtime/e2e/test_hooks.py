"""sealer's Plugin documents (shell hooks) on real sshd test hosts, `none` runtime: the image's
plugins/*.yaml and the Clusterfile's, at every phase of run, apply (scale-up) and delete --all,
on the right hosts, in name order, in the rootfs, resumed after a failing hook."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.store.layout import Store
from tests.component.runtime.e2e.test_cluster_e2e import clusterfile_text
from tests.conftest import SealerRunner
from tests.hosts import HostSet, TestHost

IMAGE = "example.test/hooks:v1"
LOG = "/root/hooks.log"
CLUSTER_PHASES = (
    "pre-install",
    "post-install",
    "pre-scaleup",
    "post-scaleup",
    "pre-uninstall",
    "post-uninstall",
)
HOST_PHASES = ("pre-init-host", "post-init-host", "pre-clean-host", "post-clean-host")
IMAGE_PLUGINS = """\
apiVersion: sealer.io/v1
kind: Plugin
metadata: {name: a-image}
spec:
  type: SHELL
  action: pre-init-host
  scope: node
  data: echo "a-image pre-init-host $(pwd)" >> /root/hooks.log
"""


def _plugin(name: str, phase: str, data: str) -> dict[str, object]:
    return {
        "apiVersion": "sealer.io/v1",
        "kind": "Plugin",
        "metadata": {"name": name},
        "spec": {"type": "SHELL", "action": phase, "data": data},
    }


def _clusterfile(members: list[tuple[TestHost, str, HostSet]]) -> str:
    docs: list[dict[str, object]] = [
        _plugin(f"z-{phase}", phase, f'echo "z-{phase} $(pwd)" >> {LOG}')
        for phase in (*CLUSTER_PHASES, *HOST_PHASES)
    ]
    # post-install fails until /root/allow exists: the run stops there and resumes after it
    docs.append(
        _plugin("y-gate", "post-install", "test -f /root/allow || { echo 'not allowed' >&2; exit 7; }")
    )
    return clusterfile_text(members, name="hooks").replace("cluster-rootfs:v1", "hooks:v1") + "".join(
        "---\n" + yaml.safe_dump(d, sort_keys=False) for d in docs
    )


@pytest.fixture
def image(store: Store, tmp_path: Path) -> str:
    context = tmp_path / "context"
    (context / "plugins").mkdir(parents=True)
    (context / "plugins" / "image.yaml").write_text(IMAGE_PLUGINS)
    (context / "Kubefile").write_text("FROM scratch\nCOPY plugins plugins/\n")
    build_image(store, BuildOptions(context=context, tags=(IMAGE,), bundle_images=False))
    return IMAGE


def _log(host: TestHost) -> list[str]:
    out = host.run(f"cat {LOG} 2>/dev/null || true").stdout
    return [line.split(" ")[0] for line in out.splitlines()]


def test_hooks_run_at_their_phases_on_their_hosts_and_resume(
    sealer: SealerRunner, image: str, host_factory: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEALER_STATE_HOME", str(tmp_path / "state"))
    hosts: HostSet = host_factory(3)  # type: ignore[operator]
    m0, n1, n2 = hosts
    first = tmp_path / "Clusterfile"
    first.write_text(_clusterfile([(m0, "master", hosts), (n1, "node", hosts)]))

    plan = sealer("run", "-f", str(first), "--dry-run").stdout
    assert "== hook-pre-install" in plan and "== hook-pre-init-host" in plan
    assert "pre-init-host hook a-image (example.test/hooks:v1: plugins/image.yaml:1)" in plan

    failed = sealer("run", "-f", str(first), expect=1)
    assert "hook-y-gate" in failed.stderr and "not allowed" in failed.stderr
    m0.run("touch /root/allow")
    sealer("run", "-f", str(first))  # resumes: the hooks that finished are not run again

    assert _log(m0) == ["z-pre-install", "z-pre-init-host", "z-post-init-host", "z-post-install"]
    assert _log(n1) == ["a-image", "z-pre-init-host", "z-post-init-host"]  # scope node; name order
    rootfs = m0.run(f"cat {LOG}").stdout.splitlines()[0].split(" ")[1]
    assert rootfs == "/var/lib/sealer/data/hooks/rootfs"

    grown = tmp_path / "Clusterfile2"
    grown.write_text(_clusterfile([(m0, "master", hosts), (n1, "node", hosts), (n2, "node", hosts)]))
    sealer("apply", "-f", str(grown))
    assert _log(m0)[4:] == ["z-pre-scaleup", "z-post-scaleup"]  # a scale-up, not an install
    assert _log(n1)[3:] == []
    assert _log(n2) == ["a-image", "z-pre-init-host", "z-post-init-host"]

    sealer("delete", "--all", "--force", "--cluster", "hooks")
    assert _log(m0)[6:] == ["z-pre-uninstall", "z-pre-clean-host", "z-post-clean-host", "z-post-uninstall"]
    for node in (n1, n2):
        assert _log(node)[3:] == ["z-pre-clean-host", "z-post-clean-host"]
