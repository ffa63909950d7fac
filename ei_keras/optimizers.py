"""Per-group learning rates for Dale's-principle networks, on every backend.

The paper trains three groups of variables at three rates (SPEC section 3): excitatory
(`W_EE`, `b`: `lr_e`), inhibitory input weights (`W_IE`, `B_IE`: `lr_ie`) and
inhibitory output weights (`W_EI`, `B_EI`: `lr_ei`). `dale_optimizer` builds one
`keras.optimizers.MultiOptimizer` from any Keras optimizer per group and routes each variable
by its path, so there is one optimizer state, threaded through JAX's stateless step like any
other optimizer, saved in `.keras` files, and the `NonNeg` constraints are applied after
every update. `dale_sgd` is the paper's choice: plain SGD in every group.

`ExponentiatedSGD` and `ExponentiatedAdam` are the exponentiated-gradient (EG)
optimizers, `w <- w * exp(-lr * sign(w) * u)`: sign-preserving without any constraint, for
any group (`dale_sgd(exponentiated=True)`, or an instance in `dale_optimizer`).
"""

from __future__ import annotations

import copy
import math

import keras
import numpy as np
from keras import ops

from ei_keras import roles
from ei_keras.backend import DaleSGDUpdate

#: The variable groups, one optimizer (and learning rate) each (`ei_keras.roles.GROUPS`).
GROUPS = roles.GROUPS
#: The optimizer-map keys of the two inhibitory groups in `.keras` files written before the
#: groups were routed by role (`RoleOptimizerMap` reads them).
_LEGACY_PATTERNS = {r".*/(W_IE|B_IE)": "inhibitory_input", r".*/(W_EI|B_EI)": "inhibitory_output"}


def variable_group(variable) -> str:
    """`"excitatory"`, `"inhibitory_input"` or `"inhibitory_output"` for a variable: the
    group of the role its layer declared (`ei_keras.roles.group_of`)."""
    return roles.group_of(variable)


@keras.saving.register_keras_serializable(package="ei_keras")
class RoleOptimizerMap(keras.optimizers.OptimizerMap):
    """A `keras.optimizers.OptimizerMap` keyed by variable group, not by variable path.

    A variable goes to the optimizer of its group (`ei_keras.roles.group_of`: the role its
    layer declared), the `default_optimizer` when no optimizer is mapped to that group: a
    user layer whose variable is declared `roles.INHIBITORY_INPUT` trains at `lr_ie` whatever
    it is called. Keys are group names (`GROUPS`, not regexes). A map of an older file (keys
    the path patterns of `W_IE`/`B_IE` and `W_EI`/`B_EI`) is read as the same two groups,
    in the same order (so the optimizer state of the file lines up).
    """

    def __init__(self, default_optimizer, optimizer_map=None):
        optimizer_map = {_LEGACY_PATTERNS.get(k, k): o for k, o in (optimizer_map or {}).items()}
        unknown = sorted(set(optimizer_map) - set(GROUPS))
        if unknown:
            raise ValueError(f"Expected optimizer-map keys among the groups {GROUPS}. "
                             f"Received: {unknown}")
        super().__init__(default_optimizer, optimizer_map)

    def __getitem__(self, group):
        return self._optimizer_map.get(group, self.default_optimizer)

    def __call__(self, variable):
        return self[roles.group_of(variable)]


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
      optimizer; a `None` gradient leaves its variable alone (so `stateless_apply` and a
      `keras.optimizers.LossScaleOptimizer` around it update subsets too); the inhibitory
      plasticity schedules of
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
        if type(optimizer_map) is keras.optimizers.OptimizerMap:  # a file written before roles
            optimizer_map = RoleOptimizerMap(optimizer_map.default_optimizer,
                                             dict(optimizer_map.items()))
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
        if not self.built or (trainable_variables is None and
                              len(grads) != len(self._trainable_variables)):
            return super().apply(grads, trainable_variables)
        if trainable_variables is None:
            trainable_variables = self._trainable_variables
        groups = [([], []) for _ in self.optimizers]
        for g, v in zip(grads, trainable_variables):
            if g is None:  # no gradient, no update (how the stateless API passes a subset)
                continue
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
        return _check_group_rate(group, optimizer)
    try:
        built = keras.optimizers.get(optimizer)
    except (ValueError, TypeError) as e:
        raise ValueError(f"Expected `{group}` to be a Keras optimizer, its name (e.g. 'adam') "
                         f"or its config. Received: {group}={optimizer!r}") from e
    if not isinstance(built, keras.optimizers.Optimizer):
        raise ValueError(f"Expected `{group}` to be a Keras optimizer. Received: "
                         f"{group}={optimizer!r}")
    return _check_group_rate(group, built)


def _check_group_rate(group: str, optimizer: keras.optimizers.Optimizer):
    """`optimizer` if its learning rate is a schedule or a finite number >= 0 (Keras itself
    accepts a negative one, which would climb the loss)."""
    rate = optimizer.get_config().get("learning_rate")
    if isinstance(rate, dict):  # a serialized schedule
        return optimizer
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) \
            or rate < 0:
        shown = f"{rate:.7g}" if isinstance(rate, (int, float)) else repr(rate)  # float32 -> 0.1
        raise ValueError(
            f"Expected the `{group}` optimizer's learning_rate to be a finite number >= 0 or a "
            f"keras.optimizers.schedules.LearningRateSchedule. Received: learning_rate={shown}")
    return optimizer


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
        ValueError: an argument is not a Keras optimizer, an instance has already been used,
            or a learning rate is negative or not finite (0 freezes a group).

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
    optimizer_map = RoleOptimizerMap(
        default_optimizer=groups["excitatory"],
        optimizer_map={"inhibitory_input": groups["inhibitory_input"],
                       "inhibitory_output": groups["inhibitory_output"]})
    return DaleSGD(optimizer_map, name=name)


#: `dale_optimizer`'s result type under a name that does not suggest SGD.
DaleOptimizer = DaleSGD


def group_optimizers(optimizer) -> dict[str, keras.optimizers.Optimizer]:
    """`{group: Keras optimizer}` of a `dale_optimizer` / `dale_sgd` optimizer
    (also after loading from a `.keras` file)."""
    groups = getattr(optimizer, "group_map", None)
    if groups is None:  # a MultiOptimizer of files written before DaleSGD: named by group
        return {o.name.removeprefix("sgd_"): o for o in optimizer.optimizers}
    return {group: groups[group] for group in GROUPS}


def dale_sgd(
    lr_e,
    lr_ie,
    lr_ei,
    momentum: float = 0.0,
    inhibitory_momentum: float | None = None,
    clipnorm: float | None = None,
    exponentiated: bool = False,
    inhibitory_exponentiated: bool = False,
    eg_normalise: bool = False,
    excitatory_clipnorm: float | None = None,
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
        exponentiated: the excitatory group takes the exponentiated-gradient step
            (`ExponentiatedSGD`, same learning rate and momentum) instead of SGD (the
            paper code's `opt.exponentiated`).
        inhibitory_exponentiated: the two inhibitory groups take the EG step.
        eg_normalise: the EG groups hold each variable's L1 norm at its first-update value
            (the paper code's `opt.eg_normalise`; `ExponentiatedSGD`'s `normalise`).
        excitatory_clipnorm: optional per-variable gradient-norm clip for the excitatory group
            (the recurrent I-Norm preset's guard against exploding errors through time).
        **kwargs: other arguments of `keras.optimizers.SGD` for every group
            (`nesterov`, `weight_decay`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `gradient_accumulation_steps`, ...).

    Returns:
        A `DaleSGD` (a `keras.optimizers.MultiOptimizer`) to pass to
        `model.compile`; `dale_optimizer` takes any other optimizer per group.

    Raises:
        ValueError: a learning rate that is negative, NaN, infinite or not a number (0
            freezes a group), or a momentum outside [0, 1).

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

    def group(eg: bool, lr, mom, name, **more):
        if eg:
            return ExponentiatedSGD(lr, momentum=mom, normalise=bool(eg_normalise),
                                    name=f"exponentiated_sgd_{name}", **more, **kwargs)
        return keras.optimizers.SGD(lr, momentum=mom, name=f"sgd_{name}", **more, **kwargs)

    return dale_optimizer(
        group(exponentiated, lr_e, momentum, "excitatory",
              **({"clipnorm": excitatory_clipnorm} if excitatory_clipnorm else {})),
        group(inhibitory_exponentiated, lr_ie, i_mom, "inhibitory_input", **kw),
        group(inhibitory_exponentiated, lr_ei, i_mom, "inhibitory_output", **kw),
        name="dale_sgd")


def group_learning_rates(optimizer) -> dict[str, float]:
    """The current learning rate of each group of a `dale_optimizer` optimizer (also
    after loading; a schedule's value at the group's current iteration)."""
    return {group: float(keras.ops.convert_to_numpy(opt.learning_rate))
            for group, opt in group_optimizers(optimizer).items()}


# ---------------------------------------------------------------------------------------------
# Exponentiated gradient (EG): the sign-preserving update of Dale's-principle networks.


class _Exponentiated(keras.optimizers.Optimizer):
    """What the EG optimizers share: the multiplicative step, its safeguards and the
    paper code's normalization (`normalise`); subclasses give the step's direction `u`.

    `w <- sign(w) * clip(|w| * exp(-lr * sign(w) * u), tiny, huge)`: the magnitude is
    multiplied, so a weight keeps its sign without any constraint. `tiny` / `huge` are the
    dtype's smallest normal and largest finite numbers: an exponent past float range neither
    turns a weight into 0 (which no EG step could move again) nor into infinity. A weight that
    is exactly 0 has `sign(w) = 0` and stays 0 (as in the paper code, where
    `torch.sign(0) = 0`): start EG weights away from 0.
    """

    def __init__(self, learning_rate, normalise: bool = False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        if not isinstance(normalise, bool):
            raise ValueError(f"Expected `normalise` to be a bool. Received: "
                             f"normalise={normalise!r}")
        self.normalise = normalise

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        # The L1 norm each variable is held at (``normalise``): taken at the first update, as
        # the paper code does; 0 until then. Optimizer state, so saved with the model.
        self.l1_norms = [self.add_variable(shape=(), dtype=v.dtype, initializer="zeros",
                                           name=f"{v.name}_l1_norm")
                         for v in variables] if self.normalise else []

    def exponentiated_step(self, variable, direction, learning_rate) -> None:
        """`variable <- variable * exp(-learning_rate * sign(variable) * direction)`, then
        (`normalise`) rescaled to the L1 norm it had at the first update."""
        dtype = variable.dtype
        info = np.finfo(keras.backend.standardize_dtype(dtype))
        tiny, huge = float(info.tiny), float(info.max)
        sign = ops.sign(variable)
        size = ops.abs(variable)
        exponent = -ops.cast(learning_rate, dtype) * sign * direction
        if not self.normalise:
            self.assign(variable, sign * ops.clip(size * ops.exp(exponent), tiny, huge))
            return
        c = self.l1_norms[self._get_variable_index(variable)]
        first = ops.cast(ops.equal(c, 0.0), dtype)  # 1 at the first update, else 0
        self.assign(c, c + first * (ops.sum(size) - c))
        # c * m / sum(m) with m = |w| exp(exponent), computed from the log-magnitudes less
        # their maximum so that no step overflows; the zero entries (sign 0) take no part.
        nonzero = ops.abs(sign)
        log_size = ops.where(nonzero > 0, ops.log(ops.maximum(size, tiny)) + exponent, -huge)
        m = ops.exp(log_size - ops.max(log_size)) * nonzero
        self.assign(variable, sign * ops.clip(m * (c / ops.maximum(ops.sum(m), tiny)),
                                              tiny, huge))

    def get_config(self):
        return {**super().get_config(), "normalise": self.normalise}


@keras.saving.register_keras_serializable(package="ei_keras")
class ExponentiatedSGD(_Exponentiated):
    """Exponentiated-gradient descent: `w <- w * exp(-lr * sign(w) * u)`.

    The sign-preserving learning rule for sign-constrained (Dale's-principle) weights: a step
    multiplies each weight's magnitude, so an excitatory weight stays > 0 and a negative one
    < 0 with no constraint or clamp. `u` is the gradient `g`, or with `momentum` `mu`
    the paper code's (torch-style, learning rate outside the buffer) momentum:

    ```
    v <- mu * v + g
    u = v                 (nesterov=False)
    u = g + mu * v        (nesterov=True)
    ```

    With `normalise=True` (the paper code's `eg_normalise` / `normalise_weights`) each
    variable is rescaled after every step to the L1 norm it had at its first update,
    `w <- w * c / sum|w|` with `c = sum|w_0|`: EG then moves weight mass between entries
    without changing the total.

    A weight that is exactly 0 stays 0 (`sign(0) = 0`); magnitudes are kept within the
    dtype's normal range, so no finite step underflows a weight to 0 or overflows it.
    `weight_decay` is Keras' decoupled decay `w <- w * (1 - lr * weight_decay)` (also
    multiplicative: sign-preserving while `lr * weight_decay < 1`); the paper code's EG decay
    is `w <- w * exp(-lr * weight_decay * |w|)`.

    Args:
        learning_rate: a float or a `keras.optimizers.schedules.LearningRateSchedule`.
        momentum: `mu` in [0, 1) (default 0).
        nesterov: Nesterov momentum (default False).
        normalise: hold each variable's L1 norm at its value at the first update.
        **kwargs: `keras.optimizers.Optimizer`'s arguments (`clipnorm`, `weight_decay`,
            `use_ema`, `gradient_accumulation_steps`, `name`, ...).

    Example: EG for the excitatory group, SGD for the inhibitory ones.

    >>> import keras
    >>> from ei_keras.optimizers import ExponentiatedSGD, dale_optimizer
    >>> opt = dale_optimizer(ExponentiatedSGD(0.05), keras.optimizers.SGD(0.01),
    ...                      keras.optimizers.SGD(0.001))

    Reference:
        Cornford et al. (2024), "Brain-like learning with exponentiated gradients";
        Kivinen & Warmuth (1997), "Exponentiated gradient versus gradient descent for linear
        predictors".
    """

    def __init__(self, learning_rate=0.01, momentum: float = 0.0, nesterov: bool = False,
                 normalise: bool = False, name: str = "exponentiated_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, normalise=normalise, name=name,
                         **kwargs)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) \
                or not 0.0 <= momentum < 1.0:
            raise ValueError(f"Expected `momentum` to be a number in [0, 1). Received: "
                             f"momentum={momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = (self.add_optimizer_variables(variables, "momentum")
                          if self.momentum else [])

    def update_step(self, gradient, variable, learning_rate):
        gradient = ops.cast(gradient, variable.dtype)
        direction = gradient
        if self.momentum:
            v = self.momentums[self._get_variable_index(variable)]
            mu = ops.cast(self.momentum, variable.dtype)
            self.assign(v, v * mu + gradient)
            direction = gradient + mu * v if self.nesterov else v
        self.exponentiated_step(variable, direction, learning_rate)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


@keras.saving.register_keras_serializable(package="ei_keras")
class ExponentiatedAdam(_Exponentiated):
    """Adam's direction taken multiplicatively: `w <- w * exp(-a_t * sign(w) * m / (sqrt(v) +
    eps))`.

    `m`, `v` and `a_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)` are exactly
    `keras.optimizers.Adam`'s, so the exponent is the step Adam would add. (The paper code's
    `AdamW(exponentiated_grad=True)` multiplies by `exp(-lr * sign(w) * g)` with the raw
    gradient, ignoring its moments: that is `ExponentiatedSGD` without momentum.)
    Sign preservation, the magnitude's range, `normalise` and `weight_decay` as in
    `ExponentiatedSGD`.

    Args:
        learning_rate: a float or a `keras.optimizers.schedules.LearningRateSchedule`.
        beta_1: as in `keras.optimizers.Adam`.
        beta_2: as in `keras.optimizers.Adam`.
        epsilon: as in `keras.optimizers.Adam`.
        normalise: hold each variable's L1 norm at its value at the first update.
        **kwargs: `keras.optimizers.Optimizer`'s arguments.

    Example:

    >>> from ei_keras.optimizers import ExponentiatedAdam, dale_optimizer
    >>> opt = dale_optimizer(ExponentiatedAdam(1e-3), "sgd", "sgd")
    """

    def __init__(self, learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, normalise: bool = False,
                 name: str = "exponentiated_adam", **kwargs):
        super().__init__(learning_rate=learning_rate, normalise=normalise, name=name,
                         **kwargs)
        for n, b in (("beta_1", beta_1), ("beta_2", beta_2)):
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0.0 <= b < 1.0:
                raise ValueError(f"Expected `{n}` to be a number in [0, 1). Received: "
                                 f"{n}={b!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) \
                or not epsilon > 0:
            raise ValueError(f"Expected `epsilon` > 0. Received: epsilon={epsilon!r}")
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.moments = self.add_optimizer_variables(variables, "momentum")
        self.velocities = self.add_optimizer_variables(variables, "velocity")

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        lr = ops.cast(learning_rate, dtype)
        t = ops.cast(self.iterations + 1, dtype)
        b1, b2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        alpha = lr * ops.sqrt(1 - ops.power(b2, t)) / (1 - ops.power(b1, t))
        i = self._get_variable_index(variable)
        m, v = self.moments[i], self.velocities[i]
        self.assign_add(m, (gradient - m) * (1 - b1))
        self.assign_add(v, (ops.square(gradient) - v) * (1 - b2))
        self.exponentiated_step(variable, m / (ops.sqrt(v) + self.epsilon), alpha)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}
