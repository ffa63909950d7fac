"""The package as a user installs it: a wheel built from this checkout ships the sweep search
spaces and the console script's module (`ei_keras_cli`, outside the package) and `ei-keras
sweep` runs from any folder; the light install (no extras) trains a `DualLossModel` and names
the `research` extra where a verb needs it; the GPU check script compares two trainings and
fails with one `error:` line where no GPU is visible.

The wheel is built without build isolation (setuptools and wheel are already in the venv) from a
copy of the sources, installed with `--no-deps --target` into a temporary folder and run with
that folder first on PYTHONPATH, so the already installed backends are reused and nothing is
downloaded.

The light install is a fresh venv holding what `pip install ei_keras-*.whl keras <backend>`
installs: the wheel, and the distributions of keras and of the running backend with their
dependencies (the closure of their `Requires-Dist`, markers evaluated, no extras), linked from
this venv into a folder the fresh venv reads through a `.pth` file. pip then installs the wheel
with `--no-index` and checks its requirements against exactly that set, offline, in seconds;
KerasTuner, matplotlib and TensorBoard (and scipy, except under JAX, which requires it) are not
in it.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.update(KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of this checkout's sources."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "ei_keras_cli.py"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "ei_keras", src / "ei_keras",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([*PIP, "wheel", str(src), "--no-deps", "--no-build-isolation",
                    "-w", str(tmp / "dist")], check=True, timeout=300, cwd=tmp)
    (built,) = (tmp / "dist").glob("ei_keras-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed with --target; returns the target folder."""
    tmp = tmp_path_factory.mktemp("target")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ei_keras/tuner_configs/ei.json" in names
    assert "ei_keras/tuner_configs/inorm.json" in names
    assert "ei_keras_cli.py" in names  # the console script's module, outside the package
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "ei-keras = ei_keras_cli:main" in scripts
    target = tmp / "site"
    subprocess.run([*PIP, "install", "--no-deps", "--target", str(target), str(wheel)],
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


def _closure(*names: str) -> list[importlib.metadata.Distribution]:
    """The installed distributions `names` and everything they require (no extras)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        dist = importlib.metadata.distribution(name)
        seen[name] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def _link_distributions(dists: list[importlib.metadata.Distribution], folder: Path) -> None:
    """Link each distribution's top-level files and folders (one level deeper for namespace
    packages such as `google`, shared with distributions outside the set) into `folder`."""
    site = Path(sysconfig.get_paths()["purelib"])
    for dist in dists:
        for part in {f.parts[:2] for f in dist.files or [] if f.parts[0] != ".."}:
            top = site / part[0]
            namespace = (top.is_dir() and len(part) == 2 and not (top / "__init__.py").exists()
                         and not part[0].endswith((".dist-info", ".libs", ".data")))
            rel = Path(*part) if namespace else Path(part[0])
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            if not (folder / rel).exists():
                (folder / rel).symlink_to(site / rel)


@pytest.fixture(scope="module")
def light_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel, keras and the running backend only (no extras)."""
    tmp = tmp_path_factory.mktemp("light")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")],
                   check=True, timeout=120)
    backend = {"jax": "jax", "torch": "torch", "tensorflow": "tensorflow"}[
        keras.backend.backend()]
    (backend_dist,) = importlib.metadata.packages_distributions()[backend][:1]
    _link_distributions(_closure("keras", backend_dist), tmp / "deps")
    python = tmp / "venv" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True).stdout
    (Path(site.strip()) / "light_deps.pth").write_text(f"{tmp / 'deps'}\n")
    # --no-index: the requirements (keras, numpy) must already be met by the set above.
    subprocess.run([*PIP, "--python", str(python), "install", "--no-index", str(wheel)],
                   check=True, timeout=300, cwd=tmp)
    return tmp / "venv"


_LIGHT_SCRIPT = textwrap.dedent("""
    import importlib.util, json, os, sys
    import keras, numpy as np  # Keras sets variables of its own (TF_FORCE_GPU_ALLOW_GROWTH)
    before = dict(os.environ)
    import ei_keras
    changed = sorted(k for k in {*before, *os.environ} if before.get(k) != os.environ.get(k))
    inputs = keras.Input((12,))
    h = ei_keras.layers.INormDense(8, error_normalization="full", seed=0)(inputs)
    h = keras.layers.ReLU()(h)
    model = ei_keras.models.DualLossModel(inputs, ei_keras.layers.EIDense(3, seed=1)(h))
    model.compile(optimizer=ei_keras.optimizers.dale_sgd(0.05, 0.01, 0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 12), dtype="float32"), rng.integers(0, 3, 64)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0).history
    try:
        import ei_keras.analysis
        analysis = "imported"
    except ImportError as e:
        analysis = str(e)
    absent = [m for m in ("keras_tuner", "matplotlib", "tensorboard", "scipy")
              if importlib.util.find_spec(m) is None]
    print(json.dumps({"changed": changed, "history": history, "analysis": analysis,
                      "absent": absent, "file": ei_keras.__file__}))
""")


def test_light_install_trains_a_dual_loss_model_and_names_the_research_extra(
    light_venv: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in _env().items() if not k.startswith(("TF_", "MPL"))}
    run = subprocess.run([str(light_venv / "bin" / "python"), "-c", _LIGHT_SCRIPT], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).is_relative_to(light_venv)  # the wheel, not this checkout
    # Nothing of the research harness is installed (JAX itself requires scipy).
    assert {"keras_tuner", "matplotlib", "tensorboard"} <= set(out["absent"])
    if keras.backend.backend() != "jax":
        assert "scipy" in out["absent"]
    assert out["changed"] == []  # `import ei_keras` adds nothing to what `import keras` sets
    assert set(out["history"]) >= {"loss", "task_loss", "norm_loss"}
    assert all(len(v) == 2 and all(map(math.isfinite, v)) for v in out["history"].values()), out
    assert out["analysis"].startswith("ei_keras.analysis needs the research extra")
    assert 'pip install "ei-keras[research]"' in out["analysis"]

    (tmp_path / "runs").mkdir()
    report = subprocess.run([str(light_venv / "bin" / "ei-keras"), "report", "runs"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert report.returncode == 2, report.stderr  # README: exit 2, a missing extra
    assert report.stdout == ""
    (line,) = report.stderr.splitlines()
    assert line.startswith("error: ei-keras report needs the research extra (")
    assert line.endswith('pip install "ei-keras[research]"')
    assert list((tmp_path / "runs").iterdir()) == []  # nothing written

    # `python -m` imports the package, hence Keras and its backend, before the check runs:
    # TensorFlow's own start-up log is silenced as a user would (the CLI does it itself).
    sweep = subprocess.run([str(light_venv / "bin" / "python"), "-m", "ei_keras.tuning",
                            "--preset", "ei_ln", "--out", "runs"],
                           env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"}, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert sweep.returncode == 2, sweep.stderr
    # One line of ours; under TensorFlow the backend's own start-up lines may precede it.
    (line,) = [ln for ln in sweep.stderr.splitlines() if ln.startswith("error:")]
    assert line.startswith("error: python -m ei_keras.tuning needs the research extra (")

    presets = subprocess.run([str(light_venv / "bin" / "ei-keras"), "presets"], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert presets.returncode == 0, presets.stderr[-2000:]  # the library's verb needs no extra
    assert "inorm_gradnorm" in presets.stdout


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
