"""Reproduce Fig. 6 of the paper: `python recipes/fig6.py [--smoke] [--out DIR] [key=value ...]`.

Same as `ei-keras reproduce fig6`; the protocol (conditions, luminosities, configurations,
epochs) is `ei_keras.recipes.PROTOCOLS["fig6"]`.
"""

import sys

from ei_keras.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "fig6", *sys.argv[1:]]))
