"""The Clusterfile's Configs applied to a real built image on this machine: what a merge reads is
the file as the layer stack has it (the higher layer's), a Config on a template changes the
template, and paths the host's tar would send through a symlink, or that a template would
overwrite, are refused before any host is contacted."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import yaml

from builder.build.executor import build_image
from builder.build.plan import BuildOptions
from builder.errors import ClusterError, LayerError
from builder.image.descriptor import Platform
from builder.runtime import delivery
from builder.runtime.configs import ConfigFile
from builder.runtime.image_configs import with_configs
from builder.store.layout import Store

IMAGE = "example.test/configs:v1"


@pytest.fixture
def image(store: Store, tmp_path: Path) -> delivery.DeliveryImage:
    ctx = tmp_path / "ctx"
    (ctx / "low" / "etc").mkdir(parents=True)
    (ctx / "high" / "etc").mkdir(parents=True)
    (ctx / "low" / "etc" / "app.yaml").write_text("replicas: 1\nimage: old\n")
    (ctx / "high" / "etc" / "app.yaml").write_text("replicas: 2\nimage: new\n---\nreplicas: 5\n")
    (ctx / "high" / "etc" / "site.conf.tmpl").write_text("name: {{ .NAME }}\n")
    (ctx / "high" / "etc" / "outside").symlink_to("/usr")
    (ctx / "Kubefile").write_text("FROM scratch\nCOPY low/etc etc/\nCOPY high/etc etc/\n")
    build_image(store, BuildOptions(context=ctx, tags=(IMAGE,), bundle_images=False))
    return delivery.prepare_image(store, IMAGE, Platform.host())


def _layer_files(image: delivery.DeliveryImage, env: dict[str, str]) -> dict[str, str]:
    data = delivery.render_layer(image, env)
    assert data is not None
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_merge_reads_the_file_the_stack_has_and_templates_take_configs(
    store: Store, image: delivery.DeliveryImage
) -> None:
    configs = [
        ConfigFile("app", "etc/app.yaml", "replicas: 3\nmissing: x\n", "merge", (), "Clusterfile:9"),
        ConfigFile("site", "etc/site.conf.tmpl", "name: {{ .NAME }}\nport: 80\n", source="Clusterfile:20"),
        ConfigFile("new", "etc/new/extra.yaml", "a: 1\n"),
    ]
    files = _layer_files(with_configs(store, image, configs), {"NAME": "c1"})
    assert list(yaml.safe_load_all(files["etc/app.yaml"])) == [
        {"replicas": 3, "image": "new"},
        {"replicas": 3},
    ]
    assert files["etc/site.conf"] == "name: c1\nport: 80\n"  # the Config's template, rendered per host
    assert files["etc/new/extra.yaml"] == "a: 1\n"
    assert "etc/site.conf.tmpl" not in files


def test_paths_a_host_could_not_write_safely_are_refused(store: Store, image: delivery.DeliveryImage) -> None:
    with pytest.raises(LayerError, match=r"etc/outside/x\.yaml: etc/outside is a symlink in the image"):
        with_configs(store, image, [ConfigFile("x", "etc/outside/x.yaml", "a: 1\n", "merge")])
    with pytest.raises(ClusterError, match=r"the image renders etc/site\.conf from etc/site\.conf\.tmpl"):
        with_configs(store, image, [ConfigFile("s", "etc/site.conf", "x")])
    with pytest.raises(ClusterError, match=r"Config app \(Clusterfile:9\): etc/app\.yaml is not YAML"):
        broken = ConfigFile("app", "etc/app.yaml", "{", "overwrite", (), "Clusterfile:8")
        with_configs(
            store, image, [broken, ConfigFile("app", "etc/app.yaml", "a: 1\n", "merge", (), "Clusterfile:9")]
        )
