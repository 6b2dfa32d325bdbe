"""The Go-template subset of `sealer inspect --format` and the size formatter."""

from __future__ import annotations

import pytest

from builder.cli.output import human_size, render_template
from builder.errors import UsageError

DOC = {
    "imageExtension": {"launch": {"cmds": ["a b", "c"], "app_names": ["x"]}, "type": "kube-installer"},
    "ociv1": {"config": {"Labels": {"k": "v", "a": "b"}}},
    "layers": [{"digest": "sha256:1"}, {"digest": "sha256:2"}],
    "flag": True,
    "none": None,
}


@pytest.mark.parametrize(
    ("template", "out"),
    [
        ("{{.ImageExtension.Launch.Cmds}}", "[a b c]"),
        ("{{.ImageExtension.Launch.AppNames}}", "[x]"),
        ("{{ .ImageExtension.Type }}", "kube-installer"),
        ("{{.OCIv1.Config.Labels}}", "map[a:b k:v]"),
        ("{{json .ImageExtension.Launch.Cmds}}", '["a b", "c"]'),
        ("{{.Layers.1.Digest}}", "sha256:2"),
        (
            "type={{.ImageExtension.Type}} flag={{.Flag}} none={{.None}}",
            "type=kube-installer flag=true none=<no value>",
        ),
    ],
)
def test_render_template(template: str, out: str) -> None:
    assert render_template(template, DOC) == out


@pytest.mark.parametrize("template", ["{{.Nope}}", "{{.Layers.9}}", "{{range .Layers}}"])
def test_render_template_errors(template: str) -> None:
    with pytest.raises(UsageError):
        render_template(template, DOC)


def test_human_size() -> None:
    assert human_size(999) == "999 B"
    assert human_size(1500) == "1.5 kB"
    assert human_size(704_000_000) == "704 MB"
