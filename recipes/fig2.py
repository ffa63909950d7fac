"""Reproduce Fig. 2 of the paper: `python recipes/fig2.py [--smoke] [--out DIR] [key=value ...]`.

Same as `ei-keras reproduce fig2`; the protocol (conditions, luminosities, configurations,
epochs) is `ei_keras.recipes.PROTOCOLS["fig2"]`.
"""

import sys

from ei_keras.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "fig2", *sys.argv[1:]]))
