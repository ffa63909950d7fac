"""The one owner of a run directory: its file names, reading and writing its records, the
fingerprint that says whether a finished run can be reused, atomic writes and partial folders.

A run directory holds:

- `config.json`: the run's `ei_keras.config.RunConfig` (nested, as `to_dict()`)
  plus `"resolved"` (the hyperparameters after the preset's defaults, the backend's
  `steps_per_execution`), `"fingerprint"` (see `fingerprint`) and, for sweep
  trials, `"trial_id"` and `"sweep"`;
- `history.csv`: one row per epoch (`epoch`, then one column per logged value);
- `metrics.json`: `status` (`"ok"` or `"diverged"`), `test_accuracy` (a fraction in
  [0, 1]; null only for a diverged run: an `"ok"` run without one is corrupt),
  `diverged_step`, `message`, `scoring` (the rule the run was scored
  under, `ei_keras.scoring`; absent in runs made before it: the old rule), `stability`
  (a finite loss or weight past the bounds: first and last step, peaks, group to blame; null
  when none), `preset`, `condition`, `shift` (the
  family, `data.shift`), `shift_size` (its size: `r` or `s`), `luminosity` (`r`, or
  null for another family), `seed`, `backend`, `versions`, `wall_time_s` and, when
  measured, `moments` and `alignment`; `num_classes` (the labels the model tells apart);
  `model_error` when `model.keras` could not be written. Runs made before the shift
  families existed have no `shift`/`shift_size`/`num_classes`: they are luminosity runs
  of size `luminosity` with 10 classes;
- `model.keras` (optional).

A run directory is written in a hidden sibling folder `.<name>.partial-<host>-<pid>` and
renamed into place when complete, so it is either complete or absent. A partial folder left
by a killed process (its pid no longer runs on this host) is removed by the next run in the
same results root (`remove_stale_partials`). Folders and files follow the umask.

A *results root* may also hold `plan.json`: the cells each recipe run there planned, so that
a report can list the ones that are missing.

Diverged runs are kept. Their *effective* accuracy (`RunRecord.accuracy`, by
`ei_keras.scoring.scored_accuracy`) is chance, one over the number of labels
(`CHANCE_ACCURACY`, 10 %, for Fashion-MNIST's 10 classes; 5 % for the 20 labels of the
contrast-as-signal shift), whenever the status is `diverged` or `test_accuracy` is null: a
diverged configuration is a failed configuration, as in the paper's sweeps. Under the paper's
rule (`scoring` = `final_accuracy`) only a non-finite loss or weight makes a run
`diverged`; runs made under the old rule (no `scoring`) were also stopped at a loss or
weight above 1e3 (`RunRecord.scoring` tells them apart).

This module imports neither Keras nor any array backend; it is safe and fast to import.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import math
import os
import re
import shutil
import socket
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ei_keras.scoring import LEGACY_SCORING, SCORINGS, scored_accuracy, scoring_of

#: Accuracy a diverged run (or one without a finite test accuracy) counts as in the statistics,
#: for Fashion-MNIST's 10 classes (runs with another number of labels: one over that number).
CHANCE_ACCURACY: float = 0.10

METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
MODEL_FILE = "model.keras"
PLAN_FILE = "plan.json"
#: The files a run directory holds (written by `ei_keras.experiment.run_experiment`):
#: `--overwrite` replaces a folder only if it holds nothing else.
RUN_FILES = (CONFIG_FILE, HISTORY_FILE, METRICS_FILE, MODEL_FILE)
STATUSES = ("ok", "diverged")
_PARTIAL = ".partial-"

#: A divergence message that names a non-finite value (the old rule's stops also name finite
#: losses past 1e3: "the loss is 1.11e+03").
_NON_FINITE_MESSAGE = re.compile(r"non-finite|\b(?:nan|-?inf)\b", re.IGNORECASE)

#: Shift sizes are rounded to this many decimals so that 0.75 and 0.7500000001 group together.
_SIZE_DECIMALS = 6


class RunDirectoryError(ValueError):
    """A results location that cannot be used (not a folder, not writable, stale runs, ...);
    the message names the path and the way out."""


class StaleRunsError(RunDirectoryError):
    """Finished runs in a results root were made with other settings than the ones asked for.

    Attributes:
        differences: `{dotted key: (value on disk, value asked for)}` over the stale runs.
        paths: the stale run directories.
    """

    def __init__(self, message: str, differences: dict, paths: list[Path]):
        super().__init__(message)
        self.differences = differences
        self.paths = paths


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
        condition: The condition label (`metrics.condition` → `config.condition` →
            preset → directory name).
        preset: The model preset, or None when neither file names one.
        shift_size: The size of the run's data shift (rounded to 6 decimals): the
            luminosity range `r` or the contrast range `s`; None when the files do not say.
            Reports group runs by it.
        seed: The random seed, or None.
        status: `"ok"`, `"diverged"` or whatever the training code wrote.
        test_accuracy: The raw final test accuracy (fraction) or None; may be NaN.
        diverged_step: The step at which divergence was detected, or None.
        message: A free-text message from the training code, or None.
        trial_id: The sweep trial id (from config or metrics), or None.
        backend: The Keras backend the run used, or None.
        config: The parsed `config.json` (empty when the file is absent).
        metrics: The parsed `metrics.json`.
        history: `history.csv` as columns: `{column: [value per epoch]}`; values that are
            empty or not numbers are NaN. Empty when the file is absent.
        shift: The shift family (`data.shift`: `"luminosity"`, `"contrast"`,
            `"contrast_signal"`); `"luminosity"` for runs that do not say.
        num_classes: The number of labels the model tells apart (None when the run does not
            say: Fashion-MNIST's 10).
        scoring: The rule the run was scored under (`ei_keras.scoring.PAPER_SCORING`,
            or `ei_keras.scoring.LEGACY_SCORING` for runs that do not say).
        stability: The run's stability event (`metrics.stability`: a finite loss or weight
            past the bounds that did not stop it), or None.
    """

    path: Path
    condition: str
    preset: str | None
    shift_size: float | None
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
    shift: str = "luminosity"
    num_classes: int | None = None
    scoring: str = LEGACY_SCORING
    stability: dict[str, Any] | None = None

    @property
    def chance(self) -> float:
        """Chance accuracy: one over the number of labels (`CHANCE_ACCURACY` when the
        run does not say)."""
        return 1.0 / self.num_classes if self.num_classes else CHANCE_ACCURACY

    @property
    def luminosity(self) -> float | None:
        """The luminosity range `r` of a luminosity-shift run (None for another family)."""
        return self.shift_size if self.shift == "luminosity" else None

    @property
    def diverged(self) -> bool:
        """True when the run diverged or has no finite test accuracy (a failed run)."""
        return self.status == "diverged" or not _is_finite(self.test_accuracy)

    @property
    def stop(self) -> str | None:
        """Why the run was stopped and counted at chance: `"non-finite"` (a NaN or infinite
        loss or weight, or no finite test accuracy), `"bound"` (the old rule only: a finite
        loss or weight above 1e3, as its message says), or None (it trained its whole length)."""
        if not self.diverged:
            return None
        if self.scoring == LEGACY_SCORING and self.status == "diverged" and \
                not _NON_FINITE_MESSAGE.search(self.message or ""):
            return "bound"
        return "non-finite"

    @property
    def excursion(self) -> bool:
        """Whether the run had a stability event (a finite loss or weight past the bounds)
        and still trained its whole length: a transient excursion."""
        return self.stability is not None and not self.diverged

    @property
    def accuracy(self) -> float:
        """The effective test accuracy (fraction) used in all statistics.

        The raw `test_accuracy` when the run did not diverge and it is finite, otherwise
        chance (`chance`).
        """
        return scored_accuracy(self.status, self.test_accuracy, self.chance)

    @property
    def pair_key(self) -> tuple[str, float | None, str]:
        """Key used to pair this run with a run of another condition:
        `(shift family, shift size, trial or seed)`."""
        ident = self.trial_id if self.trial_id is not None else f"seed={self.seed}"
        return (self.shift, self.shift_size, str(ident))

    @property
    def history_rows(self) -> list[dict[str, float]]:
        """`history.csv` as one dict per epoch (row-oriented view of `history`)."""
        if not self.history:
            return []
        n = max(len(v) for v in self.history.values())
        return [
            {k: (v[i] if i < len(v) else math.nan) for k, v in self.history.items()}
            for i in range(n)
        ]

    @property
    def sort_key(self) -> tuple[Any, ...]:
        """Deterministic ordering: condition, shift family, size, seed, trial id, path."""
        return (
            self.condition,
            self.shift,
            self.shift_size is None,
            self.shift_size if self.shift_size is not None else 0.0,
            self.seed is None,
            self.seed if self.seed is not None else 0,
            self.trial_id or "",
            str(self.path),
        )


def _is_finite(x: Any) -> bool:
    """True for an int/float (not bool) that is finite."""
    if x is None or isinstance(x, bool):
        return False
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON object from `path`.

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
    """Read `history.csv` into columns.

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
    """The first non-None value of `key` among `sources`."""
    for src in sources:
        v = src.get(key)
        if v is not None:
            return v
    return None


def _opt_int(x: Any) -> int | None:
    """`int(x)` for numbers (and numeric strings), None otherwise."""
    if x is None or isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) and f == int(f) else None


def _opt_float(x: Any) -> float | None:
    """`float(x)` for finite numbers, None otherwise."""
    if not _is_finite(x):
        return None
    return float(x)


def _opt_str(x: Any) -> str | None:
    """`str(x)` or None."""
    return None if x is None else str(x)


def load_run(path: str | os.PathLike[str], *, history: bool = True) -> RunRecord:
    """Load one run directory.

    Args:
        path: A directory containing `metrics.json`.
        history: Whether to read `history.csv` as well.

    Returns:
        The run.

    Raises:
        RunLoadError: `metrics.json` is missing or any of the files is corrupt; the error
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
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    shift = _opt_str(_first("shift", metrics, data)) or "luminosity"
    size = _opt_float(_first("shift_size", metrics))
    if size is None and shift == "luminosity":  # a run made before the shift families
        size = _opt_float(_first("luminosity", metrics, config))
    if size is not None:
        size = round(size, _SIZE_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0
    classes = _opt_int(metrics.get("num_classes"))
    raw_acc = metrics.get("test_accuracy")
    if raw_acc is not None:
        if isinstance(raw_acc, bool) or not isinstance(raw_acc, (int, float)):
            raise RunLoadError(metrics_path, f"test_accuracy must be a number or null, not "
                               f"{raw_acc!r}")
        raw_acc = float(raw_acc)
        if math.isfinite(raw_acc) and not 0.0 <= raw_acc <= 1.0:
            raise RunLoadError(metrics_path, f"test_accuracy {raw_acc!r} is not a fraction in "
                               "[0, 1] (edited by hand?)")
    status = metrics.get("status")
    if status not in STATUSES:
        raise RunLoadError(metrics_path, f"status must be one of {list(STATUSES)}, not "
                           f"{status!r}")
    if status == "ok" and (raw_acc is None or not math.isfinite(raw_acc)):
        raise RunLoadError(metrics_path, f"status is \"ok\" but test_accuracy is {raw_acc!r}: "
                           "a finished run that did not diverge has a finite accuracy "
                           "(edited or damaged by hand?); train it again or remove it")
    scoring = scoring_of(metrics)
    if scoring not in SCORINGS:
        raise RunLoadError(metrics_path, f"scoring must be one of {list(SCORINGS)}, not "
                           f"{scoring!r}")
    stability = metrics.get("stability")
    if stability is not None and not isinstance(stability, dict):
        raise RunLoadError(metrics_path, f"stability must be an object or null, not "
                           f"{stability!r}")
    return RunRecord(
        path=run_dir,
        condition=condition,
        preset=preset,
        shift_size=size,
        seed=_opt_int(_first("seed", metrics, config)),
        status=status,
        test_accuracy=raw_acc,
        diverged_step=_opt_int(metrics.get("diverged_step")),
        message=_opt_str(metrics.get("message")),
        trial_id=_opt_str(_first("trial_id", config, metrics)),
        backend=_opt_str(metrics.get("backend")),
        config=config,
        metrics=metrics,
        history=hist,
        shift=shift,
        num_classes=classes if classes and classes > 0 else None,
        scoring=scoring,
        stability=stability,
    )



# ---------------------------------------------------------------------------------------------
# Fingerprints: everything that determines a run's result.


def fingerprint(config_flat: Mapping[str, Any], resolved_hyperparameters: Mapping[str, Any],
                version: str) -> dict[str, Any]:
    """The flat `{key: value}` that determines a run's result: every configuration key that
    matters (`ei_keras.config.NON_FINGERPRINT_KEYS` left out: where files go, labels),
    the hyperparameters after the preset's defaults (`hp.<name>`, in place of the `opt.*`
    and `loss.*` keys, whose None means "the preset's default") and the library version.
    Two runs with equal fingerprints are the same experiment. Keys the run does not use
    (`ei_keras.config.unused_keys`: the size of another shift family) are left out."""
    from ei_keras.config import HYPERPARAMETER_KEYS, NON_FINGERPRINT_KEYS, unused_keys

    skip = {*NON_FINGERPRINT_KEYS, *HYPERPARAMETER_KEYS.values(),  # hp.* holds them resolved
            *unused_keys(config_flat)}
    out = {k: v for k, v in config_flat.items() if k not in skip}
    out.update({f"hp.{k}": v for k, v in resolved_hyperparameters.items()})
    out["ei_keras"] = version
    return json.loads(json.dumps(out, default=str))  # the form it has once read back


def stored_fingerprint(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The fingerprint recorded in a run directory's `config.json` (None if absent or
    unreadable: a run made before fingerprints, or a corrupt file)."""
    try:
        fp = _read_json(Path(run_dir) / CONFIG_FILE).get("fingerprint")
    except RunLoadError:
        return None
    return fp if isinstance(fp, dict) else None


def is_complete(run_dir: str | os.PathLike[str]) -> bool:
    """Whether `run_dir` holds a finished run (its `metrics.json`)."""
    return (Path(run_dir) / METRICS_FILE).is_file()


def sort_finished(cells: list[tuple[Path, dict[str, Any]]]
                  ) -> tuple[list[Path], dict[Path, dict[str, tuple]]]:
    """Sort the finished run directories among `cells` (`[(run dir, wanted fingerprint)]`)
    into those that can be reused (same fingerprint) and the stale ones, each with
    `{key: (value on disk, value wanted)}` (`"fingerprint"` for a run made before them)."""
    reusable, stale = [], {}
    for run_dir, wanted in cells:
        if not is_complete(run_dir):
            continue
        have = stored_fingerprint(run_dir)
        if have == wanted:
            reusable.append(Path(run_dir))
        elif have is None:
            stale[Path(run_dir)] = {"fingerprint": ("absent (an older or corrupt run)", "—")}
        else:
            stale[Path(run_dir)] = {k: (have.get(k, "absent"), wanted.get(k, "absent"))
                                    for k in sorted(set(have) | set(wanted))
                                    if have.get(k) != wanted.get(k)}
    return reusable, stale


def stale_runs_error(stale: dict[Path, dict[str, tuple]], fix: str) -> StaleRunsError:
    """The error for stale runs (`sort_finished`), naming the differing keys and `fix`."""
    differences: dict[str, tuple] = {}
    for diff in stale.values():
        for key, pair in diff.items():
            differences.setdefault(key, pair)
    paths = sorted(stale)
    keys = ", ".join(f"{k} ({a!r} on disk, {b!r} now)" for k, (a, b) in differences.items())
    where = paths[0] if len(paths) == 1 else f"{paths[0]} and {len(paths) - 1} more"
    return StaleRunsError(
        f"{len(paths)} finished run(s) were made with other settings, so they cannot be "
        f"reused: {keys} (first: {where}). {fix}", differences, paths)


# ---------------------------------------------------------------------------------------------
# Writing: the umask, atomic files, partial folders.


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` on a temporary file next to `path`, then move it into place.

    A reader never sees a half-written file; on any error the temporary file is removed and
    `path` is left as it was. The folder is created if needed; the file follows the umask.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}{_PARTIAL}{_owner_tag()}.tmp")
    try:
        write(str(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return dest


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write `obj` as indented JSON to `path` atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def write_history(path: str | os.PathLike[str], history: Mapping[str, list]) -> None:
    """Write a Keras `History.history` dict as CSV: `epoch` then one column per key."""
    keys = sorted(history)
    n = max((len(v) for v in history.values()), default=0)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["epoch", *keys])
        for i in range(n):
            w.writerow([i + 1, *(history[k][i] if i < len(history[k]) else "" for k in keys)])


def shift_dir(shift: str, size: float) -> str:
    """`r0.75`, `s4`: the shift-size part of a cell's path (recipes and sweeps), the
    family's symbol (`ei_keras.config.SHIFT_FAMILIES`) and the size."""
    from ei_keras.config import SHIFT_FAMILIES

    return f"{SHIFT_FAMILIES[shift].symbol}{float(size):g}"


def lum_dir(luminosity: float) -> str:
    """`r0.75`: the luminosity part of a cell's path (recipes and sweeps)."""
    return shift_dir("luminosity", luminosity)


def read_history(run_dir: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a run directory's `history.csv` as dicts of strings."""
    with open(Path(run_dir) / HISTORY_FILE, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _owner_tag() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _partial_owner_alive(name: str) -> bool:
    """Whether the process that owns a partial folder/file name may still be running."""
    tag = name.rsplit(_PARTIAL, 1)[-1].removesuffix(".tmp")
    host, _, pid = tag.rpartition("-")
    if host != socket.gethostname() or not pid.isdigit():
        return host != socket.gethostname() and bool(host)  # another machine's: leave it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(root: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Remove the partial folders and files under `root` whose process is gone (killed with
    SIGKILL, power loss); return what was removed. With `name`, only the partial folders of
    the run directory `root/name` are looked at. Those of running processes and of other
    hosts (a shared folder) are left alone."""
    removed = []
    root = Path(root)
    if not root.is_dir():
        return removed
    prefix = "." if name is None else f".{name}{_PARTIAL}"
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in [*dirnames, *filenames]:
            if entry.startswith(prefix) and _PARTIAL in entry and \
                    not _partial_owner_alive(entry):
                path = Path(dirpath) / entry
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        path.unlink()
                removed.append(path)
        dirnames[:] = [] if name is not None else [d for d in dirnames if _PARTIAL not in d]
    return removed


def check_writable_folder(path: str | os.PathLike[str], what: str = "--out") -> Path:
    """Check, before any work, that `path` is (or can be created as) a writable folder.

    Raises:
        RunDirectoryError: naming the path, the problem and the fix.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirectoryError(f"{what} {path} is a file, not a folder: choose a folder path "
                                "(it is created if missing).")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise RunDirectoryError(f"{what} {path} lies under {probe}, which is a file: choose a "
                                "folder path.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RunDirectoryError(f"{what} {path} is not writable ({probe} is read-only for this "
                                "user): choose a writable folder.")
    return path


def check_run_directory(run_dir: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Check, before any work, that a run directory can be written at `run_dir`.

    Raises:
        RunDirectoryError: it exists and `overwrite` is false, it is a file, or its folder
            cannot be created or written.
    """
    final = Path(run_dir)
    if final.exists() and not final.is_dir():
        raise RunDirectoryError(f"--out {final} is a file, not a run directory: choose another "
                                "--out.")
    if final.exists() and not overwrite:
        raise RunDirectoryError(f"Run directory {final} already exists: choose another --out "
                                "or pass --overwrite.")
    if final.exists():
        _check_replaceable(final)
    check_writable_folder(final.parent)
    return final


def _check_replaceable(folder: Path) -> None:
    """Refuse to replace a folder that is not a run directory: `--overwrite` removes only
    what ei-keras wrote (a run directory holds its `config.json` and nothing but
    `RUN_FILES`; an empty folder holds nothing to lose)."""
    names = sorted(p.name for p in folder.iterdir())
    foreign = [n for n in names if n not in RUN_FILES]
    if foreign or (names and CONFIG_FILE not in names):
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                          else "")
        why = f"it holds {shown}" if foreign else f"it has no {CONFIG_FILE}"
        raise RunDirectoryError(
            f"--out {folder} is not a run directory ({why}): --overwrite replaces only a run "
            "directory written by ei-keras. Choose another --out, or move that folder away "
            "yourself.")


def check_keras_file(path: str | os.PathLike[str]) -> Path:
    """Check that `path` is a complete `.keras` file (a zip archive whose members all pass
    their CRC check) before Keras reads it: Keras says "File not found" for a truncated one.

    Raises:
        FileNotFoundError: it does not exist.
        ValueError: it is truncated or corrupt (naming the file and the fix).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such .keras file: {path}")
    fix = ("it was probably cut short while being written or copied: save or copy it again "
           "(a run directory's model.keras is rewritten by training the run again)")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is truncated or corrupt ({path.stat().st_size} bytes, not a "
                         f"complete .keras zip archive): {fix}.")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"{path} is corrupt ({e}): {fix}.") from None
    if bad is not None:
        raise ValueError(f"{path} is corrupt (its member {bad} fails its CRC check): {fix}.")
    return path


@contextlib.contextmanager
def staged_run_directory(run_dir: str | os.PathLike[str], overwrite: bool = False
                         ) -> Iterator[Path]:
    """Yield a fresh partial folder for `run_dir`; on a normal exit it replaces `run_dir`
    (which must not exist unless `overwrite`), on any exception (Ctrl-C, SIGTERM turned into
    one, a full disk) it is removed and `run_dir` is left as it was.

    Raises:
        RunDirectoryError: `run_dir` exists and `overwrite` is false, or it cannot be
            created (read-only folder, a file in the way).
    """
    final = check_run_directory(run_dir, overwrite)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}{_PARTIAL}{_owner_tag()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()  # mode 0777 & ~umask, like any folder the user makes
    except OSError as e:
        raise RunDirectoryError(f"Cannot create the run directory {final}: {e.strerror}. "
                                "Choose a writable --out.") from None
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_disk_full(error: BaseException) -> bool:
    """Whether an exception (or its cause) is a full disk or exceeded quota."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False


# ---------------------------------------------------------------------------------------------
# The plan of a results root: which cells each recipe expects.


def record_plan(root: str | os.PathLike[str], recipe: str, title: str, cells: list[str]) -> Path:
    """Add (or replace) `recipe`'s planned cells (run-directory paths relative to `root`) to
    `root/plan.json`."""
    path = Path(root) / PLAN_FILE
    plan = read_plan(root)
    plan[recipe] = {"title": title, "cells": sorted(cells)}
    return write_json_atomic(path, {"recipes": plan})


def read_plan(root: str | os.PathLike[str]) -> dict[str, dict]:
    """`{recipe: {"title", "cells"}}` from `root/plan.json` ({} when there is none)."""
    path = Path(root) / PLAN_FILE
    if not path.is_file():
        return {}
    try:
        plan = _read_json(path).get("recipes", {})
    except RunLoadError:
        return {}
    return plan if isinstance(plan, dict) else {}
