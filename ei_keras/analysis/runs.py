"""Finding and grouping the run directories under a results root.

A *results root* holds any nesting of run directories (see `ei_keras.run_directory`,
which owns their layout, reading and writing). A folder with `config.json` or
`history.csv` but no `metrics.json` is a partially written (incomplete) run: it is skipped
and counted; a run whose files cannot be parsed, or whose metrics are impossible (an accuracy
above 1, an unknown status) is skipped, counted and named.

This module imports neither Keras nor any array backend; it is safe and fast to import.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ei_keras.run_directory import (
    CHANCE_ACCURACY,
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    RunLoadError,
    RunRecord,
    _read_history,
    load_run,
)

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
    "pair_runs",
    "scan_runs",
    "sweep_tuner",
]


@dataclass(frozen=True)
class RunScan:
    """Everything found under a results root.

    Attributes:
        root: The results root that was scanned.
        runs: The loaded runs, in deterministic order (see `RunRecord.sort_key`).
        incomplete: Directories holding `config.json`/`history.csv` but no
            `metrics.json` (partially written runs), sorted.
        corrupt: `(file, reason)` for each run skipped because a file could not be parsed.
        warnings: Non-fatal problems (e.g. a malformed `history.csv`; the run was kept).
        superseded: Sweep trials left out because a longer trial of the same configuration
            (a Hyperband continuation: same tuner, same values, more epochs) is counted
            instead: one sample per configuration.
    """

    root: Path
    runs: list[RunRecord]
    incomplete: list[Path] = field(default_factory=list)
    corrupt: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    superseded: list[Path] = field(default_factory=list)


def _walk(root: Path) -> Iterator[tuple[Path, set[str]]]:
    """Yield `(directory, file names)` under `root` in sorted order, skipping dot-folders."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield Path(dirpath), set(filenames)


def scan_runs(
    root: str | os.PathLike[str], *, strict: bool = False, history: bool = True
) -> RunScan:
    """Find and load every run under `root`, counting incomplete and corrupt ones.

    Args:
        root: The results root (any nesting of run directories); may itself be a run
            directory.
        strict: Raise on the first corrupt file instead of warning and skipping the run.
        history: Whether to read `history.csv` files.

    Returns:
        A `RunScan` with the runs in deterministic order.

    Raises:
        FileNotFoundError: `root` is not a directory.
        RunLoadError: `strict` is set and a file is corrupt (the error names it).
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
    runs, superseded = _one_per_configuration(runs)
    runs.sort(key=lambda r: r.sort_key)
    return RunScan(
        root=root_path,
        runs=runs,
        incomplete=sorted(incomplete),
        corrupt=sorted(corrupt),
        warnings=notes,
        superseded=superseded,
    )


def sweep_tuner(run: RunRecord) -> str | None:
    """The `--tuner` of a sweep trial's run (None: not a sweep trial, or one recorded before
    the tuner was)."""
    sweep = run.config.get("sweep")
    return sweep.get("tuner") if isinstance(sweep, dict) else None


def _configuration(run: RunRecord) -> tuple | None:
    """What makes a sweep trial the same configuration as another (None: not a sweep trial):
    its condition, shift size, project, tuner and values except the epoch budget."""
    sweep = run.config.get("sweep")
    if not isinstance(sweep, dict) or not isinstance(sweep.get("values"), dict):
        return None
    values = {k: v for k, v in sweep["values"].items() if k != "epochs"}
    return (run.condition, run.shift_size, str(sweep.get("project")), str(sweep.get("tuner")),
            json.dumps(values, sort_keys=True, default=str))


def _epochs(run: RunRecord) -> int:
    train = run.config.get("train")
    epochs = train.get("epochs") if isinstance(train, dict) else None
    return epochs if isinstance(epochs, int) else 0


def _one_per_configuration(runs: list[RunRecord]) -> tuple[list[RunRecord], list[Path]]:
    """Keep, of the sweep trials of one configuration trained for different epoch budgets
    (Hyperband's continuations), only the longest; the others are returned as superseded."""
    longest: dict[tuple, int] = {}
    for run in runs:
        key = _configuration(run)
        if key is not None:
            longest[key] = max(longest.get(key, 0), _epochs(run))
    kept, superseded = [], []
    for run in runs:
        key = _configuration(run)
        if key is not None and _epochs(run) < longest[key]:
            superseded.append(run.path)
        else:
            kept.append(run)
    return kept, sorted(superseded)


def load_runs(
    root: str | os.PathLike[str], *, strict: bool = False, history: bool = True
) -> list[RunRecord]:
    """Load every complete run under `root`, in deterministic order.

    Incomplete runs (no `metrics.json`) are skipped silently; use `scan_runs` to count
    them. Corrupt runs are skipped with a `RuntimeWarning` unless `strict`.

    Args:
        root: The results root.
        strict: Raise `RunLoadError` (naming the file) on a corrupt file.
        history: Whether to read `history.csv` files.

    Returns:
        The runs, sorted by condition, luminosity, seed, trial id and path.
    """
    return scan_runs(root, strict=strict, history=history).runs


def group_runs(
    runs: list[RunRecord] | tuple[RunRecord, ...],
) -> dict[str, dict[float | None, list[RunRecord]]]:
    """Group runs by condition then shift size (`RunRecord.shift_size`, the luminosity
    range `r` or the contrast range `s`), both in ascending order (None last).

    A results root holds one recipe's runs, of one shift family; runs of several families at
    the same size fall into one group (the report's inventory warns when families mix).

    Args:
        runs: The runs.

    Returns:
        `{condition: {shift size: [runs in deterministic order]}}`.
    """
    out: dict[str, dict[float | None, list[RunRecord]]] = {}
    for run in sorted(runs, key=lambda r: r.sort_key):
        out.setdefault(run.condition, {}).setdefault(run.shift_size, []).append(run)
    return {
        c: dict(sorted(by_r.items(), key=lambda kv: (kv[0] is None, kv[0] or 0.0)))
        for c, by_r in sorted(out.items())
    }


def pair_runs(
    runs: Sequence[RunRecord], condition: str, reference: str
) -> list[tuple[RunRecord, RunRecord]]:
    """Pair runs of `condition` with runs of `reference` at the same shift and seed/trial.

    Runs are matched on `RunRecord.pair_key` (shift family and size, and trial id, or
    seed when there is no trial id); several runs with one key are paired in their
    deterministic order.

    Args:
        runs: The runs.
        condition: The condition (y axis in the scatter).
        reference: The reference condition (x axis).

    Returns:
        `[(condition_run, reference_run), ...]` ordered by key.
    """
    by_key: dict[str, dict[tuple[str, float | None, str], list[RunRecord]]] = {
        condition: {},
        reference: {},
    }
    for run in sorted(runs, key=lambda r: r.sort_key):
        if run.condition in by_key:
            by_key[run.condition].setdefault(run.pair_key, []).append(run)
    pairs: list[tuple[RunRecord, RunRecord]] = []
    keys = sorted(
        set(by_key[condition]) & set(by_key[reference]),
        key=lambda k: (k[0], k[1] is None, k[1] or 0.0, k[2]),
    )
    for k in keys:
        pairs.extend(zip(by_key[condition][k], by_key[reference][k], strict=False))
    return pairs
