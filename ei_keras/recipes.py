"""The paper's experiments as protocols: which presets, luminosities and configurations to run.

A protocol runs every cell ``(condition, luminosity, configuration)`` with
:func:`ei_keras.experiment.run_experiment` into ``<out>/<condition>/r<lum>/cfg<i>``, skipping
cells whose run directory is already complete (a rerun resumes), then writes the report with
:func:`ei_keras.analysis.write_report`. Configuration ``i`` uses seed ``i`` and, when the
protocol sweeps, learning rates drawn from :mod:`ei_keras.search_space` (the paper's protocol:
random configurations per condition, compared with Mann-Whitney U against LN).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

LUMINOSITIES = (0.0, 0.25, 0.5, 0.75)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One experiment of the paper.

    Attributes:
        name: recipe name (``fig2`` ...).
        title: what it reproduces.
        conditions: preset names (the reference ``ei_ln`` included where compared).
        luminosities: shift half-widths ``r``.
        configs: configurations per cell (paper: 30).
        epochs: epochs per run (paper: 50).
        sweep: draw learning rates per configuration (else the presets' defaults).
        overrides: fixed dotted overrides of every run.
        smoke: the tiny CI size: dotted overrides plus ``configs``/``luminosities``.
        expected: the picture the paper shows.
    """

    name: str
    title: str
    conditions: tuple
    luminosities: tuple = LUMINOSITIES
    configs: int = 30
    epochs: int = 50
    sweep: bool = True
    overrides: dict = dataclasses.field(default_factory=dict)
    smoke: dict = dataclasses.field(default_factory=dict)
    expected: str = ""


_SMOKE = {"configs": 1, "luminosities": (0.0, 0.75),
          "overrides": {"train.epochs": 1, "data.train_subset": 256, "data.test_subset": 256,
                        "model.width": 32, "measures.probe_size": 64}}

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
    Protocol("defaults", "The presets' defaults: every I-Norm preset vs LN, 3 seeds, 3 epochs "
             "(issue: I-Norm networks that train reliably out of the box)",
             ("ei_ln", "inorm", "inorm_sub", "inorm_gradnorm", "inorm_center", "inorm_lateral",
              "inorm_scale", "inorm_decorrelate"), luminosities=(0.0, 0.75), configs=3,
             epochs=3, sweep=False, overrides={"model.width": 234}, smoke=_SMOKE,
             expected="no run diverges; gradnorm/center/lateral within 2 points of ei_ln"),
    Protocol("demo", "Quick demo: the key finding at r = 0.75 in about 5 minutes",
             ("ei", "ei_ln", "inorm", "inorm_gradnorm"), luminosities=(0.75,), configs=8,
             epochs=2, overrides={"model.width": 234},
             smoke=_SMOKE,
             expected="LN > EI; I-Norm + GradNorm ≈ LN; I-Norm without GradNorm below LN"),
]}


def get(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"Unknown recipe {name!r}. Known recipes: {list(PROTOCOLS)}")
    return PROTOCOLS[name]


def _lum_dir(r: float) -> str:
    return f"r{r:g}"


def plan(protocol: Protocol, smoke: bool = False, configs: int | None = None,
         luminosities=None, conditions=None, overrides: dict | None = None) -> list[tuple]:
    """The cells of a protocol: ``[(relative run dir, config dict), ...]``."""
    from ei_keras import search_space
    from ei_keras.experiment import DEFAULT_CONFIG, apply_overrides

    n = configs or (protocol.smoke.get("configs", 1) if smoke else protocol.configs)
    lums = luminosities or (protocol.smoke.get("luminosities", protocol.luminosities) if smoke
                            else protocol.luminosities)
    fixed = {"train.epochs": protocol.epochs, **protocol.overrides,
             **(protocol.smoke.get("overrides", {}) if smoke else {}), **(overrides or {})}
    cells = []
    for condition in conditions or protocol.conditions:
        for r in lums:
            for i in range(n):
                cfg = apply_overrides(DEFAULT_CONFIG, {"preset": condition, "seed": i,
                                                       "data.luminosity": float(r)})
                if protocol.sweep:
                    drawn = search_space.sample(condition, i)
                    cfg = apply_overrides(cfg, {f"opt.{k}": v for k, v in drawn.items()})
                cfg = apply_overrides(cfg, fixed)
                cells.append((Path(condition) / _lum_dir(r) / f"cfg{i:02d}", cfg))
    return cells


def run_protocol(name: str, out_dir, smoke: bool = False, printer=print, report: bool = True,
                 **plan_kwargs) -> dict:
    """Run (or resume) a protocol into ``out_dir`` and write its report.

    Returns:
        ``{"ran": n, "skipped": n, "diverged": n, "report": path or None, "seconds": s}``.
    """
    from ei_keras.experiment import run_experiment

    protocol = get(name)
    out = Path(out_dir)
    cells = plan(protocol, smoke=smoke, **plan_kwargs)
    start = time.time()
    ran = skipped = diverged = 0
    printer(f"[{name}] {protocol.title}: {len(cells)} runs into {out}")
    for k, (rel, cfg) in enumerate(cells, start=1):
        run_dir = out / rel
        if (run_dir / "metrics.json").exists():
            skipped += 1
            continue
        elapsed = time.time() - start
        eta = "" if not ran else f", ~{elapsed / ran * (len(cells) - k + 1):.0f} s left"
        printer(f"[{name}] run {k}/{len(cells)}{eta}")
        metrics = run_experiment(cfg, run_dir, printer=printer)
        ran += 1
        diverged += metrics["status"] == "diverged"
    report_path = None
    if report:
        from ei_keras.analysis import write_report

        report_path = write_report(out, title=protocol.title)
    summary = {"ran": ran, "skipped": skipped, "diverged": diverged,
               "report": str(report_path) if report_path else None,
               "seconds": round(time.time() - start, 1)}
    printer(f"[{name}] done: {ran} runs ({skipped} already complete, {diverged} diverged) in "
            f"{summary['seconds']:.0f} s; report: {report_path}")
    return summary
