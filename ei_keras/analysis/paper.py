"""The paper's reference statistics and a side-by-side verdict for this library's runs.

Eyono et al. (2026) compare each condition's 30 sweep accuracies with LayerNorm's (two-sided
Mann-Whitney U, n = 30 vs 30) at r = 0, 0.25, 0.5 and 0.75. `REFERENCE` holds what the
paper states for every condition (its expected direction and, where the paper gives them, U and
p); `compare_with_paper` puts the library's own test of the same cell beside it with a
verdict: **agrees** when both land in the same class (worse / n.s. / better at p < 0.05),
**differs** otherwise, **no data** when the library has fewer than two runs on a side.

The library's test is the one that fits the finding (`PaperCell.test`): Mann-Whitney U
for a condition against LN, as the paper; for finding 2 (E-only + LN ≈ EI + LN), which the paper
tested pooled over r although accuracy differs by several points between r, the Wilcoxon
signed-rank test within each r over the configurations both conditions ran (paired: same seed,
rates and width). Beside p: the Hodges-Lehmann shift with its 95 % interval (Mann-Whitney) or
the median paired difference (Wilcoxon), and p after Holm's correction across the r the
condition ran (the paper's four in a full protocol).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from .runs import RunRecord
from .stats import (
    ALPHA,
    ComparisonRow,
    PairedRow,
    compare_paired,
    compare_to_reference,
    format_p,
    format_u,
)

#: The paper's luminosities.
PAPER_LUMINOSITIES = (0.0, 0.25, 0.5, 0.75)


@dataclasses.dataclass(frozen=True)
class PaperCell:
    """What the paper reports for one condition at one r against LN.

    Attributes:
        finding: the finding's number and short name (SPEC section 6).
        condition: the preset.
        luminosity: r.
        expected: `"worse"`, `"n.s."` or `"better"`.
        u: the paper's U, when stated.
        p: the paper's p (or its bound, see `p_text`), when stated.
        p_text: how the paper states p (`"≤ 2e-10"`, `"0.28"`, `"≈ 0.002–0.004"`).
        test: the library's test of the cell: `MANN_WHITNEY` (against LN's runs) or
            `PAIRED` (Wilcoxon signed-rank over the shared configurations at this r).
    """

    finding: str
    condition: str
    luminosity: float
    expected: str
    u: float | None = None
    p: float | None = None
    p_text: str = ""
    test: str = "Mann-Whitney"


#: The tests `PaperCell` names.
MANN_WHITNEY = "Mann-Whitney"
PAIRED = "Wilcoxon, paired within r"


def _cells(finding, condition, expected, us=None, ps=None, p_text=None, test=MANN_WHITNEY):
    out = []
    for k, r in enumerate(PAPER_LUMINOSITIES):
        exp = expected[k] if isinstance(expected, tuple) else expected
        p = ps[k] if ps else None
        text = p_text[k] if isinstance(p_text, tuple) else (p_text or
                                                             ("" if p is None else f"{p:g}"))
        out.append(PaperCell(finding, condition, r, exp, us[k] if us else None, p, text, test))
    return out


#: SPEC section 6, cell by cell.
REFERENCE: tuple[PaperCell, ...] = tuple(
    _cells("1 LN above plain EI (more so as r grows)", "ei", "worse")
    + _cells("2 E-only + LN ≈ EI + LN", "e_ln", "n.s.", p_text="0.76 (pooled over r)",
             test=PAIRED)
    + _cells("4 I-Norm without GradNorm below LN", "inorm", "worse")
    + _cells("5/6 I-Norm + GradNorm (full) ≈ LN, then slightly better", "inorm_gradnorm",
             ("n.s.", "better", "better", "better"),
             p_text=("n.s.", "≈ 0.002–0.004", "≈ 0.002–0.004", "≈ 0.002–0.004"))
    + _cells("6 error scaling only", "inorm_scale", "worse", us=(19, 15, 0, 0),
             p_text="≤ 2e-10")
    + _cells("6 error decorrelation only", "inorm_decorrelate", "worse",
             us=(58.5, 46, 19.5, 1), p_text="≤ 7e-9")
    + _cells("6 error centering only", "inorm_center", "n.s.", ps=(0.28, 0.74, 0.55, 0.73))
    + _cells("7 lateral inhibition of the error", "inorm_lateral", "n.s.",
             ps=(0.46, 0.91, 0.72, 0.61))
)


@dataclasses.dataclass(frozen=True)
class PaperComparison:
    """A paper cell beside the library's test of the same condition and r.

    Attributes:
        paper: the paper's cell.
        library: the library's row for the cell's test (a
            `ei_keras.analysis.stats.ComparisonRow` or, for a paired cell, a
            `ei_keras.analysis.stats.PairedRow`), or None when it has no runs of it.
        observed: the library's class (`"worse"`, `"n.s."`, `"better"`) or None.
        verdict: `"agrees"`, `"differs"` or `"no data"`.
        p_holm: the library's p after Holm's correction across the r the condition ran.
    """

    paper: PaperCell
    library: ComparisonRow | PairedRow | None
    observed: str | None
    verdict: str
    p_holm: float | None = None


def _class(row: ComparisonRow | PairedRow | None) -> str | None:
    if row is None or row.p is None:
        return None
    if row.p >= ALPHA:
        return "n.s."
    return row.direction if row.direction in ("worse", "better") else "n.s."


def _paired_with_holm(rows: list[PairedRow]) -> dict[tuple, tuple[PairedRow, float | None]]:
    from .stats import holm

    out = {}
    for cond in dict.fromkeys(row.condition for row in rows):
        mine = [row for row in rows if row.condition == cond]
        for row, adjusted in zip(mine, holm([row.p for row in mine]), strict=True):
            out[(row.condition, row.shift_size)] = (row, adjusted)
    return out


def compare_with_paper(runs: Iterable[RunRecord], reference: str = "ei_ln",
                       cells: Sequence[PaperCell] = REFERENCE) -> list[PaperComparison]:
    """The library's test (`PaperCell.test`) of every paper cell it has runs for, with a
    verdict. Only luminosity-shift runs are compared: the paper's cells are luminosity
    ranges."""
    luminosity_runs = [run for run in runs if run.shift == "luminosity"]
    rows = {(row.condition, row.shift_size): row
            for row in compare_to_reference(luminosity_runs, reference=reference)}
    paired_conditions = sorted({c.condition for c in cells if c.test == PAIRED})
    paired = _paired_with_holm(compare_paired(luminosity_runs, reference=reference,
                                              conditions=paired_conditions)
                               if paired_conditions else [])
    out = []
    for cell in cells:
        if cell.test == PAIRED:
            row = paired.get((cell.condition, cell.luminosity), (None, None))[0]
            row = row if row is not None and row.n_pairs else None
        else:
            row = rows.get((cell.condition, cell.luminosity))
        observed = _class(row)
        verdict = "no data" if observed is None else (
            "agrees" if observed == cell.expected else "differs")
        holm_p = (paired.get((cell.condition, cell.luminosity), (None, None))[1]
                  if cell.test == PAIRED else getattr(row, "p_holm", None))
        out.append(PaperComparison(cell, row, observed, verdict, holm_p))
    return out


def _effect(row: ComparisonRow | PairedRow | None) -> str:
    """The effect in points: the Hodges-Lehmann shift and its 95 % interval, or the median
    paired difference."""
    if isinstance(row, PairedRow):
        d = row.median_difference
        return "—" if d is None else f"{100 * d:+.1f} (median pair)"
    if row is None or row.shift_estimate is None:
        return "—"
    return (f"{100 * row.shift_estimate:+.1f} [{100 * row.shift_low:+.1f}, "
            f"{100 * row.shift_high:+.1f}]")


def format_paper_table(comparisons: Sequence[PaperComparison], only_with_data: bool = True
                       ) -> str:
    """Markdown table: finding, condition, r, the paper's U / p / class, the library's test,
    n, U, p, Holm-corrected p, effect (points), class and the verdict."""
    header = ["finding", "condition", "r", "paper U", "paper p", "paper", "test here",
              "n / n_LN", "U", "p", "p Holm (r)", "shift, points [95 % CI]", "here",
              "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in comparisons:
        if only_with_data and c.library is None:
            continue
        row = c.library
        paper_u = "—" if c.paper.u is None else f"{c.paper.u:g}"
        if row is None:
            n = u = "—"
        elif isinstance(row, PairedRow):
            n, u = f"{row.n_pairs} pairs", "—"
        else:
            n, u = f"{row.n} / {row.n_ref}", format_u(row.u)
        p = "—" if row is None else format_p(row.p)
        lines.append("| " + " | ".join([
            c.paper.finding, f"`{c.paper.condition}`", f"{c.paper.luminosity:g}", paper_u,
            c.paper.p_text or "—", c.paper.expected, c.paper.test, n, u, p,
            format_p(c.p_holm), _effect(row), c.observed or "—",
            f"**{c.verdict}**" if c.verdict == "differs" else c.verdict]) + " |")
    return "\n".join(lines)


def verdict_counts(comparisons: Sequence[PaperComparison]) -> dict[str, int]:
    """How many cells agree, differ, or have no data."""
    out = {"agrees": 0, "differs": 0, "no data": 0}
    for c in comparisons:
        out[c.verdict] += 1
    return out
