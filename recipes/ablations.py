"""Ablations of our explanations (issue 23): detached LN, GradNorm y vs z, clip, EG vs GD, λ grid.

`python recipes/ablations.py [--smoke] [--out DIR] [key=value ...]` is the same as
`ei-keras reproduce ablations`; the protocol is `ei_keras.recipes.PROTOCOLS["ablations"]`.
"""

import sys

from ei_keras.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "ablations", *sys.argv[1:]]))
