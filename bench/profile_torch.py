"""Where the Keras/PyTorch training step of ei_keras spends its time, and what candidate
library changes would save (measured by patching them in at run time; ei_keras is not edited).

The torch backend runs eagerly, so every Keras op, layer call and optimizer sub-step costs
Python time per step; TF (graph/XLA) and JAX (jit) pay that only while tracing. This script
measures, in CPU milliseconds per step of the process (``time.process_time``: robust to other
processes competing for the cores, unlike wall time), median of interleaved rounds:

- components of the Keras step: forward, forward + loss + backward, ``optimizer.apply`` and, in
  it, the per-variable gradient clip and the ``NonNeg`` constraints, metrics;
- the same step of the plain-PyTorch peer (bench/torch_peer.py);
- the Keras step with the library's own eager-PyTorch fast paths undone (``U``: Keras'
  generic ``MultiOptimizer.apply`` instead of :class:`ei_keras.optimizers.DaleSGD`'s foreach
  SGD + clip + clamp, ``Layer.__call__`` for every sub-layer instead of direct ``call``, and the
  one-hot smoothed cross-entropy) -- what those changes bought;
- candidate changes not (yet) in the library, patched in one by one:

  D. the training-loss trackers of ``EINetwork.compute_loss`` (``task_loss``/``norm_loss``)
     left out (changes the logs: shown only to price them);
  F. ``normalize_error`` (GradNorm / lateral) as a native ``torch.autograd.Function`` instead
     of ``keras.ops.custom_gradient`` + ~12 ``keras.ops`` calls in the backward (backend-specific
     code, so not adopted unless it pays);

and checks that the number-preserving ones (U, F) give the same weights as the step as is
after a few steps.

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
        import torch_peer
        from keras import ops

        from ei_keras.models import EINetwork

        def setattr_saved(obj, name, value):
            self.saved.append((obj, name, obj.__dict__.get(name, _MISSING)))
            setattr(obj, name, value)

        if "U" in self.names:
            from ei_keras import losses, optimizers
            from ei_keras.models import trainers

            setattr_saved(optimizers.DaleSGD, "apply", keras.optimizers.MultiOptimizer.apply)
            setattr_saved(trainers.DualLossTrainer, "_sublayer",
                          trainers.DualLossTrainerBase._sublayer)

            def onehot_loss(self_, y_true, y_pred):
                labels = ops.one_hot(ops.reshape(ops.cast(y_true, "int32"), (-1,)),
                                     ops.shape(y_pred)[-1])
                return keras.losses.categorical_crossentropy(
                    ops.cast(labels, y_pred.dtype), y_pred, from_logits=True,
                    label_smoothing=self_.label_smoothing)
            setattr_saved(losses.SparseSmoothedCrossentropy, "call", onehot_loss)
        if "F" in self.names:
            from ei_keras.ops import error_normalization as errnorm

            orig_normalize = errnorm.normalize_error
            GradNorm, Lateral = torch_peer.error_functions()

            def normalize_error(z, mode="full", lateral_weights=None, epsilon=torch_peer.EPS):
                if mode == "full" and z.dtype == torch.float32 and epsilon == torch_peer.EPS:
                    return GradNorm.apply(z)
                if mode == "lateral" and z.dtype == torch.float32:
                    w = lateral_weights.value if isinstance(lateral_weights, keras.Variable) \
                        else lateral_weights
                    return Lateral.apply(z, w.detach())
                return orig_normalize(z, mode, lateral_weights, epsilon)
            setattr_saved(errnorm, "normalize_error", normalize_error)
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

    variants = {"ei_keras (as is)": "", "U: fast paths undone (Keras' generic path)": "U",
                "D: no loss trackers": "D", "F: native torch GradNorm/lateral": "F",
                "D+F": "DF"}
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
    m = models["ei_keras (as is)"]
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
        "keras optimizer.apply (DaleSGD)": opt, "generic path: Keras clipnorm": clip,
        "generic path: NonNeg assign(constraint(v))": constraints, "keras compute_metrics": metrics,
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
        with Patches("UF"):
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
        base = med["step: ei_keras (as is)"]
        print(f"\n### {preset}, width {args.width}, batch {args.batch}, T={args.threads} "
              f"(CPU ms per step, median of {args.rounds} interleaved rounds of {args.steps})\n")
        print("| measurement | CPU ms/step | vs Keras step as is |\n|---|---|---|")
        for k, v in med.items():
            rel = f"{base / v:.2f}× faster" if k.startswith("step: ") else \
                f"{100 * v / base:.0f} % of it"
            print(f"| {k} | {v:.2f} | {rel} |")
        print(f"\nU+F vs as is, same init and batches, 5 steps: max |ΔW| = {diff:.1e}")


if __name__ == "__main__":
    main()
