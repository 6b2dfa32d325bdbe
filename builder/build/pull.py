"""Registry access, injected: the build pulls FROM images and bundled container images through a
`Puller` its caller passes in (the CLI builds one from the registry client and its options), as
the runtime gets its `pull`. So the build never imports `builder.registry` (DESIGN.md section 1);
the pull's own progress goes wherever the caller wired the puller's events.
"""

from __future__ import annotations

from typing import Protocol

from builder.build.events import BuildWarning, EventSink
from builder.errors import BuildError
from builder.image.descriptor import Platform
from builder.store.layout import Store


class Puller(Protocol):
    """Pull `image` from its registry into `store` and name it `tag_as` (None: the image's own
    name); `platform` None pulls every platform of an index. Raises RegistryError subclasses."""

    def __call__(self, store: Store, image: str, platform: Platform | None, tag_as: str | None) -> None: ...


class Pulls:
    """One build's pulls: each (image, platform) at most once, announced by a BuildWarning
    before it starts. Without a puller (a library caller that gave none) a pull is refused."""

    def __init__(self, puller: Puller | None, on_event: EventSink) -> None:
        self.puller = puller
        self.on_event = on_event
        self._pulled: set[tuple[str, str]] = set()

    def pull(self, store: Store, image: str, platform: Platform | None, *, tag_as: str | None = None) -> None:
        key = (image, str(platform))
        if key in self._pulled:
            return
        if self.puller is None:
            raise BuildError(
                f"cannot pull {image}: this build was given no registry access",
                hint="pass pull= to build_image, or build without pulls (pull='never', bundle_images=False)",
            )
        self.on_event(BuildWarning(f"pulling {image}" + (f" for {platform}" if platform else "")))
        self.puller(store, image, platform, tag_as)
        self._pulled.add(key)
