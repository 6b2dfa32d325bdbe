"""The stand-in control plane's ConfigMaps (core.py; `api`: conftest.py): get, create and replace with the Kubernetes
API's answers (Status objects, 201/404/409/400/422, resourceVersion, a bearer token checked
when one is sent), and the stand-in kubectls' `get configmap`, `create -f`, `replace -f`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.standins import core
from tests.standins.core import ApiClient, ApiError


def configmap(name: str = "sealer-clusterfile", **data: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": "kube-system"}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {"Clusterfile": "a"}}


def test_create_get_replace_as_the_api_server(api: ApiClient) -> None:
    made = api.create_configmap(configmap())
    assert made["data"] == {"Clusterfile": "a"} and made["metadata"]["namespace"] == "kube-system"
    with pytest.raises(ApiError, match=r'409: configmaps "sealer-clusterfile" already exists'):
        api.create_configmap(configmap())
    replaced = api.replace_configmap(configmap(Clusterfile="b"))
    assert replaced["metadata"]["uid"] == made["metadata"]["uid"]
    assert int(replaced["metadata"]["resourceVersion"]) > int(made["metadata"]["resourceVersion"])
    assert api.get_configmap("kube-system", "sealer-clusterfile")["data"] == {"Clusterfile": "b"}
    stale = configmap(Clusterfile="c")
    stale["metadata"]["resourceVersion"] = made["metadata"]["resourceVersion"]
    with pytest.raises(ApiError, match=r"409: Operation cannot be fulfilled .* has been modified"):
        api.replace_configmap(stale)
    with pytest.raises(ApiError, match=r'404: configmaps "other" not found'):
        api.replace_configmap(configmap("other"))
    with pytest.raises(ApiError, match=r'404: configmaps "other" not found'):
        api.get_configmap("kube-system", "other")
    with pytest.raises(ApiError, match=r"422: .*data\[bad key\]: Invalid value"):
        api.create_configmap(configmap("x", **{"bad key": "v"}))
    with pytest.raises(ApiError, match=r"422: .*Too long"):
        api.create_configmap(configmap("x", big="x" * ((1 << 20) + 1)))


def test_a_bearer_token_must_be_a_live_one(api: ApiClient, tmp_path: Path) -> None:
    api.create_configmap(configmap())
    token = api.create_token("admin", value="admin-token")

    def get(header: str) -> tuple[int, dict[str, Any]]:
        url = api.base + "/api/v1/namespaces/kube-system/configmaps/sealer-clusterfile"
        request = urllib.request.Request(url, headers={"Authorization": header})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    assert get(f"Bearer {token}")[0] == 200
    status, body = get("Bearer another")
    assert (status, body["kind"], body["reason"], body["code"]) == (401, "Status", "Unauthorized", 401)
    assert get("Basic YWRtaW46YWRtaW4=")[0] == 401


def test_kubectl_create_replace_and_get_say_what_kubectl_says(
    api: ApiClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cm.json"
    path.write_text(json.dumps(configmap()))

    def kubectl(verb: str, *args: str, output: str | None = None) -> int:
        return core.kubectl_configmaps(
            api, verb, list(args), namespace="kube-system", filename=str(path), output=output
        )

    assert core.is_configmap_command("create", []) and core.is_configmap_command("get", ["cm", "x"])
    assert not core.is_configmap_command("get", ["nodes"])
    with pytest.raises(SystemExit):
        kubectl("replace")
    assert 'error when replacing "' in capsys.readouterr().err
    assert kubectl("create") == 0 and capsys.readouterr().out == "configmap/sealer-clusterfile created\n"
    with pytest.raises(SystemExit):
        kubectl("create")
    assert "Error from server (AlreadyExists)" in capsys.readouterr().err
    assert kubectl("replace") == 0 and capsys.readouterr().out == "configmap/sealer-clusterfile replaced\n"
    assert kubectl("get", "configmap", "sealer-clusterfile", output="json") == 0
    assert json.loads(capsys.readouterr().out)["data"] == {"Clusterfile": "a"}
    with pytest.raises(SystemExit):
        kubectl("get", "configmap", "missing")
    assert 'Error from server (NotFound): configmaps "missing" not found' in capsys.readouterr().err
