"""sealer's Application document (types/api/v2 `Application`): what the launch phase starts and
how, over the image's own app list. Values only.

    apiVersion: sealer.io/v2
    kind: Application
    metadata: {name: my-apps}
    spec:
      launchApps: [nginx, dashboard]   # which of the image's apps, in this order ([]: none)
      cmds: ["kubectl get pods -A"]     # instead of every app: these, in the rootfs
      configs:
      - name: nginx                     # one of the image's apps
        launch: {cmds: ["kubectl apply -f application/apps/nginx/"]}  # instead of its APPCMDS
        env: [REPLICAS=3]               # over its APPENV
        files:                          # rootfs application/apps/nginx/<path>, before delivery
        - {path: deploy.yaml, strategy: merge, data: "spec: {replicas: 3}"}

Precedence for what launches (sealer's): the Clusterfile's `spec.cmds` (`--cmds`), then this
document's `cmds`, then the apps of `spec.appNames` (`--apps`), of `launchApps`, or of the
image's LAUNCH. A config of an app that does not launch is kept and unused, as in sealer; its
files are applied anyway (they are part of the rootfs every host gets).

App files use the Config machinery (configs.py) on `application/apps/<app>/<path>`, with
sealer's app semantics: `merge` deep-merges into every document and, unlike a Config's merge,
adds the keys a document lacks (sealer merges app files with mergo's override).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from builder.runtime.configs import ConfigFile

APPLICATION_API_VERSION = "sealer.io/v2"
APPLICATION_KIND = "Application"
APPS_DIR = "application/apps"
FILE_STRATEGIES = ("overwrite", "merge")


@dataclass(frozen=True, slots=True)
class AppConfig:
    """One entry of `spec.configs`: the launch commands (empty: the app's own), the env over
    the app's, and the files of its tree."""

    name: str
    cmds: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    files: tuple[ConfigFile, ...] = ()


@dataclass(frozen=True, slots=True)
class AppLaunch:
    """The Application document: `launch_apps` None when it does not say (the image's list
    then); `source` where it was written."""

    cmds: tuple[str, ...] = ()
    launch_apps: tuple[str, ...] | None = None
    configs: tuple[AppConfig, ...] = ()
    source: str = ""

    def config(self, app: str) -> AppConfig | None:
        return next((c for c in self.configs if c.name == app), None)

    @property
    def files(self) -> tuple[ConfigFile, ...]:
        return tuple(f for c in self.configs for f in c.files)


def app_file(app: str, path: str, data: str, strategy: str, source: str) -> ConfigFile:
    """An app file as a Config of the rootfs; `merge` adds keys (`merge-add`, sealer's mergo)."""
    return ConfigFile(
        f"{app}/{path}",
        f"{APPS_DIR}/{app}/{path}",
        data,
        "merge-add" if strategy == "merge" else strategy,
        (),
        source,
    )
