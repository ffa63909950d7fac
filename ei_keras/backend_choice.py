"""Which Keras backend a command runs on, decided before Keras is imported.

The backends ei-keras runs on, whether each is installed (`importlib.util.find_spec` of its
framework, which imports nothing), the backend Keras would pick by itself, and the choice the
`ei-keras` command makes from them: an explicitly named backend (`--backend` or
`$KERAS_BACKEND`) must be installed; a default one (the verb's, else Keras' configured
default) is replaced by the first installed backend, with a note saying so.

Example:

```python
from ei_keras.backend_choice import BACKENDS, choose, installed

BACKENDS       # ('jax', 'torch', 'tensorflow')
installed()    # ('jax', 'torch', 'tensorflow') where all three are installed
choose("jax")  # ('jax', None): named and installed
```

With TensorFlow absent, `KERAS_BACKEND` unset and keras.json naming tensorflow,
`choose()` returns jax and the note `the default backend tensorflow (~/.keras/keras.json)
is not installed: running on jax ...`; `choose("tensorflow")` raises `BackendError`.

This module imports neither Keras nor any framework.
"""

from __future__ import annotations

import importlib.util
import json
import os

#: The backends ei-keras runs on, in the order a missing default is replaced: the fastest on
#: CPU first (bench/). Each is also the name of its framework's module and of the
#: `ei-keras[<backend>]` extra that installs it.
BACKENDS = ("jax", "torch", "tensorflow")
#: Keras' own default when neither `$KERAS_BACKEND` nor keras.json names one.
KERAS_DEFAULT = "tensorflow"


class BackendError(ValueError):
    """The requested backend is unknown or not installed, or no backend is installed."""


def is_installed(backend: str) -> bool:
    """Whether the framework of `backend` can be imported (found, not imported).

    Example: `is_installed("jax")` is True after `pip install "ei-keras[jax]"`.
    """
    try:
        return importlib.util.find_spec(backend) is not None
    except (ImportError, ValueError):  # a broken or half-imported package
        return False


def installed() -> tuple[str, ...]:
    """The installed backends, in `BACKENDS` order, e.g. `('jax', 'torch')`."""
    return tuple(b for b in BACKENDS if is_installed(b))


def keras_config_path() -> str:
    """The keras.json Keras reads: `$KERAS_HOME/keras.json`, else `~/.keras/keras.json`
    (`/tmp/.keras` where the home folder is not writable), as Keras computes it."""
    if "KERAS_HOME" in os.environ:
        folder = os.environ["KERAS_HOME"]
    else:
        home = os.path.expanduser("~")
        folder = os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")
    return os.path.expanduser(os.path.join(folder, "keras.json"))


def keras_default() -> tuple[str, str]:
    """The backend Keras picks when `$KERAS_BACKEND` is unset, and where that comes from.

    Example: `keras_default()` is `('tensorflow', '/root/.keras/keras.json')` when that file
    names tensorflow, and `('tensorflow', "Keras' built-in default")` without a file.
    """
    path = keras_config_path()
    try:
        with open(path) as f:
            backend = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):  # no file, not JSON, not an object
        backend = None
    if isinstance(backend, str) and backend:
        return backend, path
    return KERAS_DEFAULT, "Keras' built-in default"


def _pip_hint(backend: str, found: tuple[str, ...]) -> str:
    return (f'pip install "ei-keras[{backend}]" (installed: {", ".join(found) or "none"}) '
            "or choose another with --backend")


def choose(requested: str | None = None, *, default: str | None = None) -> tuple[str, str | None]:
    """The backend to run on and, when a missing default was replaced, a note saying so.

    Args:
        requested: the `--backend` value, or None.
        default: the verb's own default backend (`demo`: jax), used when neither
            `requested` nor `$KERAS_BACKEND` names one; None means Keras' configured default.

    Returns:
        `(backend, note)`; `note` is None unless the default was not installed.

    Raises:
        BackendError: the backend named by `requested` or `$KERAS_BACKEND` is not one of
            `BACKENDS` or is not installed, or no backend is installed.

    Example:
        `choose("torch")` is `("torch", None)` where torch is installed and raises
        BackendError where it is not; `choose(default="jax")` with `KERAS_BACKEND` unset is
        `("jax", None)` where jax is installed, else the first installed backend and a note.
    """
    name, source = requested, "--backend"
    if not name and os.environ.get("KERAS_BACKEND"):
        name, source = os.environ["KERAS_BACKEND"], "KERAS_BACKEND"
    if name:
        if name not in BACKENDS:
            raise BackendError(f"{source} {name!r} is not a backend ei-keras runs on: choose "
                               f"one of {', '.join(BACKENDS)}")
        if not is_installed(name):
            raise BackendError(f"the {name} backend is not installed: "
                               f"{_pip_hint(name, installed())}")
        return name, None
    wanted, origin = (default, "this command's default") if default else keras_default()
    if wanted in BACKENDS and is_installed(wanted):
        return wanted, None
    found = installed()
    if not found:
        raise BackendError("no Keras backend is installed: pip install "
                           + " or ".join(f'"ei-keras[{b}]"' for b in BACKENDS))
    why = "is not installed" if wanted in BACKENDS else "is not a backend ei-keras runs on"
    return found[0], (f"the default backend {wanted} ({origin}) {why}: running on {found[0]} "
                      f"(installed: {', '.join(found)}); choose with --backend or KERAS_BACKEND")
