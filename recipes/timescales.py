"""Inhibitory plasticity timescales (beyond the paper): k normalization-loss updates per batch.

`python recipes/timescales.py [--smoke] [--out DIR] [key=value ...]` is the same as
`ei-keras reproduce timescales`; the protocol is `ei_keras.recipes.PROTOCOLS["timescales"]`.
"""

import sys

from ei_keras.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "timescales", *sys.argv[1:]]))
