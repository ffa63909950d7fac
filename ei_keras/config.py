"""The one schema of a run's configuration: sections, dotted keys, types, defaults, smoke sizes.

Every consumer (the zoo's hyperparameters, `ei_keras.experiment`, the recipes, the
KerasTuner hypermodel and the CLI) reads the keys, defaults and parsers defined here, and
nothing else defines them. A configuration is a frozen `RunConfig`; its dotted keys
(`opt.lr_e`, `model.width`, ...) are derived from the dataclass fields, so adding a field
adds a key everywhere.

Parsing is typed: a key's value may be given as the right Python type or as the text the
command line passes (`"0.1"`, `"yes"`). Booleans accept `true/false/1/0/yes/no/on/off`
and nothing else; numbers reject NaN and infinities; `none`/`null` is accepted only where
`None` is meaningful (`None` for a hyperparameter means "the preset's default").

Example:

```python
from ei_keras.config import RunConfig

cfg = RunConfig().with_overrides(["opt.lr_e=0.1", "model.trainable_ei=no"])
cfg.opt.lr_e, cfg.model.trainable_ei  # (0.1, False)
cfg.to_dict()["model"]["trainable_ei"]  # False
```

This module imports neither Keras nor an array backend.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any

from ei_keras import zoo
from ei_keras.annealing import SHAPES as ANNEALING_SHAPES


class ConfigError(ValueError):
    """An invalid configuration; the message names the key, what is expected and the value."""


# ---------------------------------------------------------------------------------------------
# Value kinds: one parser per kind of value. Each takes a Python value or the command line's
# text and returns the typed value or raises ConfigError naming the key.

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_NONE = ("none", "null")
_BOOL_TEXT = "a boolean (true/false, 1/0, yes/no, on/off)"


def _fail(key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"Expected `{key}` to be {expected}. Received: {key}={value!r}")


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE)


def _parse_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise _fail(key, _BOOL_TEXT, value)


def _parse_int(key: str, value: Any, low: int | None) -> int:
    out = None
    if isinstance(value, int) and not isinstance(value, bool):
        out = value
    elif isinstance(value, float) and math.isfinite(value) and value == int(value):
        out = int(value)
    elif isinstance(value, str):
        try:
            out = int(value.strip())
        except ValueError:
            out = None
    if out is None or (low is not None and out < low):
        raise _fail(key, f"an integer >= {low}" if low is not None else "an integer", value)
    return out


def _parse_float(key: str, value: Any, low: float | None, high: float | None,
                 low_open: bool, high_open: bool) -> float:
    out = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            out = None
    ok = out is not None and math.isfinite(out)
    if ok and low is not None:
        ok = out > low if low_open else out >= low
    if ok and high is not None:
        ok = out < high if high_open else out <= high
    if not ok:
        if low is not None and high is not None:
            what = (f"a number in {'(' if low_open else '['}{low:g}, {high:g}"
                    f"{')' if high_open else ']'}")
        elif low is not None:
            what = f"a finite number {'>' if low_open else '>='} {low:g}"
        else:
            what = "a finite number"
        raise _fail(key, what, value)
    return out


@dataclasses.dataclass(frozen=True)
class Kind:
    """How one key's value is parsed and checked.

    Attributes:
        name: `"bool"`, `"int"`, `"float"`, `"str"`, `"choice"` (one of
            `choices`), `"auto_int"` (`"auto"` or an int) or `"auto_bool"` (`"auto"`
            or a bool).
        low, high: bounds for numbers (`None`: unbounded).
        low_open, high_open: whether the bounds are excluded.
        optional: `None` is a valid value.
        choices: the accepted values of a `"choice"`.
        hint: a sentence appended to the error, saying how to fix a value out of range.
    """

    name: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    optional: bool = False
    choices: tuple[str, ...] = ()
    hint: str = ""

    def parse(self, key: str, value: Any) -> Any:
        try:
            return self._parse(key, value)
        except ConfigError as e:
            if not self.hint:
                raise
            raise ConfigError(f"{str(e).rstrip('.')}. {self.hint}") from None

    def _parse(self, key: str, value: Any) -> Any:
        if _is_none(value):
            if self.optional:
                return None
            raise _fail(key, f"{self.describe()} (not None)", value)
        if self.name == "bool":
            return _parse_bool(key, value)
        if self.name == "int":
            return _parse_int(key, value, None if self.low is None else int(self.low))
        if self.name == "float":
            return _parse_float(key, value, self.low, self.high, self.low_open, self.high_open)
        if self.name == "choice":
            text = value.strip() if isinstance(value, str) else value
            if text not in self.choices:
                close = difflib.get_close_matches(str(text), self.choices, n=1)
                hint = f" Did you mean {close[0]}?" if close else ""
                raise ConfigError(f"Expected `{key}` to be {self.describe()}. Received: "
                                  f"{key}={value!r}.{hint}")
            return text
        if self.name in ("auto_int", "auto_bool"):
            if isinstance(value, str) and value.strip().lower() == "auto":
                return "auto"
            try:
                return (_parse_int(key, value, int(self.low or 1)) if self.name == "auto_int"
                        else _parse_bool(key, value))
            except ConfigError:
                raise _fail(key, self.describe(), value) from None
        if self.name == "str":
            if not isinstance(value, str) or not value.strip():
                raise _fail(key, "a non-empty string", value)
            return value
        raise AssertionError(self.name)

    def describe(self) -> str:
        if self.name == "bool":
            return _BOOL_TEXT
        if self.name == "auto_int":
            return f'"auto" or an integer >= {int(self.low or 1)}'
        if self.name == "auto_bool":
            return f'"auto" or {_BOOL_TEXT}'
        if self.name == "str":
            return "a string"
        if self.name == "choice":
            return "one of " + ", ".join(self.choices)
        if self.name == "int":
            return f"an integer >= {int(self.low)}" if self.low is not None else "an integer"
        lo = "" if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        hi = "" if self.high is None else f"{'<' if self.high_open else '<='} {self.high:g}"
        return "a number " + " and ".join(p for p in (lo, hi) if p)


_NO_NEUTRAL = object()


def _key(kind: Kind, default: Any, help: str, *, fingerprint: bool = True,
         neutral: Any = _NO_NEUTRAL):
    """A dataclass field carrying its kind, help text and whether it determines results.

    `neutral`: for a key added after runs were made, the value under which a run is the run
    it was before the key existed; at that value the key is left out of the fingerprint
    (`unused_keys`), so finished results folders stay reusable when the library grows."""
    return dataclasses.field(default=default, metadata={
        "kind": kind, "help": help, "fingerprint": fingerprint, "neutral": neutral})


_RATE = Kind("float", low=0.0, optional=True)
_COUNT = Kind("int", low=1)


# ---------------------------------------------------------------------------------------------
# The schema. Defaults live here and only here.

#: Hidden width of the MLP presets unless set and hidden layers: the preset table's
#: (`ei_keras.zoo`; `model.width` None means the preset's default, `zoo.default_width`).
DEFAULT_WIDTH = zoo.DEFAULT_WIDTH
DEFAULT_DEPTH = zoo.DEFAULT_DEPTH


@dataclasses.dataclass(frozen=True)
class ShiftFamily:
    """A family of per-image shifts of the data (`data.shift`), as the schema knows it.

    The arithmetic lives in `ei_keras.data.shifts`; this is what the configuration, the
    run directories and the reports need to know without importing it.

    Attributes:
        name: the value of `data.shift`.
        size_key: the dotted key that holds the shift's size (its one parameter).
        symbol: the size's letter in folder names and report labels (`r0.75`, `s4`).
        axis: how a report names the size axis (`r`, `contrast s`).
        description: one line for help texts.
        arithmetic: the name of its `ei_keras.data.shifts.Shift` subclass, which draws and
            applies it (`ei_keras.data.SHIFTS` is built from this table: a new family is
            that class and one entry here).
    """

    name: str
    size_key: str
    symbol: str
    axis: str
    description: str
    arithmetic: str

    def label(self, size: float | None) -> str:
        """`"r = 0.75"`, `"contrast s = 4"`: the size as a report writes it."""
        return f"{self.axis} = {'?' if size is None else f'{size:g}'}"


#: The shift families, by `data.shift` value (the first is the paper's and the default).
SHIFT_FAMILIES: dict[str, ShiftFamily] = {f.name: f for f in [
    ShiftFamily("luminosity", "data.luminosity", "r", "r",
                "add c ~ U(-r, r) to every pixel of an image, clip to [0, 1] (the paper's)",
                "LuminosityShift"),
    ShiftFamily("contrast", "data.contrast", "s", "contrast s",
                "scale each image's deviation from its own mean by c, log c ~ U(-log s, log s), "
                "clip to [0, 1]", "ContrastShift"),
    ShiftFamily("contrast_signal", "data.contrast", "s", "contrast-as-signal s",
                "the contrast shift, and the label also says low (c < 1) or high (c >= 1) "
                "contrast: 2 x the classes", "ContrastSignalShift"),
]}

#: Default contrast range `s` (`data.contrast`): `c` spans [1/4, 4], a 16-fold range of
#: an image's pixel spread. At `c = 4` a Fashion-MNIST image saturates to a near-binary
#: silhouette and at `c = 1/4` its pixels span a quarter of their range around the mean: a
#: strong nuisance that still leaves every class recognisable, as `r = 0.75` is for the
#: luminosity shift.
DEFAULT_CONTRAST = 4.0


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    width: int | None = _key(Kind("int", low=1, optional=True), None,
                             f"hidden width (default: the preset's: {DEFAULT_WIDTH} for the "
                             "MLPs, paper sweep 100-500; the conv presets' last-layer filters)")
    depth: int = _key(_COUNT, DEFAULT_DEPTH, "number of hidden layers (paper: 2)")
    trainable_ei: bool = _key(Kind("bool"), True,
                              "whether the hidden I-Norm layers' W_EI/B_EI learn")
    gradnorm_on: str = _key(
        Kind("choice", choices=("y", "z")), "y",
        "what GradNorm (error_normalization full/decorrelate) projects the error out of: y = "
        "normalized z (LayerNorm's backward) or z itself (the paper code's formula)",
        neutral="y")
    task_trains_inhibitory: bool = _key(
        Kind("bool"), False,
        "isolation ablation: the task loss also trains the I-Norm layers' inhibitory weights "
        "(W_IE, W_EI, B_IE, B_EI; each gets the sum of both losses' gradients); the paper "
        "code's task_opt_inhib, declared there and never read", neutral=False)
    norm_trains_excitatory: bool = _key(
        Kind("bool"), False,
        "isolation ablation: each I-Norm layer's normalization loss also trains its W_EE and "
        "bias (the sum of both losses' gradients); the paper code's homeo_opt_exc, declared "
        "there and never read", neutral=False)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    shift: str = _key(Kind("choice", choices=tuple(SHIFT_FAMILIES)), "luminosity",
                      "per-image shift family: " + "; ".join(
                          f"{f.name}: {f.description}" for f in SHIFT_FAMILIES.values()))
    luminosity: float = _key(Kind("float", low=0.0, high=1.0), 0.75,
                             "luminosity-shift half-width r in [0, 1] (data.shift=luminosity)")
    contrast: float = _key(
        Kind("float", low=1.0, hint="s and 1/s give the same law of log c: give s >= 1 "
             "(1 = no contrast shift)."), DEFAULT_CONTRAST,
        "contrast range s >= 1: log c ~ U(-log s, log s) (data.shift=contrast or "
        "contrast_signal)")
    batch_size: int = _key(_COUNT, 32, "training batch size (paper: 32)")
    train_subset: int | None = _key(Kind("int", low=1, optional=True), None,
                                    "use only the first N training images (None: all 60000)")
    test_subset: int | None = _key(Kind("int", low=1, optional=True), None,
                                   "use only the first N test images (None: all 10000)")
    validation_size: int = _key(Kind("int", low=0), 0,
                                "training images held out as a shifted validation set (0: "
                                "none); sweeps select on it, never on the test set")
    data_dir: str | None = _key(Kind("str", optional=True), None,
                                "folder with the four Fashion-MNIST IDX .gz files",
                                fingerprint=False)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = _key(_COUNT, 3, "training epochs (paper: 50)")
    validate_each_epoch: bool = _key(Kind("bool"), False,
                                     "evaluate the held-out validation set after every epoch "
                                     "(needs data.validation_size > 0)")
    jit_compile: Any = _key(Kind("auto_bool"), "auto", "Keras' jit_compile")
    steps_per_execution: Any = _key(Kind("auto_int", low=1), "auto",
                                    "training steps per compiled call (auto: 32 on "
                                    "TensorFlow/JAX, 1 on PyTorch)")
    inhibitory_steps: int = _key(_COUNT, 1, "normalization-loss updates of the inhibitory "
                                 "weights per batch (1: the paper's step)")
    inhibitory_every: int = _key(_COUNT, 1, "update the inhibitory weights on one batch in "
                                 "this many (1: every batch, the paper's step)")


@dataclasses.dataclass(frozen=True)
class OptConfig:
    lr_e: float | None = _key(_RATE, None, "learning rate of W_EE and the biases")
    lr_ie: float | None = _key(_RATE, None, "learning rate of W_IE (and B_IE)")
    lr_ei: float | None = _key(_RATE, None, "learning rate of W_EI (and B_EI)")
    momentum: float | None = _key(Kind("float", low=0.0, high=1.0, high_open=True,
                                       optional=True), None, "SGD momentum (paper: 0)")
    inhibitory_momentum: float | None = _key(
        Kind("float", low=0.0, high=1.0, high_open=True, optional=True), None,
        "SGD momentum of the inhibitory groups (None: as momentum)")
    inhibitory_clipnorm: float | None = _key(
        Kind("float", low=0.0, optional=True), None,
        "clip each inhibitory variable's gradient norm at this value (0: no clip; None: the "
        "preset's, 0.1 for the I-Norm presets)")
    excitatory_clipnorm: float | None = _key(
        Kind("float", low=0.0, optional=True), None,
        "clip each excitatory variable's gradient norm at this value (0: no clip; None: the "
        "preset's: 1 for the recurrent I-Norm presets, none for the others)")
    exponentiated: bool | None = _key(
        Kind("bool", optional=True), None,
        "exponentiated-gradient step for the excitatory group, w <- w exp(-lr_e sign(w) u) "
        "(the paper code's opt.exponentiated; None/false: SGD)")
    inhibitory_exponentiated: bool | None = _key(
        Kind("bool", optional=True), None,
        "exponentiated-gradient step for the inhibitory groups (None/false: SGD)")
    eg_normalise: bool | None = _key(
        Kind("bool", optional=True), None,
        "EG groups hold each weight tensor's L1 norm at its first-update value (the paper "
        "code's opt.eg_normalise)")
    split_bias: bool | None = _key(
        Kind("bool", optional=True), None,
        "every bias as b+ - b-, two non-negative variables (lets an EG bias change sign)")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    norm_weight: float | None = _key(_RATE, None, "lambda, the weight of the I-Norm loss")
    norm_weight_schedule: str | None = _key(
        Kind("choice", choices=ANNEALING_SHAPES, optional=True), None,
        "anneal lambda from 0 with the paper code's shapes: lambda * f(epoch), f = t/T, "
        "1 - exp(-t/T), log(1+t)/log(1+T) or (1 - cos(pi t/T))/2 (None: constant lambda)")
    norm_weight_horizon: float | None = _key(
        Kind("float", low=0.0, low_open=True, optional=True), None,
        "T of loss.norm_weight_schedule in epochs (tau for exponential; None: train.epochs)")
    label_smoothing: float | None = _key(
        Kind("float", low=0.0, high=1.0, high_open=True, optional=True), None,
        "label smoothing of the task loss (reference code: 0.1)")


@dataclasses.dataclass(frozen=True)
class MeasuresConfig:
    moments: bool = _key(Kind("bool"), True, "record the hidden layers' moments per epoch")
    alignment: bool = _key(Kind("bool"), True,
                           "record output/gradient alignment with LayerNorm per epoch")
    probe_size: int = _key(_COUNT, 512, "test images the measures are computed on")
    weights: bool = _key(Kind("bool"), False,
                         "record the distribution of the sign-constrained excitatory weights "
                         "at the end (ln-weight moments, log10 histogram)", neutral=False)


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    save_model: bool = _key(Kind("bool"), False, "write model.keras into the run directory",
                            fingerprint=False)


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "opt": OptConfig,
             "loss": LossConfig, "measures": MeasuresConfig, "output": OutputConfig}

#: The sections whose keys are the presets' training hyperparameters (`zoo.hyperparameters`).
HYPERPARAMETER_SECTIONS = ("opt", "loss")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The whole configuration of one training run.

    Build one with `from_dict` (a nested or dotted mapping) or
    `with_overrides`; both validate every value. `to_dict()` gives the nested JSON
    form written to `config.json`.
    """

    preset: str = _key(Kind("str"), "ei_ln", "zoo preset (ei-keras presets)")
    condition: str | None = _key(Kind("str", optional=True), None,
                                 "label of the run in reports (default: the preset)",
                                 fingerprint=False)
    seed: int = _key(Kind("int", low=0), 0, "initialisation and data-stream seed")
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    opt: OptConfig = dataclasses.field(default_factory=OptConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    measures: MeasuresConfig = dataclasses.field(default_factory=MeasuresConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any] | None = None) -> RunConfig:
        """A validated configuration from a nested (`{"opt": {"lr_e": 0.1}}`) and/or dotted
        (`{"opt.lr_e": 0.1}`) mapping; missing keys take their defaults."""
        return cls().with_overrides(flatten(mapping or {}))

    def with_overrides(self, overrides: Mapping[str, Any] | Iterable[str]) -> RunConfig:
        """A copy with dotted overrides applied: a mapping `{"opt.lr_e": 0.1}` or the command
        line's `["opt.lr_e=0.1", ...]`. Every value is parsed by its key's kind.

        Raises:
            ConfigError: an unknown key (with close matches), a malformed override or a value of
                the wrong type or range.
        """
        flat = self.flat()
        given = []
        for key, value in _items(overrides):
            if key not in flat:
                raise ConfigError(_unknown(key))
            flat[key] = KINDS[key].parse(key, value)
            given.append(key)
        out = _build(flat)
        _check_preset(out.preset)
        _check_applicable(flat, given)
        if out.train.validate_each_epoch and not out.data.validation_size:
            raise ConfigError("train.validate_each_epoch=true needs a held-out split: set "
                              "data.validation_size (e.g. 5000); the test set is never used "
                              "for validation.")
        if out.data.shift == "contrast_signal" and out.data.contrast == 1.0:
            raise ConfigError("data.shift=contrast_signal needs data.contrast > 1: with s = 1 "
                              "every image is shown at contrast c = 1 and the low/high half of "
                              "the label says nothing. Set data.contrast (e.g. 4). Received: "
                              "data.contrast=1.0")
        return out

    # -- views ---------------------------------------------------------------------------------
    def flat(self) -> dict[str, Any]:
        """`{dotted key: value}` for every key."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _SECTIONS:
                out.update({f"{f.name}.{k}": v for k, v in dataclasses.asdict(value).items()})
            else:
                out[f.name] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        """The nested JSON-ready form (as in `config.json`)."""
        return dataclasses.asdict(self)

    def get(self, key: str) -> Any:
        """The value of dotted `key`."""
        flat = self.flat()
        if key not in flat:
            raise ConfigError(_unknown(key))
        return flat[key]

    def hyperparameter_overrides(self) -> dict[str, Any]:
        """The set (not None) `opt.*` and `loss.*` values by bare name, for
        `ei_keras.zoo.hyperparameters`."""
        return {k.split(".", 1)[1]: v for k, v in self.flat().items()
                if k.split(".", 1)[0] in HYPERPARAMETER_SECTIONS and v is not None}

    @property
    def label(self) -> str:
        """The condition label: `condition` or the preset."""
        return self.condition or self.preset

    @property
    def shift_family(self) -> ShiftFamily:
        """The `ShiftFamily` of `data.shift`."""
        return SHIFT_FAMILIES[self.data.shift]

    @property
    def shift_size(self) -> float:
        """The size of the data's shift: `data.luminosity` or `data.contrast`, as
        `data.shift` says."""
        return self.get(self.shift_family.size_key)


def unused_keys(flat: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys of a flat configuration (`RunConfig.flat`) that cannot change its run:
    the size keys of the shift families not in use, `data.shift` itself when it is the
    paper's luminosity shift (every run made before the key existed was one), and every key
    at its `neutral` value (`NEUTRAL_VALUES`: keys added later, e.g. `model.gradnorm_on` at
    `y`; likewise).

    Fingerprints leave them out, so a luminosity run keeps the fingerprint it had before the
    other families existed (its results folder stays reusable) and a contrast run does not
    depend on `data.luminosity`.
    """
    family = SHIFT_FAMILIES[flat.get("data.shift", "luminosity")]
    out = [f.size_key for f in SHIFT_FAMILIES.values() if f.size_key != family.size_key]
    if family.name == "luminosity":
        out.append("data.shift")
    out += [k for k, v in NEUTRAL_VALUES.items() if flat.get(k, v) == v]
    return tuple(dict.fromkeys(out))


def inapplicable_keys(flat: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys that do not apply to a flat configuration's run: the size keys of the shift
    families not in use (`data.luminosity` under `data.shift=contrast` and vice versa),
    the hyperparameters its preset has no use for (`loss.norm_weight` without I-Norm layers:
    `ei_keras.zoo.unused_hyperparameters`) and the model options it has no use for
    (`model.gradnorm_on` without GradNorm, the isolation ablations without I-Norm layers:
    `ei_keras.zoo.unused_model_options`).

    The one rule: setting one of them to anything but its default is refused
    (`RunConfig.with_overrides`), so a value is never recorded (`config.json`, the
    fingerprint) that the run does not use.
    """
    family = SHIFT_FAMILIES[flat.get("data.shift", "luminosity")]
    out = [f.size_key for f in SHIFT_FAMILIES.values() if f.size_key != family.size_key]
    out += [HYPERPARAMETER_KEYS[k] for k in zoo.unused_hyperparameters(flat["preset"])]
    out += [f"model.{k}" for k in zoo.unused_model_options(flat["preset"])]
    return tuple(dict.fromkeys(out))


def _check_applicable(flat: Mapping[str, Any], given: Iterable[str]) -> None:
    for key in inapplicable_keys(flat):
        if key in given and flat[key] != _FIELDS[key].default:
            if key.startswith("data."):
                why = (f"data.shift={flat['data.shift']} sizes its shift with "
                       f"{SHIFT_FAMILIES[flat['data.shift']].size_key}")
            elif key.startswith("model."):
                why = zoo.unused_model_options(flat["preset"])[key.split(".", 1)[1]]
            else:
                why = f"preset {flat['preset']} has no I-Norm layer"
            raise ConfigError(f"`{key}` does not apply here ({why}), so it would be "
                              f"recorded but never used. Received: {key}={flat[key]!r}; leave "
                              "it out (or set the key that applies).")


def _fields(cls) -> list[dataclasses.Field]:
    return list(dataclasses.fields(cls))


def _all_keys() -> dict[str, dataclasses.Field]:
    out = {}
    for f in _fields(RunConfig):
        if f.name in _SECTIONS:
            out.update({f"{f.name}.{g.name}": g for g in _fields(_SECTIONS[f.name])})
        else:
            out[f.name] = f
    return out


_FIELDS = _all_keys()
#: Every dotted key, in schema order.
KEYS: tuple[str, ...] = tuple(_FIELDS)
#: The kind of every key.
KINDS: dict[str, Kind] = {k: f.metadata["kind"] for k, f in _FIELDS.items()}
#: One line of help per key.
HELP: dict[str, str] = {k: f.metadata["help"] for k, f in _FIELDS.items()}
#: Keys that do not change a run's result (where files go, labels): left out of fingerprints.
#: Keys added after runs were made, with the value that leaves a run as it was before the key
#: existed: at that value a key is left out of the fingerprint (`unused_keys`). A new key
#: that defines runs declares one (`_key(..., neutral=...)`) so finished folders stay reusable.
NEUTRAL_VALUES: dict[str, Any] = {
    k: f.metadata["neutral"] for k, f in _FIELDS.items()
    if f.metadata["neutral"] is not _NO_NEUTRAL}
NON_FINGERPRINT_KEYS: tuple[str, ...] = tuple(
    k for k, f in _FIELDS.items() if not f.metadata["fingerprint"])
#: The presets' training hyperparameters: the bare names of the `opt`/`loss` keys.
HYPERPARAMETERS: tuple[str, ...] = tuple(
    k.split(".", 1)[1] for k in KEYS if k.split(".", 1)[0] in HYPERPARAMETER_SECTIONS)
if HYPERPARAMETERS != zoo.HYPERPARAMETERS:  # the zoo's list of what a preset's training takes
    raise RuntimeError(f"ei_keras.zoo.HYPERPARAMETERS {zoo.HYPERPARAMETERS} must be the names "
                       f"of the opt.* and loss.* keys {HYPERPARAMETERS}, in their order.")
#: Dotted key of each bare hyperparameter name (`"lr_e" -> "opt.lr_e"`).
HYPERPARAMETER_KEYS: dict[str, str] = {
    k.split(".", 1)[1]: k for k in KEYS if k.split(".", 1)[0] in HYPERPARAMETER_SECTIONS}

#: Bare names for the keys a search space or a sweep trial sets (the hyperparameters, plus the
#: network and training sizes), and the dotted key each stands for.
SHORT_KEYS: dict[str, str] = {**HYPERPARAMETER_KEYS, "width": "model.width",
                              "depth": "model.depth", "batch_size": "data.batch_size",
                              "epochs": "train.epochs", "gradnorm_on": "model.gradnorm_on"}

#: The tiny size of every `--smoke` run (CLI `train`, recipes, sweeps): CI-sized, real data.
SMOKE_OVERRIDES: dict[str, Any] = {
    "train.epochs": 1, "data.train_subset": 256, "data.test_subset": 256, "model.width": 32,
    "measures.probe_size": 64}


def _build(flat: Mapping[str, Any]) -> RunConfig:
    sections = {name: {} for name in _SECTIONS}
    top = {}
    for key, value in flat.items():
        head, _, leaf = key.partition(".")
        if leaf:
            sections[head][leaf] = value
        else:
            top[key] = value
    return RunConfig(**top, **{n: _SECTIONS[n](**v) for n, v in sections.items()})


def _unknown(key: str) -> str:
    close = difflib.get_close_matches(key, KEYS, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return (f"Unknown configuration key {key!r}.{hint} Known keys: {', '.join(KEYS)} "
            "(ei-keras train --help lists them with their meaning).")


def _items(overrides) -> Iterable[tuple[str, Any]]:
    if isinstance(overrides, Mapping):
        yield from overrides.items()
        return
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"An override must look like key=value (e.g. opt.lr_e=0.1). "
                              f"Received: {item!r}")
        key, value = item.split("=", 1)
        key = key.strip().lstrip("-")
        if not key:
            raise ConfigError(f"An override must look like key=value. Received: {item!r}")
        yield key, value


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested configuration mapping as `{dotted key: value}` (dotted keys pass through)."""
    out = {}
    for k, v in mapping.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            if key not in _SECTIONS:
                raise ConfigError(_unknown(key) if key not in KEYS else
                                  f"`{key}` is a value, not a section. Received: {key}={v!r}")
            out.update(flatten(v, key + "."))
        else:
            if key in _SECTIONS:
                raise ConfigError(f"`{key}` is a section; give its keys ({key}.<name>=value). "
                                  f"Received: {key}={v!r}")
            out[key] = v
    return out


def _check_preset(name: str) -> None:
    try:
        zoo.get(name)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def describe_keys() -> str:
    """One line per key: `key  help (default value)` — the CLI's list of overrides."""
    return "\n".join(f"  {key:28s} {HELP[key]} (default {_FIELDS[key].default!r})"
                     for key in KEYS)
