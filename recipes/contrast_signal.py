"""Contrast as signal (beyond the paper): the label also says low or high contrast.

`python recipes/contrast_signal.py [--smoke] [--out DIR] [--contrast 2,4] [key=value ...]` is
the same as `ei-keras reproduce contrast_signal`; the protocol is
`ei_keras.recipes.PROTOCOLS["contrast_signal"]`.
"""

import sys

from ei_keras.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "contrast_signal", *sys.argv[1:]]))
