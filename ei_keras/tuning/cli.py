"""The `sweep` subcommand: `add_sweep_parser(subparsers)` adds it, `cmd_sweep` runs it.

This module imports only the standard library and `ei_keras.backend_choice`, so building
the parser does not import Keras.
"""

from __future__ import annotations

import argparse
import sys

from ei_keras.backend_choice import BACKENDS

SWEEP_EPILOG = """\
distributed: the same command on every process, with KerasTuner's environment variables
  chief:    KERASTUNER_TUNER_ID=chief KERASTUNER_ORACLE_IP=0.0.0.0 KERASTUNER_ORACLE_PORT=8000
  worker i: KERASTUNER_TUNER_ID=worker<i> KERASTUNER_ORACLE_IP=<chief's address>
            KERASTUNER_ORACLE_PORT=8000
rerunning the same command resumes an interrupted sweep.
exit codes: 0 done, 2 invalid input (bad data files are found before the tuner starts; a
sweep folder holds one --tuner's trials), 4 chief found no workers for --timeout s, 5 worker
lost the chief for --timeout s (state is saved in both cases: rerun to resume), 6 out of
memory (the trial is redone when the sweep is resumed)."""


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The sweep's arguments (shared by `ei-keras sweep` and `python -m ei_keras.tuning`)."""
    p.add_argument("--config", help="tuner configuration file (default: tuner_configs/"
                   "<family>.json of the preset: ei.json or inorm.json)")
    p.add_argument("--preset", required=True, help="zoo preset to sweep (ei-keras presets)")
    p.add_argument("--luminosity", type=float, default=0.75,
                   help="luminosity-shift half-width r (default 0.75)")
    p.add_argument("--tuner", choices=("random", "hyperband", "bayesian"), default="random",
                   help="KerasTuner search: random (the paper's protocol, default), hyperband, "
                   "or bayesian (needs scikit-learn: pip install 'ei-keras[bayesian]')")
    p.add_argument("--trials", type=int, default=30,
                   help="configurations tried by random and bayesian search (default 30, the "
                   "paper's); Hyperband sizes itself from the space's epochs")
    p.add_argument("--out", default="runs/sweeps",
                   help="sweep root: tuner state in <out>/<preset>_r<lum>, run directories in "
                   "<out>/runs/<preset>/r<lum>/trial_<id> (default runs/sweeps)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny trials for CI: width 8 or 16, 1 epoch, 128 train/test samples")
    p.add_argument("--epochs", type=int, help="fix the epochs of every trial (default: the "
                   "file's, 50)")
    p.add_argument("--seed", type=int, default=1,
                   help="sampling seed, >= 1 (default 1; same seed, same configurations)")
    p.add_argument("--timeout", type=float, default=900.0,
                   help="distributed mode: seconds a chief waits for a silent worker and a "
                   "worker for an unreachable chief before giving up (default 900)")
    p.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--save-models", action="store_true",
                   help="keep model.keras in every run directory (for get_best_models)")
    if not any("--backend" in a.option_strings for a in p._actions):
        p.add_argument("--backend", choices=BACKENDS,
                       help="Keras backend (handled by the main command)")
    return p


def add_sweep_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `sweep` subcommand to an `argparse` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "sweep", help="KerasTuner random search of one preset at one luminosity (resumable, "
        "distributed)", epilog=SWEEP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=cmd_sweep)
    return p


def cmd_sweep(args) -> int:
    """Run the sweep described by parsed arguments; return the exit status."""
    from ei_keras.tuning.sweep import (
        EXIT_NO_WORKERS,
        SweepTimeoutError,
        run_sweep,
    )

    try:
        run_sweep(args.config, preset=args.preset, luminosity=args.luminosity,
                  trials=args.trials, out_dir=args.out, smoke=args.smoke, epochs=args.epochs,
                  seed=args.seed, timeout=args.timeout, data_dir=args.data_dir,
                  save_models=args.save_models, freeze_gc=True, tuner=args.tuner)
    except SweepTimeoutError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_NO_WORKERS
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0
