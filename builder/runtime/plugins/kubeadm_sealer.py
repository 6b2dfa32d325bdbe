"""The kubeadm runtime on an image that follows sealer's contract (sealer_image.py): what
differs from this project's own basefs, step by step, as sealer's runtime does it
(pkg/runtime/kubernetes: initKube, initKubeadmConfig; pkg/runtime/kubernetes/kubeadm
NewKubeadmConfig).

    stage       apiserver.cluster.local in /etc/hosts (sealer's runtime sets the alias: such an
                image has no init.sh to); `cd ROOTFS/scripts && RegistryURL=D:P bash init-kube.sh`
                on each host before its init or join (the binaries into /usr/bin, the image's
                kubelet unit, enabled); then
                kubeadm, kubelet and kubectl into /usr/local/bin as well, where every other command
                of this runtime calls them. No image tarball import: the images are in the
                image's registry/, which the cluster registry serves (registry_service.py).
    kubeadm     master0's kubeadm.yaml from the image's etc/kubeadm.yml (its .tmpl rendered with
                master0's env when the image has one, as the delivery renders it there), with the
                Clusterfile's documents over it (kubeadm_config.py: the Clusterfile wins, as
                sealer's mergo merge lets it); then sealer's own fields: certSANs = the image's,
                the Clusterfile's, the CertSANs env's and this runtime's; imageRepository =
                RegistryURL and dns.imageRepository = RegistryURL/coredns where unset; apiVersion
                by kubernetesVersion for a v1beta1/v1beta2 file (v1beta3 from 1.23, as sealer's
                setKubeadmAPIVersion; v1beta2-only fields dropped then); etcd-servers = every
                master's https://IP:2379, as sealer always sets it.
    cert        `sealer cert` writes the same documents; upgrade (kubeadm_upgrade.py) installs
                the new binaries in /usr/bin too, where init-kube.sh's kubelet unit runs them.

What stays this runtime's: the advertise address, node-ip, the stable endpoint and its load
balancer, join credentials, resumable init and join, leave and reset. sealer's IPVS exclusion
and cgroup-driver probe are not written: the endpoint is haproxy, not an IPVS VIP, and the
image's KubeletConfiguration carries the driver its container runtime uses.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

import yaml

from builder.errors import KubeadmConfigError
from builder.runtime.cluster import Cluster, HostSpec
from builder.runtime.env import render_template
from builder.runtime.plugins._config import child_mapping
from builder.runtime.plugins._kubeadm import (
    ENDPOINT,
    ROOTFS_BINS,
    ROOTFS_CONFIG,
    audit_policy_steps,
    binaries_step,
    rootfs_path,
)
from builder.runtime.plugins.base import HostContext, PluginStep
from builder.runtime.plugins.kubeadm_config import (
    AUDIT_POLICY_FILE,
    KUBEADM_GROUP,
    init_documents,
    join_document,
)
from builder.runtime.plugins.kubeadm_endpoint import endpoint_block_command
from builder.runtime.plugins.sealer_image import (
    ENV_REGISTRY_URL,
    INIT_KUBE,
    KUBEADM_YML,
    KUBEADM_YML_TEMPLATE,
    cert_sans,
    is_sealer_image,
)

_OLD_VERSIONS = ("kubeadm.k8s.io/v1beta1", "kubeadm.k8s.io/v1beta2")
_V1BETA3 = "kubeadm.k8s.io/v1beta3"
_V1BETA2_ONLY = {"ClusterConfiguration": ("useHyperKubeImage",)}  # and dns.type, below


def kubeadm_text(ctx: HostContext) -> str | None:
    """The image's etc/kubeadm.yml as this host's delivery has it: the template rendered with
    the host's env (it wins over a plain file, as the rendered file replaces it), else the file."""
    template = ctx.image_files.get(KUBEADM_YML_TEMPLATE)
    if template is not None:
        return render_template(template, ctx.env, path=KUBEADM_YML_TEMPLATE)
    return ctx.image_files.get(KUBEADM_YML)


def _minor(version: object) -> int | None:
    match = re.match(r"^v?1\.(\d+)", str(version or ""))
    return int(match.group(1)) if match else None


def _normalized(text: str | None, cluster: Cluster) -> str | None:
    """`text` with v1beta1/v1beta2 kubeadm documents in the version sealer writes (the
    Clusterfile's own kubeadm apiVersion when it has one; else v1beta3 from Kubernetes 1.23)."""
    if text is None:
        return None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise KubeadmConfigError(f"the image's {KUBEADM_YML} is not YAML: {err}") from None
    if not any(isinstance(d, dict) and d.get("apiVersion") in _OLD_VERSIONS for d in docs):
        return text
    wanted = next(
        (
            str(d["apiVersion"])
            for d in cluster.documents
            if str(d.get("apiVersion", "")).startswith(KUBEADM_GROUP + "/")
        ),
        None,
    )
    if wanted is None:
        versions = [d.get("kubernetesVersion") for d in docs if isinstance(d, dict)]
        minor = next((m for v in versions if (m := _minor(v)) is not None), None)
        wanted = "kubeadm.k8s.io/v1beta2" if minor is not None and minor < 23 else _V1BETA3
    out = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("apiVersion") in _OLD_VERSIONS:
            doc = {**doc, "apiVersion": wanted}
            if wanted != "kubeadm.k8s.io/v1beta2":
                for key in _V1BETA2_ONLY.get(str(doc.get("kind")), ()):
                    doc.pop(key, None)
                if doc.get("kind") == "ClusterConfiguration" and isinstance(doc.get("dns"), dict):
                    doc["dns"] = {k: v for k, v in doc["dns"].items() if k != "type"}
        out.append(doc)
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in out)


def _image_sans(text: str | None) -> list[str]:
    for doc in yaml.safe_load_all(text or ""):
        if isinstance(doc, dict) and doc.get("kind") == "ClusterConfiguration":
            api = doc.get("apiServer")
            sans = api.get("certSANs") if isinstance(api, dict) else None
            return [str(s) for s in sans] if isinstance(sans, list) else []
    return []


def init_documents_sealer(ctx: HostContext, *, audit: bool) -> list[dict[str, Any]]:
    """master0's kubeadm.yaml documents (module docstring)."""
    text = _normalized(kubeadm_text(ctx), ctx.cluster)
    docs = init_documents(ctx.cluster, ctx.host, text, audit=audit, source=KUBEADM_YML)
    registry = ctx.env.get(ENV_REGISTRY_URL) or ctx.cluster.registry.endpoint
    for doc in docs:
        if doc.get("kind") != "ClusterConfiguration":
            continue
        api = child_mapping(doc, "apiServer", "ClusterConfiguration", KubeadmConfigError)
        sans = [str(s) for s in api.get("certSANs") or ()]
        api["certSANs"] = list(dict.fromkeys([*sans, *_image_sans(text), *cert_sans(ctx.env)]))
        _etcd_servers(api, ctx.cluster)
        if not doc.get("imageRepository"):
            doc["imageRepository"] = registry
        dns = child_mapping(doc, "dns", "ClusterConfiguration", KubeadmConfigError)
        if not dns.get("imageRepository"):
            dns["imageRepository"] = f"{registry}/coredns"
    return docs


def _etcd_servers(api: dict[str, Any], cluster: Cluster) -> None:
    """sealer's etcd-servers: every master's client URL (sealer's basefs kubeadm.yml carries a
    placeholder address there, which sealer always replaces)."""
    hosts = (f"[{m.ip}]" if ":" in m.ip else m.ip for m in cluster.masters)
    value = ",".join(f"https://{h}:2379" for h in hosts)
    args = api.get("extraArgs")
    if isinstance(args, list):  # v1beta4: name/value pairs
        api["extraArgs"] = [
            *(a for a in args if not (isinstance(a, Mapping) and a.get("name") == "etcd-servers")),
            {"name": "etcd-servers", "value": value},
        ]
    else:
        api["extraArgs"] = {**dict(args or {}), "etcd-servers": value}


def image_config(ctx: HostContext) -> tuple[str | None, str]:
    """The image's kubeadm defaults as a plan reads them, and their file: a sealer image's
    rendered etc/kubeadm.yml, else this project's etc/kubeadm.yaml."""
    if is_sealer_image(ctx.image_files):
        return _normalized(kubeadm_text(ctx), ctx.cluster), KUBEADM_YML
    return ctx.image_files.get(ROOTFS_CONFIG), ROOTFS_CONFIG


def join_document_sealer(ctx: HostContext, host: HostSpec) -> dict[str, Any]:
    text = _normalized(kubeadm_text(ctx), ctx.cluster)
    return join_document(ctx.cluster, host, text, source=KUBEADM_YML)


def preflight_files(ctx: HostContext) -> PluginStep:
    files = " && ".join(
        (f"test -f {rootfs_path(ctx, INIT_KUBE)}", *(f"test -x {rootfs_path(ctx, b)}" for b in ROOTFS_BINS))
    )
    return PluginStep(
        "kubeadm-preflight-files",
        f"the sealer image holds {INIT_KUBE} and bin/kubeadm, kubelet, kubectl",
        files,
    )


def stage_steps(ctx: HostContext, registry_url: str) -> tuple[PluginStep, ...]:
    """The stable name in /etc/hosts (sealer's runtime sets the alias itself: its images have no
    init.sh to), init-kube.sh as sealer runs it, then the binaries where this runtime's commands
    call them."""
    scripts = shlex.quote(f"{ctx.rootfs}/scripts")
    host, master0 = ctx.host, ctx.cluster.master0
    # as this project's basefs init.sh leads it: a master to master0 until joined (the join
    # phase repoints it at itself), master0 to itself, a worker to its local load balancer
    target = host.ip if ctx.is_master0 else master0.ip if host.is_master else "127.0.0.1"
    steps = [
        PluginStep(
            "sealer-apiserver-alias", f"{ENDPOINT} -> {target} in /etc/hosts", endpoint_block_command(target)
        ),
        PluginStep(
            "sealer-init-kube",
            f"bash {INIT_KUBE} (RegistryURL={registry_url})",
            f"cd {scripts} && export {ENV_REGISTRY_URL}={shlex.quote(registry_url)} && bash init-kube.sh",
        ),
        binaries_step(ctx),
        *audit_policy_steps(ctx, AUDIT_POLICY_FILE),
    ]
    return tuple(steps)


def registry_url(ctx: HostContext) -> str:
    env: Mapping[str, str] = ctx.env
    return env.get(ENV_REGISTRY_URL) or ctx.cluster.registry.endpoint
