"""One backend's GPU check, run by scripts/gpu_check.sh (KERAS_BACKEND chooses the backend).

Trains the same preset from the same initial weights on the same batches twice, each in a
fresh process: once where the framework places it by default (the GPU, when it sees one) and
once with every accelerator hidden (`CUDA_VISIBLE_DEVICES=-1`, `JAX_PLATFORMS=cpu`,
`KERAS_TORCH_DEVICE=cpu`). Nothing names a vendor API: each run reports where its variables
live. TensorFloat-32 matmuls are turned off so both runs compute in float32; losses and every
variable must then agree to float32 rounding accumulated over 40 SGD steps (rtol 2e-4,
atol 2e-5). On the backends with a population trainer (`ei_keras.population.BACKENDS`: JAX,
PyTorch) each run also trains a population of 4 members (seeds 0-3, different learning rates
and lambda, their own batch orders) for 20 steps in one compiled program; every member's
variables are compared the same way (`population|<member>|<path>`).

Exit status: 0 match, 1 mismatch, 2 no GPU visible to this backend.
`EI_KERAS_GPU_CHECK_DEVICE=cpu` runs both trainings on the CPU (how the test suite checks this
script on machines without a GPU); `EI_KERAS_GPU_CHECK_PRESET` picks another preset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PRESET = os.environ.get("EI_KERAS_GPU_CHECK_PRESET", "inorm_gradnorm")
STEPS, BATCH, WIDTH = 20, 32, 64
RTOL, ATOL = 2e-4, 2e-5
CPU_ONLY = {"CUDA_VISIBLE_DEVICES": "-1", "JAX_PLATFORMS": "cpu", "KERAS_TORCH_DEVICE": "cpu"}


def _float32_matmuls(backend: str) -> None:
    """Turn TensorFloat-32 off (on by default for some GPUs) so the GPU computes in float32."""
    if backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    elif backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def _where(variable) -> str:
    """The device a Keras variable's value lives on, as the framework names it."""
    value = variable.value
    device = getattr(value, "device", None)
    if device is None or callable(device):  # jax.Array: .devices()
        device = ",".join(str(d) for d in value.devices())
    return str(device)


def worker(out: Path) -> None:
    """Train 2 epochs of STEPS batches; write losses, device and variables to `out`."""
    import keras
    import numpy as np

    from ei_keras import zoo

    _float32_matmuls(keras.backend.backend())
    rng = np.random.default_rng(0)
    x = rng.random((STEPS * BATCH, 784), dtype=np.float32)
    y = rng.integers(0, 10, STEPS * BATCH)
    keras.utils.set_random_seed(0)
    model = zoo.build(PRESET, width=WIDTH, seed=0, jit_compile=False)
    history = model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    weights = {v.path.replace("/", "|"): keras.ops.convert_to_numpy(v) for v in model.variables}
    weights.update(_population(x, y))
    np.savez(out / "weights.npz", **weights)
    (out / "run.json").write_text(json.dumps({
        "device": _where(model.trainable_variables[0]),
        "losses": [float(v) for v in history.history["loss"]],
    }))


def _population(x, y) -> dict:
    """A 4-member population trained STEPS steps (nothing on backends without the engine)."""
    import keras
    import numpy as np

    from ei_keras import population, zoo

    if keras.backend.backend() not in population.BACKENDS:
        return {}
    members = 4
    models = [zoo.build(PRESET, width=WIDTH, seed=s, lr_e=0.01 * (s + 1),
                        norm_weight=0.005 * (s + 1)) for s in range(members)]
    for m in models:
        m.optimizer.build(m.trainable_variables)
    template = models[0]
    template.evaluate(x[:BATCH], y[:BATCH], batch_size=BATCH, verbose=0)  # builds its metrics
    carry = population.initial_carry(models, template.metrics_variables)
    orders = [np.random.default_rng(s).permutation(len(x)) for s in range(members)]
    xs = np.stack([np.stack([x[o[k * BATCH:(k + 1) * BATCH]] for o in orders])
                   for k in range(STEPS)])
    ys = np.stack([np.stack([y[o[k * BATCH:(k + 1) * BATCH]] for o in orders])
                   for k in range(STEPS)]).astype("int32")
    carry = population.member_chunk(template, steps=STEPS, spe=1)(carry, xs, ys)
    trainable = carry[0][0]
    out = {}
    for i, v in enumerate(template.trainable_variables):
        values = keras.ops.convert_to_numpy(trainable[i])
        for p in range(members):
            out[f"population|{p}|{v.path.replace('/', '|')}"] = values[p]
    return out


def _train(extra_env: dict[str, str], folder: Path) -> tuple[dict, dict]:
    env = {**os.environ, **extra_env}
    subprocess.run([sys.executable, __file__, "--worker", str(folder)], env=env, check=True)
    import numpy as np

    with np.load(folder / "weights.npz") as data:
        weights = {k: data[k] for k in data.files}
    return json.loads((folder / "run.json").read_text()), weights


def main() -> int:
    import numpy as np

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    forced_cpu = os.environ.get("EI_KERAS_GPU_CHECK_DEVICE", "").lower() == "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "gpu").mkdir()
        (Path(tmp) / "cpu").mkdir()
        gpu, gpu_w = _train(CPU_ONLY if forced_cpu else {}, Path(tmp) / "gpu")
        if not forced_cpu and not any(k in gpu["device"].lower() for k in ("gpu", "cuda")):
            print(f"error: no GPU visible to the {backend} backend (it trained on "
                  f"{gpu['device']}); install the CUDA builds (`EI_KERAS_GPU=1 make setup`) on "
                  "a machine with an NVIDIA GPU and its driver", file=sys.stderr)
            return 2
        cpu, cpu_w = _train(CPU_ONLY, Path(tmp) / "cpu")
    bad = []
    if not np.allclose(gpu["losses"], cpu["losses"], rtol=RTOL, atol=ATOL):
        bad.append(f"epoch losses {gpu['losses']} ({gpu['device']}) vs {cpu['losses']} (CPU)")
    for name, w in cpu_w.items():
        g = gpu_w[name]
        if not np.allclose(g, w, rtol=RTOL, atol=ATOL):
            bad.append(f"{name.replace('|', '/')}: max |GPU - CPU| = "
                       f"{float(np.max(np.abs(g - w))):.3g}")
    if bad:
        print(f"error: {backend} on {gpu['device']} does not match the CPU (rtol {RTOL}, "
              f"atol {ATOL}):\n  " + "\n  ".join(bad), file=sys.stderr)
        return 1
    members = sum(name.startswith("population|") for name in cpu_w)
    print(f"ok: {backend} trained {PRESET} for {2 * STEPS} steps on {gpu['device']}; losses "
          f"and {len(cpu_w) - members} variables match the CPU run (final loss "
          f"{gpu['losses'][-1]:.6f})"
          + (f"; a population's {members} member variables too" if members else ""))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(Path(sys.argv[2]))
        sys.exit(0)
    sys.exit(main())
