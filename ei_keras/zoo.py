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
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

# The preset table imports no Keras (`ei-keras presets` lists it without a backend) and no
# other ei_keras module at import (`ei_keras.config` and `ei_keras.search_space` import this
# one); the functions that build and compile models import what they need.
if TYPE_CHECKING:
    from ei_keras.models import EINetwork

#: Hidden width of the MLP presets unless set (the reference code's width; `model.width`
#: None means the preset's default, `default_width`) and hidden layers of every preset.
DEFAULT_WIDTH = 234
DEFAULT_DEPTH = 2
#: Filters of the conv presets' last layer when `width` is not set (the first has half).
CONV_DEFAULT_WIDTH = 32
#: Units of the recurrent presets' cell when `width` is not set.
RNN_DEFAULT_WIDTH = 128

#: The presets' training hyperparameters, the bare names of the `opt.*` / `loss.*` keys of
#: `ei_keras.config` (which checks at import that its schema has exactly these).
HYPERPARAMETERS: tuple[str, ...] = (
    "lr_e", "lr_ie", "lr_ei", "momentum", "inhibitory_momentum", "inhibitory_clipnorm",
    "excitatory_clipnorm",
    "exponentiated", "inhibitory_exponentiated", "eg_normalise", "split_bias", "norm_weight",
    "norm_weight_schedule", "norm_weight_horizon", "label_smoothing")


@dataclasses.dataclass(frozen=True)
class NetworkKind:
    """A kind of network the presets build (an MLP, a convolutional network, ...): what
    `build` needs to know of it. A new kind is one model class in `ei_keras.models` and one
    entry in `NETWORK_KINDS`; its presets name it (`Preset.network`).

    Attributes:
        name: the kind's name (`Preset.network`).
        model: the model class's name in `ei_keras.models` (imported when a model is built,
            so that this table imports no Keras).
        default_width: the `width` a preset of this kind builds when none is given.
        sizes: `(width, depth) -> {model argument: value}`: the model's size arguments.
        width: what `width` means for this kind, in words.
    """

    name: str
    model: str
    default_width: int
    sizes: Callable[[int, int], dict]
    width: str


def _mlp_sizes(width: int, depth: int) -> dict:
    return {"hidden_units": (width,) * depth}


def _conv_sizes(width: int, depth: int) -> dict:
    return {"filters": tuple(max(1, width // 2 ** (depth - 1 - i)) for i in range(depth))}


def _rnn_sizes(width: int, depth: int) -> dict:
    return {"units": width}  # one recurrent layer: `depth` is not used


#: The network kinds by name.
NETWORK_KINDS: dict[str, NetworkKind] = {k.name: k for k in [
    NetworkKind("mlp", "EINetwork", DEFAULT_WIDTH, _mlp_sizes, "hidden units per layer"),
    NetworkKind("conv", "EIConvNetwork", CONV_DEFAULT_WIDTH, _conv_sizes,
                "filters of the last conv layer (each earlier layer has half as many)"),
    NetworkKind("rnn", "EIRecurrentNetwork", RNN_DEFAULT_WIDTH, _rnn_sizes,
                "units of the recurrent cell (one recurrent layer; depth not used)"),
]}


@dataclasses.dataclass(frozen=True)
class Preset:
    """One condition of the paper.

    Attributes:
        name: the preset's name.
        figure: where it appears in the paper.
        description: what it is, in the paper's words.
        model: arguments of its kind's model class (`EINetwork`, `EIConvNetwork`, ...)
            beyond the sizes.
        hyperparameters: default training hyperparameters (see the evidence in the README);
            those of a preset with a normalization loss include its weight `norm_weight`.
        network: its kind, a key of `NETWORK_KINDS` (`"mlp"`: `EINetwork`, `"conv"`:
            `EIConvNetwork`).
        family: its search-space family, a key of `ei_keras.search_space.FAMILIES` (the
            presets of one family share a search space and a `tuner_configs/<family>.json`).
    """

    name: str
    figure: str
    description: str
    model: dict
    hyperparameters: dict
    network: str = "mlp"
    family: str = "ei"

    def __post_init__(self):
        if self.network not in NETWORK_KINDS:
            raise ValueError(f"Preset {self.name!r}: unknown network kind {self.network!r}; "
                             f"expected one of {sorted(NETWORK_KINDS)}.")


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
           _INORM_PLAIN_HP, family="inorm"),
    Preset("inorm", "Fig. 3-4", "learned inhibitory normalization (subtractive + divisive), "
           "no error normalization", _inorm("none"), _INORM_PLAIN_HP, family="inorm"),
    Preset("inorm_gradnorm", "Fig. 5", "I-Norm + GradNorm (error normalized exactly as "
           "LayerNorm's backward)", _inorm("full"), _INORM_HP, family="inorm"),
    Preset("inorm_center", "Fig. 6", "I-Norm + error centering only", _inorm("center"),
           _INORM_HP, family="inorm"),
    Preset("inorm_scale", "Fig. 6", "I-Norm + error scaling only", _inorm("scale"), _INORM_HP,
           family="inorm"),
    Preset("inorm_decorrelate", "Fig. 6", "I-Norm + error decorrelation (orthogonalization) only",
           _inorm("decorrelate"), _INORM_HP, family="inorm"),
    Preset("inorm_lateral", "Fig. 7", "I-Norm + lateral inhibition of the error with fixed "
           "random positive weights (Theorem 1)", _inorm("lateral"), _INORM_HP,
           family="inorm"),
    Preset("ei_ln_detached", "(code)", "EI network + LayerNorm forward with the identity "
           "backward: activity normalized, error not (the paper code's normtype_detach)",
           {"hidden_layer": "ei", "normalization": "layer_norm_detached"}, _EI_HP),
]}

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
           {"conv_layer": "ei"}, _CONV_EI_HP, "conv", "conv_ei"),
    Preset("conv_ei_ln", "(conv)", "EI convolutional network + LayerNorm over (H, W, C) before "
           "each ReLU", {"conv_layer": "ei", "normalization": "layer_norm"}, _CONV_EI_HP,
           "conv", "conv_ei"),
    Preset("conv_inorm", "(conv)", "convolutional I-Norm (INormConv2D, statistics over "
           "(H, W, C)), no error normalization", {"conv_layer": "inorm",
                                                  "error_normalization": "none"},
           _CONV_INORM_PLAIN_HP, "conv", "conv_inorm"),
    Preset("conv_inorm_gradnorm", "(conv)", "convolutional I-Norm + GradNorm over (H, W, C)",
           {"conv_layer": "inorm", "error_normalization": "full"}, _CONV_INORM_HP, "conv",
           "conv_inorm"),
]}


#: The recurrent presets (issue 24): `ei_keras.models.EIRecurrentNetwork` on row-sequential
#: images (28 steps of 28 pixels), one recurrent layer of `width` units, last state ->
#: `EIDense(classes)`. Defaults measured (README, "Recurrent presets"): 1 epoch on JAX, r = 0.75,
#: seeds 0-2. rnn_ei at the MLP's lr_e 0.05 diverged at step 806 of 1875 (seed 1; seeds 0, 2
#: trained: 56.7, 48.5 %): 0.02. LayerNorm bounds the state: rnn_ei_ln keeps 0.05.
_RNN_EI_HP = {**_EI_HP, "lr_e": 0.02}
_RNN_EI_LN_HP = dict(_EI_HP)
# Without error normalization the task error of a step flows back to the previous state through
# W_EE^h / delta only (the inhibitory path is stopped, as in INormDense): a positive matrix whose
# Perron root (~ units x mean W_EE ~ 14 at 128 units) over delta grows the error at every step,
# and rnn_inorm diverged at step 2 at lr_e 0.01 (bias 1.6e21 after one step: the growth is in
# the error, not the step size); GradNorm's centring removes that mode. GradNorm at lr_e 0.05
# let lambda L_norm grow to ~400 within the epoch (10 %); at 0.01 seed 2's still grew to 65
# (12.8 %). Clipping each excitatory gradient at norm 1 (Pascanu et al. 2013) keeps both finite
# and lambda L_norm near 1e-4 (GradNorm) / 6e-4 (rnn_inorm).
_RNN_INORM_HP = {**_INORM_HP, "lr_e": 0.01, "excitatory_clipnorm": 1.0}
_RNN_INORM_PLAIN_HP = {**_INORM_PLAIN_HP, "excitatory_clipnorm": 1.0}
#: The I-Norm cell's `epsilon`, the floor of its divisive inhibition (`delta_t >=
#: sqrt(epsilon)`, the semi-saturation constant of divisive normalization): a row of an image
#: is often all black (and the first state is 0), so `u_t = 0`, `delta_t = sqrt(epsilon)` and
#: `z_t = b / sqrt(epsilon)`: at the dense layers' 1e-5 that amplifies the bias and its error
#: 316-fold.
_RNN_INORM_EPSILON = 0.01
_RNN_TRUNK = "28 steps of 28 pixels -> recurrent cell -> last state -> EIDense(10)"

RNN_PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("rnn_ei", "(rnn)", f"EI recurrent network ({_RNN_TRUNK}), no normalization",
           {"cell": "ei"}, _RNN_EI_HP, "rnn", "rnn_ei"),
    Preset("rnn_ei_ln", "(rnn)", "EI recurrent network + LayerNorm of the recurrent "
           "pre-activation at every step", {"cell": "ei", "normalization": "layer_norm"},
           _RNN_EI_LN_HP, "rnn", "rnn_ei"),
    Preset("rnn_inorm", "(rnn)", "recurrent I-Norm (INormRNNCell: subtractive + divisive "
           "inhibition of the recurrent pre-activation at every step), no error normalization",
           {"cell": "inorm", "error_normalization": "none", "epsilon": _RNN_INORM_EPSILON},
           _RNN_INORM_PLAIN_HP, "rnn", "rnn_inorm"),
    Preset("rnn_inorm_gradnorm", "(rnn)", "recurrent I-Norm + GradNorm at every step",
           {"cell": "inorm", "error_normalization": "full", "epsilon": _RNN_INORM_EPSILON},
           _RNN_INORM_HP, "rnn", "rnn_inorm"),
]}


#: Every preset by name: the paper's MLPs (`PRESETS`), then the conv and recurrent presets. A
#: preset of a new kind is one entry here (its `Preset` names its `network` kind and `family`).
REGISTRY: dict[str, Preset] = {**PRESETS, **CONV_PRESETS, **RNN_PRESETS}


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
    """Every preset name (`REGISTRY`): the paper's MLPs (`names`), then the conv presets."""
    return list(REGISTRY)


def get(name: str) -> Preset:
    """The `Preset` called `name`; a clear error naming close matches otherwise."""
    if name not in REGISTRY:
        close = difflib.get_close_matches(str(name), REGISTRY, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(f"Unknown preset {name!r}.{hint} Known presets: {all_names()}")
    return REGISTRY[name]


def has_inorm(name: str) -> bool:
    """Whether preset `name` has I-Norm layers, and so a normalization loss weighted by
    `norm_weight` (its defaults set one)."""
    return "norm_weight" in get(name).hyperparameters


def unused_hyperparameters(name: str) -> tuple[str, ...]:
    """The hyperparameters preset `name` has no use for: without I-Norm layers, the
    normalization loss's weight `norm_weight` and its annealing (`norm_weight_schedule`,
    `norm_weight_horizon`). Setting one is refused (`hyperparameters`,
    `ei_keras.config.inapplicable_keys`) rather than recorded and never used."""
    return () if has_inorm(name) else ("norm_weight", "norm_weight_schedule",
                                       "norm_weight_horizon")


#: The error-normalization modes that `gradnorm_on` changes (`full` and `decorrelate`
#: project the error out of `y` or `z`; `ei_keras.ops.error_normalization`).
GRADNORM_ON_MODES = ("full", "decorrelate")
#: The isolation ablations (`model.*` keys and `INormDense` arguments; off by default), and
#: the network kinds whose I-Norm layers have them (the recurrent cell does not).
ISOLATION_OPTIONS = ("task_trains_inhibitory", "norm_trains_excitatory")
ISOLATION_KINDS = ("mlp", "conv")


def unused_model_options(name: str) -> dict[str, str]:
    """The `model.*` options preset `name` has no use for, each with the reason:
    `gradnorm_on` without GradNorm (`error_normalization` not in `GRADNORM_ON_MODES`),
    the isolation ablations (`ISOLATION_OPTIONS`) without I-Norm layers of a kind that has
    them (`ISOLATION_KINDS`). Setting one is refused (`ei_keras.config.inapplicable_keys`)
    rather than recorded and never used.

    >>> from ei_keras import zoo
    >>> sorted(zoo.unused_model_options("ei"))
    ['gradnorm_on', 'norm_trains_excitatory', 'task_trains_inhibitory']
    >>> zoo.unused_model_options("inorm_gradnorm")
    {}
    """
    out = {}
    if get(name).model.get("error_normalization") not in GRADNORM_ON_MODES:
        out["gradnorm_on"] = (f"preset {name} has no GradNorm: gradnorm_on acts on "
                              f"error_normalization {' or '.join(GRADNORM_ON_MODES)} only")
    if not has_inorm(name):
        out.update({k: f"preset {name} has no I-Norm layer" for k in ISOLATION_OPTIONS})
    elif get(name).network not in ISOLATION_KINDS:
        out.update({k: f"preset {name}'s {get(name).network} I-Norm layers have no isolation "
                    f"ablation (the {' and '.join(ISOLATION_KINDS)} presets have it)"
                    for k in ISOLATION_OPTIONS})
    return out


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
    """The width a preset builds when `model.width` is not set: its kind's (`NETWORK_KINDS`):
    the reference code's `DEFAULT_WIDTH` hidden units for the MLPs,
    `CONV_DEFAULT_WIDTH` last-layer filters for the conv presets.

    >>> from ei_keras import zoo
    >>> zoo.default_width("inorm_gradnorm"), zoo.default_width("conv_inorm_gradnorm")
    (234, 32)
    """
    return NETWORK_KINDS[get(name).network].default_width


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

    num_classes = NUM_CLASSES if num_classes is None else num_classes
    preset = get(name)
    kind = NETWORK_KINDS[preset.network]
    hp = hyperparameters(name, **hyperparameter_overrides)
    width = kind.default_width if width is None else width
    if hp.get("split_bias"):
        model_overrides = {"split_bias": True, **(model_overrides or {})}
    kwargs = {**preset.model, **kind.sizes(width, depth), "seed": seed,
              "output_units": num_classes, **(model_overrides or {})}
    if has_inorm(name):
        kwargs["norm_weight"] = hp.get("norm_weight", 0.01)
    model_class = getattr(importlib.import_module("ei_keras.models"), kind.model)
    model = model_class(name=name, **kwargs)
    model.build((None, input_dim))
    return compile_model(model, hp, jit_compile, steps_per_execution,
                         inhibitory_steps=inhibitory_steps, inhibitory_every=inhibitory_every)
