"""The hyperparameter ranges of the paper's sweeps (SPEC section 3), shared by the recipes and
the KerasTuner configurations in `tuner_configs/`.

The paper's numeric ranges were lost in its text; these were chosen by measurement on this
project's networks (README, "I-Norm presets on their defaults"): they bracket the learning
rates at which each family trains within 3 epochs, and extend past them on both sides so that a
sweep also samples the configurations where a family is fragile — as the paper's
30-configuration sweeps do.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ei_keras import zoo

# name: (low, high, sampling)
EI_SPACE = {
    "lr_e": (0.01, 0.5, "log"),
    "lr_ie": (1e-3, 0.1, "log"),
    "lr_ei": (1e-4, 1e-2, "log"),
}
INORM_SPACE = {
    "lr_e": (0.01, 0.5, "log"),
    "lr_ie": (0.03, 1.0, "log"),
    "lr_ei": (0.01, 0.3, "log"),
}
#: The conv I-Norm presets (`conv_inorm*`): a conv weight is shared by every location, so its
#: task gradient sums over the map and I-Norm trains at a tenth of the MLP's `lr_e` (zoo,
#: "Conv presets": defaults 0.005 / 0.01; the normalization loss grows at 0.02 and conv_inorm
#: diverges at 0.05). The range is the MLP's scaled by 1/10, so it brackets those defaults and
#: reaches the fragile side as the MLP range does. The conv EI presets keep `EI_SPACE`
#: (they keep the MLP's settings).
CONV_INORM_SPACE = {**INORM_SPACE, "lr_e": (1e-3, 0.05, "log")}
WIDTH_RANGE = (100, 500)
#: Conv presets: filters of the last conv layer (the first has half; default 32). The conv I-Norm
#: layers' SVD initialisation needs `width // 2 <= 25` (a 5x5x1 patch has 25 pixels).
CONV_WIDTH_RANGE = (16, 48)
#: The recurrent I-Norm presets (`rnn_inorm*`): the task error of a recurrent weight sums over
#: the 28 steps, and GradNorm's normalization loss grew at lr_e 0.05 (zoo, "Recurrent presets":
#: default 0.01). As the conv range: the MLP's scaled by 1/10, bracketing the default and
#: reaching the fragile side. The recurrent EI presets keep `EI_SPACE` (defaults 0.02, 0.05).
RNN_INORM_SPACE = {**INORM_SPACE, "lr_e": (1e-3, 0.05, "log")}
#: Recurrent presets: units of the cell (default 128; sequence models of row-sequential MNIST
#: use 64-256).
RNN_WIDTH_RANGE = (64, 256)


@dataclasses.dataclass(frozen=True)
class SearchFamily:
    """A family of presets that share a search space (and a `tuner_configs/<name>.json`).
    A preset names its family (`ei_keras.zoo.Preset.family`).

    Attributes:
        name: the family's name.
        title: what its presets are, in words.
        space: `{hyperparameter: (low, high, sampling)}` of the learning rates.
        width_range: the range of `width` in its sweeps.
        width: what `width` means for its presets, in words.
        norm_weight: whether its presets have a normalization loss, whose weight lambda
            (`norm_weight`) a tuner searches.
        beyond_paper: not conditions of the paper.
        note: a sentence for its tuner configuration's description (why its ranges differ).
    """

    name: str
    title: str
    space: dict
    width_range: tuple[int, int]
    width: str = "hidden width"
    norm_weight: bool = False
    beyond_paper: bool = False
    note: str = ""


_CONV_WIDTH = "filters of the last conv layer (the first has half)"
_CONV_NOTE = ("A conv weight is shared by every location, so the conv I-Norm presets train "
              "at a tenth of the MLP's lr_e (README, 'Convolutional presets').")

_RNN_WIDTH = "units of the recurrent cell (one recurrent layer)"
_RNN_NOTE = ("A recurrent weight's task error sums over the 28 steps, so the recurrent I-Norm "
             "presets train at a tenth of the MLP's lr_e (README, 'Recurrent presets').")

#: The search-space families by name.
FAMILIES: dict[str, SearchFamily] = {f.name: f for f in [
    SearchFamily("ei", "EI / LayerNorm", EI_SPACE, WIDTH_RANGE),
    SearchFamily("inorm", "I-Norm", INORM_SPACE, WIDTH_RANGE, norm_weight=True),
    SearchFamily("conv_ei", "convolutional EI / LayerNorm", EI_SPACE, CONV_WIDTH_RANGE,
                 _CONV_WIDTH, beyond_paper=True, note=_CONV_NOTE),
    SearchFamily("conv_inorm", "convolutional I-Norm", CONV_INORM_SPACE, CONV_WIDTH_RANGE,
                 _CONV_WIDTH, norm_weight=True, beyond_paper=True, note=_CONV_NOTE),
    SearchFamily("rnn_ei", "recurrent EI / LayerNorm", EI_SPACE, RNN_WIDTH_RANGE, _RNN_WIDTH,
                 beyond_paper=True),
    SearchFamily("rnn_inorm", "recurrent I-Norm", RNN_INORM_SPACE, RNN_WIDTH_RANGE,
                 _RNN_WIDTH, norm_weight=True, beyond_paper=True, note=_RNN_NOTE),
]}


def family_of(preset: str) -> SearchFamily:
    """The search family of `preset` (its zoo entry's `family`)."""
    return FAMILIES[zoo.get(preset).family]


def space_for(preset: str) -> dict:
    """The search space of a preset's family (`EI_SPACE`, `INORM_SPACE` or, for the
    conv I-Norm presets, `CONV_INORM_SPACE`)."""
    return family_of(preset).space


def width_range(preset: str) -> tuple[int, int]:
    """The width range of a preset's sweeps (`WIDTH_RANGE`; conv presets:
    `CONV_WIDTH_RANGE`)."""
    return family_of(preset).width_range


def sample(preset: str, index: int, base_seed: int = 0, sample_width: bool = False) -> dict:
    """Configuration `index` of a sweep: learning rates drawn log-uniformly from the preset's
    space with `np.random.default_rng([base_seed, index])` (so configuration `i` is the same
    draw for every preset of a family and every luminosity), and optionally a width."""
    rng = np.random.default_rng([base_seed, index])
    out = {}
    for name, (low, high, _) in space_for(preset).items():
        out[name] = float(math.exp(rng.uniform(math.log(low), math.log(high))))
    if sample_width:
        low, high = width_range(preset)
        out["width"] = int(rng.integers(low, high + 1))
    return out
