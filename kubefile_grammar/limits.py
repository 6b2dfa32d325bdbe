"""The size and depth limits a Kubefile is held to, in one place (docs/kubefile.md states them).

A Kubefile is often fetched with its context from elsewhere, so its text is hostile until
parsed. These caps turn what would be unbounded memory or a RecursionError into a
`LimitExceeded` error at the line that crosses the limit. Each sits far above anything a real
Kubefile needs (sealer's own base Kubefiles are under 2 KiB and nest `${...}` at most twice).
"""

from __future__ import annotations

__all__ = [
    "MAX_EXPANSION_CHARS",
    "MAX_KUBEFILE_BYTES",
    "MAX_NESTING",
    "MAX_TOTAL_EXPANSION_CHARS",
]

# The Kubefile's size in UTF-8. Parsing is linear, ~3.5 s per MiB of short instructions on
# this class of machine, so 1 MiB keeps even a hostile file's parse within seconds while
# leaving room for long inline scripts (a RUN or CMDS of hundreds of KiB).
MAX_KUBEFILE_BYTES = 1 << 20

# One `expand` call: the characters it produces, counting values of variables and the
# defaults it evaluates. Without it 40 `ARG An=${Am}${Am}` lines ask for 4 TiB.
MAX_EXPANSION_CHARS = 1 << 20

# All expansions of one build plan (one platform) together: the per-value cap alone still lets
# a thousand `ENV Xn=$BIG` lines hold a GiB.
MAX_TOTAL_EXPANSION_CHARS = 16 << 20

# `${A:-${B:-...}}` nesting. Expansion recurses three frames per level, so 64 levels stay far
# below Python's recursion limit whoever the caller is.
MAX_NESTING = 64
