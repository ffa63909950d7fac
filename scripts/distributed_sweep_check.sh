#!/usr/bin/env bash
# KerasTuner sweeps across processes, under every Keras backend: chief + 2 workers on 127.0.0.1
# run every trial exactly once; a sweep killed (SIGKILL) mid-trial resumes with each trial run
# once; a chief without workers and a worker without a chief give up after --timeout.
# The test suite runs them too; this script runs just these, for a quick targeted check.
# Usage: bash scripts/distributed_sweep_check.sh   (EI_KERAS_BACKENDS picks a subset)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${EI_KERAS_VENV:-.venv}/bin/python
export TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0 OMP_WAIT_POLICY=PASSIVE
status=0; summary=""
for b in ${EI_KERAS_BACKENDS:-"tensorflow jax torch"}; do
  echo "=============== backend: $b ==============="
  start=$(date +%s)
  KERAS_BACKEND=$b "$PY" -m pytest -q -p no:cacheprovider tests/test_tuning.py \
    -k "chief_and_two_workers or killed_sweep or give_up"
  rc=$?
  [ "$rc" -ne 0 ] && status=1
  summary="$summary\n  $b: rc=$rc, $(( $(date +%s) - start ))s"
done
printf "\n=============== distributed sweep check ===============%b\n" "$summary"
exit $status
