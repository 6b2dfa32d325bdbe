"""The one Go text/template engine (builder._gotemplate): language, every function, errors.

Outputs are what Go's text/template (and docker's `--format` functions) print for the same
template and data.
"""

from __future__ import annotations

from typing import Any

import pytest

from builder._gotemplate import MAX_RANGE_STEPS
from builder.cli._format import render_format
from builder.errors import TemplateError

DOC: dict[str, Any] = {
    "name": "app:v1",
    "imageExtension": {"launch": {"cmds": ["a b", "c"], "app_names": ["x"]}, "type": "kube-installer"},
    "ociv1": {
        "config": {"Labels": {"k": "v", "a": "b", "cluster.alpha.sealer.io/cluster-runtime-type": "k3s"}}
    },
    "layers": [{"digest": "sha256:1", "size": 3}, {"digest": "sha256:2", "size": 5}],
    "flag": True,
    "none": None,
    "num": 2.5,
    "count": 3,
}


@pytest.mark.parametrize(
    ("template", "out"),
    [
        # fields, case- and underscore-insensitive on sealer's JSON; list indexes as path parts
        ("{{.ImageExtension.Launch.Cmds}}", "[a b c]"),
        ("{{.ImageExtension.Launch.AppNames}}", "[x]"),
        ("{{ .ImageExtension.Type }}", "kube-installer"),
        ("{{.OCIv1.Config.Labels}}", "map[a:b cluster.alpha.sealer.io/cluster-runtime-type:k3s k:v]"),
        ("{{.Layers.1.Digest}}", "sha256:2"),
        ("flag={{.Flag}} none={{.None}} num={{.Num}}", "flag=true none=<no value> num=2.5"),
        ("{{ .Name }}", "app:v1"),
        ("json", None),  # checked below
        # actions
        ("{{if .Flag}}y{{end}}", "y"),
        ("{{if .None}}y{{else}}n{{end}}", "n"),
        ("{{if .None}}a{{else if .Flag}}b{{else}}c{{end}}", "b"),
        ("{{with .ImageExtension}}{{.Type}}{{end}}", "kube-installer"),
        ("{{with .None}}x{{else}}empty{{end}}", "empty"),
        ("{{with $t := .ImageExtension.Type}}{{$t}}{{end}}", "kube-installer"),
        ("{{range .Layers}}{{.Digest}} {{end}}", "sha256:1 sha256:2 "),
        ("{{range $i, $l := .Layers}}{{$i}}={{$l.Size}};{{end}}", "0=3;1=5;"),
        (
            "{{range $k, $v := .OCIv1.Config.Labels}}{{$k}} {{end}}",
            "a cluster.alpha.sealer.io/cluster-runtime-type k ",
        ),
        ("{{range .None}}x{{else}}none{{end}}", "none"),
        ("{{range .Layers}}{{if eq .Size 3}}{{continue}}{{end}}{{.Size}}{{end}}", "5"),
        ("{{range .Layers}}{{.Size}}{{break}}{{end}}", "3"),
        ("{{range .Count}}{{.}}{{end}}", "012"),
        ("{{$x := 1}}{{range .Layers}}{{$x = 2}}{{end}}{{$x}}", "2"),
        ("{{range .Layers}}{{$.Name}}{{end}}", "app:v1app:v1"),
        ("a  {{- .Name -}}  b", "aapp:v1b"),
        ("a {{/* note */}}b", "a b"),
        ("{{(index .Layers 1).Digest}}", "sha256:2"),
        ('{{ .Name | printf "%s!" | upper }}', "APP:V1!"),
        # functions: Go's builtins
        ('{{index .OCIv1.Config.Labels "cluster.alpha.sealer.io/cluster-runtime-type"}}', "k3s"),
        ('{{index .OCIv1.Config.Labels "nope"}}', "<no value>"),
        ("{{index .Layers 0 | len}}", "2"),
        ("{{len .Layers}} {{len .Name}} {{len .OCIv1.Config.Labels}}", "2 6 3"),
        ("{{slice .Name 0 3}}", "app"),
        (
            "{{and .Flag .Name}} {{and .None .Name}} {{or .None .Name}} {{not .None}}",
            "app:v1 <no value> app:v1 true",
        ),
        ('{{print "a" 1 2 "b"}}', "a1 2b"),
        ('{{println "a" 1}}', "a 1\n"),
        (
            '{{printf "%s-%d|%5s|%-3s|%q|%v|%t|%.2f|%x|%%" .Name 3 "ab" "c" "q" .Layers .Flag 1.5 255}}',
            'app:v1-3|   ab|c  |"q"|[map[digest:sha256:1 size:3] map[digest:sha256:2 size:5]]|true|1.50|ff|%',
        ),
        ('{{printf "%s"}}', "%!s(MISSING)"),
        ('{{eq .Count 3}} {{eq .Name "x" "app:v1"}} {{ne .Count 3}}', "true true false"),
        ("{{lt 1 2}} {{le 2 2}} {{gt 1 2}} {{ge 2.5 .Num}}", "true true false true"),
        # docker's extras
        ("{{json .ImageExtension.Launch.Cmds}}", '["a b","c"]'),
        ("{{json .None}}", "null"),
        ('{{join .ImageExtension.Launch.Cmds ","}}', "a b,c"),
        ('{{split .Name ":"}}', "[app v1]"),
        ('{{lower "AbC"}} {{upper .Name}} {{title "hello world"}}', "abc APP:V1 Hello World"),
        ("{{truncate .Name 3}}|{{pad .Name 1 2}}|", "app| app:v1  |"),
        ('{{b64enc "s3cret"}} {{b64dec "czNjcmV0"}}', "czNjcmV0 s3cret"),
    ],
)
def test_render(template: str, out: str | None) -> None:
    if out is None:
        assert render_format(template, {"a": [1, None]}) == '{"a":[1,null]}'
        return
    assert render_format(template, DOC) == out


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{.Name", "--format:1: unclosed action: '{{' without '}}'"),
        ("x\n{{foo .Name}}", '--format:2: function "foo" not defined'),
        ("{{.Nope}}", "--format:1: can't evaluate field Nope"),
        ("{{.Name.Sub}}", "can't evaluate field Sub in type str"),
        ("{{if .Name}}x", "--format:1: unexpected EOF: {{if}} without {{end}}"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{else}}", "unexpected {{else}}"),
        ("{{if 1}}{{else}}{{else}}{{end}}", "unexpected {{else}}"),
        ("{{break}}", "{{break}} outside {{range}}"),
        ("{{index .Layers 7}}", "index out of range: 7"),
        ('{{index .Layers "a"}}', "cannot index slice/array with type str"),
        ("{{index .None 1}}", "index of untyped nil"),
        ("{{index .Count 1}}", "can't index item of type int"),
        ("{{len 3}}", "len of type int"),
        ("{{slice .Name 0 9}}", "out of range"),
        ("{{slice .Count 0}}", "can't slice item of type int"),
        ("{{.Name .Count}}", "can't give argument to non-function .Name"),
        ("{{ .Name | .Count }}", "can't give argument to non-function .Count"),
        ('{{template "x"}}', "{{template}} is not supported"),
        ('{{define "x"}}{{end}}', "{{define}} is not supported"),
        ("{{ $y }}", "undefined variable: $y"),
        ("{{ $y = 1 }}", "undefined variable: $y"),
        ("{{ .Name | }}", "missing value for command"),
        ("{{ }}", "missing value for command"),
        ("{{ (.Name }}", "unclosed left paren"),
        ("{{ ) }}", "missing value for command"),
        ("{{ .Name ! }}", "unexpected '!'"),
        ("{{ len }}", "wrong number of args for len: got 0"),
        ("{{ upper 3 }}", "expected a string, got int 3"),
        ('{{ join .Name "," }}', "join: expected a list"),
        ("{{ lt .Name 1 }}", "incompatible types for comparison"),
        ("{{ range .Flag }}{{ end }}", "range can't iterate over true"),
        ("{{ and }}", "wrong number of args"),
        ("{{ or }}", "wrong number of args"),
        ("{{ if }}{{ end }}", "missing value for command"),
        ("{{ upper len }}", "function 'len' used as an argument"),
        ('{{ b64dec "%%%" }}', "b64dec:"),
        ("{{/* open", "unclosed action"),
        ("{{/* open }}", "unclosed comment"),
    ],
)
def test_errors_are_one_line(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        render_format(template, DOC)
    assert message in info.value.message
    assert "\n" not in info.value.message
    assert info.value.exit_code == 1


def test_missing_field_hint_lists_the_fields() -> None:
    with pytest.raises(TemplateError) as info:
        render_format("{{.ImageExtension.Nope}}", DOC)
    assert info.value.hint == "fields here: launch, type"


def test_range_is_bounded() -> None:
    with pytest.raises(TemplateError, match=f"more than {MAX_RANGE_STEPS} range iterations"):
        render_format("{{range 2000}}{{range 1000}}{{end}}{{end}}", DOC)
