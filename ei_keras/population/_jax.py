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


def make_chunk(model, groups, check):
    """A jitted `chunk(carry, xs, ys) -> carry`: `len(xs)` steps of every member.

    `carry` is `(states, alive, bad_step, bad_cause, event_step, step)` (see
    `ei_keras.population`); `groups` gives each trainable variable's group index;
    `check(loss, trainable) -> (finite, in_bounds, nonfinite_group_or_-1)` is the
    population's divergence rule.
    """

    def member(state, alive, bad_step, bad_cause, event_step, step, x, y):
        logs, new = model.train_step(state, (x, y))
        finite, in_bounds, cause = check(logs["loss"], new[0], groups)
        ok = alive & finite
        new = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, state)
        newly_bad = alive & ~finite
        bad_step = jnp.where(newly_bad, step, bad_step)
        bad_cause = jnp.where(newly_bad, cause, bad_cause)
        event_step = jnp.where(ok & ~in_bounds & (event_step == 0), step, event_step)
        return new, ok, bad_step, bad_cause, event_step

    batched = jax.vmap(member, in_axes=(0, 0, 0, 0, 0, None, 0, 0))

    def body(carry, xy):
        states, alive, bad_step, bad_cause, event_step, step = carry
        step = step + 1
        out = batched(states, alive, bad_step, bad_cause, event_step, step, *xy)
        return (*out, step), None

    @jax.jit
    def chunk(carry, xs, ys):
        return jax.lax.scan(body, carry, (xs, ys))[0]

    return chunk
