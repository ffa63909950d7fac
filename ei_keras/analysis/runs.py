"""Reading run directories written by the training code.

A *results root* holds any nesting of run directories. A run directory is any folder that
contains ``metrics.json``; it normally also holds ``config.json`` and ``history.csv``:

- ``config.json``: ``{"preset", "condition" (optional, defaults to the preset), "luminosity",
  "seed", "epochs", "width", "hyperparameters": {...}, "recipe" (optional), "trial_id"
  (optional)}``.
- ``history.csv``: a header row, then one row per epoch (``epoch,loss,...``); the columns vary
  from run to run and are read generically.
- ``metrics.json``: ``{"status": "ok" | "diverged", "test_accuracy" (fraction or null),
  "diverged_step", "message", "preset", "condition", "luminosity", "seed", "backend",
  "versions", "wall_time_s", "moments" (optional), "alignment" (optional)}``.

``condition``, ``luminosity`` and ``seed`` are taken from ``metrics.json`` first, then from
``config.json``. A folder with ``config.json`` or ``history.csv`` but no ``metrics.json`` is a
partially written (incomplete) run: it is skipped and counted.

Diverged runs are kept. Their *effective* accuracy (:attr:`RunRecord.accuracy`) is chance,
:data:`CHANCE_ACCURACY` = 0.10, whenever the status is ``diverged`` or ``test_accuracy`` is null
or non-finite: a diverged configuration is a failed configuration, as in the paper's sweeps.
(A run stopped because its weights passed the divergence monitor's bound still evaluates to a
finite accuracy of its blown-up, partly trained network; that raw value stays in
``test_accuracy`` but counts as chance, so that every diverged run is treated alike.)

This module imports neither Keras nor any array backend; it is safe and fast to import.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CHANCE_ACCURACY",
    "CONFIG_FILE",
    "HISTORY_FILE",
    "METRICS_FILE",
    "RunLoadError",
    "RunRecord",
    "RunScan",
    "group_runs",
    "load_run",
    "load_runs",
    "scan_runs",
]

#: Accuracy a diverged run (or one without a finite test accuracy) counts as in the statistics.
CHANCE_ACCURACY: float = 0.10

METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"

#: Luminosities are rounded to this many decimals so that 0.75 and 0.7500000001 group together.
_LUMINOSITY_DECIMALS = 6


class RunLoadError(Exception):
    """A run directory could not be read (corrupt or malformed JSON/CSV).

    Attributes:
        path: The offending file.
        reason: What was wrong with it.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class RunRecord:
    """One finished (or diverged) training run, as read from its directory.

    Attributes:
        path: The run directory.
        condition: The condition label (``metrics.condition`` → ``config.condition`` →
            preset → directory name).
        preset: The model preset, or None when neither file names one.
        luminosity: The luminosity-shift range ``r`` (rounded to 6 decimals), or None.
        seed: The random seed, or None.
        status: ``"ok"``, ``"diverged"`` or whatever the training code wrote.
        test_accuracy: The raw final test accuracy (fraction) or None; may be NaN.
        diverged_step: The step at which divergence was detected, or None.
        message: A free-text message from the training code, or None.
        trial_id: The sweep trial id (from config or metrics), or None.
        backend: The Keras backend the run used, or None.
        config: The parsed ``config.json`` (empty when the file is absent).
        metrics: The parsed ``metrics.json``.
        history: ``history.csv`` as columns: ``{column: [value per epoch]}``; values that are
            empty or not numbers are NaN. Empty when the file is absent.
    """

    path: Path
    condition: str
    preset: str | None
    luminosity: float | None
    seed: int | None
    status: str
    test_accuracy: float | None
    diverged_step: int | None
    message: str | None
    trial_id: str | None = None
    backend: str | None = None
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    metrics: dict[str, Any] = field(default_factory=dict, repr=False)
    history: dict[str, list[float]] = field(default_factory=dict, repr=False)

    @property
    def diverged(self) -> bool:
        """True when the run diverged or has no finite test accuracy (a failed run)."""
        return self.status == "diverged" or not _is_finite(self.test_accuracy)

    @property
    def accuracy(self) -> float:
        """The effective test accuracy (fraction) used in all statistics.

        The raw ``test_accuracy`` when the run did not diverge and it is finite, otherwise
        :data:`CHANCE_ACCURACY`.
        """
        if not self.diverged:
            return float(self.test_accuracy)  # type: ignore[arg-type]
        return CHANCE_ACCURACY

    @property
    def pair_key(self) -> tuple[float | None, str]:
        """Key used to pair this run with a run of another condition: ``(r, trial or seed)``."""
        ident = self.trial_id if self.trial_id is not None else f"seed={self.seed}"
        return (self.luminosity, str(ident))

    @property
    def history_rows(self) -> list[dict[str, float]]:
        """``history.csv`` as one dict per epoch (row-oriented view of :attr:`history`)."""
        if not self.history:
            return []
        n = max(len(v) for v in self.history.values())
        return [
            {k: (v[i] if i < len(v) else math.nan) for k, v in self.history.items()}
            for i in range(n)
        ]

    @property
    def sort_key(self) -> tuple[Any, ...]:
        """Deterministic ordering: condition, luminosity, seed, trial id, path."""
        return (
            self.condition,
            self.luminosity is None,
            self.luminosity if self.luminosity is not None else 0.0,
            self.seed is None,
            self.seed if self.seed is not None else 0,
            self.trial_id or "",
            str(self.path),
        )


@dataclass(frozen=True)
class RunScan:
    """Everything found under a results root.

    Attributes:
        root: The results root that was scanned.
        runs: The loaded runs, in deterministic order (see :attr:`RunRecord.sort_key`).
        incomplete: Directories holding ``config.json``/``history.csv`` but no
            ``metrics.json`` (partially written runs), sorted.
        corrupt: ``(file, reason)`` for each run skipped because a file could not be parsed.
        warnings: Non-fatal problems (e.g. a malformed ``history.csv``; the run was kept).
    """

    root: Path
    runs: list[RunRecord]
    incomplete: list[Path] = field(default_factory=list)
    corrupt: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _is_finite(x: Any) -> bool:
    """True for an int/float (not bool) that is finite."""
    if x is None or isinstance(x, bool):
        return False
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON object from ``path``.

    Raises:
        RunLoadError: The file is unreadable, not valid JSON, or not a JSON object.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RunLoadError(path, f"cannot read file ({e})") from e
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise RunLoadError(path, f"invalid JSON ({e})") from e
    if not isinstance(obj, dict):
        raise RunLoadError(path, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _to_float(s: str | None) -> float:
    """Parse one CSV cell; empty or non-numeric cells become NaN."""
    if s is None:
        return math.nan
    s = s.strip()
    if not s:
        return math.nan
    try:
        return float(s)
    except ValueError:
        return math.nan


def _read_history(path: Path) -> dict[str, list[float]]:
    """Read ``history.csv`` into columns.

    Raises:
        RunLoadError: The file is unreadable or has no header row.
    """
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            try:
                header = next(reader)
            except StopIteration:
                return {}
            header = [h.strip() for h in header]
            if not any(header):
                raise RunLoadError(path, "empty header row")
            cols: dict[str, list[float]] = {h: [] for h in header if h}
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue
                for i, h in enumerate(header):
                    if h:
                        cols[h].append(_to_float(row[i] if i < len(row) else None))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise RunLoadError(path, f"cannot read CSV ({e})") from e
    return cols


def _first(key: str, *sources: Mapping[str, Any]) -> Any:
    """The first non-None value of ``key`` among ``sources``."""
    for src in sources:
        v = src.get(key)
        if v is not None:
            return v
    return None


def _opt_int(x: Any) -> int | None:
    """``int(x)`` for numbers (and numeric strings), None otherwise."""
    if x is None or isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) and f == int(f) else None


def _opt_float(x: Any) -> float | None:
    """``float(x)`` for finite numbers, None otherwise."""
    if not _is_finite(x):
        return None
    return float(x)


def _opt_str(x: Any) -> str | None:
    """``str(x)`` or None."""
    return None if x is None else str(x)


def load_run(path: str | os.PathLike[str], *, history: bool = True) -> RunRecord:
    """Load one run directory.

    Args:
        path: A directory containing ``metrics.json``.
        history: Whether to read ``history.csv`` as well.

    Returns:
        The run.

    Raises:
        RunLoadError: ``metrics.json`` is missing or any of the files is corrupt; the error
            names the file.
    """
    run_dir = Path(path)
    metrics_path = run_dir / METRICS_FILE
    if not metrics_path.is_file():
        raise RunLoadError(metrics_path, "missing (incomplete run)")
    metrics = _read_json(metrics_path)
    config_path = run_dir / CONFIG_FILE
    config = _read_json(config_path) if config_path.is_file() else {}
    hist: dict[str, list[float]] = {}
    history_path = run_dir / HISTORY_FILE
    if history and history_path.is_file():
        hist = _read_history(history_path)

    preset = _opt_str(_first("preset", metrics, config))
    condition = _opt_str(_first("condition", metrics, config)) or preset or run_dir.name
    lum = _opt_float(_first("luminosity", metrics, config))
    if lum is not None:
        lum = round(lum, _LUMINOSITY_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0
    raw_acc = metrics.get("test_accuracy")
    if raw_acc is not None and not isinstance(raw_acc, bool):
        try:
            raw_acc = float(raw_acc)
        except (TypeError, ValueError):
            raw_acc = None
    else:
        raw_acc = None
    status = metrics.get("status")
    return RunRecord(
        path=run_dir,
        condition=condition,
        preset=preset,
        luminosity=lum,
        seed=_opt_int(_first("seed", metrics, config)),
        status=str(status) if status is not None else "unknown",
        test_accuracy=raw_acc,
        diverged_step=_opt_int(metrics.get("diverged_step")),
        message=_opt_str(metrics.get("message")),
        trial_id=_opt_str(_first("trial_id", config, metrics)),
        backend=_opt_str(metrics.get("backend")),
        config=config,
        metrics=metrics,
        history=hist,
    )


def _walk(root: Path) -> Iterator[tuple[Path, set[str]]]:
    """Yield ``(directory, file names)`` under ``root`` in sorted order, skipping dot-folders."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield Path(dirpath), set(filenames)


def scan_runs(
    root: str | os.PathLike[str], *, strict: bool = False, history: bool = True
) -> RunScan:
    """Find and load every run under ``root``, counting incomplete and corrupt ones.

    Args:
        root: The results root (any nesting of run directories); may itself be a run
            directory.
        strict: Raise on the first corrupt file instead of warning and skipping the run.
        history: Whether to read ``history.csv`` files.

    Returns:
        A :class:`RunScan` with the runs in deterministic order.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
        RunLoadError: ``strict`` is set and a file is corrupt (the error names it).
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise FileNotFoundError(f"results root is not a directory: {root_path}")
    runs: list[RunRecord] = []
    incomplete: list[Path] = []
    corrupt: list[tuple[Path, str]] = []
    notes: list[str] = []
    for d, files in _walk(root_path):
        if METRICS_FILE not in files:
            if CONFIG_FILE in files or HISTORY_FILE in files:
                incomplete.append(d)
            continue
        try:
            run = load_run(d, history=False)
        except RunLoadError as e:
            if strict:
                raise
            warnings.warn(f"skipping corrupt run: {e}", RuntimeWarning, stacklevel=2)
            corrupt.append((e.path, e.reason))
            continue
        if history and HISTORY_FILE in files:
            try:
                hist = _read_history(d / HISTORY_FILE)
            except RunLoadError as e:
                if strict:
                    raise
                msg = f"history unreadable, run kept without it: {e}"
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                notes.append(msg)
            else:
                run = dataclasses.replace(run, history=hist)
        runs.append(run)
    runs.sort(key=lambda r: r.sort_key)
    return RunScan(
        root=root_path,
        runs=runs,
        incomplete=sorted(incomplete),
        corrupt=sorted(corrupt),
        warnings=notes,
    )


def load_runs(
    root: str | os.PathLike[str], *, strict: bool = False, history: bool = True
) -> list[RunRecord]:
    """Load every complete run under ``root``, in deterministic order.

    Incomplete runs (no ``metrics.json``) are skipped silently; use :func:`scan_runs` to count
    them. Corrupt runs are skipped with a :class:`RuntimeWarning` unless ``strict``.

    Args:
        root: The results root.
        strict: Raise :class:`RunLoadError` (naming the file) on a corrupt file.
        history: Whether to read ``history.csv`` files.

    Returns:
        The runs, sorted by condition, luminosity, seed, trial id and path.
    """
    return scan_runs(root, strict=strict, history=history).runs


def group_runs(
    runs: list[RunRecord] | tuple[RunRecord, ...],
) -> dict[str, dict[float | None, list[RunRecord]]]:
    """Group runs by condition then luminosity, both in ascending order (None last).

    Args:
        runs: The runs.

    Returns:
        ``{condition: {luminosity: [runs in deterministic order]}}``.
    """
    out: dict[str, dict[float | None, list[RunRecord]]] = {}
    for run in sorted(runs, key=lambda r: r.sort_key):
        out.setdefault(run.condition, {}).setdefault(run.luminosity, []).append(run)
    return {
        c: dict(sorted(by_r.items(), key=lambda kv: (kv[0] is None, kv[0] or 0.0)))
        for c, by_r in sorted(out.items())
    }
