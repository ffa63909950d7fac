"""Group updates through each group optimizer's own `apply` (TensorFlow, JAX: traced once)."""

from __future__ import annotations


class DaleSGDUpdate:
    """`apply_groups`: what `keras.optimizers.MultiOptimizer.apply` does per group."""

    def apply_groups(self, groups) -> None:
        """`groups`: `[(optimizer, (grads, variables)), ...]`; empty groups are skipped."""
        for optimizer, (grads, variables) in groups:
            if grads:
                optimizer.apply(grads, variables)
