"""Registry access, injected: the build pulls FROM images and bundled container images through a
`Puller` its caller passes in (the CLI builds one from the registry client and its options), as
the runtime gets its `pull`. So the build never imports `builder.registry` (DESIGN.md section 1);
the pull's own progress goes wherever the caller wired the puller's events.

Images bundled from the local Docker engine (`docker-daemon:NAME` in an imageList, or
`--image-source docker-daemon`) come through a `DockerDaemon` injected the same way.
"""

from __future__ import annotations

from typing import Protocol

from builder.build.events import BuildWarning, EventSink
from builder.errors import BuildError
from builder.image.descriptor import Descriptor, Platform
from builder.store.layout import Store


class Puller(Protocol):
    """Pull `image` from its registry into `store` and name it `tag_as` (None: the image's own
    name); `platform` None pulls every platform of an index. With `unpack`, also unpack its
    layers into the store's diff dirs (`builder.diffdirs`) as they download, since the build
    will need them (a RUN's lowerdirs). Raises RegistryError subclasses."""

    def __call__(
        self, store: Store, image: str, platform: Platform | None, tag_as: str | None, *, unpack: bool = False
    ) -> None: ...


# skopeo's transport name for images of the local Docker engine (containers-transports(5)).
DAEMON_TRANSPORT = "docker-daemon"


class DaemonImage(Protocol):
    """An image the Docker daemon holds: its image ID (what `docker images` shows; the digest
    of its config) and its platform."""

    @property
    def image_id(self) -> str: ...

    @property
    def platform(self) -> Platform: ...


class DockerDaemon(Protocol):
    """The local Docker engine's images. Raises DockerEngineUnavailable when no engine answers."""

    def inspect(self, name: str) -> DaemonImage | None:
        """The image `name` (NAME:TAG) names in the daemon; None when the daemon lacks it."""
        ...

    def export(self, store: Store, image_id: str, tag_as: str) -> Descriptor:
        """Export image `image_id` (streamed, every layer checked against the config's
        diff_ids) into `store` as `tag_as`; its manifest descriptor."""
        ...


class Pulls:
    """One build's pulls: each (image, platform) at most once, announced by a BuildWarning
    before it starts. Without a puller (a library caller that gave none) a pull is refused."""

    def __init__(
        self, puller: Puller | None, on_event: EventSink, daemon: DockerDaemon | None = None
    ) -> None:
        self.puller = puller
        self.on_event = on_event
        self.daemon = daemon
        self._pulled: set[tuple[str, str]] = set()

    def pull(
        self,
        store: Store,
        image: str,
        platform: Platform | None,
        *,
        tag_as: str | None = None,
        unpack: bool = False,
    ) -> None:
        key = (image, str(platform))
        if key in self._pulled:
            return
        if self.puller is None:
            raise BuildError(
                f"cannot pull {image}: this build was given no registry access",
                hint="pass pull= to build_image, or build without pulls (pull='never', bundle_images=False)",
            )
        self.on_event(BuildWarning(f"pulling {image}" + (f" for {platform}" if platform else "")))
        self.puller(store, image, platform, tag_as, unpack=unpack)
        self._pulled.add(key)

    def docker_daemon(self, image: str) -> DockerDaemon:
        """The injected Docker engine; refused (naming `image`) when the caller gave none."""
        if self.daemon is None:
            raise BuildError(
                f"cannot export {image} from the Docker daemon: this build was given no Docker engine",
                hint="pass daemon= to build_image",
            )
        return self.daemon
