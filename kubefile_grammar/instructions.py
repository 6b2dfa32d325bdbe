"""Typed Kubefile instructions: one frozen, slotted dataclass per instruction, and `Kubefile`.

Strings are kept as written (unexpanded): the build decides which variables are visible
and calls `kubefile_grammar.expand`.  KEY=VALUE values (ENV, LABEL, APPENV, ARG defaults)
have their quotes removed already; a `$` that Docker would not expand there (single
quotes, `\\$`) is kept as escape + `$`, so `expand` turns it into a plain `$`.

`canonical()` gives the one-line form the build cache keys on: keyword in upper case,
arguments normalised (JSON forms re-serialised with `json.dumps`, values quoted), so two
spellings of the same instruction give the same key and different ones never do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import ClassVar, Literal, TypeAlias

__all__ = [
    "SYNTAX",
    "Add",
    "App",
    "AppCmds",
    "AppEnv",
    "Arg",
    "Cmd",
    "Cmds",
    "Copy",
    "Env",
    "From",
    "Instruction",
    "KubeVersion",
    "Kubefile",
    "Label",
    "Launch",
    "Maintainer",
    "Run",
    "Span",
]

_BARE = re.compile(r"[^\s=\"'\\]+")


def _word(value: str) -> str:
    """Quote `value` unless it is one plain word, so canonical forms stay unambiguous."""
    return value if _BARE.fullmatch(value) else json.dumps(value)


def _pairs(items: tuple[tuple[str, str], ...]) -> str:
    return " ".join(f"{_word(k)}={json.dumps(v)}" for k, v in items)


def _command(command: str | tuple[str, ...]) -> str:
    return command if isinstance(command, str) else json.dumps(list(command))


@dataclass(frozen=True, slots=True)
class Span:
    """Where an instruction sits: 1-based lines and columns, `end_column` one past the last character."""

    line: int
    column: int
    end_line: int
    end_column: int


@dataclass(frozen=True, slots=True)
class From:
    """`FROM [--platform=P] scratch | NAME[:TAG|@DIGEST]`."""

    keyword: ClassVar[str] = "FROM"
    image: str
    platform: str | None
    span: Span

    def canonical(self) -> str:
        flag = f"--platform={self.platform} " if self.platform is not None else ""
        return f"FROM {flag}{self.image}"


@dataclass(frozen=True, slots=True)
class Copy:
    """`COPY [--chmod=MODE] SRC... DEST` (or the JSON-array form)."""

    keyword: ClassVar[str] = "COPY"
    sources: tuple[str, ...]
    dest: str
    chmod: str | None
    span: Span

    def canonical(self) -> str:
        return _copy_canonical(self.keyword, self.sources, self.dest, self.chmod)


@dataclass(frozen=True, slots=True)
class Add:
    """`ADD [--chmod=MODE] SRC... DEST`: same shape as COPY, kept a separate class on purpose."""

    keyword: ClassVar[str] = "ADD"
    sources: tuple[str, ...]
    dest: str
    chmod: str | None
    span: Span

    def canonical(self) -> str:
        return _copy_canonical(self.keyword, self.sources, self.dest, self.chmod)


def _copy_canonical(keyword: str, sources: tuple[str, ...], dest: str, chmod: str | None) -> str:
    flag = f"--chmod={chmod} " if chmod is not None else ""
    paths = [*sources, dest]
    if all(_BARE.fullmatch(p) for p in paths):
        return f"{keyword} {flag}{' '.join(paths)}"
    return f"{keyword} {flag}{json.dumps(paths)}"


@dataclass(frozen=True, slots=True)
class Run:
    """`RUN command` (shell form, a str) or `RUN ["exe", "arg"]` (exec form, a tuple)."""

    keyword: ClassVar[str] = "RUN"
    command: str | tuple[str, ...]
    span: Span

    def canonical(self) -> str:
        return f"RUN {_command(self.command)}"


@dataclass(frozen=True, slots=True)
class Cmd:
    """`CMD command` (shell form, a str) or `CMD ["exe", "arg"]` (exec form, a tuple)."""

    keyword: ClassVar[str] = "CMD"
    command: str | tuple[str, ...]
    span: Span

    def canonical(self) -> str:
        return f"CMD {_command(self.command)}"


@dataclass(frozen=True, slots=True)
class Cmds:
    """`CMDS ["cmd 1", "cmd 2"]` or `CMDS one shell command`: the commands run at launch."""

    keyword: ClassVar[str] = "CMDS"
    commands: tuple[str, ...]
    span: Span

    def canonical(self) -> str:
        return f"CMDS {json.dumps(list(self.commands))}"


@dataclass(frozen=True, slots=True)
class Launch:
    """`LAUNCH ["app1", "app2"]` or `LAUNCH app1 app2`: the apps started at launch, in order."""

    keyword: ClassVar[str] = "LAUNCH"
    app_names: tuple[str, ...]
    span: Span

    def canonical(self) -> str:
        return f"LAUNCH {json.dumps(list(self.app_names))}"


@dataclass(frozen=True, slots=True)
class Arg:
    """`ARG name[=default] ...`: `None` when no default is given."""

    keyword: ClassVar[str] = "ARG"
    items: tuple[tuple[str, str | None], ...]
    span: Span

    def canonical(self) -> str:
        words = (name if value is None else f"{name}={json.dumps(value)}" for name, value in self.items)
        return "ARG " + " ".join(words)


@dataclass(frozen=True, slots=True)
class Env:
    """`ENV k=v ...` or legacy `ENV k v with spaces`."""

    keyword: ClassVar[str] = "ENV"
    items: tuple[tuple[str, str], ...]
    span: Span

    def canonical(self) -> str:
        return f"ENV {_pairs(self.items)}"


@dataclass(frozen=True, slots=True)
class Label:
    """`LABEL k=v "k 2"="v" ...`."""

    keyword: ClassVar[str] = "LABEL"
    items: tuple[tuple[str, str], ...]
    span: Span

    def canonical(self) -> str:
        return f"LABEL {_pairs(self.items)}"


@dataclass(frozen=True, slots=True)
class Maintainer:
    """`MAINTAINER name <mail>` (kept as written, blanks at the ends stripped)."""

    keyword: ClassVar[str] = "MAINTAINER"
    name: str
    span: Span

    def canonical(self) -> str:
        return f"MAINTAINER {self.name}"


@dataclass(frozen=True, slots=True)
class App:
    """`APP|CNI|CSI name source...`: sources are local://, http:// or https:// URLs."""

    kind: Literal["APP", "CNI", "CSI"]
    name: str
    sources: tuple[str, ...]
    span: Span

    @property
    def keyword(self) -> str:
        return self.kind

    def canonical(self) -> str:
        return f"{self.kind} {self.name} {' '.join(self.sources)}"


@dataclass(frozen=True, slots=True)
class AppCmds:
    """`APPCMDS app ["cmd 1", "cmd 2"]` or `APPCMDS app one shell command`."""

    keyword: ClassVar[str] = "APPCMDS"
    app_name: str
    commands: tuple[str, ...]
    span: Span

    def canonical(self) -> str:
        return f"APPCMDS {self.app_name} {json.dumps(list(self.commands))}"


@dataclass(frozen=True, slots=True)
class AppEnv:
    """`APPENV app k=v k2="v 2"`: environment for one app's commands."""

    keyword: ClassVar[str] = "APPENV"
    app_name: str
    items: tuple[tuple[str, str], ...]
    span: Span

    def canonical(self) -> str:
        return f"APPENV {self.app_name} {_pairs(self.items)}"


@dataclass(frozen=True, slots=True)
class KubeVersion:
    """`KUBEVERSION v1.22.15`: the Kubernetes version the image supports."""

    keyword: ClassVar[str] = "KUBEVERSION"
    version: str
    span: Span

    def canonical(self) -> str:
        return f"KUBEVERSION {self.version}"


# How each instruction is written: used in hints and in docs/kubefile.md.
SYNTAX: dict[str, str] = {
    "FROM": "FROM [--platform=PLATFORM] scratch|IMAGE[:TAG|@DIGEST]",
    "COPY": 'COPY [--chmod=MODE] SRC... DEST  or  COPY [--chmod=MODE] ["SRC", ..., "DEST"]',
    "ADD": 'ADD [--chmod=MODE] SRC... DEST  or  ADD [--chmod=MODE] ["SRC", ..., "DEST"]',
    "RUN": 'RUN COMMAND  or  RUN ["EXECUTABLE", "ARG", ...]',
    "CMD": 'CMD COMMAND  or  CMD ["EXECUTABLE", "ARG", ...]',
    "CMDS": 'CMDS ["COMMAND", ...]  or  CMDS COMMAND',
    "LAUNCH": 'LAUNCH ["APP", ...]  or  LAUNCH APP...',
    "ARG": "ARG NAME[=DEFAULT]...",
    "ENV": "ENV KEY=VALUE...  or  ENV KEY VALUE",
    "LABEL": "LABEL KEY=VALUE...  or  LABEL KEY VALUE",
    "MAINTAINER": "MAINTAINER NAME",
    "APP": "APP NAME SOURCE...  (SOURCE: local://PATH, http://URL or https://URL)",
    "CNI": "CNI NAME SOURCE...  (SOURCE: local://PATH, http://URL or https://URL)",
    "CSI": "CSI NAME SOURCE...  (SOURCE: local://PATH, http://URL or https://URL)",
    "APPCMDS": 'APPCMDS APP ["COMMAND", ...]  or  APPCMDS APP COMMAND',
    "APPENV": "APPENV APP KEY=VALUE...",
    "KUBEVERSION": "KUBEVERSION VERSION",
}

Instruction: TypeAlias = (
    From
    | Copy
    | Add
    | Run
    | Cmd
    | Cmds
    | Launch
    | Arg
    | Env
    | Label
    | Maintainer
    | App
    | AppCmds
    | AppEnv
    | KubeVersion
)


@dataclass(frozen=True, slots=True)
class Kubefile:
    """A parsed Kubefile: its path, its instructions in order and its escape character."""

    path: str
    instructions: tuple[Instruction, ...]
    escape: str = "\\"
    source: str = field(default="", repr=False, compare=False)  # the parsed text, for error excerpts

    @property
    def from_(self) -> From:
        """The FROM instruction (`parse` guarantees there is exactly one)."""
        for instruction in self.instructions:
            if isinstance(instruction, From):
                return instruction
        # Only a Kubefile built by hand can get here; parse() refuses a file without FROM.
        raise LookupError(f"{self.path} has no FROM instruction")

    @property
    def apps(self) -> tuple[App, ...]:
        """The APP, CNI and CSI instructions, in order."""
        return tuple(i for i in self.instructions if isinstance(i, App))

    @property
    def kube_version(self) -> str | None:
        """The KUBEVERSION argument, or None."""
        for instruction in self.instructions:
            if isinstance(instruction, KubeVersion):
                return instruction.version
        return None
