"""Reproduce Fig. 7 of the paper: `python recipes/fig7.py [--smoke] [--out DIR] [key=value ...]`.

Same as `ei-keras reproduce fig7`; the protocol (conditions, luminosities, configurations,
epochs) is `ei_keras.recipes.PROTOCOLS["fig7"]`.
"""

import sys

from ei_keras.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "fig7", *sys.argv[1:]]))
