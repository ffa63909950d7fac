"""The `ei-keras` console script: `ei_keras.cli.main`, started without importing Keras.

`import ei_keras` imports Keras (and Keras' default backend) to register the package's layers,
so an entry point inside the package would spend seconds on `ei-keras --help`. This module lies
outside the package: it marks the one import of `ei_keras` it makes as the command's, which
then skips that registration; `ei_keras.cli` parses the command line, sets the backend,
and registers the layers (`ei_keras._register`) only for the verbs that use Keras.

Example: `ei-keras --help` or, without the script, `python -m ei_keras_cli --help`.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    """Run `ei-keras` with `sys.argv`; returns the exit status."""
    if "ei_keras" not in sys.modules:
        os.environ["_EI_KERAS_CLI"] = "1"  # read and removed by ei_keras/__init__.py
    from ei_keras.cli import leave_if_interrupted
    from ei_keras.cli import main as cli_main

    code = cli_main()
    leave_if_interrupted(code)  # an interrupted run ends without the teardown (see there)
    return code


if __name__ == "__main__":
    sys.exit(main())
