"""Every error label, every `_examples.py` entry, the whole-file rules and app references."""

from __future__ import annotations

import pytest

from kubefile_grammar import (
    ConflictingInstruction,
    DuplicateApp,
    DuplicateInstruction,
    InvalidArgument,
    InvalidCharacter,
    InvalidDirective,
    InvalidJSON,
    KubefileError,
    LimitExceeded,
    MisplacedInstruction,
    MissingArgument,
    MissingInstruction,
    UnknownApp,
    UnknownFlag,
    UnknownInstruction,
    UnsupportedSource,
    UnterminatedQuote,
    check_app_references,
    parse,
)
from kubefile_grammar._examples import EXAMPLES, examples
from kubefile_grammar.limits import MAX_KUBEFILE_BYTES


def error(text: str) -> KubefileError:
    with pytest.raises(KubefileError) as info:
        parse(text)
    return info.value


@pytest.mark.parametrize(
    ("text", "cls", "where", "message"),
    [
        (
            "FROM a\nCOPPY a b\n",
            UnknownInstruction,
            (2, 1),
            'unknown instruction "COPPY" (did you mean COPY?)',
        ),
        ("FROM a\n  xyzzy\n", UnknownInstruction, (2, 3), 'unknown instruction "xyzzy"'),
        ("FROMAGE a\n", UnknownInstruction, (1, 1), 'unknown instruction "FROMAGE" (did you mean FROM?)'),
        ("FROM\n", MissingArgument, (1, 1), "FROM needs an argument"),
        ("FROM a\n  RUN   \n", MissingArgument, (2, 3), "RUN needs an argument"),
        ("FROM a\nCOPY --chmod=0755\n", MissingArgument, (2, 1), "COPY needs an argument"),
        ("FROM a\nRUN \\\n", MissingArgument, (2, 1), "RUN needs an argument"),
        ("FROM a\nCOPY a\n", MissingArgument, (2, 6), "COPY needs a source and a destination"),
        ("FROM a\nCOPY --chmod a b\n", MissingArgument, (2, 6), "flag --chmod needs a value"),
        ("FROM a\nAPP x\n", MissingArgument, (2, 5), "APP needs a name and at least one source"),
        ("FROM a\nENV k\n", MissingArgument, (2, 5), "ENV k needs a value"),
        ("FROM a\nLAUNCH []\n", MissingArgument, (2, 8), "LAUNCH needs an app name"),
        ("FROM a\nCMDS []\n", MissingArgument, (2, 6), "CMDS needs a command"),
        ("FROM a\nRUN []\n", MissingArgument, (2, 5), "RUN needs a command"),
        ("FROM a\nAPPCMDS x\n", MissingArgument, (2, 9), "APPCMDS needs commands after the app name"),
        ("FROM a\nAPPENV x\n", MissingArgument, (2, 8), "APPENV needs KEY=VALUE after the app name"),
        ("FROM a b\n", InvalidArgument, (1, 8), "FROM takes one image"),
        ("FROM a AS b\n", InvalidArgument, (1, 8), "FROM takes one image"),
        ("FROM a\nKUBEVERSION v1 v2\n", InvalidArgument, (2, 16), "KUBEVERSION takes one version"),
        ("FROM a\nCOPY --chmod=rwx a b\n", InvalidArgument, (2, 6), 'invalid --chmod mode "rwx"'),
        ("FROM a\nCOPY --chmod=1 --chmod=2 a b\n", InvalidArgument, (2, 16), "flag --chmod is given twice"),
        ("FROM a\nARG 1x\n", InvalidArgument, (2, 5), 'invalid ARG name "1x"'),
        ("FROM a\nENV a=1 b\n", InvalidArgument, (2, 9), '"b" is not KEY=VALUE'),
        ("FROM a\nENV =1\n", InvalidArgument, (2, 5), "empty name before ="),
        ("FROM a\nAPP ../x local://a\n", InvalidArgument, (2, 5), 'invalid app name "../x"'),
        ("FROM a\nLAUNCH a/b\n", InvalidArgument, (2, 8), 'invalid app name "a/b"'),
        (
            'FROM a\nENV a="x \\\n  y\n',
            UnterminatedQuote,
            (2, 7),
            'unterminated quote: " opened here is never closed',
        ),
        (
            "FROM a\nLABEL a='x\n",
            UnterminatedQuote,
            (2, 9),
            "unterminated quote: ' opened here is never closed",
        ),
        ('FROM a\nCMDS ["a",\n', InvalidJSON, (2, 11), "invalid JSON list: Expecting value"),
        ('FROM a\nAPPCMDS x \\\n  ["a", 1]\n', InvalidJSON, (3, 3), "APPCMDS needs a JSON list of strings"),
        ("FROM a\nLAUNCH [a]\n", InvalidJSON, (2, 9), "invalid JSON list: Expecting value"),
        ("FROM --from=x a\n", UnknownFlag, (1, 6), "unknown flag --from for FROM"),
        ("FROM a\nCOPY --from=b a b\n", UnknownFlag, (2, 6), "unknown flag --from for COPY"),
        ("FROM a\nRUN --mount=type=cache x\n", UnknownFlag, (2, 5), "unknown flag --mount for RUN"),
        ("# escape=x\nFROM a\n", InvalidDirective, (1, 1), 'invalid escape character "x"'),
        (
            "# escape=`\n# escape=`\nFROM a\n",
            InvalidDirective,
            (2, 1),
            "only one escape directive may be given",
        ),
        ("", MissingInstruction, (1, 1), "no FROM instruction"),
        ("# only a comment\n\n", MissingInstruction, (1, 1), "no FROM instruction"),
        ("ARG a\n", MissingInstruction, (1, 1), "no FROM instruction"),
        ("ARG a\nCOPY a b\nFROM x\n", MisplacedInstruction, (2, 1), "COPY before FROM"),
        (
            "FROM a\nFROM b\n",
            DuplicateInstruction,
            (2, 1),
            "second FROM (the first is at line 1); a Kubefile has one stage",
        ),
        (
            "FROM a\nKUBEVERSION 1\nKUBEVERSION 2\n",
            DuplicateInstruction,
            (3, 1),
            "second KUBEVERSION (the first is at line 2)",
        ),
        (
            "FROM a\nLAUNCH x\nLAUNCH y\n",
            DuplicateInstruction,
            (3, 1),
            "second LAUNCH (the first is at line 2)",
        ),
        ("FROM a\nCMDS x\nCMDS y\n", DuplicateInstruction, (3, 1), "second CMDS (the first is at line 2)"),
        ("FROM a\nLAUNCH x\nCOPY a b\n", MisplacedInstruction, (3, 1), "COPY after LAUNCH (line 2)"),
        ("FROM a\nCMDS x\nAPP y local://y\n", MisplacedInstruction, (3, 1), "APP after CMDS (line 2)"),
        ("FROM a\nLAUNCH x\nCMDS y\n", ConflictingInstruction, (3, 1), "CMDS together with LAUNCH (line 2)"),
        ("FROM a\nCMD x\nLAUNCH y\n", ConflictingInstruction, (3, 1), "LAUNCH together with CMD (line 2)"),
        (
            "FROM a\nAPP x local://a\nCNI x local://b\n",
            DuplicateApp,
            (3, 1),
            'app "x" is declared twice (first by APP at line 2)',
        ),
        ("FROM a\nAPP x ftp://a\n", UnsupportedSource, (2, 7), 'unsupported source "ftp://a" for APP x'),
        ("FROM a\nCSI x local://a ./b\n", UnsupportedSource, (2, 17), 'unsupported source "./b" for CSI x'),
    ],
)
def test_errors(text: str, cls: type[KubefileError], where: tuple[int, int], message: str) -> None:
    err = error(text)
    assert type(err) is cls
    assert (err.line, err.column) == where
    assert err.message == message
    assert str(err) == f"Kubefile:{where[0]}:{where[1]}: {message}"
    assert err.label == cls.label and err.reference == cls.reference and err.exit_code == 1
    assert err.reference == err.label.replace(" ", "-")


def test_what_may_follow_launch() -> None:
    kubefile = parse(
        "FROM a\nAPP x local://x\nLAUNCH x\nENV a=1\nLABEL b=2\nARG c\nMAINTAINER me\nKUBEVERSION v1\n"
    )
    assert len(kubefile.instructions) == 8
    parse("FROM a\nCMDS x\nCMD y\n")


def test_error_context_and_hint() -> None:
    err = error("FROM a\n\tCOPPY x\n")
    assert err.context == "\tCOPPY x\n\t^"
    assert err.hint is not None and err.hint.startswith("instructions are FROM, COPY")
    err = error('FROM a\nRUN x\nENV a="unterminated\n')
    assert err.context == 'ENV a="unterminated\n      ^'
    assert err.hint is not None


def test_error_path_and_long_line_context() -> None:
    err = error("FROM a\nENV " + "x" * 500 + " 'y\n")
    assert str(err).startswith("deep/Kubefile:") is False
    with pytest.raises(UnterminatedQuote) as info:
        parse("FROM a\nENV " + "x" * 500 + " 'y\n", path="deep/Kubefile")
    assert str(info.value) == "deep/Kubefile:2:506: unterminated quote: ' opened here is never closed"
    line, caret = info.value.context.split("\n")
    assert len(line) == 80 and caret.endswith("^") and line[len(caret) - 1] == "'"


def test_positions_after_crlf_and_continuation() -> None:
    err = error("FROM a\r\nRUN x\r\nENV a=1 \\\r\n  b\r\n")
    assert (err.line, err.column) == (4, 3)
    err = error("# escape=`\r\nFROM a\r\nENV a=1 `\r\n  # comment\r\n  b\r\n")
    assert (err.line, err.column) == (5, 3)


def test_end_of_file_maps_to_last_line() -> None:
    err = error("FROM a\n\nRUN \\\n\n# trailing comment\n")
    assert type(err) is MissingArgument
    assert (err.line, err.column) == (3, 1)


@pytest.mark.parametrize("escape", ["\\", "`"])
@pytest.mark.parametrize(
    ("cls", "snippet"), [(cls, snippet) for cls, snippets in EXAMPLES.items() for snippet in snippets]
)
def test_every_example_gives_its_class(cls: type[KubefileError], snippet: str, escape: str) -> None:
    directive = "# escape=`\n" if escape == "`" else ""
    text = snippet if escape == "\\" else snippet.replace("\\", "`")
    assert text in examples(escape)[cls]
    err = error(directive + text)
    assert type(err) is cls


def test_check_app_references() -> None:
    kubefile = parse(
        "FROM base\nAPP nginx local://n.yaml\nAPPCMDS nginx kubectl apply -f n.yaml\nLAUNCH nginx calico\n"
    )
    check_app_references(kubefile, ["calico"])
    with pytest.raises(UnknownApp) as info:
        check_app_references(kubefile, [])
    err = info.value
    assert str(err) == 'Kubefile:4:1: unknown app "calico" in LAUNCH'
    assert err.hint is not None and "known apps: nginx" in err.hint
    assert err.context == "LAUNCH nginx calico\n^"


def test_app_must_be_declared_before_use() -> None:
    kubefile = parse("FROM base\nAPPENV web A=1\nAPP web local://w\n")
    with pytest.raises(UnknownApp, match='unknown app "web" in APPENV'):
        check_app_references(kubefile, ())
    check_app_references(kubefile, ("web",))


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("\ufeffFROM a\r\nLABEL a=\udcff\r\n", (2, 9), "invalid UTF-8 byte 0xff"),  # BOM and CR not counted
        ("FROM a\nENV a=1 \\\n  b=\udc80\n", (3, 5), "invalid UTF-8 byte 0x80"),
        ("FROM a\nRUN echo \ud800\n", (2, 10), "invalid character U+D800 (a lone surrogate)"),
        ("FROM a\n# \x00 in a comment\n", (2, 3), "NUL character"),
    ],
)
def test_invalid_characters(text: str, where: tuple[int, int], message: str) -> None:
    err = error(text)
    assert type(err) is InvalidCharacter and err.reference == "invalid-character"
    assert str(err) == f"Kubefile:{where[0]}:{where[1]}: {message}"
    assert err.hint is not None and err.context.endswith("^")


def test_size_limit_counts_utf8_bytes() -> None:
    head = "FROM a\nRUN "
    fits = head + "x" * (MAX_KUBEFILE_BYTES - len(head) - 1) + "\n"
    assert len(parse(fits).instructions) == 2
    err = error(head + "é" * (MAX_KUBEFILE_BYTES // 2))  # 2 bytes each: over by len(head)
    assert type(err) is LimitExceeded
    assert (err.line, err.column) == (2, 5 + (MAX_KUBEFILE_BYTES - len(head)) // 2)
