"""Finding 5 for a convolutional EI network (beyond the paper): conv I-Norm with and without
GradNorm against conv LN across luminosity shifts.

`python recipes/conv.py [--smoke] [--out DIR] [--luminosity 0,0.75] [key=value ...]` is the same
as `ei-keras reproduce conv`; the protocol is `ei_keras.recipes.PROTOCOLS["conv"]`.
"""

import sys

from ei_keras.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "conv", *sys.argv[1:]]))
