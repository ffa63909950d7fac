"""KerasTuner sweeps: tuner configuration files, the hypermodel, resumable and distributed
random search (issue 6). Trials use --smoke sizes (width 8 or 16, 1 epoch, 128 samples).

The subprocess tests (chief + 2 workers, kill-and-resume, bounded waits) start fresh Python
processes that inherit KERAS_BACKEND, so they run under every backend like the rest of the
suite (each pays Keras' import, 10-25 s on the 2-core CI machines).
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from ei_keras.tuning import space as space_module

# KerasTuner 1.4.8's @synchronized calls threading.currentThread().getName() (deprecated).
pytestmark = [pytest.mark.filterwarnings("ignore:currentThread.*:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:getName.*:DeprecationWarning")]

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "tuner_configs"


def _read(name: str) -> dict:
    return json.loads((CONFIGS / name).read_text())


# ------------------------------------------------------------------------------- config files


@pytest.mark.parametrize("family", space_module.FAMILIES)
def test_committed_configs_are_generated_from_search_space(family):
    assert _read(f"{family}.json") == space_module.tuner_config(family), (
        "tuner_configs/ is stale: run `python -m ei_keras.tuning.space tuner_configs`")


@pytest.mark.parametrize("family", space_module.FAMILIES)
def test_config_file_round_trips_through_hyperparameters(family):
    from ei_keras import search_space

    hp = space_module.load_search_space(CONFIGS / f"{family}.json")
    assert hp.get_config() == _read(f"{family}.json")["hyperparameters"]
    config = hp.get_config()
    by_name = {e["config"]["name"]: e for e in config["space"]}
    ranges = {"ei": search_space.EI_SPACE, "inorm": search_space.INORM_SPACE,
              "conv_ei": search_space.EI_SPACE,
              "conv_inorm": search_space.CONV_INORM_SPACE,
              "rnn_ei": search_space.EI_SPACE,
              "rnn_inorm": search_space.RNN_INORM_SPACE}[family]
    widths = (search_space.CONV_WIDTH_RANGE if "conv" in family else
              search_space.RNN_WIDTH_RANGE if "rnn" in family else search_space.WIDTH_RANGE)
    assert _read(f"{family}.json")["presets"] == space_module.family_presets(family)
    for name, (low, high, sampling) in ranges.items():
        assert by_name[name]["class_name"] == "Float"
        assert (by_name[name]["config"]["min_value"], by_name[name]["config"]["max_value"],
                by_name[name]["config"]["sampling"]) == (low, high, sampling)
    assert (by_name["width"]["config"]["min_value"],
            by_name["width"]["config"]["max_value"]) == widths
    assert config["values"]["depth"] == 2 and config["values"]["batch_size"] == 32
    assert config["values"]["momentum"] == 0.0 and config["values"]["epochs"] == 50
    if "inorm" in family:
        assert by_name["norm_weight"]["config"]["values"] == [0.001, 0.01, 0.1]
        assert config["values"]["norm_weight"] == 0.01
    else:
        assert "norm_weight" not in by_name


def _entry(config, name):
    return next(e for e in config["hyperparameters"]["space"] if e["config"]["name"] == name)


def _break_unknown_top(c):
    c["optimizer"] = "adam"


def _break_unknown_name(c):
    _entry(c, "lr_ei")["config"]["name"] = "lr_ii"


def _break_range(c):
    _entry(c, "lr_ie")["config"]["max_value"] = 1e-4  # below min_value 1e-3


def _break_log_min(c):
    _entry(c, "lr_e")["config"]["min_value"] = 0.0


def _break_int_type(c):
    _entry(c, "width")["config"]["min_value"] = "100"


def _break_float_width(c):
    _entry(c, "width")["class_name"] = "Float"


def _break_unknown_hp_key(c):
    _entry(c, "lr_e")["config"]["minimum"] = 0.1


def _break_value(c):
    c["hyperparameters"]["values"]["lr_e"] = 5.0


def _break_missing(c):
    c["hyperparameters"]["space"] = [e for e in c["hyperparameters"]["space"]
                                     if e["config"]["name"] != "width"]
    c["hyperparameters"]["values"].pop("width")


@pytest.mark.parametrize("breaker, field", [
    (_break_unknown_top, "`optimizer`"),
    (_break_unknown_name, "hyperparameters.space[2].config.name"),
    (_break_range, "(lr_ie).config.max_value"),
    (_break_log_min, "(lr_e).config.min_value"),
    (_break_int_type, "(width).config.min_value"),
    (_break_float_width, "(width).class_name"),
    (_break_unknown_hp_key, "(lr_e).config.minimum"),
    (_break_value, "hyperparameters.values.lr_e"),
    (_break_missing, "(width)"),
])
def test_invalid_config_file_is_rejected_naming_the_field(tmp_path, breaker, field):
    config = copy.deepcopy(_read("ei.json"))
    breaker(config)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError) as info:
        space_module.load_search_space(path)
    assert field in str(info.value) and str(path) in str(info.value)
    if breaker is _break_unknown_name:
        assert "lr_ii" in str(info.value)


def test_smoke_space_shrinks_width_and_epochs_only():
    hp = space_module.load_search_space(CONFIGS / "inorm.json")
    small = space_module.resize_space(hp, smoke=True)
    values = small.get_config()["values"]
    assert values["epochs"] == 1 and values["width"] == space_module.SMOKE_WIDTH_RANGE[0]
    sig, small_sig = space_module.space_signature(hp), space_module.space_signature(small)
    assert {k for k in sig if sig[k] != small_sig[k]} == {"width", "epochs"}
    assert space_module.resize_space(hp, epochs=3).get_config()["values"]["epochs"] == 3


# ------------------------------------------------------------------------------ oracle logic


def test_silent_worker_trial_is_requeued_and_a_late_result_counted_once(tmp_path):
    import keras_tuner

    from ei_keras.tuning import SweepOracle

    hp = space_module.load_search_space(CONFIGS / "ei.json")
    oracle = SweepOracle(objective=keras_tuner.Objective("val_accuracy", "max"), max_trials=2,
                         seed=1, hyperparameters=hp, allow_new_entries=False,
                         tune_new_entries=False, printer=lambda *a: None)
    oracle._set_project_dir(str(tmp_path), "p")
    first = oracle.create_trial("w0")
    assert oracle.requeue_silent(timeout=3600) == []
    time.sleep(0.01)
    stale = oracle.requeue_silent(timeout=0.001)
    assert [(t, i) for t, i, _ in stale] == [("w0", first.trial_id)]
    again = oracle.create_trial("w1")  # the requeued trial, same id and values
    assert again.trial_id == first.trial_id and again.hyperparameters.values == \
        first.hyperparameters.values
    for t in (first, again):  # w0 was only slow: both report
        oracle.update_trial(t.trial_id, {"val_accuracy": 0.5})
        t.status = "COMPLETED"
        oracle.end_trial(t)
    assert oracle.end_order == [first.trial_id] and not oracle.ongoing_trials


# ------------------------------------------------------------------------------- in-process


@pytest.mark.usefixtures("frozen_gc")
def test_three_trial_sweep_gives_distinct_configurations_and_readable_runs(tmp_path):
    from ei_keras.analysis import load_runs
    from ei_keras.tuning import run_sweep

    lines = []
    summary = run_sweep(CONFIGS / "inorm.json", preset="inorm_gradnorm", luminosity=0.5,
                        trials=3, out_dir=tmp_path, smoke=True, printer=lines.append)
    assert summary["finished"] == 3 and summary["role"] == "single"
    runs = load_runs(tmp_path)
    assert len(runs) == 3
    assert sorted(r.trial_id for r in runs) == ["0", "1", "2"]
    assert {r.condition for r in runs} == {"inorm_gradnorm"}
    assert {r.luminosity for r in runs} == {0.5}
    config = _read("inorm.json")["hyperparameters"]
    ranges = {e["config"]["name"]: e["config"] for e in config["space"]}
    drawn = [r.config["sweep"]["values"] for r in runs]
    assert len({json.dumps(v, sort_keys=True) for v in drawn}) == 3
    for values in drawn:
        for name in ("lr_e", "lr_ie", "lr_ei"):
            assert ranges[name]["min_value"] <= values[name] <= ranges[name]["max_value"]
        assert values["norm_weight"] in ranges["norm_weight"]["values"]
        low, high = space_module.SMOKE_WIDTH_RANGE
        assert low <= values["width"] <= high and isinstance(values["width"], int)
        assert values["depth"] == 2 and values["batch_size"] == 32 and values["epochs"] == 1
    for r in runs:  # the run really used the trial's values
        assert r.config["opt"]["lr_e"] == r.config["sweep"]["values"]["lr_e"]
        assert r.config["model"]["width"] == r.config["sweep"]["values"]["width"]
        assert r.config["loss"]["norm_weight"] == r.config["sweep"]["values"]["norm_weight"]
        assert r.seed == int(r.trial_id) and r.status in ("ok", "diverged")
        assert math.isfinite(r.accuracy)
        # The objective is the held-out validation split's accuracy; the test accuracy is
        # recorded beside it and never used for selection.
        assert r.config["data"]["validation_size"] > 0
        trial = json.loads((tmp_path / "inorm_gradnorm_r0.5" / f"trial_{r.trial_id}" /
                            "trial.json").read_text())
        score = r.metrics["val_accuracy"] if r.status == "ok" else 0.1
        assert trial["score"] == pytest.approx(score)
        assert 0 <= r.metrics["test_accuracy"] <= 1 and "val_loss" in r.metrics
    assert any("trial 2 completed" in line for line in lines)

    # Rerunning the finished sweep trains nothing and leaves the run directories alone.
    inodes = {r.trial_id: os.stat(r.path).st_ino for r in runs}
    lines.clear()
    again = run_sweep(CONFIGS / "inorm.json", preset="inorm_gradnorm", luminosity=0.5,
                      trials=3, out_dir=tmp_path, smoke=True, printer=lines.append)
    assert again["finished"] == 3 and not any("starts" in line for line in lines)
    assert {r.trial_id: os.stat(r.path).st_ino for r in load_runs(tmp_path)} == inodes
    # ... and a sweep directory is never resumed with another space.
    with pytest.raises(ValueError, match="another search space.*epochs"):
        run_sweep(CONFIGS / "inorm.json", preset="inorm_gradnorm", luminosity=0.5, trials=3,
                  out_dir=tmp_path, smoke=True, epochs=2, printer=lines.append)
    with pytest.raises(ValueError, match="not 'ei'"):
        run_sweep(CONFIGS / "inorm.json", preset="ei", trials=1, out_dir=tmp_path / "x",
                  smoke=True)

    # Without the tuner's state, finished trials are reused from their run directories when
    # their fingerprints match, and a trial made under other settings stops the sweep.
    import shutil

    shutil.rmtree(tmp_path / "inorm_gradnorm_r0.5")
    lines.clear()
    run_sweep(CONFIGS / "inorm.json", preset="inorm_gradnorm", luminosity=0.5, trials=3,
              out_dir=tmp_path, smoke=True, printer=lines.append)
    assert sum("complete run directory found, reused" in line for line in lines) == 3
    assert not any("starts" in line for line in lines)
    shutil.rmtree(tmp_path / "inorm_gradnorm_r0.5")
    config_file = runs[0].path / "config.json"
    config = json.loads(config_file.read_text())
    config["fingerprint"]["ei_keras"] = "0.0.1"  # as if made by an older version
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"ei_keras \('0.0.1' on disk.*new --out"):
        run_sweep(CONFIGS / "inorm.json", preset="inorm_gradnorm", luminosity=0.5, trials=3,
                  out_dir=tmp_path, smoke=True, printer=lines.append)


def test_hypermodel_builds_the_preset_compiled_from_trial_values(tmp_path):
    from ei_keras.tuning import EIHyperModel

    hp = space_module.load_search_space(CONFIGS / "inorm.json")
    hp.values.update(width=12, lr_e=0.2, lr_ie=0.05, lr_ei=0.02, norm_weight=0.1)
    model = EIHyperModel("inorm_center", 0.25, tmp_path).build(hp)
    assert isinstance(model, keras.Model) and model.compiled
    assert model.name == "inorm_center"
    assert tuple(model.predict(np.zeros((2, 784), "float32"), verbose=0).shape) == (2, 10)
    from ei_keras.layers import INormDense
    from ei_keras.optimizers import group_learning_rates

    hidden = [layer for layer in model._flatten_layers() if isinstance(layer, INormDense)]
    assert len(hidden) == 2 and all(layer.units == 12 for layer in hidden)
    assert all(float(keras.ops.convert_to_numpy(layer.norm_weight)) == pytest.approx(0.1)
               for layer in hidden)
    assert group_learning_rates(model.optimizer) == pytest.approx(
        {"excitatory": 0.2, "inhibitory_input": 0.05, "inhibitory_output": 0.02})


# ------------------------------------------------------------------------------- subprocesses

# They run under every backend (each subprocess inherits KERAS_BACKEND): ~1-2 min a backend.


def _reserve_port() -> tuple[socket.socket, int]:
    """A port held by a bound, non-listening socket with SO_REUSEPORT: no other program can
    take it between this call and its use (picking a free port and releasing it races), while
    the chief's gRPC server (which sets SO_REUSEPORT) can still listen on it, and a worker that
    connects to a port nobody listens on is refused. Close the socket when done."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    env.update(KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="3",
               OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1", **extra)
    return env


def _sweep_cmd(out, preset="ei", trials=3, *extra) -> list[str]:
    return [sys.executable, "-m", "ei_keras.tuning", "--preset", preset, "--trials",
            str(trials), "--out", str(out), "--smoke", *extra]


def _starts(log: str) -> list[str]:
    return [line.split(" trial ")[1].split(" ")[0] for line in log.splitlines()
            if line.startswith("[sweep") and ") starts:" in line]


def test_chief_and_two_workers_run_every_trial_exactly_once(tmp_path):
    from ei_keras.analysis import load_runs

    trials = 3
    reservation, port = _reserve_port()
    common = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    cmd = _sweep_cmd(tmp_path, "ei_ln", trials, "--timeout", "120")
    procs = {}
    for name in ("chief", "worker0", "worker1"):
        log = open(tmp_path / f"{name}.log", "w")
        procs[name] = (subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                        env=_env(KERASTUNER_TUNER_ID=name, **common)), log)
    try:
        for _name, (p, _) in procs.items():
            p.wait(timeout=400)
    finally:
        for p, log in procs.values():
            if p.poll() is None:
                p.kill()
            log.close()
        reservation.close()
    logs = {n: (tmp_path / f"{n}.log").read_text() for n in procs}
    for name, (p, _) in procs.items():
        assert p.returncode == 0, f"{name} exited {p.returncode}:\n{logs[name][-3000:]}"
    started = _starts(logs["worker0"]) + _starts(logs["worker1"])
    assert sorted(started) == [str(i) for i in range(trials)], started  # each exactly once
    runs = load_runs(tmp_path)
    assert sorted(r.trial_id for r in runs) == [str(i) for i in range(trials)]
    assert {r.config["sweep"]["tuner_id"] for r in runs} <= {"worker0", "worker1"}
    oracle = json.loads((tmp_path / "ei_ln_r0.75" / "oracle.json").read_text())
    assert sorted(oracle["end_order"]) == [str(i) for i in range(trials)]
    assert oracle["ongoing_trials"] == {}
    assert f"finished: {trials}/{trials} trials" in logs["chief"]


def test_killed_sweep_resumes_with_each_trial_run_once(tmp_path):
    from ei_keras.analysis import load_runs, scan_runs

    trials = 3
    cmd = _sweep_cmd(tmp_path, "ei", trials)
    runs_dir = tmp_path / "runs" / "ei" / "r0.75"
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=_env())
    try:
        deadline = time.time() + 300
        # Kill while trial 1 trains: trial 0 complete and trial 1 announced. The announcement
        # comes before the trial loads its data and compiles (seconds), so a 0.1 s poll of the
        # log cannot miss the window.
        while time.time() < deadline and first.poll() is None:
            if (runs_dir / "trial_0" / "metrics.json").exists() and "1" in _starts(
                    (tmp_path / "first.log").read_text()):
                break
            time.sleep(0.1)
        assert first.poll() is None, "the sweep finished before it could be killed"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    # What the kill left: complete run directories (at least trial 0) and the oracle's view.
    before = {r.trial_id: (os.stat(r.path).st_ino, (r.path / "metrics.json").read_text())
              for r in load_runs(tmp_path)}
    assert "0" in before
    state = json.loads((tmp_path / "ei_r0.75" / "oracle.json").read_text())
    interrupted = [i for i in state["ongoing_trials"].values() if i not in before]

    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=_env(),
                            timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    everything = [str(i) for i in range(trials)]
    # finished trials are not rerun; the interrupted one and the rest are run once each
    assert sorted(_starts(second.stdout)) == [i for i in everything if i not in before]
    assert set(interrupted) <= set(_starts(second.stdout))
    if interrupted:
        assert f"interrupted trial(s) {interrupted} redone" in second.stdout
    scan = scan_runs(tmp_path)
    assert sorted(r.trial_id for r in scan.runs) == everything and not scan.incomplete
    for trial_id, (inode, metrics) in before.items():  # kept as they were
        assert os.stat(runs_dir / f"trial_{trial_id}").st_ino == inode
        assert (runs_dir / f"trial_{trial_id}" / "metrics.json").read_text() == metrics
    assert sorted(p.name for p in runs_dir.iterdir()) == [f"trial_{i}" for i in everything]
    oracle = json.loads((tmp_path / "ei_r0.75" / "oracle.json").read_text())
    assert sorted(oracle["end_order"]) == everything and oracle["retry_queue"] == []


def test_chief_without_workers_and_worker_without_chief_give_up(tmp_path):
    """Bounded waits: a chief nobody contacts and a worker whose chief is unreachable exit
    after --timeout with a message saying how to resume (KerasTuner alone waits forever / an
    hour)."""
    procs, reservations = {}, []
    for name in ("chief", "worker0"):
        reservation, port = _reserve_port()  # separate ports: the worker's chief never listens
        reservations.append(reservation)
        env = _env(KERASTUNER_TUNER_ID=name, KERASTUNER_ORACLE_IP="127.0.0.1",
                   KERASTUNER_ORACLE_PORT=str(port))
        procs[name] = subprocess.Popen(_sweep_cmd(tmp_path / name, "ei", 2, "--timeout", "3"),
                                       cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
    try:
        outputs = {n: p.communicate(timeout=300)[0] for n, p in procs.items()}
    finally:
        for reservation in reservations:
            reservation.close()
    assert procs["chief"].returncode == 4, outputs["chief"][-2000:]
    assert "No worker has contacted the chief" in outputs["chief"]
    assert "same command to resume" in outputs["chief"]
    assert procs["worker0"].returncode == 5, outputs["worker0"][-2000:]
    assert "unreachable for 3 s" in outputs["worker0"]


@pytest.mark.usefixtures("frozen_gc")
@pytest.mark.parametrize("kind", ["hyperband", "bayesian"])
def test_other_tuners_write_runs_the_report_reads(kind, tmp_path):
    from ei_keras.analysis import scan_runs, write_report
    from ei_keras.tuning import run_sweep

    lines = []
    summary = run_sweep(CONFIGS / "ei.json", preset="ei_ln", luminosity=0.75, trials=3,
                        out_dir=tmp_path, smoke=True, tuner=kind, printer=lines.append)
    assert summary["tuner"] == kind and summary["finished"] >= 3
    scan = scan_runs(tmp_path)  # a Hyperband continuation supersedes its shorter trial
    runs = scan.runs
    assert len(runs) + len(scan.superseded) == summary["finished"]
    assert all(r.config["sweep"]["tuner"] == kind for r in runs)
    project = Path(summary["project_dir"])
    for r in runs:
        assert 0 <= r.metrics["val_accuracy"] <= 1 and 0 <= r.metrics["test_accuracy"] <= 1
        trial = json.loads((project / f"trial_{r.trial_id}" / "trial.json").read_text())
        score = r.metrics["val_accuracy"] if r.status == "ok" else 0.1
        assert trial["score"] == pytest.approx(score)  # selected on validation, not test
    if kind == "hyperband":  # brackets: some trials get the larger epoch budget
        assert {r.config["train"]["epochs"] for r in runs} == {1, 3}
    else:
        assert scan.superseded == []
    assert "ei_ln" in write_report(tmp_path, figures=False).read_text()


@pytest.mark.usefixtures("frozen_gc")
def test_stock_keras_tuner_hyperband_drives_the_hypermodel(tmp_path):
    """``keras_tuner.Hyperband(EIHyperModel(...))``, as a KerasTuner user writes it: the tuner's
    own models are trained (Hyperband continues trials from its checkpoints) and every trial
    is a run directory with validation and test accuracy."""
    import keras_tuner

    from ei_keras.analysis import load_run, scan_runs
    from ei_keras.tuning import EIHyperModel

    hypermodel = EIHyperModel("ei_ln", 0.75, tmp_path / "runs", smoke=True,
                              printer=lambda *a: None)
    tuner = keras_tuner.Hyperband(
        hypermodel, objective=keras_tuner.Objective("val_accuracy", "max"), max_epochs=3,
        factor=3, hyperparameters=space_module.resize_space(
            space_module.load_search_space(CONFIGS / "ei.json"), smoke=True),
        tune_new_entries=False, directory=tmp_path, project_name="stock", seed=1)
    tuner.search(verbose=0)
    trials = tuner.oracle.trials.values()
    continued = [t for t in trials if "tuner/trial_id" in t.hyperparameters.values]
    assert continued, "Hyperband continued no trial from a checkpoint"
    scan = scan_runs(tmp_path / "runs")  # each continuation supersedes its shorter trial
    runs = scan.runs
    assert len(runs) + len(scan.superseded) == len(trials) and scan.superseded
    every = [*runs, *(load_run(path) for path in scan.superseded)]
    assert all(0 <= r.metrics["val_accuracy"] <= 1 for r in every)
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.score == pytest.approx(max(r.metrics["val_accuracy"] for r in every
                                           if r.status == "ok"))


@pytest.mark.usefixtures("frozen_gc")
def test_conv_presets_sweep_over_their_own_shipped_space(tmp_path):
    """A conv preset's sweep reads ``tuner_configs/conv_inorm.json`` by default (its lr_e range
    is a tenth of the MLP's) and trains conv networks; the MLP file names the right one."""
    from ei_keras import search_space
    from ei_keras.analysis import load_runs
    from ei_keras.tuning import run_sweep

    summary = run_sweep(None, preset="conv_inorm_gradnorm", luminosity=0.75, trials=2,
                        out_dir=tmp_path, smoke=True, printer=lambda *_: None)
    runs = load_runs(tmp_path)
    assert summary["finished"] == 2 and len(runs) == 2
    low, high, _ = search_space.CONV_INORM_SPACE["lr_e"]
    for r in runs:
        assert r.config["preset"] == "conv_inorm_gradnorm"
        assert low <= r.config["opt"]["lr_e"] <= high
        trial = json.loads((Path(summary["project_dir"]) / f"trial_{r.trial_id}" /
                            "trial.json").read_text())
        assert r.config["loss"]["norm_weight"] == trial["hyperparameters"]["values"][
            "norm_weight"]  # the trial's lambda is the one trained with
    with pytest.raises(ValueError, match="use tuner_configs/conv_inorm.json"):
        run_sweep(CONFIGS / "inorm.json", preset="conv_inorm", trials=1,
                  out_dir=tmp_path / "x", smoke=True)
