"""Dale's sign constraint composed with any Keras constraint.

The Dale layers keep their excitatory and inhibitory weights non-negative whatever the user
passes: without a user constraint the weight carries `keras.constraints.NonNeg()`; with one,
`dale_constraint` returns `NonNegAfter`, which applies the user's constraint first
and Dale's sign last, so no constraint can make a weight negative. The optimizer applies it after
every update, as Keras does for any constraint.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="ei_keras")
class NonNegAfter(keras.constraints.Constraint):
    """`NonNeg()(constraint(w))`: a Keras constraint followed by Dale's sign.

    Args:
        constraint: any Keras constraint (instance, name such as `"max_norm"`, or config).

    Example:

    >>> import numpy as np, keras
    >>> from ei_keras.constraints import NonNegAfter
    >>> c = NonNegAfter(keras.constraints.MaxNorm(1.0, axis=0))
    >>> w = np.array([[3.0, -4.0], [4.0, 3.0]], "float32")
    >>> keras.ops.convert_to_numpy(c(w)).astype("float64").round(2).tolist()
    [[0.6, 0.0], [0.8, 0.6]]
    """

    def __init__(self, constraint):
        self.constraint = keras.constraints.get(constraint)
        if self.constraint is None:
            raise ValueError("Expected a Keras constraint for NonNegAfter. Received: None "
                             "(use keras.constraints.NonNeg() for the sign alone).")

    def __call__(self, w):
        return keras.constraints.NonNeg()(self.constraint(w))

    def get_config(self) -> dict:
        return {"constraint": keras.constraints.serialize(self.constraint)}


def dale_constraint(constraint=None) -> keras.constraints.Constraint:
    """The constraint of a Dale (non-negative) weight: `NonNeg()` alone, or the user's
    `constraint` followed by it (`NonNegAfter`).

    Raises:
        ValueError: `constraint` is not a Keras constraint (Keras' own message).
    """
    user = keras.constraints.get(constraint)
    if user is None or isinstance(user, keras.constraints.NonNeg):
        return keras.constraints.NonNeg()
    return NonNegAfter(user)


def is_dale_constraint(constraint) -> bool:
    """Whether `constraint` keeps its weight non-negative: `NonNeg` or `NonNegAfter` (what
    `dale_constraint` returns)."""
    return isinstance(constraint, (keras.constraints.NonNeg, NonNegAfter))
