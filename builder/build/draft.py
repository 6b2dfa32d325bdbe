"""The image one platform's build is making, between steps: `Draft`.

A draft starts from the plan's base (or scratch), gains a layer per layer-producing step
(`add_layer`), and is changed in place by the config-only instructions (`apply_config`: ENV,
LABEL, MAINTAINER, KUBEVERSION, CMD, CMDS, LAUNCH, APPCMDS, APPENV). `output.finish_image` turns
it into the config, the annotations and the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import kubefile_grammar as kg
from builder.build import cache as cache_mod
from builder.build.plan import ConfigStep, Plan
from builder.image import mediatypes
from builder.image.config import History, ImageConfig
from builder.image.descriptor import Descriptor
from builder.image.extension import Application, ContainerImage


@dataclass
class Draft:
    """The mutable state of one platform's build between steps."""

    config: ImageConfig
    layers: list[Descriptor] = field(default_factory=list)
    key: str = ""  # the cache key of the last step: the parent of the next one
    applications: dict[str, Application] = field(default_factory=dict)
    launch_cmds: list[str] = field(default_factory=list)
    launch_apps: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # ENV values for the config, applied once at the end: with_env per ENV line rebuilt the
    # whole env list each time (10,000 ENV lines took 14 s).
    config_env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    kube_version: str | None = None
    built_dirs: set[str] = field(default_factory=set)
    shipped_metadata: Path | None = None
    is_kube_installer_base: bool = False
    base_runtime_label: str | None = None
    container_images: tuple[ContainerImage, ...] = ()
    files: dict[str, str] = field(default_factory=dict)  # archive path -> context file, this build
    file_hashes: dict[str, str] = field(default_factory=dict)  # context file -> sha256, as archived
    run_layers: list[Descriptor] = field(default_factory=list)

    @classmethod
    def start(cls, plan: Plan, created: str, settings: str) -> Draft:
        """The draft before the first step: the base's layers, config, labels and extension."""
        base = plan.base
        if base is None:
            config = ImageConfig.empty(plan.platform, created)
            return cls(config=config, key=cache_mod.start_key(None, settings))
        draft = cls(
            config=base.config.with_created(created),
            layers=list(base.manifest.layers),
            key=cache_mod.start_key(base.manifest_descriptor.digest, settings),
            container_images=base.container_images,
        )
        draft.labels = dict(base.config.config.labels)
        draft.base_runtime_label = draft.labels.get(mediatypes.LABEL_CLUSTER_RUNTIME)
        ext = base.extension
        if ext is not None:
            draft.applications = {a.name: a for a in ext.applications}
            draft.launch_cmds = list(ext.launch.cmds)
            draft.launch_apps = list(ext.launch.app_names)
            draft.env = dict(ext.env)
            draft.is_kube_installer_base = ext.type == "kube-installer"
        elif mediatypes.LABEL_CLUSTER_RUNTIME in draft.labels:
            draft.is_kube_installer_base = True
        return draft

    def add_layer(self, layer: cache_mod.CachedLayer, created: str) -> None:
        """Append a step's layer, its diff_id and history to the config; advance the key."""
        self.layers.append(layer.descriptor)
        self.config = self.config.with_layer(
            layer.diff_id, History(created=created, created_by=layer.created_by)
        )
        self.key = cache_mod.after_layer_key(self.key, layer.diff_id)

    def apply_config(self, step: ConfigStep, created: str) -> None:
        """A config-only step: it changes the config or the sealer extension, no layer."""
        ins = step.instruction
        empty = History(created=created, created_by=step.text, empty_layer=True)
        if isinstance(ins, kg.Env):
            self.config = self.config.with_history(empty)
            self.config_env.update(step.items)
            self.env.update(step.items)
        elif isinstance(ins, kg.Label):
            self.labels.update(step.items)
            self.config = self.config.with_history(empty)
        elif isinstance(ins, kg.Maintainer):
            self.config = self.config.with_author(step.value).with_history(empty)
        elif isinstance(ins, kg.KubeVersion):
            self.kube_version = step.value
        elif isinstance(ins, kg.Cmd):
            command = ins.command if isinstance(ins.command, str) else " ".join(ins.command)
            self.launch_cmds.append(command)
            self.config = self.config.with_history(empty)
        elif isinstance(ins, kg.Cmds):
            self.launch_cmds = list(ins.commands)
            self.launch_apps = []
        elif isinstance(ins, kg.Launch):
            self.launch_apps = list(ins.app_names)
            self.launch_cmds = []
        elif isinstance(ins, kg.AppCmds):
            app = self.applications[ins.app_name]
            self.applications[ins.app_name] = replace(app, cmds=tuple(ins.commands))
        elif isinstance(ins, kg.AppEnv):
            app = self.applications[ins.app_name]
            self.applications[ins.app_name] = replace(app, env={**app.env, **dict(step.items)})
