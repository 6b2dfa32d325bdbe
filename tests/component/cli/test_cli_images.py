"""`sealer images`, `inspect`, `tag` and `rmi` as docker and podman users expect them.

Read-only inspect, Go templates in `--format`, `images --filter`/`-q`, one IMAGE ID per image
(the config digest of the host platform's manifest) and short IDs in inspect, tag and rmi.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from builder.image.descriptor import Platform
from builder.store.layout import Store
from tests.component.cli.test_cli import one_error_line
from tests.conftest import SealerRunner
from tests.validate import validate_image

APP = {"nginx.yaml": "kind: Deployment\n"}
KUBEFILE = (
    "FROM scratch\nCOPY nginx.yaml manifests/\nLABEL cluster.alpha.sealer.io/cluster-runtime-type=k3s\n"
    'LABEL team=web\nCMDS ["kubectl apply -f manifests/nginx.yaml"]\n'
)
RUNTIME_LABEL = "cluster.alpha.sealer.io/cluster-runtime-type"


@pytest.fixture
def built(sealer: SealerRunner, make_context: Callable[..., Path]) -> str:
    """demo/app:v1 built (an image manifest); returns its manifest digest."""
    return str(
        sealer("build", "-q", "-t", "demo/app:v1", str(make_context(APP, kubefile=KUBEFILE))).stdout.strip()
    )


def _overlay_entries(store: Store) -> list[str]:
    return sorted(os.listdir(store.overlay_dir)) if store.overlay_dir.exists() else []


def test_inspect_writes_nothing_unless_unpack(sealer: SealerRunner, store: Store, built: str) -> None:
    sealer("prune")
    assert _overlay_entries(store) == []
    doc = json.loads(sealer("inspect", "demo/app:v1").stdout)
    sealer("inspect", "demo/app:v1", "-f", "{{.Name}}")
    assert _overlay_entries(store) == []  # was: every layer unpacked into overlay2/
    assert {frozenset(layer) for layer in doc["layers"]} == {
        frozenset({"digest", "diffID", "mediaType", "size", "dir"})
    }
    assert {layer["dir"] for layer in doc["layers"]} == {None}
    unpacked = json.loads(sealer("inspect", "--unpack", "demo/app:v1").stdout)
    assert _overlay_entries(store) != []
    assert (Path(unpacked["layers"][0]["dir"]) / "manifests/nginx.yaml").read_text() == "kind: Deployment\n"
    assert {k: v for k, v in unpacked.items() if k != "layers"} == {
        k: v for k, v in doc.items() if k != "layers"
    }


def test_labels_and_env_are_there_for_an_image_without_any(
    sealer: SealerRunner, make_context: Callable[..., Path]
) -> None:
    sealer("build", "-q", "-t", "bare:v1", str(make_context({"f": "x"}, kubefile="FROM scratch\nCOPY f f\n")))
    out = sealer("inspect", "bare:v1", "--format", "{{len .OCIv1.Config.Labels}} {{len .OCIv1.Config.Env}}")
    assert out.stdout == "0 0\n"


def test_inspect_format_is_a_go_template(sealer: SealerRunner, built: str) -> None:
    def fmt(template: str) -> str:
        return str(sealer("inspect", "demo/app:v1", "--format", template).stdout)

    assert fmt(f'{{{{index .OCIv1.Config.Labels "{RUNTIME_LABEL}"}}}}') == "k3s\n"
    assert fmt("{{range .Layers}}{{.MediaType}};{{end}}").startswith(
        "application/vnd.oci.image.layer.v1.tar+zstd;"
    )
    assert fmt('{{if eq .ImageExtension.Type "kube-installer"}}kube{{else}}app{{end}}') == "kube\n"
    assert fmt('{{join .ImageExtension.Launch.Cmds ","}} {{len .Layers | printf "%d"}} {{upper .Name}}') == (
        f"kubectl apply -f manifests/nginx.yaml {fmt('{{len .Layers}}').strip()} DEMO/APP:V1\n"
    )
    doc = json.loads(sealer("inspect", "demo/app:v1").stdout)
    assert json.loads(fmt("json")) == doc  # was: the word json
    assert json.loads(fmt("{{json .}}")) == doc
    assert json.loads(fmt("{{json .OCIv1.Config.Labels}}"))["team"] == "web"


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        ("{{.Name", "--format:1: unclosed action"),  # was: echoed, exit 0
        ("{{nope .Name}}", 'function "nope" not defined'),
        ("{{.Nope}}", "can't evaluate field Nope"),
        ("{{range .Layers}}", "without {{end}}"),
        ("{{index .Layers 5}}", "index out of range: 5"),
    ],
)
def test_template_errors_are_one_line_exit_1(
    sealer: SealerRunner, built: str, template: str, needle: str
) -> None:
    result = sealer("inspect", "demo/app:v1", "--format", template, expect=1)
    assert needle in one_error_line(result.stderr)
    assert result.stdout == ""
    assert sealer("images", "--format", template, expect=1).stdout == ""


def test_images_format_filter_quiet(
    sealer: SealerRunner, store: Store, built: str, make_context: Callable[..., Path]
) -> None:
    other = make_context(
        {"x.yaml": "x: 1\n"}, kubefile="FROM scratch\nCOPY x.yaml manifests/\nLABEL team=db\n"
    )
    sealer("build", "-q", "-t", "acme/db:v2", str(other))
    sealer("tag", "demo/app:v1", "demo/app:latest")
    listing = json.loads(sealer("images", "--format", "json").stdout)
    ids = {d["name"]: d["id"] for d in listing}
    app_id, db_id = ids["docker.io/demo/app:v1"], ids["docker.io/acme/db:v2"]

    out = sealer("images", "--format", '{{.Repository}}:{{.Tag}} {{slice .ID 0 12}} {{index .Labels "team"}}')
    assert out.stdout.splitlines() == [
        f"demo/app:v1 {app_id[:12]} web",
        f"acme/db:v2 {db_id[:12]} db",
        f"demo/app:latest {app_id[:12]} web",
    ]

    def names(*filters: str) -> list[str]:
        args = [a for f in filters for a in ("--filter", f)]
        return sealer("images", *args, "--format", "{{.Repository}}:{{.Tag}}").stdout.splitlines()

    assert names("reference=demo/*") == ["demo/app:v1", "demo/app:latest"]
    assert names("reference=demo/app:v*") == ["demo/app:v1"]
    assert names("reference=*") == []  # `*` never crosses a `/`, as docker's path.Match
    assert names("reference=demo/*", "reference=acme/db") == ["demo/app:v1", "acme/db:v2", "demo/app:latest"]
    assert names("label=team=db") == ["acme/db:v2"]
    assert names("label=team") == ["demo/app:v1", "acme/db:v2", "demo/app:latest"]
    assert names("label=team=db", "reference=demo/*") == []  # different keys AND
    assert names(f"label={RUNTIME_LABEL}=k3s", "label=nope") == ["demo/app:v1", "demo/app:latest"]

    # -q: image IDs, short and each once (was: names)
    assert sealer("images", "-q").stdout.splitlines() == [app_id[:12], db_id[:12]]
    assert sealer("images", "-q", "--filter", "label=team=db").stdout.splitlines() == [db_id[:12]]
    for bad in ("nope=x", "reference", "label=", "reference=[ab"):
        result = sealer("images", "--filter", bad, expect=2)
        assert "--filter" in one_error_line(result.stderr)


def test_created_is_when_stored_and_inspect_shows_both(
    sealer: SealerRunner, store: Store, built: str
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    doc = json.loads(sealer("inspect", "demo/app:v1").stdout)
    assert doc["created"] == "1970-01-01T00:00:00Z"  # reproducible: SOURCE_DATE_EPOCH default
    stored = datetime.fromisoformat(doc["stored"].replace("Z", "+00:00"))
    assert abs((stored - before).total_seconds()) < 600
    row = sealer("images").stdout.splitlines()[1]
    assert stored.strftime("%Y-%m-%d %H:%M:%S") in row and "1970" not in row
    (entry,) = json.loads(sealer("images", "--format", "json").stdout)
    assert (entry["created"], entry["stored"]) == (doc["created"], doc["stored"])
    # A new name of the same image keeps the time it entered the store.
    sealer("tag", "demo/app:v1", "demo/app:again")
    again = json.loads(sealer("inspect", "demo/app:again").stdout)
    assert again["stored"] == doc["stored"]


def test_short_ids_in_inspect_tag_rmi(sealer: SealerRunner, store: Store, built: str) -> None:
    image_id = json.loads(sealer("inspect", "demo/app:v1").stdout)["id"]
    short = image_id[:12]
    assert json.loads(sealer("inspect", short).stdout)["digest"] == built
    sealer("tag", short, "demo/app:v2", "other/name:v1")
    validate_image(store, "other/name:v1")
    # push needs a destination for an ID: docker.io/library/<hex>:latest is never meant.
    pushed = sealer("push", short, expect=2)
    assert "is an image ID, not a name" in one_error_line(pushed.stderr)

    # Several names share the ID: rmi ID is refused without -f, as docker does.
    refused = sealer("rmi", short, expect=1)
    line = one_error_line(refused.stderr)
    assert f"conflict: unable to delete {short}" in line and "referenced in multiple repositories" in line
    assert len(store.images()) == 3
    # A name loses only that name.
    assert sealer("rmi", "demo/app:v2").stdout.startswith("untagged: demo/app:v2\n")
    # -f removes every name of the image, and the blobs go with it.
    out = sealer("rmi", "-f", short).stdout
    assert "untagged: demo/app:v1" in out and "untagged: other/name:v1" in out and "freed" in out
    assert store.images() == []
    assert "no such image" in one_error_line(sealer("rmi", short, expect=1).stderr)


def test_rmi_single_name_by_id_was_no_such_image(sealer: SealerRunner, store: Store, built: str) -> None:
    short = json.loads(sealer("inspect", "demo/app:v1").stdout)["id"][:12]
    assert sealer("rmi", short).stdout.startswith("untagged: demo/app:v1\n")
    assert store.images() == []


def test_index_image_has_one_identity(
    sealer: SealerRunner, store: Store, make_context: Callable[..., Path]
) -> None:
    ctx = make_context(APP, kubefile="FROM scratch\nCOPY nginx.yaml manifests/\n")
    sealer("build", "-q", "--platform", "linux/amd64,linux/arm64", "-t", "multi/app:v1", str(ctx))
    validate_image(store, "multi/app:v1")
    top = store.resolve("multi/app:v1")
    host = store.manifests_for(top, Platform.host())[0][1].config.digest
    (entry,) = json.loads(sealer("images", "--format", "json").stdout)
    doc = json.loads(sealer("inspect", "multi/app:v1").stdout)
    assert entry["id"] == doc["id"] == host.hex  # was: the index digest in `images`
    assert entry["digest"] == doc["digest"] == str(top.digest)
    assert sealer("images", "-q").stdout == f"{host.hex[:12]}\n"
    assert sealer("images").stdout.splitlines()[1].split()[1] == host.hex[:12]
    assert json.loads(sealer("inspect", host.hex[:12]).stdout)["digest"] == str(top.digest)
