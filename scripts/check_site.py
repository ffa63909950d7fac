"""Check the built docs site (`make docs` runs it after `mkdocs build`): no raw reStructuredText
left in what a reader sees, and no code line that can run past its box.

    python scripts/check_site.py site

Each HTML page's visible text (tags removed, entities decoded) must hold no Sphinx role
(`:class:`, `:func:`, ...), no doctest directive (`# doctest: +SKIP`) and no reST literal
(` ``x`` `); each page must load the stylesheet that wraps long code lines
(`docs/stylesheets/extra.css`: `white-space: pre-wrap` on `pre > code`), which is what keeps
code from being cut off at the box edge. Prints one line per problem; exit 1 if any.
The same markup rules are checked on the sources by `tests/test_docs.py` (no docs tools needed).
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

#: Raw markup that must not reach a page (also imported by tests/test_docs.py).
RAW_MARKUP = {
    "Sphinx role": re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):(?=\S)"),
    "doctest directive": re.compile(r"#\s*doctest:"),
    "reST literal": re.compile(r"(?<!`)``(?!`)[^`\n]+``(?!`)"),
}
WRAP_RULE = re.compile(r"pre\s*>\s*code\s*\{[^}]*white-space:\s*pre-wrap", re.DOTALL)


def visible_text(page: str) -> str:
    page = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", page)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def problems(site: Path) -> list[str]:
    found = []
    css = site / "stylesheets" / "extra.css"
    if not css.is_file() or not WRAP_RULE.search(css.read_text(encoding="utf-8")):
        found.append(f"{css}: missing the rule that wraps long code lines")
    pages = sorted(site.rglob("*.html"))
    if not pages:
        found.append(f"{site}: no HTML pages (build the site first: make docs)")
    for page in pages:
        text = page.read_text(encoding="utf-8")
        if "<pre" in text and "stylesheets/extra.css" not in text:
            found.append(f"{page}: code blocks without the line-wrapping stylesheet")
        visible = visible_text(text)
        for what, pattern in RAW_MARKUP.items():
            for match in pattern.finditer(visible):
                line = visible[:match.start()].count("\n") + 1
                found.append(f"{page}:{line}: {what} {match.group(0)!r}")
    return found


def main(argv: list[str]) -> int:
    site = Path(argv[0] if argv else "site")
    found = problems(site)
    for line in found:
        print(line)
    pages = len(list(site.rglob("*.html")))
    print(f"{'FAILED' if found else 'ok'}: {pages} pages checked, {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
