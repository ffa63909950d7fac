"""Figures from run directories (matplotlib, no display needed).

Every function takes the runs (see :func:`~ei_keras.analysis.runs.load_runs`) and an output
path, writes one PNG atomically (to a temporary file in the same folder, then ``os.replace``)
and returns its path, or returns None and writes nothing when there is nothing to plot.

Figures are drawn on bare :class:`matplotlib.figure.Figure` objects (no ``pyplot``, no global
state, no GUI backend); matplotlib and numpy are imported lazily so that importing
``ei_keras.analysis`` stays fast.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ei_keras.run_directory import write_atomic

from .runs import CHANCE_ACCURACY, RunRecord, group_runs
from .stats import compare_to_reference, format_p, format_u

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "plot_accuracy_by_luminosity",
    "pair_runs",
    "plot_alignment",
    "plot_moments",
    "plot_scatter_vs_reference",
    "save_figure",
]

_DPI = 120
_DIVERGED_COLOR = "#d62728"
_REFERENCE_COLOR = "#222222"


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` to ``path`` as PNG atomically.

    The image is rendered into a temporary file next to ``path`` and moved into place with
    ``os.replace``, so a reader never sees a half-written file.

    Args:
        fig: The figure.
        path: Destination (``.png``); its folder is created if needed.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=_DPI))


def _new_figure(width: float, height: float) -> Figure:
    """A standalone figure with constrained layout."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _colors(n: int) -> list[Any]:
    """``n`` distinct colours (tab10, then tab20)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _condition_colors(conds: Sequence[str], reference: str | None) -> dict[str, Any]:
    """Colour per condition: dark grey for the reference, the palette for the others in order
    (the same assignment in every figure drawn from the same conditions)."""
    others = [c for c in conds if c != reference]
    palette = _colors(max(1, len(others)))
    out: dict[str, Any] = dict(zip(others, palette, strict=False))
    if reference in conds:
        out[reference] = _REFERENCE_COLOR
    return out


def _fmt_r(r: float | None) -> str:
    """Luminosity label: ``0.25`` or ``?``."""
    return "?" if r is None else f"{r:g}"


def _label(name: str, labels: Mapping[str, str] | None) -> str:
    """Display name of a condition."""
    return labels.get(name, name) if labels else name


def _order_conditions(
    present: Iterable[str], conditions: Sequence[str] | None, reference: str | None
) -> list[str]:
    """Conditions to draw: the given ones that have runs, else the reference first then the rest
    sorted."""
    have = list(present)
    if conditions is not None:
        return [c for c in conditions if c in have]
    rest = sorted(c for c in have if c != reference)
    return ([reference] if reference in have else []) + rest


def plot_accuracy_by_luminosity(
    runs: Sequence[RunRecord],
    path: str | os.PathLike[str],
    conditions: Sequence[str] | None = None,
    reference: str = "ei_ln",
    *,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Path | None:
    """Box-and-strip plot of test accuracy (%) per condition at each luminosity r.

    Each luminosity is a group on the x axis; within it every condition has a box (quartiles,
    median) over its runs with the individual runs jittered on top. Diverged runs are drawn as
    a red ``x`` at the accuracy they count with (chance, 10 %), or on the lower edge of the
    axis when every other run is far above chance (so the interesting range stays readable).
    The reference condition is drawn in dark grey, first, and every other cell is annotated
    with its Mann-Whitney stars against the reference at the same r.

    Args:
        runs: The runs.
        path: Output PNG path.
        conditions: Conditions to draw, in order; by default the reference then all others.
        reference: The reference condition (highlighted; stars are relative to it).
        labels: Optional display names for conditions.
        title: Optional figure title.

    Returns:
        The PNG path, or None when there are no runs to draw.
    """
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    grouped = group_runs(list(runs))
    conds = _order_conditions(grouped, conditions, reference)
    if not conds:
        return None
    lums = sorted(
        {r for c in conds for r in grouped[c]}, key=lambda r: (r is None, r or 0.0)
    )
    n_c, n_l = len(conds), len(lums)
    star_of = {
        (row.condition, row.luminosity): row.stars
        for row in compare_to_reference(
            [r for r in runs if r.condition in conds or r.condition == reference],
            reference=reference,
            conditions=[c for c in conds if c != reference],
        )
    }
    colors = _condition_colors(conds, reference)
    slot = 0.8 / n_c
    rng = np.random.default_rng(0)
    fig = _new_figure(max(6.0, 1.0 + n_l * (0.45 * n_c + 0.4)), 4.8)
    ax = fig.add_subplot()
    ymax_all = -math.inf
    all_cells = [r for c in conds for cell in grouped[c].values() for r in cell]
    any_div = any(r.diverged for r in all_cells)
    floor = _diverged_floor([r.accuracy * 100 for r in all_cells if not r.diverged], any_div)
    for li, lum in enumerate(lums):
        for ci, cond in enumerate(conds):
            cell = grouped[cond].get(lum, [])
            if not cell:
                continue
            x0 = li + (ci - (n_c - 1) / 2) * slot
            acc = np.array([r.accuracy for r in cell]) * 100.0
            div = np.array([r.diverged for r in cell])
            is_ref = cond == reference
            color = colors[cond]
            ax.boxplot(
                acc,
                positions=[x0],
                widths=slot * 0.75,
                showfliers=False,
                patch_artist=True,
                manage_ticks=False,
                boxprops={
                    "facecolor": (*_rgb(color), 0.35 if is_ref else 0.2),
                    "edgecolor": color,
                    "linewidth": 2.0 if is_ref else 1.0,
                },
                medianprops={"color": color, "linewidth": 2.0},
                whiskerprops={"color": color},
                capprops={"color": color},
            )
            jitter = (rng.random(len(acc)) - 0.5) * slot * 0.5
            ok = ~div
            ax.scatter(
                x0 + jitter[ok], acc[ok], s=14, color=color, alpha=0.8, zorder=3,
                edgecolors="none",
            )
            if div.any():
                ax.scatter(
                    x0 + jitter[div], acc[div] if floor is None else np.full(div.sum(), floor),
                    s=30, marker="x", color=_DIVERGED_COLOR, zorder=4, linewidths=1.5,
                    clip_on=floor is None,
                )
            top = float(np.max(acc))
            ymax_all = max(ymax_all, top)
            st = star_of.get((cond, lum))
            if st is not None and not is_ref:
                ax.annotate(
                    st, (x0, top), xytext=(0, 3), textcoords="offset points",
                    ha="center", va="bottom", fontsize=8,
                )
    ax.set_xticks(range(n_l), [f"r = {_fmt_r(r)}" for r in lums])
    ax.set_xlim(-0.5, n_l - 0.5)
    ax.set_xlabel("luminosity shift range r")
    ax.set_ylabel("test accuracy (%)")
    if floor is not None:
        ok_top = max(r.accuracy * 100 for r in all_cells if not r.diverged)
        ax.set_ylim(floor, ok_top + 0.12 * (ok_top - floor))
    elif math.isfinite(ymax_all):
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, max(hi, ymax_all + 0.06 * (hi - lo)))
    ax.grid(axis="y", alpha=0.3)
    handles: list[Any] = [
        Patch(
            facecolor=(*_rgb(colors[c]), 0.3),
            edgecolor=colors[c],
            label=_label(c, labels) + (" (reference)" if c == reference else ""),
        )
        for c in conds
    ]
    if any_div:
        where = "" if floor is None else "; drawn on the lower edge"
        handles.append(
            Line2D(
                [], [], marker="x", linestyle="none", color=_DIVERGED_COLOR,
                label=f"diverged (counted at {CHANCE_ACCURACY * 100:g} %{where})",
            )
        )
    ax.legend(handles=handles, fontsize=8, loc="best", framealpha=0.85)
    ax.set_title(
        title
        or f"Final test accuracy; stars: Mann-Whitney vs {_label(reference, labels)}",
        fontsize=10,
    )
    return save_figure(fig, path)


def _diverged_floor(ok_values: Sequence[float], any_diverged: bool) -> float | None:
    """Lower axis limit (%) that leaves diverged runs (10 %) off-scale, or None.

    When some runs diverged and every other run is far above chance, drawing the diverged ones
    at 10 % would squash the interesting range; they are then drawn on the axis' lower edge.
    """
    if not any_diverged or not ok_values:
        return None
    lo, hi = min(ok_values), max(ok_values)
    floor = lo - max(1.0, 0.08 * (hi - lo))
    return floor if floor > CHANCE_ACCURACY * 100 + 5 else None


def _rgb(color: Any) -> tuple[float, float, float]:
    """RGB triple of any matplotlib colour."""
    from matplotlib.colors import to_rgb

    return to_rgb(color)


def _finite_series(values: Sequence[float]) -> list[float]:
    """Copy of ``values`` with non-finite entries replaced by NaN."""
    return [v if isinstance(v, float) and math.isfinite(v) else math.nan for v in values]


def _curves(
    runs: Sequence[RunRecord], select: Any, luminosity: float | None
) -> dict[tuple[str, str], tuple[list[float], list[float], list[float], list[float]]]:
    """Per (condition, column) the across-run mean curve and its min/max band.

    Args:
        runs: The runs.
        select: Predicate on a history column name.
        luminosity: Restrict to runs at this r (None: all runs).

    Returns:
        ``{(condition, column): (epochs, mean, low, high)}`` with NaN where no run has data.
    """
    import numpy as np

    stacks: dict[tuple[str, str], list[list[float]]] = {}
    epochs_of: dict[tuple[str, str], list[float]] = {}
    for run in runs:
        if luminosity is not None and run.luminosity != luminosity:
            continue
        for col, vals in run.history.items():
            if not select(col) or not vals:
                continue
            key = (run.condition, col)
            stacks.setdefault(key, []).append(_finite_series(vals))
            ep = run.history.get("epoch")
            ep_vals = list(ep) if ep and len(ep) == len(vals) else []
            if not ep_vals or not all(math.isfinite(e) for e in ep_vals):
                ep_vals = [float(i + 1) for i in range(len(vals))]
            if len(ep_vals) > len(epochs_of.get(key, [])):
                epochs_of[key] = ep_vals
    out: dict[tuple[str, str], tuple[list[float], list[float], list[float], list[float]]] = {}
    for key, series in sorted(stacks.items()):
        n = max(len(s) for s in series)
        arr = np.full((len(series), n), np.nan)
        for i, s in enumerate(series):
            arr[i, : len(s)] = s
        if not np.isfinite(arr).any():
            continue
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN epochs
            mean = np.nanmean(arr, axis=0)
            low = np.nanmin(arr, axis=0)
            high = np.nanmax(arr, axis=0)
        out[key] = (epochs_of[key][:n], mean.tolist(), low.tolist(), high.tolist())
    return out


def _layer_of(col: str, prefixes: Sequence[str] = (), suffixes: Sequence[str] = ()) -> str:
    """The layer part of a per-layer column name."""
    name = col
    for p in prefixes:
        if name.startswith(p):
            name = name[len(p):].lstrip("_") or name
    for s in suffixes:
        if name.endswith(s):
            name = name[: -len(s)]
    name = name.strip("_") or col
    return f"layer {name}" if name.isdigit() else name


_LINESTYLES = ["-", "--", ":", "-."]


def _draw_curves(
    ax: Axes,
    curves: Mapping[tuple[str, str], tuple[list[float], list[float], list[float], list[float]]],
    colors: Mapping[str, Any],
    layer_of: Any,
    labels: Mapping[str, str] | None,
) -> None:
    """Draw mean curves with min/max bands; colour = condition, line style = layer."""
    layers = sorted({layer_of(col) for (_, col) in curves})
    style = {layer: _LINESTYLES[i % len(_LINESTYLES)] for i, layer in enumerate(layers)}
    for (cond, col), (ep, mean, low, high) in curves.items():
        layer = layer_of(col)
        ax.plot(
            ep, mean, color=colors[cond], linestyle=style[layer], marker="o", markersize=3,
            label=f"{_label(cond, labels)} · {layer}",
        )
        if any(lo != hi for lo, hi in zip(low, high, strict=True) if math.isfinite(lo)):
            ax.fill_between(ep, low, high, color=colors[cond], alpha=0.12, linewidth=0)


def _maybe_log(ax: Axes, curves: Mapping[Any, tuple[Any, Any, Any, Any]]) -> None:
    """Use a log y axis when all values are positive and span more than two decades."""
    vals = [
        v
        for (_, mean, low, high) in curves.values()
        for v in (*mean, *low, *high)
        if math.isfinite(v)
    ]
    if vals and min(vals) > 0 and max(vals) / min(vals) > 100:
        ax.set_yscale("log")


def plot_moments(
    runs: Sequence[RunRecord],
    path: str | os.PathLike[str],
    *,
    reference: str | None = "ei_ln",
    luminosity: float | None = None,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Path | None:
    """Per-epoch hidden-layer moments, per condition, with LayerNorm's targets.

    Uses the ``history.csv`` columns ending in ``_mean`` (left panel, target 0) and ``_var``
    (right panel, target 1), e.g. ``hidden_1_mean``/``hidden_1_var``. Lines are the mean over
    the condition's runs, bands their min-max range; colour = condition, line style = layer.

    Args:
        runs: The runs.
        path: Output PNG path.
        reference: Condition drawn in dark grey (colours match the accuracy figure).
        luminosity: Only use runs at this r (default: all runs).
        labels: Optional display names for conditions.
        title: Optional figure title.

    Returns:
        The PNG path, or None when no run has moment columns.
    """
    from matplotlib.ticker import MaxNLocator

    mean_curves = _curves(runs, lambda c: c.endswith("_mean"), luminosity)
    var_curves = _curves(runs, lambda c: c.endswith("_var"), luminosity)
    if not mean_curves and not var_curves:
        return None
    conds = sorted({c for (c, _) in (*mean_curves, *var_curves)})
    colors = _condition_colors(conds, reference)
    fig = _new_figure(11.0, 4.4)
    ax_m, ax_v = fig.subplots(1, 2)
    for ax, curves, target, suffix, name in (
        (ax_m, mean_curves, 0.0, "_mean", "mean over units of z"),
        (ax_v, var_curves, 1.0, "_var", "variance over units of z"),
    ):
        _draw_curves(ax, curves, colors, lambda c, s=suffix: _layer_of(c, suffixes=(s,)), labels)
        if suffix == "_var":
            _maybe_log(ax, curves)
        ax.axhline(
            target, color="black", linestyle="--", linewidth=1.0, label=f"LN target {target:g}"
        )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    where = "" if luminosity is None else f" (r = {luminosity:g})"
    fig.suptitle(title or f"Hidden-layer pre-activation moments{where}", fontsize=11)
    return save_figure(fig, path)


def plot_alignment(
    runs: Sequence[RunRecord],
    path: str | os.PathLike[str],
    *,
    reference: str | None = "ei_ln",
    luminosity: float | None = None,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Path | None:
    """Per-epoch output and gradient alignment with LayerNorm, per condition.

    Uses the ``history.csv`` columns starting with ``output_alignment`` (left) and
    ``gradient_alignment`` (right); perfect alignment (cosine 1) is drawn dashed.

    Args:
        runs: The runs.
        path: Output PNG path.
        reference: Condition drawn in dark grey (colours match the accuracy figure).
        luminosity: Only use runs at this r (default: all runs).
        labels: Optional display names for conditions.
        title: Optional figure title.

    Returns:
        The PNG path, or None when no run has alignment columns.
    """
    from matplotlib.ticker import MaxNLocator

    out_curves = _curves(runs, lambda c: c.startswith("output_alignment"), luminosity)
    grad_curves = _curves(runs, lambda c: c.startswith("gradient_alignment"), luminosity)
    if not out_curves and not grad_curves:
        return None
    conds = sorted({c for (c, _) in (*out_curves, *grad_curves)})
    colors = _condition_colors(conds, reference)
    fig = _new_figure(11.0, 4.4)
    ax_o, ax_g = fig.subplots(1, 2)
    for ax, curves, prefix, name in (
        (ax_o, out_curves, "output_alignment", "output alignment (cosine)"),
        (ax_g, grad_curves, "gradient_alignment", "gradient alignment (cosine)"),
    ):
        _draw_curves(
            ax, curves, colors, lambda c, p=prefix: _layer_of(c, prefixes=(p,)), labels
        )
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1.0, label="aligned with LN")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    where = "" if luminosity is None else f" (r = {luminosity:g})"
    fig.suptitle(title or f"Alignment with a LayerNorm network{where}", fontsize=11)
    return save_figure(fig, path)


def pair_runs(
    runs: Sequence[RunRecord], condition: str, reference: str
) -> list[tuple[RunRecord, RunRecord]]:
    """Pair runs of ``condition`` with runs of ``reference`` at the same r and seed/trial.

    Runs are matched on :attr:`RunRecord.pair_key` (luminosity and trial id, or seed when there
    is no trial id); several runs with one key are paired in their deterministic order.

    Args:
        runs: The runs.
        condition: The condition (y axis in the scatter).
        reference: The reference condition (x axis).

    Returns:
        ``[(condition_run, reference_run), ...]`` ordered by key.
    """
    by_key: dict[str, dict[tuple[float | None, str], list[RunRecord]]] = {
        condition: {},
        reference: {},
    }
    for run in sorted(runs, key=lambda r: r.sort_key):
        if run.condition in by_key:
            by_key[run.condition].setdefault(run.pair_key, []).append(run)
    pairs: list[tuple[RunRecord, RunRecord]] = []
    keys = sorted(
        set(by_key[condition]) & set(by_key[reference]),
        key=lambda k: (k[0] is None, k[0] or 0.0, k[1]),
    )
    for k in keys:
        pairs.extend(zip(by_key[condition][k], by_key[reference][k], strict=False))
    return pairs


def plot_scatter_vs_reference(
    runs: Sequence[RunRecord],
    path: str | os.PathLike[str],
    condition: str,
    reference: str = "ei_ln",
    *,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Path | None:
    """Fig. 4-style scatter: accuracy of ``condition`` against ``reference``, run by run.

    Runs are paired by luminosity and trial id (or seed), see :func:`pair_runs`. Points are
    coloured by r; pairs in which either run diverged are drawn as ``x`` (on the axis edge when
    every other run is far above chance). Points above the
    diagonal are configurations where the condition beat the reference. The legend gives the
    Mann-Whitney U, p and stars per r (computed on all runs of the cell, paired or not).

    Args:
        runs: The runs.
        path: Output PNG path.
        condition: Condition on the y axis.
        reference: Reference condition on the x axis.
        labels: Optional display names for conditions.
        title: Optional figure title.

    Returns:
        The PNG path, or None when no pair of runs exists.
    """
    pairs = pair_runs(runs, condition, reference)
    if not pairs:
        return None
    tests = {
        row.luminosity: row
        for row in compare_to_reference(runs, reference=reference, conditions=[condition])
    }
    lums = sorted({c.luminosity for c, _ in pairs}, key=lambda r: (r is None, r or 0.0))
    colors = dict(zip(lums, _colors(len(lums)), strict=True))
    any_div = any(c.diverged or r.diverged for c, r in pairs)
    ok_vals = [r.accuracy * 100 for pair in pairs for r in pair if not r.diverged]
    floor = _diverged_floor(ok_vals, any_div)
    fig = _new_figure(5.6, 5.2)
    ax = fig.add_subplot()
    all_vals: list[float] = []
    for lum in lums:
        cell = [(c, r) for c, r in pairs if c.luminosity == lum]
        edge = -math.inf if floor is None else floor
        xs = [max(r.accuracy * 100, edge) for _, r in cell]
        ys = [max(c.accuracy * 100, edge) for c, _ in cell]
        div = [c.diverged or r.diverged for c, r in cell]
        all_vals += xs + ys
        row = tests.get(lum)
        lab = f"r = {_fmt_r(lum)}"
        if row is not None and row.u is not None:
            lab += f" (U {format_u(row.u)}, p {format_p(row.p)} {row.stars})"
        ok_x = [x for x, d in zip(xs, div, strict=True) if not d]
        ok_y = [y for y, d in zip(ys, div, strict=True) if not d]
        ax.scatter(ok_x, ok_y, s=22, color=colors[lum], alpha=0.85, label=lab, edgecolors="none")
        dx = [x for x, d in zip(xs, div, strict=True) if d]
        dy = [y for y, d in zip(ys, div, strict=True) if d]
        if dx:
            ax.scatter(dx, dy, s=34, marker="x", color=colors[lum], linewidths=1.5,
                       label=None if ok_x else lab, clip_on=floor is None)
    lo, hi = min(all_vals), max(all_vals)
    pad = max(1.0, 0.05 * (hi - lo))
    lim = (lo - pad, hi + pad) if floor is None else (floor, hi + pad)
    ax.plot(lim, lim, color="black", linestyle="--", linewidth=1.0)
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.set_aspect("equal")
    ax.set_xlabel(f"{_label(reference, labels)} test accuracy (%)")
    ax.set_ylabel(f"{_label(condition, labels)} test accuracy (%)")
    ax.grid(alpha=0.3)
    legend_title = "x = pair with a diverged run" + (
        f" ({CHANCE_ACCURACY * 100:g} %, drawn on the edge)" if floor is not None else ""
    )
    ax.legend(fontsize=7, loc="upper left", title=legend_title, title_fontsize=7)
    ax.set_title(
        title or f"{_label(condition, labels)} vs {_label(reference, labels)} (paired runs)",
        fontsize=10,
    )
    return save_figure(fig, path)
