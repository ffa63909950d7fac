"""Statistics over runs: per-cell accuracy summaries and Mann-Whitney U tests against a
reference condition (the paper compares every condition's sweep accuracies with LayerNorm's).

All accuracies here are fractions (0.81, not 81 %) and are the runs' *effective* accuracies
(`ei_keras.analysis.runs.RunRecord.accuracy`): a diverged run counts at chance, 0.10.

The test is `scipy.stats.mannwhitneyu(x, ref, alternative="two-sided")` with scipy's default
method (exact for small samples without ties, otherwise the normal approximation with
continuity correction, which is what reproduces the paper's `U 19, p 2e-10` for 30 vs 30).
`U` is the statistic of the condition's sample, as scipy returns it for its first argument:
the number of (condition, reference) pairs in which the condition is higher (ties count ½).
So `U = 0` means every condition run is below every reference run, and `U = n·n_ref` the
opposite. scipy is imported lazily, on the first test.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ei_keras.config import SHIFT_FAMILIES

from .runs import CHANCE_ACCURACY, RunRecord, group_runs, pair_runs

__all__ = [
    "AccuracySummary",
    "ComparisonRow",
    "NO_TEST",
    "accuracy_table",
    "compare_to_reference",
    "format_p",
    "hodges_lehmann",
    "holm",
    "paired_hodges_lehmann",
    "format_u",
    "mann_whitney",
    "stars",
    "summarize_accuracies",
]

#: Marker used for stars/direction when a cell cannot be tested (n < 2 on either side).
NO_TEST = "—"

#: Significance level used to call a direction "better"/"worse".
ALPHA = 0.05


def stars(p: float | None) -> str:
    """Significance stars for a p-value.

    Args:
        p: A p-value, or None when no test was run.

    Returns:
        `"***"` for p < 0.001, `"**"` for p < 0.01, `"*"` for p < 0.05, `"n.s."`
        otherwise, and `"—"` for None or NaN.
    """
    if p is None or not math.isfinite(p):
        return NO_TEST
    if p < 0.001:
        return "***"
    if p < 0.01:
        return "**"
    if p < 0.05:
        return "*"
    return "n.s."


def format_p(p: float | None) -> str:
    """Format a p-value compactly: `0.76` at or above 0.1, three significant digits between
    0.01 and 0.1 (`0.0497`, so that values near 0.05 stay distinguishable), `2.1e-10` below.

    Args:
        p: A p-value or None.

    Returns:
        The formatted value; `"—"` for None or NaN.
    """
    if p is None or not math.isfinite(p):
        return NO_TEST
    if p >= 0.1:
        return f"{p:.2f}"
    if p >= 0.01:
        return f"{p:.3g}"
    if p == 0.0:
        return "0"
    mantissa, exponent = f"{p:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def format_u(u: float | None) -> str:
    """Format a U statistic: an integer when whole (`19`), else one decimal (`58.5`).

    Args:
        u: The statistic or None.

    Returns:
        The formatted value; `"—"` for None or NaN.
    """
    if u is None or not math.isfinite(u):
        return NO_TEST
    if float(u).is_integer():
        return str(int(u))
    return f"{u:.1f}"


@dataclass(frozen=True)
class AccuracySummary:
    """Summary of one cell's (condition × shift size) effective accuracies, as fractions.

    Attributes:
        n: Number of runs.
        n_diverged: How many of them diverged (counted at chance accuracy).
        mean: Mean accuracy (NaN when n = 0).
        std: Sample standard deviation (ddof = 1); None when n < 2.
        median: Median accuracy (NaN when n = 0).
        min: Lowest accuracy (NaN when n = 0).
        max: Highest accuracy (NaN when n = 0).
        values: The accuracies, in the runs' deterministic order.
    """

    n: int
    n_diverged: int
    mean: float
    std: float | None
    median: float
    min: float
    max: float
    values: tuple[float, ...]


def summarize_accuracies(values: Iterable[float], n_diverged: int = 0) -> AccuracySummary:
    """Summarize a sample of accuracies.

    Args:
        values: Accuracies (fractions).
        n_diverged: How many of them come from diverged runs.

    Returns:
        The summary.
    """
    vals = tuple(float(v) for v in values)
    n = len(vals)
    if n == 0:
        nan = math.nan
        return AccuracySummary(0, n_diverged, nan, None, nan, nan, nan, vals)
    return AccuracySummary(
        n=n,
        n_diverged=n_diverged,
        mean=statistics.fmean(vals),
        std=statistics.stdev(vals) if n >= 2 else None,
        median=statistics.median(vals),
        min=min(vals),
        max=max(vals),
        values=vals,
    )


def _summary_of(runs: Sequence[RunRecord]) -> AccuracySummary:
    """Summary of the effective accuracies of `runs`."""
    return summarize_accuracies((r.accuracy for r in runs), sum(r.diverged for r in runs))


def accuracy_table(
    runs: Iterable[RunRecord],
) -> dict[str, dict[float | None, AccuracySummary]]:
    """Accuracy summaries per condition and shift size (`RunRecord.shift_size`).

    Args:
        runs: The runs (diverged ones count at chance accuracy).

    Returns:
        `{condition: {shift size: AccuracySummary}}`, conditions sorted by name and
        sizes ascending (None last).
    """
    return {
        cond: {r: _summary_of(cell) for r, cell in by_r.items()}
        for cond, by_r in group_runs(list(runs)).items()
    }


def mann_whitney(x: Sequence[float], ref: Sequence[float]) -> tuple[float, float] | None:
    """Two-sided Mann-Whitney U test of `x` against `ref`.

    Args:
        x: The condition's sample.
        ref: The reference sample.

    Returns:
        `(U, p)` with U the statistic for `x` as scipy returns it, or None when either
        sample has fewer than two values. A NaN p (degenerate input) is returned as 1.0.
    """
    if len(x) < 2 or len(ref) < 2:
        return None
    from scipy.stats import mannwhitneyu  # lazy: keeps `import ei_keras.analysis` fast

    res = mannwhitneyu(list(x), list(ref), alternative="two-sided")
    u, p = float(res.statistic), float(res.pvalue)
    if not math.isfinite(p):
        p = 1.0
    return u, p


@dataclass(frozen=True)
class ComparisonRow:
    """One Mann-Whitney comparison of a condition against the reference at one shift size.

    Accuracies are fractions. `u`/`p` are None (and `stars`/`direction` `"—"`) when
    `n < 2` or `n_ref < 2`.

    Attributes:
        condition: The condition tested.
        reference: The reference condition.
        shift_size: The size of the data's shift, `r` or `s` (None when the runs do not
            say).
        n: Number of condition runs in the cell.
        n_ref: Number of reference runs at this size.
        n_diverged: Diverged condition runs (counted at chance accuracy).
        n_ref_diverged: Diverged reference runs.
        median: Median condition accuracy (NaN when n = 0).
        mean: Mean condition accuracy (NaN when n = 0).
        std: Sample std of condition accuracy (None when n < 2).
        ref_median: Median reference accuracy (None when n_ref = 0).
        ref_mean: Mean reference accuracy (None when n_ref = 0).
        u: The U statistic of the condition's sample.
        p: The two-sided p-value.
        stars: Significance stars (see `stars`).
        direction: `"better"`/`"worse"` when p < 0.05 (by whether U is above or below
            `n·n_ref/2`), `"≈"` when not significant, `"—"` when untested.
        effect_size: `U / (n·n_ref)`, the probability that a condition run beats a reference
            run (0.5 = no difference); None when untested.
        shift: The shift family of the cell's runs (`"mixed"` when they differ).
        shift_estimate: The Hodges-Lehmann shift of the condition against the reference
            (median of all condition − reference differences, a fraction; see
            `hodges_lehmann`); None when untested.
        shift_low, shift_high: Its 95 % confidence interval (None when untested).
        p_holm: `p` after Holm's correction across the shift sizes of the condition
            (`holm`: the paper's four r in a full protocol); None when untested.
    """

    condition: str
    reference: str
    shift_size: float | None
    n: int
    n_ref: int
    n_diverged: int
    n_ref_diverged: int
    median: float
    mean: float
    std: float | None
    ref_median: float | None
    ref_mean: float | None
    u: float | None
    p: float | None
    stars: str
    direction: str
    effect_size: float | None
    shift: str = "luminosity"
    shift_estimate: float | None = None
    shift_low: float | None = None
    shift_high: float | None = None
    p_holm: float | None = None

    @property
    def luminosity(self) -> float | None:
        """The luminosity range `r` of a luminosity-shift row (None for another family)."""
        return self.shift_size if self.shift == "luminosity" else None


#: Confidence level of the Hodges-Lehmann intervals.
CONFIDENCE = 0.95
#: Above this many condition × reference pairs the interval uses the normal approximation of
#: U's null distribution instead of the exact one (which costs O(n · n·n_ref) integer sums).
_EXACT_PAIRS = 10_000


def _u_null_cdf(n: int, m: int) -> list[float]:
    """`P(U <= u)` for u = 0 … n·m under the null hypothesis, samples of n and m values
    without ties: the exact distribution, from its generating function
    `prod_{i=1..n} (1 - q^(m+i)) / (1 - q^i)` (Mann & Whitney 1947), in exact integers."""
    size = n * m + 1
    counts = [0] * size
    counts[0] = 1
    for i in range(1, n + 1):
        step = m + i
        for u in range(size - 1, step - 1, -1):  # times (1 - q^(m+i))
            counts[u] -= counts[u - step]
        for u in range(i, size):  # divided by (1 - q^i)
            counts[u] += counts[u - i]
    total = sum(counts)
    out, running = [], 0
    for c in counts:
        running += c
        out.append(running / total)
    return out


def _u_critical(n: int, m: int, confidence: float) -> int:
    """The largest C >= 1 with `P(U <= C - 1) <= (1 - confidence) / 2` (at least 1): the
    rank of the lower end of the Hodges-Lehmann interval among the sorted differences."""
    alpha = (1.0 - confidence) / 2.0
    if n * m > _EXACT_PAIRS:
        from scipy.stats import norm

        mean, sd = n * m / 2.0, math.sqrt(n * m * (n + m + 1) / 12.0)
        return max(1, int(math.floor(mean + norm.ppf(alpha) * sd + 0.5)))
    cdf = _u_null_cdf(n, m)
    c = 1
    while c < len(cdf) and cdf[c] <= alpha:  # cdf[c] = P(U <= c); next C = c + 1
        c += 1
    return c


def hodges_lehmann(x: Sequence[float], ref: Sequence[float], confidence: float = CONFIDENCE
                   ) -> tuple[float, float, float] | None:
    """The Hodges-Lehmann shift of `x` against `ref` with its confidence interval.

    The shift is the median of the n·m differences `x_i - ref_j`; the interval is the
    distribution-free one that inverts the Mann-Whitney test (Lehmann, *Nonparametrics*,
    1975, §2.6; as R's `wilcox.test(conf.int=TRUE)`): with the differences sorted,
    `[D_(C), D_(nm+1-C)]`, C from U's exact null distribution (normal approximation above
    10 000 pairs). Its coverage is at least `confidence` for continuous data; runs scored at
    chance tie with each other, which makes it approximate.

    Returns:
        `(shift, low, high)` in the units of the data, or None below two values on a side.
    """
    if len(x) < 2 or len(ref) < 2:
        return None
    import numpy as np

    diffs = np.sort(np.subtract.outer(np.asarray(x, float), np.asarray(ref, float)).ravel())
    c = _u_critical(len(x), len(ref), confidence)
    c = min(c, (diffs.size + 1) // 2)
    return float(np.median(diffs)), float(diffs[c - 1]), float(diffs[diffs.size - c])


def _signed_rank_critical(n: int, confidence: float) -> int:
    """The largest C >= 1 with `P(T+ <= C - 1) <= (1 - confidence) / 2` under the null
    hypothesis, `T+` the Wilcoxon signed-rank statistic of n differences without ties or zeros
    (exact: the number of subsets of {1..n} with each rank sum, in integers)."""
    alpha = (1.0 - confidence) / 2.0
    total = n * (n + 1) // 2
    counts = [1] + [0] * total
    for rank in range(1, n + 1):
        for t in range(total, rank - 1, -1):
            counts[t] += counts[t - rank]
    c, running = 1, counts[0]
    while c <= total and running / 2**n <= alpha:  # running = #{T+ <= c - 1}
        running += counts[c]
        c += 1
    return max(1, c - 1)


def paired_hodges_lehmann(differences: Sequence[float], confidence: float = CONFIDENCE
                          ) -> tuple[float, float, float] | None:
    """The Hodges-Lehmann estimate of the median paired difference with its confidence
    interval: the one-sample version, which inverts the Wilcoxon signed-rank test (Lehmann,
    *Nonparametrics*, 1975, §4.3; R's `wilcox.test(d, conf.int=TRUE)`). The estimate is the
    median of the n(n+1)/2 Walsh averages `(d_i + d_j) / 2`, `i <= j`; with them sorted the
    interval is `[W_(C), W_(M+1-C)]`, C from the exact null distribution of the signed-rank
    statistic. Below 6 pairs no interval reaches 95 %: the bounds are then the extreme Walsh
    averages.

    Returns:
        `(estimate, low, high)` in the units of the data, or None below two differences.
    """
    if len(differences) < 2:
        return None
    import numpy as np

    d = np.asarray(differences, float)
    i, j = np.triu_indices(d.size)
    walsh = np.sort((d[i] + d[j]) / 2.0)
    c = min(_signed_rank_critical(d.size, confidence), (walsh.size + 1) // 2)
    return float(np.median(walsh)), float(walsh[c - 1]), float(walsh[walsh.size - c])


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None entries stay None and are not
    counted): sorted ascending, `p_(i)` becomes `max_{j <= i} min(1, (k - j + 1) p_(j))`
    over the k tested values (Holm 1979). Controls the family-wise error rate; scipy offers
    only Benjamini-Hochberg-type control (`scipy.stats.false_discovery_control`)."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    out: list[float | None] = [None] * len(pvalues)
    k, running = len(tested), 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (k - rank) * p))
        out[i] = running
    return out


def _lum_key(r: float | None) -> tuple[bool, float]:
    """Sort key for shift sizes, None last."""
    return (r is None, r if r is not None else 0.0)


def shift_of(runs: Iterable[RunRecord]) -> str:
    """The shift family of `runs`: their one `shift`, `"mixed"` when they differ
    (`"luminosity"` for no runs)."""
    families = {run.shift for run in runs}
    return families.pop() if len(families) == 1 else ("mixed" if families else "luminosity")


def chance_text(runs: Iterable[RunRecord]) -> str:
    """The accuracy diverged runs count at, as text: `"10 %"`, or `"10 % / 5 %"` when the
    runs tell apart different numbers of labels."""
    values = sorted({run.chance for run in runs}, reverse=True) or [CHANCE_ACCURACY]
    return " / ".join(f"{100 * v:g} %" for v in values)


def shift_axis(shift: str) -> str:
    """How tables and figures name the size axis of a shift family (`shift_of`): `r`
    for luminosity, `contrast s`, ...; `shift size` for mixed or unknown families."""
    family = SHIFT_FAMILIES.get(shift)
    return family.axis if family is not None else "shift size"


def compare_to_reference(
    runs: Iterable[RunRecord],
    reference: str = "ei_ln",
    conditions: Sequence[str] | None = None,
) -> list[ComparisonRow]:
    """Mann-Whitney U test of each condition against the reference, per shift size.

    Args:
        runs: All runs (the reference's among them).
        reference: The reference condition (the paper's is LayerNorm, `"ei_ln"`).
        conditions: Conditions to test, in this order; by default every condition but the
            reference, sorted by name. A condition without runs gives no rows.

    Returns:
        One row per (condition, shift size at which the condition has runs), in the order of
        `conditions` then ascending size.
    """
    grouped = group_runs(list(runs))
    ref_cells = grouped.get(reference, {})
    if conditions is None:
        conditions = [c for c in grouped if c != reference]
    rows: list[ComparisonRow] = []
    for cond in conditions:
        for lum, cell in sorted(grouped.get(cond, {}).items(), key=lambda kv: _lum_key(kv[0])):
            ref_cell = ref_cells.get(lum, [])
            s = _summary_of(cell)
            sr = _summary_of(ref_cell)
            test = mann_whitney(s.values, sr.values)
            hl = hodges_lehmann(s.values, sr.values)
            if test is None:
                u = p = effect = None
                direction = NO_TEST
            else:
                u, p = test
                half = s.n * sr.n / 2.0
                effect = u / (s.n * sr.n)
                if p < ALPHA and u != half:
                    direction = "better" if u > half else "worse"
                else:
                    direction = "≈"
            rows.append(
                ComparisonRow(
                    condition=cond,
                    reference=reference,
                    shift_size=lum,
                    n=s.n,
                    n_ref=sr.n,
                    n_diverged=s.n_diverged,
                    n_ref_diverged=sr.n_diverged,
                    median=s.median,
                    mean=s.mean,
                    std=s.std,
                    ref_median=sr.median if sr.n else None,
                    ref_mean=sr.mean if sr.n else None,
                    u=u,
                    p=p,
                    stars=stars(p),
                    direction=direction,
                    effect_size=effect,
                    shift=shift_of([*cell, *ref_cell]),
                    shift_estimate=None if hl is None else hl[0],
                    shift_low=None if hl is None else hl[1],
                    shift_high=None if hl is None else hl[2],
                )
            )
    return _with_holm(rows)


def _with_holm(rows: list[ComparisonRow]) -> list[ComparisonRow]:
    """The rows with `p_holm`: Holm's correction across each condition's shift sizes."""
    from dataclasses import replace

    out = list(rows)
    for cond in dict.fromkeys(row.condition for row in rows):
        index = [i for i, row in enumerate(rows) if row.condition == cond]
        for i, adjusted in zip(index, holm([rows[i].p for i in index]), strict=True):
            out[i] = replace(rows[i], p_holm=adjusted)
    return out


@dataclass(frozen=True)
class PairedRow:
    """A condition against the reference over the configurations they share (same r and seed
    or trial): the paired view of `ComparisonRow`.

    Attributes:
        condition, reference, shift_size, shift: as in `ComparisonRow`.
        n_pairs: configurations run under both.
        median_difference: median of (condition − reference) effective accuracy, as a fraction.
        lower, higher: pairs in which the condition is below / above the reference.
        p: two-sided Wilcoxon signed-rank p (`scipy.stats.wilcoxon`), None below 2 pairs.
        stars, direction: as in `ComparisonRow`.
    """

    condition: str
    reference: str
    shift_size: float | None
    n_pairs: int
    median_difference: float | None
    lower: int
    higher: int
    p: float | None
    stars: str
    direction: str
    shift: str = "luminosity"

    @property
    def luminosity(self) -> float | None:
        """The luminosity range `r` of a luminosity-shift row (None for another family)."""
        return self.shift_size if self.shift == "luminosity" else None


def wilcoxon_paired(differences: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p of paired differences; None below 2 pairs; 1.0 when
    every difference is 0 (no evidence of a difference)."""
    if len(differences) < 2:
        return None
    if not any(differences):
        return 1.0
    from scipy.stats import wilcoxon

    p = float(wilcoxon(list(differences), alternative="two-sided").pvalue)
    return p if math.isfinite(p) else 1.0


def compare_paired(
    runs: Iterable[RunRecord],
    reference: str = "ei_ln",
    conditions: Sequence[str] | None = None,
) -> list[PairedRow]:
    """Wilcoxon signed-rank test of each condition against the reference over the shared
    configurations (paired by shift, size and seed or trial id), per size. Pairing removes the
    spread that shared seeds, data streams and (within a family) learning rates cause, so it
    separates conditions with fewer runs than an unpaired test."""
    runs = list(runs)
    grouped = group_runs(runs)
    if conditions is None:
        conditions = [c for c in grouped if c != reference]
    rows = []
    for cond in conditions:
        pairs = pair_runs(runs, cond, reference)
        by_lum: dict[float | None, list[float]] = {}
        shifts: dict[float | None, set[str]] = {}
        for run, ref in pairs:
            by_lum.setdefault(run.shift_size, []).append(run.accuracy - ref.accuracy)
            shifts.setdefault(run.shift_size, set()).add(run.shift)
        for lum, diffs in sorted(by_lum.items(), key=lambda kv: _lum_key(kv[0])):
            p = wilcoxon_paired(diffs)
            lower, higher = sum(d < 0 for d in diffs), sum(d > 0 for d in diffs)
            median = float(statistics.median(diffs))
            if p is None:
                direction = NO_TEST
            elif p < ALPHA and lower != higher:
                direction = "better" if median > 0 else "worse"
            else:
                direction = "≈"
            family = shifts[lum].pop() if len(shifts[lum]) == 1 else "mixed"
            rows.append(PairedRow(cond, reference, lum, len(diffs), median, lower, higher, p,
                                  stars(p), direction, family))
    return rows
