"""Figures from run directories (matplotlib, no display needed).

Every function takes the runs (see `ei_keras.analysis.load_runs`) and an output path, writes
a PNG (200 dpi) and, beside it, a vector copy (PDF by default, or SVG) atomically (each to a
temporary file in the same folder, then `os.replace`) and returns the PNG's path, or returns
None and writes nothing when there is nothing to plot.

The per-epoch figures (moments, alignment) follow the paper's Figs. 3-5: one column per
shift size (the luminosity range r, or the contrast range s), the median over runs with its
interquartile band, and diverged runs left out of the curves (a diverged run's variance
reaches 1e18 and would flatten every other curve) and counted in each column's title.
Legends sit outside the axes.

Figures are drawn on bare `matplotlib.figure.Figure` objects (no `pyplot`, no global
state, no GUI backend); matplotlib and numpy are imported lazily so that importing
`ei_keras.analysis` stays fast.
"""

from __future__ import annotations

import math
import os
import textwrap
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ei_keras.run_directory import write_atomic

from .runs import CHANCE_ACCURACY, RunRecord, group_runs, pair_runs
from .stats import chance_text, compare_to_reference, format_p, format_u, shift_axis, shift_of

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "plot_accuracy_by_luminosity",
    "plot_accuracy_by_shift",
    "plot_alignment",
    "plot_moments",
    "plot_scatter_vs_reference",
    "plot_weight_histograms",
    "save_figure",
]

_DPI = 200
_VECTOR_FORMATS = ("pdf", "svg")
_DIVERGED_COLOR = "#d62728"
_REFERENCE_COLOR = "#222222"


def save_figure(
    fig: Figure, path: str | os.PathLike[str], *, vector: str | None = "pdf"
) -> Path:
    """Write `fig` to `path` as PNG, and a vector copy beside it, each atomically.

    Each file is rendered into a temporary file next to its destination and moved into place
    with `os.replace`, so a reader never sees a half-written file. The vector copy has the
    same name with the vector format's suffix (`moments.png` → `moments.pdf`); the files
    carry no creation date, so drawing the same runs again gives the same bytes.

    Args:
        fig: The figure (a `matplotlib.figure.Figure`).
        path: Destination of the PNG; its folder is created if needed.
        vector: `"pdf"` (default), `"svg"`, or None for the PNG only.

    Returns:
        `path` as a `pathlib.Path`.

    Raises:
        ValueError: `vector` is not one of `"pdf"`, `"svg"` or None.

    Example:

    ```python
    from matplotlib.figure import Figure
    from ei_keras.analysis import save_figure

    fig = Figure()
    fig.add_subplot().plot([1, 2, 3], [0.2, 0.6, 0.8])
    png = save_figure(fig, "curve.png", vector="svg")
    png.name, png.with_suffix(".svg").is_file()  # ('curve.png', True)
    ```
    """
    if vector is not None and vector not in _VECTOR_FORMATS:
        raise ValueError(
            f"Expected `vector` to be one of {_VECTOR_FORMATS} or None. Received: vector={vector!r}"
        )
    dest = Path(path)
    if vector is not None:
        meta = {"CreationDate": None} if vector == "pdf" else {"Date": None}
        write_atomic(
            dest.with_suffix("." + vector),
            lambda tmp: fig.savefig(tmp, format=vector, metadata=meta),
        )
    return write_atomic(dest, lambda tmp: fig.savefig(tmp, format="png", dpi=_DPI))


def _new_figure(width: float, height: float) -> Figure:
    """A standalone figure with constrained layout."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _colors(n: int) -> list[Any]:
    """`n` distinct colours (tab10, then tab20)."""
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
    """Shift-size label: `0.25` or `?`."""
    return "?" if r is None else f"{r:g}"


def _axis_of(runs: Iterable[RunRecord]) -> str:
    """The name of the runs' shift-size axis: `r`, `contrast s`, ..."""
    return shift_axis(shift_of(runs))


#: How the x axis of the accuracy figure reads, per size-axis name.
_AXIS_TITLES = {"r": "luminosity shift range r", "contrast s": "contrast range s",
                "contrast-as-signal s": "contrast range s (low/high contrast is in the label)"}


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


def plot_accuracy_by_shift(
    runs: Sequence[RunRecord],
    path: str | os.PathLike[str],
    conditions: Sequence[str] | None = None,
    reference: str = "ei_ln",
    *,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
    vector: str | None = "pdf",
) -> Path | None:
    """Box-and-strip plot of test accuracy (%) per condition at each shift size (luminosity
    range r, or contrast range s).

    Each size is a group on the x axis; within it every condition has a box (quartiles,
    median) over its runs with the individual runs jittered on top. Diverged runs are drawn as
    a red `x` at the accuracy they count with (chance, 10 %), or on the lower edge of the
    axis when every other run is far above chance (so the interesting range stays readable).
    The reference condition is drawn in dark grey, first, and every other cell is annotated
    with its Mann-Whitney stars against the reference at the same size. The legend sits to the
    right of the axes, clear of the data.

    Args:
        runs: The runs.
        path: Output PNG path; the vector copy goes beside it.
        conditions: Conditions to draw, in order; by default the reference then all others.
        reference: The reference condition (highlighted; stars are relative to it).
        labels: Optional display names for conditions.
        title: Optional figure title.
        vector: Format of the vector copy, `"pdf"` or `"svg"`, or None for PNG only.

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
        (row.condition, row.shift_size): row.stars
        for row in compare_to_reference(
            [r for r in runs if r.condition in conds or r.condition == reference],
            reference=reference,
            conditions=[c for c in conds if c != reference],
        )
    }
    colors = _condition_colors(conds, reference)
    slot = 0.8 / n_c
    rng = np.random.default_rng(0)
    # Room for the axes, then about 2.6 inches for the legend to the right of them.
    fig = _new_figure(max(4.0, 1.2 + n_l * (0.45 * n_c + 0.4)) + 2.6, 4.8)
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
    axis = _axis_of(all_cells)
    ax.set_xticks(range(n_l), [f"{axis} = {_fmt_r(r)}" for r in lums])
    ax.set_xlim(-0.5, n_l - 0.5)
    ax.set_xlabel(_AXIS_TITLES.get(axis, f"{axis} (shift size)"))
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
        where = "" if floor is None else ";\ndrawn on the lower edge"
        handles.append(
            Line2D(
                [], [], marker="x", linestyle="none", color=_DIVERGED_COLOR,
                label=f"diverged run\n(counted at {chance_text(all_cells)}{where})",
            )
        )
    handles.append(Line2D([], [], linestyle="none", label="box: quartiles and median\n"
                          "dots: runs; stars: Mann-Whitney\nvs the reference at the same "
                          f"{axis}"))
    fig.legend(handles=handles, fontsize=8, loc="outside right center", frameon=False)
    _suptitle(fig, title
              or f"Final test accuracy; stars: Mann-Whitney vs {_label(reference, labels)}",
              10)
    return save_figure(fig, path, vector=vector)


#: The name of `plot_accuracy_by_shift` before the other shift families existed.
plot_accuracy_by_luminosity = plot_accuracy_by_shift


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
    """Copy of `values` with non-finite entries replaced by NaN."""
    return [v if isinstance(v, float) and math.isfinite(v) else math.nan for v in values]


@dataclass(frozen=True)
class _Curve:
    """Across-run summary of one history column of one condition at one r.

    Attributes:
        epochs: The x values.
        median: The median over runs per epoch (NaN where no run has a finite value).
        low: The 25th percentile per epoch.
        high: The 75th percentile per epoch.
        n_runs: How many runs entered the summary.
    """

    epochs: list[float]
    median: list[float]
    low: list[float]
    high: list[float]
    n_runs: int


def _curve_runs(
    runs: Sequence[RunRecord], select: Callable[[str], bool], shift_size: float | None
) -> tuple[list[RunRecord], list[RunRecord]]:
    """The runs at `shift_size` (None: any) with a selected history column, split into
    `(kept, diverged)`: a diverged run's curves are left out of every median (its values
    run to 1e18 and would say nothing about the runs that learned)."""
    kept: list[RunRecord] = []
    left_out: list[RunRecord] = []
    for run in runs:
        if shift_size is not None and run.shift_size != shift_size:
            continue
        if not any(select(col) and vals for col, vals in run.history.items()):
            continue
        (left_out if run.diverged else kept).append(run)
    return kept, left_out


def _curves(
    runs: Sequence[RunRecord], select: Callable[[str], bool], shift_size: float | None
) -> dict[tuple[str, str], _Curve]:
    """Per (condition, column): median and interquartile range over the runs that did not
    diverge.

    Args:
        runs: The runs.
        select: Predicate on a history column name.
        shift_size: Restrict to runs at this shift size (None: all runs).

    Returns:
        `{(condition, column): _Curve}`, sorted by key; columns with no finite value are
        left out.
    """
    import numpy as np

    kept, _ = _curve_runs(runs, select, shift_size)
    stacks: dict[tuple[str, str], list[list[float]]] = {}
    epochs_of: dict[tuple[str, str], list[float]] = {}
    for run in kept:
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
    out: dict[tuple[str, str], _Curve] = {}
    for key, series in sorted(stacks.items()):
        n = max(len(s) for s in series)
        arr = np.full((len(series), n), np.nan)
        for i, s in enumerate(series):
            arr[i, : len(s)] = s
        if not np.isfinite(arr).any():
            continue
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN epochs
            low, median, high = np.nanpercentile(arr, [25.0, 50.0, 75.0], axis=0)
        out[key] = _Curve(
            epochs_of[key][:n], median.tolist(), low.tolist(), high.tolist(), len(series)
        )
    return out


def _layer_of(col: str, prefixes: Sequence[str] = (), suffixes: Sequence[str] = ()) -> str:
    """The layer part of a per-layer column name: `hidden_1_var` → `hidden layer 1`."""
    name = col
    for p in prefixes:
        if name.startswith(p):
            name = name[len(p):].lstrip("_") or name
    for s in suffixes:
        if name.endswith(s):
            name = name[: -len(s)]
    name = name.strip("_") or col
    if name.startswith("hidden_") and name[len("hidden_"):].isdigit():
        name = name[len("hidden_"):]
    return f"hidden layer {name}" if name.isdigit() else name


_LINESTYLES: list[Any] = ["-", "--", ":", "-."]
#: One marker per condition of a per-epoch figure (colour says the same), so that conditions
#: whose curves coincide (`e_ln` and `ei_ln` have the same normalized moments) stay visible.
_MARKERS: list[str] = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p"]
#: Largest sideways shift, in epochs, between the first and the last condition of a
#: per-epoch figure (whole-epoch ticks stay unambiguous: the shifts stay well under 0.5).
_MAX_SPREAD = 0.24


def _offsets(conds: Sequence[str]) -> dict[str, float]:
    """The sideways shift (in epochs) of each condition's curve, centred on the epoch."""
    n = len(conds)
    step = 0.0 if n < 2 else min(0.06, _MAX_SPREAD / (n - 1))
    return {c: (i - (n - 1) / 2) * step for i, c in enumerate(conds)}


def _suptitle(fig: Figure, text: str, fontsize: float) -> None:
    """`fig.suptitle` wrapped to the figure's width (an average character is about 0.55 em
    wide; 0.9 of the width leaves a margin), so a narrow figure does not cut it off."""
    width_pt = fig.get_figwidth() * 72 * 0.9
    chars = max(20, int(width_pt / (0.55 * fontsize)))
    fig.suptitle("\n".join(textwrap.wrap(text, chars)) or text, fontsize=fontsize)
_TARGET_STYLE = {"color": "0.55", "linewidth": 3.0, "alpha": 0.45, "zorder": 0}


@dataclass(frozen=True)
class _Panel:
    """One row of a per-epoch figure: which columns, how to name their layers, the y axis."""

    select: Callable[[str], bool]
    layer_of: Callable[[str], str]
    ylabel: str
    target: float | None
    target_label: str
    log: bool = False


def _curve_figure(
    runs: Sequence[RunRecord],
    panels: Sequence[_Panel],
    *,
    reference: str | None,
    shift_size: float | None,
    labels: Mapping[str, str] | None,
    conditions: Sequence[str] | None,
    title: str,
) -> Figure | None:
    """A grid of per-epoch curves: one row per panel, one column per shift size.

    Colour = condition (as in the accuracy figure), line style = hidden layer; lines are the
    median over the runs that did not diverge, bands their interquartile range. Diverged runs
    are left out and counted in each column's title. One legend, outside the axes, explains
    colours, line styles, bands and the target line.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

    def select_any(col: str) -> bool:
        return any(p.select(col) for p in panels)

    axis = _axis_of(runs)
    if shift_size is not None:
        lums: list[float | None] = [shift_size]
    else:
        kept_all, _ = _curve_runs(runs, select_any, None)
        lums = sorted({r.shift_size for r in kept_all}, key=lambda r: (r is None, r or 0.0))
    grid = {
        (pi, li): _curves(runs, p.select, lum)
        for pi, p in enumerate(panels)
        for li, lum in enumerate(lums)
    }
    present = {c for curves in grid.values() for (c, _) in curves}
    conds = _order_conditions(present, conditions, reference)
    if not conds:
        return None
    colors = _condition_colors(conds, reference)
    markers = {c: _MARKERS[i % len(_MARKERS)] for i, c in enumerate(conds)}
    shift = _offsets(conds)
    layers = sorted(
        {p.layer_of(col) for pi, p in enumerate(panels) for li in range(len(lums))
         for (_, col) in grid[(pi, li)]}
    )
    style = {layer: _LINESTYLES[i % len(_LINESTYLES)] for i, layer in enumerate(layers)}
    n_rows, n_cols = len(panels), len(lums)
    band_alpha = 0.14 if len(conds) <= 4 else 0.08  # many overlapping bands turn to mud
    fig = _new_figure(2.2 + 3.6 * n_cols, 0.6 + 2.7 * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharex=True, sharey="row")
    for li, lum in enumerate(lums):
        _, left_out = _curve_runs(runs, select_any, lum)
        left_out = [r for r in left_out if r.condition in conds]
        for pi, panel in enumerate(panels):
            ax = axes[pi][li]
            for (cond, col), curve in grid[(pi, li)].items():
                if cond not in colors:
                    continue
                epochs = [e + shift[cond] for e in curve.epochs]
                ax.plot(
                    epochs, curve.median, color=colors[cond],
                    linestyle=style[panel.layer_of(col)], linewidth=1.6,
                    marker=markers[cond], markersize=4.5, markerfacecolor="none",
                    markeredgewidth=1.2,
                )
                if curve.n_runs > 1:
                    ax.fill_between(
                        epochs, curve.low, curve.high, color=colors[cond], alpha=band_alpha,
                        linewidth=0,
                    )
            if panel.target is not None:
                ax.axhline(panel.target, **_TARGET_STYLE)
            if panel.log and _all_positive(grid[(pi, li)]):
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            ax.xaxis.set_minor_locator(NullLocator())
            if li == 0:
                ax.set_ylabel(panel.ylabel)
            if pi == n_rows - 1:
                ax.set_xlabel("epoch")
        head = f"{axis} = {_fmt_r(lum)}"
        if left_out:
            kept, _ = _curve_runs(runs, select_any, lum)
            counts = Counter(r.condition for r in left_out)
            totals = counts + Counter(r.condition for r in kept)
            head += "\n" + textwrap.fill(
                "diverged, left out: " + ", ".join(
                    f"{_label(c, labels)} {counts[c]} of {totals[c]}" for c in conds if counts[c]
                ),
                width=44,
            )
        else:
            head += "\nno run diverged"
        axes[0][li].set_title(head, fontsize=9)
    for row in axes:
        lo, hi = row[0].get_ylim()
        if row[0].get_yscale() == "log" and hi / lo < 30:
            # Under a decade and a half, 10^k ticks would leave the axis unlabelled: plain
            # numbers (0.95, 1, 1.1) on the major and minor ticks instead.
            # Over more than a factor 3, minor labels only at 2 and 5 times a power of ten
            # (all of them would run into each other below 1).
            plain = FuncFormatter(lambda v, _: f"{v:.3g}")
            row[0].yaxis.set_major_formatter(plain)
            row[0].yaxis.set_minor_formatter(plain if hi / lo < 3 else FuncFormatter(
                lambda v, _: f"{v:.3g}" if _mantissa(v) in (2, 5) else ""))
    handles: list[Any] = [
        Line2D([], [], color=colors[c], linewidth=2.0, marker=markers[c], markersize=5,
               markerfacecolor="none",
               label=_label(c, labels) + (" (reference)" if c == reference else ""))
        for c in conds
    ]
    handles.append(Line2D([], [], linestyle="none", label=" "))
    handles += [Line2D([], [], color="black", linestyle=style[layer], label=layer)
                for layer in layers]
    handles.append(Patch(facecolor="0.5", alpha=0.25, label="interquartile range"))
    targets = dict.fromkeys(p.target_label for p in panels if p.target is not None)
    handles += [Line2D([], [], label=t, **{k: v for k, v in _TARGET_STYLE.items()
                                          if k != "zorder"}) for t in targets]
    if len(conds) > 1:
        handles.append(Line2D([], [], linestyle="none", label=(
            "conditions nudged sideways\n(within ±" f"{_MAX_SPREAD / 2:g}" " epoch) so\n"
            "equal curves stay visible")))
    fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False,
               title="colour, marker = condition\nline style = layer", title_fontsize=8,
               alignment="left")
    _suptitle(fig, title, 11)
    return fig


def _mantissa(v: float) -> int | None:
    """The leading digit of a positive tick value (`0.5` -> 5), None if it is not whole."""
    if not v > 0:
        return None
    m = v / 10 ** math.floor(math.log10(v))
    return round(m) if abs(m - round(m)) < 1e-6 else None


def _all_positive(curves: Mapping[Any, _Curve]) -> bool:
    """Whether every finite value of `curves` is positive (a log axis can show them)."""
    vals = [v for c in curves.values() for v in (*c.median, *c.low, *c.high) if math.isfinite(v)]
    return bool(vals) and min(vals) > 0


def _moments_figure(
    runs: Sequence[RunRecord],
    *,
    reference: str | None = "ei_ln",
    shift_size: float | None = None,
    labels: Mapping[str, str] | None = None,
    conditions: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure | None:
    """The figure `plot_moments` saves (None when no run has moment columns)."""
    panels = [
        _Panel(lambda c: c.endswith("_mean"), lambda c: _layer_of(c, suffixes=("_mean",)),
               "mean over units of z", 0.0, "LayerNorm target (mean 0, variance 1)"),
        _Panel(lambda c: c.endswith("_var"), lambda c: _layer_of(c, suffixes=("_var",)),
               "variance over units of z (log)", 1.0, "LayerNorm target (mean 0, variance 1)",
               log=True),
    ]
    return _curve_figure(
        runs, panels, reference=reference, shift_size=shift_size, labels=labels,
        conditions=conditions,
        title=title or "Hidden-layer pre-activation moments: median over runs that did not "
        "diverge",
    )


def plot_moments(
    runs: Sequence[RunRecord],
    path: str | os.PathLike[str],
    *,
    reference: str | None = "ei_ln",
    shift_size: float | None = None,
    labels: Mapping[str, str] | None = None,
    conditions: Sequence[str] | None = None,
    title: str | None = None,
    vector: str | None = "pdf",
) -> Path | None:
    """Per-epoch hidden-layer moments, per condition and shift size, with LayerNorm's targets.

    Uses the `history.csv` columns ending in `_mean` (top row, target 0) and `_var` (bottom
    row, target 1, log axis: a variance is a scale), e.g. `hidden_1_mean` / `hidden_1_var`.
    One column per shift size. Lines are the median over the condition's runs that did not diverge,
    bands their interquartile range; colour = condition, line style = hidden layer. Diverged
    runs are left out (their moments run to 1e18) and counted in each column's title.

    Args:
        runs: The runs (see `ei_keras.analysis.load_runs`).
        path: Output PNG path; the vector copy goes beside it.
        reference: Condition drawn in dark grey (colours match the accuracy figure).
        shift_size: Draw only this shift size (default: one column per size present).
        labels: Optional display names for conditions.
        conditions: Conditions to draw, in order (default: the reference, then the rest).
        title: Optional figure title.
        vector: Format of the vector copy, `"pdf"` or `"svg"`, or None for PNG only.

    Returns:
        The PNG path, or None (nothing written) when no run has moment columns.

    Example:

    ```python
    from ei_keras.analysis import load_runs, plot_moments
    from ei_keras.experiment import run_experiment

    run_experiment({"preset": "inorm_gradnorm", "model.width": 16, "train.epochs": 2,
                    "data.train_subset": 256, "data.test_subset": 128,
                    "measures.probe_size": 64}, "runs/demo/inorm_gradnorm",
                   printer=lambda *a: None)  # a tiny real run
    png = plot_moments(load_runs("runs/demo"), "runs/demo/moments.png")
    png.name, png.with_suffix(".pdf").is_file()  # ('moments.png', True)
    ```
    """
    fig = _moments_figure(runs, reference=reference, shift_size=shift_size, labels=labels,
                          conditions=conditions, title=title)
    return None if fig is None else save_figure(fig, path, vector=vector)


#: The history column `learning_runs` adds: a run's training accuracy minus its reference
#: pair's, epoch by epoch, in points.
VERSUS_REFERENCE = "accuracy_vs_reference"


def learning_runs(runs: Sequence[RunRecord], reference: str | None) -> list[RunRecord]:
    """The runs with the history of `plot_learning_curves`: training accuracy in percent
    (`accuracy`), and for each run paired with a `reference` run (same shift size and seed or
    trial, `pair_runs`) its difference from that run, epoch by epoch, in points
    (`VERSUS_REFERENCE`; as long as the shorter history). A run without an `accuracy` column
    is left out."""
    import dataclasses

    def percent(run: RunRecord) -> list[float]:
        return [100.0 * v for v in _finite_series(run.history.get("accuracy") or [])]

    diffs: dict[Path, list[float]] = {}
    if reference is not None:
        for cond in {r.condition for r in runs} - {reference}:
            for run, ref in pair_runs(runs, cond, reference):
                if ref.diverged:
                    continue  # a stopped reference's curve says nothing about the condition
                a, b = percent(run), percent(ref)
                diffs[run.path] = [x - y for x, y in zip(a, b, strict=False)]
    out = []
    for run in runs:
        acc = percent(run)
        if not acc:
            continue
        history = {"epoch": (run.history.get("epoch") or [])[:len(acc)], "accuracy": acc}
        if run.path in diffs:
            history[VERSUS_REFERENCE] = diffs[run.path]
        out.append(dataclasses.replace(run, history=history))
    return out


def _learning_figure(
    runs: Sequence[RunRecord],
    *,
    reference: str | None = "ei_ln",
    labels: Mapping[str, str] | None = None,
    conditions: Sequence[str] | None = None,
) -> Figure | None:
    """The figure `plot_learning_curves` saves (None when no run has an `accuracy` history)."""
    runs = learning_runs(runs, reference)
    if not runs:
        return None
    ref = _label(reference, labels) if reference else ""
    panels = [_Panel(lambda c: c == "accuracy", lambda c: "training", "training accuracy (%)",
                     None, "")]
    if any(VERSUS_REFERENCE in r.history for r in runs):
        panels.append(_Panel(lambda c: c == VERSUS_REFERENCE, lambda c: "training",
                             f"minus {ref}'s, same configuration (points)", 0.0,
                             f"equal to {ref}"))
    return _curve_figure(
        runs, panels, reference=reference, shift_size=None, labels=labels,
        conditions=conditions,
        title="Training accuracy per epoch, and its difference from the reference's in the "
        "same configuration: median over runs that did not diverge")


def plot_learning_curves(
    runs: Sequence[RunRecord],
    path: str | os.PathLike[str],
    *,
    reference: str | None = "ei_ln",
    labels: Mapping[str, str] | None = None,
    conditions: Sequence[str] | None = None,
    vector: str | None = "pdf",
) -> Path | None:
    """Training accuracy per epoch (top row) and each condition's difference from its
    `reference` pair, same configuration (bottom row: training accuracy minus the reference
    run's, points; 0 = equal), one column per shift size. Lines are medians over the runs that
    did not diverge, bands their interquartile range; the bottom row says whether a lead over
    the reference grows or shrinks with training, which a final accuracy cannot.

    Args:
        runs: The runs (see `ei_keras.analysis.load_runs`), with `history.csv`.
        path: Output PNG path; the vector copy goes beside it.
        reference: The condition the others are paired with (None: the top row only).
        labels: Optional display names for conditions.
        conditions: Conditions to draw, in order (default: the reference, then the rest).
        vector: Format of the vector copy, `"pdf"` or `"svg"`, or None for PNG only.

    Returns:
        The PNG path, or None (nothing written) when no run has an `accuracy` history.
    """
    fig = _learning_figure(runs, reference=reference, labels=labels, conditions=conditions)
    return None if fig is None else save_figure(fig, path, vector=vector)


def _alignment_figure(
    runs: Sequence[RunRecord],
    *,
    reference: str | None = "ei_ln",
    shift_size: float | None = None,
    labels: Mapping[str, str] | None = None,
    conditions: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure | None:
    """The figure `plot_alignment` saves (None when no run has alignment columns)."""
    panels = [
        _Panel(lambda c: c.startswith("output_alignment"),
               lambda c: _layer_of(c, prefixes=("output_alignment",)),
               "output alignment (cosine)", 1.0, "aligned with LayerNorm (cosine 1)"),
        _Panel(lambda c: c.startswith("gradient_alignment"),
               lambda c: _layer_of(c, prefixes=("gradient_alignment",)),
               "gradient alignment (cosine)", 1.0, "aligned with LayerNorm (cosine 1)"),
    ]
    return _curve_figure(
        runs, panels, reference=reference, shift_size=shift_size, labels=labels,
        conditions=conditions,
        title=title or "Alignment with a LayerNorm network: median over runs that did not "
        "diverge",
    )


def plot_alignment(
    runs: Sequence[RunRecord],
    path: str | os.PathLike[str],
    *,
    reference: str | None = "ei_ln",
    shift_size: float | None = None,
    labels: Mapping[str, str] | None = None,
    conditions: Sequence[str] | None = None,
    title: str | None = None,
    vector: str | None = "pdf",
) -> Path | None:
    """Per-epoch output and gradient alignment with LayerNorm, per condition and shift size.

    Uses the `history.csv` columns starting with `output_alignment` (top row) and
    `gradient_alignment` (bottom row); one column per shift size; perfect alignment (cosine 1)
    is the grey line. Lines are medians over the runs that did not diverge, bands interquartile
    ranges; diverged runs are left out and counted in each column's title.

    Args:
        runs: The runs (see `ei_keras.analysis.load_runs`).
        path: Output PNG path; the vector copy goes beside it.
        reference: Condition drawn in dark grey (colours match the accuracy figure).
        shift_size: Draw only this shift size (default: one column per size present).
        labels: Optional display names for conditions.
        conditions: Conditions to draw, in order (default: the reference, then the rest).
        title: Optional figure title.
        vector: Format of the vector copy, `"pdf"` or `"svg"`, or None for PNG only.

    Returns:
        The PNG path, or None (nothing written) when no run has alignment columns.
    """
    fig = _alignment_figure(runs, reference=reference, shift_size=shift_size, labels=labels,
                            conditions=conditions, title=title)
    return None if fig is None else save_figure(fig, path, vector=vector)


def plot_scatter_vs_reference(
    runs: Sequence[RunRecord],
    path: str | os.PathLike[str],
    condition: str,
    reference: str = "ei_ln",
    *,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
    vector: str | None = "pdf",
) -> Path | None:
    """Fig. 4-style scatter: accuracy of `condition` against `reference`, run by run.

    Runs are paired by shift size and trial id (or seed), see `pair_runs`. Points are
    coloured by shift size; pairs in which either run diverged are drawn as `x` (on the axis
    edge when every other run is far above chance). Points above the diagonal are
    configurations where the condition beat the reference. The legend gives the Mann-Whitney
    U, p and stars per shift size (computed on all runs of the cell, paired or not).

    Args:
        runs: The runs.
        path: Output PNG path.
        condition: Condition on the y axis.
        reference: Reference condition on the x axis.
        labels: Optional display names for conditions.
        title: Optional figure title.
        vector: Format of the vector copy, `"pdf"` or `"svg"`, or None for PNG only.

    Returns:
        The PNG path, or None when no pair of runs exists.
    """
    pairs = pair_runs(runs, condition, reference)
    if not pairs:
        return None
    tests = {
        row.shift_size: row
        for row in compare_to_reference(runs, reference=reference, conditions=[condition])
    }
    axis = _axis_of(run for pair in pairs for run in pair)
    lums = sorted({c.shift_size for c, _ in pairs}, key=lambda r: (r is None, r or 0.0))
    colors = dict(zip(lums, _colors(len(lums)), strict=True))
    any_div = any(c.diverged or r.diverged for c, r in pairs)
    ok_vals = [r.accuracy * 100 for pair in pairs for r in pair if not r.diverged]
    floor = _diverged_floor(ok_vals, any_div)
    fig = _new_figure(5.6, 5.2)
    ax = fig.add_subplot()
    all_vals: list[float] = []
    for lum in lums:
        cell = [(c, r) for c, r in pairs if c.shift_size == lum]
        edge = -math.inf if floor is None else floor
        xs = [max(r.accuracy * 100, edge) for _, r in cell]
        ys = [max(c.accuracy * 100, edge) for c, _ in cell]
        div = [c.diverged or r.diverged for c, r in cell]
        all_vals += xs + ys
        row = tests.get(lum)
        lab = f"{axis} = {_fmt_r(lum)}"
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
        f" ({chance_text(run for pair in pairs for run in pair)}, drawn on the edge)"
        if floor is not None else ""
    )
    ax.legend(fontsize=7, loc="upper left", title=legend_title, title_fontsize=7)
    ax.set_title(
        title or f"{_label(condition, labels)} vs {_label(reference, labels)} (paired runs)",
        fontsize=10,
    )
    return save_figure(fig, path, vector=vector)


def plot_weight_histograms(
    runs: Sequence[RunRecord],
    path: str | os.PathLike[str],
    *,
    groups: Sequence[Sequence[str]] | None = None,
    labels: Mapping[str, str] | None = None,
    vector: str | None = "pdf",
) -> Path | None:
    """Histograms of `log10 w` of the sign-constrained excitatory weights at the end of
    training (`metrics.json` `weights`, `ei_keras.measures.weight_distribution`), summed over
    the runs of each condition (every shift size): one panel per group of conditions
    (default: the conditions of one preset together, e.g. `ei` and its variant `ei_eg`),
    one line per condition, as the fraction of all its weights per quarter-decade bin, and a
    dashed line for the same runs at initialization (`weights_init`, where recorded); the
    weights at exactly 0 (clipped) are off the log axis, their share is in the legend.
    Returns None (nothing written) when no run recorded the distribution."""
    import numpy as np

    from ei_keras.measures import WEIGHT_LOG10_EDGES

    pooled: dict[str, dict] = {}
    initial: dict[str, dict] = {}
    family: dict[str, str] = {}

    def add(into: dict, condition: str, rec: dict) -> bool:
        counts = rec.get("log10_histogram")
        if not isinstance(counts, list) or len(counts) != len(WEIGHT_LOG10_EDGES) - 1:
            return False
        acc = into.setdefault(condition, {"counts": np.zeros(len(counts)), "n": 0,
                                          "zeros": 0.0, "runs": 0})
        acc["counts"] += np.asarray(counts, dtype=float)
        acc["n"] += int(rec["n"])
        acc["zeros"] += float(rec["zero_fraction"]) * int(rec["n"])
        acc["runs"] += 1
        return True

    for r in runs:
        if add(pooled, r.condition, (r.metrics.get("weights") or {}).get("pooled") or {}):
            add(initial, r.condition, (r.metrics.get("weights_init") or {}).get("pooled") or {})
            family.setdefault(r.condition, r.preset or r.condition)
    if not pooled:
        return None
    if groups is None:
        by: dict[str, list[str]] = {}
        for c in sorted(pooled):
            by.setdefault(family[c], []).append(c)
        groups = [by[k] for k in sorted(by)]
    groups = [[c for c in g if c in pooled] for g in groups]
    groups = [g for g in groups if g]
    if not groups:
        return None
    edges = np.asarray(WEIGHT_LOG10_EDGES)
    centers = (edges[:-1] + edges[1:]) / 2
    cols = min(3, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig = _new_figure(4.2 * cols, 3.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel()[len(groups):]:
        ax.set_visible(False)
    for ax, group in zip(axes.ravel(), groups, strict=False):
        colors = _colors(len(group))
        for color, c in zip(colors, group, strict=True):
            acc = pooled[c]
            frac = acc["counts"] / max(acc["n"], 1)
            zeros = 100 * acc["zeros"] / max(acc["n"], 1)
            ax.step(centers, frac, where="mid", color=color,
                    label=f"{_label(c, labels)} (at 0: {zeros:.0f} %, {acc['runs']} runs)")
        starts = [initial[c] for c in group if c in initial]
        if starts:  # the runs' initialization, summed like the ends
            counts = sum(a["counts"] for a in starts)
            ax.step(centers, counts / max(sum(a["n"] for a in starts), 1), where="mid",
                    color="0.5", linestyle="--", label="at initialization")
        ax.set_xlabel("log10 w (excitatory weights)")
        ax.set_ylabel("fraction of weights")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Excitatory weights at the end of training (all runs of each condition)",
                 fontsize=10)
    return save_figure(fig, path, vector=vector)
