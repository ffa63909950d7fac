"""The paper's experiments as protocols: which presets, shift sizes and configurations to run.

A protocol runs every cell `(condition, shift size, configuration)` with
`ei_keras.experiment.run_experiment` into `<out>/<condition>/<size>/cfg<i>` (`r0.75`
for a luminosity range, `s4` for a contrast range: `ei_keras.run_directory.shift_dir`),
skipping cells whose run directory is already complete (a rerun resumes), then writes the
report with `ei_keras.analysis.write_report`. Configuration `i` uses seed `i` and,
when the protocol sweeps, learning rates and a width drawn from `ei_keras.search_space`
(the paper's protocol: random configurations per condition, compared with Mann-Whitney U
against LN).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ei_keras.config import (
    DEFAULT_WIDTH,
    KINDS,
    SHIFT_FAMILIES,
    SMOKE_OVERRIDES,
    ConfigError,
    RunConfig,
    ShiftFamily,
    _items,
    inapplicable_keys,
)
from ei_keras.run_directory import shift_dir

LUMINOSITIES = (0.0, 0.25, 0.5, 0.75)
#: The contrast ranges `s` of the contrast recipes: `c` within a factor 2 or 4 of 1.
CONTRASTS = (2.0, 4.0)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One experiment of the paper.

    Attributes:
        name: recipe name (`fig2` ...).
        title: what it reproduces.
        conditions: preset names (the reference `ei_ln` included where compared).
        sizes: the shift sizes swept: luminosity half-widths `r` (`data.luminosity`), or
            contrast ranges `s` (`data.contrast`) for the contrast families.
        configs: configurations per cell (paper: 30).
        epochs: epochs per run (paper: 50).
        sweep: draw learning rates and a width per configuration (else the presets'
            defaults).
        overrides: fixed dotted overrides of every run.
        smoke: the tiny CI size: dotted overrides plus `configs`/`sizes`.
        expected: the picture the paper shows.
        variants: conditions that are a preset with fixed overrides:
            `{label: (preset, {dotted key: value})}` (the label names the cell's folder and
            the condition in reports; learning rates are drawn for the preset, so a variant's
            configuration `i` pairs with its preset's).
        shift: the data's shift family (`data.shift`; the paper's is `luminosity`).
        reference: the condition every other is compared with in the report (the paper's:
            LayerNorm, `ei_ln`).
    """

    name: str
    title: str
    conditions: tuple
    sizes: tuple = LUMINOSITIES
    configs: int = 30
    epochs: int = 50
    sweep: bool = True
    overrides: dict = dataclasses.field(default_factory=dict)
    smoke: dict = dataclasses.field(default_factory=dict)
    expected: str = ""
    variants: dict = dataclasses.field(default_factory=dict)
    shift: str = "luminosity"
    reference: str = "ei_ln"

    @property
    def family(self) -> ShiftFamily:
        """The `ei_keras.config.ShiftFamily` of `shift` (its size key, its symbol)."""
        return SHIFT_FAMILIES[self.shift]


#: A protocol's smoke size keeps its sampled widths (the paper's 100-500: on 256 images any of
#: them trains in well under a second), so a smoke run records what a full one does.
_SMOKE = {"configs": 1, "sizes": (0.0, 0.75),
          "overrides": {k: v for k, v in SMOKE_OVERRIDES.items() if k != "model.width"}}
_CONTRAST_SMOKE = {**_SMOKE, "sizes": (4.0,)}
#: The conditions of the contrast recipes: no normalization, LN, and the three I-Norm steps.
_CONTRAST_CONDITIONS = ("ei_ln", "ei", "inorm_sub", "inorm", "inorm_gradnorm")

#: λ grid of the ablations recipe: five decades around the paper's default 0.01 (SPEC section 3
#: says "λ on a grid, default 0.01" and gives no values; the presets' own λ is the middle one).
ABLATION_LAMBDAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def _ablation_variants() -> dict:
    """The ablations recipe's variants: each a preset with fixed overrides, so configuration
    `i` of a variant pairs with configuration `i` of its preset (same seed, same rates)."""
    variants = {"inorm_gradnorm_z": ("inorm_gradnorm", {"model.gradnorm_on": "z"})}
    for preset in ("inorm", "inorm_gradnorm"):
        variants[f"{preset}_noclip"] = (preset, {"opt.inhibitory_clipnorm": 0.0})
    for preset in ("ei", "ei_ln", "inorm_gradnorm"):
        variants[f"{preset}_eg"] = (preset, {"opt.exponentiated": True})
    for preset in ("inorm", "inorm_gradnorm"):
        for lam in ABLATION_LAMBDAS:
            if lam != 1e-2:  # the preset itself
                variants[f"{preset}_lambda{lam:g}"] = (preset, {"loss.norm_weight": lam})
    for preset in ("inorm", "inorm_gradnorm"):  # the isolation ablations
        variants[f"{preset}_task_inhib"] = (preset, {"model.task_trains_inhibitory": True})
        variants[f"{preset}_norm_exc"] = (preset, {"model.norm_trains_excitatory": True})
    return variants


_ABLATION_VARIANTS = _ablation_variants()

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in [
    Protocol("fig2", "Fig. 2: LayerNorm vs no normalization across luminosity shifts; "
             "E-only + LN vs EI + LN", ("ei_ln", "ei", "e_ln"), smoke=_SMOKE,
             expected="LN above EI, more so as r grows; e_ln ≈ ei_ln (n.s.)"),
    Protocol("fig3", "Fig. 3: hidden moments of I-Norm, subtractive-only I-Norm and plain EI",
             ("inorm", "inorm_sub", "ei", "ei_ln"), smoke=_SMOKE,
             expected="I-Norm moments near (0, 1); subtractive-only misses the variance target"),
    Protocol("fig4", "Fig. 4: I-Norm without GradNorm vs LN: accuracy, output and gradient "
             "alignment", ("ei_ln", "inorm"), smoke=_SMOKE,
             expected="I-Norm below LN; output alignment high, gradient alignment lower"),
    Protocol("fig5", "Fig. 5: I-Norm + GradNorm vs LN", ("ei_ln", "inorm_gradnorm", "inorm"),
             smoke=_SMOKE, expected="I-Norm + GradNorm ≈ LN at every r; gradient alignment up"),
    Protocol("fig6", "Fig. 6: error-normalization ablations vs LN (Mann-Whitney table)",
             ("ei_ln", "inorm_center", "inorm_scale", "inorm_decorrelate", "inorm_gradnorm"),
             smoke=_SMOKE, expected="scale, decorrelate worse (***); center n.s.; full n.s. or "
             "slightly better"),
    Protocol("fig7", "Fig. 7: lateral inhibition of the error (fixed random weights)",
             ("ei_ln", "inorm_lateral", "inorm_center"), smoke=_SMOKE,
             expected="lateral ≈ center ≈ LN, all n.s."),
    Protocol("timescales", "Inhibitory plasticity timescales: k normalization-loss updates per "
             "batch (train.inhibitory_steps) for I-Norm with and without GradNorm, r = 0.75",
             ("ei_ln", "inorm", "inorm_k4", "inorm_k16", "inorm_gradnorm",
              "inorm_gradnorm_k4", "inorm_gradnorm_k16"), sizes=(0.75,),
             variants={f"{p}_k{k}": (p, {"train.inhibitory_steps": k})
                       for p in ("inorm", "inorm_gradnorm") for k in (4, 16)},
             smoke={**_SMOKE, "sizes": (0.75,)},
             expected="an open question: does faster inhibition close the gap of "
             "I-Norm without GradNorm to LN?"),
    Protocol("ablations", "Ablations of our explanations (issue 23): detached LN, GradNorm on "
             "y vs z, the inhibitory clip, EG vs GD, the λ grid, the isolation of the two "
             "losses; paired configurations",
             ("ei_ln", "ei_ln_detached", "inorm", "inorm_gradnorm", "ei",
              *_ABLATION_VARIANTS), sizes=(0.0, 0.75), configs=12, epochs=3,
             variants=_ABLATION_VARIANTS, smoke=_SMOKE,
             expected="open questions: is ei_ln_detached below ei_ln like inorm? does z differ "
             "from y? does the clip matter? does EG change accuracy?"),
    Protocol("defaults", "The presets' defaults: every I-Norm preset vs LN, 3 seeds, 3 epochs "
             "(issue: I-Norm networks that train reliably out of the box)",
             ("ei_ln", "inorm", "inorm_sub", "inorm_gradnorm", "inorm_center", "inorm_lateral",
              "inorm_scale", "inorm_decorrelate"), sizes=(0.0, 0.75), configs=3,
             epochs=3, sweep=False, overrides={"model.width": DEFAULT_WIDTH}, smoke=_SMOKE,
             expected="no run diverges; gradnorm/center/lateral within 2 points of ei_ln"),
    Protocol("demo", "Quick demo: the key finding at r = 0.75 in 2.5-3.5 minutes "
             "(2 CPU cores, JAX)",
             ("ei", "ei_ln", "inorm", "inorm_gradnorm"), sizes=(0.75,), configs=12,
             epochs=2, overrides={"model.width": DEFAULT_WIDTH},
             smoke=_SMOKE,
             expected="LN > EI; I-Norm + GradNorm ≈ LN; I-Norm without GradNorm below LN"),
    Protocol("contrast", "Contrast shifts (beyond the paper): each image's deviation from its "
             "mean scaled by c, log c ~ U(-log s, log s); LN, plain EI and the I-Norm steps",
             _CONTRAST_CONDITIONS, sizes=CONTRASTS, shift="contrast", smoke=_CONTRAST_SMOKE,
             expected="a multiplicative nuisance: divisive normalization should matter "
             "(inorm_sub below LN, more so as s grows); I-Norm + GradNorm ≈ LN"),
    Protocol("contrast_signal", "Contrast as signal (beyond the paper): the contrast shift, "
             "and the label also says low (c < 1) or high (c >= 1) contrast: 20 classes",
             _CONTRAST_CONDITIONS, sizes=CONTRASTS, shift="contrast_signal",
             smoke=_CONTRAST_SMOKE,
             expected="an open question: the variance normalization removes carries the "
             "label; does LN or I-Norm lose to plain EI or subtractive-only I-Norm?"),
    Protocol("rnn", "Finding 5 for a recurrent EI network (beyond the paper): row-sequential "
             "Fashion-MNIST (28 steps of 28 pixels), recurrent I-Norm with and without GradNorm "
             "vs LN of the recurrent pre-activation; paired configurations",
             ("rnn_ei_ln", "rnn_ei", "rnn_inorm", "rnn_inorm_gradnorm"), sizes=(0.0, 0.75),
             configs=12, epochs=3, smoke=_SMOKE, reference="rnn_ei_ln",
             expected="if finding 5 carries over: recurrent I-Norm + GradNorm ≈ LN at every r, "
             "recurrent I-Norm without GradNorm below it"),
    Protocol("conv", "Finding 5 for a convolutional EI network (beyond the paper): conv I-Norm "
             "with and without GradNorm vs conv LN across luminosity shifts",
             ("conv_ei_ln", "conv_ei", "conv_inorm", "conv_inorm_gradnorm"), smoke=_SMOKE,
             reference="conv_ei_ln",
             expected="if finding 5 carries over: conv I-Norm + GradNorm ≈ conv LN at every r, "
             "conv I-Norm without GradNorm below it"),
]}


def get(name: str) -> Protocol:
    """The protocol called `name`."""
    if name not in PROTOCOLS:
        raise ConfigError(f"Unknown recipe {name!r}. Known recipes: {', '.join(PROTOCOLS)}.")
    return PROTOCOLS[name]


#: Run seeds of draw seed `s` start at `s * SEEDS_PER_DRAW` (configuration `i` of draw
#: seed `s` uses run seed `s * SEEDS_PER_DRAW + i`), so draws never share a run seed.
SEEDS_PER_DRAW = 1000


def sampled_overrides(preset: str, index: int, seed: int = 0) -> dict:
    """The dotted overrides configuration `index` of draw `seed` samples for `preset`: its
    learning rates (`opt.lr_e` ...) and its width (`model.width`, uniform integer in
    `ei_keras.search_space.width_range`, the paper's 100-500 for the MLPs), drawn with
    `ei_keras.search_space.sample` so that configuration `i` has one width everywhere
    and one set of rates per family, like the paper's paired sweeps."""
    from ei_keras import search_space

    drawn = search_space.sample(preset, index, base_seed=seed, sample_width=True)
    return {"model.width": drawn.pop("width"), **{f"opt.{k}": v for k, v in drawn.items()}}


def plan(protocol: Protocol, smoke: bool = False, configs: int | None = None,
         sizes=None, conditions=None, overrides=None,
         seed: int = 0) -> list[tuple[Path, RunConfig]]:
    """The cells of a protocol: `[(relative run dir, RunConfig), ...]`.

    `sizes` (default: the protocol's) are values of the protocol's size key
    (`protocol.family.size_key`: `data.luminosity` or `data.contrast`).
    Configuration `i` draws its learning rates and its width with
    `sampled_overrides` (the same width for every preset and shift size, the same rates
    for every preset of a family and every shift size) and trains with run seed
    `seed * SEEDS_PER_DRAW + i`; a fixed `model.width` (the protocol's, `--smoke`'s or
    the user's override) replaces the drawn width; `seed` (`--seed`) gives a whole
    new, independent set of configurations, e.g. to see how a conclusion varies between draws.

    Raises:
        ConfigError: `configs` is not an integer >= 1, a size is out of its key's range, a
            condition is not a preset, or an override is invalid (each names the option).
    """
    if configs is not None and (isinstance(configs, bool) or not isinstance(configs, int)
                                or configs < 1):
        raise ConfigError(f"Expected --configs to be an integer >= 1. Received: "
                          f"--configs {configs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"Expected --seed to be an integer >= 0. Received: --seed {seed!r}")
    if configs is not None and configs > SEEDS_PER_DRAW:
        raise ConfigError(f"Expected --configs <= {SEEDS_PER_DRAW}. Received: --configs "
                          f"{configs!r}")
    n = configs or (protocol.smoke.get("configs", 1) if smoke else protocol.configs)
    sizes = sizes or (protocol.smoke.get("sizes", protocol.sizes) if smoke else protocol.sizes)
    if len(set(sizes)) != len(sizes):
        raise ConfigError(f"Expected each shift size once. Received: "
                          f"{', '.join(f'{x:g}' for x in sizes)}: give each size once.")
    if conditions is not None:
        conditions = tuple(conditions)
        unknown = [c for c in conditions if c not in protocol.conditions]
        if unknown or not conditions or len(set(conditions)) != len(conditions):
            what = (f"{unknown[0]!r} is not one of them" if unknown else
                    "give each condition once" if conditions else "give at least one")
            raise ConfigError(f"Expected --conditions to be some of recipe {protocol.name}'s "
                              f"conditions ({', '.join(protocol.conditions)}): {what}. "
                              f"Received: --conditions {','.join(conditions)}")
    user = dict(_items(overrides or {}))
    for key, value in user.items():  # a bad override fails before any cell
        RunConfig().get(key)  # an unknown key, with close matches
        KINDS[key].parse(key, value)
    unused_everywhere = _keys_no_cell_uses(protocol, conditions, user)
    size_key = protocol.family.size_key
    fixed = {"train.epochs": protocol.epochs, **protocol.overrides,
             **(protocol.smoke.get("overrides", {}) if smoke else {})}
    cells = []
    for condition in conditions or protocol.conditions:
        preset, fixed_here = protocol.variants.get(condition, (condition, {}))
        for size in sizes:
            for i in range(n):
                cell = {"preset": preset, "seed": seed * SEEDS_PER_DRAW + i,
                        "data.shift": protocol.shift, size_key: size, **fixed_here}
                if condition != preset:
                    cell["condition"] = condition
                # What the recipe sets per cell (its conditions, shift family and size, run
                # seeds, a variant's fixed keys) cannot be overridden for every cell at once;
                # the sampled learning rates can (one rate for every configuration).
                _refuse_per_cell_overrides(protocol, list(user), {"condition", *cell})
                if protocol.sweep:
                    cell.update(sampled_overrides(preset, i, seed))
                base = RunConfig().with_overrides({**cell, **fixed})
                # An override applies to the cells it can change (loss.norm_weight to the
                # I-Norm conditions); one no cell uses is refused by with_overrides.
                skip = set(inapplicable_keys(base.flat())) - unused_everywhere
                cfg = base.with_overrides({k: v for k, v in user.items() if k not in skip})
                cells.append((Path(condition) / shift_dir(protocol.shift, size) /
                              f"cfg{i:02d}", cfg))
    return cells


def _keys_no_cell_uses(protocol: Protocol, conditions, user: dict) -> set[str]:
    """The overridden keys that apply to none of the protocol's conditions (their preset and
    the protocol's shift): `ei_keras.config.inapplicable_keys` decides."""
    out = set(user)
    for condition in conditions or protocol.conditions:
        preset = protocol.variants.get(condition, (condition, {}))[0]
        out -= set(user) - set(inapplicable_keys({"preset": preset,
                                                  "data.shift": protocol.shift}))
    return out


def _refuse_per_cell_overrides(protocol: Protocol, user_keys, per_cell) -> None:
    """Raise ConfigError when a dotted override sets a key the recipe sets per cell, naming the
    recipe's own option for it (a `data.luminosity=0.3` would train every cell at r 0.3 and
    file the copies under each r folder)."""
    clash = [key for key in user_keys if key in per_cell]
    if not clash:
        return
    key = clash[0]
    size_key = protocol.family.size_key
    if key == size_key:
        fix = f"give the sizes with --{size_key.split('.', 1)[1]} instead"
    elif key == "seed":
        fix = (f"give --seed instead (configuration i trains with run seed "
               f"seed x {SEEDS_PER_DRAW} + i)")
    elif key == "data.shift":
        others = [p.name for p in PROTOCOLS.values() if p.shift != protocol.shift]
        fix = (f"it trains the {protocol.shift} shift; another family has its own recipes "
               f"({', '.join(others)})")
    elif key in ("preset", "condition"):
        fix = (f"its conditions are {', '.join(protocol.conditions)}; train another preset "
               "with ei-keras train --preset, or run the recipe that compares it")
    else:
        fix = (f"its conditions {', '.join(protocol.variants)} set it; train another value "
               "with ei-keras train")
    raise ConfigError(f"Recipe {protocol.name} sets {key} per cell, so {key}= cannot override "
                      f"it for every cell: {fix}.")


def parse_shard(text: str) -> tuple[int, int]:
    """`"i/N"` (1 <= i <= N) as `(i, N)`.

    Raises:
        ConfigError: naming `--shard` and the expected form.
    """
    try:
        i, n = (int(part) for part in str(text).split("/"))
    except ValueError:
        i = n = 0
    if not 1 <= i <= n:
        raise ConfigError(f"Expected --shard to be i/N with 1 <= i <= N (e.g. 1/4). Received: "
                          f"--shard {text!r}")
    return i, n


def run_protocol(name: str, out_dir, smoke: bool = False, printer=print, report: bool = True,
                 overwrite: bool = False, jobs: int = 1, shard: tuple[int, int] | None = None,
                 population: int | None = None, progress_bar: bool = False,
                 **plan_kwargs) -> dict:
    """Run (or resume) a protocol into `out_dir` and write its report.

    Every configuration is checked before anything trains. A finished cell is reused only if
    its fingerprint (everything that determines its result) equals the planned one; otherwise
    this stops with `ei_keras.run_directory.StaleRunsError` naming the differing keys,
    unless `overwrite` (then those cells are trained again and replaced).

    Args:
        name: the recipe (`PROTOCOLS`).
        out_dir: the results folder (rerunning resumes).
        smoke: the tiny CI size.
        printer: progress output.
        report: write `report.md` and the figures at the end.
        overwrite: train stale cells again instead of stopping.
        jobs: cells trained at once, each in its own worker process pinned to its share of
            the CPUs (`ei_keras.parallel`).
        shard: `(i, N)`: only every N-th cell, starting at the i-th (1-based), so that N
            processes (a SLURM array, several machines over a shared folder) split a protocol
            with no coordination; each finished cell is a run directory the report merges.
        population: train the cells as populations (`ei_keras.population`; JAX, PyTorch) of at
            most this many members (0: every cell sharing an architecture in one); None: one
            run at a time (`jobs` at once). Cells of different widths, presets or lengths go
            to different populations.
        progress_bar: Keras' per-batch progress bar for each run when `jobs` is 1 (for a
            terminal; worker processes print one line per epoch).
        **plan_kwargs: `configs`, `sizes`, `conditions`, `overrides` (see
            `plan`).

    Returns:
        `{"ran": n, "skipped": n, "diverged": n, "report": path or None, "seconds": s}`.
    """
    from ei_keras.experiment import resolve
    from ei_keras.parallel import run_cells
    from ei_keras.run_directory import (
        check_writable_folder,
        record_plan,
        remove_stale_partials,
        sort_finished,
        stale_runs_error,
    )

    protocol = get(name)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"Expected --jobs to be an integer >= 1. Received: --jobs {jobs!r}")
    if population is not None:
        from ei_keras.population import check_backend

        check_backend()
        if isinstance(population, bool) or not isinstance(population, int) or population < 0:
            raise ConfigError("Expected --population to be an integer >= 1 (or no value: "
                              f"every cell of an architecture). Received: {population!r}")
        if jobs > 1:
            raise ConfigError("--population trains its members in one process: leave --jobs "
                              "out (or use --shard to split a protocol over processes).")
    if shard is not None:
        shard = parse_shard(f"{shard[0]}/{shard[1]}")
    out = check_writable_folder(out_dir)
    planned = plan(protocol, smoke=smoke, **plan_kwargs)
    mine = planned[shard[0] - 1::shard[1]] if shard else planned
    cells = [(out / rel, cfg, resolve(cfg)["fingerprint"]) for rel, cfg in mine]
    reusable, stale = sort_finished([(d, fp) for d, _, fp in cells])
    if stale and not overwrite:
        raise stale_runs_error(stale, fix="Choose a new --out for the new settings, or pass "
                               "--overwrite to train those cells again with them (the old runs "
                               "are replaced).")
    for path in remove_stale_partials(out):
        printer(f"[{name}] removed {path} (left by an interrupted run)")
    record_plan(out, name, protocol.title, [str(rel) for rel, _ in planned])
    start = time.time()
    skipped = len(reusable)
    todo = [(d, cfg) for d, cfg, _ in cells if d not in set(reusable)]
    where = f" (shard {shard[0]}/{shard[1]}: {len(cells)} of {len(planned)})" if shard else ""
    printer(f"[{name}] {protocol.title}: {len(cells)} runs into {out}{where}"
            + (f" ({skipped} already complete)" if skipped else "")
            + (f", {jobs} at a time" if jobs > 1 and todo else ""))
    if population is not None:
        from ei_keras.population import train_populations

        results = train_populations(todo, size=population or None, printer=printer,
                                    overwrite=overwrite, label=name)
    else:
        results = run_cells(todo, jobs=jobs, printer=printer, overwrite=overwrite,
                            label=name, progress_bar=progress_bar)
    ran = len(results)
    diverged = sum(m["status"] == "diverged" for m in results)
    report_path = None
    if report:
        from ei_keras.analysis import write_report

        report_path = write_report(out, title=protocol.title, reference=protocol.reference)
    summary = {"ran": ran, "skipped": skipped, "diverged": diverged,
               "report": str(report_path) if report_path else None,
               "seconds": round(time.time() - start, 1)}
    printer(f"[{name}] done: {ran} runs ({skipped} already complete, {diverged} diverged) in "
            f"{summary['seconds']:.0f} s; report: {report_path}")
    return summary
