"""The hyperparameter ranges of the paper's sweeps (SPEC section 3), shared by the recipes and
the KerasTuner configurations in `tuner_configs/`.

The paper's numeric ranges were lost in its text; these were chosen by measurement on this
project's networks (README, "I-Norm presets on their defaults"): they bracket the learning
rates at which each family trains within 3 epochs, and extend past them on both sides so that a
sweep also samples the configurations where a family is fragile — as the paper's
30-configuration sweeps do.
"""

from __future__ import annotations

import math

import numpy as np

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
#: The recurrent I-Norm presets (`rnn_inorm*`): the task error of a recurrent weight sums over
#: the 28 steps, and GradNorm's normalization loss grew at lr_e 0.05 (zoo, "Recurrent presets":
#: default 0.01). As the conv range: the MLP's scaled by 1/10, bracketing the default and
#: reaching the fragile side. The recurrent EI presets keep `EI_SPACE` (default lr_e 0.05).
RNN_INORM_SPACE = {**INORM_SPACE, "lr_e": (1e-3, 0.05, "log")}
WIDTH_RANGE = (100, 500)
#: Recurrent presets: units of the cell (default 128; sequence models of row-sequential MNIST
#: use 64-256).
RNN_WIDTH_RANGE = (64, 256)
#: Conv presets: filters of the last conv layer (the first has half; default 32). The conv I-Norm
#: layers' SVD initialisation needs `width // 2 <= 25` (a 5x5x1 patch has 25 pixels).
CONV_WIDTH_RANGE = (16, 48)


def is_conv(preset: str) -> bool:
    """Whether `preset` is a convolutional preset (its zoo entry's `network`)."""
    from ei_keras import zoo

    return zoo.get(preset).network == "conv"


def is_rnn(preset: str) -> bool:
    """Whether `preset` is a recurrent preset (its zoo entry's `network`)."""
    from ei_keras import zoo

    return zoo.get(preset).network == "rnn"


def space_for(preset: str) -> dict:
    """The search space of a preset's family (`EI_SPACE`, `INORM_SPACE` or, for the
    conv / recurrent I-Norm presets, `CONV_INORM_SPACE` / `RNN_INORM_SPACE`)."""
    if "inorm" not in preset:
        return EI_SPACE
    if is_rnn(preset):
        return RNN_INORM_SPACE
    return CONV_INORM_SPACE if is_conv(preset) else INORM_SPACE


def width_range(preset: str) -> tuple[int, int]:
    """The width range of a preset's sweeps (`WIDTH_RANGE`; conv presets:
    `CONV_WIDTH_RANGE`; recurrent presets: `RNN_WIDTH_RANGE`)."""
    if is_rnn(preset):
        return RNN_WIDTH_RANGE
    return CONV_WIDTH_RANGE if is_conv(preset) else WIDTH_RANGE


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
