"""A Markdown report (plus PNG figures) of every run under a results root.

`write_report(root)` writes `report.md` with:

1. a run inventory: runs per condition × shift size, statuses, backends, and how many
   incomplete (no `metrics.json`) or corrupt runs were skipped;
2. an accuracy table condition × shift size: mean ± std (%), n and the number of diverged runs
   (diverged runs count at chance accuracy, 10 %);
3. a Mann-Whitney U table against the reference condition per condition × shift size (U, p,
   stars, direction), and one compact line per condition in the paper's style
   (`scale vs ei_ln — U 19/15/0/0, p 2.0e-10/…`);
4. the figures (accuracy by shift size, moments, alignment, scatter against the reference),
   written next to the report as PNG and PDF; the captions say how many diverged runs the
   per-epoch curves leave out.

The shift size is the luminosity range `r` of the paper's luminosity shift, or the contrast
range `s` of a contrast shift: tables and figures name it as the runs' family does
(`r = 0.75`, `contrast s = 4`).

Every file is written atomically: the whole report is rendered in memory first, each file
goes to a temporary name in the output folder and is moved into place with `os.replace`.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ei_keras.config import SHIFT_FAMILIES
from ei_keras.run_directory import read_plan, write_text_atomic
from ei_keras.scoring import MAX_ABS_WEIGHT, MAX_LOSS

from .figures import (
    _curve_runs,
    plot_accuracy_by_shift,
    plot_alignment,
    plot_learning_curves,
    plot_moments,
    plot_scatter_vs_reference,
    plot_weight_histograms,
)
from .paper import compare_with_paper, format_paper_table, verdict_counts
from .runs import RunRecord, RunScan, scan_runs
from .stats import (
    NO_TEST,
    ComparisonRow,
    PairedRow,
    accuracy_table,
    chance_text,
    compare_paired,
    compare_to_reference,
    format_p,
    format_u,
    shift_axis,
    shift_of,
)

__all__ = [
    "REPORT_NAME",
    "compact_lines",
    "format_accuracy_table",
    "format_comparison_table",
    "format_inventory",
    "format_run_times",
    "format_scoring",
    "format_spectrum_table",
    "format_stability_table",
    "format_stability_by_rate",
    "headline_lines",
    "summarize",
    "write_report",
]

REPORT_NAME = "report.md"


# ----------------------------------------------------------------------------- formatting


def _fmt_r(r: float | None) -> str:
    """Shift-size label: `0.25` or `?`."""
    return "?" if r is None else f"{r:g}"


def _rows_axis(rows: Sequence[ComparisonRow | PairedRow]) -> str:
    """The size axis' name (`r`, `contrast s`) of comparison rows."""
    families = {row.shift for row in rows}
    return shift_axis(families.pop() if len(families) == 1 else "mixed")


def _pct(x: float | None, digits: int = 1) -> str:
    """A fraction as a percentage string, `—` for None/NaN."""
    if x is None or not math.isfinite(x):
        return NO_TEST
    return f"{100.0 * x:.{digits}f}"


def _md(text: str) -> str:
    """Escape a table cell for Markdown."""
    return text.replace("|", "\\|")


def _label(name: str, labels: Mapping[str, str] | None) -> str:
    """Display name of a condition."""
    return labels.get(name, name) if labels else name


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A Markdown pipe table; `align` gives one of `l`/`r` per column (default l)."""
    marks = [("---:" if a == "r" else ":---") for a in align.ljust(len(header), "l")]
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _lum_sorted(values: Sequence[float | None] | set[float | None]) -> list[float | None]:
    """Shift sizes ascending, None last."""
    return sorted(values, key=lambda r: (r is None, r if r is not None else 0.0))


def format_paired_table(rows: Sequence[PairedRow], labels: Mapping[str, str] | None = None
                        ) -> str:
    """Markdown table of `ei_keras.analysis.stats.compare_paired` rows."""
    body = []
    for row in rows:
        diff = "—" if row.median_difference is None else f"{100 * row.median_difference:+.1f}"
        body.append([_label(row.condition, labels), _fmt_r(row.shift_size), str(row.n_pairs),
                     diff, f"{row.lower} / {row.higher}", format_p(row.p), row.stars,
                     row.direction])
    header = ["condition", _rows_axis(rows), "pairs", "median diff", "lower / higher", "p", "",
              "direction"]
    return _table(header, body, align="lrrrrrll")


def format_comparison_table(
    rows: Sequence[ComparisonRow], labels: Mapping[str, str] | None = None
) -> str:
    """Markdown table of Mann-Whitney comparisons (one line per condition × shift size).

    Args:
        rows: Output of `ei_keras.analysis.stats.compare_to_reference`.
        labels: Optional display names for conditions.

    Returns:
        The table (no trailing newline); an italic note when `rows` is empty.
    """
    if not rows:
        return "_No comparisons (no runs besides the reference)._"
    header = [
        "condition", "vs", _rows_axis(rows), "n", "n ref", "diverged", "median %", "ref median %",
        "U", "p", "stars", "direction", "p Holm", "shift, points [95 % CI]",
    ]
    body = [
        [
            _label(row.condition, labels),
            _label(row.reference, labels),
            _fmt_r(row.shift_size),
            str(row.n),
            str(row.n_ref),
            f"{row.n_diverged}/{row.n_ref_diverged}",
            _pct(row.median),
            _pct(row.ref_median),
            format_u(row.u),
            format_p(row.p),
            row.stars,
            row.direction,
            format_p(row.p_holm),
            format_shift(row),
        ]
        for row in rows
    ]
    return _table(header, body, align="lllrrrrrrrllrr")


def format_shift(row: ComparisonRow) -> str:
    """The Hodges-Lehmann shift of a row and its 95 % interval, in points:
    `-2.4 [-3.8, -1.4]`; `—` when untested."""
    if row.shift_estimate is None:
        return NO_TEST
    return (f"{100 * row.shift_estimate:+.1f} [{100 * row.shift_low:+.1f}, "
            f"{100 * row.shift_high:+.1f}]")


def compact_lines(
    rows: Sequence[ComparisonRow], labels: Mapping[str, str] | None = None
) -> list[str]:
    """One paper-style line per condition, shift size ascending.

    Example: `scale vs ei_ln — U 19/15/0/0, p 2.0e-10/6.9e-11/3.0e-11/3.0e-11
    (r = 0/0.25/0.5/0.75; ***/***/***/***; worse/worse/worse/worse)`.

    Args:
        rows: Comparison rows.
        labels: Optional display names for conditions.

    Returns:
        The lines, in the conditions' order of first appearance in `rows`.
    """
    by_cond: dict[str, list[ComparisonRow]] = {}
    for row in rows:
        by_cond.setdefault(row.condition, []).append(row)
    lines = []
    for cond, crow in by_cond.items():
        crow = sorted(crow, key=lambda r: (r.shift_size is None, r.shift_size or 0.0))
        ref = _label(crow[0].reference, labels)
        us = "/".join(format_u(r.u) for r in crow)
        ps = "/".join(format_p(r.p) for r in crow)
        rs = "/".join(_fmt_r(r.shift_size) for r in crow)
        st = "/".join(r.stars for r in crow)
        dirs = "/".join(r.direction for r in crow)
        lines.append(f"{_label(cond, labels)} vs {ref} — U {us}, p {ps} "
                     f"({_rows_axis(crow)} = {rs}; {st}; {dirs})")
    return lines


def summarize(rows: Sequence[ComparisonRow], labels: Mapping[str, str] | None = None) -> str:
    """Plain-text (terminal) summary of comparisons: an aligned table then the compact lines.

    Args:
        rows: Comparison rows.
        labels: Optional display names for conditions.

    Returns:
        The text (ends with a newline); a one-line note when `rows` is empty.
    """
    if not rows:
        return "no comparisons (no runs besides the reference)\n"
    header = ["condition", _rows_axis(rows), "n", "n_ref", "div", "median%", "ref%", "U", "p", "",
              "dir"]
    body = [
        [
            _label(r.condition, labels),
            _fmt_r(r.shift_size),
            str(r.n),
            str(r.n_ref),
            f"{r.n_diverged}/{r.n_ref_diverged}",
            _pct(r.median),
            _pct(r.ref_median),
            format_u(r.u),
            format_p(r.p),
            r.stars,
            r.direction,
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    left = {0, 9, 10}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [f"Mann-Whitney U (two-sided) vs {_label(rows[0].reference, labels)}", line(header)]
    out += [line(b) for b in body]
    out += [""] + compact_lines(rows, labels)
    return "\n".join(out) + "\n"


def headline_lines(runs: Sequence[RunRecord], reference: str = "ei_ln",
                   labels: Mapping[str, str] | None = None) -> list[str]:
    """One sentence per condition and shift size against the reference, from both tests: the
    paired view over shared configurations and the unpaired Mann-Whitney test (the terminal's
    and the demo's conclusions)."""
    unpaired = {(r.condition, r.shift_size): r for r in compare_to_reference(runs, reference)}
    out = []
    for row in compare_paired(runs, reference):
        mw = unpaired.get((row.condition, row.shift_size))
        if not row.n_pairs:
            continue
        diff = "" if row.median_difference is None else \
            f", median {100 * row.median_difference:+.1f} points"
        mw_text = "" if mw is None or mw.p is None else \
            f"; Mann-Whitney U {format_u(mw.u)}, p {format_p(mw.p)} {mw.stars}"
        diverged = "" if mw is None or not mw.n_diverged else f" ({mw.n_diverged} diverged)"
        out.append(
            f"{_label(row.condition, labels)} vs {_label(reference, labels)} at "
            f"{shift_axis(row.shift)} = {_fmt_r(row.shift_size)}: lower in {row.lower} and "
            f"higher in {row.higher} of {row.n_pairs} shared configurations{diff}{diverged}; "
            f"Wilcoxon p {format_p(row.p)} {row.stars}{mw_text} -> {row.direction}")
    return out


def format_inventory(
    scan: RunScan, labels: Mapping[str, str] | None = None, reference: str | None = None
) -> str:
    """Markdown inventory of a scan: runs per condition × shift size, statuses, skipped runs.

    Args:
        scan: Output of `ei_keras.analysis.runs.scan_runs`.
        labels: Optional display names for conditions.
        reference: Listed first when present.

    Returns:
        Markdown text (no trailing newline).
    """
    runs = scan.runs
    parts: list[str] = []
    n_div = sum(r.diverged for r in runs)
    parts.append(
        f"{len(runs)} runs loaded ({n_div} diverged); "
        f"{len(scan.incomplete)} incomplete runs skipped; "
        f"{len(scan.corrupt)} corrupt runs skipped."
        + (f" {len(scan.superseded)} sweep trials superseded by a longer trial of the same "
           "configuration (Hyperband's continuations: one sample per configuration, the "
           "longest)." if scan.superseded else "")
    )
    if runs:
        families = sorted({r.shift for r in runs})
        if len(families) > 1:
            parts.append(f"**Warning:** these runs mix shift families ({', '.join(families)}): "
                         "runs of one size are grouped together whatever their family. Report "
                         "each recipe's results folder on its own.")
        lums = _lum_sorted({r.shift_size for r in runs})
        conds = sorted({r.condition for r in runs}, key=lambda c: (c != reference, c))
        counts = Counter((r.condition, r.shift_size) for r in runs)
        divs = Counter((r.condition, r.shift_size) for r in runs if r.diverged)
        body = []
        for c in conds:
            cells = []
            for lum in lums:
                n, d = counts[(c, lum)], divs[(c, lum)]
                cells.append(NO_TEST if n == 0 else (f"{n} ({d} div)" if d else str(n)))
            total = sum(counts[(c, lum)] for lum in lums)
            cells.append(str(total))
            body.append([_label(c, labels), *cells])
        axis = shift_axis(shift_of(runs))
        header = ["condition", *[f"{axis} = {_fmt_r(lum)}" for lum in lums], "total"]
        parts.append(_table(header, body, align="l" + "r" * (len(lums) + 1)))
        statuses = Counter(r.status for r in runs)
        parts.append(
            "Statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())) + "."
        )
        backends = Counter(r.backend or "unknown" for r in runs)
        parts.append(
            "Backends: " + ", ".join(f"{k} {v}" for k, v in sorted(backends.items())) + "."
        )
    if scan.incomplete:
        parts.append(
            "Incomplete (no `metrics.json`): "
            + ", ".join(f"`{_rel(p, scan.root)}`" for p in scan.incomplete[:20])
            + (f" and {len(scan.incomplete) - 20} more" if len(scan.incomplete) > 20 else "")
            + "."
        )
    if scan.corrupt:
        parts.append(
            "Corrupt (skipped):\n"
            + "\n".join(f"- `{_rel(p, scan.root)}`: {why}" for p, why in scan.corrupt)
        )
    if scan.warnings:
        parts.append("Warnings:\n" + "\n".join(f"- {w}" for w in scan.warnings))
    settings = format_settings(runs)
    if settings:
        parts.append(settings)
    missing = format_missing(scan)
    if missing:
        parts.append(missing)
    return "\n\n".join(parts)


#: Settings a reader needs to judge a table, shown first when the runs share them.
_HEADLINE_SETTINGS = ("model.width", "model.depth", "train.epochs", "data.batch_size",
                      "data.train_subset", "data.test_subset", "ei_keras")


def format_settings(runs: Sequence[RunRecord]) -> str:
    """The settings every run shares (from their fingerprints) and the keys that vary, as
    Markdown; empty when no run carries a fingerprint."""
    prints = [r.config.get("fingerprint") for r in runs]
    prints = [p for p in prints if isinstance(p, dict)]
    if not prints:
        return ""
    keys = sorted(set().union(*prints), key=lambda k: (k not in _HEADLINE_SETTINGS,
                                                       _HEADLINE_SETTINGS.index(k)
                                                       if k in _HEADLINE_SETTINGS else 0, k))
    shared, varying = [], []
    for k in keys:
        values = {repr(p.get(k)) for p in prints}
        if len(values) == 1:
            if k in _HEADLINE_SETTINGS:
                shared.append(f"{k} = {prints[0].get(k)}")
        else:
            numbers = [p.get(k) for p in prints]
            if k in _HEADLINE_SETTINGS and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
                k = f"{k} ({min(numbers):g}–{max(numbers):g})"  # e.g. the sampled widths
            varying.append(k)
    out = "Settings shared by all runs: " + (", ".join(shared) if shared else "none") + "."
    if varying:
        out += " Varying between runs: " + ", ".join(varying) + "."
    if len(prints) < len(runs):
        out += f" ({len(runs) - len(prints)} runs carry no fingerprint: made by an older version.)"
    return out


def format_missing(scan: RunScan) -> str:
    """The cells a recipe planned in this results root (`plan.json`) that have no finished
    run, as Markdown; empty when nothing is missing or there is no plan."""
    done = {_rel(r.path, scan.root) for r in scan.runs}
    lines = []
    for recipe, entry in read_plan(scan.root).items():
        cells = [c for c in entry.get("cells", []) if isinstance(c, str)]
        missing = [c for c in cells if c not in done]
        if missing:
            shown = ", ".join(f"`{c}`" for c in missing[:20])
            more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
            lines.append(f"- {recipe}: {len(missing)} of {len(cells)} planned cells have no "
                         f"finished run: {shown}{more}. Rerun `ei-keras reproduce {recipe}` "
                         "with the same options to complete them.")
    return ("**Missing cells** (the protocol is incomplete; the statistics below use only the "
            "finished runs):\n" + "\n".join(lines)) if lines else ""


def _rel(path: Path, root: Path) -> str:
    """`path` relative to `root` when inside it."""
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)


def format_accuracy_table(
    scan_or_runs: RunScan | Sequence[RunRecord],
    labels: Mapping[str, str] | None = None,
    reference: str | None = None,
) -> str:
    """Markdown accuracy table, condition × shift size: `mean ± std` (%), n and diverged
    count.

    Args:
        scan_or_runs: A scan or a list of runs.
        labels: Optional display names for conditions.
        reference: Listed first when present.

    Returns:
        Markdown text (no trailing newline).
    """
    runs = scan_or_runs.runs if isinstance(scan_or_runs, RunScan) else scan_or_runs
    table = accuracy_table(runs)
    if not table:
        return "_No runs._"
    lums = _lum_sorted({lum for by_r in table.values() for lum in by_r})
    conds = sorted(table, key=lambda c: (c != reference, c))
    body = []
    for c in conds:
        cells = []
        for lum in lums:
            s = table[c].get(lum)
            if s is None or s.n == 0:
                cells.append(NO_TEST)
                continue
            std = f" ± {_pct(s.std)}" if s.std is not None else ""
            cells.append(f"{_pct(s.mean)}{std} (n={s.n}, {s.n_diverged} div)")
        body.append([_label(c, labels), *cells])
    return _by_shift_table(body, runs, lums)


def format_scoring(runs: Sequence[RunRecord]) -> str:
    """How the runs were scored (`ei_keras.scoring`), as Markdown: the paper's rule, the
    old one, or a warning when one folder mixes both."""
    from ei_keras.scoring import LEGACY_SCORING, SCORINGS

    by_rule = Counter(r.scoring for r in runs)
    if not by_rule:
        return ""
    chance = chance_text(runs)
    if len(by_rule) == 1:
        rule = next(iter(by_rule))
        text = f"**Scoring:** {SCORINGS[rule]}; stopped runs count at chance, {chance}."
        if rule == LEGACY_SCORING:
            text += (" These runs were **not** scored the paper's way: some of the runs counted "
                     "at chance here were stopped by a finite excursion and might have "
                     "recovered (the stability table below says how many).")
        return text
    parts = ", ".join(f"{n} under {SCORINGS[rule]}" for rule, n in sorted(by_rule.items()))
    return (f"**Warning: these runs were scored under different rules** ({parts}). The "
            "statistics below mix them; rerun the old ones (a new `--out`) before comparing.")


def _by_shift_table(body: Sequence[Sequence[str]], runs: Sequence[RunRecord],
                    lums: Sequence[float | None]) -> str:
    """A Markdown table of condition rows with one column per shift size of `runs`."""
    axis = shift_axis(shift_of(runs))
    header = ["condition", *[f"{axis} = {_fmt_r(lum)}" for lum in lums]]
    return _table(header, body, align="l" + "r" * len(lums))


def format_stability_table(runs: Sequence[RunRecord], labels: Mapping[str, str] | None = None,
                           reference: str | None = None) -> str:
    """Markdown table condition × shift size of the runs' stability: runs stopped by a
    non-finite loss or weight (counted at chance) / runs with a transient excursion (a finite
    loss or weight past 1e3 that did not stop them; scored by their final accuracy), and, for
    runs made under the old rule, the runs it stopped at the bound."""
    if not runs:
        return "_No runs._"
    lums = _lum_sorted({r.shift_size for r in runs})
    conds = sorted({r.condition for r in runs}, key=lambda c: (c != reference, c))
    stops = Counter((r.condition, r.shift_size, r.stop) for r in runs)
    excursions = Counter((r.condition, r.shift_size) for r in runs if r.excursion)
    counts = Counter((r.condition, r.shift_size) for r in runs)
    any_bound = any(r.stop == "bound" for r in runs)
    body = []
    for c in conds:
        cells = []
        for lum in lums:
            if not counts[(c, lum)]:
                cells.append(NO_TEST)
                continue
            cell = f"{stops[(c, lum, 'non-finite')]} / {excursions[(c, lum)]}"
            if any_bound:
                cell += f" / {stops[(c, lum, 'bound')]}"
            cells.append(cell)
        body.append([_label(c, labels), *cells])
    return _by_shift_table(body, runs, lums)


#: How to read `format_stability_by_rate`.
RATE_CAPTION = ("runs stopped by a non-finite loss or weight / runs with a transient excursion "
                "that trained on / runs, per band of `lr_e` (configurations share their rates "
                "across the conditions of a family, so a column holds the same draws for "
                "each condition of one family).")

#: Edges of the excitatory learning-rate bands of `format_stability_by_rate` (the sampled
#: `lr_e` is log-uniform in 0.01–0.5, `ei_keras.search_space`).
RATE_EDGES = (0.03, 0.1, 0.2)


def format_stability_by_rate(runs: Sequence[RunRecord], labels: Mapping[str, str] | None = None,
                             reference: str | None = None,
                             edges: Sequence[float] = RATE_EDGES) -> str:
    """Markdown table condition × band of the sampled excitatory learning rate `lr_e`
    (`metrics.json` `hyperparameters`), pooled over shift sizes: runs stopped by a non-finite
    value / runs with a transient excursion / runs in the band (old-rule folders: the bound
    stops are counted with the stops). Where a family is fragile, by rate; "" when no run
    records its `lr_e`."""
    def rate(run: RunRecord) -> float | None:
        value = (run.metrics.get("hyperparameters") or {}).get("lr_e")
        return float(value) if isinstance(value, int | float) else None

    rated = [r for r in runs if rate(r) is not None]
    if not rated:
        return ""
    bounds = [None, *edges, None]
    names = [f"< {edges[0]:g}", *[f"{a:g}–{b:g}" for a, b in zip(edges, edges[1:])],
             f"≥ {edges[-1]:g}"]

    def band(run: RunRecord) -> int:
        return sum(rate(run) >= e for e in edges)

    conds = sorted({r.condition for r in rated}, key=lambda c: (c != reference, c))
    total, stops, excursions = Counter(), Counter(), Counter()
    for r in rated:
        key = (r.condition, band(r))
        total[key] += 1
        stops[key] += r.stop is not None
        excursions[key] += r.excursion
    body = [[_label(c, labels), *[
        f"{stops[(c, i)]} / {excursions[(c, i)]} / {total[(c, i)]}" if total[(c, i)] else NO_TEST
        for i in range(len(bounds) - 1)]] for c in conds]
    return _table(["condition", *[f"`lr_e` {n}" for n in names]], body,
                  align="l" + "r" * len(names))


def format_spectrum_table(runs: Sequence[RunRecord], labels: Mapping[str, str] | None = None,
                          reference: str | None = None) -> str:
    """Markdown table condition × shift size of the recurrent weights' normalized SVD entropy
    (`metrics.json` `spectrum`, `ei_keras.measures.svd_entropy`): the median over runs at
    initialization → at the end of training, and the number of runs; empty when no run
    recorded a spectrum (feed-forward runs). Runs whose end weights were not finite (diverged)
    count in the initial median only."""
    import statistics

    def values(c, lum, key):
        out = []
        for r in runs:
            v = (r.metrics.get("spectrum") or {}).get(key)
            if (r.condition, r.shift_size) == (c, lum) and isinstance(v, (int, float)):
                out.append(float(v))
        return out

    measured = [r for r in runs if isinstance(r.metrics.get("spectrum"), Mapping)]
    if not measured:
        return ""
    lums = _lum_sorted({r.shift_size for r in measured})
    conds = sorted({r.condition for r in measured}, key=lambda c: (c != reference, c))
    body = []
    for c in conds:
        cells = []
        for lum in lums:
            init, end = values(c, lum, "svd_entropy_init"), values(c, lum, "svd_entropy_end")
            if not init:
                cells.append(NO_TEST)
                continue
            tail = f"{statistics.median(end):.3f}" if end else "—"
            cells.append(f"{statistics.median(init):.3f} → {tail} (n={len(init)})")
        body.append([_label(c, labels), *cells])
    return _by_shift_table(body, measured, lums)


#: What the report and the README say the spectrum table is.
SPECTRUM_CAPTION = (
    "Normalized SVD entropy of the effective recurrent weight matrix `W_EE^h - W_EI W_IE^h` "
    "(`ei_keras.measures.svd_entropy`: the entropy of the singular values normalized to sum "
    "to 1, divided by log n; 1 = all singular values equal, near 0 = one dominates; Li et "
    "al. 2023), median over runs at initialization → at the end of training (n runs).")


def format_weight_table(runs: Sequence[RunRecord], labels: Mapping[str, str] | None = None,
                        reference: str | None = None,
                        conditions: Sequence[str] | None = None) -> str:
    """Markdown table condition × shift size of the sign-constrained excitatory weights at
    the end of training (`metrics.json` `weights` `pooled`,
    `ei_keras.measures.weight_distribution`): the medians over runs of the share at exactly 0,
    the standard deviation, skewness and excess kurtosis of `ln w` (`WEIGHTS_CAPTION`), and
    the number of runs; only `conditions` when given; empty when no run recorded it."""
    import statistics

    def pooled(r, key="weights"):
        return (r.metrics.get(key) or {}).get("pooled") or {}

    measured = [r for r in runs if pooled(r).get("n")
                and (conditions is None or r.condition in conditions)]
    if not measured:
        return ""

    def med(values, fmt):
        values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        return format(statistics.median(values), fmt) if values else "—"

    lums = _lum_sorted({r.shift_size for r in measured})
    present = {r.condition for r in measured}
    conds = ([c for c in conditions if c in present] if conditions is not None else
             sorted(present, key=lambda c: (c != reference, c)))
    body = []
    for c in conds:
        cells = []
        for lum in lums:
            here = [r for r in measured if (r.condition, r.shift_size) == (c, lum)]
            if not here:
                cells.append(NO_TEST)
                continue
            ends = [pooled(r) for r in here]
            inits = [pooled(r, "weights_init") for r in here]
            inits = [d for d in inits if d.get("n")]

            def stat(key, fmt, scale=1.0):
                def values(recs):
                    return [scale * d[key] for d in recs if d.get(key) is not None]
                end = med(values(ends), fmt)
                return f"{med(values(inits), fmt)} → {end}" if inits else end

            cells.append(f"{stat('zero_fraction', '.0f', 100.0)} % · {stat('log_sd', '.2f')} · "
                         f"{stat('log_skewness', '+.2f')} · "
                         f"{stat('log_excess_kurtosis', '+.1f')} (n={len(here)})")
        body.append([_label(c, labels), *cells])
    return _by_shift_table(body, measured, lums)


#: What the report and the README say the weight table is.
WEIGHTS_CAPTION = (
    "Sign-constrained excitatory weights (`W_EE` of every Dale layer) at the end of "
    "training (`measures.weights`, `ei_keras.measures.weight_distribution`), median over "
    "runs: share exactly at 0 (clipped by `NonNeg`) · standard deviation · skewness · excess "
    "kurtosis of `ln w` over the positive weights (n runs); `a → b`: at initialization → at "
    "the end, where the runs recorded both. A log-normal `w` has skewness 0 and excess "
    "kurtosis 0; the exponential draw of `DaleExcitatory` (the initialization) has -1.14 and "
    "+2.40.")


def run_seconds(run: RunRecord, key: str = "wall_time_s") -> float | None:
    """A time a run recorded in its `metrics.json` (`wall_time_s` or `train_time_s`), None
    when absent or not a finite number."""
    value = run.metrics.get(key)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def format_run_times(runs: Sequence[RunRecord]) -> str:
    """Time per run and in all, from the runs' `metrics.json` (`wall_time_s`: the whole
    run, data loading and measures included; `train_time_s`: training), as Markdown; empty
    when no run recorded a time."""
    import statistics

    def seconds(key: str) -> list[float]:
        return [t for t in (run_seconds(r, key) for r in runs) if t is not None]

    wall, train = seconds("wall_time_s"), seconds("train_time_s")
    if not wall:
        return ""
    text = (f"Run time ({len(wall)} of {len(runs)} runs recorded it): median "
            f"{statistics.median(wall):.1f} s per run (min {min(wall):.1f}, max "
            f"{max(wall):.1f})")
    if train:
        text += f", of which training {statistics.median(train):.1f} s"
    total = sum(wall)
    text += (f"; {total / 3600:.2f} h summed over runs ({total:.0f} s; runs trained "
             "in parallel take less wall-clock time).")
    return text


def _slug(name: str) -> str:
    """A file-name-safe version of a condition name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "condition"


# ----------------------------------------------------------------------------- the figures


def _left_out(runs: Sequence[RunRecord], select: Callable[[str], bool],
              labels: Mapping[str, str] | None) -> str:
    """Caption clause: how many diverged runs with such history columns the curves leave out
    (the figures' own rule, `figures._curve_runs`)."""
    kept, div = _curve_runs(runs, select, None)
    if not div:
        return f"no run of the {len(kept)} drawn diverged"
    by = Counter(r.condition for r in div)
    return (f"{len(div)} diverged runs of {len(kept) + len(div)} left out ("
            + ", ".join(f"{_label(c, labels)} {n}" for c, n in sorted(by.items())) + ")")


def _figures_section(
    runs: Sequence[RunRecord],
    out: Path,
    reference: str,
    labels: Mapping[str, str] | None,
    rows: Sequence[ComparisonRow],
    have_ref: bool,
) -> list[str]:
    """Draw the figures into `out` and return the report's Markdown lines for them."""
    ref_label = _label(reference, labels)
    drawn: list[tuple[str, str, Path]] = []  # (heading, caption, PNG)
    shift = shift_of(runs)
    axis = shift_axis(shift)
    size_name = SHIFT_FAMILIES[shift].size_key.split(".")[-1] if shift in SHIFT_FAMILIES \
        else "shift"  # luminosity, contrast
    acc = plot_accuracy_by_shift(
        runs, out / f"accuracy_by_{size_name}.png", reference=reference, labels=labels
    )
    if acc is not None:
        drawn.append((f"Test accuracy by {size_name}", "Box = quartiles and median over runs, "
                      f"dots = runs, x = diverged runs (counted at chance, "
                      f"{chance_text(runs)})", acc))
    def is_moment(col: str) -> bool:
        return col.endswith(("_mean", "_var"))

    def is_alignment(col: str) -> bool:
        return col.startswith(("output_alignment", "gradient_alignment"))

    mom = plot_moments(runs, out / "moments.png", reference=reference, labels=labels)
    if mom is not None:
        drawn.append(("Hidden-layer moments per epoch", f"One column per {axis}: median over "
                      "runs and "
                      "interquartile band (LN targets: mean 0, variance 1; variance on a log "
                      "axis); " + _left_out(runs, is_moment, labels), mom))
    ali = plot_alignment(runs, out / "alignment.png", reference=reference, labels=labels)
    if ali is not None:
        drawn.append(("Output and gradient alignment with LN per epoch",
                      f"One column per {axis}: median over runs and interquartile band; "
                      + _left_out(runs, is_alignment, labels),
                      ali))
    learning = plot_learning_curves(runs, out / "learning.png",
                                    reference=reference if have_ref else None, labels=labels)
    if learning is not None:
        drawn.append(("Training accuracy per epoch",
                      f"One column per {axis}: median over runs and interquartile band; bottom "
                      f"row: each run's training accuracy minus its {ref_label} pair's (same "
                      "configuration), points; "
                      + _left_out(runs, lambda c: c == "accuracy", labels), learning))
    weights = plot_weight_histograms(runs, out / "weights.png", labels=labels)
    if weights is not None:
        drawn.append(("Excitatory weights at the end of training",
                      "One panel per preset (with its variants), summed over runs and shift "
                      "sizes: the fraction of weights per quarter decade of w (dashed: the "
                      "same runs at initialization); the share at exactly 0 is in the legend",
                      weights))
    if have_ref:
        for cond in dict.fromkeys(row.condition for row in rows):
            name = f"scatter_{_slug(cond)}_vs_{_slug(reference)}.png"
            sc = plot_scatter_vs_reference(runs, out / name, cond, reference, labels=labels)
            if sc is not None:
                drawn.append((f"{_label(cond, labels)} vs {ref_label}",
                              f"Final test accuracy of runs paired by {axis} and seed/trial",
                              sc))
    if not drawn:
        return []
    md = ["## Figures", ""]
    for heading, caption, p in drawn:
        vector = p.with_suffix(".pdf")
        link = f" ([PDF]({vector.name}))" if vector.is_file() else ""
        md += [f"### {heading}", "", f"![{heading}]({p.name})", "", f"{caption}.{link}", ""]
    return md


# ----------------------------------------------------------------------------- the report


def write_report(
    root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    reference: str = "ei_ln",
    title: str | None = None,
    *,
    conditions: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    figures: bool = True,
    strict: bool = False,
) -> Path:
    """Scan `root` and write `report.md` with tables, tests and figures.

    Args:
        root: The results root (any nesting of run directories).
        out_dir: Where to write `report.md` and the PNGs (default: `root`).
        reference: The reference condition for the Mann-Whitney tests (paper: LayerNorm).
        title: Report title (default: `"ei_keras results: <root>"`).
        conditions: Conditions to compare with the reference, in order (default: all but the
            reference, by name).
        labels: Optional display names for conditions (e.g. `{"ei_ln": "LN"}`).
        figures: Whether to draw the PNG figures.
        strict: Raise `ei_keras.analysis.runs.RunLoadError` on a corrupt run instead
            of warning, skipping and counting it.

    Returns:
        The path of `report.md`.

    Raises:
        FileNotFoundError: `root` is not a directory.
        RunLoadError: `strict` is set and a run file is corrupt.
    """
    root_path = Path(root)
    scan = scan_runs(root_path, strict=strict)
    out = Path(out_dir) if out_dir is not None else root_path
    out.mkdir(parents=True, exist_ok=True)
    runs = scan.runs
    rows = compare_to_reference(runs, reference=reference, conditions=conditions)
    ref_label = _label(reference, labels)
    have_ref = any(r.condition == reference for r in runs)

    md: list[str] = [f"# {title or f'ei_keras results: {root_path}'}", ""]
    md += [
        f"Results root: `{root_path}`. Reference condition: **{ref_label}**"
        + ("" if have_ref else " (no runs of it were found)")
        + ".",
        "",
        f"Accuracy is the final test accuracy. Diverged runs (stopped, no finite test "
        f"accuracy) count at chance, {chance_text(runs)}, as failed configurations; every "
        f"table says how many runs diverged.",
        "",
        format_scoring(runs),
        "",
        "## Run inventory",
        "",
        format_inventory(scan, labels, reference),
        "",
        format_run_times(runs),
        "",
        "## Stability",
        "",
        "Per condition and shift size: runs stopped by a non-finite loss or weight (counted at "
        "chance) / runs with a transient excursion (a finite loss above "
        f"{MAX_LOSS:g} or a weight above {MAX_ABS_WEIGHT:g} in magnitude that did not stop "
        "them: scored by their final accuracy; `metrics.json` `stability` has the first step, "
        "the peak and the group to blame)"
        + (" / runs the old rule stopped at that bound (counted at chance)"
           if any(r.stop == "bound" for r in runs) else "") + ".",
        "",
        format_stability_table(runs, labels, reference),
        "",
        *([f"By the sampled excitatory learning rate, all shift sizes pooled: {RATE_CAPTION}",
           "", format_stability_by_rate(runs, labels, reference), ""]
          if format_stability_by_rate(runs) else []),
        "## Test accuracy (%)",
        "",
        "Mean ± sample standard deviation over runs, n runs, diverged runs.",
        "",
        format_accuracy_table(runs, labels, reference),
        "",
        *(["## Recurrent spectrum", "", SPECTRUM_CAPTION, "",
            format_spectrum_table(runs, labels, reference), ""]
          if format_spectrum_table(runs) else []),
        *(["## Excitatory weights", "", WEIGHTS_CAPTION, "",
           format_weight_table(runs, labels, reference), ""]
          if format_weight_table(runs) else []),
        f"## Mann-Whitney U vs {ref_label}",
        "",
        "Two-sided `scipy.stats.mannwhitneyu(condition, reference)`; U is the condition's "
        "statistic (pairs in which the condition is higher; 0 = every run below every "
        "reference run, n·n_ref = every run above). Stars: *** p < 0.001, ** p < 0.01, "
        "* p < 0.05, n.s. otherwise; — = fewer than 2 runs on a side. Direction: better/worse "
        "when p < 0.05, ≈ otherwise. Diverged: condition/reference. p Holm: p after Holm's "
        "correction across the condition's shift sizes. Shift: the Hodges-Lehmann estimate "
        "(median of all condition − reference differences, points) and its 95 % interval "
        "(inverting the Mann-Whitney test with U's exact null distribution; runs tied at "
        "chance make it approximate).",
        "",
        format_comparison_table(rows, labels),
        "",
    ]
    paired = compare_paired(runs, reference=reference, conditions=conditions)
    if any(row.n_pairs for row in paired):
        md += [
            f"## Paired: the same configurations under each condition and {ref_label}",
            "",
            "Configurations run under both conditions (same shift size and seed or trial: the "
            "same data "
            "stream and initialisation seed, and within a family the same learning rates), "
            "compared pair by pair: median difference (condition − reference, points), pairs "
            "in which the condition is lower / higher, two-sided Wilcoxon signed-rank p "
            "(`scipy.stats.wilcoxon`).",
            "",
            format_paired_table(paired, labels),
            "",
        ]
    if reference == "ei_ln":
        against = compare_with_paper(runs, reference=reference)
        counts = verdict_counts(against)
        if counts["agrees"] + counts["differs"]:
            md += [
                "## Against the paper",
                "",
                "The paper's Mann-Whitney tests against LN (n = 30 vs 30 at r = 0, 0.25, 0.5, "
                "0.75; U and p where the paper states them) beside this report's, each with "
                "the test that fits the finding: Mann-Whitney against LN, or, for finding 2, "
                "the Wilcoxon signed-rank test within each r over the paired configurations "
                "(the paper pooled r, although accuracy differs by points between r). Verdict "
                "(on the uncorrected p, as the paper's): "
                "*agrees* when both are in the same class (worse / n.s. / better at p < 0.05). "
                f"{counts['agrees']} agree, {counts['differs']} differ; cells without runs "
                "here are left out.",
                "",
                format_paper_table(against),
                "",
            ]
    lines = compact_lines(rows, labels)
    if lines:
        md += ["Compact:", "", "```", *lines, "```", ""]

    if figures and runs:
        md += _figures_section(runs, out, reference, labels, rows, have_ref)
    return write_text_atomic(out / REPORT_NAME, "\n".join(md).rstrip() + "\n")
