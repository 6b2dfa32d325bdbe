"""`sealer run --dry-run` and `sealer delete --dry-run` print the whole plan for every runtime,
from the basefs images built with the stand-in upstream files (no host is contacted)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.store.layout import Store
from scripts.basefs import build_basefs
from tests.conftest import SealerRunner
from tests.standins import make_bin_dir

RUNTIMES = ("kubernetes", "k3s", "k0s")
# What each runtime's plan must show: its init command and how joins get their credentials.
INIT = {
    "kubernetes": "kubeadm init --config /etc/kubernetes/kubeadm.yaml --upload-certs",
    "k3s": "sh /var/lib/sealer/data/my-cluster/rootfs/scripts/k3s-install.sh server --cluster-init",
    "k0s": "k0s install controller -c /etc/k0s/k0s.yaml",
}
# The audit policy the basefs images ship (statics/audit-policy.yml): copied where each API
# server reads it, and named by its flag (read from the built image, so planning saw the file).
R = "/var/lib/sealer/data/my-cluster/rootfs"
AUDIT = {
    "kubernetes": (
        f"install -D -m 0600 {R}/statics/audit-policy.yml /etc/kubernetes/audit-policy.yml",
        "    audit-policy-file: /etc/kubernetes/audit-policy.yml\n",
    ),
    "k3s": (
        f"install -D -m 0600 {R}/statics/audit-policy.yml /var/lib/rancher/k3s/server/audit.yaml",
        "--kube-apiserver-arg audit-policy-file=/var/lib/rancher/k3s/server/audit.yaml",
    ),
    "k0s": (
        f"install -m 0600 {R}/statics/audit-policy.yml /etc/k0s/audit-policy.yml",
        "      audit-policy-file: /etc/k0s/audit-policy.yml\n",
    ),
}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    base = tmp_path_factory.mktemp("dry-run")
    store = Store.open(base / "root")
    names = {
        rt: build_basefs(rt, make_bin_dir(rt, base / f"bin-{rt}"), store, f"dry.test/{rt}:v1")
        for rt in RUNTIMES
    }
    store.close()
    yield base / "root", names


@pytest.fixture
def root(images: tuple[Path, dict[str, str]]) -> Path:
    """The store the `sealer` fixture runs against: the module's, with the three images."""
    return images[0]


# The files through which each runtime's container runtime pulls from the cluster registry.
MIRRORS = {
    "kubernetes": (
        "/etc/containerd/certs.d/docker.io/hosts.toml",
        "/etc/containerd/certs.d/sea.hub:5000/hosts.toml",
    ),
    "k3s": ("/etc/containerd/certs.d/docker.io/hosts.toml", "/etc/rancher/k3s/registries.yaml"),
    "k0s": ("/etc/containerd/certs.d/docker.io/hosts.toml", "/etc/k0s/containerd.d/sealer-registry.toml"),
}


# How each runtime keeps the workers off master0 alone (docs/runtimes.md, "The HA API endpoint").
HA_ENDPOINT = {
    "kubernetes": (  # the node's haproxy in front of both masters, before it joins through it
        "== api-endpoint:",
        "    server master-10.0.0.1 10.0.0.1:6443\n    server master-10.0.0.2 10.0.0.2:6443\n",
    ),
    "k3s": ("K3S_URL=https://apiserver.cluster.local:6443",),  # the agent's own balancer learns the rest
    "k0s": ("    nodeLocalLoadBalancing:\n      enabled: true\n      type: EnvoyProxy\n",),
}


@pytest.fixture
def cli(sealer: SealerRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SealerRunner:
    monkeypatch.setenv("SEALER_STATE_HOME", str(tmp_path / "state"))
    return sealer


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_dry_run_prints_every_phase_with_placeholders(
    runtime: str, cli: SealerRunner, images: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    image = images[1][runtime]
    result = cli(
        "run", image, "--masters", "10.0.0.1,10.0.0.2", "--nodes", "10.0.0.3", "--dry-run", "--verbose"
    )
    out = result.stdout
    assert out.startswith(f"# run: cluster my-cluster, image {image} (sha256:")
    assert f"runtime {runtime}\n" in out.splitlines()[0] + "\n"
    assert "# warning: 2 masters: etcd needs a majority" in out
    for phase in (
        "check",
        "deliver",
        "host-scripts",
        "registry-trust",
        "runtime-preflight",
        "runtime-init",
        "join-masters",
        "join-nodes",
        "kubeconfig",
        "save-clusterfile",
    ):
        assert f"== {phase}:" in out, phase
    save = out.split("== save-clusterfile:")[1]
    assert f"{SAVE_KUBECTL[runtime]} -n kube-system get configmap sealer-clusterfile" in save
    assert "# stdin: the ConfigMap as JSON" in save
    assert INIT[runtime] in out
    assert all(part in out for part in AUDIT[runtime]), AUDIT[runtime]
    assert all(f"write {path} (0644):" in out for path in MIRRORS[runtime]), MIRRORS[runtime]
    assert (
        "write /etc/containerd/certs.d/sea.hub:5000/ca.crt and /etc/docker/certs.d/sea.hub:5000/ca.crt" in out
    )
    assert all(part in out for part in HA_ENDPOINT[runtime]), HA_ENDPOINT[runtime]
    assert "{{output:" in out  # join credentials stay placeholders
    assert "kubeconfig (0600)" in out  # the saved kubeconfig is part of save-state
    assert not (tmp_path / "state").exists()  # a dry-run writes nothing


def test_the_none_runtime_saves_no_clusterfile_in_the_cluster_and_says_so(
    cli: SealerRunner, images: tuple[Path, dict[str, str]]
) -> None:
    out = cli("run", images[1]["k3s"], "--masters", "10.0.0.1", "--runtime", "none", "--dry-run").stdout
    assert "== save-clusterfile:" not in out
    assert (
        "# save-clusterfile: runtime none has no API server: the cluster is saved on this machine only"
        in out.splitlines()
    )


def test_unknown_runtime_is_one_line_listing_the_known(
    cli: SealerRunner, images: tuple[Path, dict[str, str]]
) -> None:
    result = cli("run", images[1]["k3s"], "--masters", "10.0.0.1", "--runtime", "k8s", "--dry-run", expect=1)
    assert result.stderr.splitlines()[0] == (
        "error: unknown runtime 'k8s' (--runtime): known runtimes are kubernetes, k3s, k0s, none"
    )


def test_short_dry_run_is_one_line_per_step_and_host(
    cli: SealerRunner, images: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """Without --verbose a dry-run is the k0sctl-style plan: phase lines, `HOST (ROLE): step`
    lines, the bytes each delivery sends and a total; the shell stays behind --verbose."""
    image = images[1]["k3s"]
    out = cli("run", image, "--masters", "10.0.0.1", "--nodes", "10.0.0.2,10.0.0.3", "--dry-run").stdout
    lines = out.splitlines()
    assert lines[0].startswith(f"# run: cluster my-cluster, image {image} (sha256:")
    body = lines[2 : lines.index("== save-state: Save the cluster (this machine)")]
    step = re.compile(r"^  10\.0\.0\.[123] \((master0|node)\): \S.*$")
    assert all(line.startswith("== ") or step.match(line) for line in body[:-1]), body
    assert re.fullmatch(
        r"# \d+ steps on 3 hosts, up to \S+ \S+ to send; --verbose shows each step's commands", body[-1]
    )
    delivered = [line for line in body if "to send)" in line]
    assert len(delivered) == 3 and all(
        re.search(r"\(up to [\d.]+ [kMG]?B to send\)$", line) for line in delivered
    )
    assert INIT["k3s"] not in out and "$ " not in out  # the commands are --verbose's
    verbose = cli(
        "run", image, "--masters", "10.0.0.1", "--nodes", "10.0.0.2,10.0.0.3", "--dry-run", "--verbose"
    )
    assert INIT["k3s"] in verbose.stdout and len(verbose.stdout) > 3 * len(out)
    assert not (tmp_path / "state").exists()


def _saved_cluster(image: str, runtime: str, state: Path) -> None:
    """A finished cluster of 3 masters and a worker in the state home, as `sealer run` leaves it."""
    from builder.image.digest import Digest
    from builder.runtime.clusterfile import cluster_from_flags
    from builder.runtime.state import ClusterState, SavedMeta

    c = cluster_from_flags(image, "10.0.0.1,10.0.0.2,10.0.0.3", "10.0.0.4", name="my-cluster")
    meta = SavedMeta(image, Digest("sha256", "00" * 32), "linux/amd64", runtime, complete=True)
    ClusterState("my-cluster", state).save(c, meta)


# The admin kubectl that saves the cluster in the cluster (save-clusterfile), on master0.
SAVE_KUBECTL = {
    "kubernetes": "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf",
    "k3s": "/usr/local/bin/k3s kubectl",
    "k0s": "/usr/local/bin/k0s kubectl",
}

# What each runtime's cert plan runs on every master (sealer cert --alt-names).
CERT = {
    "kubernetes": "kubeadm init phase certs apiserver --config /etc/kubernetes/kubeadm-cert.yaml",
    "k3s": "cat > /etc/rancher/k3s/config.yaml.d/90-sealer-cert.yaml.tmp",
    "k0s": "/usr/local/bin/k0s stop && /usr/local/bin/k0s start",
}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_cert_dry_run_plans_each_master_in_turn_and_changes_nothing(
    runtime: str, cli: SealerRunner, images: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    image = images[1][runtime]
    _saved_cluster(image, runtime, tmp_path / "state")
    before = sorted((p.name, p.read_bytes()) for p in (tmp_path / "state" / "my-cluster").iterdir())
    out = cli("cert", "--alt-names", "api.example.com,10.0.0.100", "--dry-run").stdout
    lines = out.splitlines()
    assert lines[0].startswith(f"# cert: cluster my-cluster, image {image} (sha256:")
    assert lines[0].endswith(f"runtime {runtime}")
    assert "== cert: API server certificates with the saved SANs, one master at a time" in lines
    save = lines.index(
        "== save-clusterfile: Save the cluster in the cluster (ConfigMap kube-system/sealer-clusterfile)"
    )
    hosts = [ln.split(" (")[0].strip() for ln in lines[:save] if ln.startswith("  10.0.0.")]
    cert_hosts = hosts[hosts.index("10.0.0.1", 3) :]  # after the check phase's lines
    assert cert_hosts == sorted(cert_hosts) and set(cert_hosts) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
    assert lines[save + 1].startswith("  10.0.0.1 (master0): save the Clusterfile (no secrets)")
    assert lines[-1].endswith("state.json (cert_sans: api.example.com, 10.0.0.100)")
    verbose = cli("cert", "--alt-names", "api.example.com,10.0.0.100", "--dry-run", "--verbose").stdout
    assert CERT[runtime] in verbose and "10.0.0.4" not in verbose.split("== cert:")[1]
    assert "api.example.com" in verbose.split("== cert:")[1]
    for flag in ("--renew", "--check-expiration"):
        assert "== cert-" in cli("cert", flag, "--dry-run").stdout
    after = sorted((p.name, p.read_bytes()) for p in (tmp_path / "state" / "my-cluster").iterdir())
    assert after == before  # a dry-run writes nothing


@pytest.mark.parametrize("bad", ["bad name", "a,,b", "10.0.0.300", "under_score.example.com"])
def test_cert_alt_names_neither_ip_nor_dns_name_is_one_line_exit_2(
    bad: str, cli: SealerRunner, images: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    _saved_cluster(images[1]["k3s"], "k3s", tmp_path / "state")
    result = cli("cert", "--alt-names", bad, expect=2)
    assert result.stderr.splitlines()[0].startswith("error: --alt-names: ")
    assert "is neither an IP address nor a DNS name" in result.stderr.splitlines()[0]


def test_cert_of_a_cluster_not_saved_is_one_line(cli: SealerRunner) -> None:
    result = cli("cert", "--alt-names", "api.example.com", "--cluster", "nosuch", expect=1)
    assert result.stderr.splitlines()[0].startswith("error: ")
    assert "nosuch" in result.stderr.splitlines()[0]
    assert cli("cert", "--renew", "--check-expiration", expect=2).stderr.startswith(
        "error: give one of --alt-names, --renew, --check-expiration"
    )
