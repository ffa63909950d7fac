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
class DaleSGD(keras.optimizers.MultiOptimizer):
    """The ``MultiOptimizer`` :func:`dale_sgd` returns; same numbers, faster on PyTorch.

    TensorFlow and JAX trace the optimizer step once, so Keras' generic ``apply`` costs nothing
    per step there. The PyTorch backend runs it eagerly: three sub-optimizer ``apply`` calls,
    each filtering, clipping (``clipnorm``: ~8 ops per variable) and re-assigning every
    constrained variable (``NonNeg``: a new tensor and a copy per variable), 4.7-5.8 ms of a
    17-20 ms step at width 500 (``bench/profile_torch.py``). For plain SGD (momentum 0, fixed
    learning rates, per-variable ``clipnorm`` or none, the presets' setting) this class does the
    same update with ``torch._foreach`` kernels: per group one norm, one scale and one add,
    then one in-place clamp of all ``NonNeg`` variables. Anything else (momentum, schedules,
    weight decay, EMA, gradient accumulation, loss scaling, other constraints or backends)
    takes Keras' path. ``tests/test_training.py`` checks every variable after a step against an
    independent computation on all backends; ``tests/test_fast_paths.py`` checks that the two
    paths give the same variables and iterations.
    """

    def _fast_path(self, grads, trainable_variables):
        if keras.backend.backend() != "torch" or trainable_variables is None or not self.built \
                or self.loss_scale_factor is not None or any(g is None for g in grads):
            return False
        for o in self._inner_optimizers:
            if not isinstance(o, keras.optimizers.SGD) or o.momentum or o.weight_decay \
                    or o.use_ema or o.gradient_accumulation_steps or o.global_clipnorm \
                    or o.clipvalue or o.loss_scale_factor is not None \
                    or not isinstance(o._learning_rate, keras.Variable):
                return False
        return True

    def apply(self, grads, trainable_variables=None):
        grads = list(grads)
        if not self._fast_path(grads, trainable_variables):
            return super().apply(grads, trainable_variables)
        import torch

        trainable_variables = list(trainable_variables)
        if len(grads) != len(self._trainable_variables_indices):
            return super().apply(grads, trainable_variables)
        groups = [([], [], []) for _ in self._inner_optimizers]
        nonneg, constrained = [], []
        for g, v in zip(grads, trainable_variables):
            if getattr(v, "overwrite_with_gradient", False):
                return super().apply(grads, trainable_variables)
            gs, vs, ks = groups[self._var_to_optimizer_idx[self._var_key(v)]]
            gs.append(g)
            vs.append(v.value)
            ks.append(v)
            if isinstance(v.constraint, keras.constraints.NonNeg):
                nonneg.append(v.value)
            elif v.constraint is not None:
                constrained.append(v)
        with torch.no_grad():
            for o, (gs, vs, ks) in zip(self._inner_optimizers, groups):
                if not gs:
                    continue
                o._check_variables_are_known(ks)
                if o.clipnorm and o.clipnorm > 0:
                    # Keras' _clip_by_norm: g * c / max(|g|, c).
                    c = float(o.clipnorm)
                    norms = torch._foreach_norm(gs)
                    gs = torch._foreach_mul(gs, c)
                    torch._foreach_div_(gs, torch._foreach_clamp_min(norms, c))
                torch._foreach_add_(vs, gs, alpha=-float(o.learning_rate))
                o._iterations.value.add_(1)
            if nonneg:
                torch._foreach_clamp_min_(nonneg, 0.0)
            for v in constrained:
                v.assign(v.constraint(v))
            self._iterations.value.add_(1)


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
