"""Whole-file Kubefile rules, checked on the typed instructions after parsing.

`check_rules` runs inside `parse`; `check_app_references` is for the build, which alone
knows the apps inherited from the base image.  Both raise with the offending
instruction's position.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import (
    ConflictingInstruction,
    DuplicateApp,
    DuplicateInstruction,
    KubefileError,
    MisplacedInstruction,
    MissingInstruction,
    UnknownApp,
)
from .instructions import (
    Add,
    App,
    AppCmds,
    AppEnv,
    Arg,
    Cmd,
    Cmds,
    Copy,
    From,
    Instruction,
    Kubefile,
    KubeVersion,
    Launch,
    Run,
)

__all__ = ["check_app_references", "check_rules"]

# What LAUNCH and CMDS may not precede: instructions that add a layer or declare or
# configure an app.  ENV, LABEL, ARG, MAINTAINER, KUBEVERSION and CMD only touch the
# image config, so they may still follow.
_NOT_AFTER_LAUNCH = (Copy, Add, Run, App, AppCmds, AppEnv)


def _at(cls: type[KubefileError], instruction: Instruction, message: str, hint: str) -> KubefileError:
    return cls(message, hint=hint, line=instruction.span.line, column=instruction.span.column)


def check_rules(kubefile: Kubefile) -> None:
    """Check the sealer rules that need the whole file; raise the first broken one.

    - there is exactly one FROM, and only ARG comes before it;
    - KUBEVERSION, LAUNCH and CMDS appear at most once each;
    - LAUNCH and CMDS exclude each other, and CMD excludes LAUNCH (one launch mode);
    - once LAUNCH or CMDS has appeared, no COPY, ADD, RUN, APP, CNI, CSI, APPCMDS or
      APPENV may follow (ENV, LABEL, ARG, MAINTAINER, KUBEVERSION and CMD still may);
    - no two APP/CNI/CSI declare the same app name.
    """
    instructions = kubefile.instructions
    if not any(isinstance(i, From) for i in instructions):
        raise MissingInstruction(
            "no FROM instruction",
            hint="a Kubefile starts with FROM IMAGE (or FROM scratch); only ARG may precede it",
        )
    seen: dict[type, Instruction] = {}
    apps: dict[str, App] = {}
    for instruction in instructions:
        kind = type(instruction)
        if From not in seen and not isinstance(instruction, (From, Arg)):
            raise _at(
                MisplacedInstruction,
                instruction,
                f"{instruction.keyword} before FROM",
                "only ARG may come before FROM",
            )
        if kind in (From, KubeVersion, Launch, Cmds) and kind in seen:
            first = seen[kind]
            more = "; a Kubefile has one stage" if kind is From else ""
            raise _at(
                DuplicateInstruction,
                instruction,
                f"second {instruction.keyword} (the first is at line {first.span.line}){more}",
                f"{instruction.keyword} may appear only once",
            )
        launcher = seen.get(Launch) or seen.get(Cmds)
        if launcher is not None and isinstance(instruction, _NOT_AFTER_LAUNCH):
            raise _at(
                MisplacedInstruction,
                instruction,
                f"{instruction.keyword} after {launcher.keyword} (line {launcher.span.line})",
                "LAUNCH and CMDS come after every COPY, ADD, RUN, APP, CNI, CSI, APPCMDS and APPENV",
            )
        for a, b in ((Launch, Cmds), (Cmds, Launch), (Cmd, Launch), (Launch, Cmd)):
            if kind is a and b in seen:
                raise _at(
                    ConflictingInstruction,
                    instruction,
                    f"{instruction.keyword} together with {seen[b].keyword} (line {seen[b].span.line})",
                    "use one launch mode: LAUNCH apps, or CMDS (and CMD) commands",
                )
        if isinstance(instruction, App):
            if instruction.name in apps:
                first_app = apps[instruction.name]
                raise _at(
                    DuplicateApp,
                    instruction,
                    f'app "{instruction.name}" is declared twice (first by {first_app.kind} at line {first_app.span.line})',
                    "give each APP, CNI and CSI its own name",
                )
            apps[instruction.name] = instruction
        seen.setdefault(kind, instruction)


def check_app_references(kubefile: Kubefile, inherited_apps: Iterable[str]) -> None:
    """Check that APPCMDS, APPENV and LAUNCH name apps declared earlier or inherited.

    An app counts as declared from its APP/CNI/CSI instruction on; `inherited_apps` are
    the apps of the base image.  Raises UnknownApp at the first offending instruction,
    with a hint listing the apps known at that point.
    """
    known = list(dict.fromkeys(inherited_apps))
    for instruction in kubefile.instructions:
        if isinstance(instruction, App):
            known.append(instruction.name)
            continue
        if isinstance(instruction, (AppCmds, AppEnv)):
            names: tuple[str, ...] = (instruction.app_name,)
        elif isinstance(instruction, Launch):
            names = instruction.app_names
        else:
            continue
        for name in names:
            if name not in known:
                apps = ", ".join(known) if known else "none"
                raise _at(
                    UnknownApp,
                    instruction,
                    f'unknown app "{name}" in {instruction.keyword}',
                    f"known apps: {apps}; declare it earlier with APP, CNI or CSI, or inherit it from the base image",
                ).with_source(kubefile.path, kubefile.source)
