"""griffe extension for the docs build: fence `>>>` examples in docstrings as ```pycon blocks.

A bare doctest in a docstring is Markdown prose to mkdocstrings, so its output lines (`['ei',
'ei_ln']`) read as reference links and fail the strict build. Each run of lines starting with
`>>>` (with their `...` continuations and output, up to a blank line) becomes a fenced block.
"""

from __future__ import annotations

import re

import griffe

_PROMPT = re.compile(r"^(?P<indent>[ \t]*)>>> ")


def fence_doctests(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    in_fence = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        match = None if in_fence else _PROMPT.match(line)
        if match is None:
            out.append(line)
            i += 1
            continue
        indent = match.group("indent")
        block = []
        while i < len(lines) and lines[i].strip():
            block.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        out += [f"{indent}```pycon", *(indent + b for b in block), f"{indent}```"]
    return "\n".join(out)


class FenceDoctests(griffe.Extension):
    """Rewrites every docstring once the object tree is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:  # noqa: ARG002
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
