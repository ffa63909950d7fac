"""``ei-keras``: train a preset, reproduce the paper's figures, report, list presets.

The command line only parses, calls the library and prints. ``--backend`` chooses the Keras
backend (it must be set before Keras is imported, so it is handled first).

Examples::

    ei-keras presets
    ei-keras train --preset inorm_gradnorm --out runs/one opt.lr_e=0.1 data.luminosity=0.5
    ei-keras reproduce fig6 --out runs/fig6 --smoke
    ei-keras report runs/fig6
    ei-keras demo
    ei-keras sweep --config tuner_configs/inorm.json --preset inorm_gradnorm --luminosity 0.75
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

BACKENDS = ("jax", "tensorflow", "torch")


def _quiet_environment():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("MPLBACKEND", "Agg")


def _select_backend(name: str | None, argv, may_reexec: bool):
    """Set ``KERAS_BACKEND``. ``import ei_keras`` (which runs before this module) has already
    imported Keras, so a different backend means starting the command again in a fresh process."""
    if name:
        current = sys.modules["keras"].backend.backend() if "keras" in sys.modules else None
        if current is not None and current != name:
            if not may_reexec:
                raise SystemExit(f"error: Keras is already running on {current!r} in this "
                                 f"process; cannot switch to --backend {name}.")
            os.environ["KERAS_BACKEND"] = name
            os.execv(sys.executable, [sys.executable, "-m", "ei_keras.cli", *argv])
        os.environ["KERAS_BACKEND"] = name
    if os.environ.get("KERAS_BACKEND") == "torch":
        import torch  # noqa: F401  (before tensorflow, which the data/tuner paths may import)
    import warnings

    warnings.filterwarnings("ignore", message=".*__array__ implementation doesn't accept.*")


def _add_common(p: argparse.ArgumentParser, default_backend: str | None = None):
    p.add_argument("--backend", choices=BACKENDS, default=default_backend,
                   help="Keras backend (default: $KERAS_BACKEND, else Keras' default)")


def _split_overrides(items: list[str]) -> list[str]:
    bad = [o for o in items if "=" not in o]
    if bad:
        raise SystemExit(
            f"error: overrides must look like key=value (e.g. opt.lr_e=0.1); got {bad}")
    return [o.lstrip("-") for o in items]


def cmd_presets(args) -> int:
    from ei_keras import zoo  # imports keras: fine, nothing runs

    for name in zoo.names():
        p = zoo.get(name)
        hp = ", ".join(f"{k}={v:g}" for k, v in p.hyperparameters.items())
        print(f"{name:18s} {p.figure:9s} {p.description}\n{'':28s}defaults: {hp}")
    return 0


def cmd_train(args) -> int:
    from ei_keras.experiment import apply_overrides, run_experiment

    cfg = {"preset": args.preset, "seed": args.seed}
    overrides = _split_overrides(args.overrides)
    if args.smoke:
        overrides = ["train.epochs=1", "data.train_subset=256", "data.test_subset=256",
                     "model.width=32", "measures.probe_size=64", *overrides]
    from ei_keras.experiment import DEFAULT_CONFIG

    cfg = apply_overrides(apply_overrides(DEFAULT_CONFIG, cfg), overrides)
    out = Path(args.out or f"runs/train/{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    metrics = run_experiment(cfg, out, overwrite=args.overwrite)
    print(json.dumps({k: metrics[k] for k in ("status", "test_accuracy", "diverged_step",
                                               "message", "backend", "wall_time_s")}, indent=2))
    print(f"run directory: {out}")
    if metrics["status"] == "diverged":
        print(f"error: {metrics['message']}", file=sys.stderr)
        return 3
    return 0


def cmd_reproduce(args) -> int:
    from ei_keras import recipes

    overrides = dict(o.split("=", 1) for o in _split_overrides(args.overrides))
    from ei_keras.experiment import _parse_value

    overrides = {k: _parse_value(v) for k, v in overrides.items()}
    lums = [float(x) for x in args.luminosity.split(",")] if args.luminosity else None
    out = Path(args.out or f"runs/{args.recipe}{'-smoke' if args.smoke else ''}")
    summary = recipes.run_protocol(args.recipe, out, smoke=args.smoke, configs=args.configs,
                                   luminosities=lums, overrides=overrides)
    if summary["report"]:
        from ei_keras.analysis import compare_to_reference, load_runs, summarize

        print(summarize(compare_to_reference(load_runs(out))))
    return 0


def cmd_report(args) -> int:
    from ei_keras.analysis import compare_to_reference, load_runs, summarize, write_report

    root = Path(args.runs)
    if not root.is_dir():
        print(f"error: {root} is not a directory of runs", file=sys.stderr)
        return 2
    path = write_report(root, out_dir=args.out, reference=args.reference)
    print(summarize(compare_to_reference(load_runs(root), reference=args.reference)))
    print(f"report: {path}")
    return 0


def cmd_demo(args) -> int:
    args.recipe = "demo"
    args.configs = None
    args.luminosity = None
    args.overrides = args.overrides or []
    args.out = args.out or ("runs/demo-smoke" if args.smoke else "runs/demo")
    start = time.time()
    rc = cmd_reproduce(args)
    print(f"demo finished in {time.time() - start:.0f} s; report and figures in {args.out}")
    return rc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ei-keras", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("presets", help="list the presets (the paper's conditions)")
    _add_common(p)
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("train", help="train one preset with one configuration")
    _add_common(p)
    p.add_argument("--preset", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run directory (default runs/train/<preset>-<time>)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--smoke", action="store_true", help="tiny size for CI")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides, e.g. opt.lr_e=0.1 data.luminosity=0.5 train.epochs=5")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("reproduce", help="run (or resume) a recipe of the paper and report")
    _add_common(p)
    p.add_argument("recipe", help="fig2 ... fig7, or demo")
    p.add_argument("--out")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--configs", type=int, help="configurations per cell (paper: 30)")
    p.add_argument("--luminosity", help="comma-separated r values (default: the recipe's)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("report", help="tables, Mann-Whitney statistics and figures from runs")
    _add_common(p)
    p.add_argument("runs", help="a directory of run directories")
    p.add_argument("--out", help="where report.md and the PNGs go (default: the runs dir)")
    p.add_argument("--reference", default="ei_ln")
    p.set_defaults(func=cmd_report)

    from ei_keras.tuning import add_sweep_parser

    add_sweep_parser(sub)

    p = sub.add_parser("demo", help="the quick reproduction of the key finding (~6 min)")
    _add_common(p, default_backend=None)
    p.add_argument("--out")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    _quiet_environment()
    may_reexec = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    # Overrides may come after options (`reproduce fig2 --configs 4 train.epochs=2`), which
    # argparse's positional matching does not allow: collect the leftovers as overrides.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any("=" not in e or e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*(args.overrides or []), *extra]
    backend = args.backend
    if args.command == "demo" and not backend and "KERAS_BACKEND" not in os.environ:
        backend = "jax"  # the fastest backend on CPU (bench/)
    _select_backend(backend, argv, may_reexec)
    try:
        return args.func(args)
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
