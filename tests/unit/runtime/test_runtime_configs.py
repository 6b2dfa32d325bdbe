"""sealer's Config documents: read strictly from a Clusterfile (one-line errors at the line) and
the file transformations (overwrite, merge of every document, value/toJson/toBase64/toSecret)."""

from __future__ import annotations

import base64
import json
import re

import pytest
import yaml

from builder.errors import ClusterfileError
from builder.runtime.clusterfile import parse_clusterfile
from builder.runtime.clusterfile_configs import configs_of_documents
from builder.runtime.configs import ConfigDataError, ConfigFile, apply_config

CLUSTER = """\
apiVersion: sealer.io/v2
kind: Cluster
metadata: {name: c1}
spec:
  image: example.test/k:v1
  hosts:
  - {ips: [10.0.0.1], roles: [master]}
"""
CONFIG = """\
---
apiVersion: sealer.io/v1
kind: Config
metadata:
  name: redis
spec:
  path: etc/redis.yaml
  strategy: merge
  process: value|toJson
  data: |
    auth: {user: root}
"""


def test_a_config_is_kept_and_read_back() -> None:
    cluster = parse_clusterfile(CLUSTER + CONFIG)
    assert configs_of_documents(cluster.documents) == (
        ConfigFile(
            "redis", "etc/redis.yaml", "auth: {user: root}\n", "merge", ("value", "toJson"), "Clusterfile"
        ),
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("path: etc/redis.yaml", "path: ../../etc/passwd", r"^Clusterfile:14: document 2\.spec\.path: '\.\./\.\./etc/passwd' is not a path inside the rootfs"),
        ("path: etc/redis.yaml", "path: /etc/passwd", r"^Clusterfile:14: document 2\.spec\.path: '/etc/passwd' is not a path inside"),
        ("strategy: merge", "strategy: append", r"^Clusterfile:15: document 2\.spec\.strategy: unknown strategy 'append'$"),
        ("process: value|toJson", "process: value|toYaml", r"^Clusterfile:16: document 2\.spec\.process: unknown processor 'toYaml'$"),
        ("  data: |\n    auth: {user: root}\n", "", r"^Clusterfile:14: document 2\.spec\.data: missing$"),
        ("apiVersion: sealer.io/v1", "apiVersion: sealer.aliyun.com/v1alpha1", r"^Clusterfile:9: document 2\.apiVersion: sealer\.aliyun\.com/v1alpha1 is not a Config version"),
    ],
)  # fmt: skip
def test_config_errors_name_the_line_and_field(old: str, new: str, expected: str) -> None:
    assert old in CONFIG
    with pytest.raises(ClusterfileError) as info:
        parse_clusterfile(CLUSTER + CONFIG.replace(old, new, 1))
    assert re.match(expected, info.value.message), info.value.message


def _config(data: str, strategy: str = "overwrite", process: tuple[str, ...] = ()) -> ConfigFile:
    return ConfigFile("c", "etc/app.yaml", data, strategy, process)


def test_overwrite_replaces_the_file_and_writes_a_missing_one() -> None:
    assert apply_config(_config("a: 2\n"), "a: 1\nb: 1\n") == "a: 2\n"
    assert apply_config(_config("x", strategy="merge"), None) == "x"  # no file: written as given


def test_merge_replaces_the_keys_each_document_has() -> None:
    current = (
        "kind: Deployment\nspec: {replicas: 1, paused: false}\n---\nkind: Service\nspec: {type: ClusterIP}\n"
    )
    data = "spec: {replicas: 3, type: NodePort}\nnew: dropped\n"
    docs = list(yaml.safe_load_all(apply_config(_config(data, "merge"), current)))
    assert docs == [
        {"kind": "Deployment", "spec": {"replicas": 3, "paused": False}},  # a key it lacks stays out (sealer)
        {"kind": "Service", "spec": {"type": "NodePort"}},
    ]


def test_processors() -> None:
    assert json.loads(apply_config(_config("a: [1, 2]\n", process=("toJson",)), None)) == {"a": [1, 2]}
    per_value = yaml.safe_load(apply_config(_config("a: [1, 2]\nb: x\n", process=("value", "toJson")), None))
    assert per_value == {"a": "[1, 2]", "b": '"x"'}
    assert base64.b64decode(apply_config(_config("secret\n", process=("toBase64",)), None)) == b"secret\n"
    encoded = yaml.safe_load(apply_config(_config("u: root\n", process=("value", "toBase64")), None))
    assert encoded == {"u": base64.b64encode(b"root").decode()}


def test_to_secret_fills_the_data_of_every_secret_document() -> None:
    current = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {old: eA==}\n---\nkind: ConfigMap\ndata: {a: b}\n"
    docs = list(
        yaml.safe_load_all(apply_config(_config("password: hunter2\n", process=("toSecret",)), current))
    )
    assert docs[0]["data"] == {"old": "eA==", "password": base64.b64encode(b"hunter2").decode()}
    assert docs[1] == {"kind": "ConfigMap", "data": {"a": "b"}}


def test_merge_of_what_is_not_yaml_is_an_error() -> None:
    with pytest.raises(ConfigDataError, match=r"etc/app\.yaml is not YAML"):
        apply_config(_config("a: 1\n", "merge"), "a: [\n")
    with pytest.raises(ConfigDataError, match="the data is not a YAML mapping"):
        apply_config(_config("- 1\n", "merge"), "a: 1\n")
