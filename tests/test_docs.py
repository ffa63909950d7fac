"""Every example in the documentation runs, under every backend, and shows what it says.

Collected statically (no import needed to find them):

- the ```` ```python ```` blocks of every docstring in `ei_keras/` (the keras-hub dialect,
  `Example:` sections) and the `>>>` examples (doctest; a `+SKIP` directive is ignored:
  every example runs);
- the ```` ```python ```` blocks of the docs site's pages `docs/*.md`.

Each docstring's blocks run in order in one namespace that starts with `import ei_keras` only
(examples use full public paths); each page's blocks run in order in one namespace, like a
tutorial. Examples run in a fresh folder that holds a link to the checkout's `tuner_configs/`,
as a user's working copy does. A line `expression  # value` whose comment is a Python literal
is an assertion: the expression must equal the literal (floats to 1e-6 relative); other
comments (`# PosixPath('/home/me/...')`) are illustration. In doctests a tensor's shape is
compared as a tuple: TensorFlow prints `TensorShape([2, 16])` and torch `torch.Size([2, 16])`
for the `(2, 16)` JAX prints, and all three equal `(2, 16)`.
"""

from __future__ import annotations

import ast
import doctest
import io
import math
import os
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ei_keras"
PAGES = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.MULTILINE | re.DOTALL)


_SHAPE = re.compile(r"(?:TensorShape|torch\.Size)\(\[([^\]]*)\]\)")


def _as_tuple(match: re.Match) -> str:
    dims = [d.strip() for d in match.group(1).split(",") if d.strip()]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


class _ShapeAsTuple(doctest.OutputChecker):
    """Compares a backend's shape object as the tuple it equals."""

    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        return super().check_output(want, _SHAPE.sub(_as_tuple, got), optionflags)


@dataclass(frozen=True)
class Example:
    """The python blocks of one docstring or page, or one docstring's doctest."""

    where: str
    blocks: tuple[str, ...] = ()
    doctest_source: str | None = None
    first_line: int = 0


def _blocks(text: str) -> list[str]:
    import textwrap

    return [textwrap.dedent(m.group("body")) for m in FENCE.finditer(text)]


def _docstrings(path: Path):
    """(qualified name, docstring, line) of the module and every class and function in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}.{child.name}"
                doc = ast.get_docstring(child, clean=True)
                if doc:
                    yield name, doc, child.lineno
                yield from walk(child, name)

    doc = ast.get_docstring(tree, clean=True)
    if doc:
        yield module, doc, 1
    yield from walk(tree, module)


def collect() -> list[Example]:
    found: list[Example] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for name, doc, line in _docstrings(path):
            blocks = _blocks(doc)
            if blocks:
                found.append(Example(name, tuple(blocks), first_line=line))
            if ">>>" in doc:
                found.append(Example(name + " (doctest)", doctest_source=doc, first_line=line))
    for page in sorted(PAGES.glob("*.md")):
        blocks = _blocks(page.read_text(encoding="utf-8"))
        if blocks:
            found.append(Example(f"docs/{page.name}", tuple(blocks)))
    return found


EXAMPLES = collect()


def _expected_values(source: str) -> dict[int, object]:
    """{line: literal} for lines `expression  # literal`."""
    out: dict[int, object] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string[1:].strip()
            try:
                out[tok.start[0]] = ast.literal_eval(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
    return out


def _equal(actual: object, expected: object) -> bool:
    if isinstance(expected, float) and not isinstance(actual, str):
        try:
            return math.isclose(float(actual), expected, rel_tol=1e-6, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    if isinstance(expected, (tuple, list)) and isinstance(actual, (tuple, list)):
        return len(actual) == len(expected) and all(map(_equal, actual, expected))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return actual.keys() == expected.keys() and all(
            _equal(actual[k], expected[k]) for k in expected)
    return actual == expected


def run_block(source: str, namespace: dict, where: str) -> int:
    """Execute one block; check `expression  # literal` lines. Returns the number of checks."""
    expected = _expected_values(source)
    tree = ast.parse(source, filename=where)
    checks = 0
    for stmt in tree.body:
        code = compile(ast.Module([stmt], type_ignores=[]), where, "exec")
        if isinstance(stmt, ast.Expr) and stmt.end_lineno in expected:
            value = eval(compile(ast.Expression(stmt.value), where, "eval"), namespace)
            want = expected[stmt.end_lineno]
            assert _equal(value, want), (
                f"{where}, line {stmt.end_lineno}: {ast.unparse(stmt.value)} is {value!r}, "
                f"the example says {want!r}")
            checks += 1
        else:
            exec(code, namespace)
    return checks


@pytest.fixture
def example_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "tuner_configs").symlink_to(ROOT / "ei_keras" / "tuner_configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return tmp_path


def test_examples_were_found() -> None:
    pages = [e for e in EXAMPLES if e.where.startswith("docs/")]
    assert len(pages) >= 7, [e.where for e in pages]  # one per concept page at least
    assert sum(len(e.blocks) or 1 for e in EXAMPLES) >= 35  # 38 when this was written


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.where for e in EXAMPLES])
def test_example(example: Example, example_folder: Path, request) -> None:
    if any("keras_tuner" in text or "run_sweep" in text
           for text in (*example.blocks, example.doctest_source or "")):
        request.getfixturevalue("frozen_gc")  # a KerasTuner search in this process
    if example.doctest_source is not None:
        # Every example runs: a `+SKIP` directive is dropped, not obeyed.
        source = re.sub(r"#\s*doctest:\s*\+SKIP", "", example.doctest_source)
        test = doctest.DocTestParser().get_doctest(source, {}, example.where, None,
                                                   example.first_line)
        runner = doctest.DocTestRunner(checker=_ShapeAsTuple(), optionflags=doctest.ELLIPSIS
                                       | doctest.NORMALIZE_WHITESPACE)
        out = io.StringIO()
        result = runner.run(test, out=out.write)
        assert result.failed == 0, out.getvalue()
        assert result.attempted > 0
        return
    import ei_keras

    namespace: dict = {"ei_keras": ei_keras, "__name__": "__example__"}
    for i, block in enumerate(example.blocks):
        run_block(block, namespace, f"{example.where} [block {i + 1}]")


def count() -> tuple[int, int]:
    """(examples, blocks + doctests) — printed by `python tests/test_docs.py`."""
    return len(EXAMPLES), sum(len(e.blocks) or 1 for e in EXAMPLES)


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")
    n, b = count()
    print(f"{n} documented examples ({b} code blocks and doctests):")
    for e in EXAMPLES:
        print(f"  {e.where}: {len(e.blocks) or 'doctest'}")


# --------------------------------------------------------------------------------------------
# One dialect that renders. What mkdocs renders is the Markdown pages and the docstrings; both
# are checked here without the docs tools (the test venv does not have them). `make docs`
# builds the site and runs the same rules on the built HTML (scripts/check_site.py).


def _script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pages() -> list[Path]:
    return sorted(PAGES.rglob("*.md"))


def _prose_lines(text: str) -> list[str]:
    """The lines of a docstring or page outside ``` fences."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            out.append(line)
    return out


def test_no_rest_markup_in_docstrings_or_pages() -> None:
    raw = _script("check_site").RAW_MARKUP
    found = []
    sources = [(f"{path.relative_to(ROOT)}:{line} ({name})", doc)
               for path in [*sorted(PACKAGE.rglob("*.py")), ROOT / "ei_keras_cli.py"]
               for name, doc, line in _docstrings(path)]
    sources += [(str(page.relative_to(ROOT)), page.read_text(encoding="utf-8"))
                for page in _pages()]
    for where, text in sources:
        for what, pattern in raw.items():
            found += [f"{where}: {what} {m.group(0)!r}" for m in pattern.finditer(text)]
        found += [f"{where}: reST literal block '::'" for line in text.splitlines()
                  if line.rstrip().endswith("::") and not line.lstrip().startswith(":::")]
        # A prose line starting with `>` (`>= 0` wrapped to the line start) is a blockquote.
        found += [f"{where}: line starts with '>' (renders as a quote): {line.strip()!r}"
                  for line in _prose_lines(text) if re.match(r"\s*>(?!>>)", line)]
    assert not found, "\n".join(found)
    # The converter the integrator reruns after a merge has nothing left to change.
    converter = _script("md_docstrings")
    assert [str(p) for p in converter.files()
            if converter.rewrite(p.read_text(encoding="utf-8")) != p.read_text(
                encoding="utf-8")] == []


#: The sections of a layer's or network's docstring, as Keras writes them.
KERAS_SECTIONS = ("Args:", "Input shape:", "Output shape:", "Call arguments:", "Example")


def test_every_public_class_has_an_api_page_with_keras_sections() -> None:
    import inspect

    from ei_keras import layers, models

    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    rendered = {line.split()[1] for page in sorted((PAGES / "api").glob("*.md"))
                for line in page.read_text(encoding="utf-8").splitlines()
                if line.startswith("::: ")}
    public = [(f"ei_keras.layers.{n}", getattr(layers, n)) for n in layers.__all__]
    public += [(f"ei_keras.models.{n}", getattr(models, n)) for n in models.__all__
               if n != "FunctionalDualLossModel"]  # what DualLossModel(inputs, outputs) is
    missing = []
    for path, cls in public:
        name = path.rsplit(".", 1)[1]
        target = ("ei_keras.models.trainers.DualLossTrainerBase" if name == "DualLossTrainer"
                  else path)  # the backend's class: the shared API is documented
        if target not in rendered or f"api/{name}.md" not in nav:
            missing.append(f"{path}: no API page (docs/api/{name}.md in mkdocs.yml's nav)")
        doc = inspect.getdoc(cls if target == path else models.trainers.DualLossTrainerBase)
        wanted = KERAS_SECTIONS if path.startswith("ei_keras.layers") or name in (
            "EINetwork", "EIConvNetwork") else ("Example",)
        missing += [f"{path}: no '{section}' section" for section in wanted
                    if not re.search(rf"^{re.escape(section)}", doc, re.MULTILINE)]
    assert not missing, "\n".join(missing)


def test_code_lines_wrap_instead_of_running_past_the_box() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^extra_css:\n\s+- stylesheets/extra\.css$", config, re.MULTILINE)
    css = (PAGES / "stylesheets" / "extra.css").read_text(encoding="utf-8")
    assert _script("check_site").WRAP_RULE.search(css)
