#!/usr/bin/env bash
# Run the whole test suite once per Keras backend, each in its own process (the backend is
# fixed at import). Any failure under any backend fails the run. Extra arguments go to pytest,
# e.g. `bash scripts/test_all_backends.sh -k lateral`. EI_KERAS_BACKENDS picks a subset.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${EI_KERAS_VENV:-.venv}/bin/python
export TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0 OMP_WAIT_POLICY=PASSIVE PYTHONHASHSEED=0
backends=${EI_KERAS_BACKENDS:-"tensorflow jax torch"}
passed=0; failed=0; status=0; summary=""
for b in $backends; do
  log=$(mktemp)
  start=$(date +%s)
  echo "=============== backend: $b ==============="
  KERAS_BACKEND=$b "$PY" -m pytest -q -p no:cacheprovider "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  secs=$(( $(date +%s) - start ))
  line=$(grep -E '^(=+ )?[0-9]+ (passed|failed)' "$log" | tail -n 1)
  p=$(echo "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
  f=$(echo "$line" | grep -oE '[0-9]+ (failed|error|errors)' | awk '{s+=$1} END {print s+0}')
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
  if [ "$rc" -ne 0 ]; then status=1; [ "${f:-0}" = 0 ] && failed=$((failed + 1)); fi
  summary="$summary\n  $b: rc=$rc, ${p:-0} passed, ${f:-0} failed, ${secs}s"
  rm -f "$log"
done
printf "\n=============== all backends ===============%b\n" "$summary"
echo "total: $passed passed, $failed failed"
exit $status
