"""Named presets: the paper's conditions as ready, compiled models.

>>> from ei_keras import zoo
>>> zoo.names()[:3]
['ei', 'ei_ln', 'e_ln']
>>> model = zoo.build("inorm_gradnorm", width=64, seed=0)

Every paper preset (`names`) is a `784 -> width -> width -> classes`
`ei_keras.models.EINetwork` (10 classes for Fashion-MNIST, 20 when the label also says
the contrast) with an EI readout (`ni = 1`), trained with plain SGD at three learning rates
(`lr_e`, `lr_ie`, `lr_ei`; `ei_keras.optimizers.dale_sgd`) on softmax
cross-entropy with label smoothing. The convolutional presets (`conv_names`, not in the
paper) are `ei_keras.models.EIConvNetwork` models trained the same way: two 5x5
stride-2 'same' convolutions (`width // 2` and `width` filters; 16 and 32 by default)
-> `EIDense(classes)`.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import TYPE_CHECKING

from ei_keras.config import DEFAULT_DEPTH, DEFAULT_WIDTH, HYPERPARAMETERS

# The preset table imports no Keras (`ei-keras presets` lists it without a backend); the
# functions that build and compile models import what they need.
if TYPE_CHECKING:
    from ei_keras.models import EINetwork


@dataclasses.dataclass(frozen=True)
class Preset:
    """One condition of the paper.

    Attributes:
        name: the preset's name.
        figure: where it appears in the paper.
        description: what it is, in the paper's words.
        model: `EINetwork` (or `EIConvNetwork`) arguments.
        hyperparameters: default training hyperparameters (see the evidence in the README).
        network: `"mlp"` (`EINetwork`), `"conv"` (`EIConvNetwork`) or `"rnn"`
            (`EIRecurrentNetwork`).
    """

    name: str
    figure: str
    description: str
    model: dict
    hyperparameters: dict
    network: str = "mlp"


# Default hyperparameters were chosen by measurement (README "I-Norm presets on their
# defaults"): plain SGD, momentum 0 (the paper's optimizer), lambda = 0.01 (the paper's stated
# default). I-Norm presets clip each inhibitory variable's gradient norm at 0.1 (a stability
# guard, not in the reference code): without it a large excitatory step makes the quartic
# normalization loss overshoot and the divisive population collapse or explode.
_EI_HP = {"lr_e": 0.05, "lr_ie": 0.01, "lr_ei": 0.001, "momentum": 0.0}
_INORM_HP = {"lr_e": 0.05, "lr_ie": 0.3, "lr_ei": 0.1, "momentum": 0.0, "norm_weight": 0.01,
             "inhibitory_clipnorm": 0.1}
# Without error normalization the task error is not centred and the excitatory drift outruns
# the inhibitory populations at lr_e >= 0.05 (measured): a smaller lr_e and faster inhibition.
_INORM_PLAIN_HP = {**_INORM_HP, "lr_e": 0.01, "lr_ie": 1.0}


def _inorm(mode: str, **extra) -> dict:
    return {"hidden_layer": "inorm", "error_normalization": mode, **extra}


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("ei", "Fig. 2a", "EI network (Dale's principle), no normalization",
           {"hidden_layer": "ei"}, _EI_HP),
    Preset("ei_ln", "Fig. 2a", "EI network + hard-coded LayerNorm before each ReLU (the "
           "reference condition of every comparison)",
           {"hidden_layer": "ei", "normalization": "layer_norm"}, _EI_HP),
    Preset("e_ln", "Fig. 2b", "excitatory-only network + LayerNorm (no inhibitory units)",
           {"hidden_layer": "e", "normalization": "layer_norm"}, _EI_HP),
    Preset("inorm_sub", "Fig. 3b", "I-Norm with the subtractive population only (no divisive "
           "inhibition), no error normalization", _inorm("none", subtractive_only=True),
           _INORM_PLAIN_HP),
    Preset("inorm", "Fig. 3-4", "learned inhibitory normalization (subtractive + divisive), "
           "no error normalization", _inorm("none"), _INORM_PLAIN_HP),
    Preset("inorm_gradnorm", "Fig. 5", "I-Norm + GradNorm (error normalized exactly as "
           "LayerNorm's backward)", _inorm("full"), _INORM_HP),
    Preset("inorm_center", "Fig. 6", "I-Norm + error centering only", _inorm("center"),
           _INORM_HP),
    Preset("inorm_scale", "Fig. 6", "I-Norm + error scaling only", _inorm("scale"), _INORM_HP),
    Preset("inorm_decorrelate", "Fig. 6", "I-Norm + error decorrelation (orthogonalization) only",
           _inorm("decorrelate"), _INORM_HP),
    Preset("inorm_lateral", "Fig. 7", "I-Norm + lateral inhibition of the error with fixed "
           "random positive weights (Theorem 1)", _inorm("lateral"), _INORM_HP),
    Preset("ei_ln_detached", "(code)", "EI network + LayerNorm forward with the identity "
           "backward: activity normalized, error not (the paper code's normtype_detach)",
           {"hidden_layer": "ei", "normalization": "layer_norm_detached"}, _EI_HP),
]}

#: Filters of the conv presets' last layer when `width` is not set (the first has half).
CONV_DEFAULT_WIDTH = 32
# Conv presets (README, "Convolutional presets"; 4096 images, 2 epochs, lr_e in {0.005, 0.01,
# 0.02, 0.05}, then 3 seeds): EI and EI + LN keep the MLP settings. A conv weight is shared by
# every location, so its task gradient sums over the map and I-Norm needs a smaller lr_e than
# the MLP: at 0.05 the normalization loss of conv_inorm_gradnorm grows to 0.25 (lambda 0.01) in
# two epochs and conv_inorm diverges; at 0.02 conv_inorm's reaches 49. Chosen: the largest lr_e
# whose epoch-mean normalization loss (lambda L_norm) stays at about 1e-3 or below (max
# 1.04e-3 over 3 seeds x 2 epochs; conv_inorm_gradnorm seed 0: 67.1 % at 0.005, 69.8 % at 0.01).
_CONV_EI_HP = dict(_EI_HP)
_CONV_INORM_HP = {**_INORM_HP, "lr_e": 0.01}
_CONV_INORM_PLAIN_HP = {**_INORM_PLAIN_HP, "lr_e": 0.005}
_CONV_TRUNK = "conv 5x5 s2 (width/2 filters) -> conv 5x5 s2 (width) -> EIDense(10)"

CONV_PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("conv_ei", "(conv)", f"EI convolutional network ({_CONV_TRUNK}), no normalization",
           {"conv_layer": "ei"}, _CONV_EI_HP, "conv"),
    Preset("conv_ei_ln", "(conv)", "EI convolutional network + LayerNorm over (H, W, C) before "
           "each ReLU", {"conv_layer": "ei", "normalization": "layer_norm"}, _CONV_EI_HP,
           "conv"),
    Preset("conv_inorm", "(conv)", "convolutional I-Norm (INormConv2D, statistics over "
           "(H, W, C)), no error normalization", {"conv_layer": "inorm",
                                                  "error_normalization": "none"},
           _CONV_INORM_PLAIN_HP, "conv"),
    Preset("conv_inorm_gradnorm", "(conv)", "convolutional I-Norm + GradNorm over (H, W, C)",
           {"conv_layer": "inorm", "error_normalization": "full"}, _CONV_INORM_HP, "conv"),
]}


#: Units of the recurrent presets' cell when `width` is not set.
RNN_DEFAULT_WIDTH = 128
#: The recurrent presets (issue 24): `ei_keras.models.EIRecurrentNetwork` on row-sequential
#: images (28 steps of 28 pixels), one recurrent layer of `width` units, last state ->
#: `EIDense(classes)`. Defaults measured (README, "Recurrent presets"): 1 epoch on JAX.
# rnn_ei at the MLP's lr_e 0.05 diverged at step 806 of 1875 (seed 1; seeds 0, 2 trained:
# 56.7, 48.5 %): 0.02. LayerNorm bounds the state, so rnn_ei_ln keeps 0.05 (3 seeds trained).
_RNN_EI_HP = {**_EI_HP, "lr_e": 0.02}
_RNN_EI_LN_HP = dict(_EI_HP)
# GradNorm: lr_e 0.05 let the normalization loss grow to ~400 within the epoch (test accuracy
# 10 %); 8192 images at lr_e 0.005 / 0.01 / 0.02: 37.7 / 39.3 / 35.1 % (seed 0, r = 0.75). At
# 0.01 without a clip seed 2's normalization loss still grew to 65 (12.8 %); with rnn_inorm's
# excitatory clip (below) every seed keeps it near 1e-4.
_RNN_INORM_HP = {**_INORM_HP, "lr_e": 0.01, "excitatory_clipnorm": 1.0}
# Without error normalization the task error of a step flows back to the previous state through
# W_EE^h / delta only (the inhibitory path is stopped, as in INormDense): a positive matrix whose
# Perron root (~ units x mean W_EE ~ 14 at 128 units) over delta grows the error at every step,
# and rnn_inorm diverged at step 2 at every lr_e (gradients ~1e21 after one step). GradNorm's
# centring removes that mode. Clipping each excitatory gradient at norm 1 (Pascanu et al. 2013)
# keeps it finite: 26.5 % after 1 epoch at r = 0.75 (seed 0), against 10 % (diverged) without.
_RNN_INORM_PLAIN_HP = {**_INORM_PLAIN_HP, "excitatory_clipnorm": 1.0}
#: The I-Norm cell's `epsilon`, the floor of its divisive inhibition (`delta_t >=
#: sqrt(epsilon)`, the semi-saturation constant of divisive normalization): a row of an image
#: is often all black (and the first state is 0), so `u_t = 0`, `delta_t = sqrt(epsilon)` and
#: `z_t = b / sqrt(epsilon)`; at the dense layers' 1e-5 that amplifies the bias and its
#: gradient 316-fold and rnn_inorm diverged at step 2 (measured, README "Recurrent presets").
_RNN_INORM_EPSILON = 0.01
_RNN_TRUNK = "28 steps of 28 pixels -> recurrent cell -> last state -> EIDense(10)"

RNN_PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("rnn_ei", "(rnn)", f"EI recurrent network ({_RNN_TRUNK}), no normalization",
           {"cell": "ei"}, _RNN_EI_HP, "rnn"),
    Preset("rnn_ei_ln", "(rnn)", "EI recurrent network + LayerNorm of the recurrent "
           "pre-activation at every step", {"cell": "ei", "normalization": "layer_norm"},
           _RNN_EI_LN_HP, "rnn"),
    Preset("rnn_inorm", "(rnn)", "recurrent I-Norm (INormRNNCell: subtractive + divisive "
           "inhibition of the recurrent pre-activation at every step), no error normalization",
           {"cell": "inorm", "error_normalization": "none", "epsilon": _RNN_INORM_EPSILON},
           _RNN_INORM_PLAIN_HP, "rnn"),
    Preset("rnn_inorm_gradnorm", "(rnn)", "recurrent I-Norm + GradNorm at every step",
           {"cell": "inorm", "error_normalization": "full", "epsilon": _RNN_INORM_EPSILON},
           _RNN_INORM_HP, "rnn"),
]}


def names() -> list[str]:
    """The paper's preset names (the MLPs): its figures' conditions in the paper's order, then
    `ei_ln_detached` (an option of the paper's code, in no figure)."""
    return list(PRESETS)


def conv_names() -> list[str]:
    """The convolutional preset names (an extension: not conditions of the paper)."""
    return list(CONV_PRESETS)


def rnn_names() -> list[str]:
    """The recurrent preset names (an extension: not conditions of the paper)."""
    return list(RNN_PRESETS)


def all_names() -> list[str]:
    """Every preset name: the paper's MLPs (`names`), then the conv and recurrent presets."""
    return names() + conv_names() + rnn_names()


def get(name: str) -> Preset:
    """The `Preset` called `name`; a clear error naming close matches otherwise."""
    every = {**PRESETS, **CONV_PRESETS, **RNN_PRESETS}
    if name not in every:
        close = difflib.get_close_matches(str(name), every, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(f"Unknown preset {name!r}.{hint} Known presets: {all_names()}")
    return every[name]


def has_inorm(name: str) -> bool:
    """Whether preset `name` has I-Norm layers (and so a normalization loss, weighted by
    `norm_weight`)."""
    model = get(name).model
    return "inorm" in (model.get("hidden_layer"), model.get("conv_layer"), model.get("cell"))


def unused_hyperparameters(name: str) -> tuple[str, ...]:
    """The hyperparameters preset `name` has no use for: `norm_weight` without I-Norm
    layers. Setting one is refused (`hyperparameters`,
    `ei_keras.config.inapplicable_keys`) rather than recorded and never used."""
    return () if has_inorm(name) else ("norm_weight",)


def hyperparameters(name: str, **overrides) -> dict:
    """The preset's default hyperparameters with `overrides` applied (unknown keys and
    `unused_hyperparameters` rejected)."""
    preset = get(name)
    hp = {"label_smoothing": 0.1, "inhibitory_momentum": None, "inhibitory_clipnorm": None,
          **preset.hyperparameters}
    unknown = set(overrides) - set(HYPERPARAMETERS)
    if unknown:
        raise ValueError(f"Unknown hyperparameter(s) {sorted(unknown)}. Known: {HYPERPARAMETERS}")
    unused = [k for k in unused_hyperparameters(name) if overrides.get(k) is not None]
    if unused:
        inorm = ", ".join(n for n in all_names() if has_inorm(n))
        raise ValueError(f"Preset {name!r} has no I-Norm layer, so {unused[0]} is never used. "
                         f"Received: {unused[0]}={overrides[unused[0]]!r}; leave it out, or "
                         f"choose an I-Norm preset ({inorm}).")
    # Off unless set: recorded only when on, so a run's fingerprint (the resolved
    # hyperparameters) is the same whether they are left out or set false.
    hp.update({k: v for k, v in overrides.items()
               if v is not None and not (k in EG_OPTIONS and v is False)})
    return hp


#: The exponentiated-gradient options (`opt.*` keys, all off by default; README "EG").
EG_OPTIONS = ("exponentiated", "inhibitory_exponentiated", "eg_normalise", "split_bias")


def compile_model(model, hp: dict, jit_compile="auto",
                  steps_per_execution: int = 1, inhibitory_steps: int = 1,
                  inhibitory_every: int = 1) -> EINetwork:
    """Compile `model` with the paper's optimizer, loss and accuracy metric.

    `inhibitory_steps` / `inhibitory_every`: the inhibitory plasticity schedule of the
    dual-loss step (`ei_keras.models.DualLossModel`); 1 and 1 are the paper's step."""
    import keras

    from ei_keras.losses import SparseSmoothedCrossentropy
    from ei_keras.optimizers import dale_sgd

    model.compile(
        optimizer=dale_sgd(hp["lr_e"], hp["lr_ie"], hp["lr_ei"], momentum=hp["momentum"],
                           inhibitory_momentum=hp.get("inhibitory_momentum"),
                           clipnorm=hp.get("inhibitory_clipnorm"),
                           excitatory_clipnorm=hp.get("excitatory_clipnorm"),
                           exponentiated=hp.get("exponentiated", False),
                           inhibitory_exponentiated=hp.get("inhibitory_exponentiated", False),
                           eg_normalise=hp.get("eg_normalise", False)),
        loss=SparseSmoothedCrossentropy(hp["label_smoothing"]),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
        inhibitory_steps=inhibitory_steps,
        inhibitory_every=inhibitory_every,
    )
    return model


def default_width(name: str) -> int:
    """The width a preset builds when `model.width` is not set: the reference code's
    `ei_keras.config.DEFAULT_WIDTH` hidden units for the MLPs,
    `CONV_DEFAULT_WIDTH` last-layer filters for the conv presets.

    >>> from ei_keras import zoo
    >>> zoo.default_width("inorm_gradnorm"), zoo.default_width("conv_inorm_gradnorm")
    (234, 32)
    """
    network = get(name).network
    if network == "rnn":
        return RNN_DEFAULT_WIDTH
    return CONV_DEFAULT_WIDTH if network == "conv" else DEFAULT_WIDTH


def build(
    name: str,
    width: int | None = None,
    depth: int = DEFAULT_DEPTH,
    seed: int | None = None,
    input_dim: int = 784,
    jit_compile="auto",
    steps_per_execution: int = 1,
    model_overrides: dict | None = None,
    inhibitory_steps: int = 1,
    inhibitory_every: int = 1,
    num_classes: int | None = None,
    **hyperparameter_overrides,
) -> EINetwork:
    """A built, compiled model of preset `name`.

    Args:
        name: a preset name (`names`).
        width: hidden width (paper sweep: 100-500). Conv presets: filters of the last conv
            layer, each earlier layer has half as many. None: `default_width`. The
            I-Norm conv presets' SVD initialisation needs `width // 2 <= 25` (the first
            layer's 5x5x1 patch); a wider first layer is a `ValueError` naming the fix.
        depth: number of hidden (conv) layers (paper: 2); the recurrent presets have one
            recurrent layer (not used).
        seed: initialisation seed (same weights on every backend).
        input_dim: input width (784 for flattened Fashion-MNIST).
        jit_compile: passed to `compile`.
        steps_per_execution: passed to `compile` (torch supports only 1).
        model_overrides: extra `EINetwork` arguments (e.g. `{"trainable_ei": False}`).
        inhibitory_steps: normalization-loss updates per batch (`compile` argument of the
            dual-loss step; 1 = the paper's step).
        inhibitory_every: update the inhibitory variables on one batch in this many (1 =
            every batch).
        num_classes: output units, one per label: the data's count
            (`ei_keras.data.Shift.num_classes`; None: Fashion-MNIST's 10).
        **hyperparameter_overrides: `lr_e`, `lr_ie`, `lr_ei`, `momentum`,
            `inhibitory_momentum`, `norm_weight`, `label_smoothing` and the other
            `opt.*` / `loss.*` keys (`exponentiated`, `split_bias`, ...).

    Returns:
        A compiled `EINetwork` (conv presets: `EIConvNetwork`).
    """
    from ei_keras.data.fashion_mnist import NUM_CLASSES
    from ei_keras.models import EIConvNetwork, EINetwork, EIRecurrentNetwork

    num_classes = NUM_CLASSES if num_classes is None else num_classes
    preset = get(name)
    hp = hyperparameters(name, **hyperparameter_overrides)
    width = default_width(name) if width is None else width
    if hp.get("split_bias"):
        model_overrides = {"split_bias": True, **(model_overrides or {})}
    if preset.network == "rnn":
        kwargs = {**preset.model, "units": width, "seed": seed, "output_units": num_classes,
                  **(model_overrides or {})}
        if kwargs.get("cell") == "inorm":
            kwargs["norm_weight"] = hp.get("norm_weight", 0.01)
        model = EIRecurrentNetwork(name=name, **kwargs)
    elif preset.network == "conv":
        filters = tuple(max(1, width // 2 ** (depth - 1 - i)) for i in range(depth))
        kwargs = {**preset.model, "filters": filters, "seed": seed,
                  "output_units": num_classes, **(model_overrides or {})}
        if kwargs.get("conv_layer") == "inorm":
            kwargs["norm_weight"] = hp.get("norm_weight", 0.01)
        model = EIConvNetwork(name=name, **kwargs)
    else:
        kwargs = {**preset.model, "hidden_units": (width,) * depth, "seed": seed,
                  "output_units": num_classes, **(model_overrides or {})}
        if kwargs.get("hidden_layer") == "inorm":
            kwargs["norm_weight"] = hp.get("norm_weight", 0.01)
        model = EINetwork(name=name, **kwargs)
    model.build((None, input_dim))
    return compile_model(model, hp, jit_compile, steps_per_execution,
                         inhibitory_steps=inhibitory_steps, inhibitory_every=inhibitory_every)
