"""The README's answers to issue 23 (`ei_keras.analysis.ablations`), on every backend.

1. The paired Hodges-Lehmann interval: the signed-rank critical values equal the published
   table and a brute-force enumeration of the 2^n sign patterns; the estimate is the median of
   the Walsh averages.
2. Each question's rows: pairs by r and configuration, the Wilcoxon p of scipy, the HL estimate
   and interval, Holm across the question's rows, the non-finite stops; conditions without runs
   are named, not invented.
3. The README block: a line with the command while `docs/results/ablations` holds no runs,
   the answers once it does (made from a smoke run of the recipe's layout).
"""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wilcoxon

from ei_keras.analysis import ablations
from ei_keras.analysis.readme import render_block
from ei_keras.analysis.stats import _signed_rank_critical, holm, paired_hodges_lehmann
from ei_keras.run_directory import RunRecord
from ei_keras.scoring import PAPER_SCORING

#: Two-sided 5 % critical values T of the Wilcoxon signed-rank test (reject when T+ <= T;
#: e.g. Wilcoxon, Katti & Wilcox 1970), n = 6 ... 20; the interval's rank is C = T + 1.
PUBLISHED = {6: 0, 7: 2, 8: 3, 9: 5, 10: 8, 11: 10, 12: 13, 13: 17, 14: 21, 15: 25, 16: 29,
             17: 34, 18: 40, 19: 46, 20: 52}


def test_signed_rank_critical_values_are_the_published_ones():
    for n, t in PUBLISHED.items():
        assert _signed_rank_critical(n, 0.95) == t + 1, n
    # ... and a brute-force null distribution (every sign pattern) agrees for small n.
    for n in (6, 8, 10):
        sums = [sum(r for r, s in zip(range(1, n + 1), signs) if s)
                for signs in itertools.product((0, 1), repeat=n)]
        c = _signed_rank_critical(n, 0.95)
        assert sum(t <= c - 1 for t in sums) / 2**n <= 0.025 < sum(t <= c for t in sums) / 2**n


def test_paired_hodges_lehmann_is_the_median_of_walsh_averages():
    d = np.random.default_rng(3).normal(0.02, 0.03, 12)
    walsh = sorted((d[i] + d[j]) / 2 for i in range(12) for j in range(i, 12))
    est, low, high = paired_hodges_lehmann(d)
    assert est == pytest.approx(statistics.median(walsh), abs=1e-15)
    c = PUBLISHED[12] + 1
    assert (low, high) == (pytest.approx(walsh[c - 1]), pytest.approx(walsh[-c]))
    assert paired_hodges_lehmann([0.1]) is None


def record(condition, preset, size, seed, accuracy, status="ok", message=None):
    return RunRecord(path=Path(f"/x/{condition}/r{size}/cfg{seed:02d}"), condition=condition,
                     preset=preset, shift_size=size, seed=seed, status=status,
                     test_accuracy=accuracy, diverged_step=None, message=message,
                     scoring=PAPER_SCORING)


def synthetic_runs():
    rng = np.random.default_rng(0)
    runs = []
    for size in (0.0, 0.75):
        for seed in range(12):
            base = 0.8 + 0.02 * rng.standard_normal()
            runs.append(record("inorm", "inorm", size, seed, base))
            if seed == 3 and size == 0.75:  # a stopped run counts at chance
                runs.append(record("inorm_noclip", "inorm", size, seed, float("nan"),
                                   status="diverged", message="loss nan"))
            else:
                runs.append(record("inorm_noclip", "inorm", size, seed,
                                   base - 0.03 + 0.01 * rng.standard_normal()))
    return runs


def test_question_rows_pair_test_and_correct():
    runs = synthetic_runs()
    question = next(q for q in ablations.QUESTIONS if q.key == "c")
    rows = ablations.question_rows(runs, question)
    assert [(r.condition, r.shift_size) for r in rows] == [("inorm_noclip", 0.0),
                                                           ("inorm_noclip", 0.75)]
    by = {(r.condition, r.shift_size, r.seed): r.accuracy for r in runs}
    ps = []
    for row in rows:
        diffs = [by[("inorm_noclip", row.shift_size, s)] - by[("inorm", row.shift_size, s)]
                 for s in range(12)]
        assert row.n == 12
        assert row.p == pytest.approx(wilcoxon(diffs).pvalue)
        assert (row.shift, row.low, row.high) == pytest.approx(paired_hodges_lehmann(diffs))
        assert row.stops == (1 if row.shift_size == 0.75 else 0) and row.reference_stops == 0
        ps.append(row.p)
    assert [r.p_holm for r in rows] == pytest.approx(holm(ps))
    text = ablations.format_question(runs, question)
    assert "inorm_noclip vs inorm | 0.75 | 12 |" in text and "1 vs 0" in text
    assert "Not in these runs yet: inorm_gradnorm, inorm_gradnorm_noclip." in text


def test_every_question_is_answered_or_says_it_has_no_runs():
    text = ablations.format_ablations(synthetic_runs())
    for q in ablations.QUESTIONS:
        assert f"**({q.key})" in text
    assert "No paired runs yet (no runs of inorm_gradnorm, inorm_gradnorm_z)" in text
    assert ablations.COMMAND in text


def write_run(folder: Path, condition, preset, size, seed, accuracy):
    folder.mkdir(parents=True)
    config = {"preset": preset, "condition": None if condition == preset else condition,
              "seed": seed, "data": {"shift": "luminosity", "luminosity": size}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text(json.dumps({
        "status": "ok", "test_accuracy": accuracy, "condition": condition, "preset": preset,
        "luminosity": size, "seed": seed, "scoring": PAPER_SCORING}))


def test_the_readme_block_waits_for_runs_then_answers(tmp_path):
    assert "No runs committed in `docs/results/ablations` yet" in render_block(
        "ablations", tmp_path)
    folder = tmp_path / "docs" / "results" / "ablations"
    for seed in range(3):
        write_run(folder / "ei_ln" / "r0.75" / f"cfg{seed:02d}", "ei_ln", "ei_ln", 0.75, seed,
                  0.85 + 0.01 * seed)
        write_run(folder / "ei_ln_detached" / "r0.75" / f"cfg{seed:02d}", "ei_ln_detached",
                  "ei_ln_detached", 0.75, seed, 0.7 + 0.02 * seed)
    text = render_block("ablations", tmp_path)
    assert "from the 6 runs in `docs/results/ablations`" in text
    assert "| ei_ln_detached vs ei_ln | 0.75 | 3 | 72.0 vs 86.0 |" in text
