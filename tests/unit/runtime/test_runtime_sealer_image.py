"""An image of sealer's own contract (tests/sealer_basefs: init-kube.sh, containerd.sh,
etc/kubeadm.yml.tmpl) planned by the kubernetes runtime in its sealer mode: detection, sealer's
env knobs, the golden dry-run plan (host scripts, stage, kubeadm config, leave, clean) and the
kubeadm merge as sealer's runtime does it; this project's own basefs image keeps its plan."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.errors import ClusterError, InvalidEnv
from builder.image.descriptor import Platform
from builder.image.digest import Digest
from builder.runtime.facts import Facts
from builder.runtime.phases import CleanScripts, HostScripts, ImageInfo, PlanState, RuntimeInit
from builder.runtime.plugins import base as phases
from builder.runtime.plugins.kubeadm_endpoint import endpoint_block_command
from builder.runtime.plugins.kubernetes import KubernetesRuntime
from builder.runtime.plugins.sealer_image import check_sealer_image, container_runtime, is_sealer_image
from tests.unit.runtime._plugin_golden import INSTALL_PHASES, PluginGolden, R

CONTEXT = Path(__file__).resolve().parents[2] / "sealer_basefs"
TEMPLATE = (CONTEXT / "etc" / "kubeadm.yml.tmpl").read_text()
FILES = {
    "etc/kubeadm.yml.tmpl": TEMPLATE,
    "scripts/init-kube.sh": "",
    "scripts/containerd.sh": "",
    "scripts/uninstall-containerd.sh": "",
}
IMAGE = ImageInfo(
    name="sealer.test/sealer-basefs:v1.30.14",
    digest=Digest("sha256", "cd" * 32),
    platform=Platform("linux", "amd64"),
    files=FILES,
    container_runtime_label="containerd",
)
GOLDEN = PluginGolden(KubernetesRuntime, IMAGE)
ENV = {"PodCIDR": "10.244.0.0/16", "SvcCIDR": "10.97.0.0/16", "CertSANs": "api.example.com,10.0.0.100"}
DATA = "/var/lib/sealer/data/c1"


def planned(c: Any, phases: tuple[Any, ...], targets: tuple[str, ...], image: ImageInfo = IMAGE) -> list[Any]:
    s = PlanState(image=image, plugin=KubernetesRuntime(), targets=targets)
    return [st for p in phases for st in p.plan(c, Facts(), s)]


def test_detected_by_its_files_and_not_this_projects_basefs() -> None:
    assert is_sealer_image(FILES)
    assert is_sealer_image({"etc/kubeadm.yml": "", "scripts/init-kube.sh": ""})
    assert not is_sealer_image({"etc/kubeadm.yaml": "", "statics/audit-policy.yml": ""})
    assert not is_sealer_image({"etc/kubeadm.yml.tmpl": ""})  # no init-kube.sh: not sealer's runtime
    assert container_runtime(FILES, "docker") == "docker"
    assert container_runtime(FILES, None) == "containerd"  # the one runtime script it ships
    assert container_runtime({}, None) == "docker"  # sealer's default


def test_an_image_without_the_script_of_its_container_runtime_is_refused() -> None:
    check_sealer_image(IMAGE.name, FILES, "containerd")
    check_sealer_image(IMAGE.name, {"etc/kubeadm.yaml": ""}, "docker")  # not a sealer image: not ours to say
    with pytest.raises(ClusterError) as err:
        check_sealer_image(IMAGE.name, FILES, "docker")
    assert err.value.message == (
        "sealer.test/sealer-basefs:v1.30.14 follows sealer's image contract (scripts/init-kube.sh) but has no "
        "scripts/docker.sh for its container runtime docker (label cluster.alpha.sealer.io/container-runtime-type=docker)"
    )
    with pytest.raises(ClusterError, match="container runtime 'cri-o'"):
        check_sealer_image(IMAGE.name, FILES, "cri-o")


def test_sealers_env_knobs_go_over_the_users() -> None:
    c = replace(GOLDEN.cluster("10.0.0.1"), env={**ENV, "RegistryURL": "mine:1", "DNSSvcIP": "1.2.3.4"})
    s = PlanState(image=IMAGE, plugin=KubernetesRuntime(), targets=c.ips)
    env = s.host_env(c, c.master0)
    assert {k: env[k] for k in ("RegistryURL", "RegistryDomain", "RegistryPort", "LocalRegistryURL")} == {
        "RegistryURL": "sea.hub:5000",
        "RegistryDomain": "sea.hub",
        "RegistryPort": "5000",
        "LocalRegistryURL": "sea.hub:5000",
    }
    assert (env["KubeSvcIP"], env["DNSSvcIP"], env["ContainerRuntime"]) == (
        "10.97.0.1",
        "10.97.0.10",
        "containerd",
    )
    assert env["PodCIDR"] == "10.244.0.0/16"
    # this project's own images get none of them
    own = replace(IMAGE, files={"etc/kubeadm.yaml": ""})
    theirs = PlanState(image=own, plugin=KubernetesRuntime(), targets=c.ips).host_env(c, c.master0)
    assert (theirs["RegistryURL"], theirs["DNSSvcIP"]) == ("mine:1", "1.2.3.4")
    assert "KubeSvcIP" not in theirs and "RegistryDomain" not in theirs
    bad = replace(c, env={"SvcCIDR": "10.96.0.0/30"})
    with pytest.raises(InvalidEnv, match=r"SvcCIDR=10\.96\.0\.0/30"):
        s.host_env(bad, bad.master0)


def test_golden_plan_of_a_sealer_image() -> None:
    c = replace(GOLDEN.cluster("10.0.0.1", "10.0.0.2"), env=ENV)
    rows = [(st.host, st.id, st.command) for st in planned(c, (HostScripts(), *INSTALL_PHASES), c.ips)]
    cri = (
        f"if [ ! -f {R}/scripts/containerd.sh ]; then echo 'this sealer image has no scripts/containerd.sh "
        "for its container runtime containerd (label cluster.alpha.sealer.io/container-runtime-type)' >&2; "
        f"exit 1; fi; printf '%s\\n' containerd > {DATA}/sealer-container-runtime && bash {R}/scripts/containerd.sh"
    )
    init_kube = f"cd {R}/scripts && export RegistryURL=sea.hub:5000 && bash init-kube.sh"
    binaries = f"install -m 0755 {R}/bin/kubeadm {R}/bin/kubelet {R}/bin/kubectl /usr/local/bin/"
    files = f"test -f {R}/scripts/init-kube.sh && test -x {R}/bin/kubeadm && test -x {R}/bin/kubelet && test -x {R}/bin/kubectl"
    ids = [(h, i) for h, i, _ in rows]
    assert rows[:2] == [("10.0.0.1", "containerd.sh", cri), ("10.0.0.2", "containerd.sh", cri)]
    assert ("10.0.0.1", "kubeadm-preflight-files", files) in rows
    assert ("10.0.0.2", "kubeadm-preflight-files", files) in rows
    # master0: init-kube.sh as sealer runs it, the binaries where this runtime calls them; no
    # image tarball import (the registry serves registry/), no unit of ours (init-kube.sh's)
    m0 = [r for r in rows[2:] if r[0] == "10.0.0.1" and not r[1].startswith("kubeadm-preflight")]
    assert m0[:3] == [
        ("10.0.0.1", "sealer-apiserver-alias", endpoint_block_command("10.0.0.1")),
        ("10.0.0.1", "sealer-init-kube", init_kube),
        ("10.0.0.1", "kubeadm-binaries", binaries),
    ]
    # the template sets kubernetesVersion: no version step; then the join credentials
    assert [i for _, i, _ in m0[3:6]] == ["kubeadm-config", "kubeadm-init", "kubeadm-admin-kubeconfig"]
    assert ("10.0.0.2", "sealer-init-kube", init_kube) in rows
    # the stable name as sealer's runtime sets it: the worker through its local load balancer
    assert ("10.0.0.2", "sealer-apiserver-alias", endpoint_block_command("127.0.0.1")) in rows
    # a joining master: master0's API server until its join, then its own (endpoint-self)
    c2 = GOLDEN.cluster("10.0.0.1,10.0.0.3")
    joined = [(st.id, st.command) for st in planned(c2, INSTALL_PHASES, c2.ips) if st.host == "10.0.0.3"]
    ids3 = [i for i, _ in joined]
    assert ("sealer-apiserver-alias", endpoint_block_command("10.0.0.1")) in joined
    assert (
        ids3.index("sealer-apiserver-alias")
        < ids3.index("kubeadm-join")
        < ids3.index("kubeadm-endpoint-self")
    )
    assert ("10.0.0.2", "kubelet-unit") not in ids and ("10.0.0.1", "kubeadm-images") not in ids
    assert not [i for _, i in ids if i in ("init.sh", "init-registry.sh")]


def kubeadm_config(c: Any) -> dict[str, dict[str, Any]]:
    (step,) = [st for st in planned(c, (RuntimeInit(),), c.ips) if st.id == "kubeadm-config"]
    body = step.command.split("\n", 1)[1].rsplit("\n", 1)[0]
    return {d["kind"]: d for d in yaml.safe_load_all(body)}


def test_kubeadm_yml_rendered_and_merged_as_sealer_does() -> None:
    clusterfile = {
        "apiVersion": "kubeadm.k8s.io/v1beta3",
        "kind": "ClusterConfiguration",
        "apiServer": {"certSANs": ["from.clusterfile"]},
        "networking": {"podSubnet": "172.30.0.0/16"},
    }
    c = replace(GOLDEN.cluster("10.0.0.1,10.0.0.2,10.0.0.3", documents=(clusterfile,)), env=ENV)
    docs = kubeadm_config(c)
    conf, init, kubelet = (
        docs["ClusterConfiguration"],
        docs["InitConfiguration"],
        docs["KubeletConfiguration"],
    )
    # v1beta2 of the image in the Clusterfile's version, v1beta2-only fields gone
    assert conf["apiVersion"] == init["apiVersion"] == "kubeadm.k8s.io/v1beta3"
    assert "type" not in conf["dns"]
    # the template rendered with master0's env; the Clusterfile wins over the image
    assert conf["networking"] == {
        "dnsDomain": "cluster.local",
        "podSubnet": "172.30.0.0/16",
        "serviceSubnet": "10.97.0.0/16",
    }
    assert kubelet["clusterDNS"] == ["10.97.0.10"]  # DNSSvcIP, sealer's tenth address of SvcCIDR
    assert (
        conf["imageRepository"] == "sea.hub:5000" and conf["dns"]["imageRepository"] == "sea.hub:5000/coredns"
    )
    # certSANs: the Clusterfile's, this runtime's, the image's and CertSANs', once each
    assert conf["apiServer"]["certSANs"] == [
        "from.clusterfile", "apiserver.cluster.local", "10.0.0.1", "10.0.0.2", "10.0.0.3", "127.0.0.1",
        "sealer-basefs.test", "api.example.com", "10.0.0.100",
    ]  # fmt: skip
    # sealer's etcd-servers (every master) over the image's placeholder; master0 advertises itself
    assert conf["apiServer"]["extraArgs"]["etcd-servers"] == (
        "https://10.0.0.1:2379,https://10.0.0.2:2379,https://10.0.0.3:2379"
    )
    assert init["localAPIEndpoint"]["advertiseAddress"] == "10.0.0.1"
    assert init["nodeRegistration"]["criSocket"] == "unix:///run/containerd/containerd.sock"


def test_an_old_kubernetes_keeps_v1beta2_and_its_maps() -> None:
    files = {**FILES, "etc/kubeadm.yml.tmpl": TEMPLATE.replace("v1.30.14", "v1.22.15")}
    c = GOLDEN.cluster("10.0.0.1")
    s = PlanState(image=replace(IMAGE, files=files), plugin=KubernetesRuntime(), targets=c.ips)
    (step,) = [st for st in RuntimeInit().plan(c, Facts(), s) if st.id == "kubeadm-config"]
    docs = {d["kind"]: d for d in yaml.safe_load_all(step.command.split("\n", 1)[1].rsplit("\n", 1)[0])}
    assert docs["ClusterConfiguration"]["apiVersion"] == "kubeadm.k8s.io/v1beta2"
    assert docs["InitConfiguration"]["nodeRegistration"]["kubeletExtraArgs"] == {"node-ip": "10.0.0.1"}


def test_leave_and_clean_undo_init_kube_and_the_container_runtime() -> None:
    c = GOLDEN.cluster("10.0.0.1", "10.0.0.2")
    # delete has no image at hand: what runs is decided on the host, the same for any image
    own = replace(IMAGE, files={"etc/kubeadm.yaml": ""})
    (clean,) = [st for st in planned(c, (CleanScripts(),), ("10.0.0.2",)) if st.id == "clean.sh"]
    (theirs,) = [st for st in planned(c, (CleanScripts(),), ("10.0.0.2",), own) if st.id == "clean.sh"]
    assert clean.command == theirs.command
    # decided on the host: the container runtime recorded beside the rootfs, its uninstall script
    assert (
        f"elif [ -f {DATA}/sealer-container-runtime ]; then cri=$(cat {DATA}/sealer-container-runtime)"
        in (clean.command)
    )
    assert (
        "rm -f /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl /usr/bin/kubelet-pre-start.sh "
        f"/etc/sysctl.d/k8s.conf; ( {endpoint_block_command(None)} ); "
        f'u={R}/scripts/uninstall-$cri.sh; if [ -f "$u" ]; then bash "$u"'
    ) in clean.command
    assert f"elif [ -f {R}/scripts/clean.sh ]; then cd {R} && sh scripts/clean.sh" in clean.command
    scripts = [st.id for st in planned(c, (HostScripts(),), c.ips, own)]
    assert scripts == ["init.sh", "init.sh"]


def test_sealer_cert_reads_the_images_defaults_too() -> None:
    """`sealer cert` on such a cluster writes the API server's configuration as init did: the
    image's certSANs and the CertSANs env stay in the certificate."""
    c = replace(GOLDEN.cluster("10.0.0.1"), env=ENV)
    s = PlanState(image=IMAGE, plugin=KubernetesRuntime(), targets=c.ips)
    commands = [st.command for st in KubernetesRuntime().commands(phases.CERT, s.host_context(c, c.master0))]
    config = next(cmd for cmd in commands if "kind: ClusterConfiguration" in cmd)
    assert "- sealer-basefs.test" in config and "- api.example.com" in config
    assert "imageRepository: sea.hub:5000" in config


def test_upgrade_installs_where_init_kube_did_and_imports_no_tarball() -> None:
    c = GOLDEN.cluster("10.0.0.1")
    s = PlanState(image=IMAGE, plugin=KubernetesRuntime(), targets=c.ips)
    steps = {
        st.id: st.command for st in KubernetesRuntime().commands(phases.UPGRADE, s.host_context(c, c.master0))
    }
    assert "kubeadm-images" not in steps
    assert steps["kubelet-binaries"] == (
        f"install -m 0755 {R}/bin/kubelet {R}/bin/kubectl /usr/local/bin/"
        f" && install -m 0755 {R}/bin/kubelet {R}/bin/kubectl /usr/bin/"
    )
    assert steps["kubeadm-binary"].endswith(f"install -m 0755 {R}/bin/kubeadm /usr/bin/")
