"""The excitatory weights' distribution at the end of training, on every backend.

1. `ei_keras.measures.weight_distribution` is the float64 closed form of the stored weights:
   the sign-constrained excitatory ones only (a role and a constraint decide, not a name),
   the share at exactly 0, the moments of `ln w`, the histogram of `log10 w`.
2. `measures.weights=true` records it in a run's `metrics.json`; an exponentiated-gradient run
   keeps every weight positive (a multiplicative step cannot reach 0); the report draws the
   table and the figure, and the ablations answer (d) shows the table.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from ei_keras import cli, zoo
from ei_keras.analysis import load_runs
from ei_keras.analysis.ablations import WEIGHTS_FOLDER, format_ablations
from ei_keras.analysis.report import format_weight_table, write_report
from ei_keras.layers import EIDense
from ei_keras.measures import WEIGHT_LOG10_EDGES, weight_distribution


def test_the_distribution_is_the_float64_closed_form_of_the_stored_weights():
    model = keras.Sequential([
        keras.Input((30,)), EIDense(20, seed=0),
        EIDense(10, seed=1, kernel_constraint=keras.constraints.MaxNorm(50.0, axis=1)),
        keras.layers.Dense(4)])  # a plain kernel: no sign constraint, not measured
    rng = np.random.default_rng(0)
    stored = []
    for layer in model.layers[:2]:
        w = np.exp(rng.normal(-3.0, 1.5, tuple(layer.W_EE.shape))).astype("float32")
        w[rng.random(w.shape) < 0.2] = 0.0
        layer.W_EE.assign(w)
        stored.append(keras.ops.convert_to_numpy(layer.W_EE).astype(np.float64).ravel())
    d = weight_distribution(model)
    assert list(d["variables"]) == [layer.W_EE.path for layer in model.layers[:2]]
    w = np.concatenate(stored)
    positive = w[w > 0]
    ln = np.log(positive)
    c = ln - ln.mean()
    m2, m3, m4 = (c ** 2).mean(), (c ** 3).mean(), (c ** 4).mean()
    p = d["pooled"]
    assert p["n"] == w.size == 30 * 20 + 20 * 10
    assert p["zero_fraction"] == np.mean(w == 0) > 0
    assert p["log_mean"] == pytest.approx(ln.mean(), rel=1e-12)
    assert p["log_sd"] == pytest.approx(np.sqrt((c ** 2).sum() / (ln.size - 1)), rel=1e-12)
    assert p["log_skewness"] == pytest.approx(m3 / m2 ** 1.5, rel=1e-9)
    assert p["log_excess_kurtosis"] == pytest.approx(m4 / m2 ** 2 - 3.0, rel=1e-9)
    assert p["log10_quantiles"]["50"] == pytest.approx(np.median(np.log10(positive)), rel=1e-12)
    # the histogram: every positive weight once; the inner bins are half-open [lo, hi)
    hist, edges, log10 = p["log10_histogram"], np.asarray(WEIGHT_LOG10_EDGES), np.log10(positive)
    assert sum(hist) == positive.size
    for k in range(1, len(hist) - 1):
        assert hist[k] == np.sum((log10 >= edges[k]) & (log10 < edges[k + 1])), k
    assert hist[0] == np.sum(log10 < edges[1]) and hist[-1] == np.sum(log10 >= edges[-2])
    # per variable: the same closed form on each one
    first = d["variables"][model.layers[0].W_EE.path]
    assert first["n"] == stored[0].size
    assert first["zero_fraction"] == np.mean(stored[0] == 0)


def test_a_model_without_sign_constrained_weights_gives_an_empty_record():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    d = weight_distribution(model)
    assert d["variables"] == {} and d["pooled"]["n"] == 0
    assert d["pooled"]["log_mean"] is None and d["pooled"]["log10_histogram"] is None


def train(tmp_path, condition, *extra):
    out = tmp_path / "runs" / condition / "r0.75" / "cfg00"
    assert cli.main(["train", "--preset", "ei", "--smoke", "--out", str(out),
                     "measures.weights=true", f"condition={condition}", "data.luminosity=0.75",
                     *extra]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    # the distribution the run started from: the preset built at the run's seed and width
    built = zoo.build("ei", width=config["model"]["width"], seed=config["seed"],
                      num_classes=metrics["num_classes"])
    init, want = metrics["weights_init"]["pooled"], weight_distribution(built)["pooled"]
    assert init["n"] == want["n"] and init["zero_fraction"] == want["zero_fraction"] == 0.0
    for key in ("log_mean", "log_sd", "log_skewness"):  # the same float32 draw
        assert init[key] == pytest.approx(want[key], rel=1e-6, abs=1e-6), key
    return metrics["weights"]


def test_runs_record_it_eg_keeps_every_weight_positive_and_the_report_draws_it(tmp_path,
                                                                                capsys):
    gd = train(tmp_path, "ei")
    eg = train(tmp_path, "ei_eg", "opt.exponentiated=true")
    for d in (gd, eg):
        assert d["pooled"]["n"] == sum(v["n"] for v in d["variables"].values()) > 0
    assert eg["pooled"]["zero_fraction"] == 0.0  # w <- w exp(-lr sign(w) g) stays > 0
    assert sum(eg["pooled"]["log10_histogram"]) == eg["pooled"]["n"]

    runs = load_runs(tmp_path / "runs", history=False)
    table = format_weight_table(runs)
    assert "| ei_eg | 0 → 0 % · " in table and "(n=1)" in table
    report = write_report(tmp_path / "runs").read_text()
    assert "## Excitatory weights" in report and "![Excitatory weights" in report
    assert (tmp_path / "runs" / "weights.png").is_file()

    answer = format_ablations([], weight_runs=runs)
    assert f"from the 2 runs in `{WEIGHTS_FOLDER}`" in answer and "| ei_eg | 0 → 0 % · " in answer
    assert f"no runs in `{WEIGHTS_FOLDER}` yet" in format_ablations([])
