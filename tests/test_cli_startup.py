"""The ``ei-keras`` console script as it starts: ``--help`` and ``--version`` import no Keras and
no framework, ``report`` needs none, and a Keras verb registers the same objects as ``import
ei_keras``.

Every case runs the script's entry point (``ei_keras_cli.main``, what the installed ``ei-keras``
calls) in a fresh process started from this checkout. How long ``--help`` takes is measured, not
asserted here (timing belongs to benchmarks); what makes it fast, nothing heavy imported, is
asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[1]
BACKEND = keras.backend.backend()
#: Runs ``ei-keras ARGS`` through the console script's entry point, then prints one JSON line:
#: exit status, the heavy modules imported, the backend Keras runs on and the ei_keras objects
#: registered with Keras.
BOOTSTRAP = """
import json, sys
import ei_keras_cli
sys.argv = ["ei-keras", *sys.argv[1:]]
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


def ei_keras_command(*args: str, **env: str) -> tuple[dict, str, str]:
    """``ei-keras ARGS`` in a fresh process; returns (the bootstrap's report, stdout before it,
    stderr)."""
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("KERAS_BACKEND", "PYTHONPATH", "PYTHONSTARTUP")}
    environment.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", **env)
    run = subprocess.run([sys.executable, "-c", BOOTSTRAP, *args],
                         env=environment, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    *out, report = run.stdout.splitlines()
    return json.loads(report), "\n".join(out), run.stderr


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


def test_a_keras_verb_registers_what_import_ei_keras_registers() -> None:
    report, out, err = ei_keras_command("presets", KERAS_BACKEND=BACKEND)
    assert report["rc"] == 0, err
    assert report["backend"] == BACKEND and "note:" not in err
    assert "inorm_gradnorm" in out
    import ei_keras  # noqa: F401  (as a library user does: everything registered at import)

    expected = sorted(k for k in keras.saving.get_custom_objects() if k.startswith("ei_keras>"))
    assert "ei_keras>EIDense" in expected
    assert report["registered"] == expected
