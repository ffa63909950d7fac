"""Analysis of finished runs: loading result folders, statistics, figures and reports.

Reads the files the training code writes (`config.json`, `history.csv`, `metrics.json`
per run directory) and never imports Keras or an array backend, so it is fast to import and
can run anywhere the results are. scipy, numpy and matplotlib are imported lazily.

Typical use, on the folder `ei-keras reproduce fig6 --out runs/fig6` wrote: `runs =
load_runs("runs/fig6")`, then `print(summarize(compare_to_reference(runs,
reference="ei_ln")))`, and `write_report("runs/fig6")` for `runs/fig6/report.md` and its PNGs
(what `ei-keras report runs/fig6` does).

"""

# ruff: noqa: E402  (the extra is checked before the modules that need it load)
from ei_keras.extras import require

require("research", "ei_keras.analysis", ("scipy", "matplotlib"))

from .figures import (
    plot_accuracy_by_luminosity,
    plot_accuracy_by_shift,
    plot_alignment,
    plot_learning_curves,
    plot_moments,
    plot_scatter_vs_reference,
    save_figure,
)
from .paper import REFERENCE, PaperCell, PaperComparison, compare_with_paper, format_paper_table
from .report import (
    REPORT_NAME,
    compact_lines,
    format_accuracy_table,
    format_comparison_table,
    format_inventory,
    format_paired_table,
    headline_lines,
    summarize,
    write_report,
)
from .runs import (
    CHANCE_ACCURACY,
    RunLoadError,
    RunRecord,
    RunScan,
    group_runs,
    load_run,
    load_runs,
    pair_runs,
    scan_runs,
)
from .stats import (
    AccuracySummary,
    ComparisonRow,
    PairedRow,
    accuracy_table,
    compare_paired,
    compare_to_reference,
    format_p,
    format_u,
    mann_whitney,
    shift_axis,
    shift_of,
    stars,
    summarize_accuracies,
)

__all__ = [
    "REFERENCE",
    "PaperCell",
    "PaperComparison",
    "compare_with_paper",
    "format_paper_table",
    "CHANCE_ACCURACY",
    "REPORT_NAME",
    "AccuracySummary",
    "ComparisonRow",
    "PairedRow",
    "RunLoadError",
    "RunRecord",
    "RunScan",
    "accuracy_table",
    "compact_lines",
    "compare_paired",
    "compare_to_reference",
    "format_accuracy_table",
    "format_comparison_table",
    "format_inventory",
    "format_paired_table",
    "headline_lines",
    "format_p",
    "format_u",
    "group_runs",
    "load_run",
    "load_runs",
    "mann_whitney",
    "pair_runs",
    "plot_accuracy_by_luminosity",
    "plot_accuracy_by_shift",
    "plot_alignment",
    "plot_learning_curves",
    "plot_moments",
    "plot_scatter_vs_reference",
    "save_figure",
    "scan_runs",
    "shift_axis",
    "shift_of",
    "stars",
    "summarize",
    "summarize_accuracies",
    "write_report",
]
