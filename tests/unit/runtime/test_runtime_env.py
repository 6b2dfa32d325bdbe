"""Script env: layers, reserved SEALER_* names, `-e` parsing and `.tmpl` rendering."""

from __future__ import annotations

import base64
import time

import pytest

from builder.errors import InvalidEnv, RootfsTemplateError, UsageError
from builder.runtime.cluster import Cluster, HostSpec, Role
from builder.runtime.env import merge_env, parse_env_args, parse_env_list, render_template, reserved_env

# --- layers ------------------------------------------------------------------------------------


def test_precedence_image_cluster_host_cli() -> None:
    merged = merge_env(
        {"A": "image", "B": "image", "C": "image", "D": "image", "IMG": "1"},
        {"B": "cluster", "C": "cluster", "D": "cluster"},
        {"C": "host", "D": "host"},
        {"D": "cli"},
    )
    assert merged == {"A": "image", "B": "cluster", "C": "host", "D": "cli", "IMG": "1"}


@pytest.mark.parametrize(
    ("layer", "source"),
    [(0, "image ENV"), (1, "Clusterfile env"), (2, "host env"), (3, "-e")],
)
def test_reserved_names_are_refused_naming_the_layer(layer: int, source: str) -> None:
    layers: list[dict[str, str]] = [{}, {}, {}, {}]
    layers[layer] = {"SEALER_ROLE": "x"}
    with pytest.raises(InvalidEnv) as info:
        merge_env(*layers)
    assert info.value.message.startswith(f"{source}: SEALER_ROLE is reserved")
    assert info.value.source == source


def test_reserved_env_values() -> None:
    hosts = (
        HostSpec("10.0.0.1", (Role.MASTER,)),
        HostSpec("10.0.0.2", (Role.MASTER,)),
        HostSpec("10.0.0.3", (Role.NODE,)),
        HostSpec("10.0.0.4", (Role.NODE,)),
    )
    c = Cluster(name="prod", image="kubernetes:v1.22.15", hosts=hosts)
    env = reserved_env(c, c.host("10.0.0.3"), "/var/lib/sealer/data/prod/rootfs")
    assert env == {
        "SEALER_ROLE": "node",
        "SEALER_HOST_IP": "10.0.0.3",
        "SEALER_MASTER0": "10.0.0.1",
        "SEALER_MASTERS": "10.0.0.1,10.0.0.2",
        "SEALER_NODES": "10.0.0.3,10.0.0.4",
        "SEALER_CLUSTER": "prod",
        "SEALER_ROOTFS": "/var/lib/sealer/data/prod/rootfs",
    }
    assert reserved_env(c, c.master0, "/r")["SEALER_ROLE"] == "master"
    single = Cluster(name="one", image="kubernetes:v1", hosts=hosts[:1])
    assert reserved_env(single, single.master0, "/r")["SEALER_NODES"] == ""


def test_env_list_follows_sealer_lists() -> None:
    # sealer's ConvertEnv: a repeated key, or `;` in a value, is a list.
    assert parse_env_list(["IP=127.0.0.1", "IP=192.168.0.2", "key=v1;v2", "empty=", "eq=a=b"]) == {
        "IP": "127.0.0.1;192.168.0.2",
        "key": "v1;v2",
        "empty": "",
        "eq": "a=b",
    }


def test_one_key_repeated_200000_times_is_joined_in_linear_time() -> None:
    # Growing the value per entry was quadratic: 200,000 entries took ~25 s, now ~0.1 s.
    started = time.monotonic()
    env = parse_env_list(["K=abcdefgh"] * 200_000 + ["L=1"])
    assert time.monotonic() - started < 3
    assert env["K"] == ";".join(["abcdefgh"] * 200_000) and env["L"] == "1"


def test_reserved_host_lists_are_one_shared_string_per_cluster() -> None:
    # Each host's env holds the same SEALER_NODES object: 5000 hosts x 55 kB copies were 4.6 GB.
    hosts = (
        HostSpec("10.0.0.1", (Role.MASTER,)),
        *(HostSpec(f"10.0.1.{i}", (Role.NODE,)) for i in range(1, 200)),
    )
    cluster = Cluster(name="c", image="kubernetes:v1", hosts=hosts)
    envs = [reserved_env(cluster, h, "/r") for h in hosts]
    assert all(e["SEALER_NODES"] is envs[0]["SEALER_NODES"] for e in envs)
    assert envs[0]["SEALER_NODES"] == ",".join(h.ip for h in hosts[1:])


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("NOVALUE", "-e: 'NOVALUE' is not KEY=VALUE"),
        ("=x", "-e: '' is not a valid variable name"),
        ("1A=x", "-e: '1A' is not a valid variable name"),
        ("A-B=x", "-e: 'A-B' is not a valid variable name"),
        ("SEALER_ROOTFS=/x", "-e: SEALER_ROOTFS is reserved"),
    ],
)
def test_parse_env_args_errors(arg: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_env_args(["OK=1", arg])
    assert info.value.message.startswith(message)
    assert info.value.exit_code == 2


def test_parse_env_args() -> None:
    assert parse_env_args(["A=1", "B=x y", "A=2"]) == {"A": "1;2", "B": "x y"}


# --- templates ---------------------------------------------------------------------------------


def render(text: str, **env: str) -> str:
    return render_template(text, env, path="etc/kubeadm.yaml.tmpl")


def test_variables() -> None:
    assert render(
        "podSubnet: {{ .PodCIDR }}\nsvc: {{.SvcCIDR}}\n", PodCIDR="100.64.0.0/10", SvcCIDR="10.96.0.0/22"
    ) == ("podSubnet: 100.64.0.0/10\nsvc: 10.96.0.0/22\n")


def test_or_default_as_basefs_uses_it() -> None:
    # sealerio/basefs containerd.service.tmpl: LimitNOFILE={{or .DockerLimitNOFILE "1048576"}}
    assert render('LimitNOFILE={{or .DockerLimitNOFILE "1048576"}}') == "LimitNOFILE=1048576"
    assert (
        render('LimitNOFILE={{or .DockerLimitNOFILE "1048576"}}', DockerLimitNOFILE="65535")
        == "LimitNOFILE=65535"
    )
    assert render('{{ or .A .B "c" }}', B="b") == "b"
    assert render('{{ or .A "" }}', A="") == ""
    assert render("{{ or .A `raw \\n` }}") == "raw \\n"


def test_functions_and_pipelines() -> None:
    encoded = base64.b64encode(b"s3cret").decode()
    assert render("{{ .P | b64enc }}", P="s3cret") == encoded
    assert render("{{ b64enc .P }}", P="s3cret") == encoded
    assert render("{{ .E | b64dec }}", E=encoded) == "s3cret"
    assert render('{{ "x\\ty" }}') == "x\ty"
    assert render('{{ or .Missing "abc" | b64enc }}') == base64.b64encode(b"abc").decode()


def test_go_template_language_in_tmpl_files() -> None:
    # One engine with `--format` and chart discovery: if/range/with and the builtins work here.
    assert render("{{ if .A }}yes{{ else }}no{{ end }}", A="1") == "yes"
    assert render("{{ if .Missing }}yes{{ else }}no{{ end }}") == "no"
    assert render('{{ range split .IPS ";" }}[{{ . }}]{{ end }}', IPS="a;b") == "[a][b]"
    assert render('{{ .A | upper }} {{ printf "%s-%s" .A .B }}', A="x", B="y") == "X x-y"


def test_trim_markers_and_comments() -> None:
    assert render("a  \n  {{- .X -}}  \n  b", X="x") == "axb"
    assert render("a {{/* note */}}b") == "a b"
    assert render("no actions at all: { } }}") == "no actions at all: { } }}"


def test_missing_variable_names_file_line_and_variable() -> None:
    text = "kind: ClusterConfiguration\nnetworking:\n  podSubnet: {{ .PodCIDR }}\n"
    with pytest.raises(RootfsTemplateError) as info:
        render(text)
    err = info.value
    assert err.message == "etc/kubeadm.yaml.tmpl:3: variable PodCIDR is not set"
    assert (err.path, err.line, err.variable) == ("etc/kubeadm.yaml.tmpl", 3, "PodCIDR")
    assert err.hint is not None and "-e PodCIDR=" in err.hint


def test_missing_variable_in_a_function_is_an_error() -> None:
    with pytest.raises(RootfsTemplateError, match="variable P is not set"):
        render("{{ .P | b64enc }}")
    with pytest.raises(RootfsTemplateError, match="variable B is not set"):
        render("{{ or .A .B }}")  # Go's `or` returns its last argument when all are empty


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x\n{{ if .A }}y", ":2: unexpected EOF: {{if}} without {{end}}"),
        ('{{ define "x" }}{{ end }}', "{{define}} is not supported"),
        ("{{ nope .A }}", 'function "nope" not defined'),
        ("{{ .A .B }}", "can't give argument to non-function .A"),
        ("{{ b64enc }}", "wrong number of args for b64enc: got 0"),
        ("{{ or b64enc }}", "function 'b64enc' used as an argument"),
        ("{{ .A | }}", "missing value for command"),
        ("{{ (.A }}", "unclosed left paren"),
        ("ok\n\n{{ .A ", ":3: unclosed action"),
        ("{{ .Missing | upper }}", "variable Missing is not set"),
        ("{{ .E | b64dec }}", "b64dec"),
    ],
)
def test_template_errors(text: str, message: str) -> None:
    with pytest.raises(
        RootfsTemplateError, match=message.replace("(", r"\(").replace("{", r"\{").replace("|", r"\|")
    ):
        render(text, A="a", B="b", E="%%%")
