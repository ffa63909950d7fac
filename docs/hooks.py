"""mkdocs hook: the Results page shows the README's results section, taken from README.md at
build time (one copy of the numbers, in the README).

A page holding the line `<!-- README: <section title> -->` gets that `## <section title>`
section of README.md in its place. Links into docs/ are made relative to the docs folder;
links to other files of the repository become plain code text (the site does not serve them).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- README: (?P<title>.+?) -->$", re.MULTILINE)
LINK = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)\)")


def readme_section(title: str) -> str:
    """The `## title` section of README.md, without its heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}[ \t]*\n(?P<body>.*?)(?=^## |\Z)", text,
                      re.MULTILINE | re.DOTALL)
    if match is None:
        raise ValueError(f"README.md has no section '## {title}' (docs/results.md asks for it)")
    return match.group("body")


def _relink(match: re.Match) -> str:
    target = match.group("target")
    if re.match(r"^[a-z]+://|^#|^mailto:", target):
        return match.group(0)
    if target.startswith("docs/"):
        return f"{match.group('bang')}[{match.group('text')}]({target[len('docs/'):]})"
    return f"{match.group('text')} (`{target}`)"


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001
    return MARKER.sub(lambda m: LINK.sub(_relink, readme_section(m.group("title"))), markdown)
