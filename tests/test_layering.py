"""The layering of `ei_keras`, as contracts the suite enforces (static: no module is imported).

Every `import` / `from ... import` statement of every module under `ei_keras/` is read from
its syntax tree, wherever it stands (at the top, inside a function, in a `try`): a lazy import
is still an import. Only `if TYPE_CHECKING:` blocks are left out (they never run). An import
of `ei_keras.a.b` (or `from ei_keras.a import b`, `b` a module) is an edge to that module
only, not to the packages above it (as import-linter counts them).

Contracts:

1. No import cycles among `ei_keras` modules.
2. The Keras library part (`LIBRARY`: layers, ops, models, optimizers, initializers,
   constraints, losses, roles, backend, and the measures and callbacks built on them) imports
   only itself: nothing of the research harness (`HARNESS`: the run configuration, presets,
   search spaces, runs and their directories, recipes, tuning, analysis, the command line).
   A Keras user gets the layers without the harness; the harness builds on the library.
3. Every module is in exactly one of the two parts, so a new module is placed on purpose.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ei_keras"

#: The Keras library part: a module here, or in a package here, imports only library modules.
LIBRARY = ("ei_keras.layers", "ei_keras.ops", "ei_keras.models", "ei_keras.optimizers",
           "ei_keras.initializers", "ei_keras.constraints", "ei_keras.losses",
           "ei_keras.roles", "ei_keras.backend", "ei_keras.measures", "ei_keras.callbacks",
           "ei_keras.annealing")
#: The research harness: runs, their configuration and presets, sweeps, analysis, the CLI.
#: `ei_keras` itself (the package, which registers the library and the presets with Keras),
#: `divergence` and `scoring` (the paper's rule for scoring a run) and `population` (runs
#: trained together) belong to the runs; `data` is the experiments' data.
HARNESS = ("ei_keras", "ei_keras.config", "ei_keras.zoo", "ei_keras.search_space",
           "ei_keras.run_directory", "ei_keras.experiment", "ei_keras.recipes",
           "ei_keras.tuning", "ei_keras.analysis", "ei_keras.cli", "ei_keras.scoring",
           "ei_keras.divergence", "ei_keras.population", "ei_keras.parallel", "ei_keras.data",
           "ei_keras.interrupt", "ei_keras.backend_choice", "ei_keras.extras",
           "ei_keras.tuner_configs")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, path: Path, modules) -> set[str]:
    """The `ei_keras` modules `module` imports anywhere in its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and _type_checking(node) for n in ast.walk(node)}
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "ei_keras")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            if name.split(".")[0] != "ei_keras":
                continue
            for alias in node.names:
                full = f"{name}.{alias.name}"
                out.add(full if full in modules else name)
    out.discard(module)
    return out


def import_graph() -> dict[str, set[str]]:
    """`{module: the ei_keras modules it imports}` for every module of the package."""
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _part(module: str) -> str | None:
    def inside(prefixes):
        return any(module == p or module.startswith(p + ".") for p in prefixes
                   if p != "ei_keras") or (module == "ei_keras" and "ei_keras" in prefixes)
    library, harness = inside(LIBRARY), inside(HARNESS)
    if library and harness:
        return "both"
    return "library" if library else "harness" if harness else None


def test_the_graph_sees_lazy_imports_and_leaves_type_checking_blocks_out(tmp_path):
    # the reader itself, on a made-up module: a function-level import counts, a
    # TYPE_CHECKING one does not, relative imports resolve
    path = tmp_path / "mod.py"
    path.write_text("from typing import TYPE_CHECKING\n"
                    "if TYPE_CHECKING:\n    from ei_keras.config import RunConfig\n"
                    "def f():\n    from ei_keras import zoo\n    from . import b\n")
    modules = {"ei_keras.zoo": None, "ei_keras.analysis.b": None}
    assert _imports("ei_keras.analysis.mod", path, modules) == {"ei_keras.zoo",
                                                                 "ei_keras.analysis.b"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_among_ei_keras_modules():
    cycles = _cycles(import_graph())
    assert not cycles, (
        f"Import cycles: {cycles}. Move the shared code to the module that owns it (a lazy "
        "import inside a function is still an import).")


def test_every_module_is_in_the_library_or_the_harness():
    unplaced = sorted(m for m in import_graph() if _part(m) is None)
    both = sorted(m for m in import_graph() if _part(m) == "both")
    assert not unplaced, f"Place these modules in LIBRARY or HARNESS: {unplaced}"
    assert not both, f"In both LIBRARY and HARNESS: {both}"


def test_the_keras_library_imports_nothing_of_the_research_harness():
    graph = import_graph()
    bad = {m: sorted(d for d in deps if _part(d) != "library")
           for m, deps in graph.items() if _part(m) == "library"}
    bad = {m: d for m, d in bad.items() if d}
    assert not bad, f"Library modules importing the research harness: {bad}"


def test_the_preset_table_search_spaces_and_configuration_import_no_keras():
    code = ("import sys; import ei_keras.config, ei_keras.zoo, ei_keras.search_space; "
            "ei_keras.zoo.get('conv_inorm'); ei_keras.search_space.space_for('inorm'); "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') "
            "if m in sys.modules))")
    env = {**os.environ, "_EI_KERAS_CLI": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("name", __import__("ei_keras.zoo").zoo.all_names())
def test_a_preset_names_a_registered_kind_and_family_that_agree_with_it(name):
    from ei_keras import search_space, zoo

    preset = zoo.get(name)
    assert preset.network in zoo.NETWORK_KINDS
    family = search_space.FAMILIES[preset.family]
    # a family searches lambda exactly when its presets have a normalization loss
    assert family.norm_weight == zoo.has_inorm(name)
    # one family, one kind: its width range is one kind's widths
    kinds = {zoo.get(p).network for p in zoo.all_names() if zoo.get(p).family == preset.family}
    assert kinds == {preset.network}


def test_one_registry_of_shift_families():
    from ei_keras import config, data

    # data.SHIFTS is built from config.SHIFT_FAMILIES: same families, in the same order, each
    # class the one its entry names
    assert list(data.SHIFTS) == list(config.SHIFT_FAMILIES)
    for name, family in config.SHIFT_FAMILIES.items():
        assert data.SHIFTS[name].__name__ == family.arithmetic
        assert data.SHIFTS[name].name == name
