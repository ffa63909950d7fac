"""The population step on PyTorch: the same stateless dual-loss step as JAX's
(`ei_keras.models.trainers.stateless.dual_loss_step`, with `torch.func.vjp`), vectorized
over the members' stacked states with `torch.func.vmap`, one call per step (eager).

Keras' torch optimizers update with `torch._foreach` kernels that take the learning rate as
a Python number, which cannot be a per-member value under `vmap`: while the population
trains, each group optimizer runs Keras' own per-variable `update_step` (the loop of Keras'
backend-independent optimizer), and `ei_keras.optimizers.DaleSGD` its generic path, so
the rates are per-member data as on JAX; clipping and constraints are the optimizer's own.
"""

from __future__ import annotations

import contextlib

import torch

from ei_keras.models.trainers import stateless


def stack(states):
    """Stack a list of per-member state trees (tuples/lists of tensors) on a new axis 0."""
    first = states[0]
    if isinstance(first, (list, tuple)):
        return type(first)(stack([s[i] for s in states]) for i in range(len(first)))
    return torch.stack([torch.as_tensor(s).detach() for s in states])


def zeros_like(x):
    return torch.zeros_like(x)


def to_host(tree):
    if isinstance(tree, dict):
        return {k: to_host(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_host(t) for t in tree)
    return tree.detach().cpu().numpy() if isinstance(tree, torch.Tensor) else tree


def _tree_where(pred, a, b):
    if isinstance(a, (list, tuple)):
        return type(a)(_tree_where(pred, x, y) for x, y in zip(a, b))
    return torch.where(pred, a, b)


def _select(pred, true_fn, false_fn, *operands):
    """`lax.cond` under `vmap`: both branches, then a select."""
    return _tree_where(pred, true_fn(*operands), false_fn(*operands))


@contextlib.contextmanager
def functional_updates(model):
    """Route the model's optimizer through Keras' per-variable `update_step` (see the module
    docstring); restores the optimizer on exit."""
    from ei_keras.optimizers import DaleSGD

    optimizer = model.optimizer
    groups = list(getattr(optimizer, "optimizers", [optimizer]))
    patched = []
    for opt in groups:
        def generic(grads, variables, learning_rate, opt=opt):
            for g, v in zip(grads, variables):
                opt.update_step(g, v, learning_rate)
        opt._backend_update_step = generic
        patched.append(opt)
    if isinstance(optimizer, DaleSGD):
        optimizer.fast_update = lambda groups: False
        patched.append(optimizer)
    try:
        yield
    finally:
        for opt in patched:
            opt.__dict__.pop("_backend_update_step", None)
            opt.__dict__.pop("fast_update", None)


def make_chunk(model, groups, schedule):
    """`chunk(carry, xs, ys) -> carry`: `len(xs)` steps of every member (see
    `ei_keras.population._jax.make_chunk`)."""
    from ei_keras.population._step import member_step

    def train_step(state, data):
        return stateless.dual_loss_step(model, state, data, torch.func.vjp, _select)

    def member(state, buffer, health, step, x, y):
        return member_step(train_step, _tree_where, state, buffer, health, step, schedule,
                           x, y, groups)

    batched = torch.func.vmap(member, in_dims=(0, 0, 0, None, 0, 0))

    def chunk(carry, xs, ys):
        states, buffer, health, step = carry
        health = {k: torch.as_tensor(v) for k, v in health.items()}
        step = torch.as_tensor(step)
        xs, ys = torch.as_tensor(xs), torch.as_tensor(ys)
        with torch.no_grad(), functional_updates(model):
            for k in range(len(xs)):
                step = step + 1
                states, buffer, health = batched(states, buffer, health, step, xs[k], ys[k])
        return states, buffer, health, step

    return chunk
