"""Per-group learning rates for Dale's-principle networks, on every backend.

The paper trains three groups of variables at three rates (SPEC section 3): excitatory
(`W_EE`, `b`: `lr_e`), inhibitory input weights (`W_IE`, `B_IE`: `lr_ie`) and
inhibitory output weights (`W_EI`, `B_EI`: `lr_ei`). `dale_optimizer` builds one
`keras.optimizers.MultiOptimizer` from any Keras optimizer per group and routes each variable
by its path, so there is one optimizer state, threaded through JAX's stateless step like any
other optimizer, saved in `.keras` files, and the `NonNeg` constraints are applied after
every update. `dale_sgd` is the paper's choice: plain SGD in every group.
"""

from __future__ import annotations

import copy
import math

import keras

from ei_keras.backend import DaleSGDUpdate

INHIBITORY_INPUT_PATTERN = r".*/(W_IE|B_IE)"
INHIBITORY_OUTPUT_PATTERN = r".*/(W_EI|B_EI)"
GROUPS = ("excitatory", "inhibitory_input", "inhibitory_output")


def variable_group(variable) -> str:
    """`"excitatory"`, `"inhibitory_input"` or `"inhibitory_output"` for a variable."""
    name = variable.path.rsplit("/", 1)[-1]
    if name in ("W_IE", "B_IE"):
        return "inhibitory_input"
    if name in ("W_EI", "B_EI"):
        return "inhibitory_output"
    return "excitatory"


def _check_rate(name: str, value):
    """A learning rate: a finite number >= 0 (as float) or a Keras schedule (as is)."""
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(
            f"Expected `{name}` to be a finite number >= 0 or a "
            f"keras.optimizers.schedules.LearningRateSchedule. Received: {name}={value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="ei_keras")
class DaleSGD(DaleSGDUpdate, keras.optimizers.MultiOptimizer):
    """The `MultiOptimizer` `dale_sgd` returns: one optimizer per variable group.

    Two things beyond `keras.optimizers.MultiOptimizer`:

    - `apply(grads, variables)` accepts any subset of the variables the optimizer was built
      with (Keras' `MultiOptimizer` insists on all of them), routing each to its group's
      optimizer; the inhibitory plasticity schedules of
      `ei_keras.models.DualLossModel` update the normalization variables alone.
    - How a group's update is carried out is chosen once per backend, at import
      (`ei_keras/backend/`): on eager PyTorch, plain SGD (momentum 0, fixed learning rate,
      per-variable `clipnorm` or none) runs as a few `torch._foreach` kernels per group
      and one in-place clamp of the `NonNeg` variables; everything else, and every other
      backend (which traces the update once), calls the group optimizer's own `apply`.

    `tests/test_fast_paths.py` checks the update against an independent float64 computation
    on every backend.
    """

    def __init__(self, optimizer_map, loss_scale_factor=None, name=None):
        super().__init__(optimizer_map, loss_scale_factor=loss_scale_factor, name=name)
        self.group_map = optimizer_map
        self._group_index = {}

    def optimizer_for(self, variable):
        """The group optimizer that updates `variable` (the optimizer map's choice)."""
        index = self._group_index.get(id(variable))
        if index is None:
            chosen = self.group_map(variable)
            index = next(i for i, o in enumerate(self.optimizers) if o is chosen)
            self._group_index[id(variable)] = index
        return self.optimizers[index]

    def apply(self, grads, trainable_variables=None):
        grads = list(grads)
        if not grads:
            return
        if trainable_variables is None or not self.built:
            return super().apply(grads, trainable_variables)
        groups = [([], []) for _ in self.optimizers]
        for g, v in zip(grads, trainable_variables):
            gs, vs = groups[self.optimizers.index(self.optimizer_for(v))]
            gs.append(g)
            vs.append(v)
        self.apply_groups(list(zip(self.optimizers, groups)))
        self.iterations.assign_add(1)


def _group_optimizer(group: str, optimizer) -> keras.optimizers.Optimizer:
    """A fresh, unbuilt Keras optimizer for `group` from an instance, a name or a config."""
    if isinstance(optimizer, keras.optimizers.Optimizer):
        if optimizer.built:
            raise ValueError(
                f"The {group} optimizer {optimizer.name!r} has already been used (built); "
                "pass a new optimizer instance to dale_optimizer.")
        return optimizer
    try:
        built = keras.optimizers.get(optimizer)
    except (ValueError, TypeError) as e:
        raise ValueError(f"Expected `{group}` to be a Keras optimizer, its name (e.g. 'adam') "
                         f"or its config. Received: {group}={optimizer!r}") from e
    if not isinstance(built, keras.optimizers.Optimizer):
        raise ValueError(f"Expected `{group}` to be a Keras optimizer. Received: "
                         f"{group}={optimizer!r}")
    return built


def dale_optimizer(excitatory="sgd", inhibitory_input=None, inhibitory_output=None,
                   name: str = "dale_optimizer") -> keras.optimizers.MultiOptimizer:
    """One Keras optimizer per variable group of a Dale's-principle network.

    Each group takes any Keras optimizer (an instance, a name such as `"adam"`, or a
    config), with its own learning rate or schedule, clipping, weight decay, EMA or gradient
    accumulation. The `NonNeg` constraints of the Dale weights are applied after every
    update whatever the optimizer.

    Args:
        excitatory: optimizer of `W_EE`, biases and every variable of other layers.
        inhibitory_input: optimizer of `W_IE` and `B_IE` (default: a copy of
            `excitatory`'s configuration).
        inhibitory_output: optimizer of `W_EI` and `B_EI` (default: a copy of
            `inhibitory_input`'s configuration).
        name: name of the returned optimizer.

    Returns:
        A `DaleSGD` (a `keras.optimizers.MultiOptimizer`; the class keeps the name of
        the paper's optimizer) to pass to `model.compile`.

    Raises:
        ValueError: an argument is not a Keras optimizer, or an instance has already been used.

    Example: Adam for the excitatory weights, SGD for the inhibitory ones.

    >>> import keras
    >>> from ei_keras.optimizers import dale_optimizer, group_optimizers
    >>> opt = dale_optimizer(keras.optimizers.Adam(1e-3),
    ...                      inhibitory_input=keras.optimizers.SGD(0.01),
    ...                      inhibitory_output=keras.optimizers.SGD(0.001))
    >>> {g: type(o).__name__ for g, o in group_optimizers(opt).items()}
    {'excitatory': 'Adam', 'inhibitory_input': 'SGD', 'inhibitory_output': 'SGD'}
    """
    groups = {"excitatory": _group_optimizer("excitatory", excitatory)}
    for group, given, like in (("inhibitory_input", inhibitory_input, "excitatory"),
                               ("inhibitory_output", inhibitory_output, "inhibitory_input")):
        if given is None:
            source = groups[like]
            given = type(source).from_config(copy.deepcopy(source.get_config()))
            given.name = f"{type(source).__name__.lower()}_{group}"
        groups[group] = _group_optimizer(group, given)
    if len({id(o) for o in groups.values()}) < 3:
        raise ValueError("Expected one optimizer instance per group; the same instance was "
                         "passed for two groups. Pass separate instances (or leave the "
                         "inhibitory ones out to copy the excitatory one's settings).")
    optimizer_map = keras.optimizers.OptimizerMap(
        default_optimizer=groups["excitatory"],
        optimizer_map={INHIBITORY_INPUT_PATTERN: groups["inhibitory_input"],
                       INHIBITORY_OUTPUT_PATTERN: groups["inhibitory_output"]})
    return DaleSGD(optimizer_map, name=name)


#: `dale_optimizer`'s result type under a name that does not suggest SGD.
DaleOptimizer = DaleSGD


def group_optimizers(optimizer) -> dict[str, keras.optimizers.Optimizer]:
    """`{group: Keras optimizer}` of a `dale_optimizer` / `dale_sgd` optimizer
    (also after loading from a `.keras` file)."""
    groups = getattr(optimizer, "group_map", None)
    if groups is None:  # a MultiOptimizer of files written before DaleSGD: named by group
        return {o.name.removeprefix("sgd_"): o for o in optimizer.optimizers}
    return {"excitatory": groups.default_optimizer,
            "inhibitory_input": groups[INHIBITORY_INPUT_PATTERN],
            "inhibitory_output": groups[INHIBITORY_OUTPUT_PATTERN]}


def dale_sgd(
    lr_e,
    lr_ie,
    lr_ei,
    momentum: float = 0.0,
    inhibitory_momentum: float | None = None,
    clipnorm: float | None = None,
    **kwargs,
) -> keras.optimizers.MultiOptimizer:
    """Plain SGD with one learning rate per variable group (paper: momentum 0, no decay).

    Args:
        lr_e: learning rate of excitatory variables (`W_EE` and biases): a number >= 0 or a
            `keras.optimizers.schedules.LearningRateSchedule`.
        lr_ie: learning rate (or schedule) of `W_IE` and `B_IE`.
        lr_ei: learning rate (or schedule) of `W_EI` and `B_EI`.
        momentum: SGD momentum of the excitatory group.
        inhibitory_momentum: momentum of the two inhibitory groups (default: `momentum`).
        clipnorm: optional per-variable gradient-norm clip for the inhibitory groups.
        **kwargs: other arguments of `keras.optimizers.SGD` for every group
            (`nesterov`, `weight_decay`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `gradient_accumulation_steps`, ...).

    Returns:
        A `DaleSGD` (a `keras.optimizers.MultiOptimizer`) to pass to
        `model.compile`; `dale_optimizer` takes any other optimizer per group.

    Example:

    >>> import keras
    >>> from ei_keras.optimizers import dale_sgd
    >>> opt = dale_sgd(lr_e=0.05, lr_ie=0.01, lr_ei=0.001)
    >>> [o.name for o in opt.optimizers]
    ['sgd_inhibitory_input', 'sgd_inhibitory_output', 'sgd_excitatory']
    >>> decay = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=100,
    ...                                                     decay_rate=0.5)
    >>> opt = dale_sgd(decay, 0.01, 0.001, gradient_accumulation_steps=4)
    """
    lr_e, lr_ie, lr_ei = (_check_rate(n, v) for n, v in
                          (("lr_e", lr_e), ("lr_ie", lr_ie), ("lr_ei", lr_ei)))
    for n, v in (("momentum", momentum), ("inhibitory_momentum", inhibitory_momentum)):
        if v is not None and not 0.0 <= v < 1.0:
            raise ValueError(f"Expected 0 <= {n} < 1. Received: {n}={v!r}")
    if "name" in kwargs or "learning_rate" in kwargs:
        raise TypeError("dale_sgd sets `learning_rate` per group (lr_e, lr_ie, lr_ei); "
                        "`name` is its own.")
    i_mom = momentum if inhibitory_momentum is None else inhibitory_momentum
    kw = {"clipnorm": clipnorm} if clipnorm else {}
    return dale_optimizer(
        keras.optimizers.SGD(lr_e, momentum=momentum, name="sgd_excitatory", **kwargs),
        keras.optimizers.SGD(lr_ie, momentum=i_mom, name="sgd_inhibitory_input", **kw,
                             **kwargs),
        keras.optimizers.SGD(lr_ei, momentum=i_mom, name="sgd_inhibitory_output", **kw,
                             **kwargs),
        name="dale_sgd")


def group_learning_rates(optimizer) -> dict[str, float]:
    """The current learning rate of each group of a `dale_optimizer` optimizer (also
    after loading; a schedule's value at the group's current iteration)."""
    return {group: float(keras.ops.convert_to_numpy(opt.learning_rate))
            for group, opt in group_optimizers(optimizer).items()}
