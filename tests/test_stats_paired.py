"""The paired comparison (Wilcoxon signed-rank over shared configurations) on run directories
with known differences."""

from __future__ import annotations

import pytest
from test_analysis import write_run

from ei_keras.analysis import compare_paired, load_runs, write_report


def test_paired_differences_median_counts_and_exact_p(tmp_path):
    # 8 shared configurations at r = 0.75: the condition is 1..8 points below LN in each pair,
    # so every difference is negative and the exact two-sided signed-rank p is 2 / 2**8.
    for i in range(8):
        write_run(tmp_path, f"ln/{i}", condition="ei_ln", luminosity=0.75, seed=i,
                  acc=0.80 + 0.01 * (i % 3))
        write_run(tmp_path, f"ei/{i}", condition="ei", luminosity=0.75, seed=i,
                  acc=0.80 + 0.01 * (i % 3) - 0.01 * (i + 1))
    write_run(tmp_path, "ei/extra", condition="ei", luminosity=0.75, seed=99, acc=0.5)  # unpaired
    (row,) = compare_paired(load_runs(tmp_path), reference="ei_ln")
    assert row.n_pairs == 8 and (row.lower, row.higher) == (8, 0)
    assert row.median_difference == pytest.approx(-0.045)
    assert row.p == pytest.approx(2 / 2**8)
    assert row.stars == "**" and row.direction == "worse"
    report = write_report(tmp_path, figures=False).read_text()
    assert "## Paired" in report and "-4.5" in report and "8 / 0" in report


def test_paired_no_difference_and_too_few_pairs(tmp_path):
    for i in range(3):
        write_run(tmp_path, f"ln/{i}", condition="ei_ln", seed=i, acc=0.7)
        write_run(tmp_path, f"x/{i}", condition="x", seed=i, acc=0.7)
    write_run(tmp_path, "ln/r1", condition="ei_ln", seed=0, luminosity=0.5, acc=0.7)
    write_run(tmp_path, "x/r1", condition="x", seed=0, luminosity=0.5, acc=0.6)
    rows = {row.luminosity: row for row in compare_paired(load_runs(tmp_path))}
    assert rows[0.0].p == 1.0 and rows[0.0].direction == "≈" and rows[0.0].n_pairs == 3
    assert rows[0.5].p is None and rows[0.5].n_pairs == 1


def test_paper_comparison_gives_a_verdict_per_cell(tmp_path):
    from ei_keras.analysis import compare_with_paper

    # r = 0.75, 8 runs each: scale far below LN (the paper: worse, U 0), center far below too
    # (the paper: n.s.), lateral level with LN (the paper: n.s.).
    for i in range(8):
        write_run(tmp_path, f"ln/{i}", condition="ei_ln", luminosity=0.75, seed=i,
                  acc=0.80 + 0.001 * i)
        write_run(tmp_path, f"scale/{i}", condition="inorm_scale", luminosity=0.75, seed=i,
                  acc=0.60 + 0.001 * i)
        write_run(tmp_path, f"center/{i}", condition="inorm_center", luminosity=0.75, seed=i,
                  acc=0.50 + 0.001 * i)
        write_run(tmp_path, f"lateral/{i}", condition="inorm_lateral", luminosity=0.75, seed=i,
                  acc=0.80 + 0.001 * (7 - i))
    got = {(c.paper.condition, c.paper.luminosity): c
           for c in compare_with_paper(load_runs(tmp_path))}
    scale = got[("inorm_scale", 0.75)]
    assert scale.paper.u == 0 and scale.library.u == 0 and scale.verdict == "agrees"
    assert got[("inorm_center", 0.75)].verdict == "differs"
    assert got[("inorm_center", 0.75)].observed == "worse"
    assert got[("inorm_lateral", 0.75)].verdict == "agrees"
    assert got[("inorm_scale", 0.0)].verdict == "no data"
    report = write_report(tmp_path, figures=False).read_text()
    assert "## Against the paper" in report and "2 agree, 1 differ" in report
    assert "**differs**" in report and "| 0.75 | 0 | ≤ 2e-10 | worse |" in report
