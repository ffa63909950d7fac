#!/usr/bin/env bash
# Does ei_keras train on the GPU, and agree with the CPU, under every backend?
#
# For TensorFlow, JAX and PyTorch in turn (each in its own process: the backend is fixed at
# import), scripts/gpu_check.py trains a preset for 40 batches where the framework places it
# (the GPU) and again with accelerators hidden, from the same initial weights on the same
# batches, with TensorFloat-32 off, and requires losses and weights to agree to float32
# tolerance. Needs the CUDA builds: `EI_KERAS_GPU=1 make setup` (README, "GPU"). Exit status 0
# only when every backend passed; where a backend sees no GPU it fails with one `error:` line
# (each run reports where its variables live, so the check names no vendor tool).
# EI_KERAS_BACKENDS picks a subset, EI_KERAS_VENV another environment.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${EI_KERAS_VENV:-.venv}/bin/python
[ -x "$PY" ] || { echo "error: no Python at $PY: run \`EI_KERAS_GPU=1 make setup\` first" >&2; exit 2; }
export TF_CPP_MIN_LOG_LEVEL=3 OMP_WAIT_POLICY=PASSIVE
status=0
for b in ${EI_KERAS_BACKENDS:-tensorflow jax torch}; do
  echo "=== $b ==="
  KERAS_BACKEND=$b "$PY" scripts/gpu_check.py || status=1
done
[ "$status" = 0 ] && echo "gpu_check: all backends passed" || echo "error: gpu_check failed (see above)" >&2
exit $status
