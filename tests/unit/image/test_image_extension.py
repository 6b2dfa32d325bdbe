"""sealer's extension annotations and the rootfs Metadata file, old variants included."""

from __future__ import annotations

import json

import pytest

from builder.errors import InvalidExtension, InvalidMetadata
from builder.image.descriptor import Platform
from builder.image.extension import (
    APP_INSTALLER,
    KUBE_INSTALLER,
    AppConfig,
    Application,
    BuildClient,
    ContainerImage,
    ImageExtension,
    Launch,
    dump_container_images,
    parse_container_images,
)
from builder.image.metadata import RootfsMetadata, cluster_runtime_from_label, label_from_cluster_runtime


def test_extension_current_form() -> None:
    ext = ImageExtension(
        type=APP_INSTALLER,
        applications=(Application("nginx", "kube", ("nginx.yaml",)),),
        launch=Launch(app_names=("nginx",)),
        env={"B": "2", "A": "1"},
        build_client=BuildClient("0.1.0", ""),
    )
    text = ext.to_json()
    assert text == (
        '{"buildClient":{"sealerVersion":"0.1.0","buildahVersion":""},"schemaVersion":"v1alpha1",'
        '"type":"app-installer","applications":[{"name":"nginx","type":"kube","files":["nginx.yaml"],'
        '"version":"v1"}],"env":{"A":"1","B":"2"},"launch":{"app_names":["nginx"]}}'
    )
    assert ImageExtension.from_json(text) == ext


def test_extension_app_config() -> None:
    ext = ImageExtension().with_application(Application("app1", "shell", ("install.sh",)))
    ext = ext.with_app_config(AppConfig("app1", ("bash install.sh",), {"K": "V"}))
    assert ext.app_config("app1") == AppConfig("app1", ("bash install.sh",), {"K": "V"})
    assert json.loads(ext.to_json())["applications"][0]["cmds"] == ["bash install.sh"]
    assert ext.app_config("nope") is None
    with pytest.raises(InvalidExtension, match="no app named"):
        ext.with_app_config(AppConfig("nope"))


def test_extension_old_launchfiles_variant() -> None:
    # As sealer's own test fixture (pkg/define/image/v1/sealer_image_extension_test.go).
    text = (
        '{"type":"app-installer","applications":[{"name":"cnstack","type":"shell",'
        '"launchfiles":["install.sh"],"version":"v1"}],"launch":{"cmds":["bash application/apps/cnstack/install.sh"]}}'
    )
    ext = ImageExtension.from_json(text)
    assert ext.type == APP_INSTALLER
    assert ext.applications[0].files == ("install.sh",)
    assert ext.launch.cmds == ("bash application/apps/cnstack/install.sh",)
    assert ext.schema_version == ""


def test_extension_old_app_configs_variant() -> None:
    text = json.dumps(
        {
            "buildClient": {"sealerVersion": "0.9", "buildahVersion": "1.27"},
            "schemaVersion": "v1alpha1",
            "type": "kube-installer",
            "applications": [{"name": "a", "type": "helm", "launchfiles": ["chart"], "version": "v1"}],
            "labels": {"x": "y"},
            "launch": {
                "app_names": ["a"],
                "appConfigs": [{"name": "a", "launch": {"cmds": ["helm install a ."]}}],
            },
        }
    )
    ext = ImageExtension.from_json(text)
    assert ext.applications[0].cmds == ("helm install a .",)
    assert ext.labels == {"x": "y"}
    assert ext.build_client == BuildClient("0.9", "1.27")
    # Written back in the current form.
    out = json.loads(ext.to_json())
    assert "appConfigs" not in out["launch"] and out["applications"][0]["files"] == ["chart"]


def test_extension_flat_variant() -> None:
    ext = ImageExtension.from_json(
        '{"image_type":"AppImage","cmd_set":["kubectl apply -f x"],"arg_set":{"a":"b"}}'
    )
    assert ext.type == APP_INSTALLER
    assert ext.launch.cmds == ("kubectl apply -f x",)
    assert ext.env == {"a": "b"}
    assert ImageExtension.from_json('{"image_type":"","cmd_set":null}').type == KUBE_INSTALLER


@pytest.mark.parametrize(
    "text",
    ["[]", "{", '{"applications":{}}', '{"applications":[{"type":"kube"}]}', '{"launch":{"cmds":"x"}}'],
)
def test_extension_bad(text: str) -> None:
    with pytest.raises(InvalidExtension):
        ImageExtension.from_json(text)


def test_container_images() -> None:
    images = (
        ContainerImage("docker.io/library/nginx:1.23", "nginx", Platform("linux", "arm64", "v8")),
        ContainerImage("k8s.gcr.io/pause:3.6"),
    )
    text = dump_container_images(images)
    assert json.loads(text) == [
        {
            "image": "docker.io/library/nginx:1.23",
            "appName": "nginx",
            "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        },
        {"image": "k8s.gcr.io/pause:3.6", "platform": None},
    ]
    assert parse_container_images(text) == images
    assert parse_container_images("null") == ()
    with pytest.raises(InvalidExtension):
        parse_container_images('[{"appName":"x"}]')


def test_metadata_round_trip_and_keys() -> None:
    md = RootfsMetadata("v1.22.15", "amd64", "", "1.22.15", False, "k3s")
    data = md.to_bytes()
    assert list(json.loads(data)) == [
        "version",
        "arch",
        "variant",
        "kubeVersion",
        "NydusFlag",
        "ClusterRuntime",
    ]
    assert RootfsMetadata.from_bytes(data) == md


def test_metadata_old_forms() -> None:
    assert RootfsMetadata.from_bytes(b'{"version":"v1","arch":"arm64"}').cluster_runtime == "k8s"
    assert RootfsMetadata.from_bytes(b'{"cluster_runtime":"k0s"}').cluster_runtime == "k0s"
    with pytest.raises(InvalidMetadata):
        RootfsMetadata.from_bytes(b'{"ClusterRuntime":"nomad"}')
    with pytest.raises(InvalidMetadata):
        RootfsMetadata.from_bytes(b'{"NydusFlag":"yes"}')


def test_runtime_label_mapping() -> None:
    assert cluster_runtime_from_label("kubernetes") == "k8s"
    assert label_from_cluster_runtime("k8s") == "kubernetes"
    for rt in ("k3s", "k0s"):
        assert cluster_runtime_from_label(label_from_cluster_runtime(rt)) == rt  # type: ignore[arg-type]
    with pytest.raises(InvalidMetadata):
        cluster_runtime_from_label("k8s")
