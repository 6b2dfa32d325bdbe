"""Discovery in manifests/, apps and imageList files: only container images, never look-alikes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from builder.build.bundle.discover import FoundImage, discover, discover_images
from builder.errors import BuildError, ImageDiscoveryError
from tests.conftest import write_tree


def images(root: Path, **kwargs: object) -> list[str]:
    return [f.image for f in discover_images(root, **kwargs)]  # type: ignore[arg-type]


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx
spec:
  template:
    spec:
      initContainers:
      - name: init
        image: busybox:1.36
        imagePullPolicy: IfNotPresent
      containers:
      - name: nginx
        image: nginx:1.25
        imagePullPolicy: Always
        env:
        - name: SIDECAR_IMAGE
          value: not/an-image-we-take:1
      - name: metrics
        image: quay.io/prometheus/nginx-exporter@sha256:4a456552a5f192992a6edcec2febb1c54870d665173a33dc7d876129b199ddbd
"""


def test_deployment_containers_and_init_containers(tmp_path: Path) -> None:
    write_tree(tmp_path, {"manifests/app.yaml": DEPLOYMENT})
    found = discover_images(tmp_path)
    assert [f.image for f in found] == [
        "docker.io/library/busybox:1.36",
        "docker.io/library/nginx:1.25",
        "quay.io/prometheus/nginx-exporter@sha256:4a456552a5f192992a6edcec2febb1c54870d665173a33dc7d876129b199ddbd",
    ]
    by_image = {f.image: f for f in found}
    assert by_image["docker.io/library/nginx:1.25"] == FoundImage(
        "docker.io/library/nginx:1.25",
        "manifests/app.yaml: Deployment/nginx spec.template.spec.containers[0].image",
        "",
    )
    assert by_image["docker.io/library/busybox:1.36"].source.endswith(
        "spec.template.spec.initContainers[0].image"
    )


def test_multi_doc_cronjob_statefulset_daemonset_pod_and_list(tmp_path: Path) -> None:
    text = """\
apiVersion: batch/v1
kind: CronJob
metadata: {name: backup}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: b, image: "registry.example.com:5000/tools/backup:v2"}]
---
# an empty document and a comment-only one
---
kind: StatefulSet
metadata: {name: db}
spec: {template: {spec: {containers: [{name: db, image: postgres:16}]}}}
---
kind: DaemonSet
metadata: {name: agent}
spec: {template: {spec: {containers: [{name: a, image: "ghcr.io/org/agent:1.0"}]}}}
---
kind: Pod
metadata: {name: debug}
spec:
  containers: [{name: c, image: alpine:3.19}]
  ephemeralContainers: [{name: dbg, image: nicolaka/netshoot:v0.11}]
---
apiVersion: v1
kind: List
items:
- kind: Job
  metadata: {name: migrate}
  spec: {template: {spec: {containers: [{name: m, image: "myorg/migrate:3"}]}}}
"""
    write_tree(tmp_path, {"manifests/all.yml": text})
    assert images(tmp_path) == [
        "docker.io/library/alpine:3.19",
        "docker.io/library/postgres:16",
        "docker.io/myorg/migrate:3",
        "docker.io/nicolaka/netshoot:v0.11",
        "ghcr.io/org/agent:1.0",
        "registry.example.com:5000/tools/backup:v2",
    ]
    sources = {f.image: f.source for f in discover_images(tmp_path)}
    assert sources["docker.io/myorg/migrate:3"] == (
        "manifests/all.yml: List items[0].spec.template.spec.containers[0].image"
    )
    assert sources["registry.example.com:5000/tools/backup:v2"].startswith(
        "manifests/all.yml: CronJob/backup "
    )


def test_custom_resource_embedding_a_pod_template(tmp_path: Path) -> None:
    text = """\
apiVersion: apps.kruise.io/v1alpha1
kind: CloneSet
metadata: {name: web}
spec:
  image: not-this-one:1      # a CR field named image, outside a container list
  template:
    spec:
      containers:
      - {name: web, image: "nginx:1.25-alpine"}
---
apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata: {name: k8s}
spec:
  image: quay.io/prometheus/prometheus:v2.48.0   # operator-managed: not a container list item
  containers:
  - name: config-reloader
    image: quay.io/prometheus-operator/prometheus-config-reloader:v0.70.0
"""
    write_tree(tmp_path, {"manifests/cr.json.yaml": text})
    assert images(tmp_path) == [
        "docker.io/library/nginx:1.25-alpine",
        "quay.io/prometheus-operator/prometheus-config-reloader:v0.70.0",
    ]


def test_sealer_1913_kubevela_cue_in_configmaps_is_not_an_image(tmp_path: Path) -> None:
    # sealer #1913: a KubeVela chart's ConfigMaps carry CUE definitions; grepping for
    # "image" bundled docker.io/library/parameter.image, /string and /_params.image.
    text = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: webservice-definition}
data:
  template: |
    output: {
      apiVersion: "apps/v1"
      kind: "Deployment"
      spec: template: spec: containers: [{
        name:  context.name
        image: parameter.image
      }]
    }
    parameter: {
      // +usage=Which image would you like to use for your service
      image: string
    }
  image: foo
  imagePullPolicy: Always
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other}
data:
  config.yaml: |
    containers:
    - name: x
      image: _params.image
"""
    write_tree(tmp_path, {"manifests/vela.yaml": text})
    assert images(tmp_path) == []


def test_crd_schema_and_image_like_keys_are_ignored(tmp_path: Path) -> None:
    text = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: apps.example.com}
spec:
  versions:
  - name: v1
    schema:
      openAPIV3Schema:
        properties:
          containers:
            type: array
            items:
              properties:
                image: {type: string}
          image: {type: string, default: "nginx"}
          baseImage: {type: string}
          sidecarImage: "istio/proxyv2:1.20"
---
kind: Deployment
metadata: {name: x}
spec:
  template:
    metadata:
      annotations:
        sidecar.example.com/image: "evil/image:1"
    spec:
      containers:
      - name: x
        image: nginx:1.25
        args: ["--image=other/image:2"]
"""
    write_tree(tmp_path, {"manifests/crd.yaml": text})
    assert images(tmp_path) == ["docker.io/library/nginx:1.25"]


def test_json_manifests_and_dedup_keeps_first_source(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "manifests/a.json": '{"kind": "Pod", "metadata": {"name": "p"}, '
            '"spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}}',
            "manifests/b.yaml": "kind: Pod\nmetadata: {name: q}\nspec: {containers: [{name: c, image: nginx:1.25}]}\n",
            "manifests/README.md": "image: not-yaml-we-read",
        },
    )
    found = discover_images(tmp_path)
    assert found == [
        FoundImage("docker.io/library/nginx:1.25", "manifests/a.json: Pod/p spec.containers[0].image", "")
    ]


def test_order_is_deterministic(tmp_path: Path) -> None:
    files = {
        f"manifests/{n}.yaml": f"kind: Pod\nspec: {{containers: [{{image: img{n}:1}}]}}\n" for n in "zyxabc"
    }
    write_tree(tmp_path, files)
    first = discover_images(tmp_path)
    assert [f.image for f in first] == sorted(f.image for f in first)
    assert discover_images(tmp_path) == first


def test_empty_or_non_string_container_image_is_a_warning(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "manifests/a.yaml": "kind: Pod\nspec:\n  containers:\n  - {name: a, image: ''}\n  - {name: b, image: {repo: x}}\n"
        },
    )
    result = discover(tmp_path)
    assert result.images == ()
    assert len(result.warnings) == 2
    assert "manifests/a.yaml: Pod spec.containers[0].image" in result.warnings[0]


def test_unparsable_yaml_names_file_and_line(tmp_path: Path) -> None:
    write_tree(
        tmp_path, {"manifests/bad.yaml": "kind: Pod\nspec:\n  containers:\n  - image: [nginx\n  - x: y\n"}
    )
    with pytest.raises(ImageDiscoveryError) as info:
        discover_images(tmp_path)
    err = info.value
    assert isinstance(err, BuildError)
    assert err.path == "manifests/bad.yaml"
    assert err.line is not None and err.line >= 4
    assert str(err).startswith(f"manifests/bad.yaml:{err.line}:")
    assert "invalid YAML" in str(err)


def test_unparsable_json_names_file_and_line(tmp_path: Path) -> None:
    write_tree(tmp_path, {"manifests/bad.json": '{\n  "kind": "Pod",\n  oops\n  "containers": []\n}'})
    with pytest.raises(ImageDiscoveryError, match=r"^manifests/bad\.json:3:3: invalid JSON"):
        discover_images(tmp_path)


def test_files_without_container_keys_are_not_parsed(tmp_path: Path) -> None:
    # Only a document with a container list can name an image: others are not parsed at all,
    # so thousands of ConfigMaps cost a substring test each (and their syntax is not our business).
    write_tree(
        tmp_path,
        {
            "manifests/data.yaml": "kind: ConfigMap\ndata: {a: [unclosed\n",
            "manifests/words.yaml": "a: containers b\n",
        },
    )
    assert discover_images(tmp_path) == []


def test_invalid_reference_names_file_and_value(tmp_path: Path) -> None:
    # sealer #2006 / sealos #1487: an unrendered template in a plain manifest is not pulled.
    write_tree(
        tmp_path,
        {"manifests/t.yaml": 'kind: Pod\nspec: {containers: [{image: "{{ .ProxyImage }}"}]}\n'},
    )
    with pytest.raises(ImageDiscoveryError) as info:
        discover_images(tmp_path)
    assert info.value.path == "manifests/t.yaml"
    assert "'{{ .ProxyImage }}'" in str(info.value)
    assert info.value.hint and "imageList" in info.value.hint


def test_image_list_files_anywhere(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "imageList": "# base images\n\nnginx:1.25\n  registry.k8s.io/pause:3.9  \nbusybox # inline comment\n",
            "etc/extra/imageList": "quay.io/coreos/etcd:v3.5.4\n",
            "application/apps/mysql/imageList": "mysql:8.0\n",
            "registry/docker/imageList": "ignored/because-registry-data:1\n",
        },
    )
    found = discover_images(tmp_path)
    assert [(f.image, f.app_name) for f in found] == [
        ("docker.io/library/busybox:latest", ""),
        ("docker.io/library/nginx:1.25", ""),
        ("quay.io/coreos/etcd:v3.5.4", ""),
        ("registry.k8s.io/pause:3.9", ""),
        ("docker.io/library/mysql:8.0", "mysql"),
    ]
    assert {f.source for f in found if f.image.endswith("pause:3.9")} == {"imageList:4"}


def test_image_list_invalid_line_is_an_error(tmp_path: Path) -> None:
    write_tree(tmp_path, {"imageList": "nginx:1.25\nNot A/Valid:ref\n"})
    with pytest.raises(
        ImageDiscoveryError,
        match=r"^imageList:2: invalid image reference 'Not A/Valid:ref': contains whitespace$",
    ) as info:
        discover_images(tmp_path)
    assert info.value.line == 2


def test_apps_under_application_dir_and_from_mapping(tmp_path: Path) -> None:
    pod = "kind: Pod\nmetadata: {{name: p}}\nspec: {{containers: [{{image: {}}}]}}\n"
    write_tree(
        tmp_path,
        {
            "application/apps/web/web.yaml": pod.format("nginx:1.25"),
            "src/dashboard/deploy.yaml": pod.format("kubernetesui/dashboard:v2.6.1"),
            "src/dashboard/imageList": "kubernetesui/metrics-scraper:v1.0.8\n",
            "single.yaml": pod.format("redis:7"),
            "manifests/shared.yaml": pod.format("nginx:1.25"),
        },
    )
    found = discover_images(
        tmp_path, apps={"dash": [Path("src/dashboard")], "cache": [tmp_path / "single.yaml"]}
    )
    assert [(f.app_name, f.image) for f in found] == [
        ("", "docker.io/library/nginx:1.25"),
        ("cache", "docker.io/library/redis:7"),
        ("dash", "docker.io/kubernetesui/dashboard:v2.6.1"),
        ("dash", "docker.io/kubernetesui/metrics-scraper:v1.0.8"),
        ("web", "docker.io/library/nginx:1.25"),
    ]


def test_packaged_chart_is_a_warning_not_silence(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_tree(tmp_path, {"charts/redis-4.0.4.tgz": b"\x1f\x8b not really"})
    with caplog.at_level(logging.WARNING):
        assert discover_images(tmp_path) == []
    assert "charts/redis-4.0.4.tgz: packaged chart not inspected" in caplog.text


def test_nothing_to_find(tmp_path: Path) -> None:
    assert discover_images(tmp_path) == []
    assert discover_images(tmp_path / "missing") == []
