"""The optional parts of the install and the one message that names a missing one.

`pip install ei-keras` is the library: Keras, NumPy and the backend the user chose. The research
harness (the `ei-keras` verbs that train, sweep and report, and the modules behind them) needs
the `research` extra of `pyproject.toml`: KerasTuner, scipy, matplotlib, TensorBoard. Those
parts check for it before they start (`require`) and say what to install.
"""

from __future__ import annotations

import importlib.util

#: The modules each extra installs (import names), as `pyproject.toml` declares them.
EXTRAS: dict[str, tuple[str, ...]] = {
    "research": ("keras_tuner", "scipy", "matplotlib", "tensorboard"),
}


class MissingExtraError(ImportError):
    """A part of ei_keras was used whose extra is not installed; the message says what to
    install."""


def missing(extra: str) -> list[str]:
    """The modules of `extra` that are not installed (found without importing them)."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def message(extra: str, what: str, absent: list[str]) -> str:
    """One sentence: `what` needs `extra`, which modules are absent and the `pip install`."""
    return (f"{what} needs the {extra} extra ({', '.join(absent)} not installed): "
            f'pip install "ei-keras[{extra}]"')


def require(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise `MissingExtraError` when a module of `extra` (or only `modules` of it) is absent.

    Args:
        extra: the extra's name in `pyproject.toml`, e.g. `"research"`.
        what: who needs it, for the message, e.g. `"ei-keras report"`.
        modules: the modules of the extra actually needed; all of them by default.
    """
    wanted = EXTRAS[extra] if modules is None else modules
    absent = [m for m in wanted if importlib.util.find_spec(m) is None]
    if absent:
        raise MissingExtraError(message(extra, what, absent))
