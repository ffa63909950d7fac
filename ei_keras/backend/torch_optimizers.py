"""Group updates on eager PyTorch: plain SGD as `torch._foreach` kernels.

Keras runs the optimizer eagerly on torch: per group a filter, a per-variable clip (`clipnorm`:
about eight ops per variable) and, for every constrained variable, a new tensor and a copy
(`NonNeg`). For plain SGD (momentum 0, fixed learning rate, per-variable `clipnorm` or none)
the same update is one norm, one scale and one add per group, then one in-place clamp of all
`NonNeg` variables. Any other setting (momentum, schedules, weight decay, EMA, gradient
accumulation, loss scaling, other constraints) takes the group optimizer's own `apply`.
"""

from __future__ import annotations

import keras
import torch

from ei_keras.backend.generic_optimizers import DaleSGDUpdate as _GenericUpdate


def plain_sgd(optimizer) -> bool:
    """Whether `optimizer` is SGD whose update this module implements exactly."""
    return isinstance(optimizer, keras.optimizers.SGD) and not optimizer.momentum \
        and not optimizer.weight_decay and not optimizer.use_ema \
        and not optimizer.gradient_accumulation_steps and not optimizer.global_clipnorm \
        and not optimizer.clipvalue and optimizer.loss_scale_factor is None \
        and isinstance(optimizer.learning_rate, keras.Variable)


class DaleSGDUpdate(_GenericUpdate):
    """`apply_groups` with the `torch._foreach` update where it applies."""

    def fast_update(self, groups) -> bool:
        """Whether `apply_groups` takes the `torch._foreach` path for `groups`."""
        if self.loss_scale_factor is not None:
            return False
        for optimizer, (grads, variables) in groups:
            if not grads:
                continue
            if not plain_sgd(optimizer) or any(g is None for g in grads) or \
                    any(getattr(v, "overwrite_with_gradient", False) for v in variables):
                return False
        return True

    def apply_groups(self, groups) -> None:
        if not self.fast_update(groups):
            return super().apply_groups(groups)
        nonneg, constrained = [], []
        with torch.no_grad():
            for optimizer, (grads, variables) in groups:
                if not grads:
                    continue
                values = [v.value for v in variables]
                if optimizer.clipnorm and optimizer.clipnorm > 0:
                    # Keras' _clip_by_norm: g * c / max(|g|, c).
                    c = float(optimizer.clipnorm)
                    norms = torch._foreach_norm(grads)
                    grads = torch._foreach_mul(grads, c)
                    torch._foreach_div_(grads, torch._foreach_clamp_min(norms, c))
                torch._foreach_add_(values, grads, alpha=-float(optimizer.learning_rate))
                optimizer.iterations.value.add_(1)
                for v in variables:
                    if isinstance(v.constraint, keras.constraints.NonNeg):
                        nonneg.append(v.value)
                    elif v.constraint is not None:
                        constrained.append(v)
            if nonneg:
                torch._foreach_clamp_min_(nonneg, 0.0)
            for v in constrained:
                v.assign(v.constraint(v))
