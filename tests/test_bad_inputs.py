"""The catalogue of bad inputs and faults a user can cause, one case per entry.

Each case asserts what the user sees (one ``error:`` line naming the problem and the fix), the
documented exit code (2 invalid input or unusable location, 3 divergence, 130 interrupted) and
that nothing half-written is left behind (no ``.partial`` folder, no run directory for a run
that never trained, finished runs untouched). The faults that need a separate process
(SIGTERM, a read-only folder for a non-root user, a file-size limit while saving) run the real
``ei-keras`` command in one; the others call ``ei_keras.cli.main`` in this process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from ei_keras import cli
from ei_keras.config import SMOKE_OVERRIDES, ConfigError, RunConfig
from ei_keras.data import fashion_mnist
from ei_keras.experiment import run_experiment

# KerasTuner 1.4.8's @synchronized calls threading.currentThread().getName() (deprecated).
pytestmark = [pytest.mark.filterwarnings("ignore:currentThread.*:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:getName.*:DeprecationWarning")]

BACKEND = keras.backend.backend()
ROOT = Path(__file__).resolve().parents[1]
#: A tiny run: the CLI's smoke size, smaller still, and no per-epoch measures.
TINY = ["model.width=8", "data.train_subset=64", "data.test_subset=64",
        "measures.probe_size=32"]
DEBIAN = fashion_mnist.DEBIAN_DATA_DIR


def leftovers(root: Path) -> list[Path]:
    """Partial folders and temporary files anywhere under ``root``."""
    return sorted(p for p in root.rglob("*") if ".partial-" in p.name)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def call(capsys, argv) -> tuple[int, str, str]:
    """``ei-keras ARGV`` in this process: (exit code, stdout, stderr)."""
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_error(err: str, *words: str) -> str:
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def cli_process(args, *, as_user: bool = False, file_size_kb: int | None = None, env=None,
                timeout=600, wait=True, memory_kb: int | None = None):
    """The real command in its own process (the current backend); ``as_user`` drops root to
    ``nobody`` so that folder permissions apply; ``file_size_kb`` limits the size of every file
    it writes (SIGXFSZ ignored, so a write past it fails with EFBIG as on a full disk);
    ``memory_kb`` limits each process' address space (``ulimit -v``: a larger allocation is
    refused at once, as on a machine with that much memory)."""
    cmd = [sys.executable, "-m", "ei_keras.cli", *args]
    if file_size_kb is not None:
        cmd = ["bash", "-c", f'trap "" XFSZ; ulimit -f {file_size_kb}; exec "$@"', "_", *cmd]
    if memory_kb is not None:
        cmd = ["bash", "-c", f'ulimit -v {memory_kb}; exec "$@"', "_", *cmd]
    environment = {**os.environ, "KERAS_BACKEND": BACKEND, **(env or {})}
    if as_user and os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", *cmd]
        environment["HOME"] = environment["KERAS_HOME"] = "/tmp"
        environment.pop("JAX_COMPILATION_CACHE_DIR", None)
    if not wait:  # in its own process group, as a shell starts a job
        return subprocess.Popen(cmd, env=environment, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    return subprocess.run(cmd, env=environment, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def shared_tmp():
    """A folder every user can enter (pytest's tmp_path is private to root)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="ei-keras-bad-inputs-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Silently wrong science before: stale runs, "no" read as true, --configs 0, a 1.5e13 loss "ok",
# an accuracy of 1.5 shown as 150 %, swapped data files.


def test_rerun_with_other_settings_stops_naming_the_key(tmp_path, capsys):
    out = tmp_path / "fig4"
    base = ["reproduce", "fig4", "--smoke", "--luminosity", "0.75", "--out", str(out), *TINY]
    rc, _, err = call(capsys, base)
    assert rc == 0, err
    runs = sorted(out.rglob("metrics.json"))
    before = {p: p.read_bytes() for p in runs}
    assert len(runs) == 2
    rc, _, err = call(capsys, [*base, "model.width=64"])
    line = assert_one_error(err, "model.width", "--out", "--overwrite")
    assert rc == 2 and "8 on disk, 64 now" in line
    rc, _, err = call(capsys, [*base, "train.epochs=2"])  # the smoke / full-run collision
    assert rc == 2 and "train.epochs" in assert_one_error(err)
    assert {p: p.read_bytes() for p in runs} == before  # nothing was touched
    rc, _, err = call(capsys, [*base, "model.width=16", "--overwrite"])
    assert rc == 0, err
    for p in runs:
        assert json.loads((p.parent / "config.json").read_text())["model"]["width"] == 16
    assert leftovers(out) == []


def test_booleans_are_parsed_not_truthy(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = call(capsys, ["train", "--preset", "inorm", "--smoke", "--out", str(out), *TINY,
                               "model.trainable_ei=no", "output.save_model=no",
                               "measures.alignment=off", "measures.moments=0"])
    assert rc == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["trainable_ei"] is False
    assert config["output"]["save_model"] is False
    assert config["measures"]["alignment"] is False and config["measures"]["moments"] is False
    assert not (out / "model.keras").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert "alignment" not in metrics and "moments" not in metrics
    for bad in ("maybe", "2", "none", ""):
        with pytest.raises(ConfigError, match="model.trainable_ei.*true/false"):
            RunConfig().with_overrides([f"model.trainable_ei={bad}"])


@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_configs_must_be_a_positive_integer(value, tmp_path, capsys):
    out = tmp_path / "never"
    rc, _, err = call(capsys, ["reproduce", "fig2", "--configs", value, "--out", str(out)])
    assert rc == 2 and assert_one_error(err, "--configs")
    assert not out.exists()


@pytest.mark.parametrize("value", ["abc", "2", "0.5,nan"])
def test_luminosity_list_is_checked(value, tmp_path, capsys):
    out = tmp_path / "never"
    rc, _, err = call(capsys, ["reproduce", "fig2", "--luminosity", value, "--out", str(out)])
    assert rc == 2 and assert_one_error(err, "--luminosity", "[0, 1]")
    assert "could not convert" not in err and not out.exists()


@pytest.mark.parametrize("override, key", [
    ("opt.lr_e=nan", "opt.lr_e"), ("opt.lr_e=inf", "opt.lr_e"),
    ("loss.norm_weight=-0.1", "loss.norm_weight"), ("seed=1.5", "seed"),
    ("train.steps_per_execution=0", "train.steps_per_execution"),
    ("opt.inhibitory_clipnorm=-0.1", "opt.inhibitory_clipnorm"),  # 0 is "no clip"
    ("opt.excitatory_clipnorm=-1", "opt.excitatory_clipnorm"),
    ("model.widht=8", "model.width"),  # unknown key: the close match is named
    ("train.validate_each_epoch=yes", "data.validation_size"),  # never on the test set
    ("data.train_subset=999999", "data.train_subset"),  # more images than there are
    ("data.validation_size=60000", "data.validation_size"),
    ("data.shift=contrst", "data.shift"),  # one of luminosity, contrast, contrast_signal
    ("data.shift=", "data.shift"),
    ("data.contrast=0.5", "data.contrast"),  # s >= 1: the fix is named
    ("data.contrast=nan", "data.contrast"),
])
def test_invalid_values_are_named_before_training(override, key, tmp_path, capsys):
    out = tmp_path / "never"
    rc, _, err = call(capsys, ["train", "--preset", "inorm", "--out", str(out), override])
    assert rc == 2 and assert_one_error(err, key)
    assert not out.exists() and leftovers(tmp_path) == []


def test_every_preset_hyperparameter_is_settable(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = call(capsys, ["train", "--preset", "inorm_gradnorm", "--smoke", "--out",
                               str(out), *TINY, "opt.inhibitory_clipnorm=0.5",
                               "opt.inhibitory_momentum=0.25", "loss.label_smoothing=0"])
    assert rc == 0, err
    hp = json.loads((out / "metrics.json").read_text())["hyperparameters"]
    assert hp["inhibitory_clipnorm"] == 0.5 and hp["inhibitory_momentum"] == 0.25
    assert hp["label_smoothing"] == 0.0


def test_report_refuses_an_impossible_accuracy(tmp_path, capsys):
    out = tmp_path / "run"
    assert call(capsys, ["train", "--preset", "ei_ln", "--smoke", "--out", str(out), *TINY])[0] == 0
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["test_accuracy"] = 1.5  # edited by hand
    (out / "metrics.json").write_text(json.dumps(metrics))
    rc, _, err = call(capsys, ["report", str(tmp_path)])
    assert rc == 2 and assert_one_error(err, "no finished runs")
    report_rc, _, _ = call(capsys, ["report", str(tmp_path), "--out", str(tmp_path / "rep")])
    assert report_rc == 2
    from ei_keras.analysis import scan_runs

    with pytest.warns(RuntimeWarning, match="not a fraction"):
        scan = scan_runs(tmp_path)
    assert scan.runs == [] and "not a fraction in [0, 1]" in scan.corrupt[0][1]


def test_swapped_train_and_test_files_are_named(tmp_path, capsys):
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    names = fashion_mnist.FILE_NAMES
    for a, b in (("train_images", "test_images"), ("train_labels", "test_labels")):
        (swapped / names[a]).symlink_to(DEBIAN / names[b])
        (swapped / names[b]).symlink_to(DEBIAN / names[a])
    out = tmp_path / "never"
    rc, _, err = call(capsys, ["train", "--preset", "ei_ln", "--out", str(out),
                               f"data.data_dir={swapped}"])
    line = assert_one_error(err, "swapped", names["train_images"], "60000", "10000")
    assert rc == 2 and "hold 10000" in line and not out.exists()


# --------------------------------------------------------------------------------------------
# Unusable locations: one error line, exit 2, before any training.


def test_out_under_a_file(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for argv in (["train", "--preset", "ei_ln", "--out", str(blocker / "run")],
                 ["reproduce", "fig2", "--smoke", "--out", str(blocker / "runs")]):
        rc, _, err = call(capsys, argv)
        assert rc == 2 and assert_one_error(err, str(blocker), "is a file")
    assert blocker.read_text() == "x"


def test_overwrite_onto_a_file_fails_before_training(tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    start = time.time()
    rc, out, err = call(capsys, ["train", "--preset", "ei_ln", "--overwrite", "--out",
                                 str(target)])
    assert rc == 2 and assert_one_error(err, str(target), "is a file")
    assert "[train]" not in out and time.time() - start < 30  # refused before any training
    assert target.read_text() == "keep me" and leftovers(tmp_path) == []


def test_sweep_out_is_a_file(tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("x")
    rc, _, err = call(capsys, ["sweep", "--preset", "ei_ln", "--smoke", "--trials", "1",
                               "--out", str(target)])
    assert rc == 2 and assert_one_error(err, str(target), "is a file")


def test_report_on_an_empty_or_missing_folder(tmp_path, capsys):
    rc, _, err = call(capsys, ["report", str(tmp_path)])
    assert rc == 2 and assert_one_error(err, "no finished runs")
    rc, _, err = call(capsys, ["report", str(tmp_path / "missing")])
    assert rc == 2 and assert_one_error(err, "not a folder")


def test_read_only_out_and_report_out(shared_tmp, capsys):
    """As a user who cannot write there (root drops to ``nobody`` for the two refused
    commands)."""
    ro = shared_tmp / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    proc = cli_process(["train", "--preset", "ei_ln", "--out", str(ro / "run"), *TINY],
                       as_user=True)
    assert proc.returncode == 2, proc.stderr
    assert_one_error(proc.stderr, str(ro), "not writable")
    assert list(ro.iterdir()) == []
    runs = shared_tmp / "runs"
    runs.mkdir()
    runs.chmod(0o777)
    # The finished run the report reads (in this process: its files are readable by all).
    rc, _, err = call(capsys, ["train", "--preset", "ei_ln", "--smoke", "--out",
                               str(runs / "one"), *TINY])
    assert rc == 0, err
    proc = cli_process(["report", str(runs), "--out", str(ro / "report")], as_user=True)
    assert proc.returncode == 2, proc.stderr
    assert_one_error(proc.stderr, str(ro), "not writable")


# --------------------------------------------------------------------------------------------
# Faults while running: nothing lost, nothing half-written.


def test_model_that_cannot_be_saved_keeps_the_metrics(tmp_path):
    """A file-size limit makes writing ``model.keras`` fail as a full disk would: the run's
    metrics, history and config are kept and the command says what is missing."""
    out = tmp_path / "run"  # the JSON and CSV files are a few kB; the model is ~1 MB
    proc = cli_process(["train", "--preset", "ei_ln", "--smoke", "--out", str(out), *TINY,
                        "output.save_model=true", "model.width=256"], file_size_kb=64)
    assert proc.returncode == 2, proc.stderr
    assert_one_error(proc.stderr, "model.keras could not be written")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and 0 <= metrics["test_accuracy"] <= 1
    assert "model.keras" in metrics["model_error"]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "history.csv",
                                                     "metrics.json"]
    assert leftovers(tmp_path) == []


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    out = tmp_path / "run"
    # Long enough never to finish before the signal, however fast the machine (50 epochs of
    # this size took ~2 s, and a fast run that ended before SIGTERM exited 0).
    proc = cli_process(["train", "--preset", "ei_ln", "--out", str(out),
                        "train.epochs=100000", "data.train_subset=2048", "model.width=16"],
                       wait=False)
    deadline = time.time() + 300
    while not leftovers(tmp_path) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert leftovers(tmp_path), "the run never started"
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert_one_error(err, "interrupted", "rerun")
    assert leftovers(tmp_path) == [] and not out.exists()


def processes_of_group(pgid: int, settle: float = 0.0) -> list[int]:
    """The live (not zombie) processes of process group ``pgid`` (after waiting up to
    ``settle`` seconds for them to end)."""
    deadline = time.time() + settle
    while (alive := _processes_of_group(pgid)) and time.time() < deadline:
        time.sleep(0.2)
    return alive


def _processes_of_group(pgid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def start_parallel_protocol(tmp_path):
    """``reproduce fig2 --jobs 2`` on cells that would train for days (at an ``lr_e`` none of
    them diverges at: a diverged run ends early); returns when both workers have a partial
    folder (they are inside ``fit``)."""
    proc = cli_process(["reproduce", "fig2", "--luminosity", "0.75", "--configs", "1",
                        "--jobs", "2", "--out", str(tmp_path / "fig2"), "train.epochs=100000",
                        "opt.lr_e=0.01", "data.train_subset=2048", "model.width=16"],
                       wait=False)
    deadline = time.time() + 300
    while len(leftovers(tmp_path)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert len(leftovers(tmp_path)) == 2, "the workers never started"
    time.sleep(1.0)
    return proc


def test_sigterm_stops_jobs_workers(tmp_path):
    """SIGTERM to the whole process group (a shell's ``kill %1``, a scheduler) stops ``--jobs``
    workers mid-cell: exit 130, one error line, no partial folder, no process left. (Measured
    before: the signal's KeyboardInterrupt was lost in a JAX gc callback and a dead Pool worker
    was replaced, so the protocol went on training.) The parent stopping its workers by itself
    is covered by the killed-worker test below."""
    proc = start_parallel_protocol(tmp_path)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert_one_error(err, "interrupted", "rerun")
    assert leftovers(tmp_path) == []
    assert processes_of_group(proc.pid, settle=10) == []


def test_a_killed_worker_stops_the_protocol(tmp_path):
    """A worker killed from outside (the OOM killer's SIGKILL) stops the protocol with exit 1
    naming the cell, instead of leaving it waiting; the other worker is stopped, and the killed
    worker's partial folder is removed."""
    proc = start_parallel_protocol(tmp_path)
    workers = [pid for pid in processes_of_group(proc.pid) if pid != proc.pid and
               "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert_one_error(err, "worker process ended", "exit code -9", "fig2", "rerun")
    assert leftovers(tmp_path) == []
    assert processes_of_group(proc.pid, settle=10) == []


def test_stale_partial_folders_are_removed_by_the_next_run(tmp_path, capsys):
    dead = subprocess.Popen(["true"])  # a pid that no longer runs
    dead.wait()
    host = __import__("socket").gethostname()
    out = tmp_path / "fig4"
    stale = out / "inorm" / "r0.75" / f".cfg00.partial-{host}-{dead.pid}"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    alive = out / "inorm" / "r0.75" / f".cfg01.partial-{host}-{os.getpid()}"  # running: kept
    alive.mkdir()
    rc, text, err = call(capsys, ["reproduce", "fig4", "--smoke", "--luminosity", "0.75",
                                  "--out", str(out), *TINY])
    assert rc == 0, err
    assert not stale.exists() and alive.exists() and "left by an interrupted run" in text
    single = tmp_path / f".one.partial-{host}-{dead.pid}"
    single.mkdir()
    rc, _, err = call(capsys, ["train", "--preset", "ei_ln", "--smoke", "--out",
                               str(tmp_path / "one"), *TINY])
    assert rc == 0 and not single.exists()


def test_report_lists_the_missing_cells_of_an_interrupted_protocol(tmp_path, capsys):
    out = tmp_path / "fig4"
    rc, _, err = call(capsys, ["reproduce", "fig4", "--smoke", "--luminosity", "0.75",
                               "--out", str(out), *TINY])
    assert rc == 0, err
    shutil.rmtree(out / "inorm" / "r0.75" / "cfg00")  # as if killed before this cell
    rc, _, err = call(capsys, ["report", str(out)])
    assert rc == 0, err
    report = (out / "report.md").read_text()
    assert "Missing cells" in report and "1 of 2 planned cells" in report
    assert "`inorm/r0.75/cfg00`" in report
    assert "model.width = 8" in report and "train.epochs = 1" in report


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o002, 0o775)])
def test_run_folders_follow_the_umask(umask, mode, tmp_path):
    previous = os.umask(umask)
    try:
        run_experiment(RunConfig.from_dict({"preset": "ei_ln"}).with_overrides(
            {**SMOKE_OVERRIDES, "model.width": 8, "data.train_subset": 64,
             "data.test_subset": 64, "measures.probe_size": 32}), tmp_path / "run",
            printer=lambda *a: None)
    finally:
        os.umask(previous)
    assert (tmp_path / "run").stat().st_mode & 0o777 == mode
    assert (tmp_path / "run" / "metrics.json").stat().st_mode & 0o777 == mode & 0o666


# --------------------------------------------------------------------------------------------
# Divergence: the true step and the true cause.

DIVERGING = ["model.width=16", "data.train_subset=256", "data.test_subset=64",
             "measures.moments=false", "measures.alignment=false"]


@pytest.mark.parametrize("preset, rate, cause", [
    ("inorm", "lr_e", "excitatory"),
    ("inorm", "lr_ie", "inhibitory_input"),
    ("inorm", "lr_ei", "inhibitory_output"),
    ("ei_ln", "lr_e", "excitatory"),
    ("ei_ln", "lr_ei", "inhibitory_output"),
])
def test_divergence_blames_the_group_whose_rate_was_raised(preset, rate, cause, tmp_path,
                                                          capsys):
    """A non-finite run exits 3 with one ``error:`` line; one whose weights stay finite past the
    bounds (clipped inhibitory gradients) trains on and exits 0 with one ``warning:`` line.
    Either names the learning rate that was raised, and only it (a run that passed the bounds
    before it turned non-finite: the group that left them first)."""
    out = tmp_path / "run"
    rc, _, err = call(capsys, ["train", "--preset", preset, "--out", str(out), *DIVERGING,
                               f"opt.{rate}=1e6"])
    metrics = json.loads((out / "metrics.json").read_text())
    if metrics["status"] == "diverged":
        assert rc == 3
        line = assert_one_error(err, f"opt.{rate} (now 1e+06)")
        # after an excursion past the bounds, the group that left them first is to blame
        blamed = (metrics["stability"] or {}).get("cause") or metrics["diverged_cause"]
    else:
        assert rc == 0 and not error_lines(err), err
        lines = [x for x in err.splitlines() if x.startswith("warning:")]
        assert len(lines) == 1 and f"opt.{rate} (now 1e+06)" in lines[0], err
        line, blamed = lines[0], metrics["stability"]["cause"]
    others = {"lr_e", "lr_ie", "lr_ei"} - {rate}
    assert not any(re.search(rf"opt\.{o}\b", line) for o in others), line
    assert blamed == cause


def test_non_finite_input_is_blamed_on_the_data():
    from ei_keras import zoo
    from ei_keras.divergence import DivergenceMonitor

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(0)
            self.x = rng.random((12 * 8, 784), dtype=np.float32)
            self.x[5 * 8 + 3, 100] = np.nan  # step 6 holds a NaN pixel
            self.y = np.arange(12 * 8) % 10

        def __len__(self):
            return 12

        def __getitem__(self, i):
            return self.x[i * 8:(i + 1) * 8], self.y[i * 8:(i + 1) * 8]

    spe = 1 if BACKEND == "torch" else 4
    model = zoo.build("ei_ln", width=8, seed=0, steps_per_execution=spe)
    monitor = DivergenceMonitor(rates={"lr_e": 0.05})
    data = Batches()
    model.fit(data, epochs=1, verbose=0, callbacks=[monitor], shuffle=False)
    assert monitor.diverged
    monitor.locate(data)
    assert monitor.cause == "input" and monitor.step == 6
    assert "input" in monitor.message and "lr_e" not in monitor.message


def test_diverged_step_is_the_true_step_whatever_steps_per_execution(tmp_path):
    base = RunConfig.from_dict({"preset": "inorm", "opt": {"lr_e": 1e6}}).with_overrides(
        DIVERGING)
    steps = {}
    for spe in (1, "auto") if BACKEND != "torch" else (1,):
        metrics = run_experiment(base.with_overrides({"train.steps_per_execution": spe}),
                                 tmp_path / f"spe-{spe}", printer=lambda *a: None)
        assert metrics["status"] == "diverged"
        steps[spe] = (metrics["diverged_step"], metrics["diverged_cause"])
    assert steps[1][0] > 1  # not at the first step: the replay has steps to walk through
    assert len(set(steps.values())) == 1, steps


def test_bad_shift_settings_name_the_key_and_the_fix(tmp_path, capsys):
    out = tmp_path / "never"
    rc, _, err = call(capsys, ["train", "--preset", "ei_ln", "--out", str(out),
                               "data.shift=contrast", "data.contrast=0.5"])
    assert rc == 2 and assert_one_error(err, "data.contrast", ">= 1", "give s >= 1")
    rc, _, err = call(capsys, ["train", "--preset", "ei_ln", "--out", str(out),
                               "data.shift=contrast_signal", "data.contrast=1"])
    assert rc == 2 and assert_one_error(err, "data.contrast > 1", "Set data.contrast")
    rc, _, err = call(capsys, ["train", "--preset", "ei_ln", "--out", str(out),
                               "data.shift=luminosity_shift"])
    assert rc == 2 and assert_one_error(err, "data.shift", "contrast_signal", "Did you mean")
    assert not out.exists()


@pytest.mark.parametrize("argv, words", [
    (["contrast", "--contrast", "0.5"], ["--contrast", ">= 1"]),
    (["contrast_signal", "--contrast", "2,x"], ["--contrast", ">= 1"]),
    (["contrast", "--luminosity", "0.5"], ["sweeps data.contrast", "--contrast"]),
    (["fig2", "--contrast", "4"], ["sweeps data.luminosity", "--luminosity"]),
])
def test_shift_sizes_of_a_recipe_are_checked(argv, words, tmp_path, capsys):
    out = tmp_path / "never"
    rc, _, err = call(capsys, ["reproduce", *argv, "--out", str(out)])
    assert rc == 2 and assert_one_error(err, *words)
    assert not out.exists()


@pytest.mark.parametrize("option, value", [("--shard", "3/2"), ("--shard", "0/2"),
                                           ("--shard", "x"), ("--jobs", "0")])
def test_shard_and_jobs_are_checked(option, value, tmp_path, capsys):
    out = tmp_path / "never"
    rc, _, err = call(capsys, ["reproduce", "fig2", option, value, "--out", str(out)])
    assert rc == 2 and assert_one_error(err, option)
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# Issue 25's bad inputs: each a class, each refused with one line and a documented exit code.


def tiny_run(capsys, out: Path, preset: str = "ei_ln") -> Path:
    """A finished ``train --smoke`` run of the tiny size at ``out``."""
    rc, _, err = call(capsys, ["train", "--preset", preset, "--smoke", "--out", str(out), *TINY])
    assert rc == 0, err
    return out


@pytest.mark.parametrize("recipe, override, words", [
    ("fig2", "data.luminosity=0.3", ["data.luminosity", "--luminosity"]),
    ("contrast", "data.contrast=2", ["data.contrast", "--contrast"]),
    ("fig4", "seed=3", ["seed", "--seed"]),
    ("fig2", "data.shift=contrast", ["data.shift", "contrast"]),
    ("contrast", "data.shift=luminosity", ["data.shift", "fig2"]),
    ("fig2", "preset=inorm", ["preset", "ei_ln, ei, e_ln"]),
    ("fig4", "condition=mine", ["condition", "ei_ln, inorm"]),
    ("timescales", "train.inhibitory_steps=2", ["train.inhibitory_steps", "inorm_k4"]),
])
def test_a_recipes_per_cell_keys_are_not_overridden(recipe, override, words, tmp_path, capsys):
    """A dotted key that the recipe sets per cell would train every cell alike and file the
    copies under each cell's folder: refused, naming the recipe's own option."""
    out = tmp_path / "never"
    rc, _, err = call(capsys, ["reproduce", recipe, "--smoke", "--out", str(out), override])
    assert rc == 2 and assert_one_error(err, f"Recipe {recipe} sets", *words)
    assert not out.exists()


def test_the_per_cell_keys_of_every_recipe_are_refused():
    """Listed here independently of the code: every recipe sets the shift family, its size and
    the run seed per cell, and the preset and condition label."""
    from ei_keras import recipes

    for name, protocol in recipes.PROTOCOLS.items():
        size = {"luminosity": "data.luminosity=0.5"}.get(protocol.shift, "data.contrast=2")
        for override in (size, "seed=7", f"data.shift={protocol.shift}", "preset=ei",
                         "condition=x"):
            with pytest.raises(ConfigError, match=f"Recipe {name} sets"):
                recipes.plan(protocol, smoke=True, overrides=[override])
    # a sampled learning rate may be fixed for every configuration (the user's choice)
    cells = recipes.plan(recipes.get("fig2"), smoke=True, overrides=["opt.lr_e=0.01"])
    assert {cfg.opt.lr_e for _, cfg in cells} == {0.01}


def test_overwrite_replaces_only_a_run_directory(tmp_path, capsys):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    start = time.time()
    rc, _, err = call(capsys, ["train", "--preset", "ei_ln", "--overwrite", "--out", str(user)])
    assert rc == 2 and assert_one_error(err, str(user), "not a run directory", "notes.txt")
    assert time.time() - start < 30 and (user / "notes.txt").read_text() == "keep me"
    protocol = tmp_path / "fig4"  # a finished reproduce folder: runs, plan, report
    rc, _, err = call(capsys, ["reproduce", "fig4", "--smoke", "--luminosity", "0.75", "--out",
                               str(protocol), *TINY])
    assert rc == 0, err
    before = {p: p.read_bytes() for p in protocol.rglob("*") if p.is_file()}
    rc, _, err = call(capsys, ["train", "--preset", "ei_ln", "--overwrite", "--out",
                               str(protocol), *TINY])
    assert rc == 2 and assert_one_error(err, "not a run directory", "--overwrite")
    assert {p: p.read_bytes() for p in protocol.rglob("*") if p.is_file()} == before
    run = tiny_run(capsys, tmp_path / "run")  # a run directory is replaced
    config = json.loads((run / "config.json").read_text())
    rc, _, err = call(capsys, ["train", "--preset", "ei_ln", "--smoke", "--overwrite", "--seed",
                               "1", "--out", str(run), *TINY])
    assert rc == 0, err
    assert json.loads((run / "config.json").read_text())["seed"] == 1 != config["seed"]
    assert leftovers(tmp_path) == []


def bad_data_dir(tmp_path: Path, kind: str) -> Path:
    """The four Fashion-MNIST files, one of them damaged: ``truncated`` (half the gzip stream
    of the training images), ``swapped`` (train and test files exchanged) or ``labels-are-
    images`` (the test labels' name holding the test images)."""
    names = fashion_mnist.FILE_NAMES
    folder = tmp_path / kind
    folder.mkdir()
    for name in names.values():
        (folder / name).symlink_to(DEBIAN / name)
    if kind == "truncated":
        (folder / names["train_images"]).unlink()
        raw = (DEBIAN / names["train_images"]).read_bytes()
        (folder / names["train_images"]).write_bytes(raw[:len(raw) // 2])
    elif kind == "swapped":
        for a, b in (("train_images", "test_images"), ("train_labels", "test_labels")):
            (folder / names[a]).unlink()
            (folder / names[a]).symlink_to(DEBIAN / names[b])
            (folder / names[b]).unlink()
            (folder / names[b]).symlink_to(DEBIAN / names[a])
    else:
        (folder / names["test_labels"]).unlink()
        (folder / names["test_labels"]).symlink_to(DEBIAN / names["test_images"])
    return folder


@pytest.mark.parametrize("kind, words", [
    ("truncated", ["truncated", fashion_mnist.FILE_NAMES["train_images"]]),
    ("swapped", ["swapped", "hold 10000"]),
])
def test_sweep_checks_its_data_before_the_tuner_starts(kind, words, tmp_path, capsys):
    """Before: a traceback, the trial recorded as finished and rc 0; a rerun with good data
    then said "finished: 1/1 trials" with no run folder."""
    out = tmp_path / "sweep"
    argv = ["sweep", "--preset", "ei_ln", "--smoke", "--trials", "1", "--out", str(out)]
    rc, _, err = call(capsys, [*argv, "--data-dir", str(bad_data_dir(tmp_path, kind))])
    assert rc == 2 and assert_one_error(err, *words)
    assert not list(out.rglob("oracle.json")) and not list(out.rglob("metrics.json"))
    rc, text, err = call(capsys, [*argv, "--data-dir", str(DEBIAN)])
    assert rc == 0, err
    assert "finished: 1/1 trials" in text and len(list(out.rglob("metrics.json"))) == 1


@pytest.mark.usefixtures("frozen_gc")
def test_a_trial_that_fails_is_not_recorded_as_finished(tmp_path):
    """A trial whose run raises (bad data met mid-sweep here) stops the sweep without being
    recorded as finished: the next search runs it."""
    import keras_tuner

    from ei_keras.tuning import EIHyperModel, SweepTuner
    from ei_keras.tuning import space as space_module

    space = space_module.resize_space(space_module.load_search_space(
        ROOT / "tuner_configs" / "ei.json"), smoke=True)

    def tuner(data_dir):
        hypermodel = EIHyperModel("ei_ln", 0.75, tmp_path / "runs", smoke=True,
                                  overrides={"data.data_dir": str(data_dir)},
                                  printer=lambda *a: None)
        return SweepTuner(hypermodel, space, max_trials=1, seed=1, directory=tmp_path,
                          project_name="p", printer=lambda *a: None)

    first = tuner(bad_data_dir(tmp_path, "truncated"))
    with pytest.raises(keras_tuner.errors.FatalValueError, match="truncated"):
        first.search(verbose=0)
    assert all(t.status not in ("COMPLETED", "FAILED") for t in first.oracle.trials.values())
    again = tuner(DEBIAN)
    again.search(verbose=0)
    assert [t.status for t in again.oracle.trials.values()] == ["COMPLETED"]
    assert len(list((tmp_path / "runs").rglob("metrics.json"))) == 1


@pytest.mark.parametrize("value", [None, float("nan")])
def test_report_refuses_an_ok_run_without_an_accuracy(value, tmp_path, capsys):
    """An "ok" run with a null (or NaN) accuracy is corrupt: named, never counted as a
    diverged run at chance."""
    runs = tmp_path / "runs"
    bad = tiny_run(capsys, runs / "bad")
    metrics = json.loads((bad / "metrics.json").read_text())
    metrics["test_accuracy"] = value  # edited or damaged by hand
    (bad / "metrics.json").write_text(json.dumps(metrics))
    rc, _, err = call(capsys, ["report", str(runs)])
    line = assert_one_error(err, "no finished runs", "1 corrupt", str(bad / "metrics.json"))
    assert rc == 2 and "status is \"ok\" but test_accuracy" in line
    tiny_run(capsys, runs / "good")
    rc, _, err = call(capsys, ["report", str(runs)])
    assert rc == 0 and error_lines(err) == [] and f"skipped corrupt run {bad}" in err
    report = (runs / "report.md").read_text()
    assert "1 runs loaded (0 diverged)" in report and "1 corrupt runs skipped" in report


def test_one_tuner_per_sweep_folder_and_one_sample_per_configuration(tmp_path, capsys):
    """A second --tuner into the same --out is refused before anything runs (it reused the
    first tuner's trial folders); a Hyperband sweep's report counts each configuration once,
    at its longest continuation; a folder pooling two tuners' trials is refused."""
    from ei_keras.analysis import scan_runs

    out = tmp_path / "hyperband"
    argv = ["sweep", "--preset", "ei_ln", "--smoke", "--trials", "1", "--out", str(out)]
    rc, _, err = call(capsys, [*argv, "--tuner", "hyperband"])
    assert rc == 0, err
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for other in ("random", "bayesian"):
        rc, _, err = call(capsys, [*argv, "--tuner", other])
        assert rc == 2 and assert_one_error(err, "holds a hyperband sweep", f"--tuner {other}")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    scan = scan_runs(out)
    assert scan.superseded, "Hyperband continued no configuration"
    seen = {}
    for run in scan.runs:
        values = json.dumps({k: v for k, v in run.config["sweep"]["values"].items()
                             if k != "epochs"}, sort_keys=True)
        assert values not in seen, (run.path, seen.get(values))
        seen[values] = run.config["train"]["epochs"]
    for path in scan.superseded:  # each left out for a longer run of its configuration
        config = json.loads((path / "config.json").read_text())
        values = json.dumps({k: v for k, v in config["sweep"]["values"].items()
                             if k != "epochs"}, sort_keys=True)
        assert seen[values] > config["train"]["epochs"]
    rc, _, err = call(capsys, ["report", str(out)])
    assert rc == 0, err
    assert f"{len(scan.superseded)} sweep trials superseded" in (out / "report.md").read_text()
    config_path = scan.runs[0].path / "config.json"  # as if copied from a random sweep
    config = json.loads(config_path.read_text())
    config["sweep"]["tuner"] = "random"
    config_path.write_text(json.dumps(config))
    rc, _, err = call(capsys, ["report", str(out)])
    assert rc == 2 and assert_one_error(err, "several sweeps (hyperband, random)", "ei_ln")


@pytest.mark.parametrize("argv, option", [
    (["fig2", "--luminosity", "0.5,0.5"], "--luminosity"),
    (["fig2", "--luminosity", "0,0.75,0.750"], "--luminosity"),
    (["contrast", "--contrast", "2,4,2"], "--contrast"),
])
def test_duplicate_sizes_are_refused_at_parse_time(argv, option, tmp_path, capsys):
    out = tmp_path / "never"
    start = time.time()
    rc, _, err = call(capsys, ["reproduce", *argv, "--out", str(out)])
    assert rc == 2 and assert_one_error(err, option, "twice", "once")
    assert not out.exists() and time.time() - start < 30
    from ei_keras import recipes

    with pytest.raises(ConfigError, match="each shift size once"):
        recipes.plan(recipes.get("fig2"), sizes=(0.5, 0.5))


@pytest.mark.parametrize("given, what", [
    ("ei_ln,bogus", "'bogus' is not one of them"),
    ("ei", "'ei' is not one of them"),  # a preset, but not a condition of fig5
    ("ei_ln,ei_ln", "give each condition once"),
    (",", "give at least one"),
])
def test_reproduce_conditions_must_be_the_recipes_own(given, what, tmp_path, capsys):
    out = tmp_path / "never"
    rc, _, err = call(capsys, ["reproduce", "fig5", "--conditions", given, "--out", str(out)])
    assert rc == 2 and assert_one_error(err, "--conditions", what, "inorm_gradnorm")
    assert not out.exists()


def test_reproduce_conditions_plans_only_those_conditions():
    from ei_keras import recipes

    fig5 = recipes.get("fig5")
    cells = recipes.plan(fig5, configs=2, conditions=["inorm_gradnorm", "ei_ln"])
    assert sorted({cfg.preset for _, cfg in cells}) == ["ei_ln", "inorm_gradnorm"]
    assert len(cells) == 2 * len(fig5.sizes) * 2
    every = recipes.plan(fig5, configs=2)  # the same cells as the whole recipe's
    kept = {str(path): cfg for path, cfg in every if cfg.preset != "inorm"}
    assert {str(path): cfg for path, cfg in cells} == kept


#: An address-space limit (kB) far above what a tiny run needs (the backends reserve a few
#: GiB of address space at import) and far below a width-100000 model (a 100000 x 10000
#: float64 initialisation alone is 7.5 GiB): the allocation is refused at once, whatever the
#: machine's memory or overcommit policy.
MEMORY_LIMIT_KB = 6_000_000


def test_out_of_memory_is_one_line_and_its_own_exit_code(tmp_path):
    out = tmp_path / "run"
    start = time.time()
    proc = cli_process(["train", "--preset", "ei_ln", "--smoke", "--out", str(out),
                        "model.width=100000"], memory_kb=MEMORY_LIMIT_KB, timeout=300)
    assert proc.returncode == 6, proc.stderr
    assert_one_error(proc.stderr, "out of memory", "model.width")
    assert not out.exists() and leftovers(tmp_path) == []
    assert time.time() - start < 240  # refused at the allocation, not after swapping


def test_backend_out_of_memory_errors_are_recognised():
    """Each backend's own error for a refused allocation (under an address-space limit, in a
    process of its own) is what the CLI turns into exit 6."""
    code = ("import resource, keras\n"
            f"resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT_KB * 1024},) * 2)\n"
            "from ei_keras.cli import is_out_of_memory\n"
            "try:\n"
            "    keras.ops.zeros((10**6, 10**6))\n"
            "except Exception as e:\n"
            "    print(type(e).__name__, is_out_of_memory(e))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "KERAS_BACKEND": BACKEND})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "True", proc.stdout
    assert not cli.is_out_of_memory(ValueError("Out of range")) and cli.is_out_of_memory(
        MemoryError())


def test_jobs_workers_stop_quietly_on_an_error(tmp_path, capfd):
    """--jobs 2: bad data is refused before any worker starts; an error inside a worker (out
    of memory here) is one line, with no traceback from the worker that was stopped. (The
    bad-data case runs in this process: ``capfd`` reads file descriptors 1 and 2, which a
    worker process would inherit, so a worker's traceback would be seen here too.)"""
    swapped = bad_data_dir(tmp_path, "swapped")
    out = tmp_path / "fig2"
    rc, _, err = call(capfd, ["reproduce", "fig2", "--smoke", "--jobs", "2", "--out", str(out),
                              f"data.data_dir={swapped}"])
    assert rc == 2, err
    assert_one_error(err, "swapped")
    assert not list(out.rglob("metrics.json")) and leftovers(tmp_path) == []
    proc = cli_process(["reproduce", "fig2", "--smoke", "--jobs", "2", "--out", str(out),
                        "model.width=100000"], memory_kb=MEMORY_LIMIT_KB, wait=False)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 6, err
    assert_one_error(err, "out of memory")
    assert "KeyboardInterrupt" not in err and "Traceback" not in err
    assert not list(out.rglob("metrics.json")) and leftovers(tmp_path) == []
    assert processes_of_group(proc.pid, settle=10) == []


def test_report_reference_must_be_a_condition(tmp_path, capsys):
    runs = tmp_path / "runs"
    tiny_run(capsys, runs / "a", "ei")
    rc, _, err = call(capsys, ["report", str(runs), "--reference", "nope"])
    assert rc == 2 and assert_one_error(err, "--reference nope", "ei")
    assert not (runs / "report.md").exists()
    rc, _, err = call(capsys, ["report", str(runs)])  # the default reference, absent: a note
    assert rc == 0 and error_lines(err) == [] and "note: no runs of the default reference" in err
    rc, _, err = call(capsys, ["report", str(runs), "--reference", "ei"])
    assert rc == 0 and error_lines(err) == []


@pytest.mark.parametrize("argv, key", [
    (["--preset", "ei_ln", "data.shift=contrast", "data.luminosity=0.3"], "data.luminosity"),
    (["--preset", "ei_ln", "data.contrast=2"], "data.contrast"),
    (["--preset", "ei_ln", "data.shift=contrast_signal", "data.luminosity=0"],
     "data.luminosity"),
    (["--preset", "ei", "loss.norm_weight=0.5"], "loss.norm_weight"),
    (["--preset", "conv_ei_ln", "loss.norm_weight=0.1"], "loss.norm_weight"),
    (["--preset", "ei_ln", "loss.norm_weight_schedule=linear"], "loss.norm_weight_schedule"),
    (["--preset", "e_ln", "loss.norm_weight_horizon=3"], "loss.norm_weight_horizon"),
])
def test_keys_that_do_not_apply_are_refused(argv, key, tmp_path, capsys):
    """The one rule: a key the run would not use (another shift family's size, lambda without
    I-Norm) is refused, never recorded in config.json or the fingerprint."""
    out = tmp_path / "never"
    rc, _, err = call(capsys, ["train", "--out", str(out), *argv])
    assert rc == 2 and assert_one_error(err, key, "does not apply")
    assert not out.exists()


def test_the_one_rule_for_keys_that_do_not_apply():
    from ei_keras import recipes, zoo
    from ei_keras.experiment import resolve

    contrast = RunConfig().with_overrides({"data.shift": "contrast", "data.contrast": 2})
    assert RunConfig.from_dict(contrast.to_dict()) == contrast  # defaults are not "set"
    with pytest.raises(ValueError, match="norm_weight"):
        zoo.hyperparameters("ei_ln", norm_weight=0.5)
    assert "norm_weight" in zoo.hyperparameters("inorm", norm_weight=0.5)
    # in a recipe, an override applies to the cells it can change, and is refused if none
    plain = dict(recipes.plan(recipes.get("fig5"), smoke=True))
    cells = dict(recipes.plan(recipes.get("fig5"), smoke=True,
                              overrides=["loss.norm_weight=0.05"]))
    for rel, cfg in cells.items():
        if rel.parts[0] == "ei_ln":
            assert cfg.loss.norm_weight is None
            assert resolve(cfg)["fingerprint"] == resolve(plain[rel])["fingerprint"]
        else:
            assert cfg.loss.norm_weight == 0.05
    with pytest.raises(ConfigError, match="loss.norm_weight.*does not apply"):
        recipes.plan(recipes.get("fig2"), smoke=True, overrides=["loss.norm_weight=0.05"])
    with pytest.raises(ConfigError, match="data.luminosity.*does not apply"):
        recipes.plan(recipes.get("contrast"), smoke=True, overrides=["data.luminosity=0.5"])


def test_a_truncated_keras_file_is_named_corrupt(tmp_path):
    import keras_tuner

    from ei_keras import zoo
    from ei_keras.run_directory import check_keras_file
    from ei_keras.tuning import EIHyperModel, SweepTuner
    from ei_keras.tuning import space as space_module

    good = tmp_path / "model.keras"
    zoo.build("ei_ln", width=8, seed=0).save(good)
    raw = good.read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt") as info:
        check_keras_file(truncated)
    assert str(truncated) in str(info.value) and "not found" not in str(info.value).lower()
    flipped = bytearray(raw)  # a damaged member: the archive opens, a CRC check fails
    start = raw.index(b"PK\x03\x04")
    flipped[start + 30 + int.from_bytes(raw[start + 26:start + 28], "little") + 5] ^= 0xFF
    damaged = tmp_path / "damaged.keras"
    damaged.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="corrupt"):
        check_keras_file(damaged)
    assert check_keras_file(good) == good
    hypermodel = EIHyperModel("ei_ln", 0.75, tmp_path / "runs", smoke=True)
    tuner = SweepTuner(hypermodel, space_module.resize_space(space_module.load_search_space(
        ROOT / "tuner_configs" / "ei.json"), smoke=True), max_trials=1, seed=1,
        directory=tmp_path, project_name="p")
    trial = keras_tuner.engine.trial.Trial(tuner.oracle.get_space(), trial_id="0")
    hypermodel.run_dir("0").mkdir(parents=True)
    (hypermodel.run_dir("0") / "model.keras").write_bytes(truncated.read_bytes())
    with pytest.raises(ValueError, match="truncated or corrupt"):
        tuner.load_model(trial)


def test_an_invalid_error_normalization_names_the_argument_given():
    from ei_keras.layers import ErrorNormalization, INormDense
    from ei_keras.models import EINetwork

    for make in (lambda: INormDense(8, error_normalization="bogus"),
                 lambda: EINetwork(hidden_units=(8,), hidden_layer="inorm",
                                   error_normalization="bogus")):
        with pytest.raises(ValueError, match="error_normalization") as info:
            make()
        assert "`mode`" not in str(info.value) and "bogus" in str(info.value)
    with pytest.raises(ValueError, match="`mode`"):
        ErrorNormalization(mode="bogus")


def test_an_idx_file_of_the_other_kind_is_named(tmp_path, capsys):
    folder = bad_data_dir(tmp_path, "labels-are-images")
    out = tmp_path / "never"
    rc, _, err = call(capsys, ["train", "--preset", "ei_ln", "--out", str(out),
                               f"data.data_dir={folder}"])
    line = assert_one_error(err, fashion_mnist.FILE_NAMES["test_labels"], "expected a file of "
                            "labels", "holds images")
    assert rc == 2 and "bytes of" not in line and not out.exists()
    with pytest.raises(fashion_mnist.DataFileError, match="expected a file of images"):
        fashion_mnist.read_idx(DEBIAN / fashion_mnist.FILE_NAMES["test_labels"], "images")
