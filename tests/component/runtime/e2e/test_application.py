"""sealer's Application document and `sealer run --apps` on real sshd test hosts (`none`
runtime): the apps launch in launchApps order on master0 with their configured env and files;
--apps chooses others; an app the image lacks stops the run before any host changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.store.layout import Store
from tests.component.runtime.e2e.test_cluster_e2e import clusterfile_text
from tests.conftest import SealerRunner
from tests.hosts import HostSet

IMAGE = "example.test/apps-e2e:v1"
APP = "echo \"$1 ${REPLICAS:-1} $(cat conf.yaml | tr -d '\\n')\" >> /root/launch.log\n"
APPLICATION = """\
---
apiVersion: sealer.io/v2
kind: Application
metadata: {name: apps}
spec:
  launchApps: [b, a]
  configs:
  - name: a
    env: [REPLICAS=3]
    files:
    - {path: conf.yaml, strategy: overwrite, data: "size: big"}
"""


@pytest.fixture
def image(store: Store, tmp_path: Path) -> str:
    ctx = tmp_path / "ctx"
    for name in ("a", "b"):
        (ctx / name).mkdir(parents=True)
        (ctx / name / "run.sh").write_text(APP.replace("$1", name))
        (ctx / name / "conf.yaml").write_text("size: small\n")
    (ctx / "Kubefile").write_text(
        "FROM scratch\nAPP a local://a/run.sh local://a/conf.yaml\nAPP b local://b/run.sh local://b/conf.yaml\n"
        'APPCMDS a ["sh run.sh"]\nAPPCMDS b ["sh run.sh"]\nLAUNCH ["a"]\n'
    )
    build_image(store, BuildOptions(context=ctx, tags=(IMAGE,), bundle_images=False))
    return IMAGE


def test_application_launches_and_apps_flag(
    sealer: SealerRunner, image: str, host_factory: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEALER_STATE_HOME", str(tmp_path / "state"))
    hosts: HostSet = host_factory(2)  # type: ignore[operator]
    text = clusterfile_text([(hosts[0], "master", hosts), (hosts[1], "node", hosts)], name="apps")
    clusterfile = tmp_path / "Clusterfile"
    clusterfile.write_text(text.replace("cluster-rootfs:v1", "apps-e2e:v1") + APPLICATION)

    refused = sealer("run", "-f", str(clusterfile), "--apps", "a,ghost", expect=1)
    assert "app 'ghost' is not in image example.test/apps-e2e:v1 (apps: a, b)" in refused.stderr
    assert hosts[0].run("ls /var/lib/sealer").stdout == ""  # no host changed

    plan = sealer("run", "-f", str(clusterfile), "--apps", "a", "--dry-run").stdout
    assert "launch app a (shell)" in plan and "launch app b" not in plan

    sealer("run", "-f", str(clusterfile))
    assert hosts[0].run("cat /root/launch.log").stdout.splitlines() == ["b 1 size: small", "a 3 size: big"]
    assert hosts[1].run("cat /root/launch.log 2>/dev/null || true").stdout == ""  # master0 only
