"""The Go-template subset image fields use: evaluated exactly, or refused (never guessed)."""

from __future__ import annotations

from typing import Any

import pytest

from builder.build.bundle._gotemplate import UNKNOWN, Scope, Unresolvable, render

VALUES: dict[str, Any] = {
    "image": {"repository": "nginx", "tag": "", "digest": "sha256:abc"},
    "hub": "quay.io/acme",
    "num": 1.10,
    "list": [1],
}
ROOT: dict[str, Any] = {
    "Values": VALUES,
    "Chart": {"AppVersion": "1.25.3", "Name": "web", "Version": "0.1.0"},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ .Values.image.repository }}", "nginx"),
        ('{{ .Values.image.tag | default "stable" }}', "stable"),
        ("{{ default .Chart.AppVersion .Values.image.tag }}", "1.25.3"),
        ("{{ .Values.image.repository | quote }}", '"nginx"'),
        ("{{ .Values.image.repository | squote }}", "'nginx'"),
        ('{{ printf "%s:%s" .Values.image.repository .Chart.AppVersion }}', "nginx:1.25.3"),
        ('{{ printf "%s/%v" .Values.hub "x" | quote }}', '"quay.io/acme/x"'),
        ("{{ .Chart.AppVersion }}", "1.25.3"),
        ("{{ $.Values.hub }}", "quay.io/acme"),
        ("{{ .Values.missing.deeper }}", ""),
        ("{{ coalesce .Values.image.tag .Values.nothing .Chart.Version }}", "0.1.0"),
        ('{{ .Chart.AppVersion | trimPrefix "1." }}', "25.3"),
        ('{{ (.Values.image.tag | default "v9") | trimSuffix "9" }}', "v"),
        ('{{ required "set it" .Values.hub }}', "quay.io/acme"),
        ("a {{- .Values.hub -}} b", "aquay.io/acmeb"),
        ("x{{ if .Values.image.digest }}@{{ .Values.image.digest }}{{ end }}", "x@sha256:abc"),
        ("x{{ if .Values.image.tag }}:{{ .Values.image.tag }}{{ else }}:latest{{ end }}", "x:latest"),
        ("{{ with .Values.image }}{{ .repository }}{{ end }}", "nginx"),
        ("{{ .Values.num }}", "1.1"),
        ("{{/* comment */}}v", "v"),
    ],
)
def test_render(text: str, expected: str) -> None:
    assert render(text, Scope(ROOT, ROOT)) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{{ include "x.image" . }}', "include"),
        ('{{ template "x.image" . }}', "template"),
        ("{{ tpl .Values.hub . }}", "tpl"),
        ("{{ .Release.Name }}", "install time"),
        ("{{ .Capabilities.KubeVersion.Version }}", "install time"),
        ('{{ annotation .ObjectMeta `sidecar.istio.io/proxyImage` "x" }}', "annotation"),
        ("{{ .ProxyImage }}", "not a field of a chart template"),
        ("{{ $undefined }}", "undefined variable"),
        ('{{ required "set image.tag" .Values.image.tag }}', "required"),
        ("{{ .Values.list }}", "map or list"),
        ("{{ .Values.hub.sub }}", "non-map"),
        ("{{ if .Values.hub }}x", "without"),
        ("{{ .Values.hub", "spans"),
    ],
)
def test_unresolvable(text: str, why: str) -> None:
    with pytest.raises(Unresolvable, match=why):
        render(text, Scope(ROOT, ROOT))


def test_range_closed_on_the_line_is_evaluated() -> None:
    # The shared engine (builder._gotemplate) evaluates what the old evaluator refused.
    assert render("{{ range .Values.list }}x{{ . }}{{ end }}", Scope(ROOT, ROOT)) == "x1"
    assert render('{{ index .Values.image "repository" }}', Scope(ROOT, ROOT)) == "nginx"


def test_unknown_dot_is_refused() -> None:
    with pytest.raises(Unresolvable, match="range element"):
        render("{{ .image }}", Scope(ROOT, UNKNOWN))
    assert render("{{ $.Values.hub }}", Scope(ROOT, UNKNOWN)) == "quay.io/acme"
