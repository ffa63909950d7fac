"""The package as a user installs it: a wheel built from this checkout ships the sweep search
spaces and the console script's module (`ei_keras_cli`, outside the package) and `ei-keras
sweep` runs from any folder; the GPU check script compares two trainings
and fails with one `error:` line where no GPU is visible.

The wheel is built without build isolation (setuptools and wheel are already in the venv) from a
copy of the sources, installed with `--no-deps --target` into a temporary folder and run with
that folder first on PYTHONPATH, so the already installed backends are reused and nothing is
downloaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.update(KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout installed with --target; returns the target folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "ei_keras_cli.py"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "ei_keras", src / "ei_keras",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(src), "--no-deps", "--no-build-isolation",
                    "-w", str(tmp / "dist")], check=True, timeout=300, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("ei_keras-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ei_keras/tuner_configs/ei.json" in names
    assert "ei_keras/tuner_configs/inorm.json" in names
    assert "ei_keras_cli.py" in names  # the console script's module, outside the package
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "ei-keras = ei_keras_cli:main" in scripts
    target = tmp / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, timeout=300, cwd=tmp)
    return target


def test_installed_wheel_sweeps_with_its_shipped_config_from_any_folder(
    installed: Path, tmp_path: Path
) -> None:
    env = _env(PYTHONPATH=str(installed))
    where = subprocess.run(
        [sys.executable, "-c", "import ei_keras, json; from ei_keras.tuning.space import "
         "default_config_path as d; print(json.dumps([ei_keras.__file__, str(d('ei_ln')), "
         "str(d('inorm_gradnorm'))]))"],
        env=env, cwd=tmp_path, check=True, capture_output=True, text=True, timeout=120)
    package, ei_config, inorm_config = json.loads(where.stdout.strip().splitlines()[-1])
    assert Path(package).is_relative_to(installed)  # the wheel, not this checkout
    assert Path(ei_config) == installed / "ei_keras" / "tuner_configs" / "ei.json"
    assert Path(inorm_config).name == "inorm.json" and Path(inorm_config).is_file()
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    run = subprocess.run(
        [str(installed / "bin" / "ei-keras"), "sweep", "--config", ei_config, "--preset",
         "ei_ln", "--smoke", "--trials", "1", "--out", "sweep"],
        env=env, cwd=folder, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "1/1 trials" in run.stdout
    assert list((folder / "sweep" / "runs" / "ei_ln").glob("r*/*/metrics.json"))


def test_checkout_tuner_configs_are_the_packaged_files() -> None:
    top = ROOT / "tuner_configs"
    assert top.resolve() == (ROOT / "ei_keras" / "tuner_configs").resolve()
    from ei_keras.tuning.space import default_config_path

    assert default_config_path("inorm_center") == (
        ROOT / "ei_keras" / "tuner_configs" / "inorm.json").resolve()


def _gpu_check(**extra: str) -> subprocess.CompletedProcess:
    env = _env(PYTHONPATH=str(ROOT), **extra)
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py")], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_gpu_check_matches_two_trainings_to_float32_tolerance() -> None:
    # Both trainings on the CPU: the comparison machinery, end to end, on any machine.
    run = _gpu_check(EI_KERAS_GPU_CHECK_DEVICE="cpu")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith(f"ok: {keras.backend.backend()} trained inorm_gradnorm")
    from ei_keras import zoo

    matched = re.search(r"and (\d+) variables match the CPU run", run.stdout)
    assert matched, run.stdout  # every variable of the model, trainable or not
    model = zoo.build("inorm_gradnorm", width=8, seed=0)
    assert int(matched.group(1)) == len(model.variables)
    from ei_keras.population import BACKENDS

    if keras.backend.backend() in BACKENDS:  # 4 members' trainable variables
        assert f"a population's {4 * len(model.trainable_variables)} member variables too" \
            in run.stdout


def test_gpu_check_says_when_no_gpu_is_visible() -> None:
    run = _gpu_check()
    if "error: no GPU visible" in run.stderr:  # this machine (no GPU): exit 2, one error line
        assert run.returncode == 2
        (line,) = [ln for ln in run.stderr.splitlines() if ln.startswith("error:")]
        assert keras.backend.backend() in line and "EI_KERAS_GPU=1 make setup" in line
    else:  # a machine with a GPU and the CUDA builds: the real check passes
        assert run.returncode == 0, run.stderr[-2000:]
        assert "match the CPU run" in run.stdout
