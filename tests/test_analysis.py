"""Tests of ei_keras.analysis: reading run folders, Mann-Whitney statistics, figures, report.

Everything runs on synthetic result folders with known statistics; nothing here trains a model,
and the behaviour does not depend on KERAS_BACKEND.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from ei_keras.analysis import (
    CHANCE_ACCURACY,
    RunLoadError,
    accuracy_table,
    compact_lines,
    compare_to_reference,
    format_comparison_table,
    format_p,
    format_u,
    load_run,
    load_runs,
    pair_runs,
    plot_accuracy_by_luminosity,
    plot_alignment,
    plot_moments,
    plot_scatter_vs_reference,
    scan_runs,
    stars,
    summarize,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LUMS = (0.0, 0.75)
N = 30
# 30 distinct reference (LN) accuracies, and conditions with known relations to them.
LN_ACC = [0.80 + 0.003 * i for i in range(N)]
SCALE_ACC = [0.60 + 0.003 * i for i in range(N)]  # every value below every LN value: U = 0
SAME_ACC = [a + 0.0015 for a in LN_ACC]  # interleaved with LN: n.s.
# 28 finite accuracies plus 2 diverged runs (one null, one NaN) that count at chance.
FRAGILE_ACC: list[float | None] = [0.80 + 0.003 * i for i in range(28)] + [None, math.nan]


def write_run(
    root: Path,
    rel: str,
    *,
    condition: str | None,
    preset: str = "preset_x",
    luminosity: float = 0.0,
    seed: int = 0,
    acc: float | None = 0.8,
    status: str = "ok",
    history: dict[str, list[float]] | None = None,
    trial_id: str | None = None,
    metrics_extra: dict[str, Any] | None = None,
) -> Path:
    """Write one run directory in the training code's format."""
    d = root / rel
    d.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "preset": preset,
        "luminosity": luminosity,
        "seed": seed,
        "epochs": 3,
        "width": 234,
        "hyperparameters": {"lr_e": 0.1, "batch_size": 32},
    }
    if condition is not None:
        config["condition"] = condition
    if trial_id is not None:
        config["trial_id"] = trial_id
    (d / "config.json").write_text(json.dumps(config))
    diverged = status == "diverged"
    metrics: dict[str, Any] = {
        "status": status,
        "test_accuracy": acc,
        "diverged_step": 123 if diverged else None,
        "message": "loss became NaN" if diverged else None,
        "preset": preset,
        "luminosity": luminosity,
        "seed": seed,
        "backend": "jax",
        "versions": {"keras": "3.15"},
        "wall_time_s": 1.5,
    }
    if condition is not None:
        metrics["condition"] = condition
    metrics.update(metrics_extra or {})
    # json.dumps writes NaN as the (non-standard) NaN literal, as Python's json does.
    (d / "metrics.json").write_text(json.dumps(metrics))
    if history is not None:
        cols = list(history)
        n = len(next(iter(history.values())))
        lines = [",".join(cols)]
        lines += [",".join(repr(history[c][i]) for c in cols) for i in range(n)]
        (d / "history.csv").write_text("\n".join(lines) + "\n")
    return d


def _history(mean0: float, var0: float, align: float) -> dict[str, list[float]]:
    """Three epochs of history with per-layer moment and alignment columns."""
    return {
        "epoch": [1.0, 2.0, 3.0],
        "loss": [1.0, 0.7, 0.5],
        "accuracy": [0.6, 0.7, 0.8],
        "val_accuracy": [0.6, 0.7, 0.8],
        "hidden_1_mean": [mean0, mean0 / 2, mean0 / 4],
        "hidden_1_var": [var0, 1 + (var0 - 1) / 2, 1 + (var0 - 1) / 4],
        "hidden_2_mean": [mean0 * 2, mean0, mean0 / 2],
        "hidden_2_var": [var0 * 2, var0, 1.0],
        "output_alignment_1": [align, align + 0.05, align + 0.1],
        "gradient_alignment_1": [align / 2, align / 2 + 0.1, align / 2 + 0.2],
    }


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results root with 4 conditions × 2 luminosities × 30 runs, plus broken folders."""
    root = tmp_path_factory.mktemp("results")
    for lum in LUMS:
        for cond, accs in (
            ("ei_ln", LN_ACC),
            ("scale", SCALE_ACC),
            ("same", SAME_ACC),
            ("fragile", FRAGILE_ACC),
        ):
            for seed, acc in enumerate(accs):
                diverged = acc is None or not math.isfinite(acc)
                hist = _history(0.5 if cond == "scale" else 0.05, 3.0, 0.6) if seed < 3 else None
                write_run(
                    root,
                    f"sweep/{cond}/r{lum}/seed{seed}",
                    condition=cond,
                    luminosity=lum,
                    seed=seed,
                    acc=acc,
                    status="diverged" if diverged else "ok",
                    history=hist,
                )
    # A condition with a single run at r = 0 (untestable cell).
    write_run(root, "single/run0", condition="single", luminosity=0.0, seed=0, acc=0.85)
    # Two partially written runs (no metrics.json).
    (root / "partial/a").mkdir(parents=True)
    (root / "partial/a/config.json").write_text(json.dumps({"preset": "ei_ln"}))
    (root / "partial/b").mkdir(parents=True)
    (root / "partial/b/history.csv").write_text("epoch,loss\n1,0.5\n")
    # One corrupt metrics.json.
    bad = root / "broken/run"
    bad.mkdir(parents=True)
    (bad / "config.json").write_text(json.dumps({"preset": "ei_ln"}))
    (bad / "metrics.json").write_text('{"status": "ok", "test_accuracy": 0.8')
    return root


@pytest.fixture(scope="module")
def runs(results: Path) -> list:
    """The runs of ``results`` (the corrupt one skipped with a warning)."""
    with pytest.warns(RuntimeWarning, match="metrics.json"):
        return load_runs(results)


# ----------------------------------------------------------------------------- stars / format


STARS_CASES: list[tuple[float | None, str]] = [
    (0.0, "***"),
    (0.000999, "***"),
    (0.001, "**"),
    (0.00999, "**"),
    (0.01, "*"),
    (0.0499, "*"),
    (0.05, "n.s."),
    (0.76, "n.s."),
    (1.0, "n.s."),
    (None, "—"),
    (math.nan, "—"),
]


def test_stars_boundaries() -> None:
    # One test, not a parametrization: conftest clears the Keras session around every test.
    for p, expected in STARS_CASES:
        assert stars(p) == expected, p


def test_format_p_and_u() -> None:
    assert format_p(0.76) == "0.76"
    assert format_p(0.01) == "0.01"
    assert format_p(0.0497) == "0.0497"
    assert format_p(0.0503) == "0.0503"
    assert format_p(0.1) == "0.10"
    assert format_p(1.97e-10) == "2.0e-10"
    assert format_p(2.1e-10) == "2.1e-10"
    assert format_p(0.0023) == "2.3e-3"
    assert format_p(None) == "—"
    assert format_u(19.0) == "19"
    assert format_u(58.5) == "58.5"
    assert format_u(None) == "—"


# ----------------------------------------------------------------------------- loading


def test_load_runs_counts_and_order(results: Path, runs: list) -> None:
    assert len(runs) == 4 * N * len(LUMS) + 1
    assert {r.condition for r in runs} == {"ei_ln", "scale", "same", "fragile", "single"}
    keys = [r.sort_key for r in runs]
    assert keys == sorted(keys)
    with pytest.warns(RuntimeWarning):
        again = load_runs(results)
    assert [r.path for r in again] == [r.path for r in runs]


def test_scan_counts_incomplete_and_corrupt(results: Path) -> None:
    with pytest.warns(RuntimeWarning, match=r"broken.*metrics\.json"):
        scan = scan_runs(results)
    assert [p.relative_to(results).as_posix() for p in scan.incomplete] == [
        "partial/a",
        "partial/b",
    ]
    assert len(scan.corrupt) == 1
    assert scan.corrupt[0][0] == results / "broken/run/metrics.json"


def test_strict_raises_naming_file(results: Path) -> None:
    with pytest.raises(RunLoadError, match=r"broken.run.metrics\.json") as info:
        load_runs(results, strict=True)
    assert info.value.path == results / "broken/run/metrics.json"
    with pytest.raises(RunLoadError, match="metrics.json"):
        write_report(results, strict=True)


def test_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_runs(tmp_path / "nope")


def test_diverged_runs_count_at_chance(runs: list) -> None:
    fragile = [r for r in runs if r.condition == "fragile" and r.luminosity == 0.0]
    div = [r for r in fragile if r.diverged]
    assert len(div) == 2
    assert all(r.accuracy == CHANCE_ACCURACY for r in div)
    assert {r.status for r in div} == {"diverged"}
    assert div[0].diverged_step == 123
    assert any(r.test_accuracy is None for r in div)
    assert any(r.test_accuracy is not None and math.isnan(r.test_accuracy) for r in div)


def test_run_stopped_by_the_weight_bound_counts_at_chance(tmp_path: Path) -> None:
    # The divergence monitor stops a run whose weights pass its bound; evaluation of the
    # blown-up network can still give a finite accuracy. It is a failed run all the same.
    write_run(tmp_path, "stopped", condition="c", luminosity=0.0, seed=0, acc=0.71,
              status="diverged")
    write_run(tmp_path, "fine", condition="c", luminosity=0.0, seed=1, acc=0.71)
    stopped, fine = sorted(load_runs(tmp_path), key=lambda r: r.seed)
    assert stopped.diverged and stopped.test_accuracy == pytest.approx(0.71)
    assert stopped.accuracy == CHANCE_ACCURACY
    assert not fine.diverged and fine.accuracy == pytest.approx(0.71)


def test_metrics_override_config_and_preset_default(tmp_path: Path) -> None:
    d = write_run(tmp_path, "a", condition=None, preset="inorm_gradnorm", luminosity=0.5, seed=3)
    run = load_run(d)
    assert run.condition == "inorm_gradnorm"  # defaults to the preset
    assert run.luminosity == 0.5 and run.seed == 3
    cfg = json.loads((d / "config.json").read_text())
    cfg["condition"] = "from_config"
    cfg["luminosity"] = 0.25
    (d / "config.json").write_text(json.dumps(cfg))
    assert load_run(d).condition == "from_config"
    met = json.loads((d / "metrics.json").read_text())
    met["condition"] = "from_metrics"
    (d / "metrics.json").write_text(json.dumps(met))
    run = load_run(d)
    assert run.condition == "from_metrics"
    assert run.luminosity == 0.5  # metrics wins
    # A status "ok" run without a finite accuracy is corrupt (issue 25), not a failed run.
    for value in (None, float("nan")):
        met["test_accuracy"] = value
        (d / "metrics.json").write_text(json.dumps(met))
        with pytest.raises(RunLoadError, match="status is \"ok\" but test_accuracy") as info:
            load_run(d)
        assert info.value.path == d / "metrics.json"


def test_history_read_generically(tmp_path: Path) -> None:
    d = write_run(tmp_path, "h", condition="c", history=_history(0.1, 2.0, 0.5))
    with (d / "history.csv").open("a") as f:
        f.write("4,,0.8,0.8,nan,1.0,0.2,1.0,0.8,0.6\n")
    run = load_run(d)
    assert run.history["epoch"] == [1.0, 2.0, 3.0, 4.0]
    assert math.isnan(run.history["loss"][3])
    assert math.isnan(run.history["hidden_1_mean"][3])
    assert run.history_rows[0]["hidden_1_var"] == 2.0
    assert len(run.history_rows) == 4


def test_corrupt_config_and_non_object(tmp_path: Path) -> None:
    d = write_run(tmp_path, "c", condition="c")
    (d / "config.json").write_text("[1, 2]")
    with pytest.raises(RunLoadError, match="config.json"):
        load_run(d)


# ----------------------------------------------------------------------------- statistics


def _row(rows: list, condition: str, lum: float):
    (row,) = [r for r in rows if r.condition == condition and r.luminosity == lum]
    return row


def test_all_below_reference_gives_u0(runs: list) -> None:
    rows = compare_to_reference(runs, reference="ei_ln")
    for lum in LUMS:
        row = _row(rows, "scale", lum)
        expected = mannwhitneyu(SCALE_ACC, LN_ACC, alternative="two-sided")
        assert row.u == 0.0 == float(expected.statistic)
        assert row.p == float(expected.pvalue)
        assert row.p < 1e-10
        assert row.stars == "***"
        assert row.direction == "worse"
        assert row.n == row.n_ref == N
        assert row.n_diverged == 0
        assert row.median == pytest.approx(float(np.median(SCALE_ACC)))
        assert row.ref_median == pytest.approx(float(np.median(LN_ACC)))
        assert row.effect_size == 0.0


def test_same_distribution_not_significant(runs: list) -> None:
    row = _row(compare_to_reference(runs), "same", 0.75)
    expected = mannwhitneyu(SAME_ACC, LN_ACC, alternative="two-sided")
    assert (row.u, row.p) == (float(expected.statistic), float(expected.pvalue))
    assert row.p > 0.05
    assert row.stars == "n.s."
    assert row.direction == "≈"


def test_diverged_in_statistics(runs: list) -> None:
    row = _row(compare_to_reference(runs), "fragile", 0.0)
    x = [a if a is not None and math.isfinite(a) else CHANCE_ACCURACY for a in FRAGILE_ACC]
    expected = mannwhitneyu(x, LN_ACC, alternative="two-sided")
    assert row.n == N and row.n_diverged == 2
    assert (row.u, row.p) == (float(expected.statistic), float(expected.pvalue))


def test_untestable_cell(runs: list) -> None:
    rows = compare_to_reference(runs, conditions=["single", "missing"])
    assert len(rows) == 1
    (row,) = rows
    assert row.n == 1 and row.n_ref == N
    assert row.u is None and row.p is None
    assert row.stars == "—" and row.direction == "—"


def test_default_conditions_and_order(runs: list) -> None:
    rows = compare_to_reference(runs)
    assert [(r.condition, r.luminosity) for r in rows] == [
        ("fragile", 0.0), ("fragile", 0.75), ("same", 0.0), ("same", 0.75),
        ("scale", 0.0), ("scale", 0.75), ("single", 0.0),
    ]  # fmt: skip


def test_paper_reference_numbers_reproduced(tmp_path: Path) -> None:
    """U = 19 for 30 vs 30 without ties gives the paper's p = 2.0e-10 (finding 6, scale)."""
    ref = [0.80 + 0.003 * i for i in range(N)]
    # 29 values below every reference value, one above exactly 19 of them.
    x = [0.60 + 0.003 * i for i in range(N - 1)] + [ref[18] + 0.001]
    for seed, (a, b) in enumerate(zip(x, ref, strict=True)):
        write_run(tmp_path, f"s{seed}", condition="scale", seed=seed, acc=a)
        write_run(tmp_path, f"l{seed}", condition="ei_ln", seed=seed, acc=b)
    (row,) = compare_to_reference(load_runs(tmp_path))
    assert row.u == 19.0
    assert format_p(row.p) == "2.0e-10"
    assert compact_lines([row], {"ei_ln": "LN"}) == [
        "scale vs LN — U 19, p 2.0e-10 (r = 0; ***; worse)"
    ]


def test_accuracy_table(runs: list) -> None:
    table = accuracy_table(runs)
    assert list(table) == ["ei_ln", "fragile", "same", "scale", "single"]
    s = table["ei_ln"][0.75]
    assert s.n == N and s.n_diverged == 0
    assert s.mean == pytest.approx(float(np.mean(LN_ACC)))
    assert s.std == pytest.approx(float(np.std(LN_ACC, ddof=1)))
    f = table["fragile"][0.0]
    assert f.n_diverged == 2 and f.min == CHANCE_ACCURACY
    assert table["single"][0.0].std is None


def test_text_formatting(runs: list) -> None:
    rows = compare_to_reference(runs)
    md = format_comparison_table(rows)
    assert md.splitlines()[0].startswith("| condition | vs | r |")
    scale0 = _row(rows, "scale", 0.0)
    med, ref_med = f"{100 * scale0.median:.1f}", f"{100 * scale0.ref_median:.1f}"
    p_txt = format_p(scale0.p)
    assert f"| scale | ei_ln | 0 | 30 | 30 | 0/0 | {med} | {ref_med} | 0 | {p_txt} | *** |" in md
    text = summarize(rows)
    assert "Mann-Whitney" in text and "scale" in text and "***" in text
    lines = compact_lines(rows)
    assert f"scale vs ei_ln — U 0/0, p {p_txt}/{p_txt} (r = 0/0.75; ***/***; worse/worse)" in lines


# ----------------------------------------------------------------------------- figures


def _assert_png(path: Path | None) -> None:
    assert path is not None and path.is_file()
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_MAGIC)


def _assert_pdf(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-32:]
    assert b"/CreationDate" not in data  # no date: the same runs give the same bytes


def test_plots_write_png_and_pdf(runs: list, tmp_path: Path) -> None:
    _assert_png(plot_accuracy_by_luminosity(runs, tmp_path / "acc.png"))
    _assert_png(plot_moments(runs, tmp_path / "mom.png"))
    _assert_png(plot_alignment(runs, tmp_path / "ali.png", shift_size=0.75))
    _assert_png(plot_scatter_vs_reference(runs, tmp_path / "sc.png", "fragile", "ei_ln"))
    names = ["acc", "ali", "mom", "sc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{n}.png" for n in names] + [f"{n}.pdf" for n in names]
    )
    for n in names:
        _assert_pdf(tmp_path / f"{n}.pdf")


def test_vector_format_choice(runs: list, tmp_path: Path) -> None:
    png = plot_moments(runs, tmp_path / "svg" / "mom.png", vector="svg")
    assert png is not None
    svg = (tmp_path / "svg" / "mom.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert sorted(p.name for p in png.parent.iterdir()) == ["mom.png", "mom.svg"]
    only = plot_alignment(runs, tmp_path / "png" / "ali.png", vector=None)
    assert only is not None and [p.name for p in only.parent.iterdir()] == ["ali.png"]
    with pytest.raises(ValueError, match=r"Expected `vector`.*Received: vector='eps'"):
        plot_moments(runs, tmp_path / "bad" / "mom.png", vector="eps")
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())


def _moment_runs(root: Path) -> list:
    """Three learning runs of `c` per r (variance 2, 3, 4 at epoch 1) and one diverged run
    whose moments blew up (mean 5e9, variance 1e18) as the reduced protocol's did."""
    for lum in LUMS:
        for seed, var0 in enumerate((2.0, 3.0, 4.0)):
            write_run(root, f"c/r{lum}/s{seed}", condition="c", luminosity=lum, seed=seed,
                      history=_history(0.1 * (seed + 1), var0, 0.5))
        write_run(root, f"c/r{lum}/s9", condition="c", luminosity=lum, seed=9, acc=None,
                  status="diverged", history=_history(5e9, 1e18, -0.9))
        write_run(root, f"ref/r{lum}/s0", condition="ei_ln", luminosity=lum, seed=0,
                  history=_history(0.0, 1.0, 1.0))
    return load_runs(root)


def _plotted(ax: Any) -> list[np.ndarray]:
    """The y data of the curves on `ax` (not the horizontal target line)."""
    return [np.asarray(line.get_ydata(), float) for line in ax.get_lines()
            if len(line.get_xdata()) > 2]


def test_diverged_run_stays_out_of_the_medians(tmp_path: Path) -> None:
    from ei_keras.analysis import figures

    runs = _moment_runs(tmp_path)
    fig = figures._moments_figure(runs)
    axes = np.array(fig.axes).reshape(2, len(LUMS))  # rows mean / variance, one column per r
    for col, lum in enumerate(LUMS):
        means, variances = _plotted(axes[0][col]), _plotted(axes[1][col])
        assert len(means) == len(variances) == 4  # 2 conditions x 2 hidden layers
        assert max(float(np.max(v)) for v in variances) < 10.0  # 1e18 never enters
        assert max(float(np.max(m)) for m in means) < 1.0  # nor 5e9
        # hidden layer 1 of `c` at epoch 1: the median of 2, 3, 4 (the 1e18 run left out)
        assert any(np.isclose(v[0], 3.0) for v in variances)
        assert "diverged, left out: c 1 of 4" in axes[0][col].get_title()
        assert axes[0][col].get_title().startswith(f"r = {lum:g}")
        assert axes[0][col].get_yscale() == "linear"  # a mean is additive
        assert axes[1][col].get_yscale() == "log"  # a variance is a scale
    # the interquartile band of `c`, hidden layer 1, variance at epoch 1: 2.5 .. 3.5
    # (each condition is nudged sideways by less than figures._MAX_SPREAD / 2 epoch)
    at_epoch_1 = [
        {round(float(y), 6) for x, y in path.vertices
         if abs(x - 1.0) <= figures._MAX_SPREAD / 2 + 1e-9}
        for band in axes[1][0].collections for path in band.get_paths()
    ]
    assert {2.5, 3.5} in at_epoch_1
    fig_a = figures._alignment_figure(runs)
    for ax in fig_a.axes:
        assert all(float(np.min(y)) > 0 for y in _plotted(ax))  # the -0.9 run left out


def test_curve_legends_sit_outside_and_explain_line_styles(tmp_path: Path) -> None:
    from ei_keras.analysis import figures

    fig = figures._moments_figure(_moment_runs(tmp_path), labels={"ei_ln": "LN"})
    assert all(ax.get_legend() is None for ax in fig.axes)  # nothing drawn over the data
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert {"LN (reference)", "c", "hidden layer 1", "hidden layer 2",
            "interquartile range"} <= set(texts)
    styles = {t.get_text(): h.get_linestyle() for t, h in zip(legend.get_texts(),
                                                              legend.legend_handles)}
    assert styles["hidden layer 1"] != styles["hidden layer 2"]
    assert "line style = layer" in legend.get_title().get_text()


def test_curve_figures_show_every_condition_on_whole_epochs(tmp_path: Path) -> None:
    """Two conditions with identical curves (as ``e_ln`` and ``ei_ln``): each has its own
    marker and its own sideways nudge, so neither hides the other; the epoch axis has whole
    ticks only; a long title on a one-column figure wraps inside the figure."""
    from ei_keras.analysis import figures

    for lum in LUMS:
        for cond in ("ei_ln", "e_ln", "ei"):
            write_run(tmp_path, f"{cond}/r{lum}", condition=cond, luminosity=lum,
                      history=_history(0.0, 1.0, 1.0))
    runs = load_runs(tmp_path)
    fig = figures._moments_figure(runs, shift_size=LUMS[0], title="A title long enough to "
                                  "run past the edge of a one-column figure if it were not "
                                  "wrapped to the figure's width")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # constrained layout places everything, as when the PNG is saved
    renderer = canvas.get_renderer()
    title = fig.get_suptitle()
    assert "\n" in title
    box = fig._suptitle.get_window_extent(renderer)
    assert box.x0 >= fig.bbox.x0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1
    for ax in fig.axes:
        lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 3]
        markers = {ln.get_marker() for ln in lines}
        starts = {round(float(ln.get_xdata()[0]), 6) for ln in lines}
        assert len(markers) == 3 and len(starts) == 3  # 3 conditions, each its own
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks == [1.0, 2.0, 3.0]
    (legend,) = fig.legends
    assert len({h.get_marker() for h in legend.legend_handles[:3]}) == 3


def test_report_captions_count_left_out_runs(tmp_path: Path) -> None:
    _moment_runs(tmp_path / "runs")
    text = write_report(tmp_path / "runs", out_dir=tmp_path / "out").read_text()
    # moments, alignment, learning curves
    assert text.count("2 diverged runs of 10 left out (c 2)") == 3
    assert "![Training accuracy per epoch](learning.png)" in text
    assert "![Hidden-layer moments per epoch](moments.png)" in text
    assert "([PDF](moments.pdf))" in text
    _assert_pdf(tmp_path / "out" / "moments.pdf")


def test_plots_skip_when_nothing_to_plot(runs: list, tmp_path: Path) -> None:
    no_hist = [r for r in runs if not r.history]
    assert plot_accuracy_by_luminosity([], tmp_path / "a.png") is None
    assert plot_moments(no_hist, tmp_path / "m.png") is None
    assert plot_alignment(no_hist, tmp_path / "l.png") is None
    assert plot_scatter_vs_reference(runs, tmp_path / "s.png", "nope", "ei_ln") is None
    assert list(tmp_path.iterdir()) == []


def test_pairing_by_luminosity_and_seed(runs: list) -> None:
    pairs = pair_runs(runs, "scale", "ei_ln")
    assert len(pairs) == N * len(LUMS)
    assert all(c.luminosity == r.luminosity and c.seed == r.seed for c, r in pairs)


# ----------------------------------------------------------------------------- report


def test_write_report(results: Path, runs: list, tmp_path: Path) -> None:
    out = tmp_path / "report"
    with pytest.warns(RuntimeWarning, match="corrupt"):
        path = write_report(results, out_dir=out, title="Synthetic")
    assert path == out / "report.md"
    text = path.read_text()
    assert text.startswith("# Synthetic\n")
    assert "2 incomplete runs skipped" in text
    assert "1 corrupt runs skipped" in text
    assert "broken/run/metrics.json" in text
    rows = compare_to_reference(runs)
    scale = _row(rows, "scale", 0.75)
    # Mann-Whitney table cells: U, p, stars, direction.
    assert f"| 0 | {format_p(scale.p)} | *** | worse |" in text
    same = _row(rows, "same", 0.75)
    assert f"| {format_u(same.u)} | {format_p(same.p)} | n.s. | ≈ |" in text
    ref_med = f"{100 * scale.ref_median:.1f}"
    assert f"| single | ei_ln | 0 | 1 | 30 | 0/0 | 85.0 | {ref_med} | — | — | — | — |" in text
    assert "scale vs ei_ln — U 0/0" in text
    # Accuracy table with diverged counts.
    assert "(n=30, 2 div)" in text
    assert "| fragile | 60 (2 div) | 60 (2 div) |" not in text  # inventory shows per-r cells
    assert "| fragile | 30 (2 div) | 30 (2 div) | 60 |" in text
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "accuracy_by_luminosity.png" in pngs and "moments.png" in pngs
    assert "alignment.png" in pngs and "scatter_scale_vs_ei_ln.png" in pngs
    for name in pngs:
        _assert_png(out / name)
        assert f"]({name})" in text
        pdf = Path(name).with_suffix(".pdf").name
        _assert_pdf(out / pdf)
        assert f"([PDF]({pdf}))" in text
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_write_report_is_atomic(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ei_keras.analysis.report as report_mod

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("figure failed")

    monkeypatch.setattr(report_mod, "plot_moments", boom)
    out = tmp_path / "out"
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="figure failed"):
        write_report(results, out_dir=out)
    assert not (out / "report.md").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_report_on_empty_root(tmp_path: Path) -> None:
    path = write_report(tmp_path)
    text = path.read_text()
    assert "0 runs loaded" in text and "no runs of it were found" in text
    assert not list(tmp_path.glob("*.png"))


def test_analysis_adds_no_heavy_imports() -> None:
    """`import ei_keras` brings Keras (it registers the layers for .keras files); the analysis
    package on top of it must stay light: no scipy or matplotlib until a statistic or a figure
    is asked for, so reports of thousands of runs start instantly."""
    code = (
        "import sys, ei_keras; before = set(sys.modules); import ei_keras.analysis as a; "
        "new = set(sys.modules) - before; "
        "bad = sorted(m for m in new if m.split('.')[0] in ('scipy', 'matplotlib')); "
        "assert not bad, bad; assert all(hasattr(a, n) for n in a.__all__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=repo, timeout=60)


def test_unreadable_history_keeps_run(tmp_path: Path) -> None:
    d = write_run(tmp_path, "h", condition="c", acc=0.7)
    (d / "history.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.warns(RuntimeWarning, match="history"):
        scan = scan_runs(tmp_path)
    assert len(scan.runs) == 1 and scan.runs[0].history == {} and len(scan.warnings) == 1
    with pytest.raises(RunLoadError, match="history.csv"):
        scan_runs(tmp_path, strict=True)


def test_learning_curves_pair_each_run_with_its_reference_epoch_by_epoch(tmp_path: Path) -> None:
    from ei_keras.analysis import figures, plot_learning_curves

    def hist(acc: list[float]) -> dict[str, list[float]]:
        return {"epoch": [1.0, 2.0, 3.0], "accuracy": acc, "loss": [1.0, 0.8, 0.6]}

    write_run(tmp_path, "ref/s0", condition="ref", seed=0, history=hist([0.5, 0.6, 0.7]))
    write_run(tmp_path, "ref/s1", condition="ref", seed=1, status="diverged", acc=None,
              history=hist([0.5, 0.1, 0.1]))
    write_run(tmp_path, "c/s0", condition="c", seed=0, history=hist([0.55, 0.6, 0.68]))
    write_run(tmp_path, "c/s1", condition="c", seed=1, history=hist([0.5, 0.7, 0.8]))
    write_run(tmp_path, "c/s2", condition="c", seed=2, history={"epoch": [1.0], "loss": [1.0]})
    derived = {(r.condition, r.seed): r.history
               for r in figures.learning_runs(load_runs(tmp_path), "ref")}
    assert set(derived) == {("ref", 0), ("ref", 1), ("c", 0), ("c", 1)}  # no accuracy: left out
    assert derived["c", 0]["accuracy"] == pytest.approx([55.0, 60.0, 68.0])
    assert derived["c", 0][figures.VERSUS_REFERENCE] == pytest.approx([5.0, 0.0, -2.0])
    assert figures.VERSUS_REFERENCE not in derived["c", 1]  # its reference pair diverged
    fig = figures._learning_figure(load_runs(tmp_path), reference="ref")
    assert len(fig.axes) == 2  # accuracy, then the difference from the reference
    _assert_png(plot_learning_curves(load_runs(tmp_path), tmp_path / "out" / "learning.png",
                                     reference="ref"))
    assert plot_learning_curves([r for r in load_runs(tmp_path) if r.condition == "c" and
                                 r.seed == 2], tmp_path / "none.png") is None
