#!/usr/bin/env bash
# Idempotent set-up for ei_keras: the data files, a virtual environment with all three Keras
# backends (TensorFlow, JAX, PyTorch) and the package itself. Safe to run again: it only redoes
# the pip step when pyproject.toml changed. Called by `make demo`, `make test` and `make docs`.
#
#   bash scripts/setup.sh           CPU builds of TensorFlow, JAX and torch: extra `all`
#   EI_KERAS_GPU=1 bash scripts/... CUDA builds (Linux, NVIDIA GPU): extra `gpu`; replaces the
#                                   CPU builds of an existing venv. Check: scripts/gpu_check.sh
#   bash scripts/setup.sh --docs    only the docs site's venv (.venv-docs: extra `docs`, no Keras,
#                                   no backend), for `make docs`
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${EI_KERAS_VENV:-.venv}
PY=${PYTHON:-python3}
GPU=${EI_KERAS_GPU:-0}
DOCS=0
for arg in "$@"; do
  case "$arg" in
    --docs) DOCS=1 ;;
    *) echo "error: unknown option $arg (expected --docs)" >&2; exit 2 ;;
  esac
done
if [ "$GPU" = 1 ]; then EXTRAS=gpu; else EXTRAS=all; fi

# The docs site's tools (`make docs`) in their own small venv: griffe reads the docstrings from
# the source files without importing them, so the site needs neither Keras nor a backend. Only
# the `docs` extra's requirements are installed (not the package).
if [ "$DOCS" = 1 ]; then
  DVENV=${EI_KERAS_DOCS_VENV:-.venv-docs}
  [ -x "$DVENV/bin/python" ] || { echo "[setup] creating $DVENV"; "$PY" -m venv "$DVENV"; }
  dstamp="$DVENV/.ei-keras-docs-setup"
  dwant=$( (cat pyproject.toml scripts/setup.sh) | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$dstamp" 2>/dev/null)" != "$dwant" ]; then
    echo "[setup] installing the docs tools (extra \`docs\`) into $DVENV"
    "$DVENV/bin/python" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["docs"]))' \
      > "$DVENV/.ei-keras-docs-requirements.txt"
    "$DVENV/bin/pip" install -q --disable-pip-version-check -r "$DVENV/.ei-keras-docs-requirements.txt" 2>&1 | grep -v '^WARNING: Location' || true
    "$DVENV/bin/python" -c "import mkdocs, material, mkdocstrings" \
      || { echo "[setup] FAILED: the docs tools do not import" >&2; exit 1; }
    echo "$dwant" > "$dstamp"
  fi
  exit 0
fi

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
want=$( (cat pyproject.toml scripts/setup.sh; echo "extras=$EXTRAS") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  start=$(date +%s)
  echo "[setup] installing dependencies into $VENV (about 1.5 minutes the first time)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  if [ "$GPU" = 1 ]; then
    # The CUDA builds replace CPU ones: tensorflow-cpu and tensorflow[and-cuda] both install the
    # `tensorflow` module, and a CPU torch (2.13.0+cpu) satisfies `torch==2.13.0`.
    if "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.version.cuda is not None)" >/dev/null 2>&1; then
      "$VENV/bin/pip" uninstall -q -y torch
    fi
    "$VENV/bin/pip" uninstall -q -y tensorflow-cpu 2>/dev/null || true
    # PyPI's Linux torch wheel is the CUDA build; EI_KERAS_TORCH_INDEX picks another index
    # (e.g. https://download.pytorch.org/whl/cu128 for another CUDA version).
    "$VENV/bin/pip" install -q --disable-pip-version-check ${EI_KERAS_TORCH_INDEX:+--index-url "$EI_KERAS_TORCH_INDEX"} \
      "torch==${EI_KERAS_TORCH_VERSION:-2.13.0}" 2>&1 | grep -v '^WARNING: Location' || true
  elif ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    # Pinned: the CPU wheel. An unpinned torch can pull a multi-GB CUDA build.
    "$VENV/bin/pip" install -q --disable-pip-version-check "torch==${EI_KERAS_TORCH_VERSION:-2.13.0}" 2>&1 | grep -v '^WARNING: Location' || true
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check -e ".[$EXTRAS]" 2>&1 | grep -v '^WARNING: Location' || true
  TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0 "$VENV/bin/python" -c "import torch, keras, jax, tensorflow, keras_tuner, scipy, matplotlib" \
    || { echo "[setup] FAILED: the environment does not import all three backends" >&2; exit 1; }
  echo "$want" > "$stamp"
  echo "[setup] done in $(( $(date +%s) - start )) s; venv size $(du -sh "$VENV" | cut -f1)"
fi
