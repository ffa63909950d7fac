"""Run directories, divergence as an outcome, the ``ei-keras`` CLI and a recipe smoke run.

Tiny real runs (width 16, one epoch of 256 shifted Fashion-MNIST images, 256 test images):

- ``recipes.run_protocol("fig6", smoke=True, ...)`` runs two cells with
  ``experiment.run_experiment``, resumes without rerunning them, and writes report.md; each cell
  is a complete run directory: config.json, history.csv, metrics.json (status ``ok``, finite test
  accuracy, backend and library versions) and nothing else, no ``.partial`` folder behind;
  ``run_experiment`` refuses an existing run directory;
- a huge inhibitory learning rate (``inorm``, ``opt.lr_ie=1e6``; clipped gradients keep the
  weights finite) trains on with a stability event naming the step and the learning rate to
  lower, scored by its final accuracy (the paper's scoring), not a crash;
- the CLI returns non-zero and prints the message for a diverged run (``opt.lr_e=1e6``, so that
  this test covers the CLI path independently of the one above), and exit code 2 with a message
  naming the key for an invalid override or preset.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest

from ei_keras import cli, recipes
from ei_keras.config import RunConfig
from ei_keras.experiment import (
    AUTO_STEPS_PER_EXECUTION,
    ConfigError,
    resolve,
    resolve_steps_per_execution,
    run_experiment,
)
from ei_keras.run_directory import RunDirectoryError


def validate_config(mapping):
    """The configuration as ``run_experiment`` resolves it (validation included)."""
    return resolve(RunConfig.from_dict(mapping))["config"]

BACKEND = keras.backend.backend()
TINY = {"model": {"width": 16, "depth": 2}, "train": {"epochs": 1},
        "data": {"train_subset": 256, "test_subset": 256, "luminosity": 0.5, "batch_size": 32},
        "measures": {"probe_size": 64}}
#: For the runs that diverge: no per-epoch measures (nothing to measure on non-finite weights).
NO_MEASURES = {"measures": {"probe_size": 64, "moments": False, "alignment": False}}
TINY_OVERRIDES = ["model.width=16", "train.epochs=1", "data.train_subset=256",
                  "data.test_subset=256", "measures.moments=false", "measures.alignment=false"]


def silent(*args, **kwargs):
    pass


def leftovers(parent: Path) -> list[str]:
    """Hidden ``.<name>.partial-*`` work folders left next to run directories."""
    return sorted(p.name for p in parent.iterdir() if ".partial" in p.name)


# --------------------------------------------------------------------------------------------
# A recipe at smoke size: its cells are complete run directories (run_experiment's output)

CONDITIONS = ("ei_ln", "inorm_gradnorm")
FIG6_KWARGS = {
    "smoke": True, "configs": 1, "sizes": [0.5], "conditions": CONDITIONS,
    # the tiny run of the brief; learning rates pinned (the recipe otherwise draws them)
    "overrides": {"model.width": 16, "train.epochs": 1, "data.train_subset": 256,
                  "data.test_subset": 256, "measures.probe_size": 64, "opt.lr_e": 0.05,
                  "opt.lr_ie": 0.01, "opt.lr_ei": 0.001},
}


@pytest.fixture(scope="module")
def fig6(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipes") / "fig6"
    lines = []
    summary = recipes.run_protocol("fig6", out, printer=lines.append, **FIG6_KWARGS)
    return out, summary, lines


def cell(out: Path, condition: str) -> Path:
    return out / condition / "r0.5" / "cfg00"


def test_fig6_smoke_runs_resumes_and_reports(fig6):
    out, summary, lines = fig6
    assert summary["ran"] == 2 and summary["skipped"] == 0 and summary["diverged"] == 0
    report = Path(summary["report"])
    assert report == out / "report.md" and report.exists()
    text = report.read_text()
    assert "Fig. 6" in text
    for condition in CONDITIONS:
        assert condition in text
    assert any("test accuracy" in line for line in lines)  # progress went to the printer
    # A second call resumes: every cell is complete, nothing runs again.
    again = recipes.run_protocol("fig6", out, printer=silent, **FIG6_KWARGS)
    assert again["ran"] == 0 and again["skipped"] == 2


@pytest.mark.parametrize("condition", CONDITIONS)
def test_run_directory_is_complete(fig6, condition):
    out, _, _ = fig6
    run_dir = cell(out, condition)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "history.csv",
                                                         "metrics.json"]
    assert leftovers(run_dir.parent) == []
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert metrics["diverged_step"] is None and metrics["message"] is None
    assert math.isfinite(metrics["test_accuracy"]) and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert math.isfinite(metrics["test_loss"])
    assert metrics["backend"] == BACKEND
    versions = metrics["versions"]
    assert versions["backend"] == BACKEND and versions["keras"] == keras.__version__
    assert versions["backend_version"] and versions["python"] and versions["ei_keras"]
    assert metrics["seed"] == 0 and metrics["preset"] == condition
    assert metrics["luminosity"] == 0.5
    assert metrics["hyperparameters"]["lr_e"] == 0.05
    assert metrics["hyperparameters"]["lr_ie"] == 0.01
    for k in (1, 2):  # final measures on the probe
        assert math.isfinite(metrics["moments"][f"hidden_{k}"]["var"])
    assert len(metrics["alignment"]["gradient"]) == 2

    config = json.loads((run_dir / "config.json").read_text())
    assert config["preset"] == condition and config["seed"] == 0
    assert config["model"]["width"] == 16 and config["data"]["train_subset"] == 256
    assert config["train"]["epochs"] == 1
    assert config["resolved"]["hyperparameters"] == metrics["hyperparameters"]
    # The stored fingerprint holds what this run was asked for (values written here, not
    # recomputed by the function that wrote them), and nothing about where files go.
    fp = config["fingerprint"]
    expected = {"preset": condition, "seed": 0, "model.width": 16, "model.depth": 2,
                "data.train_subset": 256, "data.test_subset": 256, "data.luminosity": 0.5,
                "data.batch_size": 32, "train.epochs": 1, "measures.probe_size": 64,
                "hp.lr_e": 0.05, "hp.lr_ie": 0.01, "ei_keras": versions["ei_keras"]}
    assert {k: fp.get(k, "absent") for k in expected} == expected
    assert not {"condition", "data.data_dir", "output.save_model"} & set(fp)

    with open(run_dir / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["epoch"] == "1"
    expected = {"loss", "task_loss", "norm_loss", "accuracy", "hidden_1_mean", "hidden_2_var",
                "output_alignment_1", "gradient_alignment_2"}
    assert expected <= set(rows[0])
    assert all(math.isfinite(float(rows[0][k])) for k in expected)


def test_existing_run_directory_is_refused(fig6):
    out, _, _ = fig6
    run_dir = cell(out, "inorm_gradnorm")
    before = (run_dir / "metrics.json").read_bytes()
    with pytest.raises(RunDirectoryError, match="already exists"):
        run_experiment({"preset": "inorm_gradnorm", **TINY}, run_dir, printer=silent)
    assert (run_dir / "metrics.json").read_bytes() == before
    assert leftovers(run_dir.parent) == []


# --------------------------------------------------------------------------------------------
# Divergence is an outcome


def test_huge_inhibitory_learning_rate_is_a_stability_event_scored_by_its_accuracy(tmp_path):
    """The inhibitory gradients are clipped, so lr_ie = 1e6 drives W_IE past 1e3 but keeps it
    finite: the run trains its whole length (the paper's scoring), and its stability event
    names the step, the group and the learning rate to lower."""
    run_dir = tmp_path / "inorm-lr_ie-1e6"
    metrics = run_experiment(
        {"preset": "inorm", "seed": 0, **TINY, **NO_MEASURES, "opt": {"lr_ie": 1e6}}, run_dir,
        printer=silent)
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics, default=str))  # what was returned
    assert metrics["status"] == "ok", metrics["message"]
    event = metrics["stability"]
    assert isinstance(event["first_step"], int) and event["first_step"] >= 1
    assert event["first_epoch"] == 1 and event["peak_abs_weight"] > 1e3
    assert event["cause"] == "inhibitory_input"
    assert "opt.lr_ie (now 1e+06)" in event["message"]
    assert metrics["test_accuracy"] is not None  # scored by it, not replaced by chance
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "history.csv",
                                                         "metrics.json"]
    assert leftovers(tmp_path) == []


def test_cli_train_reports_divergence_with_nonzero_exit(tmp_path, capsys):
    out = tmp_path / "cli-diverged"
    rc = cli.main(["train", "--preset", "inorm", "--out", str(out), "opt.lr_e=1e6",
                   *TINY_OVERRIDES])
    captured = capsys.readouterr()
    assert rc != 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["diverged_step"] >= 1
    assert metrics["message"] in captured.err
    assert "diverged" in captured.err.lower()
    # only lr_e was raised: the excitatory group is blamed, not lr_ie or norm_weight
    assert metrics["diverged_cause"] == "excitatory"
    assert "opt.lr_e" in metrics["message"] and "lr_ie" not in metrics["message"]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("override, key", [
    ("opt.lr_x=0.1", "opt.lr_x"),            # unknown key
    ("optimizer.lr_e=0.1", "optimizer"),     # unknown section
    ("model.width=abc", "model.width"),      # bad type
    ("model.width=0", "model.width"),        # bad value
    ("opt.lr_ie=-1", "opt.lr_ie"),           # negative learning rate
    ("data.luminosity=2", "data.luminosity"),
])
def test_cli_rejects_invalid_override_with_exit_code_2(override, key, tmp_path, capsys):
    out = tmp_path / "never"
    rc = cli.main(["train", "--preset", "inorm", "--out", str(out), override])
    err = capsys.readouterr().err
    assert rc == 2
    assert key in err, err
    assert not out.exists() and leftovers(tmp_path) == []


def test_cli_rejects_unknown_preset_with_exit_code_2(tmp_path, capsys):
    rc = cli.main(["train", "--preset", "inorm_gradnrom", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "inorm_gradnorm" in err  # names the close match


# --------------------------------------------------------------------------------------------
# train.steps_per_execution: speed, not numbers

@pytest.mark.parametrize("value", [0, -1, "fast", True, 2.5])
def test_invalid_steps_per_execution_is_named(value):
    with pytest.raises(ConfigError, match="train.steps_per_execution"):
        validate_config({"train": {"steps_per_execution": value}})


def test_steps_per_execution_auto_resolves_per_backend():
    assert resolve_steps_per_execution("auto", "torch") == 1
    assert resolve_steps_per_execution("auto", "jax") == AUTO_STEPS_PER_EXECUTION > 1
    assert resolve_steps_per_execution("auto", "tensorflow") == AUTO_STEPS_PER_EXECUTION
    assert resolve_steps_per_execution(4, "jax") == 4
    with pytest.raises(ConfigError, match="auto"):
        resolve_steps_per_execution(4, "torch")
    if BACKEND == "torch":
        with pytest.raises(ConfigError, match="--backend torch"):
            validate_config({"train": {"steps_per_execution": 8}})
    else:
        assert validate_config({"train": {"steps_per_execution": 8}}).train.steps_per_execution \
            == 8


def test_steps_per_execution_gives_the_same_run(tmp_path):
    """``auto`` (32 steps per call on TF/JAX) and 1 train identically; the divergence monitor
    counts every step (8 per epoch here) whatever the grouping."""
    results = {}
    for spe in ("auto", 1):
        cfg = {"preset": "inorm_gradnorm", "seed": 1, **TINY, **NO_MEASURES,
               "train": {"epochs": 2, "steps_per_execution": spe}}
        run_dir = tmp_path / f"spe-{spe}"
        results[spe] = run_experiment(cfg, run_dir, printer=silent)
        config = json.loads((run_dir / "config.json").read_text())
        assert config["resolved"]["steps_per_execution"] == (
            1 if spe == 1 or BACKEND == "torch" else AUTO_STEPS_PER_EXECUTION)
        with open(run_dir / "history.csv") as f:
            results[spe]["history"] = list(csv.DictReader(f))
    a, b = results["auto"], results[1]
    assert a["status"] == b["status"] == "ok"
    # The grouped and the one-step compiled functions round differently (float32, ~1e-6 after
    # these 16 steps): an image whose two top logits are that close to a tie may change its
    # predicted class, so an accuracy may move by one image (1/256 here), nothing more.
    one_image = 1 / TINY["data"]["test_subset"]
    assert TINY["data"]["test_subset"] == TINY["data"]["train_subset"]
    assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=one_image * 1.001)
    assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-5)
    for ra, rb in zip(a["history"], b["history"], strict=True):
        for key in ("loss", "task_loss", "norm_loss"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-5), key
        assert float(ra["accuracy"]) == pytest.approx(float(rb["accuracy"]), abs=one_image * 1.001)


# --------------------------------------------------------------------------------------------
# The divergence bounds, seen from outside: a finite excursion past them is caught at its step

#: The bound on the loss and on |weight| (1e3: chance cross-entropy is 2.3, initial weights
#: O(0.1-10)), written here and not imported, so that a changed bound fails this test.
BOUND = 1e3


def excursion_step(monitor):
    """The step at which ``monitor`` reported crossing a bound, or None: a finite excursion is
    a recorded stability event (the run trains on), not a stop."""
    assert not monitor.diverged  # nothing here is non-finite
    return None if monitor.excursion is None else monitor.excursion["first_step"]


def monitored_fit(kernel=0.0, loss_at_step_3=0.0):
    """A ``Dense(1)`` that does not learn (SGD at rate 0) on zero inputs, 8 steps of batch 2,
    mean squared error 0 everywhere except step 3 (``loss_at_step_3``). Keras logs the running
    mean of the epoch's losses, so the monitor sees ``loss_at_step_3 / 3`` at step 3."""
    from ei_keras.divergence import DivergenceMonitor

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(
        1, kernel_initializer=keras.initializers.Constant(kernel))])
    model.compile(keras.optimizers.SGD(0.0), "mse", steps_per_execution=1)
    x = np.zeros((16, 4), "float32")
    y = np.zeros((16, 1), "float32")
    y[4:6] = np.sqrt(loss_at_step_3)  # the third batch of two
    monitor = DivergenceMonitor()
    model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0, callbacks=[monitor])
    return monitor


def test_a_finite_loss_or_weight_past_the_bound_is_caught_at_its_step():
    # Logged loss 10 x the bound at step 3 (finite): caught there; half the bound: not.
    assert excursion_step(monitored_fit(loss_at_step_3=30 * BOUND)) == 3
    assert excursion_step(monitored_fit(loss_at_step_3=1.5 * BOUND)) is None
    # A weight of 10 x the bound (the loss stays 0): caught before the first step; half: not.
    assert excursion_step(monitored_fit(kernel=10 * BOUND)) == 0
    assert excursion_step(monitored_fit(kernel=0.5 * BOUND)) is None


# --------------------------------------------------------------------------------------------
# Fingerprints: what makes two runs the same experiment

#: Every key that defines a run, with a value unlike the base configuration's (and unlike the
#: preset's defaults): changing any one must change the fingerprint, or a finished run of
#: another experiment would be reused. Written here, not read from ei_keras.config.
FINGERPRINT_BASE = {"preset": "inorm_gradnorm", "data.validation_size": 100}
DEFINING = {
    "preset": "inorm", "seed": 1, "model.width": 17, "model.depth": 3,
    "model.trainable_ei": False, "data.shift": "contrast", "data.luminosity": 0.25,
    "data.batch_size": 16, "data.train_subset": 1000, "data.test_subset": 900,
    "data.validation_size": 200, "train.epochs": 7, "train.validate_each_epoch": True,
    "train.jit_compile": False, "train.steps_per_execution": 1, "train.inhibitory_steps": 2,
    "train.inhibitory_every": 3, "opt.lr_e": 0.0123, "opt.lr_ie": 0.0234, "opt.lr_ei": 0.0345,
    "opt.momentum": 0.5, "opt.inhibitory_momentum": 0.25, "opt.inhibitory_clipnorm": 2.5,
    "opt.excitatory_clipnorm": 2.5,
    "opt.exponentiated": True, "opt.inhibitory_exponentiated": True, "opt.eg_normalise": True,
    "opt.split_bias": True, "model.gradnorm_on": "z", "loss.norm_weight_schedule": "linear",
    "loss.norm_weight_horizon": 5, "model.task_trains_inhibitory": True,
    "model.norm_trains_excitatory": True,
    "loss.norm_weight": 0.123, "loss.label_smoothing": 0.05, "measures.moments": False,
    "measures.alignment": False, "measures.probe_size": 100, "measures.weights": True,
}
#: The contrast range defines a run of the contrast shift (and only of it).
DEFINING_UNDER_CONTRAST = {"data.contrast": 2.0}
#: Keys that must not matter: a label, where the data files are read from, whether the model
#: file is also written. (Where the run directory goes is not part of the configuration.)
NOT_DEFINING = {"condition": "my label", "data.data_dir": "/elsewhere/fashion-mnist",
                "output.save_model": True}


def test_every_key_that_defines_a_run_changes_its_fingerprint_and_no_other(monkeypatch):
    import ei_keras
    from ei_keras.config import KEYS

    # Every configuration key is classified above: a new key needs a decision here.
    assert set(DEFINING) | set(DEFINING_UNDER_CONTRAST) | set(NOT_DEFINING) == set(KEYS)

    def fp(extra, base=FINGERPRINT_BASE):
        return resolve(RunConfig.from_dict({**base, **extra}))["fingerprint"]

    base = fp({})
    for key, value in DEFINING.items():
        assert fp({key: value}) != base, f"{key}={value!r} left the fingerprint unchanged"
    contrast = {**FINGERPRINT_BASE, "data.shift": "contrast"}
    for key, value in DEFINING_UNDER_CONTRAST.items():
        assert fp({key: value}, contrast) != fp({}, contrast), key
    for key, value in NOT_DEFINING.items():
        assert fp({key: value}) == base, f"{key}={value!r} changed the fingerprint"
    # The library version defines it too (another version may compute another result).
    monkeypatch.setattr(ei_keras, "__version__", "0.0.0+other")
    assert fp({}) != base


#: Keys added after results folders were committed, at the value that leaves a run as it was
#: (written here, not read from ei_keras.config): absent from the fingerprint at that value,
#: so a folder made before the key existed stays reusable.
NEUTRAL = {"model.gradnorm_on": "y", "model.task_trains_inhibitory": False,
           "model.norm_trains_excitatory": False, "measures.weights": False}


def test_keys_added_later_leave_the_fingerprint_alone_at_their_neutral_value():
    from ei_keras.config import NEUTRAL_VALUES

    assert NEUTRAL_VALUES == NEUTRAL
    for key, value in NEUTRAL.items():
        at_neutral = resolve(RunConfig.from_dict({**FINGERPRINT_BASE, key: value}))
        assert key not in at_neutral["fingerprint"]
        assert at_neutral["fingerprint"] == resolve(
            RunConfig.from_dict(FINGERPRINT_BASE))["fingerprint"]
        other = resolve(RunConfig.from_dict({**FINGERPRINT_BASE, key: DEFINING[key]}))
        assert other["fingerprint"][key] == DEFINING[key]


def test_divergence_monitor_snapshots_every_group_and_counts_every_step():
    """The monitor counts every step whatever the grouping, and keeps a good copy of the
    variables at the start of every compiled call (every SNAPSHOT_EVERY steps on torch)."""
    import numpy as np

    from ei_keras import zoo
    from ei_keras.divergence import SNAPSHOT_EVERY, DivergenceMonitor

    spe = 1 if BACKEND == "torch" else 4
    model = zoo.build("ei_ln", width=8, seed=0, steps_per_execution=spe)
    monitor = DivergenceMonitor()
    taken = []
    snapshot = monitor._snapshot
    monitor._snapshot = lambda batch: (taken.append(monitor._global_step), snapshot(batch))
    x = np.random.default_rng(0).random((80, 784), dtype=np.float32)
    y = np.arange(80) % 10
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[monitor])  # 10 steps/epoch
    assert monitor._global_step == 20 and not monitor.diverged
    assert monitor._good is not None and monitor._good[0] == taken[-1]
    gaps = np.diff(taken)
    assert taken[0] == 0 and 10 in taken  # every epoch start
    assert gaps.max() <= (spe if spe > 1 else SNAPSHOT_EVERY)


# --------------------------------------------------------------------------------------------
# The other verbs: presets, report (on what run_experiment wrote), demo, sweep


def test_cli_presets_lists_every_preset_with_its_defaults(capsys):
    from ei_keras import zoo

    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in zoo.names():
        preset = zoo.get(name)
        assert f"{name} " in out and preset.description[:30] in out
        assert f"lr_e={preset.hyperparameters['lr_e']:g}" in out


def test_cli_report_reads_what_run_experiment_wrote(fig6, capsys):
    out, _, _ = fig6
    report_dir = out.parent / "fig6-report"
    assert cli.main(["report", str(out), "--out", str(report_dir)]) == 0
    text = (report_dir / "report.md").read_text()
    printed = capsys.readouterr().out
    for condition in CONDITIONS:
        metrics = json.loads((cell(out, condition) / "metrics.json").read_text())
        accuracy = f"{100 * metrics['test_accuracy']:.1f}"
        assert accuracy in text, (condition, accuracy)  # the table shows each run's accuracy
    assert "model.width = 16" in text and "train.epochs = 1" in text
    assert "inorm_gradnorm vs ei_ln" in printed


def test_cli_demo_smoke_writes_its_report(tmp_path, capsys):
    out = tmp_path / "demo"
    # --jobs 1: worker processes are tested in test_recipes.py; here the demo's own path
    assert cli.main(["demo", "--smoke", "--out", str(out), "--jobs", "1", "model.width=8",
                     "data.train_subset=64", "data.test_subset=64",
                     "measures.probe_size=32"]) == 0
    assert "demo finished" in capsys.readouterr().out
    text = (out / "report.md").read_text()
    for condition in recipes.get("demo").conditions:
        assert condition in text
        assert (out / condition / "r0.75" / "cfg00" / "metrics.json").is_file()


def test_cli_sweep_verb_writes_runs_the_report_reads(tmp_path):
    """As its own process: the CLI's sweep freezes the garbage collector for speed."""
    import subprocess
    import sys

    from ei_keras.analysis import load_runs

    proc = subprocess.run(
        [sys.executable, "-m", "ei_keras.cli", "sweep", "--preset", "ei_ln", "--smoke",
         "--trials", "2", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "KERAS_BACKEND": BACKEND})
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = load_runs(tmp_path)
    assert sorted(r.trial_id for r in runs) == ["0", "1"]
    assert all(r.status in ("ok", "diverged") for r in runs)


def test_validation_split_is_held_out_and_reported_beside_the_test_accuracy(tmp_path):
    metrics = run_experiment(
        {"preset": "ei_ln", **TINY, **NO_MEASURES,
         "data": {**TINY["data"], "validation_size": 128},
         "train": {"epochs": 2, "validate_each_epoch": True}}, tmp_path / "run",
        printer=silent)
    assert 0 <= metrics["val_accuracy"] <= 1 and math.isfinite(metrics["val_loss"])
    assert 0 <= metrics["test_accuracy"] <= 1
    with open(tmp_path / "run" / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(0 <= float(row["val_accuracy"]) <= 1 for row in rows)
    # the last epoch's validation is the final one
    assert float(rows[-1]["val_accuracy"]) == pytest.approx(metrics["val_accuracy"], abs=1e-6)


def test_cli_train_with_an_inhibitory_schedule(tmp_path, capsys):
    out = tmp_path / "k4"
    assert cli.main(["train", "--preset", "inorm", "train.inhibitory_steps=4", "--smoke",
                     "--out", str(out), "model.width=8", "data.train_subset=64",
                     "data.test_subset=64", "measures.probe_size=32"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["inhibitory_steps"] == 4
    assert config["fingerprint"]["train.inhibitory_steps"] == 4
    assert json.loads((out / "metrics.json").read_text())["status"] == "ok"
