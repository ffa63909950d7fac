"""Reproduce Fig. 3 of the paper: `python recipes/fig3.py [--smoke] [--out DIR] [key=value ...]`.

Same as `ei-keras reproduce fig3`; the protocol (conditions, luminosities, configurations,
epochs) is `ei_keras.recipes.PROTOCOLS["fig3"]`.
"""

import sys

from ei_keras.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "fig3", *sys.argv[1:]]))
