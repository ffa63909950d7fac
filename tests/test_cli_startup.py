"""The ``ei-keras`` console script as it starts: ``--help`` and ``--version`` import no Keras and
no framework, ``report`` needs none, a Keras verb registers the same objects as ``import
ei_keras``, and the backend is chosen among the installed ones (a missing default is replaced
with a ``note:`` line, a missing backend the user named is one ``error:`` line and exit 2).

Every case runs the script's entry point (``ei_keras_cli.main``, what the installed ``ei-keras``
calls) in a fresh process started from this checkout. A framework is made absent for that process
only: every finder on ``sys.meta_path`` (the path finder of site-packages, the editable install's
finder) is wrapped so that it finds nothing of that top-level package, so ``import torch`` raises
``ModuleNotFoundError: No module named 'torch'`` and ``importlib.util.find_spec("torch")`` is None,
as where torch was never installed, while Keras and the other frameworks import as usual.
(``sys.modules["torch"] = None`` blocks the import too, but libraries that look for an already
imported torch in ``sys.modules``, such as SciPy's array-API layer, then fail on the None.)
The default backend comes from a keras.json in a temporary ``KERAS_HOME``, with
``KERAS_BACKEND`` unset. How long ``--help`` takes is measured, not asserted here (timing
belongs to benchmarks); what makes it fast, nothing heavy imported, is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from ei_keras import backend_choice
from ei_keras.backend_choice import BACKENDS

ROOT = Path(__file__).resolve().parents[1]
BACKEND = keras.backend.backend()
#: Runs ``ei-keras ARGS`` through the console script's entry point with the frameworks named in
#: argv[1] (comma-separated) made absent, then prints one JSON line: exit status, the heavy
#: modules imported, the backend Keras runs on and the ei_keras objects registered with Keras.
BOOTSTRAP = """
import json, sys

class NotInstalled:
    \"\"\"Wraps an import finder: it finds nothing of the hidden top-level packages.\"\"\"
    hidden = set(filter(None, sys.argv[1].split(",")))

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.hidden:
            return None
        return self.finder.find_spec(fullname, path, target)

    def __getattr__(self, name):  # invalidate_caches, find_distributions, ...
        return getattr(self.finder, name)

sys.meta_path[:] = [NotInstalled(f) for f in sys.meta_path]
import ei_keras_cli
sys.argv = ["ei-keras", *sys.argv[2:]]
try:
    rc = ei_keras_cli.main()
except SystemExit as e:
    rc = e.code
keras = sys.modules.get("keras")
print(json.dumps({
    "rc": rc or 0,
    "imported": [m for m in ("keras", "tensorflow", "jax", "torch") if sys.modules.get(m)],
    "backend": keras.backend.backend() if keras else None,
    "registered": sorted(k for k in keras.saving.get_custom_objects() if k.startswith("ei_keras>"))
    if keras else [],
}))
"""


def ei_keras_command(*args: str, hide=(), keras_home: Path | None = None,
                     **env: str) -> tuple[dict, str, str]:
    """``ei-keras ARGS`` in a fresh process with the frameworks ``hide`` absent; returns
    (the bootstrap's report, stdout before it, stderr)."""
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("KERAS_BACKEND", "PYTHONPATH", "PYTHONSTARTUP")}
    environment.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", **env)
    if keras_home is not None:
        environment["KERAS_HOME"] = str(keras_home)
    run = subprocess.run([sys.executable, "-c", BOOTSTRAP, ",".join(hide), *args],
                         env=environment, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    *out, report = run.stdout.splitlines()
    return json.loads(report), "\n".join(out), run.stderr


def keras_home_naming(tmp_path: Path, backend: str) -> Path:
    (tmp_path / "keras.json").write_text(json.dumps({"backend": backend}))
    return tmp_path


@pytest.mark.parametrize("args", [
    ["--help"], ["--version"], ["presets", "--help"], ["train", "--help"],
    ["reproduce", "--help"], ["report", "--help"], ["sweep", "--help"], ["demo", "--help"],
], ids=" ".join)
def test_help_and_version_import_no_keras_and_no_framework(args) -> None:
    report, out, err = ei_keras_command(*args, KERAS_BACKEND=BACKEND)
    assert report["rc"] == 0, err
    assert report["imported"] == [], report  # what made `ei-keras --help` take ~7 s
    assert out.startswith("usage: ei-keras" if "--help" in args else "ei-keras "), out


def test_report_needs_no_keras(tmp_path: Path) -> None:
    report, _, err = ei_keras_command("report", str(tmp_path / "absent"), KERAS_BACKEND=BACKEND)
    assert report["rc"] == 2 and report["imported"] == [], report
    assert err.startswith("error:") and "not a folder of run directories" in err


#: A Keras verb that stops with one ``error:`` line (exit 2) once the backend is chosen and
#: the layers registered, before anything is written: an unknown preset.
KERAS_VERB = ("train", "--preset", "no_such_preset")


def assert_unknown_preset(report, err) -> None:
    assert report["rc"] == 2 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if not ln.startswith("note:")]
    assert line.startswith("error:") and "no_such_preset" in line


def test_presets_imports_no_keras_and_no_framework() -> None:
    report, out, err = ei_keras_command("presets", KERAS_BACKEND=BACKEND)
    assert report["rc"] == 0 and report["imported"] == [], (report, err)
    assert "inorm_gradnorm" in out and "defaults: lr_e=" in out


def test_a_keras_verb_registers_what_import_ei_keras_registers(tmp_path: Path) -> None:
    report, out, err = ei_keras_command(*KERAS_VERB, "--out", str(tmp_path / "run"),
                                        KERAS_BACKEND=BACKEND)
    assert_unknown_preset(report, err)
    assert report["backend"] == BACKEND and "note:" not in err
    assert not (tmp_path / "run").exists()
    import ei_keras  # noqa: F401  (as a library user does: everything registered at import)

    expected = sorted(k for k in keras.saving.get_custom_objects() if k.startswith("ei_keras>"))
    assert "ei_keras>EIDense" in expected
    assert report["registered"] == expected


def test_an_absent_default_backend_is_replaced_by_an_installed_one_with_a_note(
    tmp_path: Path,
) -> None:
    # Only this run's backend is left; the default (keras.json) names one of the absent ones.
    default = "tensorflow" if BACKEND != "tensorflow" else "jax"
    home = keras_home_naming(tmp_path, default)
    report, out, err = ei_keras_command(
        *KERAS_VERB, hide=[b for b in BACKENDS if b != BACKEND], keras_home=home)
    assert_unknown_preset(report, err)
    assert report["backend"] == BACKEND
    (note,) = [line for line in err.splitlines() if line.startswith("note:")]
    assert f"default backend {default} ({home / 'keras.json'}) is not installed" in note
    assert f"running on {BACKEND} (installed: {BACKEND})" in note
    assert "--backend" in note and "KERAS_BACKEND" in note


def test_the_demo_replaces_its_absent_default_jax_with_a_note(tmp_path: Path) -> None:
    if BACKEND == "jax":
        pytest.skip("jax is this run's backend: the demo's default is present")
    # A misspelt key stops the demo after the backend is chosen and before anything trains.
    report, _, err = ei_keras_command("demo", "--smoke", "--out", str(tmp_path / "demo"),
                                      "model.widht=8", hide=[b for b in BACKENDS if b != BACKEND])
    assert report["rc"] == 2 and report["backend"] == BACKEND
    note, error = err.splitlines()
    assert note == (f"note: the default backend jax (this command's default) is not installed: "
                    f"running on {BACKEND} (installed: {BACKEND}); choose with --backend or "
                    "KERAS_BACKEND")
    assert error.startswith("error:") and "model.widht" in error
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("how", ["--backend", "KERAS_BACKEND"])
def test_a_named_backend_that_is_absent_is_one_error_line_and_exit_2(how: str) -> None:
    missing = next(b for b in BACKENDS if b != BACKEND)
    if how == "--backend":
        report, out, err = ei_keras_command(*KERAS_VERB, "--backend", missing, hide=[missing],
                                            KERAS_BACKEND=BACKEND)
    else:
        report, out, err = ei_keras_command(*KERAS_VERB, hide=[missing], KERAS_BACKEND=missing)
    assert report["rc"] == 2 and out == "" and "Traceback" not in err
    (line,) = err.splitlines()
    installed = ", ".join(b for b in backend_choice.installed() if b != missing)
    assert line == (f'error: the {missing} backend is not installed: pip install '
                    f'"ei-keras[{missing}]" (installed: {installed}) or choose another with '
                    "--backend")
    assert report["imported"] == []


def test_no_backend_installed_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    report, out, err = ei_keras_command(*KERAS_VERB, hide=BACKENDS,
                                        keras_home=keras_home_naming(tmp_path, "tensorflow"))
    assert report["rc"] == 2 and report["imported"] == [] and "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith("error: no Keras backend is installed: pip install \"ei-keras[jax]\"")


def test_a_keras_backend_ei_keras_does_not_run_on_is_refused() -> None:
    report, _, err = ei_keras_command(*KERAS_VERB, KERAS_BACKEND="numpy")
    assert report["rc"] == 2 and report["imported"] == []
    assert err.splitlines() == ["error: KERAS_BACKEND 'numpy' is not a backend ei-keras runs on: "
                                "choose one of jax, torch, tensorflow"]
