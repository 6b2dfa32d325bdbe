"""imageList lines `docker-daemon:NAME[:TAG]` (skopeo's transport name): images the build takes
from the local Docker engine instead of their registries (issue 14 item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.build.bundle.discover import FoundImage, discover, discover_files
from builder.errors import ImageDiscoveryError
from tests.conftest import write_tree

POD = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: 'app:v1'}\n  - {name: b, image: nginx:1.25}\n"


def test_daemon_lines_carry_their_transport_and_line(tmp_path: Path) -> None:
    write_tree(
        tmp_path, {"imageList": "# local builds\ndocker-daemon:app:v1\nnginx:1.25\ndocker-daemon:team/tool\n"}
    )
    found = discover(tmp_path).images
    assert found == (
        FoundImage("docker.io/library/app:v1", "imageList:2", "", "docker-daemon"),
        FoundImage("docker.io/library/nginx:1.25", "imageList:3", ""),
        FoundImage("docker.io/team/tool:latest", "imageList:4", "", "docker-daemon"),
    )


def test_a_daemon_line_wins_over_a_manifest_naming_the_same_image(tmp_path: Path) -> None:
    """How one image of a context comes from the daemon while the others come from registries."""
    write_tree(tmp_path, {"manifests/pod.yaml": POD, "manifests/imageList": "docker-daemon:app:v1\n"})
    by_image = {f.image: f for f in discover(tmp_path).images}
    assert by_image["docker.io/library/app:v1"].transport == "docker-daemon"
    assert by_image["docker.io/library/app:v1"].source == "manifests/imageList:1"
    assert by_image["docker.io/library/nginx:1.25"].transport == ""
    # the same, whichever the files are read in (discover_files reads imageList after manifests)
    files = {
        "manifests/pod.yaml": tmp_path / "manifests/pod.yaml",
        "a/imageList": tmp_path / "manifests/imageList",
    }
    by_image = {f.image: f for f in discover_files(files).images}
    assert by_image["docker.io/library/app:v1"].transport == "docker-daemon"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "docker-daemon:app@sha256:" + "a" * 64,
            "imageList:2: docker-daemon:app@sha256:"
            + "a" * 64
            + ": the Docker daemon's images are named NAME[:TAG], not by digest",
        ),
        ("docker-daemon:", "imageList:2: invalid image reference '': empty reference"),
        ("docker-daemon:Bad Name", "imageList:2: invalid image reference 'Bad Name': contains whitespace"),
    ],
)
def test_bad_daemon_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    write_tree(tmp_path, {"imageList": f"nginx\n{line}\n"})
    with pytest.raises(ImageDiscoveryError) as info:
        discover(tmp_path)
    assert info.value.message == message
    assert (info.value.path, info.value.line) == ("imageList", 2)
