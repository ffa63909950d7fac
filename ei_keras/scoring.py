"""How a run is scored: the paper's rule, in one place.

Eyono et al. (2026) train every configuration of a sweep for its whole length and compare final
test accuracies. So does this library:

- only a **non-finite** loss or weight stops a run (`must_stop`); such a run counts at
  chance, one over the number of labels (`scored_accuracy`), and its metrics say the step
  and the cause (`ei_keras.divergence.DivergenceMonitor`);
- a finite loss above `MAX_LOSS` or a weight above `MAX_ABS_WEIGHT` in magnitude is
  a *stability event* (`out_of_bounds`): recorded (first step, peak, group to blame) in
  the run's `metrics.json` under `stability`, never a stop, never a rescoring: the run is
  scored by its final test accuracy like any other.

Runs record the rule they were scored under in `metrics.json` (`"scoring"`:
`PAPER_SCORING`). Runs made before it (no `scoring` field) were scored under
`LEGACY_SCORING`: stopped, and counted at chance, the moment the loss or a weight passed
the bounds; reports label them as such (`scoring_of`).

This module imports neither Keras nor any array backend (the analysis and a population trainer
use it as well as the training loop).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["LEGACY_SCORING", "MAX_ABS_WEIGHT", "MAX_LOSS", "PAPER_SCORING", "SCORINGS",
           "must_stop", "out_of_bounds", "scored_accuracy", "scoring_of"]

#: A finite loss above this is a stability event (chance cross-entropy on 10 classes is 2.3).
MAX_LOSS = 1e3
#: A finite weight above this magnitude is a stability event (initial weights are O(0.1-10),
#: and gradient clipping can keep exploding weights finite).
MAX_ABS_WEIGHT = 1e3

#: The paper's rule: every run trains its whole length and is scored by its final test
#: accuracy; only a non-finite loss or weight stops it (scored at chance).
PAPER_SCORING = "final_accuracy"
#: The rule of runs made before `scoring` was recorded: a loss or weight past
#: `MAX_LOSS` / `MAX_ABS_WEIGHT` stopped the run and it counted at chance.
LEGACY_SCORING = "stopped_at_bounds"
#: How a report names each rule.
SCORINGS = {
    PAPER_SCORING: "the paper's: final test accuracy; only a non-finite loss or weight stops a "
                   "run (counted at chance)",
    LEGACY_SCORING: f"the old rule: a run stopped, and counted at chance, as soon as its loss "
                    f"or a weight exceeded {MAX_LOSS:g} (made before the scoring was recorded)",
}


def must_stop(value: Any) -> bool:
    """Whether a loss (or any weight value) stops the run: it is non-finite (NaN or ±inf).
    None (nothing logged yet) does not."""
    if value is None:
        return False
    return not math.isfinite(float(value))


def out_of_bounds(value: Any, bound: float = MAX_LOSS) -> bool:
    """Whether a finite value is past its stability bound (a stability event, not a stop)."""
    if value is None or must_stop(value):
        return False
    return abs(float(value)) > bound


def scored_accuracy(status: str, test_accuracy: Any, chance: float) -> float:
    """The accuracy a run counts at in every statistic: its final test accuracy, or `chance`
    when it was stopped (`status == "diverged"`) or has no finite test accuracy."""
    if status == "diverged" or test_accuracy is None or isinstance(test_accuracy, bool):
        return chance
    try:
        value = float(test_accuracy)
    except (TypeError, ValueError):
        return chance
    return value if math.isfinite(value) else chance


def scoring_of(metrics: Mapping[str, Any]) -> str:
    """The rule a run's `metrics.json` was scored under (`LEGACY_SCORING` when it does
    not say: runs made before the rule was recorded)."""
    rule = metrics.get("scoring")
    return LEGACY_SCORING if rule is None else str(rule)
