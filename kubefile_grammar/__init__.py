"""The Kubefile language: grammar, typed instructions, parse errors and variable expansion.

Public names: `parse` (text -> `Kubefile`), `Kubefile`, `Span`, one dataclass per
instruction (`From`, `Copy`, `Add`, `Run`, `Cmd`, `Cmds`, `Launch`, `Arg`, `Env`, `Label`,
`Maintainer`, `App`, `AppCmds`, `AppEnv`, `KubeVersion`), `KubefileError` and its subclasses,
`expand` (Dockerfile-style `$VAR` expansion), `check_app_references`, and the size and
nesting caps in `kubefile_grammar.limits`.
Pure: no I/O, and nothing of `builder` is imported here.
"""

from __future__ import annotations

from .errors import (
    BadSubstitution,
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
    UnexpectedToken,
    UnknownApp,
    UnknownFlag,
    UnknownInstruction,
    UnsupportedSource,
    UnterminatedQuote,
)
from .expansion import expand
from .instructions import (
    SYNTAX,
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
    Instruction,
    Kubefile,
    KubeVersion,
    Label,
    Launch,
    Maintainer,
    Run,
    Span,
)
from .parser import parse
from .rules import check_app_references

__all__ = [
    "SYNTAX",
    "Add",
    "App",
    "AppCmds",
    "AppEnv",
    "Arg",
    "BadSubstitution",
    "Cmd",
    "Cmds",
    "ConflictingInstruction",
    "Copy",
    "DuplicateApp",
    "DuplicateInstruction",
    "Env",
    "From",
    "Instruction",
    "InvalidArgument",
    "InvalidCharacter",
    "InvalidDirective",
    "InvalidJSON",
    "KubeVersion",
    "Kubefile",
    "KubefileError",
    "Label",
    "Launch",
    "LimitExceeded",
    "Maintainer",
    "MisplacedInstruction",
    "MissingArgument",
    "MissingInstruction",
    "Run",
    "Span",
    "UnexpectedToken",
    "UnknownApp",
    "UnknownFlag",
    "UnknownInstruction",
    "UnsupportedSource",
    "UnterminatedQuote",
    "check_app_references",
    "expand",
    "parse",
]
