#!/usr/bin/env bash
# Idempotent set-up for ei_keras: the data files, a virtual environment with all three Keras
# backends (TensorFlow, JAX, PyTorch) and the package itself. Safe to run again: it only redoes
# the pip step when pyproject.toml changed. Called by `make demo` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${EI_KERAS_VENV:-.venv}
PY=${PYTHON:-python3}

# 1. Fashion-MNIST, offline: Debian's package installs the four IDX files (SPEC section 4).
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${EI_KERAS_DATA_DIR:-}" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[setup] installing Debian package dataset-fashion-mnist"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "[setup] Fashion-MNIST files not found and apt-get is not usable here; ei_keras will try" \
         "the Keras cache and then a download (set EI_KERAS_DATA_DIR to a folder holding the 4 IDX .gz files)."
  fi
fi

# 2. The virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.ei-keras-setup"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  start=$(date +%s)
  echo "[setup] installing dependencies into $VENV (about 1.5 minutes the first time)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    # Pinned: the CPU wheel. An unpinned torch can pull a multi-GB CUDA build.
    "$VENV/bin/pip" install -q --disable-pip-version-check "torch==${EI_KERAS_TORCH_VERSION:-2.13.0}" 2>&1 | grep -v '^WARNING: Location' || true
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check -e ".[all]" 2>&1 | grep -v '^WARNING: Location' || true
  TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0 "$VENV/bin/python" -c "import torch, keras, jax, tensorflow, keras_tuner" \
    || { echo "[setup] FAILED: the environment does not import all three backends" >&2; exit 1; }
  echo "$want" > "$stamp"
  echo "[setup] done in $(( $(date +%s) - start )) s; venv size $(du -sh "$VENV" | cut -f1)"
fi
