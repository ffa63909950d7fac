"""The answers of the ablations recipe (issue 23), as README text generated from its runs.

`ei-keras reproduce ablations` trains, for each of its 12 paired configurations and each
shift size r, every condition of `QUESTIONS` with the same seed, learning rates and width as
its reference. Each question compares a condition with its reference *within r* by the
Wilcoxon signed-rank test over those pairs (`ei_keras.analysis.stats.wilcoxon_paired`), with
the Hodges-Lehmann estimate of the paired accuracy difference and its 95 % interval
(`ei_keras.analysis.stats.paired_hodges_lehmann`); the p-values of one question (all its
rows) are Holm-corrected together (`ei_keras.analysis.stats.holm`). Accuracies are the runs'
effective ones (a run stopped by a non-finite loss or weight counts at chance).

`format_ablations(runs)` is the text; `ei_keras.analysis.readme` puts it in the README's
`<!-- results:ablations -->` block from `docs/results/ablations`.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ei_keras.run_directory import RunRecord

from .runs import pair_runs
from .stats import ALPHA, format_p, holm, paired_hodges_lehmann, wilcoxon_paired

__all__ = ["QUESTIONS", "Question", "format_ablations", "question_rows"]

#: The command that makes the runs (the recipe's full reduced size).
COMMAND = "ei-keras reproduce ablations --out docs/results/ablations --jobs 2"
#: Question (d)'s weight distributions: the same configurations of its conditions, trained
#: again with `measures.weights` (a key that defines runs, so a folder of its own).
WEIGHTS_FOLDER = "docs/results/ablations-weights"
WEIGHTS_CONDITIONS = ("ei", "ei_eg", "ei_ln", "ei_ln_eg", "inorm_gradnorm", "inorm_gradnorm_eg")
WEIGHTS_COMMAND = (f"ei-keras reproduce ablations --conditions {','.join(WEIGHTS_CONDITIONS)} "
                   f"--luminosity 0.75 --out {WEIGHTS_FOLDER} --backend jax "
                   "measures.weights=true")


@dataclass(frozen=True)
class Question:
    """One question of issue 23 and the paired comparisons that answer it.

    Attributes:
        key: its letter in issue 23, `"a"` ... `"f"`.
        title: the question.
        pairs: `(condition, reference)` comparisons (paired by r and configuration).
        stops: whether the answer also counts runs stopped by a non-finite loss or weight.
        note: one sentence on what the comparison isolates.
        weights: whether the answer also shows the distribution of the excitatory weights at
            the end (`ei_keras.analysis.report.format_weight_table`, the report's figure).
    """

    key: str
    title: str
    pairs: tuple[tuple[str, str], ...]
    stops: bool = False
    note: str = ""
    weights: bool = False


def _lambda_pairs(preset: str) -> tuple[tuple[str, str], ...]:
    from ei_keras.recipes import ABLATION_LAMBDAS

    return tuple((f"{preset}_lambda{lam:g}", preset) for lam in ABLATION_LAMBDAS
                 if lam != 1e-2)


def _questions() -> tuple[Question, ...]:
    return (
        Question("a", "Activity normalized, error not: does detached LayerNorm lose LN's "
                 "benefit without any learned inhibition?",
                 (("ei_ln_detached", "ei_ln"), ("inorm", "ei_ln"), ("ei_ln_detached", "inorm"),
                  ("ei", "ei_ln")),
                 note="ei_ln_detached has LayerNorm's forward and the identity backward; "
                 "inorm normalizes activity by learned inhibition and leaves the error alone."),
        Question("b", "GradNorm on y (ours, LayerNorm's backward) vs on z (the paper code's "
                 "formula)", (("inorm_gradnorm_z", "inorm_gradnorm"),)),
        Question("c", "The inhibitory gradient clip (0.1, ours): accuracy and runs stopped by a "
                 "non-finite loss or weight without it",
                 (("inorm_noclip", "inorm"), ("inorm_gradnorm_noclip", "inorm_gradnorm")),
                 stops=True),
        Question("d", "Exponentiated gradient (EG) vs gradient descent (GD) for the "
                 "excitatory weights", (("ei_eg", "ei"), ("ei_ln_eg", "ei_ln"),
                                        ("inorm_gradnorm_eg", "inorm_gradnorm")),
                 stops=True, weights=True),
        Question("e", "The λ grid (the presets' λ = 0.01 is the reference)",
                 _lambda_pairs("inorm") + _lambda_pairs("inorm_gradnorm"), stops=True),
        Question("f", "Isolation of the two losses: inhibitory weights also trained on the "
                 "task loss (task_inhib), excitatory weights also on the normalization loss "
                 "(norm_exc)",
                 (("inorm_task_inhib", "inorm"), ("inorm_norm_exc", "inorm"),
                  ("inorm_gradnorm_task_inhib", "inorm_gradnorm"),
                  ("inorm_gradnorm_norm_exc", "inorm_gradnorm")), stops=True),
    )


#: The questions, in issue 23's order.
QUESTIONS: tuple[Question, ...] = _questions()


@dataclass(frozen=True)
class Row:
    """One comparison at one shift size (see the module docstring)."""

    condition: str
    reference: str
    shift_size: float | None
    n: int
    condition_median: float
    reference_median: float
    shift: float | None
    low: float | None
    high: float | None
    p: float | None
    p_holm: float | None
    stops: int
    reference_stops: int
    lower: int
    higher: int


def question_rows(runs: Sequence[RunRecord], question: Question) -> list[Row]:
    """The rows of `question` from `runs` (pairs with runs on both sides only), Holm-corrected
    across the question."""
    rows = []
    for condition, reference in question.pairs:
        by_size: dict[float | None, list[tuple[RunRecord, RunRecord]]] = {}
        for run, ref in pair_runs(runs, condition, reference):
            by_size.setdefault(run.shift_size, []).append((run, ref))
        for size in sorted(by_size, key=lambda s: (s is None, s or 0.0)):
            pairs = by_size[size]
            diffs = [a.accuracy - b.accuracy for a, b in pairs]
            hl = paired_hodges_lehmann(diffs)
            rows.append(Row(
                condition, reference, size, len(pairs),
                statistics.median(a.accuracy for a, _ in pairs),
                statistics.median(b.accuracy for _, b in pairs),
                None if hl is None else hl[0], None if hl is None else hl[1],
                None if hl is None else hl[2], wilcoxon_paired(diffs), None,
                sum(a.stop == "non-finite" for a, _ in pairs),
                sum(b.stop == "non-finite" for _, b in pairs),
                sum(d < 0 for d in diffs), sum(d > 0 for d in diffs)))
    adjusted = holm([r.p for r in rows])
    return [Row(**{**r.__dict__, "p_holm": q}) for r, q in zip(rows, adjusted)]


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _points(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:+.1f}"


def _verdict(row: Row) -> str:
    if row.p_holm is None:
        return "no test (n < 2)"
    if row.p_holm < ALPHA and row.lower != row.higher:
        return "higher" if (row.shift or 0.0) > 0 else "lower"
    return "no difference shown"


def _size(size: float | None) -> str:
    return "?" if size is None else f"{size:g}"


def format_question(runs: Sequence[RunRecord], question: Question) -> str:
    """The Markdown answer to one question: its table and one line per comparison."""
    rows = question_rows(runs, question)
    end = "" if question.title.endswith("?") else "."
    head = f"**({question.key}) {question.title}{end}**"
    if question.note:
        head += f" {question.note}"
    present = {r.condition for r in runs}
    missing = sorted({c for pair in question.pairs for c in pair if c not in present})
    if not rows:
        return (head + "\n\nNo paired runs yet" +
                (f" (no runs of {', '.join(missing)})" if missing else "") + ".\n")
    lines = [head, "",
             "| condition vs reference | r | n | median acc. (%) | HL shift (points) "
             "[95 % CI] | Wilcoxon p | p Holm | verdict |"
             + (" non-finite stops |" if question.stops else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if question.stops else "")]
    for r in rows:
        cells = [f"{r.condition} vs {r.reference}", _size(r.shift_size), str(r.n),
                 f"{_pct(r.condition_median)} vs {_pct(r.reference_median)}",
                 f"{_points(r.shift)} [{_points(r.low)}, {_points(r.high)}]",
                 format_p(r.p), format_p(r.p_holm), _verdict(r)]
        if question.stops:
            cells.append(f"{r.stops} vs {r.reference_stops}")
        lines.append("| " + " | ".join(cells) + " |")
    if missing:
        lines += ["", f"Not in these runs yet: {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def _weights_answer(runs: Sequence[RunRecord], question: Question) -> str:
    """The distribution of the excitatory weights of a question's conditions (Markdown), from
    the runs of `WEIGHTS_FOLDER`."""
    from .report import WEIGHTS_CAPTION, format_weight_table

    conditions = list(dict.fromkeys(c for pair in question.pairs for c in reversed(pair)))
    table = format_weight_table(runs, conditions=conditions)
    if not table:
        return (f"The weights' distributions: no runs in `{WEIGHTS_FOLDER}` yet (made by "
                f"`{WEIGHTS_COMMAND}`).\n")
    return (f"The weights' distributions, from the {len(runs)} runs in `{WEIGHTS_FOLDER}` (the "
            f"same configurations trained again with the measure: `{WEIGHTS_COMMAND}`). "
            f"{WEIGHTS_CAPTION} Histograms: [`{WEIGHTS_FOLDER}/weights.png`]"
            f"({WEIGHTS_FOLDER}/weights.png).\n\n" + table + "\n")


def format_ablations(runs: Iterable[RunRecord], folder: str = "docs/results/ablations",
                     weight_runs: Iterable[RunRecord] = ()) -> str:
    """The answers to every question of `QUESTIONS` from `runs` (Markdown); `weight_runs`
    (the runs of `WEIGHTS_FOLDER`) give the weight distributions of the questions that ask."""
    runs, weight_runs = list(runs), list(weight_runs)
    sizes = sorted({r.shift_size for r in runs if r.shift_size is not None})
    parts = [
        f"_Generated by `make results` from the {len(runs)} runs in `{folder}` "
        f"(made with `{COMMAND}`; r ∈ {{{', '.join(f'{s:g}' for s in sizes) or '—'}}}); "
        "do not edit by hand._",
        "",
        "Each row pairs a condition's runs with its reference's at the same r and "
        "configuration (same seed, width and learning rates). n: pairs; HL shift: the "
        "Hodges-Lehmann estimate of the paired accuracy difference (condition − reference, "
        "percentage points) with its 95 % interval; Wilcoxon p: two-sided signed-rank test "
        "of the paired differences; p Holm: corrected across the rows of the question; "
        "verdict at 0.05 on the corrected p. A run stopped by a non-finite loss or weight "
        "counts at chance.",
        "",
    ]
    for question in QUESTIONS:
        parts += [format_question(runs, question)]
        if question.weights:
            parts += [_weights_answer(weight_runs, question)]
    return "\n".join(parts)
