"""One protocol at two lengths (`ei_keras.analysis.length`): configuration i at 1 and 2 epochs
is the same network with the same rates, paired across the two folders; a folder whose
configuration i has other rates is refused by name.

Real runs: `fig5 --smoke` for `ei_ln` and `inorm_gradnorm` at r = 0.75 (tiny subsets),
trained once per length under the current backend."""

from __future__ import annotations

import json
import shutil
import statistics

import numpy as np
import pytest
from scipy.stats import wilcoxon

from ei_keras import recipes
from ei_keras.analysis import load_runs
from ei_keras.analysis.length import (
    compare_lengths,
    format_length_table,
    format_training_gaps,
    run_epochs,
    training_gaps,
)

TINY = {"data.train_subset": 64, "data.test_subset": 64, "measures.probe_size": 32,
        "measures.moments": False, "measures.alignment": False}


def silent(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def lengths(tmp_path_factory):
    root = tmp_path_factory.mktemp("lengths")
    for epochs in (1, 2):
        recipes.run_protocol("fig5", root / f"e{epochs}", smoke=True, printer=silent,
                             report=False, sizes=[0.75], configs=2,
                             conditions=("ei_ln", "inorm_gradnorm"),
                             overrides={**TINY, "train.epochs": epochs})
    return root


def test_configuration_i_is_paired_across_lengths_with_its_own_differences(lengths):
    short = load_runs(lengths / "e1", history=False)
    long = load_runs(lengths / "e2", history=False)
    assert {run_epochs(r) for r in short} == {1} and {run_epochs(r) for r in long} == {2}
    (row,) = compare_lengths(short, long)
    assert (row.condition, row.reference, row.shift_size, row.epochs, row.n) == (
        "inorm_gradnorm", "ei_ln", 0.75, (1, 2), 2)

    def diffs(runs):
        acc = {(r.condition, r.seed): r.accuracy for r in runs}
        return [acc["inorm_gradnorm", s] - acc["ei_ln", s] for s in sorted(
            s for c, s in acc if c == "ei_ln")]

    d1, d2 = diffs(short), diffs(long)
    assert row.higher == (sum(d > 0 for d in d1), sum(d > 0 for d in d2))
    changes = [b - a for a, b in zip(d1, d2, strict=True)]
    assert row.change == pytest.approx(statistics.median(changes))
    walsh = [(d1[i] + d1[j]) / 2 for i in range(2) for j in range(i, 2)]
    assert row.short[0] == pytest.approx(float(np.median(walsh)))
    if any(changes):
        assert row.p == pytest.approx(wilcoxon(changes).pvalue)
    ref = {(r.condition, r.seed): r.accuracy for r in short}
    ref_long = {(r.condition, r.seed): r.accuracy for r in long}
    assert row.reference_gain == pytest.approx(statistics.median(
        ref_long[k] - ref[k] for k in ref if k[0] == "ei_ln"))
    table = format_length_table([row])
    assert "1 epochs: shift" in table and "2 epochs: shift" in table and "`inorm_gradnorm`" in table


def test_a_run_with_other_rates_is_not_the_same_configuration(lengths, tmp_path):
    other = tmp_path / "e2"
    shutil.copytree(lengths / "e2", other)
    metrics = next((other / "inorm_gradnorm").rglob("metrics.json"))
    data = json.loads(metrics.read_text())
    data["hyperparameters"]["lr_e"] *= 2
    metrics.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not one configuration at two lengths") as info:
        compare_lengths(load_runs(lengths / "e1", history=False), load_runs(other, history=False))
    assert str(metrics.parent) in str(info.value)


def test_a_longer_protocol_without_the_reference_is_refused(lengths):
    long = [r for r in load_runs(lengths / "e2", history=False) if r.condition != "ei_ln"]
    with pytest.raises(ValueError, match="reference 'ei_ln' has no runs"):
        compare_lengths(load_runs(lengths / "e1", history=False), long)


def test_training_gaps_are_the_paired_training_accuracy_differences_of_each_epoch(lengths):
    """Per epoch, the median over configurations of the condition's training accuracy minus
    its LN pair's (read here straight from each run's history.csv), and how many are above;
    epochs the runs never reached get no column."""
    import csv

    def accuracy(run) -> list[float]:
        with open(run.path / "history.csv", newline="") as f:
            return [100 * float(row["accuracy"]) for row in csv.DictReader(f)]

    runs = load_runs(lengths / "e2")
    by = {(r.condition, r.seed): accuracy(r) for r in runs}
    seeds = sorted(s for c, s in by if c == "ei_ln")
    gaps = training_gaps(runs, "ei_ln", epochs=(1, 2, 50))
    assert list(gaps) == [("inorm_gradnorm", 0.75)]
    row = gaps["inorm_gradnorm", 0.75]
    assert sorted(row) == [1, 2]  # epoch 50 was never reached
    for epoch in (1, 2):
        d = [by["inorm_gradnorm", s][epoch - 1] - by["ei_ln", s][epoch - 1] for s in seeds]
        assert row[epoch][0] == len(seeds)
        assert row[epoch][1] == pytest.approx(statistics.median(d), abs=1e-9)
        assert row[epoch][2] == sum(v > 0 for v in d)
    table = format_training_gaps(runs, "ei_ln", epochs=(1, 2, 50))
    assert "epoch 2" in table and "epoch 50" not in table and "`inorm_gradnorm`" in table
