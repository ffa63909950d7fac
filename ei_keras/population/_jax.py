"""The population step on JAX: the model's own stateless `train_step`, `jax.vmap`-ed over
the members' stacked states and `jax.lax.scan`-ned over a chunk of steps, in one `jax.jit`.

Each member's state is `(trainable, non_trainable, optimizer, metrics)` values, as Keras' JAX
trainer threads it; the learning rates are optimizer variables and `lambda` a non-trainable
variable, so they are per-member data, not constants of the program.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def stack(states):
    """Stack a list of per-member state pytrees along a new leading axis."""
    return jax.tree.map(lambda *a: jnp.stack(a), *states)


def zeros_like(x):
    return jnp.zeros_like(x)


def to_host(tree):
    """The pytree as NumPy arrays."""
    import numpy as np

    return jax.tree.map(np.asarray, jax.device_get(tree))


def _where(pred, a, b):
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def make_chunk(model, groups, schedule):
    """A jitted `chunk(carry, xs, ys) -> carry`: `len(xs)` steps of every member.

    `carry` is `(states, buffer, health, step)` (`ei_keras.population.initial_carry`);
    each step is `ei_keras.population.member_step` (the model's own stateless
    `train_step`, the freeze and the stability checks) under `jax.vmap`; `groups` gives
    each trainable variable's group index, `schedule` the check schedule.
    """
    from ei_keras.population._step import member_step

    def member(state, buffer, health, step, x, y):
        return member_step(model.train_step, _where, state, buffer, health, step, schedule,
                           x, y, groups)

    batched = jax.vmap(member, in_axes=(0, 0, 0, None, 0, 0))

    def body(carry, xy):
        states, buffer, health, step = carry
        step = step + 1
        return (*batched(states, buffer, health, step, *xy), step), None

    @jax.jit
    def chunk(carry, xs, ys):
        return jax.lax.scan(body, carry, (xs, ys))[0]

    return chunk
