"""The paper's protocol as the paper ran it (issue 21): final-accuracy scoring with stability
events, widths sampled per configuration, Hodges-Lehmann shifts with Holm's correction, finding
2 tested paired within r, and the README's results blocks generated from committed runs.

Real runs (tiny: 512 shifted Fashion-MNIST images, width 16) under the current backend:

- a run whose logged loss passes 1e3 for a few steps (forced: the readout's weights scaled by
  1e4 for three steps, with every learning rate held at 0 so that the spike itself trains
  nothing, then restored) trains its whole length, ``status`` ``ok``, is scored by its final
  test accuracy and appears in the report's stability table as a transient excursion;
- a run whose weights turn non-finite (``opt.lr_e=1e6``) stops and counts at chance.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from ei_keras import recipes, scoring, search_space
from ei_keras.analysis import load_run, load_runs, write_report
from ei_keras.analysis.stats import _u_null_cdf, hodges_lehmann, holm
from ei_keras.experiment import run_experiment
from ei_keras.optimizers import group_optimizers

ROOT = Path(__file__).resolve().parents[1]
PAPER30 = ROOT / "docs" / "results" / "paper30"
#: A folder committed before the paper's scoring (runs stopped at the 1e3 bound, r = 0.75).
OLD_RULE = ROOT / "docs" / "results" / "timescales"
TINY = {"model": {"width": 16}, "train": {"epochs": 2, "steps_per_execution": 1},
        "data": {"train_subset": 512, "test_subset": 256, "luminosity": 0.5},
        "measures": {"probe_size": 64, "moments": False, "alignment": False}}


def silent(*args, **kwargs):
    pass


class TransientSpike(keras.callbacks.Callback):
    """Steps ``[start, start + steps)`` (global, 0-based) run with the readout's weights scaled
    by ``factor`` and every learning rate at 0; the step after, both are restored exactly. The
    logged loss passes 1e3 during the spike; training is otherwise untouched."""

    def __init__(self, start: int = 2, steps: int = 3, factor: float = 1e4):
        super().__init__()
        self.start, self.stop, self.factor = start, start + steps, factor
        self.step = 0
        self.saved = None

    def _readout(self):
        return [v for v in self.model.trainable_variables
                if "/readout/" in v.path and v.path.endswith(("W_EE", "W_EI"))]

    def on_train_batch_begin(self, batch, logs=None):
        if self.step == self.start:
            optimizers = group_optimizers(self.model.optimizer).values()
            self.saved = ([keras.ops.convert_to_numpy(v) for v in self._readout()],
                          [float(keras.ops.convert_to_numpy(o.learning_rate))
                           for o in optimizers])
            for v, value in zip(self._readout(), self.saved[0], strict=True):
                v.assign(value * self.factor)
            for o in optimizers:
                o.learning_rate.assign(0.0)
        elif self.step == self.stop:
            for v, value in zip(self._readout(), self.saved[0], strict=True):
                v.assign(value)
            for o, rate in zip(group_optimizers(self.model.optimizer).values(), self.saved[1],
                               strict=True):
                o.learning_rate.assign(rate)
        self.step += 1


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A spiked-and-recovered ``ei_ln`` run and a NaN ``inorm`` run in one results root."""
    root = tmp_path_factory.mktemp("scoring")
    spike = TransientSpike()
    spiked = run_experiment({"preset": "ei_ln", "seed": 0, **TINY}, root / "ei_ln" / "r0.5" /
                            "cfg00", printer=silent, callbacks=[spike])
    nan = run_experiment({"preset": "inorm", "seed": 0, **TINY, "opt": {"lr_e": 1e6}},
                         root / "inorm" / "r0.5" / "cfg00", printer=silent)
    return root, spiked, nan


def test_a_transient_loss_excursion_is_recorded_and_scored_by_final_accuracy(scored):
    root, spiked, _ = scored
    assert spiked["status"] == "ok" and spiked["scoring"] == scoring.PAPER_SCORING
    event = spiked["stability"]
    assert event is not None, spiked
    assert event["peak_loss"] > scoring.MAX_LOSS and event["first_epoch"] == 1
    assert 3 <= event["first_step"] <= 5  # the loss Keras logs after spiked step 3 (1-based)
    assert event["cause"] in ("excitatory", "inhibitory_output")  # the scaled readout weights
    history = (root / "ei_ln" / "r0.5" / "cfg00" / "history.csv").read_text().splitlines()
    losses = [float(row.split(",")[history[0].split(",").index("loss")]) for row in history[1:]]
    assert losses[0] > scoring.MAX_LOSS > losses[-1]  # epoch 1's mean spiked; epoch 2 recovered
    run = load_run(root / "ei_ln" / "r0.5" / "cfg00")
    assert run.excursion and run.stop is None
    assert run.accuracy == spiked["test_accuracy"] > run.chance  # its final accuracy, not 10 %


def test_a_non_finite_run_stops_and_scores_chance(scored):
    root, _, nan = scored
    assert nan["status"] == "diverged" and nan["scoring"] == scoring.PAPER_SCORING
    assert nan["diverged_cause"] == "excitatory" and nan["diverged_step"] >= 1
    run = load_run(root / "inorm" / "r0.5" / "cfg00")
    assert run.stop == "non-finite" and not run.excursion
    assert run.accuracy == run.chance == 0.1


def test_the_report_has_the_stability_table_and_the_paper_scoring(scored, tmp_path):
    root, spiked, _ = scored
    report = write_report(root, out_dir=tmp_path / "r", figures=False).read_text()
    assert "**Scoring:** the paper's" in report
    stability = report.split("## Stability")[1].split("##")[0]
    assert "| ei_ln | 0 / 1 |" in stability and "| inorm | 1 / 0 |" in stability
    assert f"{100 * spiked['test_accuracy']:.1f} (n=1, 0 div)" in report
    assert "Run time (2 of 2 runs recorded it)" in report
    # by the sampled lr_e: the NaN run (lr_e 1e6) in the last band, the spiked one in its own
    from ei_keras.analysis.report import RATE_EDGES
    by_rate = stability.split("By the sampled excitatory learning rate")[1]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in by_rate.splitlines() if line.startswith("| ei_ln") or
            line.startswith("| inorm")}
    assert rows["inorm"] == ["—"] * len(RATE_EDGES) + ["1 / 0 / 1"]
    band = sum(spiked["hyperparameters"]["lr_e"] >= e for e in RATE_EDGES)
    assert rows["ei_ln"][band] == "0 / 1 / 1" and rows["ei_ln"].count("—") == len(RATE_EDGES)
    # an old run beside them: the report says the rules differ instead of mixing them silently
    old = next(r for r in load_runs(OLD_RULE / "inorm", history=False) if r.diverged)
    shutil.copytree(old.path, root / "inorm" / "r0.75" / "cfg99")
    try:
        mixed = write_report(root, out_dir=tmp_path / "m", figures=False).read_text()
    finally:
        shutil.rmtree(root / "inorm" / "r0.75")
    assert "scored under different rules" in mixed
    assert "| inorm | 1 / 0 / 0 | 0 / 0 / 1 |" in mixed  # r 0.5: NaN stop; r 0.75: old bound


def test_committed_old_runs_read_as_scored_under_the_old_rule():
    runs = load_runs(OLD_RULE / "inorm", history=False)
    assert {r.scoring for r in runs} == {scoring.LEGACY_SCORING}
    stopped = [r for r in runs if r.diverged]
    assert len(stopped) == 4 and {r.stop for r in stopped} == {"bound"}  # loss ~1e3, finite
    assert all(r.accuracy == 0.1 for r in stopped)


def test_must_stop_and_out_of_bounds_split_non_finite_from_large():
    assert scoring.must_stop(float("nan")) and scoring.must_stop(float("inf"))
    assert not scoring.must_stop(1e30) and not scoring.must_stop(None)
    assert scoring.out_of_bounds(1001.0) and not scoring.out_of_bounds(999.0)
    assert not scoring.out_of_bounds(float("nan"))  # a stop, not an excursion
    assert scoring.scored_accuracy("ok", 0.8, 0.1) == 0.8
    assert scoring.scored_accuracy("diverged", 0.8, 0.1) == 0.1
    assert scoring.scored_accuracy("ok", None, 0.05) == 0.05


def test_a_huge_but_finite_final_loss_is_a_stability_event_not_a_stop():
    from ei_keras import zoo
    from ei_keras.divergence import DivergenceMonitor

    monitor = DivergenceMonitor()
    monitor.set_model(zoo.build("ei_ln", width=8, seed=0))
    monitor.on_train_end({"loss": 1.5e13})
    assert not monitor.diverged and "1.5e+13" in monitor.excursion["what"]
    assert monitor.excursion["peak_loss"] == 1.5e13
    monitor.check_final_loss(float("nan"))
    assert monitor.diverged


# --------------------------------------------------------------------------------------------
# Widths sampled per configuration, paired like the learning rates


def test_configuration_i_has_one_width_everywhere_and_one_set_of_rates_per_family():
    for name in ("fig2", "fig6", "contrast"):
        cells = recipes.plan(recipes.get(name))
        by_config: dict[int, set] = {}
        rates: dict[tuple, set] = {}
        for rel, cfg in cells:
            i = int(rel.name.removeprefix("cfg"))
            assert 100 <= cfg.model.width <= 500, rel
            assert cfg.model.width == search_space.sample(cfg.preset, i, sample_width=True)[
                "width"]
            by_config.setdefault(i, set()).add(cfg.model.width)
            family = tuple(search_space.space_for(cfg.preset).items())
            rates.setdefault((i, family), set()).add((cfg.opt.lr_e, cfg.opt.lr_ie, cfg.opt.lr_ei))
        assert all(len(w) == 1 for w in by_config.values()), name
        assert all(len(r) == 1 for r in rates.values()), name
        assert len({w.pop() for w in by_config.values()}) > 10  # the widths do vary
    fixed = recipes.plan(recipes.get("fig2"), overrides={"model.width": 77})
    assert {cfg.model.width for _, cfg in fixed} == {77}
    assert {cfg.model.width for _, cfg in recipes.plan(recipes.get("demo"))} == {234}


def test_a_protocol_run_records_its_sampled_width(tmp_path):
    out = tmp_path / "fig5"
    recipes.run_protocol("fig5", out, smoke=True, printer=silent, report=False,
                         sizes=[0.75], conditions=("ei_ln", "inorm"),
                         overrides={"data.train_subset": 64, "data.test_subset": 64,
                                    "measures.probe_size": 32})
    width = search_space.sample("ei_ln", 0, sample_width=True)["width"]
    for condition in ("ei_ln", "inorm"):
        config = json.loads((out / condition / "r0.75" / "cfg00" / "config.json").read_text())
        assert config["model"]["width"] == config["fingerprint"]["model.width"] == width
        assert 100 <= width <= 500


# --------------------------------------------------------------------------------------------
# Effect sizes and corrections


def test_holm_matches_a_hand_computed_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.2, None, 0.01]) == pytest.approx([0.2, None, 0.02])  # untested: not counted
    assert holm([0.6, 0.7]) == [1.0, 1.0]


def test_u_null_distribution_is_exact():
    # n = 3, m = 4: 35 equally likely rank sets; U = 0 and U = 1 each arise in 1 of them
    cdf = _u_null_cdf(3, 4)
    assert len(cdf) == 13 and cdf[0] == pytest.approx(1 / 35) and cdf[1] == pytest.approx(2 / 35)
    assert cdf[-1] == pytest.approx(1.0) and cdf[5] == pytest.approx(1 - cdf[6])  # symmetric


def test_hodges_lehmann_interval_inverts_the_exact_mann_whitney_test():
    """The interval holds the shifts d that the exact two-sided test of x - d against y does
    not reject at 5 % (scipy's exact Mann-Whitney p), and none outside."""
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(3)
    x, y = rng.normal(0.8, 0.03, 12), rng.normal(0.78, 0.03, 10)
    shift, low, high = hodges_lehmann(x, y)
    assert shift == pytest.approx(np.median(np.subtract.outer(x, y)))
    assert low < shift < high

    def p(d):
        return mannwhitneyu(x - d, y, alternative="two-sided", method="exact").pvalue

    gap = 1e-9  # differences are distinct; move just past an end
    assert p(low + gap) >= 0.05 and p(high - gap) >= 0.05
    assert p(low - gap) < 0.05 and p(high + gap) < 0.05


def test_finding_2_is_judged_paired_within_each_r():
    from ei_keras.analysis import compare_with_paper, format_paper_table
    from ei_keras.analysis.stats import PairedRow

    runs = [r for c in ("ei_ln", "e_ln") for r in load_runs(PAPER30 / c, history=False)]
    cells = [c for c in compare_with_paper(runs) if c.paper.condition == "e_ln"]
    assert len(cells) == 4 and all(isinstance(c.library, PairedRow) for c in cells)
    # the pairs counted straight from the files: same r, same seed, e_ln above ei_ln
    acc = {(r.condition, r.shift_size, r.seed): r.accuracy for r in runs}
    higher = sum(acc[key] > acc[("ei_ln", *key[1:])] for key in acc
                 if key[0] == "e_ln" and ("ei_ln", *key[1:]) in acc)
    assert sum(c.library.higher for c in cells) == higher > 0
    assert sum(c.library.n_pairs for c in cells) == sum(k[0] == "e_ln" for k in acc)
    assert "Wilcoxon, paired within r" in format_paper_table(cells)


def test_readme_results_blocks_equal_what_the_report_computes_today():
    from ei_keras.analysis.readme import BLOCKS, render_block, update_readme

    text = (ROOT / "README.md").read_text()
    for name in BLOCKS:
        assert f"<!-- results:{name} -->" in text, name
    assert update_readme(ROOT / "README.md", root=ROOT, check=True) == [], (
        "README results blocks are stale: run `make results`")
    for name in set(BLOCKS) - {"recipe_times"}:  # every accuracy block says its scoring
        block = render_block(name, ROOT)
        assert ("No runs committed" in block or "**Scoring:**" in block
                or "stopped by a non-finite loss or weight counts at chance" in block), name


def test_recipe_times_count_the_planned_cells_and_take_the_median_of_their_wall_times(tmp_path):
    """The README's run-time table: each recipe's runs are the cells its `plan.json` lists,
    the reduced run is the configurations 0-7 at r 0 and 0.75 among them, and the time per
    run is the median of the `wall_time_s` the runs recorded (read here straight from the
    files); without a 50-epoch folder to scale by, the paper's length is left blank."""
    import statistics

    from ei_keras.analysis.readme import render_block

    plan = json.loads((PAPER30 / "plan.json").read_text())["recipes"]
    block = render_block("recipe_times", ROOT)
    for name, entry in plan.items():
        cells = entry["cells"]
        walls = [json.loads((PAPER30 / c / "metrics.json").read_text())["wall_time_s"]
                 for c in cells]
        reduced = [c for c in cells if int(c.split("/cfg")[1]) < 8
                   and c.split("/")[1] in ("r0", "r0.75")]
        row = next(line for line in block.splitlines() if line.startswith(f"| `{name}` |"))
        assert row.startswith(f"| `{name}` | {len(cells)} | {statistics.median(walls):.1f} s"
                              ), row
        assert row.split(" | ")[4] == str(len(reduced)), row
    (tmp_path / "docs" / "results").mkdir(parents=True)
    (tmp_path / "docs" / "results" / "paper30").symlink_to(PAPER30)
    alone = render_block("recipe_times", tmp_path)
    assert "no cell of `docs/results/paper50` to scale by yet" in alone
    assert all(line.endswith("| — |") for line in alone.splitlines() if line.startswith("| `"))
