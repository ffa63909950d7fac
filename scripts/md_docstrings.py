"""Rewrite the package's docstrings from reStructuredText habits into the Markdown dialect Keras
writes (keras-hub's STYLE_GUIDE), which mkdocstrings renders as written.

    python scripts/md_docstrings.py            # rewrite ei_keras/ and ei_keras_cli.py in place
    python scripts/md_docstrings.py --check    # list what would change; exit 1 if anything

Only docstrings change (found with `ast`: the first string of a module, class or function);
code, comments and other strings are left alone, byte for byte. Idempotent: a second run
changes nothing, so it can be run again on a tree merged from other branches. In each
docstring, outside ```` ``` ```` fences:

- a Sphinx role ``:class:`~pkg.mod.Name` `` (also `:func:`, `:meth:`, `:mod:`, `:data:`,
  `:attr:`, `:exc:`, `:obj:`, `:py:...:`) becomes the code span `` `pkg.mod.Name` `` (`~`
  dropped; `` `title <target>` `` keeps the title);
- a reST literal ``` ``x`` ``` becomes the Markdown code span `` `x` ``;
- a paragraph ending in `::` followed by an indented block becomes a paragraph ending in `:`
  and a fenced block (`bash` for command lines, `json` for a JSON object, else `python`);
- the same inline conversions in `#:` comments (attribute documentation);
- a doctest directive comment (`# doctest: +SKIP`) is removed from `>>>` lines (the docs
  test runs every example anyway).

What it cannot decide (prose argument lists, reST tables, `Input shape:` sections) is fixed by
hand; `tests/test_docs.py::test_no_rest_markup_in_docstrings_or_pages` fails on any role left.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const|func):`~?"
                  r"(?P<body>[^`]+)`")
LITERAL = re.compile(r"(?<![`\\])``(?!`)(?P<body>[^`]+?)``(?!`)")
DIRECTIVE = re.compile(r"[ \t]*#\s*doctest:\s*[+-]\w+(?:\s*,\s*[+-]\w+)*[ \t]*$")
RST_TABLE = re.compile(r"^[ \t]*=+(?:[ \t]+=+)+[ \t]*$")
SHELL = re.compile(r"^(ei-keras|python|make|bash|pip|export|\$|[A-Z_]+=)")


def _role(match: re.Match) -> str:
    body = match.group("body")
    titled = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", body)
    return f"`{(titled.group('title') if titled else body).lstrip('~')}`"


def _closes_table(lines: list[str], i: int) -> bool:
    """Whether the rule line `i` is a reST table's last (the next line is not a table row)."""
    return i + 1 >= len(lines) or not lines[i + 1].strip()


def _language(block: list[str]) -> str:
    first = next(line.strip() for line in block if line.strip())
    if first.startswith(("{", "[")):
        return "json"
    return "bash" if SHELL.match(first) else "python"


def _inline(prose: list[str]) -> list[str]:
    """Roles and reST literals of a run of prose lines (a literal may span a line break)."""
    if not prose:
        return []
    text = LITERAL.sub(r"`\g<body>`", ROLE.sub(_role, "\n".join(prose)))
    return text.split("\n")


def convert(doc: str) -> str:
    """The docstring `doc` (raw, as in the source) in the Markdown dialect."""
    lines = doc.split("\n")
    out: list[str] = []
    prose: list[str] = []
    fence = None
    i = 0

    def flush() -> None:
        out.extend(_inline(prose))
        prose.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith("```"):
            flush()
            fence = None if fence is not None else stripped
            out.append(line)
            i += 1
            continue
        if fence is None and RST_TABLE.match(line):
            flush()  # a reST table: left alone, converted by hand to a Markdown table
            fence = "table"
            out.append(line)
            i += 1
            continue
        if fence == "table" and RST_TABLE.match(line) and _closes_table(lines, i):
            fence = None
            out.append(line)
            i += 1
            continue
        if fence is not None:
            out.append(line)
            i += 1
            continue
        if stripped.startswith(">>>"):
            flush()
            out.append(DIRECTIVE.sub("", line))
            i += 1
            continue
        if not stripped:
            flush()
            out.append(line)
            i += 1
            continue
        if line.rstrip().endswith("::") and not line.rstrip().endswith(":::"):
            indent = len(line) - len(line.lstrip())
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            block_indent = len(lines[j]) - len(lines[j].lstrip()) if j < len(lines) else 0
            if j < len(lines) and block_indent > indent:
                end = j
                while end < len(lines) and (not lines[end].strip() or
                                            len(lines[end]) - len(lines[end].lstrip()) > indent):
                    end += 1
                while end > j and not lines[end - 1].strip():
                    end -= 1
                block = [ln[block_indent:] if ln.strip() else "" for ln in lines[j:end]]
                head = line.rstrip()[:-2].rstrip()
                if head.strip():
                    prose.append(f"{head}:")
                flush()
                pad = " " * indent
                out += ["", f"{pad}```{_language(block)}",
                        *(pad + b if b else "" for b in block), f"{pad}```"]
                i = end
                continue
        prose.append(line)
        i += 1
    flush()
    return "\n".join(out)


def _docstring_nodes(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                yield body[0].value


def rewrite(source: str) -> str:
    """`source` with every docstring converted; everything else unchanged."""
    tree = ast.parse(source)
    offsets = [0]
    for line in source.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    edits = []
    for node in _docstring_nodes(tree):
        start = offsets[node.lineno - 1] + len(
            source.splitlines(keepends=True)[node.lineno - 1].encode()[:node.col_offset].decode())
        end = offsets[node.end_lineno - 1] + len(
            source.splitlines(keepends=True)[node.end_lineno - 1]
            .encode()[:node.end_col_offset].decode())
        literal = source[start:end]
        match = re.fullmatch(r"(?P<prefix>[rRuU]?)(?P<quote>\"\"\"|''')(?P<body>.*)(?P=quote)",
                             literal, re.DOTALL)
        if match is None:  # a one-quote string: nothing multi-line to convert
            continue
        body = match.group("body")
        new = convert(body)
        if new != body:  # the source text itself: escapes stay as written
            edits.append((start, end, f"{match.group('prefix')}{match.group('quote')}{new}"
                                      f"{match.group('quote')}"))
    for start, end, text in sorted(edits, reverse=True):
        source = source[:start] + text + source[end:]
    # `#:` comments (Sphinx's attribute documentation) get the same inline conversions.
    return re.sub(r"(?m)^(?P<head>[ \t]*#:)(?P<text>.*)$",
                  lambda m: m.group("head") + _inline([m.group("text")])[0],
                  source)


def files() -> list[Path]:
    return [*sorted((ROOT / "ei_keras").rglob("*.py")), ROOT / "ei_keras_cli.py"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file "
                        "would change")
    args = parser.parse_args(argv)
    changed = []
    for path in files():
        old = path.read_text(encoding="utf-8")
        new = rewrite(old)
        if new != old:
            changed.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(new, encoding="utf-8")
    verb = "would change" if args.check else "changed"
    for path in changed:
        print(f"{verb}: {path}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
