"""Contrast shifts (beyond the paper): a multiplicative nuisance, `log c ~ U(-log s, log s)`.

`python recipes/contrast.py [--smoke] [--out DIR] [--contrast 2,4] [key=value ...]` is the same
as `ei-keras reproduce contrast`; the protocol is `ei_keras.recipes.PROTOCOLS["contrast"]`.
"""

import sys

from ei_keras.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "contrast", *sys.argv[1:]]))
