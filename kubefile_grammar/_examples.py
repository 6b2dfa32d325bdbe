"""The `match_examples` table: bad Kubefile snippets, each labelled with the error it means.

When lark stops, `parser.py` asks lark (`match_examples`) which of these snippets stops
the parser in the same state, and raises that snippet's class.  Lark compares the LR
state and the depth of the parser stack, and an LALR parser reduces a finished line only
when it sees the next token, so the same mistake leaves a different stack after a blank
line, a comment or an instruction, indented or not, on the first line or later: each
snippet is therefore generated after every kind of line.  `parser.py` falls back to the
LR state alone for depths not listed here (e.g. a third flag).
Snippets are written with `\\` as the escape character; `examples` rewrites them for `` ` ``.
"""

from __future__ import annotations

from .errors import KubefileError, MissingArgument, UnknownInstruction

__all__ = ["EXAMPLES", "KEYWORDS", "examples"]

KEYWORDS = (
    "FROM",
    "COPY",
    "ADD",
    "RUN",
    "CMD",
    "CMDS",
    "LAUNCH",
    "ARG",
    "ENV",
    "LABEL",
    "MAINTAINER",
    "APP",
    "CNI",
    "CSI",
    "APPCMDS",
    "APPENV",
    "KUBEVERSION",
)

# Where a line can start: after each kind of line, first or later in the file, indented or not.
_BEFORE = ("", "\n", "  \n", "# c\n", "  # c\n", "FROM a\n", "  FROM a\n")
_LINE_STARTS = tuple(
    dict.fromkeys(
        first + before + indent for first in ("", "FROM a\n") for before in _BEFORE for indent in ("", "  ")
    )
)
# Where an instruction can start: after the parser has reduced the lines before it.
_PLACES = ("", "  ", "FROM a\n", "FROM a\n  ")

EXAMPLES: dict[type[KubefileError], tuple[str, ...]] = {
    # A line that starts with no known keyword.
    UnknownInstruction: tuple(f"{place}COPPY a b\n" for place in _LINE_STARTS),
    # A keyword and nothing else: the state right after each keyword is its own, the
    # states after blanks, flags or a continuation are shared by all instructions.
    MissingArgument: tuple(
        [f"{place}{keyword}\n" for place in _PLACES for keyword in KEYWORDS]
        + [
            f"{place}RUN{rest}"
            for place in _PLACES
            for rest in (
                " \n",
                " \\\n",
                " --flag\n",
                " --flag \n",
                " --flag \\\n",
                " \\\n--flag\n",
                " --flag --flag\n",
                " --flag --flag \n",
            )
        ]
    ),
}


def examples(escape: str) -> dict[type[KubefileError], tuple[str, ...]]:
    """The table for a Kubefile whose escape character is `escape`."""
    if escape == "\\":
        return EXAMPLES
    return {cls: tuple(s.replace("\\", escape) for s in snippets) for cls, snippets in EXAMPLES.items()}
