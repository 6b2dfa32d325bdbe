"""sealer's image extension: the `sealer.image.extension` and `sealer.image.container.images`
manifest annotations.

Field names follow sealer's Go structs (pkg/define/image/v1/sealer_image_extension.go and
pkg/define/application/v1/application.go). We write the current form; reading also accepts:

- applications with `launchfiles` instead of `files` (sealer before APPCMDS/APPENV existed);
- `launch.appConfigs: [{name, launch: {cmds}}]` for per-app launch commands (the same era);
- the flat extension of types/api/v1 (`image_type`, `cmd_set`, `arg_set`), sealer's first form.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from builder.errors import InvalidExtension
from builder.image._json import load_object, string_list, string_map
from builder.image.descriptor import Platform

SCHEMA_VERSION = "v1alpha1"
KUBE_INSTALLER = "kube-installer"
APP_INSTALLER = "app-installer"
APP_TYPES = ("kube", "helm", "shell")


def _encode(obj: Any) -> str:
    # Compact and with Go's field order, as sealer's json.Marshal writes it.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class AppConfig:
    """What APPCMDS/APPENV set for one app: its launch commands and its env."""

    name: str
    cmds: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Application:
    """One app in the image (`APP`, `CNI`, `CSI`): files under application/apps/<name>/."""

    name: str
    type: str = ""
    files: tuple[str, ...] = ()
    version: str = "v1"
    env: Mapping[str, str] = field(default_factory=dict)
    cmds: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.type:
            out["type"] = self.type
        if self.files:
            out["files"] = list(self.files)
        if self.version:
            out["version"] = self.version
        if self.env:
            out["env"] = dict(sorted(self.env.items()))
        if self.cmds:
            out["cmds"] = list(self.cmds)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Application:
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            raise InvalidExtension("sealer.image.extension: an application has no name")
        files = obj.get("files")
        if files is None:
            # Older sealer wrote the app's files as `launchfiles`.
            files = obj.get("launchfiles")
        kind, version = obj.get("type") or "", obj.get("version") or ""
        if not isinstance(kind, str) or not isinstance(version, str):
            raise InvalidExtension(
                f"sealer.image.extension: application {obj['name']!r} has a bad type/version"
            )
        return cls(
            name=obj["name"],
            type=kind,
            files=string_list(files, "application files", InvalidExtension),
            version=version,
            env=string_map(obj.get("env"), "application env", InvalidExtension),
            cmds=string_list(obj.get("cmds"), "application cmds", InvalidExtension),
        )


@dataclass(frozen=True, slots=True)
class Launch:
    """What `sealer run` launches: raw commands (CMDS) or apps by name (LAUNCH)."""

    cmds: tuple[str, ...] = ()
    app_names: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.cmds:
            out["cmds"] = list(self.cmds)
        if self.app_names:
            out["app_names"] = list(self.app_names)
        return out


@dataclass(frozen=True, slots=True)
class BuildClient:
    sealer_version: str = ""
    buildah_version: str = ""


@dataclass(frozen=True, slots=True)
class ImageExtension:
    """The decoded `sealer.image.extension` annotation."""

    type: str = KUBE_INSTALLER
    applications: tuple[Application, ...] = ()
    launch: Launch = field(default_factory=Launch)
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    build_client: BuildClient = field(default_factory=BuildClient)
    schema_version: str = SCHEMA_VERSION

    def to_json(self) -> str:
        """The annotation value, keys in the order sealer's Go struct marshals them."""
        out: dict[str, Any] = {
            "buildClient": {
                "sealerVersion": self.build_client.sealer_version,
                "buildahVersion": self.build_client.buildah_version,
            },
            "schemaVersion": self.schema_version,
        }
        if self.type:
            out["type"] = self.type
        if self.applications:
            out["applications"] = [a.to_json() for a in self.applications]
        if self.labels:
            out["labels"] = dict(sorted(self.labels.items()))
        if self.env:
            out["env"] = dict(sorted(self.env.items()))
        out["launch"] = self.launch.to_json()
        return _encode(out)

    @classmethod
    def from_json(cls, text: str | bytes) -> ImageExtension:
        """Decode any form sealer has written (see the module docstring)."""
        obj = load_object(text, "sealer.image.extension", InvalidExtension)
        if "image_type" in obj or "cmd_set" in obj:
            return cls._from_flat(obj)
        client = obj.get("buildClient") or {}
        if not isinstance(client, dict):
            raise InvalidExtension("sealer.image.extension: buildClient must be an object")
        apps = obj.get("applications")
        apps = [] if apps is None else apps
        if not isinstance(apps, list):
            raise InvalidExtension("sealer.image.extension: applications must be an array")
        applications = [Application.from_json(a) for a in apps]
        launch_obj = obj.get("launch") or {}
        if not isinstance(launch_obj, dict):
            raise InvalidExtension("sealer.image.extension: launch must be an object")
        # Older sealer kept per-app launch commands in launch.appConfigs; fold them into the
        # applications, where current sealer keeps them (`cmds`).
        for item in launch_obj.get("appConfigs") or []:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InvalidExtension("sealer.image.extension: launch.appConfigs entries need a name")
            app_launch = item.get("launch") or {}
            cmds = string_list(
                app_launch.get("cmds") if isinstance(app_launch, dict) else None, "cmds", InvalidExtension
            )
            applications = [
                replace(a, cmds=a.cmds or cmds) if a.name == item["name"] else a for a in applications
            ]
        kind = obj.get("type") or ""
        schema = obj.get("schemaVersion") or ""
        if not isinstance(kind, str) or not isinstance(schema, str):
            raise InvalidExtension("sealer.image.extension: type and schemaVersion must be strings")
        return cls(
            type=kind,
            applications=tuple(applications),
            launch=Launch(
                cmds=string_list(launch_obj.get("cmds"), "launch.cmds", InvalidExtension),
                app_names=string_list(launch_obj.get("app_names"), "launch.app_names", InvalidExtension),
            ),
            env=string_map(obj.get("env"), "env", InvalidExtension),
            labels=string_map(obj.get("labels"), "labels", InvalidExtension),
            build_client=BuildClient(
                str(client.get("sealerVersion") or ""), str(client.get("buildahVersion") or "")
            ),
            schema_version=schema,
        )

    @classmethod
    def _from_flat(cls, obj: Mapping[str, Any]) -> ImageExtension:
        # sealer's first extension (types/api/v1): {"image_type", "cmd_set", "arg_set"}; an
        # "AppImage" image_type is what became app-installer.
        image_type = obj.get("image_type") or ""
        if not isinstance(image_type, str):
            raise InvalidExtension("sealer.image.extension: image_type must be a string")
        kind = APP_INSTALLER if image_type.lower().startswith("app") else KUBE_INSTALLER
        return cls(
            type=kind,
            launch=Launch(cmds=string_list(obj.get("cmd_set"), "cmd_set", InvalidExtension)),
            env=string_map(obj.get("arg_set"), "arg_set", InvalidExtension),
            schema_version="",
        )

    def app(self, name: str) -> Application | None:
        return next((a for a in self.applications if a.name == name), None)

    def app_config(self, name: str) -> AppConfig | None:
        """The APPCMDS/APPENV settings of app `name`, or None when there is no such app."""
        app = self.app(name)
        return None if app is None else AppConfig(app.name, app.cmds, dict(app.env))

    def with_application(self, app: Application) -> ImageExtension:
        """Add `app`, replacing an app of the same name (a later APP wins, as in sealer)."""
        apps = tuple(a for a in self.applications if a.name != app.name)
        return replace(self, applications=(*apps, app))

    def with_app_config(self, config: AppConfig) -> ImageExtension:
        """Apply APPCMDS/APPENV to an existing app; InvalidExtension if there is no such app."""
        app = self.app(config.name)
        if app is None:
            raise InvalidExtension(
                f"no app named {config.name!r} in the image",
                hint="APPCMDS/APPENV must follow the APP instruction that defines the app",
            )
        cmds = config.cmds or app.cmds
        updated = replace(app, cmds=cmds, env={**app.env, **config.env})
        return replace(
            self, applications=tuple(updated if a.name == app.name else a for a in self.applications)
        )

    def with_launch(self, launch: Launch) -> ImageExtension:
        return replace(self, launch=launch)

    def with_env(self, env: Mapping[str, str]) -> ImageExtension:
        return replace(self, env={**self.env, **env})


@dataclass(frozen=True, slots=True)
class ContainerImage:
    """One entry of `sealer.image.container.images`: a container image the ClusterImage carries."""

    image: str
    app_name: str = ""
    platform: Platform | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"image": self.image}
        if self.app_name:
            out["appName"] = self.app_name
        # sealer's Go field has no omitempty: a missing platform is written as null.
        out["platform"] = None if self.platform is None else _platform_json(self.platform)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> ContainerImage:
        if not isinstance(obj, dict) or not isinstance(obj.get("image"), str):
            raise InvalidExtension("sealer.image.container.images: an entry has no image")
        platform = obj.get("platform")
        app_name = obj.get("appName") or ""
        if not isinstance(app_name, str) or (platform is not None and not isinstance(platform, dict)):
            raise InvalidExtension(f"sealer.image.container.images: bad entry for {obj['image']!r}")
        return cls(obj["image"], app_name, Platform.from_json(platform) if platform else None)


def _platform_json(platform: Platform) -> dict[str, str]:
    # apiv1.Platform: architecture, os, os_version, variant, all omitempty.
    out = {"architecture": platform.architecture, "os": platform.os}
    if platform.variant:
        out["variant"] = platform.variant
    return out


def dump_container_images(images: tuple[ContainerImage, ...] | list[ContainerImage]) -> str:
    """Encode the `sealer.image.container.images` annotation value."""
    return _encode([i.to_json() for i in images])


def parse_container_images(text: str | bytes) -> tuple[ContainerImage, ...]:
    """Decode the `sealer.image.container.images` annotation value."""
    try:
        items = json.loads(text)
    except ValueError as err:
        raise InvalidExtension(f"sealer.image.container.images is not valid JSON: {err}") from None
    if items is None:
        return ()
    if not isinstance(items, list):
        raise InvalidExtension("sealer.image.container.images must be a JSON array")
    return tuple(ContainerImage.from_json(i) for i in items)
