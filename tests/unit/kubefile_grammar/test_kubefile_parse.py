"""Every instruction in each of its forms, keyword case, continuations, comments, positions."""

from __future__ import annotations

import pytest

from kubefile_grammar import (
    Add,
    App,
    AppCmds,
    AppEnv,
    Arg,
    Cmd,
    Cmds,
    Copy,
    Env,
    From,
    KubeVersion,
    Label,
    Launch,
    Maintainer,
    Run,
    Span,
    expand,
    parse,
)

SEALER_SAMPLE = """\
FROM kubernetes:v1.22.15
COPY imageList manifests
COPY ${ARCH}/bin/ bin/
APP nginx local://nginx.yaml
APP dashboard local://dashboard.yaml
APPCMDS nginx ["kubectl apply -f nginx.yaml"]
LAUNCH ["nginx", "dashboard"]
"""


def one(line: str) -> object:
    """Parse `line` after a FROM and return its instruction."""
    return parse(f"FROM scratch\n{line}\n").instructions[1]


def test_sealer_sample() -> None:
    kubefile = parse(SEALER_SAMPLE)
    assert kubefile.from_ == From("kubernetes:v1.22.15", None, Span(1, 1, 1, 25))
    assert [type(i).__name__ for i in kubefile.instructions] == [
        "From",
        "Copy",
        "Copy",
        "App",
        "App",
        "AppCmds",
        "Launch",
    ]
    assert kubefile.instructions[2] == Copy(("${ARCH}/bin/",), "bin/", None, Span(3, 1, 3, 23))
    assert [a.name for a in kubefile.apps] == ["nginx", "dashboard"]
    assert kubefile.instructions[5] == AppCmds("nginx", ("kubectl apply -f nginx.yaml",), Span(6, 1, 6, 46))
    assert kubefile.instructions[6] == Launch(("nginx", "dashboard"), Span(7, 1, 7, 30))
    assert kubefile.kube_version is None
    assert kubefile.escape == "\\"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("COPY a b /dest", Copy(("a", "b"), "/dest", None, Span(2, 1, 2, 15))),
        ("COPY --chmod=0755 a /dest", Copy(("a",), "/dest", "0755", Span(2, 1, 2, 26))),
        ('COPY ["a b", "c", "/d e"]', Copy(("a b", "c"), "/d e", None, Span(2, 1, 2, 26))),
        ("ADD a /dest", Add(("a",), "/dest", None, Span(2, 1, 2, 12))),
        ('ADD --chmod=644 ["a", "/dest"]', Add(("a",), "/dest", "644", Span(2, 1, 2, 31))),
        ("RUN echo  hi # not a comment", Run("echo  hi # not a comment", Span(2, 1, 2, 29))),
        ('RUN ["echo", "hi"]', Run(("echo", "hi"), Span(2, 1, 2, 19))),
        ('RUN ["echo", 1]', Run('["echo", 1]', Span(2, 1, 2, 16))),
        ("RUN [not json", Run("[not json", Span(2, 1, 2, 14))),
        ("CMD kubectl get pods", Cmd("kubectl get pods", Span(2, 1, 2, 21))),
        ('CMD ["kubectl", "get"]', Cmd(("kubectl", "get"), Span(2, 1, 2, 23))),
        ("CMD []", Cmd((), Span(2, 1, 2, 7))),
        ('CMDS ["kubectl apply -f a.yaml", "kubectl apply -f b.yaml"]', None),
        ("CMDS kubectl apply -f x.yaml", Cmds(("kubectl apply -f x.yaml",), Span(2, 1, 2, 29))),
        ('LAUNCH ["app1", "app2"]', Launch(("app1", "app2"), Span(2, 1, 2, 24))),
        ("LAUNCH app1 app2", Launch(("app1", "app2"), Span(2, 1, 2, 17))),
        ("ARG a", Arg((("a", None),), Span(2, 1, 2, 6))),
        ('ARG a=1 b c="x y"', Arg((("a", "1"), ("b", None), ("c", "x y")), Span(2, 1, 2, 18))),
        ("ENV k=v k2=v2", Env((("k", "v"), ("k2", "v2")), Span(2, 1, 2, 14))),
        ('ENV a="x y"', Env((("a", "x y"),), Span(2, 1, 2, 12))),
        ("ENV k v with  spaces", Env((("k", "v with  spaces"),), Span(2, 1, 2, 21))),
        ('ENV k "v 1"', Env((("k", "v 1"),), Span(2, 1, 2, 12))),
        ("ENV a=x\\ y", Env((("a", "x y"),), Span(2, 1, 2, 11))),
        ('LABEL k=v "k 2"="v"', Label((("k", "v"), ("k 2", "v")), Span(2, 1, 2, 20))),
        (
            "MAINTAINER Jane Doe <jane@example.com>",
            Maintainer("Jane Doe <jane@example.com>", Span(2, 1, 2, 39)),
        ),
        (
            "APP name local://dir/a.yaml local://b",
            App("APP", "name", ("local://dir/a.yaml", "local://b"), Span(2, 1, 2, 38)),
        ),
        ("CNI calico local://calico.yaml", App("CNI", "calico", ("local://calico.yaml",), Span(2, 1, 2, 31))),
        (
            "CSI rook https://x.io/r.yaml http://y/z",
            App("CSI", "rook", ("https://x.io/r.yaml", "http://y/z"), Span(2, 1, 2, 40)),
        ),
        (
            'APPCMDS app1 ["kubectl apply -f x.yaml"]',
            AppCmds("app1", ("kubectl apply -f x.yaml",), Span(2, 1, 2, 41)),
        ),
        (
            "APPCMDS app1 kubectl apply -f x.yaml",
            AppCmds("app1", ("kubectl apply -f x.yaml",), Span(2, 1, 2, 37)),
        ),
        ('APPENV app1 k=v k2="v 2"', AppEnv("app1", (("k", "v"), ("k2", "v 2")), Span(2, 1, 2, 25))),
        ("KUBEVERSION v1.22.15", KubeVersion("v1.22.15", Span(2, 1, 2, 21))),
    ],
)
def test_instruction_forms(line: str, expected: object) -> None:
    got = one(line)
    if expected is None:  # CMDS JSON form: checked by value only
        assert got == Cmds(("kubectl apply -f a.yaml", "kubectl apply -f b.yaml"), Span(2, 1, 2, 60))
    else:
        assert got == expected


def test_from_platform() -> None:
    kubefile = parse("FROM --platform=linux/arm64 kubernetes:v1.22@sha256:abc\n")
    assert kubefile.from_.platform == "linux/arm64"
    assert kubefile.from_.image == "kubernetes:v1.22@sha256:abc"


def test_args_before_from() -> None:
    kubefile = parse("ARG V=1.22\nARG B\nFROM kubernetes:${V}\n")
    assert isinstance(kubefile.instructions[2], From)
    assert kubefile.from_.image == "kubernetes:${V}"


@pytest.mark.parametrize("keyword", ["from", "From", "FROM", "fRoM"])
def test_keywords_are_case_insensitive(keyword: str) -> None:
    kubefile = parse(f"{keyword} scratch\nkubeVersion v1\napp a local://a\nLaunch a\n")
    assert kubefile.from_.image == "scratch"
    assert kubefile.kube_version == "v1"


def test_quotes_and_dollars_keep_docker_meaning() -> None:
    env = one("ENV a='$HOME' b=\"$HOME\" c=\\$HOME d=$HOME e='x\\y'")
    assert isinstance(env, Env)
    values = dict(env.items)
    lookup = {"HOME": "/root"}
    assert {k: expand(v, lookup) for k, v in values.items()} == {
        "a": "$HOME",
        "b": "/root",
        "c": "$HOME",
        "d": "/root",
        "e": "x\\y",
    }
    assert values["e"] == "x\\y"  # a literal backslash is not doubled when nothing follows it


def test_continuation_comments_and_blank_lines() -> None:
    text = "FROM scratch\nRUN echo a \\\n  # a comment inside\n\n    b && \\\n  c\nCOPY a b\n"
    kubefile = parse(text)
    run = kubefile.instructions[1]
    assert run == Run("echo a     b &&   c", Span(2, 1, 6, 4))
    assert kubefile.instructions[2].span == Span(7, 1, 7, 9)


def test_continuation_at_end_of_file() -> None:
    kubefile = parse("FROM scratch\nRUN a \\")
    assert kubefile.instructions[1] == Run("a", Span(2, 1, 2, 6))


def test_continuation_right_after_keyword_and_flags() -> None:
    kubefile = parse("FROM scratch\nCOPY \\\n  --chmod=0700 \\\n  a \\\n  b\n")
    assert kubefile.instructions[1] == Copy(("a",), "b", "0700", Span(2, 1, 5, 4))


def test_comments_blank_lines_and_indent() -> None:
    text = "# leading comment\n\n   # indented comment\n  FROM scratch\n\n\tRUN x # not a comment\n"
    kubefile = parse(text)
    assert kubefile.from_ == From("scratch", None, Span(4, 3, 4, 15))
    assert kubefile.instructions[1] == Run("x # not a comment", Span(6, 2, 6, 23))


def test_hash_inside_argument_is_text() -> None:
    assert one("RUN echo '#' # tail") == Run("echo '#' # tail", Span(2, 1, 2, 20))
    assert one("LABEL a=#b") == Label((("a", "#b"),), Span(2, 1, 2, 11))


def test_escape_directive_backtick() -> None:
    text = "# escape=`\nFROM scratch\nCOPY C:\\dir\\ `\n  C:\\dest\\\nRUN a``b\n"
    kubefile = parse(text)
    assert kubefile.escape == "`"
    assert kubefile.instructions[1] == Copy(("C:\\dir\\",), "C:\\dest\\", None, Span(3, 1, 4, 11))
    assert kubefile.instructions[2] == Run("a``b", Span(5, 1, 5, 9))


def test_escape_directive_backslash_and_other_directives() -> None:
    kubefile = parse("# syntax=docker/dockerfile:1\n#  ESCAPE = \\\nFROM scratch\nRUN a \\\n b\n")
    assert kubefile.escape == "\\"
    assert kubefile.instructions[1] == Run("a  b", Span(4, 1, 5, 3))


def test_directive_after_other_line_is_a_comment() -> None:
    kubefile = parse("FROM scratch\n# escape=`\nRUN a \\\n b\n")
    assert kubefile.escape == "\\"


def test_bom_and_crlf_keep_positions() -> None:
    kubefile = parse("\ufeffFROM scratch\r\n\r\nRUN a \\\r\n  b\r\nCOPY x y\r\n")
    assert kubefile.from_.span == Span(1, 1, 1, 13)
    assert kubefile.instructions[1] == Run("a   b", Span(3, 1, 4, 4))
    assert kubefile.instructions[2].span == Span(5, 1, 5, 9)


def test_path_is_kept() -> None:
    assert parse("FROM scratch\n", path="dir/Kubefile").path == "dir/Kubefile"


@pytest.mark.parametrize(
    ("line", "canonical"),
    [
        ("copy  --chmod=0755   a  b   /dest", "COPY --chmod=0755 a b /dest"),
        ('COPY ["a", "b"]', "COPY a b"),
        ('COPY ["a b", "c"]', 'COPY ["a b", "c"]'),
        ("add a b", "ADD a b"),
        ("run   echo  hi  ", "RUN echo  hi"),
        ('RUN ["a","b"]', 'RUN ["a", "b"]'),
        ("cmd x", "CMD x"),
        ("CMDS kubectl apply -f x", 'CMDS ["kubectl apply -f x"]'),
        ("LAUNCH a   b", 'LAUNCH ["a", "b"]'),
        ('ARG a b="1 2"', 'ARG a b="1 2"'),
        ("ENV a=1   b=2", 'ENV a="1" b="2"'),
        ("ENV a 1 2", 'ENV a="1 2"'),
        ('LABEL "k 2"=v', 'LABEL "k 2"="v"'),
        ("maintainer  me ", "MAINTAINER me"),
        ("cni  c   local://a", "CNI c local://a"),
        ("APPCMDS a x", 'APPCMDS a ["x"]'),
        ("APPENV a k=v", 'APPENV a k="v"'),
        ("kubeversion v1", "KUBEVERSION v1"),
    ],
)
def test_canonical(line: str, canonical: str) -> None:
    instruction = one(line)
    assert instruction.canonical() == canonical  # type: ignore[attr-defined]


def test_canonical_from() -> None:
    kubefile = parse("from   --platform=linux/amd64   a:1\n")
    assert kubefile.from_.canonical() == "FROM --platform=linux/amd64 a:1"


def test_keyword_attribute() -> None:
    kubefile = parse("FROM a\nCOPY a b\nADD a b\nCSI c local://x\n")
    assert [i.keyword for i in kubefile.instructions] == ["FROM", "COPY", "ADD", "CSI"]
