"""Reproduce Fig. 5 of the paper: `python recipes/fig5.py [--smoke] [--out DIR] [key=value ...]`.

Same as `ei-keras reproduce fig5`; the protocol (conditions, luminosities, configurations,
epochs) is `ei_keras.recipes.PROTOCOLS["fig5"]`.
"""

import sys

from ei_keras.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "fig5", *sys.argv[1:]]))
