#!/bin/bash
# conv presets on their defaults at full size: 60 000 images, 3 epochs, r = 0.75, seeds 0-2 (JAX, one thread per run, two runs at a time); summarized into full_size_defaults.jsonl
export KERAS_BACKEND=jax XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" OMP_NUM_THREADS=1
for p in conv_ei conv_ei_ln conv_inorm conv_inorm_gradnorm; do for s in 0 1 2; do echo "$p $s"; done; done | \
  xargs -P 2 -n 2 sh -c '/work/main/.venv/bin/ei-keras train --preset $0 --seed $1 --out /tmp/convdef/runs/$0-s$1 train.epochs=3 data.luminosity=0.75 > /tmp/convdef/$0-s$1.log 2>&1; echo "$0 $1 rc=$?"'
