"""`python -m ei_keras.tuning --preset ei_ln ...`: the sweep without the main CLI (for
distributed workers and tests). Choose the backend with `KERAS_BACKEND`."""

import argparse
import os
import sys

from ei_keras.tuning.cli import SWEEP_EPILOG, add_arguments, cmd_sweep


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ei_keras.tuning", epilog=SWEEP_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="KerasTuner random search of one preset.")
    args = add_arguments(parser).parse_args(argv)
    from ei_keras.extras import message, missing

    absent = missing("research")
    if absent:
        print(f"error: {message('research', 'python -m ei_keras.tuning', absent)}",
              file=sys.stderr)
        return 2
    if args.backend:
        import keras

        if keras.backend.backend() != args.backend:
            parser.error(f"Keras already runs on {keras.backend.backend()!r}: set "
                         f"KERAS_BACKEND={args.backend} instead of --backend.")
    if os.environ.get("KERAS_BACKEND") == "torch":
        import torch  # noqa: F401  (before tensorflow, which KerasTuner may import)
    return cmd_sweep(args)


if __name__ == "__main__":
    sys.exit(main())
