"""launch: what the image (or the Clusterfile) says to start, on master0, in the rootfs.

Which commands, first match wins (sealer's order): the Clusterfile's `cmds` (or --cmds); its
Application document's `cmds`; the apps of its `appNames` (or --apps), of the Application's
`launchApps`, else the image's CMDS, else the image's LAUNCH app names. An app configured in the
Application runs its `launch.cmds` (in the rootfs) with its `env` over the app's. An app runs its APPCMDS in its own
directory (application/apps/<name>) with its APPENV over the host env; without APPCMDS the
default for its type runs from the rootfs: kube -> `kubectl apply -f` each file, helm ->
`helm install <name> <chart>`, shell -> `sh` each file. Runs once per image: journaled.
`Launch(rootfs=...)` launches from another tree than the cluster's rootfs (an app image's,
`sealer run APP_IMAGE` on a running cluster).
"""

from __future__ import annotations

import shlex
from typing import ClassVar

from builder.errors import ClusterError
from builder.image.extension import Application
from builder.runtime.app_launch import AppLaunch
from builder.runtime.cluster import Cluster
from builder.runtime.clusterfile_application import application_of_documents
from builder.runtime.facts import Facts
from builder.runtime.phases.base import ImageInfo, Phase, PlanState, Step

APPS_DIR = "application/apps"
LAUNCH_TIMEOUT_S = 1800


def app_commands(app: Application) -> list[tuple[str, bool]]:
    """(command, in the app's dir?) for one app: its APPCMDS, else the default of its type."""
    if app.cmds:
        return [(c, True) for c in app.cmds]
    base = f"{APPS_DIR}/{app.name}"
    files = app.files or ()
    if app.type == "kube":
        return [(f"kubectl apply -f {shlex.quote(f'{base}/{f}')}", False) for f in files]
    if app.type == "helm":
        chart = files[0] if files else ""
        return [(f"helm install {shlex.quote(app.name)} {shlex.quote(f'{base}/{chart}'.rstrip('/'))}", False)]
    if app.type == "shell":
        return [(f"sh {shlex.quote(f'{base}/{f}')}", False) for f in files]
    raise ClusterError(
        f"app {app.name!r} has type {app.type!r} and no APPCMDS: sealer does not know how to launch it",
        hint="give the app APPCMDS in the Kubefile, or launch it with cmds in the Clusterfile",
    )


class Launch(Phase):
    name: ClassVar[str] = "launch"
    title: ClassVar[str] = "Launch on master0"

    def __init__(self, rootfs: str | None = None) -> None:
        self.rootfs = rootfs  # where the commands run; None: the cluster's rootfs

    def plan(self, cluster: Cluster, facts: Facts, state: PlanState) -> list[Step]:
        master0 = cluster.master0
        if master0.ip not in state.targets:
            return []
        rootfs = self.rootfs or state.rootfs(cluster)
        env = {
            **state.plugin.launch_env,
            **state.host_env(cluster, master0),
        }  # the admin kubeconfig, unless set
        image = state.image
        application = application_of_documents(cluster.documents) if self.rootfs is None else None
        chosen = launched_apps(cluster, application)
        cmds = (
            cluster.cmds
            or (application.cmds if application else ())
            or (() if chosen is not None else image.launch_cmds)
        )
        if cmds:
            return [
                Step(
                    host=master0.ip,
                    id=f"cmd-{i}",
                    description=f"launch command {i + 1} of {len(cmds)}",
                    command=cmd,
                    env=env,
                    cwd=rootfs,
                    timeout_s=LAUNCH_TIMEOUT_S,
                )
                for i, cmd in enumerate(cmds)
            ]
        out: list[Step] = []
        for name in image.app_names if chosen is None else chosen:
            app = _image_app(image, name, "spec.appNames in the Clusterfile")
            config = application.config(name) if application else None
            app_env = {**env, **app.env, **(config.env if config else {})}
            commands = [(c, False) for c in config.cmds] if config and config.cmds else app_commands(app)
            for i, (command, in_app_dir) in enumerate(commands):
                out.append(
                    Step(
                        host=master0.ip,
                        id=f"app-{app.name}-{i}",
                        description=f"launch app {app.name} ({app.type or 'cmds'}) {i + 1}/{len(commands)}",
                        command=command,
                        env=app_env,
                        cwd=f"{rootfs}/{APPS_DIR}/{app.name}" if in_app_dir else rootfs,
                        timeout_s=LAUNCH_TIMEOUT_S,
                    )
                )
        return out


def _image_app(image: ImageInfo, name: str, where: str) -> Application:
    app = next((a for a in image.applications if a.name == name), None)
    if app is None:
        known = ", ".join(a.name for a in image.applications) or "none"
        raise ClusterError(
            f"app {name!r} is not in image {image.name} (apps: {known})", hint=f"check {where}"
        )
    return app


def launched_apps(cluster: Cluster, application: AppLaunch | None) -> tuple[str, ...] | None:
    """The apps to launch, in order, when the Clusterfile chooses them (`appNames`/--apps, else
    the Application's `launchApps`); None: the image decides."""
    if cluster.app_names:
        return cluster.app_names
    if application is not None and application.launch_apps is not None:
        return tuple(a for a in application.launch_apps if a)  # sealer: [""] launches nothing
    return None


def check_apps(cluster: Cluster, image: ImageInfo) -> None:
    """Before any host changes: every app the Clusterfile names (appNames/--apps, the
    Application's launchApps and configs) is one of the image's; ClusterError names it."""
    application = application_of_documents(cluster.documents)
    for name in cluster.app_names:
        _image_app(image, name, "--apps / spec.appNames")
    if application is None:
        return
    for name in application.launch_apps or ():
        if name:
            _image_app(image, name, f"the Application's launchApps ({application.source})")
    for config in application.configs:
        _image_app(image, config.name, f"the Application's configs ({application.source})")
