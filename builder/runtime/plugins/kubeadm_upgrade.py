"""Upgrading the kubeadm runtime, as "Upgrading kubeadm clusters" gives it: master0 runs
`kubeadm upgrade apply`, every other host `kubeadm upgrade node`, each drained first (master0
drains the others, itself after its apply), then the new kubelet and kubectl and a kubelet
restart; master0 uncordons each host after its own steps (`upgrade-done`)."""

from __future__ import annotations

from collections.abc import Sequence

from builder.runtime.plugins._kubeadm import (
    BIN_DIR,
    INIT_TIMEOUT_S,
    KUBEADM,
    ROOTFS_BINS,
    admin_kubectl,
    drain_step,
    images_step,
    install_binaries,
    on_node,
    rootfs_path,
)
from builder.runtime.plugins.base import HostContext, PluginStep
from builder.runtime.plugins.sealer_image import is_sealer_image

SEALER_BIN_DIR = "/usr/bin"  # where a sealer image's init-kube.sh puts the kube binaries


def upgrade_steps(ctx: HostContext) -> Sequence[PluginStep]:
    """The `upgrade` phase on `ctx.host`; on master0 acting for another host, its drain."""
    host, subject = ctx.host, ctx.subject
    if subject is not None and subject.ip != host.ip:
        # master0, for another host about to be upgraded: drain it first
        return (drain_step(subject.ip, force=False),) if ctx.is_master0 else ()
    if ctx.is_master0:
        apply = f"{KUBEADM} upgrade apply -y $({KUBEADM} version -o short)"
        upgrade = PluginStep("kubeadm-upgrade", "kubeadm upgrade apply", apply, timeout_s=INIT_TIMEOUT_S)
    else:
        upgrade = PluginStep(
            "kubeadm-upgrade",
            "kubeadm upgrade node",
            f"{KUBEADM} upgrade node",
            timeout_s=INIT_TIMEOUT_S,
        )
    # A sealer image's images are in its registry/, served by the cluster registry (no tarball
    # to import), and its kubelet unit runs the /usr/bin copies init-kube.sh made: those too.
    sealer = is_sealer_image(ctx.image_files)
    where = f"{BIN_DIR} and {SEALER_BIN_DIR}" if sealer else BIN_DIR

    def install(names: tuple[str, ...]) -> str:
        command = install_binaries(ctx, names)
        return f"{command} && {command.removesuffix(f' {BIN_DIR}/')} {SEALER_BIN_DIR}/" if sealer else command

    steps = [
        PluginStep("kubeadm-upgrade-check", "no downgrade, at most one minor version", _version_check(ctx)),
        PluginStep("kubeadm-binary", f"the new kubeadm into {where}", install(("kubeadm",))),
        *(() if sealer else (images_step(ctx),)),
        upgrade,
    ]
    if ctx.is_master0:  # the others were drained by master0 before this
        steps.append(drain_step(host.ip, force=False))
    steps += [
        PluginStep(
            "kubelet-binaries",
            f"the new kubelet and kubectl into {where}",
            install(("kubelet", "kubectl")),
        ),
        PluginStep(
            "kubelet-restart",
            "restart the kubelet",
            "systemctl daemon-reload && systemctl restart kubelet",
            timeout_s=INIT_TIMEOUT_S,
        ),
    ]
    return tuple(steps)


def uncordon_steps(ctx: HostContext) -> Sequence[PluginStep]:
    """`upgrade-done` on master0: the upgraded host (the subject) schedulable again."""
    subject = ctx.subject or ctx.host
    if not ctx.is_master0:
        return ()
    uncordon = on_node(subject.ip, "uncordon", admin_kubectl('uncordon "$name"'))
    return (PluginStep("kubeadm-uncordon", f"uncordon {subject.ip}", uncordon),)


def _version_check(ctx: HostContext) -> str:
    """Shell: refuse a downgrade, a major change or skipping a minor version, comparing the
    installed kubeadm with the image's (`kubeadm version -o short` prints v1.30.14)."""
    v = "sed 's/^v//; s/[+-].*//'"
    return (
        f"old=$({KUBEADM} version -o short | {v}); new=$({rootfs_path(ctx, ROOTFS_BINS[0])} version -o short | {v}); "
        "set -- $(echo \"$old.$new\" | tr . ' '); "
        "if [ $# -ne 6 ]; then echo \"kubeadm versions not understood: installed '$old', new '$new'\" >&2; exit 1; fi; "
        'if [ "$1" != "$4" ] || [ "$5" -lt "$2" ] || { [ "$5" -eq "$2" ] && [ "$6" -lt "$3" ]; }; '
        'then echo "kubernetes $old -> $new: a downgrade or a major change is not supported" >&2; exit 1; fi; '
        'if [ "$5" -gt $(($2 + 1)) ]; then echo "kubernetes $old -> $new: upgrade one minor version at a time" >&2; exit 1; fi; '
        'echo "kubernetes $old -> $new"'
    )
