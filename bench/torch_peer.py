"""Plain-PyTorch peer of the ei_keras presets: the same math, written as one would by hand.

Presets (``784 -> width -> width -> 10``, batch 32, float32), exactly as the library computes
them (same matmuls, same trained variables, same loss and optimizer — see bench/flops.py):

- ``ei_ln``: EI layers ``z = x W_EE^T - (x W_IE^T) W_EI^T + b`` (all three weights trained,
  kept >= 0), ``F.layer_norm`` without affine, ReLU; EI readout (ni = 1).
- ``inorm``: I-Norm layers. ``xs = x.detach()``; ``e = x W_EE^T + b``,
  ``s = (xs W_IE^T) W_EI^T``, ``delta = sqrt(max(((xs B_IE^T)^2) B_EI^T, 0) + eps)``;
  ``z = (e - s.detach()) / delta.detach()``; local loss
  ``norm_weight * mean_b[(mean_j zh)^2 + (var_j zh - 1)^2]`` with ``zh = (e.detach() - s)/delta``.
  W_EE, b, W_IE, W_EI, B_IE, B_EI all trained (``trainable_ei=True``, the zoo default).
- ``inorm_gradnorm``: ``inorm`` + GradNorm on ``z`` (identity forward; backward
  ``(g - mean g - y mean(g y)) / sigma`` with ``y`` the standardised ``z``).
- ``inorm_lateral``: ``inorm`` + lateral inhibition of the error (``g - sum_j w_j g_j``,
  fixed positive ``w`` summing to 1).

Loss: cross-entropy with label smoothing 0.1 plus the local losses (one backward: their
gradients reach disjoint variables). Optimizer: plain SGD with three learning rates
(excitatory ``lr_e``; ``W_IE``/``B_IE`` ``lr_ie``; ``W_EI``/``B_EI`` ``lr_ei``; the I-Norm
presets clip each inhibitory variable's gradient norm at ``inhibitory_clipnorm``), then
``W_EE, W_IE, W_EI, B_EI`` clamped to >= 0 (Keras' ``NonNeg``). Hyperparameters are read from
``ei_keras.zoo`` when it is importable (fallback: a copy), so the peer follows the presets.
No metrics are computed (a hand-written loop would not); the Keras contenders also track
loss/accuracy means.

``--check`` proves that the peer is the library's math: it builds the Keras model (torch
backend) with the same seed, copies its weights into the peer, trains both for a few steps on
the same batches and compares losses and weights.

Usage::

    python bench/torch_peer.py --presets ei_ln,inorm_gradnorm --widths 500 --threads 1 [--compile]
    python bench/torch_peer.py --check
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import N_IN, N_OUT, PRESETS, configure_threads, emit, summarize  # noqa: E402

EPS = 1e-5
# Fallback hyperparameters (ei_keras.zoo at the time of writing); `hyperparameters()` reads the
# library's current ones when it can, so the peer follows preset changes.
_HP_FALLBACK = {
    "ei_ln": {"lr_e": 0.05, "lr_ie": 0.01, "lr_ei": 0.001, "label_smoothing": 0.1,
              "inhibitory_clipnorm": None},
    "inorm": {"lr_e": 0.01, "lr_ie": 1.0, "lr_ei": 0.1, "norm_weight": 0.01,
              "label_smoothing": 0.1, "inhibitory_clipnorm": 0.1},
}
_HP_FALLBACK["inorm_gradnorm"] = _HP_FALLBACK["inorm_lateral"] = {
    **_HP_FALLBACK["inorm"], "lr_e": 0.05, "lr_ie": 0.3}


def hyperparameters(preset: str) -> dict:
    """The preset's training hyperparameters: the library's (``ei_keras.zoo``) if importable."""
    import os

    try:
        os.environ.setdefault("KERAS_BACKEND", "torch")
        from ei_keras import zoo

        hp = zoo.hyperparameters(preset)
    except Exception:  # the peer also runs without ei_keras
        hp = dict(_HP_FALLBACK[preset])
    if hp.get("momentum") or hp.get("inhibitory_momentum"):
        raise NotImplementedError("the peer implements plain SGD (momentum 0), as the presets")
    return hp


def _np_init(d, ne, ni, seed, inorm):
    """The library's NumPy initialisation (exponential law, balanced inhibition, SVD)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    scale = math.sqrt(2.0 * ne / (d * max(ne - 1, 1)))
    w_ee = rng.exponential(scale, size=(ne, d))
    w_ie = np.repeat(w_ee.mean(axis=0, keepdims=True), ni, axis=0)
    w_ei = np.random.default_rng(seed + 1).exponential(1.0, size=(ne, ni))
    w_ei /= w_ei.sum(axis=-1, keepdims=True)
    out = {"W_EE": w_ee, "W_IE": w_ie, "W_EI": w_ei, "bias": np.zeros(ne)}
    if inorm:
        _, s, vt = np.linalg.svd(w_ee - w_ei @ w_ie, full_matrices=False)
        out["B_IE"] = s[:, None] * vt
        out["B_EI"] = np.full((ne, ne), 1.0 / ne)
    return out


def error_functions():
    """``(GradNorm, Lateral)``: the error normalizations of SPEC section 2 as native
    ``torch.autograd.Function`` s (identity forward; GradNorm at ``eps = EPS``)."""
    import torch

    class GradNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            ctx.save_for_backward(z)
            return z.view_as(z)

        @staticmethod
        def backward(ctx, g):
            (z,) = ctx.saved_tensors
            mu = z.mean(dim=-1, keepdim=True)
            c = z - mu
            inv = torch.rsqrt(c.square().mean(dim=-1, keepdim=True) + EPS)
            y = c * inv
            return (g - g.mean(dim=-1, keepdim=True) - y * (g * y).mean(dim=-1, keepdim=True)) * inv

    class Lateral(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z, w):
            ctx.save_for_backward(w)
            return z.view_as(z)

        @staticmethod
        def backward(ctx, g):
            (w,) = ctx.saved_tensors
            return g - (g * w).sum(dim=-1, keepdim=True), None

    return GradNorm, Lateral


def build(preset: str, width: int, seed: int = 0, hp: dict | None = None):
    """``(net, optimizer, constrained_params, clipped_params, clipnorm)`` of the peer."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    GradNorm, Lateral = error_functions()

    def param(a):
        return nn.Parameter(torch.as_tensor(a, dtype=torch.float32))

    class EILayer(nn.Module):
        def __init__(self, d, ne, ni, seed):
            super().__init__()
            for k, v in _np_init(d, ne, ni, seed, inorm=False).items():
                setattr(self, k, param(v))

        def forward(self, x):
            return F.linear(x, self.W_EE) - F.linear(F.linear(x, self.W_IE), self.W_EI) + self.bias

    class INormLayer(nn.Module):
        def __init__(self, d, ne, ni, seed, mode):
            super().__init__()
            for k, v in _np_init(d, ne, ni, seed, inorm=True).items():
                setattr(self, k, param(v))
            self.mode = mode
            if mode == "lateral":
                import numpy as np

                a = np.random.default_rng(seed + 2).uniform(0.0, 1.0, size=ne) + 1e-12
                self.register_buffer("lateral", torch.as_tensor(a / a.sum(), dtype=torch.float32))

        def forward(self, x):
            xs = x.detach()
            e = F.linear(x, self.W_EE, self.bias)
            s = F.linear(F.linear(xs, self.W_IE), self.W_EI)
            q = F.linear(xs, self.B_IE).square()
            delta = torch.sqrt(F.linear(q, self.B_EI).clamp_min(0.0) + EPS)
            z = (e - s.detach()) / delta.detach()
            zh = (e.detach() - s) / delta
            mean = zh.mean(dim=-1)
            var = (zh - mean[:, None]).square().mean(dim=-1)
            local = norm_weight * (mean.square() + (var - 1.0).square()).mean()
            if self.mode == "full":
                z = GradNorm.apply(z)
            elif self.mode == "lateral":
                z = Lateral.apply(z, self.lateral)
            return z, local

    mode = {"inorm": "none", "inorm_gradnorm": "full", "inorm_lateral": "lateral"}.get(preset)
    hp = hp or hyperparameters(preset)
    norm_weight = hp.get("norm_weight", 0.01)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            ni = max(1, width // 10)
            d = N_IN
            hidden = []
            for i in range(2):
                s = seed + 1000 * (i + 1)
                hidden.append(EILayer(d, width, ni, s) if preset == "ei_ln"
                              else INormLayer(d, width, ni, s, mode))
                d = width
            self.hidden = nn.ModuleList(hidden)
            self.readout = EILayer(width, N_OUT, 1, seed)

        def forward(self, x):
            local = x.new_zeros(())
            for layer in self.hidden:
                if preset == "ei_ln":
                    z = F.layer_norm(layer(x), (width,), eps=EPS)
                else:
                    z, loc = layer(x)
                    local = local + loc
                x = F.relu(z)
            return self.readout(x), local

    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; the peer has {PRESETS}")
    net = Net()
    groups = {"e": [], "ie": [], "ei": []}
    constrained = []
    for name, p in net.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        groups["ie" if leaf in ("W_IE", "B_IE") else "ei" if leaf in ("W_EI", "B_EI")
               else "e"].append(p)
        if leaf in ("W_EE", "W_IE", "W_EI", "B_EI"):
            constrained.append(p)
    opt = torch.optim.SGD([{"params": groups["e"], "lr": hp["lr_e"]},
                           {"params": groups["ie"], "lr": hp["lr_ie"]},
                           {"params": groups["ei"], "lr": hp["lr_ei"]}],
                          lr=hp["lr_e"], momentum=0.0, foreach=True)
    clipnorm = hp.get("inhibitory_clipnorm")
    clipped = groups["ie"] + groups["ei"] if clipnorm else []
    return net, opt, constrained, clipped, clipnorm, hp["label_smoothing"]


def make_step(net, opt, constrained, clipped, clipnorm, label_smoothing, compile_: bool):
    """One SGD step: forward + loss, backward, per-variable clip of the inhibitory gradients
    (``g * c / max(||g||, c)``, Keras' ``clipnorm``), update, clamp to >= 0 (``NonNeg``)."""
    import torch
    import torch.nn.functional as F

    def loss_fn(net, x, y):
        logits, local = net(x)
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing) + local

    fwd = loss_fn
    if compile_:
        import torch._inductor.config as inductor_config

        inductor_config.compile_threads = 1  # no compile-worker pool on a 2-core machine
        fwd = torch.compile(loss_fn)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = fwd(net, x, y)
        loss.backward()
        if clipped:
            with torch.no_grad():
                grads = [p.grad for p in clipped]
                norms = torch._foreach_norm(grads)
                torch._foreach_mul_(grads, [clipnorm / n.clamp_min(clipnorm) for n in norms])
        opt.step()
        with torch.no_grad():
            torch._foreach_clamp_min_(constrained, 0.0)
        return loss

    return step


def time_peer(preset, width, batch, threads, steps, repeats, warmup, compile_, seed=0):
    """Steps/s of the peer: ``repeats`` timed runs of ``steps`` steps after ``warmup`` steps."""
    import torch

    torch.manual_seed(seed)
    step = make_step(*build(preset, width, seed), compile_)
    n = max(steps, warmup)
    X = torch.rand(n * batch, N_IN)
    Y = torch.randint(0, N_OUT, (n * batch,))
    xs = [X[i * batch:(i + 1) * batch] for i in range(n)]
    ys = [Y[i * batch:(i + 1) * batch] for i in range(n)]
    t0 = time.perf_counter()
    for i in range(warmup):
        loss = step(xs[i], ys[i])
    float(loss.detach())
    warm = time.perf_counter() - t0
    rates, cpu_rates = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(steps):
            loss = step(xs[i], ys[i])
        final = float(loss.detach())  # one host sync at the end, as the Keras timings
        rates.append(steps / (time.perf_counter() - t0))
        cpu_rates.append(steps / (time.process_time() - c0))
    return {"kind": "step", "contender": "torch-peer" + ("-compiled" if compile_ else "-eager"),
            "backend": "pytorch", "preset": preset, "width": width, "batch": batch,
            "threads": torch.get_num_threads(),
            "settings": "torch.compile(forward+loss), inductor" if compile_ else "eager",
            "warmup_s": warm, "warmup_steps": warmup, "steps": steps, "final_loss": final,
            **summarize(rates, cpu_rates)}


def check(width=64, steps=3, seed=3):
    """Peer == library: same seed, same batches, compare losses and weights after SGD steps."""
    import os

    os.environ["KERAS_BACKEND"] = "torch"
    import keras
    import numpy as np
    import torch

    from ei_keras import zoo

    worst = 0.0
    for preset in PRESETS:
        model = zoo.build(preset, width=width, seed=seed)
        net, *rest = build(preset, width, seed)
        # The peer's own init follows the library's recipe (checked: d_init); the Keras weights
        # are then copied in so that only float32 rounding can differ.
        peer_vars = dict(net.named_parameters())
        peer_vars.update(dict(net.named_buffers()))
        keras_vars = {}
        for v in model.weights:
            layer, leaf = v.path.split("/")[-2:]
            name = ("readout" if layer == "readout" else
                    f"hidden.{int(layer.split('_')[1]) - 1}") + "." + \
                   ("lateral" if leaf == "lateral_weights" else leaf)
            keras_vars[name] = v
        missing = set(peer_vars) ^ set(keras_vars)
        assert not missing, f"variable sets differ: {missing}"
        d_init = max(float(np.max(np.abs(keras.ops.convert_to_numpy(keras_vars[n]) -
                                         p.detach().numpy()))) for n, p in peer_vars.items())
        with torch.no_grad():
            for name, p in peer_vars.items():
                p.copy_(torch.as_tensor(keras.ops.convert_to_numpy(keras_vars[name])))
        step = make_step(net, *rest, compile_=False)
        rng = np.random.default_rng(0)
        d_loss, losses = 0.0, []
        for _ in range(steps):
            x = rng.random((32, N_IN), dtype=np.float32)
            y = rng.integers(0, N_OUT, 32).astype("int32")
            logs = model.train_on_batch(x, y, return_dict=True)
            loss = float(step(torch.as_tensor(x), torch.as_tensor(y).long()).detach())
            d_loss = max(d_loss, abs(logs["loss"] - loss) / max(1.0, abs(loss)))
            losses.append(loss)
        d_w = max(float(np.max(np.abs(keras.ops.convert_to_numpy(keras_vars[n]) -
                                      p.detach().numpy()))) for n, p in peer_vars.items())
        worst = max(worst, d_loss, d_w, d_init)
        trail = " ".join(f"{v:.4f}" for v in losses)
        print(f"{preset:>15}: max |W_keras - W_peer| at init = {d_init:.1e}; losses {trail}; "
              "max relative "
              f"|loss_keras - loss_peer| = {d_loss:.1e}; max |W_keras - W_peer| after {steps} "
              f"steps = {d_w:.1e}")
    return worst


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="inorm_gradnorm",
                    help=f"comma-separated, from {','.join(PRESETS)}")
    ap.add_argument("--widths", default="500", help="comma-separated hidden widths")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="torch.compile the forward + loss")
    ap.add_argument("--check", action="store_true", help="compare with the library, then exit")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    configure_threads(args.threads)
    import warnings

    import torch

    warnings.filterwarnings("ignore", message=".*__array__ implementation doesn't accept.*")
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    if args.check:
        worst = check()
        print(f"worst difference {worst:.2e}")
        # float32 reassociation only: measured <= 5e-7 (an unstable preset would amplify it)
        sys.exit(0 if worst < 1e-4 else 1)
    for width in (int(w) for w in args.widths.split(",")):
        for preset in args.presets.split(","):
            try:
                r = time_peer(preset, width, args.batch, args.threads, args.steps,
                              args.repeats, args.warmup, args.compile)
            except Exception as e:  # report and go on
                r = {"kind": "error", "backend": "pytorch", "preset": preset, "width": width,
                     "threads": args.threads, "error": f"{type(e).__name__}: {str(e)[:300]}",
                     "contender": "torch-peer" + ("-compiled" if args.compile else "-eager")}
            if args.json:
                emit(r)
            elif r["kind"] == "error":
                print(f"{r['contender']} {preset} width {width}: {r['error']}")
            else:
                print(f"{r['contender']} {preset} width {width} threads {r['threads']}: "
                      f"{r['median']:.1f} steps/s (min {r['min']:.1f}, max {r['max']:.1f}); "
                      f"warm-up {r['warmup_steps']} steps {r['warmup_s']:.2f} s")


if __name__ == "__main__":
    main()
