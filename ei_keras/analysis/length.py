"""The same configurations trained for two lengths: does a condition's difference from the
reference change when training runs longer?

The paper trains 50 epochs; most protocols here run 3. A protocol's configuration *i* is one
draw of the learning rates and width (`ei_keras.search_space`) whatever the length, so a run
of `docs/results/paper30` (3 epochs) and one of `docs/results/paper50` (50 epochs) with the same
condition, r and seed trained the same network with the same rates: only the length differs.
`compare_lengths` pairs them and, per condition and r, gives the paired difference from the
reference (condition − reference, same configuration) at each length with its Hodges–Lehmann
estimate and 95 % interval, and whether it changed (the per-configuration change of that
difference, Wilcoxon signed-rank p). Runs whose learning rates or width differ between the two
folders are not the same configuration: `compare_lengths` refuses them by name.

This module imports neither Keras nor any array backend.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .report import _table
from .runs import RunRecord
from .stats import format_p, paired_hodges_lehmann, wilcoxon_paired

__all__ = ["LengthRow", "compare_lengths", "format_length_table", "format_training_gaps",
           "run_epochs", "training_gaps"]

#: The settings that make two runs the same configuration apart from their length.
_SAME_CONFIGURATION = ("lr_e", "lr_ie", "lr_ei", "norm_weight", "batch_size", "momentum")


@dataclass(frozen=True)
class LengthRow:
    """One condition at one shift size, its paired difference from the reference at two
    lengths.

    Attributes:
        condition, reference: the conditions compared (condition − reference).
        shift_size: r (or the shift family's size).
        epochs: `(short, long)` lengths in epochs.
        n: configurations with all four runs (condition and reference at both lengths).
        short, long: Hodges–Lehmann estimate of the paired difference and its 95 % interval,
            `(estimate, low, high)` in accuracy fractions, at each length (None below 2).
        higher: `(short, long)`: configurations in which the condition is above the reference.
        change: median over configurations of (long difference − short difference).
        p: two-sided Wilcoxon signed-rank p of those changes (None below 2).
        reference_gain: median over configurations of the reference's own accuracy gain
            (long − short).
    """

    condition: str
    reference: str
    shift_size: float | None
    epochs: tuple[int | None, int | None]
    n: int
    short: tuple[float, float, float] | None
    long: tuple[float, float, float] | None
    higher: tuple[int, int]
    change: float | None
    p: float | None
    reference_gain: float | None


def run_epochs(run: RunRecord) -> int | None:
    """The length a run was configured for (`train.epochs` of its `config.json`)."""
    epochs = (run.config.get("train") or {}).get("epochs")
    return int(epochs) if isinstance(epochs, int | float) and not isinstance(epochs, bool) \
        else None


def _configuration(run: RunRecord) -> tuple:
    """What must be equal for two runs to be one configuration at two lengths."""
    hp = run.metrics.get("hyperparameters") or {}
    width = (run.config.get("model") or {}).get("width")
    return (width,) + tuple(hp.get(k) for k in _SAME_CONFIGURATION)


def _same(a: tuple, b: tuple) -> bool:
    return all(x == y or (isinstance(x, float) and isinstance(y, float)
                          and math.isclose(x, y, rel_tol=1e-9)) for x, y in zip(a, b, strict=True))


def _single(values: Iterable[int | None]) -> int | None:
    values = set(values)
    return values.pop() if len(values) == 1 else None


def compare_lengths(short: Iterable[RunRecord], long: Iterable[RunRecord],
                    reference: str = "ei_ln") -> list[LengthRow]:
    """Pair the runs of two protocols that differ only in length (same condition, shift size
    and seed or trial) and compare each condition's paired difference from `reference` at the
    two lengths. Conditions of `long` other than the reference, in name order; shift sizes in
    ascending order; configurations missing from either folder (or one of its conditions) are
    left out of that row.

    Raises:
        ValueError: a run pair that shares a key but not its learning rates or width (not the
            same configuration: the folders were drawn with different `--seed`s or settings),
            or a reference missing from `long`.
    """
    def index(runs: Iterable[RunRecord]) -> dict[tuple, RunRecord]:
        return {(r.condition, r.pair_key): r for r in runs}

    short_ix, long_ix = index(short), index(long)
    if not any(cond == reference for cond, _ in long_ix):
        conds = sorted({cond for cond, _ in long_ix})
        raise ValueError(f"the reference {reference!r} has no runs in the longer protocol; "
                         f"it has {', '.join(conds) or 'none'}")
    # (condition, shift size) -> [(condition short, condition long, reference short, long)]
    quads: dict[tuple[str, float | None], list[tuple[RunRecord, ...]]] = {}
    for (cond, key), run in long_ix.items():
        if cond == reference:
            continue
        four = (short_ix.get((cond, key)), run, short_ix.get((reference, key)),
                long_ix.get((reference, key)))
        if any(p is None for p in four):
            continue
        for a, b in ((four[1], four[0]), (four[3], four[2])):
            if not _same(_configuration(a), _configuration(b)):
                raise ValueError(
                    f"{a.path} and {b.path} share condition, shift and seed but not their "
                    "learning rates or width, so they are not one configuration at two "
                    "lengths: compare folders made with the same --seed and settings")
        quads.setdefault((cond, run.shift_size), []).append(four)
    rows = []
    for (cond, size), four in sorted(quads.items(), key=lambda kv: (
            kv[0][0], kv[0][1] is None, kv[0][1] or 0.0)):
        d_short = [c.accuracy - r.accuracy for c, _, r, _ in four]
        d_long = [c.accuracy - r.accuracy for _, c, _, r in four]
        changes = [b - a for a, b in zip(d_short, d_long, strict=True)]
        rows.append(LengthRow(
            cond, reference, size,
            (_single(run_epochs(q[0]) for q in four), _single(run_epochs(q[1]) for q in four)),
            len(four), paired_hodges_lehmann(d_short), paired_hodges_lehmann(d_long),
            (sum(d > 0 for d in d_short), sum(d > 0 for d in d_long)),
            float(statistics.median(changes)), wilcoxon_paired(changes),
            float(statistics.median(r_long.accuracy - r_short.accuracy
                                    for _, _, r_short, r_long in four))))
    return rows


def _estimate(value: tuple[float, float, float] | None) -> str:
    if value is None:
        return "—"
    est, low, high = (100 * v for v in value)
    return f"{est:+.1f} [{low:+.1f}, {high:+.1f}]"


def format_length_table(rows: Sequence[LengthRow]) -> str:
    """Markdown table of `compare_lengths` rows: one line per condition and shift size."""
    if not rows:
        return "_No configuration was trained at both lengths yet._"
    short, long = rows[0].epochs
    name = {None: "?"}
    s, lg = name.get(short, short), name.get(long, long)
    header = ["condition", "r", "configurations",
              f"{s} epochs: shift, points [95 % CI]", f"{lg} epochs: shift, points [95 % CI]",
              f"above the reference ({s} / {lg})", "change, points", "p (change)",
              f"reference's gain {s} → {lg}, points"]
    body = []
    for row in rows:
        body.append([f"`{row.condition}`", "—" if row.shift_size is None else f"{row.shift_size:g}",
                     str(row.n), _estimate(row.short), _estimate(row.long),
                     f"{row.higher[0]} / {row.higher[1]} of {row.n}",
                     "—" if row.change is None else f"{100 * row.change:+.1f}",
                     format_p(row.p),
                     "—" if row.reference_gain is None else f"{100 * row.reference_gain:+.1f}"])
    return _table(header, body, align="l" + "r" * 8)


#: The epochs `format_training_gaps` shows (those the runs reached).
GAP_EPOCHS = (1, 3, 10, 25, 50)


def training_gaps(runs: Sequence[RunRecord], reference: str = "ei_ln",
                  epochs: Sequence[int] = GAP_EPOCHS
                  ) -> dict[tuple[str, float | None], dict[int, tuple[int, float, int]]]:
    """Each condition's training accuracy minus its `reference` pair's (same shift size and
    seed, `ei_keras.analysis.figures.learning_runs`), at each of `epochs` (1-based) that the
    pairs reached: `{(condition, shift size): {epoch: (pairs, median difference in points,
    pairs above the reference)}}`. Runs need their `history.csv` (`load_runs(...,
    history=True)`); pairs with a stopped reference are left out, as in the figure."""
    from .figures import VERSUS_REFERENCE, learning_runs

    diffs: dict[tuple[str, float | None], list[list[float]]] = {}
    for run in learning_runs(runs, reference):
        if VERSUS_REFERENCE in run.history:
            diffs.setdefault((run.condition, run.shift_size), []).append(
                run.history[VERSUS_REFERENCE])
    out = {}
    for key in sorted(diffs, key=lambda k: (k[0], k[1] is None, k[1] or 0.0)):
        row = {}
        for epoch in epochs:
            at = [d[epoch - 1] for d in diffs[key] if len(d) >= epoch]
            if at:
                row[epoch] = (len(at), float(statistics.median(at)), sum(v > 0 for v in at))
        out[key] = row
    return out


def format_training_gaps(runs: Sequence[RunRecord], reference: str = "ei_ln",
                         epochs: Sequence[int] = GAP_EPOCHS) -> str:
    """Markdown table of `training_gaps`: one line per condition and shift size, one column
    per epoch reached, each cell `median difference (pairs above / pairs)`."""
    gaps = training_gaps(runs, reference, epochs)
    shown = [e for e in epochs if any(e in row for row in gaps.values())]
    if not shown:
        return "_No run has a training-accuracy history paired with the reference._"
    body = []
    for (cond, size), row in gaps.items():
        body.append([f"`{cond}`", "—" if size is None else f"{size:g}"] + [
            f"{row[e][1]:+.1f} ({row[e][2]} / {row[e][0]})" if e in row else "—"
            for e in shown])
    return _table(["condition", "r"] + [f"epoch {e}" for e in shown], body,
                  align="lr" + "r" * len(shown))
