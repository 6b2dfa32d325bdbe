"""Discovery in charts: values.yaml walked as YAML, templates read as the YAML they render to."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.build.bundle.discover import discover, discover_images
from builder.errors import ImageDiscoveryError
from tests.conftest import write_tree

# --- chart 1: nginx-like, image.repository/tag with tag defaulting to appVersion -------------

NGINX_CHART = {
    "charts/web/Chart.yaml": 'apiVersion: v2\nname: web\nversion: 0.1.0\nappVersion: "1.25.3"\n',
    "charts/web/values.yaml": """\
replicaCount: 1
image:
  repository: nginx
  pullPolicy: IfNotPresent
  tag: ""
imagePullSecrets: []
podAnnotations:
  image: not-an-image-annotation   # a string under `image`: taken from values (documented rule)
""",
    "charts/web/templates/_helpers.tpl": '{{- define "web.fullname" -}}{{ .Chart.Name }}{{- end }}\n',
    "charts/web/templates/deployment.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "web.fullname" . }}
  labels:
    {{- include "web.labels" . | nindent 4 }}
spec:
  {{- if not .Values.autoscaling }}
  replicas: {{ .Values.replicaCount }}
  {{- end }}
  template:
    spec:
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .Chart.Name }}
          securityContext:
            {{- toYaml .Values.securityContext | nindent 12 }}
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          ports:
            - name: http
              containerPort: 80
""",
    "charts/web/templates/tests/test-connection.yaml": """\
apiVersion: v1
kind: Pod
metadata:
  name: "{{ include "web.fullname" . }}-test-connection"
spec:
  containers:
    - name: wget
      image: busybox
      command: ['wget']
  restartPolicy: Never
""",
}


def test_nginx_like_chart(tmp_path: Path) -> None:
    files = dict(NGINX_CHART)
    files["charts/web/values.yaml"] = files["charts/web/values.yaml"].replace(
        "podAnnotations:\n  image: not-an-image-annotation   # a string under `image`: taken from values (documented rule)\n",
        "podAnnotations: {}\n",
    )
    write_tree(tmp_path, files)
    result = discover(tmp_path)
    assert [f.image for f in result.images] == [
        "docker.io/library/busybox:latest",
        "docker.io/library/nginx:1.25.3",
    ]
    sources = sorted(f.source for f in discover_images(tmp_path))
    assert sources == [
        "charts/web/templates/tests/test-connection.yaml:8: containers[].image",
        "charts/web/values.yaml: image",
    ]


# --- chart 2: bitnami-like, global.imageRegistry + image.registry/repository/tag ----------------

BITNAMI_CHART = {
    "charts/redis/Chart.yaml": """\
apiVersion: v2
name: redis
version: 18.4.0
appVersion: 7.2.3
dependencies:
  - name: common
    repository: oci://registry-1.docker.io/bitnamicharts
    version: 2.x.x
""",
    "charts/redis/values.yaml": """\
global:
  imageRegistry: ""
  storageClass: ""
image:
  registry: docker.io
  repository: bitnami/redis
  tag: 7.2.3-debian-11-r2
  digest: ""
  pullPolicy: IfNotPresent
sentinel:
  enabled: false
  image:
    registry: docker.io
    repository: bitnami/redis-sentinel
    tag: 7.2.3-debian-11-r1
metrics:
  image:
    registry: docker.io
    repository: bitnami/redis-exporter
    tag: 1.55.0-debian-11-r2
""",
    "charts/redis/templates/master/application.yaml": """\
apiVersion: apps/v1
kind: StatefulSet
spec:
  template:
    spec:
      containers:
        - name: redis
          image: {{ template "redis.image" . }}
          imagePullPolicy: {{ .Values.image.pullPolicy | quote }}
        {{- if .Values.metrics.enabled }}
        - name: metrics
          image: {{ include "common.images.image" (dict "imageRoot" .Values.metrics.image "global" .Values.global) }}
        {{- end }}
""",
    "charts/redis/charts/common/Chart.yaml": "apiVersion: v2\nname: common\nversion: 2.13.3\ntype: library\n",
    "charts/redis/charts/common/templates/_images.tpl": '{{- define "common.images.image" -}}x{{- end -}}\n',
}


def test_bitnami_like_chart_with_global_registry(tmp_path: Path) -> None:
    write_tree(tmp_path, BITNAMI_CHART)
    result = discover(tmp_path)
    assert [f.image for f in result.images] == [
        "docker.io/bitnami/redis-exporter:1.55.0-debian-11-r2",
        "docker.io/bitnami/redis-sentinel:7.2.3-debian-11-r1",
        "docker.io/bitnami/redis:7.2.3-debian-11-r2",
    ]
    # the `template`/`include` image fields are given up on, with a warning naming the line
    assert any("application.yaml:8" in w and "template" in w for w in result.warnings)

    overridden = dict(BITNAMI_CHART)
    overridden["charts/redis/values.yaml"] = overridden["charts/redis/values.yaml"].replace(
        'imageRegistry: ""', "imageRegistry: harbor.example.com:8443"
    )
    write_tree(tmp_path, overridden)
    assert {f.image for f in discover_images(tmp_path)} == {
        "harbor.example.com:8443/bitnami/redis-exporter:1.55.0-debian-11-r2",
        "harbor.example.com:8443/bitnami/redis-sentinel:7.2.3-debian-11-r1",
        "harbor.example.com:8443/bitnami/redis:7.2.3-debian-11-r2",
    }


# --- chart 3: ingress-nginx-like: with-scoped image, digest, initContainers, sidecars ---------

DIGEST = "sha256:4ba73c697770664c1e00e9f968de14e08f606ff961c76e5d7033a4a9c593c629"
CERTGEN_DIGEST = "sha256:39c5b2e3310dc4264d638ad28d9d1d96c4cbb2b2dcfb52368fe4e3c63f61e10f"

INGRESS_CHART = {
    "charts/ingress-nginx/Chart.yaml": "apiVersion: v2\nname: ingress-nginx\nversion: 4.4.0\nappVersion: 1.5.1\n",
    "charts/ingress-nginx/values.yaml": f"""\
controller:
  containerName: controller
  image:
    registry: registry.k8s.io
    image: ingress-nginx/controller
    tag: "v1.5.1"
    digest: {DIGEST}
    pullPolicy: IfNotPresent
  extraContainers:
    - name: log-shipper
      image: fluent/fluent-bit:2.2.0
  extraInitContainers: []
  admissionWebhooks:
    patch:
      image:
        registry: registry.k8s.io
        image: ingress-nginx/kube-webhook-certgen
        tag: v20220916-gd32f8c343
        digest: {CERTGEN_DIGEST}
  opentelemetry:
    enabled: false
    image: registry.k8s.io/ingress-nginx/opentelemetry:v20230721-3e2062ee5@sha256:13bee3f5223883d3ca62fee7309ad02d22ec00ff0d7033e3e9aca7a9f60fd472
defaultBackend:
  enabled: true
  image:
    registry: registry.k8s.io
    image: defaultbackend-amd64
    tag: "1.5"
""",
    "charts/ingress-nginx/templates/controller-deployment.yaml": """\
{{- if eq .Values.controller.kind "Deployment" -}}
{{- end }}
apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      containers:
        - name: {{ .Values.controller.containerName }}
          {{- with .Values.controller.image }}
          image: "{{- if .repository -}}{{ .repository }}{{ else }}{{ .registry }}/{{ .image }}{{- end -}}:{{ .tag }}{{- if (.digest) -}} @{{.digest}} {{- end -}}"
          {{- end }}
          imagePullPolicy: {{ .Values.controller.image.pullPolicy }}
          args:
            - /nginx-ingress-controller
        {{- if .Values.controller.extraContainers }}
          {{ toYaml .Values.controller.extraContainers | nindent 8 }}
        {{- end }}
      {{- if .Values.controller.opentelemetry.enabled }}
      initContainers:
        - name: opentelemetry
          image: {{ .Values.controller.opentelemetry.image }}
      {{- end }}
""",
    "charts/ingress-nginx/templates/admission-webhooks/job-patch/job-createSecret.yaml": """\
apiVersion: batch/v1
kind: Job
spec:
  template:
    spec:
      initContainers:
        - name: wait
          image: {{ printf "%s:%s" "busybox" "1.36" | quote }}
      containers:
        - name: create
          {{- with .Values.controller.admissionWebhooks.patch.image }}
          image: "{{- if .repository -}}{{ .repository }}{{ else }}{{ .registry }}/{{ .image }}{{- end -}}:{{ .tag }}{{- if (.digest) -}} @{{.digest}} {{- end -}}"
          {{- end }}
""",
    "charts/ingress-nginx/templates/default-backend-deployment.yaml": """\
{{- if .Values.defaultBackend.enabled -}}
apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      containers:
        - name: default-backend
          {{- with .Values.defaultBackend.image }}
          image: "{{ .registry }}/{{ .image }}:{{ .tag }}"
          {{- end }}
{{- end }}
""",
}


def test_ingress_nginx_like_chart_keeps_digests(tmp_path: Path) -> None:
    # sealos #2051: stripping the digest made pods fail with ImagePullBackOff.
    write_tree(tmp_path, INGRESS_CHART)
    result = discover(tmp_path)
    found = {f.image: f.source for f in result.images}
    assert sorted(found) == [
        "docker.io/fluent/fluent-bit:2.2.0",
        "docker.io/library/busybox:1.36",
        "registry.k8s.io/defaultbackend-amd64:1.5",
        f"registry.k8s.io/ingress-nginx/controller:v1.5.1@{DIGEST}",
        f"registry.k8s.io/ingress-nginx/kube-webhook-certgen:v20220916-gd32f8c343@{CERTGEN_DIGEST}",
        "registry.k8s.io/ingress-nginx/opentelemetry:v20230721-3e2062ee5"
        "@sha256:13bee3f5223883d3ca62fee7309ad02d22ec00ff0d7033e3e9aca7a9f60fd472",
    ]
    # values first (they are walked before the templates), then the template lines
    assert found["docker.io/library/busybox:1.36"] == (
        "charts/ingress-nginx/templates/admission-webhooks/job-patch/job-createSecret.yaml:8: initContainers[].image"
    )
    assert (
        found["docker.io/fluent/fluent-bit:2.2.0"]
        == "charts/ingress-nginx/values.yaml: controller.extraContainers[0].image"
    )


def test_templates_alone_are_evaluated(tmp_path: Path) -> None:
    """The same chart with values the walk cannot see as images: the template rules carry it."""
    write_tree(
        tmp_path,
        {
            "charts/app/Chart.yaml": "name: app\nversion: 1.0.0\nappVersion: v3.1\n",
            "charts/app/values.yaml": """\
hub: quay.io/acme
controllerTag: ""
sidecars:
  - name: proxy
    image: envoyproxy/envoy:v1.28.0
registryPrefix: ghcr.io/acme
cfg:
  repo: ghcr.io/acme/worker
  version: 2.0.0
""",
            "charts/app/templates/deploy.yaml": """\
{{- $tag := .Values.controllerTag | default .Chart.AppVersion -}}
kind: Deployment
spec:
  template:
    spec:
      initContainers:
      - name: migrate
        image: {{ printf "%s/%s:%s" .Values.hub "migrate" $tag }}
      containers:
      - name: controller
        image: '{{ .Values.hub }}/controller:{{ default .Chart.AppVersion .Values.controllerTag }}'
      - name: worker
        image: {{ .Values.cfg.repo }}:{{ .Values.cfg.version | toString | trimPrefix "v" }}
      - image: "{{ $.Values.registryPrefix }}/static:{{ .Chart.Version }}"
        name: static
      {{- range .Values.sidecars }}
      - name: {{ .name }}
        image: {{ .image }}
      {{- end }}
      - name: helper
        image: {{ include "app.helper" . }}
      - name: unset
        image: {{ .Values.notSet.repository }}:{{ .Values.notSet.tag }}
""",
        },
    )
    result = discover(tmp_path)
    assert [f.image for f in result.images] == [
        "docker.io/envoyproxy/envoy:v1.28.0",
        "ghcr.io/acme/static:1.0.0",
        "ghcr.io/acme/worker:2.0.0",
        "quay.io/acme/controller:v3.1",
        "quay.io/acme/migrate:v3.1",
    ]
    joined = "\n".join(result.warnings)
    assert len(result.warnings) == 3, joined
    assert "deploy.yaml:18: containers[].image '{{ .image }}' not evaluated" in joined  # a range element
    assert "deploy.yaml:21: containers[].image" in joined and "'include' is not evaluated" in joined
    assert "deploy.yaml:23: containers[].image" in joined and "renders to ':', not an image" in joined


def test_istio_injection_template_in_configmap_is_not_read(tmp_path: Path) -> None:
    # sealos #1487: `{{ annotation .ObjectMeta ... }}` and `{{ .ProxyImage }}` from istio's
    # sidecar injector ConfigMap were bundled as images.
    write_tree(
        tmp_path,
        {
            "charts/istiod/Chart.yaml": "name: istiod\nversion: 1.14.2\nappVersion: 1.14.2\n",
            "charts/istiod/values.yaml": "global:\n  hub: docker.io/istio\n  tag: 1.14.2\npilot:\n  replicaCount: 1\n",
            "charts/istiod/templates/istiod-injector-configmap.yaml": """\
apiVersion: v1
kind: ConfigMap
data:
  config: |-
    templates:
      sidecar: |
        spec:
          initContainers:
          - name: istio-init
            image: "{{ annotation .ObjectMeta `sidecar.istio.io/proxyImage` .Values.global.proxy_init.image }}"
          containers:
          - name: istio-proxy
            image: "{{ .ProxyImage }}"
""",
            "charts/istiod/templates/deployment.yaml": """\
kind: Deployment
spec:
  template:
    spec:
      containers:
        - name: discovery
          image: "{{ .Values.global.hub }}/pilot:{{ .Values.global.tag }}"
""",
        },
    )
    result = discover(tmp_path)
    assert [f.image for f in result.images] == ["docker.io/istio/pilot:1.14.2"]
    assert result.warnings == ()


def test_vela_cue_template_in_chart_configmap_is_not_read(tmp_path: Path) -> None:
    # sealer #1913, from the chart side: CUE inside a templated ConfigMap.
    write_tree(
        tmp_path,
        {
            "charts/vela-core/Chart.yaml": "name: vela-core\nversion: 1.6.4\nappVersion: 1.6.4\n",
            "charts/vela-core/values.yaml": "image:\n  repository: oamdev/vela-core\n  tag: v1.6.4\n",
            "charts/vela-core/templates/defwithtemplate/webservice.yaml": """\
apiVersion: core.oam.dev/v1beta1
kind: ComponentDefinition
metadata:
  name: webservice
  namespace: {{ include "systemDefinitionNamespace" . }}
spec:
  schematic:
    cue:
      template: |
        output: {
          spec: template: spec: {
            containers: [{
              name:  context.name
              image: parameter.image
            }]
          }
        }
        parameter: {
          image: string
        }
""",
        },
    )
    assert [f.image for f in discover_images(tmp_path)] == ["docker.io/oamdev/vela-core:v1.6.4"]


def test_subcharts_get_parent_values_and_global(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "charts/stack/Chart.yaml": """\
name: stack
version: 1.0.0
dependencies:
  - name: db
    alias: database
    version: 1.x
""",
            "charts/stack/values.yaml": 'global:\n  imageRegistry: mirror.local:5000\ndatabase:\n  image:\n    tag: "16.1"\n',
            "charts/stack/charts/db/Chart.yaml": 'name: db\nversion: 1.2.0\nappVersion: "15.0"\n',
            "charts/stack/charts/db/values.yaml": "image:\n  registry: docker.io\n  repository: bitnami/postgresql\n",
            "charts/stack/charts/db/templates/sts.yaml": """\
kind: StatefulSet
spec:
  template:
    spec:
      containers:
      - name: db
        image: {{ .Values.global.imageRegistry }}/{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
""",
            "charts/stack/charts/cache-1.0.0.tgz": b"packed",
        },
    )
    result = discover(tmp_path)
    assert [f.image for f in result.images] == ["mirror.local:5000/bitnami/postgresql:16.1"]
    assert any("cache-1.0.0.tgz: packaged subchart not inspected" in w for w in result.warnings)


def test_charts_dir_ignores_loose_values_files_and_finds_nested_charts(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "charts/prod.values.yaml": "image: sealos.hub:5000/library/redis\ntag: 4.0.4\n",
            "charts/group/one/Chart.yaml": 'name: one\nversion: 0.1.0\nappVersion: "2"\n',
            "charts/group/one/values.yaml": "image:\n  repository: acme/one\n",
        },
    )
    assert [f.image for f in discover_images(tmp_path)] == ["docker.io/acme/one:2"]


def test_app_chart_under_application_apps(tmp_path: Path) -> None:
    files = {k.replace("charts/web/", "application/apps/web/"): v for k, v in NGINX_CHART.items()}
    write_tree(tmp_path, files)
    found = discover_images(tmp_path)
    assert {(f.app_name, f.image) for f in found} == {
        ("web", "docker.io/library/busybox:latest"),
        ("web", "docker.io/library/nginx:1.25.3"),
        ("web", "docker.io/library/not-an-image-annotation:latest"),
    }


def test_values_template_string_is_a_warning(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "charts/x/Chart.yaml": "name: x\nversion: 1.0.0\n",
            "charts/x/values.yaml": 'image: "{{ .Values.global.hub }}/x:1"\n',
        },
    )
    result = discover(tmp_path)
    assert result.images == ()
    assert result.warnings == (
        "charts/x/values.yaml: image: template '{{ .Values.global.hub }}/x:1' in values is not evaluated",
    )


def test_invalid_literal_in_values_is_an_error(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "charts/x/Chart.yaml": "name: x\nversion: 1.0.0\n",
            "charts/x/values.yaml": "image:\n  repository: Bad Repo\n",
        },
    )
    with pytest.raises(
        ImageDiscoveryError, match=r"^charts/x/values\.yaml: invalid image reference 'Bad Repo'"
    ):
        discover_images(tmp_path)


def test_broken_values_yaml_names_file_and_line(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"charts/x/Chart.yaml": "name: x\nversion: 1.0.0\n", "charts/x/values.yaml": "a: 1\nb: [\nc: 2\n"},
    )
    with pytest.raises(ImageDiscoveryError) as info:
        discover_images(tmp_path)
    assert info.value.path == "charts/x/values.yaml"
    assert info.value.line is not None
    assert str(info.value).startswith(f"charts/x/values.yaml:{info.value.line}:")
