"""What each variable of an E-I network is for: its *role*, declared by the layer that makes it.

A Dale's-principle layer owns variables of four kinds, and everything that treats them
differently routes by that kind, never by a variable's name or its layer's type:

- `EXCITATORY`: excitatory weights and the biases (`W_EE`, `b`; any variable of a plain Keras
  layer). Trained on the task loss at `lr_e`.
- `INHIBITORY_INPUT`: weights onto the inhibitory population (`W_IE`, `B_IE`). `lr_ie`.
- `INHIBITORY_OUTPUT`: weights from the inhibitory population (`W_EI`, `B_EI`). `lr_ei`.
- `NORMALIZATION`: a normalization's own parameters (e.g. a gain and shift that are not
  E-I weights). Trained with the excitatory group (`GROUP_OF_ROLE`).

A layer declares a role where it creates the variable:

>>> import keras
>>> from ei_keras import roles
>>> layer = keras.layers.Dense(2)
>>> layer.build((None, 3))
>>> _ = roles.declare(layer.kernel, roles.INHIBITORY_INPUT)
>>> roles.role_of(layer.kernel), roles.role_of(layer.bias)
('inhibitory_input', 'excitatory')

This module imports nothing (no Keras): the role is an attribute on the variable object.
"""

from __future__ import annotations

EXCITATORY = "excitatory"
INHIBITORY_INPUT = "inhibitory_input"
INHIBITORY_OUTPUT = "inhibitory_output"
NORMALIZATION = "normalization"
ROLES = (EXCITATORY, INHIBITORY_INPUT, INHIBITORY_OUTPUT, NORMALIZATION)

#: The optimizer groups, one learning rate each (`lr_e`, `lr_ie`, `lr_ei`), in the order
#: a population's step and saved files number them.
GROUPS = ("excitatory", "inhibitory_input", "inhibitory_output")
#: The optimizer group (`GROUPS`) that trains each role.
GROUP_OF_ROLE = {EXCITATORY: "excitatory", INHIBITORY_INPUT: "inhibitory_input",
                 INHIBITORY_OUTPUT: "inhibitory_output", NORMALIZATION: "excitatory"}

_ATTRIBUTE = "_ei_keras_role"


def declare(variable, role: str):
    """Mark `variable` as playing `role` (one of `ROLES`); returns the variable.

    Raises:
        ValueError: `role` is not one of `ROLES`.
    """
    if role not in ROLES:
        raise ValueError(f"Unknown variable role {role!r}. Expected one of {', '.join(ROLES)}.")
    setattr(variable, _ATTRIBUTE, role)
    return variable


def role_of(variable) -> str:
    """The role `variable`'s layer declared, `EXCITATORY` if it declared none."""
    return getattr(variable, _ATTRIBUTE, EXCITATORY)


def group_of(variable) -> str:
    """The optimizer group that trains `variable` (`GROUP_OF_ROLE` of its role)."""
    return GROUP_OF_ROLE[role_of(variable)]
