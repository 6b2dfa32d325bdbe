"""`sealer cluster import` against the stand-in control plane (tests/standins/core.py) served over
real TLS on loopback with a CA made here (openssl, tests/registry_fixtures.make_ca): the ConfigMap as save-clusterfile leaves it (created
through the stand-in's own API route, as `kubectl create -f` does), read back with the
kubeconfig's CA and bearer token. Every refusal is one line, exit 1, and writes nothing."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.errors import ClusterError
from builder.image.digest import Digest
from builder.runtime import actions, cluster_mirror
from builder.runtime.actions.import_state import import_cluster
from builder.runtime.clusterfile import parse_clusterfile
from builder.runtime.state import JOINED, ClusterState, Journal
from tests.conftest import SealerRunner
from tests.registry_fixtures import make_ca
from tests.standins import core

TOKEN = "admin-0123456789abcdef0123456789abcdef"
DIGEST = Digest("sha256", "cd" * 32)
CLUSTERFILE = """\
apiVersion: sealer.io/v2
kind: Cluster
metadata: {name: imported}
spec:
  image: sealer.test/kubernetes:v1.30.14
  ssh: {user: root, passwd: controller-secret, port: "22"}
  hosts:
  - ips: [10.0.0.1]
    roles: [master]
  - ips: [10.0.0.2, 10.0.0.3]
    roles: [node]
  registry:
    localRegistry: {username: admin, password: reg-secret, ha: false}
"""
SSH_ONLY = """\
apiVersion: sealer.io/v2
kind: Cluster
spec:
  ssh: {user: ops, pk: /home/ops/.ssh/id_ed25519, knownHosts: /home/ops/.ssh/known_hosts}
  hosts:
  - ips: [10.0.0.3]
    ssh: {port: "2222"}
  registry:
    localRegistry: {password: reg-secret}
"""


@dataclass
class Api:
    url: str
    ca_pem: str
    state: core.StateFile
    tmp: Path

    def kubeconfig(self, *, token: str = TOKEN, ca_pem: str | None = None, server: str | None = None) -> Path:
        path = self.tmp / f"kubeconfig-{len(list(self.tmp.glob('kubeconfig-*')))}"
        ca = base64.b64encode((ca_pem or self.ca_pem).encode()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "k", "cluster": {"server": server or self.url, "certificate-authority-data": ca}}
            ],
            "contexts": [{"name": "admin@k", "context": {"cluster": "k", "user": "admin"}}],
            "current-context": "admin@k",
            "users": [{"name": "admin", "user": {"token": token}}],
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def save(self, obj: dict[str, Any]) -> None:
        """What `kubectl create -f` does on master0: POST through the API's route."""
        with self.state.edit() as state:
            status, answer = core._configmaps("POST", "v1/namespaces/kube-system/configmaps", obj, state)
        assert status == 201, answer


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    ca, cert, key = make_ca(tmp_path / "tls")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    state = core.StateFile(tmp_path / "etcd.json")
    with state.edit() as s:
        s.setdefault("tokens", {})[TOKEN] = {"role": "admin", "allows": ["admin"], "expires": None}
    server = core.make_api_server(tmp_path / "etcd.json", "127.0.0.1", 0)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Api(f"https://127.0.0.1:{server.server_address[1]}", ca.read_text(), state, tmp_path)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def saved_configmap(clusterfile: str = CLUSTERFILE) -> dict[str, Any]:
    mirrored = cluster_mirror.MirroredState(
        image="sealer.test/kubernetes:v1.30.14",
        digest=DIGEST,
        platform="linux/amd64",
        runtime="kubernetes",
        kube_version="v1.30.14",
        cert_sans=("api.example.com",),
        cli_env={"ZONE": "a"},
    )
    facts = cluster_mirror.MirrorFacts(("api.example.com",), "-----CA-----\n", "-----SERVER-----\n")
    return json.loads(cluster_mirror.configmap_bytes(parse_clusterfile(clusterfile), mirrored, facts))


def test_import_rebuilds_the_state_with_this_machines_ssh_settings(api: Api, tmp_path: Path) -> None:
    api.save(saved_configmap())
    home = tmp_path / "second"
    ssh_file = tmp_path / "ssh.yaml"
    ssh_file.write_text(SSH_ONLY)
    kubeconfig = api.kubeconfig()
    outcome = import_cluster(kubeconfig, ssh_file=ssh_file, home=home)
    assert outcome.message.startswith(f"cluster imported imported into {home / 'imported'}: 3 host(s)")
    cs = ClusterState("imported", home)
    cluster = cs.load_cluster()
    assert cluster is not None
    assert (cluster.ssh.user, cluster.ssh.key_files, cluster.ssh.password) == (
        "ops",
        ("/home/ops/.ssh/id_ed25519",),
        None,
    )
    assert cluster.host("10.0.0.3").ssh.port == 2222 and cluster.host("10.0.0.2").ssh.port is None
    assert cluster.registry.password == "reg-secret" and not cluster.registry.ha
    meta = cs.load_meta()
    assert meta is not None
    assert (meta.digest, meta.runtime, meta.complete, meta.cert_sans, dict(meta.cli_env)) == (
        DIGEST,
        "kubernetes",
        True,
        ("api.example.com",),
        {"ZONE": "a"},
    )
    journal = Journal(cs.journal_path)
    assert all(journal.done(DIGEST, JOINED, ip, "done") for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"))
    assert cs.kubeconfig_path.read_text() == kubeconfig.read_text()
    assert (cs.dir / "registry" / "ca.crt").read_text() == "-----CA-----\n"
    assert not (cs.dir / "registry" / "ca.key").exists()
    for path in (cs.clusterfile_path, cs.meta_path, cs.kubeconfig_path):
        assert path.stat().st_mode & 0o777 == 0o600
    status = actions.status("imported", home)
    assert [(h["ip"], h["role"], h["joined"]) for h in status["hosts"]] == [
        ("10.0.0.1", "master0", True),
        ("10.0.0.2", "node", True),
        ("10.0.0.3", "node", True),
    ]
    assert [p.name for p in home.iterdir()] == ["imported"]  # no temp dir left


def refused(api: Api, home: Path, match: str, **kw: Any) -> None:
    kubeconfig = kw.pop("kubeconfig", None) or api.kubeconfig()
    before = sorted(p.name for p in home.iterdir()) if home.exists() else []
    with pytest.raises(ClusterError, match=match):
        import_cluster(kubeconfig, home=home, **kw)
    assert (sorted(p.name for p in home.iterdir()) if home.exists() else []) == before


def test_every_refusal_writes_nothing(api: Api, tmp_path: Path) -> None:
    home = tmp_path / "second"
    refused(api, home, r"has no ConfigMap kube-system/sealer-clusterfile")
    not_ours = saved_configmap()
    del not_ours["data"]["Clusterfile"]
    api.save(not_ours)
    refused(api, home, r"data\.Clusterfile is not a Clusterfile: the ConfigMap has no Clusterfile key")
    with api.state.edit() as s:
        s["configmaps"]["kube-system/sealer-clusterfile"]["data"] = saved_configmap()["data"]
    refused(api, home, r"registry user 'admin' needs a password.*")
    refused(api, home, r"401 Unauthorized", kubeconfig=api.kubeconfig(token="admin-wrong"))
    other_ca = make_ca(tmp_path / "other")[0].read_text()
    refused(api, home, r"failed TLS verification", kubeconfig=api.kubeconfig(ca_pem=other_ca))
    refused(
        api,
        home,
        r"cannot reach the API server at https://127\.0\.0\.1:9",
        kubeconfig=api.kubeconfig(server="https://127.0.0.1:9"),
    )
    ssh_file = tmp_path / "ssh.yaml"
    ssh_file.write_text(SSH_ONLY.replace("ssh: {port", "labels: {a: b}\n    ssh: {port"))
    refused(api, home, r"ssh\.yaml:7: spec\.hosts\[0\]\.labels: not an SSH setting", ssh_file=ssh_file)
    ssh_file.write_text(SSH_ONLY)
    refused(
        api, home, r"--cluster other: the cluster at .* is imported", ssh_file=ssh_file, expect_name="other"
    )
    import_cluster(api.kubeconfig(), ssh_file=ssh_file, home=home)
    refused(api, home, r"a cluster named imported is already saved in", ssh_file=ssh_file)


def test_the_cli_says_one_line_and_exits_1(
    api: Api, sealer: SealerRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEALER_STATE_HOME", str(tmp_path / "second"))
    result = sealer("cluster", "import", "--kubeconfig", str(api.kubeconfig()), expect=1)
    # (the stand-in server runs in this process: its request log shares stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("api: ")]
    assert lines[0] == f"error: the cluster at {api.url} has no ConfigMap kube-system/sealer-clusterfile"
    assert "Traceback" not in result.stderr and not (tmp_path / "second").exists()
    api.save(
        saved_configmap(CLUSTERFILE.replace(", password: reg-secret", "").replace("username: admin, ", ""))
    )
    result = sealer("cluster", "import", "--kubeconfig", str(api.kubeconfig()), "-u", "ops", "--port", "2200")
    assert result.stdout.startswith("cluster imported imported into ")
    cluster = ClusterState("imported", tmp_path / "second").load_cluster()
    assert cluster is not None
    assert [(h.ssh.user, h.ssh.port) for h in cluster.hosts] == [("ops", 2200)] * 3
    assert replace(cluster.ssh, user=None, port=None).password is None


def _client_cert(directory: Path) -> tuple[str, str]:
    """A client certificate signed by make_ca's CA in `directory` (what kubeadm's admin.conf holds)."""
    key, csr, crt = directory / "client.key", directory / "client.csr", directory / "client.crt"
    run = partial(subprocess.run, check=True, capture_output=True, timeout=30)
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/O=system:masters/CN=kubernetes-admin",
         "-keyout", str(key), "-out", str(csr)])  # fmt: skip
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(directory / "ca" / "ca.crt"),
         "-CAkey", str(directory / "ca.key"), "-CAcreateserial", "-days", "1", "-out", str(crt)])  # fmt: skip
    return crt.read_text(), key.read_text()


def test_a_client_certificate_authenticates_and_an_exec_plugin_is_refused_by_name(tmp_path: Path) -> None:
    """An API server that requires a client certificate of its CA (as kube-apiserver's
    --client-ca-file): the kubeconfig's certificate and key are presented."""
    ca, cert, key = make_ca(tmp_path / "tls")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    tls.verify_mode = ssl.CERT_REQUIRED
    tls.load_verify_locations(ca)
    server = core.make_api_server(tmp_path / "etcd.json", "127.0.0.1", 0)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        api = Api(
            f"https://127.0.0.1:{server.server_address[1]}",
            ca.read_text(),
            core.StateFile(tmp_path / "etcd.json"),
            tmp_path,
        )
        api.save(
            saved_configmap(
                CLUSTERFILE.replace(", password: reg-secret", "").replace("username: admin, ", "")
            )
        )
        client_crt, client_key = _client_cert(tmp_path / "tls")
        path = api.kubeconfig()
        config = yaml.safe_load(path.read_text())
        config["users"][0]["user"] = {
            "client-certificate-data": base64.b64encode(client_crt.encode()).decode(),
            "client-key-data": base64.b64encode(client_key.encode()).decode(),
        }
        path.write_text(yaml.safe_dump(config))
        outcome = import_cluster(path, home=tmp_path / "second")
        assert outcome.message.startswith("cluster imported imported into ")
        config["users"][0]["user"] = {
            "exec": {"command": "aws", "apiVersion": "client.authentication.k8s.io/v1"}
        }
        path.write_text(yaml.safe_dump(config))
        with pytest.raises(ClusterError, match=r"user 'admin': exec is not supported"):
            import_cluster(path, home=tmp_path / "third")
        assert not (tmp_path / "third").exists()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
