"""Per-group learning rates for Dale's-principle networks, on every backend.

The paper trains three groups of variables at three rates (SPEC section 3): excitatory
(``W_EE``, ``b``: ``lr_e``), inhibitory input weights (``W_IE``, ``B_IE``: ``lr_ie``) and
inhibitory output weights (``W_EI``, ``B_EI``: ``lr_ei``). :func:`dale_sgd` builds one
``keras.optimizers.MultiOptimizer`` that routes each variable by its path, so there is one
optimizer state, threaded through JAX's stateless step like any other optimizer, saved in
``.keras`` files, and the ``NonNeg`` constraints are applied after every update.
"""

from __future__ import annotations

import math

import keras

from ei_keras.backend import DaleSGDUpdate

INHIBITORY_INPUT_PATTERN = r".*/(W_IE|B_IE)"
INHIBITORY_OUTPUT_PATTERN = r".*/(W_EI|B_EI)"
GROUPS = ("excitatory", "inhibitory_input", "inhibitory_output")


def variable_group(variable) -> str:
    """``"excitatory"``, ``"inhibitory_input"`` or ``"inhibitory_output"`` for a variable."""
    name = variable.path.rsplit("/", 1)[-1]
    if name in ("W_IE", "B_IE"):
        return "inhibitory_input"
    if name in ("W_EI", "B_EI"):
        return "inhibitory_output"
    return "excitatory"


def _check_rate(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(
            f"Expected `{name}` to be a finite number >= 0. Received: {name}={value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="ei_keras")
class DaleSGD(DaleSGDUpdate, keras.optimizers.MultiOptimizer):
    """The ``MultiOptimizer`` :func:`dale_sgd` returns: one optimizer per variable group.

    Two things beyond ``keras.optimizers.MultiOptimizer``:

    - ``apply(grads, variables)`` accepts any subset of the variables the optimizer was built
      with (Keras' ``MultiOptimizer`` insists on all of them), routing each to its group's
      optimizer; the inhibitory plasticity schedules of
      :class:`~ei_keras.models.DualLossModel` update the normalization variables alone.
    - How a group's update is carried out is chosen once per backend, at import
      (``ei_keras/backend/``): on eager PyTorch, plain SGD (momentum 0, fixed learning rate,
      per-variable ``clipnorm`` or none) runs as a few ``torch._foreach`` kernels per group
      and one in-place clamp of the ``NonNeg`` variables; everything else, and every other
      backend (which traces the update once), calls the group optimizer's own ``apply``.

    ``tests/test_fast_paths.py`` checks the update against an independent float64 computation
    on every backend.
    """

    def __init__(self, optimizer_map, loss_scale_factor=None, name=None):
        super().__init__(optimizer_map, loss_scale_factor=loss_scale_factor, name=name)
        self.group_map = optimizer_map
        self._group_index = {}

    def optimizer_for(self, variable):
        """The group optimizer that updates ``variable`` (the optimizer map's choice)."""
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


def dale_sgd(
    lr_e: float,
    lr_ie: float,
    lr_ei: float,
    momentum: float = 0.0,
    inhibitory_momentum: float | None = None,
    clipnorm: float | None = None,
) -> keras.optimizers.MultiOptimizer:
    """Plain SGD with one learning rate per variable group (paper: momentum 0, no decay).

    Args:
        lr_e: learning rate of excitatory variables (``W_EE`` and biases).
        lr_ie: learning rate of ``W_IE`` and ``B_IE``.
        lr_ei: learning rate of ``W_EI`` and ``B_EI``.
        momentum: SGD momentum of the excitatory group.
        inhibitory_momentum: momentum of the two inhibitory groups (default: ``momentum``).
        clipnorm: optional per-variable gradient-norm clip for the inhibitory groups.

    Returns:
        A :class:`DaleSGD` (a ``keras.optimizers.MultiOptimizer``) to pass to
        ``model.compile``.

    Example:

    >>> from ei_keras.optimizers import dale_sgd
    >>> opt = dale_sgd(lr_e=0.05, lr_ie=0.01, lr_ei=0.001)
    >>> [o.name for o in opt.optimizers]
    ['sgd_inhibitory_input', 'sgd_inhibitory_output', 'sgd_excitatory']
    """
    lr_e, lr_ie, lr_ei = (_check_rate(n, v) for n, v in
                          (("lr_e", lr_e), ("lr_ie", lr_ie), ("lr_ei", lr_ei)))
    for n, v in (("momentum", momentum), ("inhibitory_momentum", inhibitory_momentum)):
        if v is not None and not 0.0 <= v < 1.0:
            raise ValueError(f"Expected 0 <= {n} < 1. Received: {n}={v!r}")
    i_mom = momentum if inhibitory_momentum is None else inhibitory_momentum
    kw = {"clipnorm": clipnorm} if clipnorm else {}
    excitatory = keras.optimizers.SGD(lr_e, momentum=momentum, name="sgd_excitatory")
    optimizer_map = keras.optimizers.OptimizerMap(
        default_optimizer=excitatory,
        optimizer_map={
            INHIBITORY_INPUT_PATTERN: keras.optimizers.SGD(
                lr_ie, momentum=i_mom, name="sgd_inhibitory_input", **kw),
            INHIBITORY_OUTPUT_PATTERN: keras.optimizers.SGD(
                lr_ei, momentum=i_mom, name="sgd_inhibitory_output", **kw),
        },
    )
    return DaleSGD(optimizer_map, name="dale_sgd")


def group_learning_rates(optimizer) -> dict[str, float]:
    """The learning rate of each group of a :func:`dale_sgd` optimizer (also after loading)."""
    out = {}
    for opt in optimizer.optimizers:
        group = opt.name.removeprefix("sgd_")
        out[group] = float(keras.ops.convert_to_numpy(opt.learning_rate))
    return out
