"""Reproduce Fig. 4 of the paper: `python recipes/fig4.py [--smoke] [--out DIR] [key=value ...]`.

Same as `ei-keras reproduce fig4`; the protocol (conditions, luminosities, configurations,
epochs) is `ei_keras.recipes.PROTOCOLS["fig4"]`.
"""

import sys

from ei_keras.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "fig4", *sys.argv[1:]]))
