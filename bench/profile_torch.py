"""Where the Keras/PyTorch training step of ei_keras spends its time, and what candidate
library changes would save (measured by patching them in at run time; ei_keras is not edited).

The torch backend runs eagerly, so every Keras op, layer call and optimizer sub-step costs
Python time per step; TF (graph/XLA) and JAX (jit) pay that only while tracing. This script
measures, in CPU milliseconds per step of the process (``time.process_time``: robust to other
processes competing for the cores, unlike wall time), median of interleaved rounds:

- components of the Keras step: forward, forward + loss + backward, ``optimizer.apply`` and, in
  it, the per-variable gradient clip and the ``NonNeg`` constraints, metrics;
- the same step of the plain-PyTorch peer (bench/torch_peer.py);
- the Keras step with candidate changes patched in, one by one and all together:

  A. ``NonNeg`` in place: ``clamp_`` of the variable's tensor instead of
     ``variable.assign(ops.maximum(variable, 0))`` (one new tensor + a copy per variable);
  B. per-variable clipnorm with two foreach kernels (``torch._foreach_norm`` /
     ``torch._foreach_mul_``) instead of Keras' ``_clip_by_norm`` (~8 ops per variable);
  C. ``EINetwork.call`` calling the sub-layers' ``call`` directly (no Keras ``Layer.__call__``
     bookkeeping for the inner layers: autocast scopes, input checks, call context);
  D. the training-loss trackers of ``EINetwork.compute_loss`` (``task_loss``/``norm_loss``)
     left out (changes the logs: shown only to price them);
  E. a torch fast path of the optimizer for the presets' plain SGD (momentum 0): per group one
     foreach clip, one ``torch._foreach_add_`` update, then one ``torch._foreach_clamp_min_``
     for all ``NonNeg`` variables, instead of ``MultiOptimizer.apply`` -> 3 x
     ``Optimizer.apply`` (per-variable Python: filtering, clip ops, ``assign(constraint(v))``);
     subsumes A and B;
  F. ``normalize_error`` (GradNorm / lateral) as a native ``torch.autograd.Function`` instead
     of ``keras.ops.custom_gradient`` + ~12 ``keras.ops`` calls in the backward;
  G. ``SparseSmoothedCrossentropy.call`` as ``(1 - eps) * nll + eps * mean(-log_softmax)``
     (log_softmax + take_along_axis + mean) instead of one-hot + dense label smoothing +
     ``categorical_crossentropy``;

and checks that the changes that keep the numbers (all but D, which drops two logged
trackers) give the same weights as the unpatched step after a few steps.

Usage::

    python bench/profile_torch.py --presets ei_ln,inorm_gradnorm --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import N_IN, N_OUT, configure_threads  # noqa: E402


def cpu_ms(fn, n):
    c = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - c) / n * 1e3


class Patches:
    """Run-time patches of the candidate changes (installed only inside ``with``)."""

    def __init__(self, names):
        self.names = set(names)
        self.saved = []

    def __enter__(self):
        import keras
        import torch
        from keras import ops

        from ei_keras.models import EINetwork

        def setattr_saved(obj, name, value):
            self.saved.append((obj, name, obj.__dict__.get(name, _MISSING)))
            setattr(obj, name, value)

        if "A" in self.names:
            def nonneg(self_, w):
                if isinstance(w, keras.Variable):
                    v = w.value
                    with torch.no_grad():
                        v.clamp_(min=0.0)
                    return v
                return ops.maximum(w, 0)
            setattr_saved(keras.constraints.NonNeg, "__call__", nonneg)
        if "B" in self.names:
            from keras.src.optimizers.base_optimizer import BaseOptimizer

            orig = BaseOptimizer._clip_gradients

            def clip(self_, grads):
                if self_.clipnorm and self_.clipnorm > 0 and all(g is not None for g in grads):
                    with torch.no_grad():
                        c = float(self_.clipnorm)
                        norms = torch._foreach_norm(grads)
                        torch._foreach_mul_(grads, [c / n.clamp_min(c) for n in norms])
                    return grads
                return orig(self_, grads)
            setattr_saved(BaseOptimizer, "_clip_gradients", clip)
        if "C" in self.names:
            def call(self_, inputs, training=False):
                x = inputs
                for layer, norm in zip(self_.hidden, self_.norms):
                    z = layer.call(x)
                    if norm is not None:
                        z = norm.call(z)
                    x = ops.relu(z)
                return self_.readout.call(x)
            setattr_saved(EINetwork, "call", call)
        if "E" in self.names:
            from keras.src.optimizers.multi_optimizer import MultiOptimizer

            orig_apply = MultiOptimizer.apply

            def apply(self_, grads, trainable_variables=None):
                subs = self_._inner_optimizers
                if trainable_variables is None or not self_.built or any(
                        type(o).__name__ != "SGD" or o.momentum for o in subs):
                    return orig_apply(self_, grads, trainable_variables)
                groups = [([], []) for _ in subs]
                nonneg = []
                for g, v in zip(grads, trainable_variables):
                    gs, vs = groups[self_._var_to_optimizer_idx[id(v)]]
                    gs.append(g)
                    vs.append(v.value)
                    if isinstance(v.constraint, keras.constraints.NonNeg):
                        nonneg.append(v.value)
                with torch.no_grad():
                    for o, (gs, vs) in zip(subs, groups):
                        if not gs:
                            continue
                        if o.clipnorm:
                            c = float(o.clipnorm)
                            norms = torch._foreach_norm(gs)
                            torch._foreach_mul_(gs, [c / n.clamp_min(c) for n in norms])
                        torch._foreach_add_(vs, gs, alpha=-float(o.learning_rate))
                        o._iterations.value.add_(1)
                    torch._foreach_clamp_min_(nonneg, 0.0)
                    self_._iterations.value.add_(1)
            setattr_saved(MultiOptimizer, "apply", apply)
        if "F" in self.names:
            from ei_keras.ops import error_normalization as errnorm

            orig_normalize = errnorm.normalize_error
            eps_default = 1e-5

            class GradNorm(torch.autograd.Function):
                @staticmethod
                def forward(ctx, z, eps):
                    ctx.save_for_backward(z)
                    ctx.eps = eps
                    return z.view_as(z)

                @staticmethod
                def backward(ctx, g):
                    (z,) = ctx.saved_tensors
                    c = z - z.mean(dim=-1, keepdim=True)
                    inv = torch.rsqrt(c.square().mean(dim=-1, keepdim=True) + ctx.eps)
                    y = c * inv
                    return (g - g.mean(dim=-1, keepdim=True)
                            - y * (g * y).mean(dim=-1, keepdim=True)) * inv, None

            class Lateral(torch.autograd.Function):
                @staticmethod
                def forward(ctx, z, w):
                    ctx.save_for_backward(w)
                    return z.view_as(z)

                @staticmethod
                def backward(ctx, g):
                    (w,) = ctx.saved_tensors
                    return g - (g * w).sum(dim=-1, keepdim=True), None

            def normalize_error(z, mode="full", lateral_weights=None, epsilon=eps_default):
                if mode == "full" and z.dtype == torch.float32:
                    return GradNorm.apply(z, float(epsilon))
                if mode == "lateral" and z.dtype == torch.float32:
                    w = lateral_weights.value if isinstance(lateral_weights, keras.Variable) \
                        else lateral_weights
                    return Lateral.apply(z, w.detach())
                return orig_normalize(z, mode, lateral_weights, epsilon)
            setattr_saved(errnorm, "normalize_error", normalize_error)
        if "G" in self.names:
            from ei_keras.losses import SparseSmoothedCrossentropy

            def loss_call(self_, y_true, y_pred):
                logp = ops.log_softmax(y_pred, axis=-1)
                labels = ops.reshape(ops.cast(y_true, "int32"), (-1, 1))
                nll = -ops.take_along_axis(logp, labels, axis=-1)[:, 0]
                eps = self_.label_smoothing
                return (1.0 - eps) * nll - eps * ops.mean(logp, axis=-1)
            setattr_saved(SparseSmoothedCrossentropy, "call", loss_call)
        if "D" in self.names:
            def compute_loss(self_, x=None, y=None, y_pred=None, sample_weight=None,
                             training=True):
                return keras.Model.compute_loss(self_, x=x, y=y, y_pred=y_pred,
                                                sample_weight=sample_weight, training=training)
            setattr_saved(EINetwork, "compute_loss", compute_loss)
        return self

    def __exit__(self, *exc):
        for obj, name, old in reversed(self.saved):
            if old is _MISSING:
                delattr(obj, name)
            else:
                setattr(obj, name, old)
        self.saved.clear()


_MISSING = object()


def profile(preset, width, batch, steps, rounds, seed=0):
    import keras
    import numpy as np
    import torch
    import torch_peer

    from ei_keras import zoo

    rng = np.random.default_rng(0)
    xs = torch.as_tensor(rng.random((batch, N_IN), dtype=np.float32))
    ys = torch.as_tensor(rng.integers(0, N_OUT, batch).astype("int32"))
    data = [(xs, ys)]

    variants = {"keras (as is)": "", "A: NonNeg in place": "A", "B: foreach clipnorm": "B",
                "C: direct sub-layer calls": "C", "D: no loss trackers": "D",
                "E: foreach SGD fast path": "E", "F: native torch GradNorm/lateral": "F",
                "G: direct smoothed cross-entropy": "G", "C+E+F+G": "CEFG",
                "C+E+F+G+D": "CDEFG"}
    models = {}
    for name, patches in variants.items():
        m = zoo.build(preset, width=width, seed=seed)
        m.make_train_function()
        with Patches(patches):
            for _ in range(3):
                m.train_function(data)
        models[name] = m
    net, *rest = torch_peer.build(preset, width, seed)
    peer_step = torch_peer.make_step(net, *rest, compile_=False)
    xl = xs
    yl = ys.long()
    for _ in range(3):
        peer_step(xl, yl)

    # Components of the unpatched step.
    m = models["keras (as is)"]
    tv = m.trainable_weights[:]
    grads = [torch.zeros_like(v.value) for v in tv]
    cons = [v for v in m.weights if v.constraint is not None]
    inh = [o for o in m.optimizer.optimizers if o.clipnorm]
    inh_grads = [[g for v, g in zip(tv, grads) if o is m.optimizer._inner_optimizers[
        m.optimizer._var_to_optimizer_idx[m.optimizer._var_key(v)]]] for o in inh]

    def fwd():
        with torch.no_grad():
            m(xs, training=True)

    def fwd_bwd():
        m.zero_grad()
        yp = m(xs, training=True)
        m._compute_loss(x=xs, y=ys, y_pred=yp, sample_weight=None, training=True).backward()

    def opt():
        with torch.no_grad():
            m.optimizer.apply(grads, tv)

    def clip():
        for o, g in zip(inh, inh_grads):
            o._clip_gradients(g)

    def constraints():
        with torch.no_grad():
            for v in cons:
                v.assign(v.constraint(v))

    def metrics():
        m.compute_metrics(xs, ys, torch.zeros(batch, N_OUT), sample_weight=None)

    import torch.nn.functional as F

    def peer_fwd():
        with torch.no_grad():
            net(xl)

    def peer_fwd_bwd():
        net.zero_grad()
        logits, local = net(xl)
        (F.cross_entropy(logits, yl, label_smoothing=0.1) + local).backward()

    timers = {f"step: {k}": (lambda m=mm, p=variants[k]: _patched_step(m, data, p))
              for k, mm in models.items()}
    timers["step: torch peer"] = lambda: peer_step(xl, yl)
    timers.update({
        "keras forward (no grad)": fwd, "keras forward + loss + backward": fwd_bwd,
        "keras optimizer.apply": opt, "  of which clipnorm": clip,
        "  of which NonNeg constraints": constraints, "keras compute_metrics": metrics,
        "peer forward (no grad)": peer_fwd, "peer forward + loss + backward": peer_fwd_bwd,
    })
    res = {k: [] for k in timers}
    for _ in range(rounds):  # interleaved, so that drifting load hits all alike
        for k, fn in timers.items():
            if k.startswith("step: ") and k != "step: torch peer":
                p = variants[k[6:]]
                with Patches(p):
                    res[k].append(cpu_ms(lambda mm=models[k[6:]]: mm.train_function(data),
                                         steps))
            else:
                res[k].append(cpu_ms(fn, steps))
    med = {k: statistics.median(v) for k, v in res.items()}

    # Equivalence of the number-preserving changes: same weights after a few steps.
    a = zoo.build(preset, width=width, seed=seed + 1)
    b = zoo.build(preset, width=width, seed=seed + 1)
    for mm in (a, b):
        mm.make_train_function()
    for _ in range(5):
        d = [(torch.as_tensor(rng.random((batch, N_IN), dtype=np.float32)),
              torch.as_tensor(rng.integers(0, N_OUT, batch).astype("int32")))]
        a.train_function(d)
        with Patches("ABCEFG"):
            b.train_function(d)
    diff = max(float(np.max(np.abs(keras.ops.convert_to_numpy(u) - keras.ops.convert_to_numpy(v))))
               for u, v in zip(a.weights, b.weights))
    return med, diff


def _patched_step(m, data, patches):
    with Patches(patches):
        m.train_function(data)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="ei_ln,inorm_gradnorm")
    ap.add_argument("--width", type=int, default=500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30, help="steps per measurement")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    args = ap.parse_args(argv)
    configure_threads(args.threads)
    os.environ["KERAS_BACKEND"] = "torch"
    warnings.filterwarnings("ignore", message=".*__array__ implementation doesn't accept.*")
    import torch

    torch.set_num_threads(args.threads)
    for preset in args.presets.split(","):
        med, diff = profile(preset, args.width, args.batch, args.steps, args.rounds)
        base = med["step: keras (as is)"]
        print(f"\n### {preset}, width {args.width}, batch {args.batch}, T={args.threads} "
              f"(CPU ms per step, median of {args.rounds} interleaved rounds of {args.steps})\n")
        print("| measurement | CPU ms/step | vs Keras step as is |\n|---|---|---|")
        for k, v in med.items():
            rel = f"{base / v:.2f}× faster" if k.startswith("step: ") else \
                f"{100 * v / base:.0f} % of it"
            print(f"| {k} | {v:.2f} | {rel} |")
        print(f"\nA+B+C+E+F+G vs as is, same init and batches, 5 steps: max |ΔW| = {diff:.1e}")


if __name__ == "__main__":
    main()
