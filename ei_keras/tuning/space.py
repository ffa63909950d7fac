"""Sweep search spaces as KerasTuner `HyperParameters`: the files in `tuner_configs/`.

A tuner configuration file is a JSON object with three keys:

```json
{
  "description": "what the ranges are and why",
  "presets": ["ei", "ei_ln", "e_ln"],
  "hyperparameters": <keras_tuner.HyperParameters(...).get_config()>
}
```

`hyperparameters` is KerasTuner's own serialization, so a file loads into a
`keras_tuner.HyperParameters` and its `get_config()` gives the file's object back unchanged.
The committed files are generated from `ei_keras.search_space` by
`tuner_config` (`python -m ei_keras.tuning.space tuner_configs` rewrites them; a test
checks that they are up to date).

Example:

```python
from ei_keras.tuning import load_search_space

hp = load_search_space("tuner_configs/inorm.json")
hp.get_config()["values"]["norm_weight"]  # 0.01
```
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from ei_keras import search_space, zoo
from ei_keras.annealing import SHAPES as ANNEALING_SHAPES
from ei_keras.config import DEFAULT_DEPTH, KINDS, SHORT_KEYS, ConfigError, DataConfig

#: Hyperparameter names a tuner configuration may hold: every preset hyperparameter and the
#: sizes (`ei_keras.config.SHORT_KEYS`), each checked by its configuration key's kind.
ALLOWED_HYPERPARAMETERS: dict[str, str] = dict(SHORT_KEYS)
#: Names every file must define (a value per trial is needed to train).
REQUIRED_HYPERPARAMETERS = ("lr_e", "lr_ie", "lr_ei", "width", "depth", "batch_size", "epochs")
TOP_LEVEL_KEYS = ("description", "presets", "hyperparameters")

_CLASS_KEYS = {
    "Float": {"name", "default", "conditions", "min_value", "max_value", "step", "sampling"},
    "Int": {"name", "default", "conditions", "min_value", "max_value", "step", "sampling"},
    "Choice": {"name", "default", "conditions", "values", "ordered"},
    "Fixed": {"name", "conditions", "value"},
}
_SAMPLINGS = ("linear", "log", "reverse_log")

#: lambda grid of the I-Norm families (SPEC section 3: "lambda on a grid, default 0.01").
NORM_WEIGHT_GRID = (0.001, 0.01, 0.1)
PAPER_EPOCHS = 50
PAPER_BATCH_SIZE = DataConfig().batch_size
PAPER_DEPTH = DEFAULT_DEPTH
#: Width range and step of `--smoke` sweeps: tiny models for CI, and only two shapes, since
#: every new shape costs compilation time (JAX compiles each op per shape when not jitted).
SMOKE_WIDTH_RANGE = (8, 16)
SMOKE_WIDTH_STEP = 8

#: The families of presets that share a search space: one `tuner_configs/<family>.json` each
#: (`ei_keras.search_space.FAMILIES`).
FAMILIES = tuple(search_space.FAMILIES)
#: Options searched as choices on top of a family's space (issue 23): GradNorm on `y` or
#: `z` and the lambda schedule ("none": constant lambda). Each is a configuration key
#: (`ei_keras.config.SHORT_KEYS`) and applies where `ei_keras.config.inapplicable_keys`
#: does not refuse it.
OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "gradnorm_on": ("y", "z"), "norm_weight_schedule": ("none", *ANNEALING_SHAPES)}
#: The option spaces: `tuner_configs/<name>.json` = the family's space plus every one of
#: `OPTION_CHOICES`, for the family's presets where they all apply.
OPTION_SPACES: dict[str, str] = {"inorm_options": "inorm", "conv_inorm_options": "conv_inorm"}


@dataclasses.dataclass(frozen=True)
class TunerConfig:
    """A loaded tuner configuration file.

    Attributes:
        description: the file's description (ranges and why).
        presets: the zoo presets the file is meant for.
        hyperparameters: the search space.
        path: where it was read from (None when generated in memory).
    """

    description: str
    presets: tuple[str, ...]
    hyperparameters: Any  # keras_tuner.HyperParameters
    path: Path | None = None


def family(preset: str) -> str:
    """The name of `preset`'s search family (its zoo entry's `family`: `"ei"` for `ei`,
    `ei_ln` and `e_ln`, `"inorm"` for the I-Norm presets, `"conv_ei"` / `"conv_inorm"`
    for the conv presets)."""
    return zoo.get(preset).family


def family_presets(name: str) -> list[str]:
    """The zoo presets of family `name`."""
    return [p for p in zoo.all_names() if family(p) == name]


def _description(name: str) -> str:
    fam = search_space.FAMILIES[name]
    lo_w, hi_w = fam.width_range
    rates = "; ".join(f"{k} ({sym}) {s}-uniform in [{lo:g}, {hi:g}]" for (k, (lo, hi, s)), sym in
                      zip(fam.space.items(), ("eta_E", "eta_IE", "eta_EI")))
    text = (
        f"Search space of the paper's Table 1 sweeps (SPEC section 3) for the "
        f"{fam.title} presets{' (beyond the paper)' if fam.beyond_paper else ''}: {rates}; "
        + fam.width
        + f" uniform integer in [{lo_w}, {hi_w}]; fixed: depth {PAPER_DEPTH} hidden layers, "
        f"batch {PAPER_BATCH_SIZE}, plain SGD (momentum 0, the presets' per-group learning "
        f"rates), {PAPER_EPOCHS} epochs."
    )
    if fam.note:
        text += " " + fam.note
    if fam.norm_weight:
        text += (f" The I-Norm loss weight lambda (norm_weight) is a choice on the grid "
                 f"{list(NORM_WEIGHT_GRID)}, default 0.01 (the paper's stated default).")
    text += (
        " Why these ranges: the paper's numeric ranges were lost in its text; the reference "
        "code's commands use eta_E 0.2-1, eta_IE 0.5, eta_EI 1e-4. These ranges are those of "
        "ei_keras/search_space.py, chosen by measurement on this project's networks (README, "
        "'I-Norm presets on their defaults'): they bracket the learning rates at which the "
        "family trains within 3 epochs and extend past them on both sides, so that a sweep "
        "also samples the configurations where a family is fragile, as the paper's "
        "30-configuration sweeps do. "
        "Generated by ei_keras.tuning.space.tuner_config; edit search_space.py, not this file."
    )
    return text


def option_applies(option: str, preset: str) -> bool:
    """Whether option `option` (one of `OPTION_CHOICES`) changes a run of `preset`."""
    from ei_keras.config import inapplicable_keys

    return SHORT_KEYS[option] not in inapplicable_keys({"preset": preset})


def tuner_config(name: str) -> dict:
    """The tuner configuration of family `name` (one of `FAMILIES`) or option space
    `name` (one of `OPTION_SPACES`) as a JSON-ready dict, derived from
    `ei_keras.search_space` (and `OPTION_CHOICES`)."""
    import keras_tuner

    if name in OPTION_SPACES:
        base = OPTION_SPACES[name]
        hp = declare_search_space(keras_tuner.HyperParameters(), base)
        for option, values in OPTION_CHOICES.items():
            hp.Choice(option, list(values), default=values[0])
        presets = [p for p in family_presets(base)
                   if all(option_applies(o, p) for o in OPTION_CHOICES)]
        description = (_description(base) + " Options searched on top (issue 23): " +
                       "; ".join(f"{o} in {list(v)} (default {v[0]})"
                                 for o, v in OPTION_CHOICES.items()) +
                       "; for the presets where each applies (GradNorm on y or z needs "
                       "error_normalization full or decorrelate).")
        return {"description": description, "presets": presets,
                "hyperparameters": json.loads(json.dumps(hp.get_config()))}
    hp = declare_search_space(keras_tuner.HyperParameters(), name)
    return {"description": _description(name), "presets": family_presets(name),
            "hyperparameters": json.loads(json.dumps(hp.get_config()))}


def declare_search_space(hp, name: str):
    """Declare family `name`'s search space (one of `FAMILIES`) on `hp`, KerasTuner's way
    (`hp.Float(...)`, `hp.Int(...)`, ...), and return `hp`. Names `hp` holds already keep their
    definition and value. What `tuner_config` writes to `tuner_configs/<name>.json`, and what
    `EIHyperModel.build` declares when a tuner gives it no search space."""
    if name not in FAMILIES:
        raise ValueError(f"Expected a family in {FAMILIES}. Received: name={name!r}")
    fam = search_space.FAMILIES[name]
    for key, (low, high, sampling) in fam.space.items():
        hp.Float(key, float(low), float(high), sampling=sampling)
    hp.Int("width", *fam.width_range)
    if fam.norm_weight:
        hp.Choice("norm_weight", list(NORM_WEIGHT_GRID), default=0.01)
    hp.Fixed("depth", PAPER_DEPTH)
    hp.Fixed("batch_size", PAPER_BATCH_SIZE)
    hp.Fixed("momentum", 0.0)
    hp.Fixed("epochs", PAPER_EPOCHS)
    return hp


def write_tuner_configs(directory: str | os.PathLike[str] = "tuner_configs") -> list[Path]:
    """(Re)write `<directory>/<name>.json` for every one of `FAMILIES` and
    `OPTION_SPACES` from `tuner_config`."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in (*FAMILIES, *OPTION_SPACES):
        path = out / f"{name}.json"
        path.write_text(json.dumps(tuner_config(name), indent=2) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def default_config_path(preset: str) -> Path | None:
    """The search space shipped for `preset`'s family: `ei_keras/tuner_configs/<family>.json`
    inside the installed package (a source checkout's top-level `tuner_configs/` links to
    the same files), or None when the file is missing."""
    path = Path(__file__).resolve().parents[1] / "tuner_configs" / f"{family(preset)}.json"
    return path if path.is_file() else None


# --------------------------------------------------------------------------------------------
# Validation


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _fail(field: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"Invalid tuner configuration field `{field}`: expected {expected}. "
                      f"Received: {field}={value!r}")


def _check_value(field: str, name: str, value: Any) -> None:
    """A single value of hyperparameter `name`, checked as its configuration key is (text
    only for the keys whose values are names: `gradnorm_on`, `norm_weight_schedule`)."""
    if value is None or (isinstance(value, str) and KINDS[SHORT_KEYS[name]].name != "choice"):
        raise _fail(field, KINDS[SHORT_KEYS[name]].describe(), value)
    try:
        KINDS[SHORT_KEYS[name]].parse(field, value)
    except ConfigError:
        raise _fail(field, KINDS[SHORT_KEYS[name]].describe(), value) from None


def _is_count(name: str) -> bool:
    return KINDS[SHORT_KEYS[name]].name == "int"


def _check_entry(i: int, entry: Any, seen: set) -> tuple[str, str, dict]:
    where = f"hyperparameters.space[{i}]"
    if not isinstance(entry, dict):
        raise _fail(where, "an object {'class_name': ..., 'config': {...}}", entry)
    extra = set(entry) - {"class_name", "config"}
    if extra:
        raise _fail(f"{where}.{sorted(extra)[0]}", "no such key (known: class_name, config)",
                    entry[sorted(extra)[0]])
    cls = entry.get("class_name")
    if cls not in _CLASS_KEYS:
        raise _fail(f"{where}.class_name", f"one of {sorted(_CLASS_KEYS)}", cls)
    cfg = entry.get("config")
    if not isinstance(cfg, dict):
        raise _fail(f"{where}.config", "an object", cfg)
    name = cfg.get("name")
    if name not in ALLOWED_HYPERPARAMETERS:
        raise _fail(f"{where}.config.name",
                    f"a known hyperparameter name ({', '.join(ALLOWED_HYPERPARAMETERS)})", name)
    if name in seen:
        raise _fail(f"{where}.config.name", "a name not defined twice", name)
    seen.add(name)
    where = f"{where} ({name}).config"
    unknown = set(cfg) - _CLASS_KEYS[cls]
    if unknown:
        key = sorted(unknown)[0]
        raise _fail(f"{where}.{key}", f"no such key for {cls} (known: "
                    f"{', '.join(sorted(_CLASS_KEYS[cls]))})", cfg[key])
    if cfg.get("conditions", []) != []:
        raise _fail(f"{where}.conditions", "[] (conditional hyperparameters are not supported)",
                    cfg["conditions"])
    if cls == "Fixed":
        if "value" not in cfg:
            raise _fail(f"{where}.value", "a value", None)
        _check_value(f"{where}.value", name, cfg["value"])
    elif cls == "Choice":
        values = cfg.get("values")
        if not isinstance(values, list) or not values:
            raise _fail(f"{where}.values", "a non-empty list", values)
        for j, v in enumerate(values):
            _check_value(f"{where}.values[{j}]", name, v)
        if len({type(v) for v in values}) > 1:
            raise _fail(f"{where}.values", "values of one type (all int or all float)", values)
        if cfg.get("default") is not None and cfg["default"] not in values:
            raise _fail(f"{where}.default", f"one of {values}", cfg["default"])
        if cfg.get("ordered") is not None and not isinstance(cfg["ordered"], bool):
            raise _fail(f"{where}.ordered", "true or false", cfg["ordered"])
    else:  # Float, Int
        if cls == "Float" and _is_count(name):
            raise _fail(f"{where[:-len('.config')]}.class_name",
                        f"Int, Choice or Fixed for the integer hyperparameter {name!r}", cls)
        if cls == "Int" and not _is_count(name):
            raise _fail(f"{where[:-len('.config')]}.class_name",
                        f"Float, Choice or Fixed for the real hyperparameter {name!r}", cls)
        number = _is_int if cls == "Int" else _is_number
        what = "an integer" if cls == "Int" else "a finite number"
        for key in ("min_value", "max_value"):
            if not number(cfg.get(key)):
                raise _fail(f"{where}.{key}", what, cfg.get(key))
        low, high = cfg["min_value"], cfg["max_value"]
        if not low < high:
            raise _fail(f"{where}.max_value", f"a number > min_value ({low!r})", high)
        _check_value(f"{where}.min_value", name, low)
        _check_value(f"{where}.max_value", name, high)
        sampling = cfg.get("sampling", "linear")
        if sampling not in _SAMPLINGS:
            raise _fail(f"{where}.sampling", f"one of {_SAMPLINGS}", sampling)
        if sampling != "linear" and low <= 0:
            raise _fail(f"{where}.min_value", f"a number > 0 for {sampling} sampling", low)
        step = cfg.get("step")
        if step is not None and (not number(step) or step <= 0):
            raise _fail(f"{where}.step", f"None or {what} > 0", step)
        default = cfg.get("default")
        if default is not None and (not number(default) or not low <= default <= high):
            raise _fail(f"{where}.default", f"None or {what} in [{low!r}, {high!r}]", default)
    return name, cls, cfg


def _fits(cls: str, cfg: dict, value: Any) -> bool:
    if cls == "Fixed":
        return value == cfg["value"]
    if cls == "Choice":
        return value in cfg["values"]
    return _is_number(value) and cfg["min_value"] <= value <= cfg["max_value"] and (
        cls == "Float" or _is_int(value))


def validate_tuner_config(config: Any, source: str = "tuner configuration") -> TunerConfig:
    """Check a tuner configuration object and build its `HyperParameters`.

    Raises:
        ValueError: naming the offending field (`hyperparameters.space[2] (lr_ei).config.
            min_value`), for an unknown key or hyperparameter name, a bad range or a wrong type.
    """
    import keras_tuner

    if not isinstance(config, dict):
        raise ValueError(f"{source}: expected a JSON object with keys {list(TOP_LEVEL_KEYS)}. "
                         f"Received: {type(config).__name__}")
    for key in config:
        if key not in TOP_LEVEL_KEYS:
            raise _fail(key, f"a known top-level key ({', '.join(TOP_LEVEL_KEYS)})",
                        config[key])
    description = config.get("description", "")
    if not isinstance(description, str):
        raise _fail("description", "a string", description)
    presets = config.get("presets", zoo.all_names())
    if not isinstance(presets, list) or not all(isinstance(p, str) for p in presets):
        raise _fail("presets", "a list of preset names", presets)
    for j, p in enumerate(presets):
        if p not in zoo.all_names():
            raise _fail(f"presets[{j}]", f"a preset name ({', '.join(zoo.all_names())})", p)
    hps = config.get("hyperparameters")
    if not isinstance(hps, dict):
        raise _fail("hyperparameters", "an object {'space': [...], 'values': {...}} "
                    "(keras_tuner.HyperParameters.get_config())", hps)
    for key in hps:
        if key not in ("space", "values"):
            raise _fail(f"hyperparameters.{key}", "no such key (known: space, values)", hps[key])
    space = hps.get("space")
    if not isinstance(space, list):
        raise _fail("hyperparameters.space", "a list", space)
    seen: set = set()
    entries = {}
    for i, entry in enumerate(space):
        name, cls, cfg = _check_entry(i, entry, seen)
        entries[name] = (cls, cfg)
    for name in REQUIRED_HYPERPARAMETERS:
        if name not in entries:
            raise _fail(f"hyperparameters.space ({name})", f"a definition of {name!r} "
                        f"(required: {', '.join(REQUIRED_HYPERPARAMETERS)})", None)
    values = hps.get("values", {})
    if not isinstance(values, dict):
        raise _fail("hyperparameters.values", "an object", values)
    for name, value in values.items():
        if name not in entries:
            raise _fail(f"hyperparameters.values.{name}", "a name defined in "
                        "hyperparameters.space", value)
        if not _fits(*entries[name], value):
            raise _fail(f"hyperparameters.values.{name}", "a value inside its declared range",
                        value)
    hp = keras_tuner.HyperParameters.from_config({"space": space, "values": values})
    for name, (cls, cfg) in entries.items():  # fill defaults for names without a value
        if name not in hp.values:
            hp.values[name] = _default(cls, cfg)
    return TunerConfig(description=description, presets=tuple(presets), hyperparameters=hp)


def _default(cls: str, cfg: dict):
    if cls == "Fixed":
        return cfg["value"]
    if cfg.get("default") is not None:
        return cfg["default"]
    return cfg["values"][0] if cls == "Choice" else cfg["min_value"]


def load_tuner_config(path: str | os.PathLike[str]) -> TunerConfig:
    """Read and validate a tuner configuration file (see the module docstring).

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid JSON, or a field is invalid (the message names it).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        shipped = ", ".join(f"tuner_configs/{name}.json" for name in FAMILIES)
        raise FileNotFoundError(f"No tuner configuration at {path}. The shipped ones are "
                                f"{shipped}.") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    try:
        loaded = validate_tuner_config(config, source=str(path))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return dataclasses.replace(loaded, path=path)


def load_search_space(path: str | os.PathLike[str]):
    """The `keras_tuner.HyperParameters` of a tuner configuration file, validated.

    `load_search_space(path).get_config()` equals the file's `"hyperparameters"` object.

    Raises:
        ValueError: for an unknown key or hyperparameter name, a bad range or a wrong type; the
            message names the field.
    """
    return load_tuner_config(path).hyperparameters


def resize_space(hp, epochs: int | None = None, smoke: bool = False):
    """A copy of search space `hp` for a shortened run: `epochs` fixed to a value, and for
    `smoke` the width range replaced by `SMOKE_WIDTH_RANGE` and 1 epoch (unless
    `epochs` is given)."""
    import keras_tuner

    config = hp.get_config()
    if smoke and epochs is None:
        epochs = 1
    if epochs is not None and (not _is_int(epochs) or epochs < 1):
        raise ValueError(f"Expected `epochs` to be an integer >= 1. Received: epochs={epochs!r}")
    for entry in config["space"]:
        cfg = entry["config"]
        if cfg["name"] == "epochs" and epochs is not None:
            entry["class_name"], entry["config"] = "Fixed", {
                "name": "epochs", "conditions": [], "value": int(epochs)}
            config["values"]["epochs"] = int(epochs)
        elif cfg["name"] == "width" and smoke:
            low, high = SMOKE_WIDTH_RANGE
            entry["class_name"], entry["config"] = "Int", {
                "name": "width", "default": None, "conditions": [], "min_value": low,
                "max_value": high, "step": SMOKE_WIDTH_STEP, "sampling": "linear"}
            config["values"]["width"] = low
    return keras_tuner.HyperParameters.from_config(config)


def space_signature(hp) -> dict:
    """An order-independent summary of a search space, for comparing two spaces (e.g. the one
    a sweep directory was started with and the one of a rerun, or a chief's and a worker's)."""
    config = hp.get_config() if not isinstance(hp, dict) else hp
    out = {}
    for entry in config["space"]:
        cfg = dict(entry["config"])
        name = cfg.pop("name")
        cfg.pop("conditions", None)
        if entry["class_name"] in ("Int", "Float") and cfg.get("default") is None:
            cfg["default"] = cfg.get("min_value")
        out[name] = (entry["class_name"], json.dumps(cfg, sort_keys=True))
    return out


def describe_difference(a: dict, b: dict) -> str:
    """What differs between two `space_signature` results, for error messages."""
    parts = []
    for name in sorted(set(a) | set(b)):
        if a.get(name) != b.get(name):
            parts.append(f"{name}: {a.get(name, 'absent')} vs {b.get(name, 'absent')}")
    return "; ".join(parts)


if __name__ == "__main__":  # python -m ei_keras.tuning.space [directory]
    import sys

    for written in write_tuner_configs(sys.argv[1] if len(sys.argv) > 1 else "tuner_configs"):
        print(f"wrote {written}")
