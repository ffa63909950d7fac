"""`ei-keras`: train a preset, reproduce the paper's figures, report, list presets.

The command line only parses, calls the library and prints. The Keras backend is `--backend`,
else `$KERAS_BACKEND`, else Keras' configured default (keras.json; `demo`: jax). A backend
named with `--backend` or `$KERAS_BACKEND` must be installed; a default one that is not is
replaced by the first installed of jax, torch, tensorflow, with a `note:` line on stderr
(`ei_keras.backend_choice`). The `ei-keras` script (`ei_keras_cli`) imports no Keras
until the backend is set and the verb needs it: `--help`, `--version`, `presets` and
`report` run without it.

Examples:

    ei-keras presets
    ei-keras train --preset inorm_gradnorm --out runs/one opt.lr_e=0.1 data.luminosity=0.5
    ei-keras reproduce fig6 --out runs/fig6 --smoke
    ei-keras --backend jax reproduce fig5 --population 64
    ei-keras report runs/fig6
    ei-keras demo
    ei-keras sweep --config tuner_configs/inorm.json --preset inorm_gradnorm --luminosity 0.75

Exit codes: 0 done; 1 a worker process of `--jobs` died (killed from outside, e.g. by the
kernel's OOM killer; finished runs are kept); 2 invalid input or an unusable location (one
`error:` line, nothing written); 3 the run diverged: a non-finite loss or weight stopped it
(`train`; its run directory is written; a finite excursion past the bounds is a `warning:`
line, exit 0); 4/5 a distributed sweep gave up waiting (`sweep --help`); 6 out of memory (an
allocation refused: NumPy's MemoryError, a backend's out-of-memory error; nothing
half-written is left); 130 interrupted (Ctrl-C or SIGTERM; finished runs are kept, nothing
half-written is left).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from ei_keras.backend_choice import BACKENDS, BackendError, choose

EXIT_WORKER_DIED = 1
EXIT_INVALID = 2
EXIT_DIVERGED = 3
EXIT_OUT_OF_MEMORY = 6
EXIT_INTERRUPTED = 130
#: The condition `report` compares the others with unless `--reference` names one.
DEFAULT_REFERENCE = "ei_ln"

#: The verbs that run the research harness (the `research` extra: KerasTuner, scipy,
#: matplotlib); `presets` needs only the library.
RESEARCH_VERBS = ("train", "reproduce", "report", "sweep", "demo")


class _Parser(argparse.ArgumentParser):
    """argparse with one `error:` line (and a pointer to --help) instead of a usage dump."""

    def error(self, message):
        self.exit(EXIT_INVALID, f"error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


class _CountOrAll(argparse.Action):
    """An option with an optional count (`--population [P]`): a `key=value` right after it is
    an override, not the count (`--population train.epochs=3`: all members, then the
    override), kept in order with the others (`main`)."""

    def __call__(self, parser, namespace, value, option_string=None):
        if isinstance(value, str) and "=" in value:
            namespace._overrides_after_options = [
                *getattr(namespace, "_overrides_after_options", []), value]
            value = self.const
        elif isinstance(value, str):
            try:
                value = _positive_int(value)
            except argparse.ArgumentTypeError as e:
                raise argparse.ArgumentError(self, str(e)) from None
        setattr(namespace, self.dest, value)


def _shard(text: str) -> tuple[int, int]:
    from ei_keras.config import ConfigError
    from ei_keras.recipes import parse_shard

    try:
        return parse_shard(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(f"expected i/N with 1 <= i <= N, got {text!r}") from e


def _add_jobs(p: argparse.ArgumentParser, default: int | str = 1) -> None:
    p.add_argument("--jobs", type=_jobs, default=default,
                   help="cells trained at once, each in a worker process pinned to its share "
                   f"of the CPUs, or auto: one per CPU (default {default})")


def _jobs(text: str) -> int:
    if text == "auto":
        from ei_keras.parallel import cpus

        return len(cpus())
    return _positive_int(text)


def _add_draw_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=_non_negative_int, default=0,
                   help="draw seed of the configurations: each value gives a new, independent "
                   "set of learning-rate draws and run seeds (default 0)")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _numbers(text: str, ok, expected: str) -> list[float]:
    out = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            value = float("nan")
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {part.strip()!r}")
        if value in out:
            raise argparse.ArgumentTypeError(f"{value:g} is given twice in {text!r}: give each "
                                             "size once")
        out.append(value)
    return out


def _names(text: str) -> list[str]:
    """A comma-separated list of names (`--conditions`), blanks dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _luminosities(text: str) -> list[float]:
    return _numbers(text, lambda v: 0.0 <= v <= 1.0,
                    "comma-separated numbers in [0, 1] (e.g. 0,0.75)")


def _contrasts(text: str) -> list[float]:
    return _numbers(text, lambda v: 1.0 <= v < float("inf"),
                    "comma-separated numbers >= 1 (e.g. 2,4)")


#: The `reproduce` option that gives the sizes of each size key.
SIZE_OPTIONS = {"data.luminosity": ("--luminosity", "luminosity"),
                 "data.contrast": ("--contrast", "contrast")}


def _quiet_environment():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("MPLBACKEND", "Agg")


def _select_backend(args, argv, may_reexec: bool) -> bool:
    """Set `KERAS_BACKEND` to the chosen backend and register ei_keras' Keras objects; False
    (after one `error:` line) when no usable backend was named or installed.

    Started as the `ei-keras` script, Keras is not imported yet. Started as `python -m
    ei_keras.cli` (or by a caller that imported ei_keras), Keras already runs on some backend:
    a different one means starting the command again in a fresh process (`may_reexec`) or
    refusing (a caller's own process)."""
    default = getattr(args, "default_backend", None)
    current = sys.modules["keras"].backend.backend() if "keras" in sys.modules else None
    if current is not None and not args.backend and default is None:
        name = current  # KERAS_BACKEND or Keras' default, already imported: nothing to choose
    else:
        try:
            name, note = choose(args.backend, default=default)
        except BackendError as e:
            print(f"error: {e}", file=sys.stderr)
            return False
        if note:
            print(f"note: {note}", file=sys.stderr)
    if current is not None and current != name:
        if not may_reexec:
            print(f"error: Keras is already running on {current!r} in this process; cannot "
                  f"switch to {name!r}: set KERAS_BACKEND={name} before importing ei_keras",
                  file=sys.stderr)
            return False
        os.environ["KERAS_BACKEND"] = name
        os.execv(sys.executable, [sys.executable, "-m", "ei_keras.cli", *argv])
    os.environ["KERAS_BACKEND"] = name
    if name == "torch":
        import torch  # noqa: F401  (before tensorflow, which the data/tuner paths may import)
    warnings.filterwarnings("ignore", message=".*__array__ implementation doesn't accept.*")
    import ei_keras

    ei_keras._register()
    return True


def _add_common(p: argparse.ArgumentParser, default_backend: str | None = None,
                uses_keras: bool = True):
    default = default_backend or "Keras' default"
    p.add_argument("--backend", choices=BACKENDS, help=(
        f"Keras backend (default: $KERAS_BACKEND, else {default}, or the first installed of "
        f"{', '.join(BACKENDS)} where {default_backend or 'that default'} is not installed)"
        if uses_keras else "unused: this command needs no Keras"))
    p.set_defaults(default_backend=default_backend, uses_keras=uses_keras)


def _on_terminal() -> bool:
    """Whether standard output is a terminal: then `train` and `reproduce` show Keras'
    per-batch progress bar (`task_loss`, `norm_loss` and the other metrics); in a log file
    or a pipe, one line per epoch."""
    return hasattr(sys.stdout, "isatty") and sys.stdout.isatty()


def cmd_presets(args) -> int:
    from ei_keras import zoo  # the preset table imports no Keras and no framework

    for name in zoo.all_names():
        p = zoo.get(name)
        hp = ", ".join(f"{k}={v:g}" for k, v in p.hyperparameters.items())
        print(f"{name:20s} {p.figure:9s} {p.description}\n{'':30s}defaults: {hp}")
    return 0


def cmd_train(args) -> int:
    from ei_keras.config import SMOKE_OVERRIDES, RunConfig
    from ei_keras.experiment import run_experiment

    cfg = RunConfig().with_overrides({"preset": args.preset, "seed": args.seed,
                                      **(SMOKE_OVERRIDES if args.smoke else {})})
    cfg = cfg.with_overrides(args.overrides)
    out = Path(args.out or f"runs/train/{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    metrics = run_experiment(cfg, out, overwrite=args.overwrite, progress_bar=_on_terminal())
    print(json.dumps({k: metrics[k] for k in ("status", "test_accuracy", "diverged_step",
                                               "message", "backend", "wall_time_s")}, indent=2))
    print(f"run directory: {out}")
    if metrics.get("model_error"):
        print(f"error: {metrics['model_error']} (in {out})", file=sys.stderr)
        return EXIT_INVALID
    if metrics["status"] == "diverged":
        print(f"error: {metrics['message']}", file=sys.stderr)
        return EXIT_DIVERGED
    if metrics.get("stability"):  # past the bounds but finite: trained on, scored (exit 0)
        print(f"warning: {metrics['stability']['message']}", file=sys.stderr)
    return 0


def _recipe_sizes(args) -> list[float] | None:
    """The shift sizes given with the option of the recipe's size key (--luminosity for the
    luminosity recipes, --contrast for the contrast ones); an error names the right one."""
    from ei_keras import recipes
    from ei_keras.config import ConfigError

    key = recipes.get(args.recipe).family.size_key
    for other, (option, attr) in SIZE_OPTIONS.items():
        if other != key and getattr(args, attr, None):
            raise ConfigError(f"Recipe {args.recipe} sweeps {key}, not {other}: give its sizes "
                              f"with {SIZE_OPTIONS[key][0]} instead of {option}.")
    return getattr(args, SIZE_OPTIONS[key][1], None)


def cmd_reproduce(args) -> int:
    from ei_keras import recipes

    sizes = _recipe_sizes(args)
    out = Path(args.out or f"runs/{args.recipe}{'-smoke' if args.smoke else ''}")
    summary = recipes.run_protocol(args.recipe, out, smoke=args.smoke, configs=args.configs,
                                   sizes=sizes, overrides=args.overrides,
                                   conditions=getattr(args, "conditions", None),
                                   overwrite=args.overwrite, jobs=args.jobs,
                                   shard=args.shard, seed=args.seed,
                                   population=getattr(args, "population", None),
                                   progress_bar=_on_terminal())
    if summary["report"]:
        from ei_keras.analysis import compare_to_reference, headline_lines, load_runs, summarize

        runs = load_runs(out)
        reference = recipes.get(args.recipe).reference  # the report's (rnn: rnn_ei_ln)
        print(summarize(compare_to_reference(runs, reference=reference)))
        print("\n".join(["Paired and unpaired, per condition:",
                          *headline_lines(runs, reference=reference)]))
    return 0


def cmd_report(args) -> int:
    from ei_keras.analysis import scan_runs

    root = Path(args.runs)
    if not root.is_dir():
        print(f"error: {root} is not a folder of run directories: give the --out of a "
              "train, reproduce or sweep command", file=sys.stderr)
        return EXIT_INVALID
    with warnings.catch_warnings():  # corrupt runs are listed in the report and below
        warnings.simplefilter("ignore", RuntimeWarning)
        return _report(args, root, scan_runs(root))


def _report(args, root, scan) -> int:
    from ei_keras.analysis import compare_to_reference, summarize, write_report
    from ei_keras.analysis.runs import sweep_tuner
    from ei_keras.run_directory import check_writable_folder

    if not scan.runs:
        skipped = "".join(f"; skipped {path}: {why}" for path, why in scan.corrupt[:3])
        print(f"error: no finished runs under {root} ({len(scan.incomplete)} incomplete, "
              f"{len(scan.corrupt)} corrupt{skipped}): give the --out of a train, reproduce "
              "or sweep command", file=sys.stderr)
        return EXIT_INVALID
    for path, why in scan.corrupt:  # left out of the statistics, never counted at chance
        print(f"note: skipped corrupt run {path}: {why}", file=sys.stderr)
    tuners: dict[tuple, set] = {}
    for run in scan.runs:
        tuners.setdefault((run.condition, run.shift_size), set()).add(sweep_tuner(run))
    for (condition, size), kinds in tuners.items():
        kinds = sorted(kinds - {None})
        if len(kinds) > 1:
            print(f"error: {root} holds the trials of several sweeps ({', '.join(kinds)}) of "
                  f"{condition} at size {size}, which a report would pool as one condition: "
                  "report each tuner's sweep folder on its own", file=sys.stderr)
            return EXIT_INVALID
    known = sorted({run.condition for run in scan.runs})
    reference = args.reference or DEFAULT_REFERENCE
    if reference not in known:
        listed = f"the conditions of {root} are {', '.join(known)}"
        if args.reference:
            print(f"error: --reference {args.reference} is not a condition of these runs: "
                  f"{listed}; pass one of them", file=sys.stderr)
            return EXIT_INVALID
        print(f"note: no runs of the default reference {reference} under {root}, so there is "
              f"nothing to compare with: {listed}; pass --reference <one of them>",
              file=sys.stderr)
    check_writable_folder(args.out or root, "--out" if args.out else "the runs folder")
    path = write_report(root, out_dir=args.out, reference=reference)
    print(summarize(compare_to_reference(scan.runs, reference=reference)))
    print(f"report: {path}")
    return 0


def cmd_demo(args) -> int:
    args.recipe = "demo"
    args.configs = None
    args.luminosity = args.contrast = None
    args.shard = None
    args.conditions = None  # every condition of the demo (reproduce's --conditions)
    args.overrides = args.overrides or []
    args.out = args.out or ("runs/demo-smoke" if args.smoke else "runs/demo")
    start = time.time()
    rc = cmd_reproduce(args)
    print(f"demo finished in {time.time() - start:.0f} s; report and figures in {args.out}")
    return rc


def build_parser() -> argparse.ArgumentParser:
    from ei_keras.config import describe_keys

    parser = _Parser(prog="ei-keras", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"ei-keras {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    keys_epilog = "configuration keys (key=value overrides):\n" + describe_keys()

    p = sub.add_parser("presets", help="list the presets (the paper's conditions)")
    _add_common(p, uses_keras=False)
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("train", help="train one preset with one configuration",
                       epilog=keys_epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(p)
    p.add_argument("--preset", required=True, help="zoo preset (ei-keras presets lists them)")
    p.add_argument("--seed", type=int, default=0, help="initialisation and data seed (default 0)")
    p.add_argument("--out", help="run directory (default runs/train/<preset>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--smoke", action="store_true", help="tiny size for CI")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides, e.g. opt.lr_e=0.1 data.luminosity=0.5 train.epochs=5")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("reproduce", help="run (or resume) a recipe of the paper and report",
                       epilog=keys_epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(p)
    from ei_keras.recipes import PROTOCOLS  # imports no framework

    p.add_argument("recipe", help=", ".join(PROTOCOLS))
    p.add_argument("--out", help="results folder (default runs/<recipe>); rerunning resumes")
    p.add_argument("--smoke", action="store_true", help="tiny size for CI")
    p.add_argument("--configs", type=_positive_int, help="configurations per cell (paper: 30)")
    p.add_argument("--luminosity", type=_luminosities,
                   help="comma-separated r values in [0, 1] (default: the recipe's)")
    p.add_argument("--contrast", type=_contrasts,
                   help="comma-separated s values >= 1, for the contrast recipes (default: "
                   "the recipe's)")
    p.add_argument("--conditions", type=_names,
                   help="comma-separated conditions of the recipe to train (default: all of "
                   "them), e.g. the paper's length for two: fig5 --conditions "
                   "ei_ln,inorm_gradnorm train.epochs=50")
    p.add_argument("--overwrite", action="store_true",
                   help="train again (and replace) finished cells made with other settings")
    _add_jobs(p)
    _add_draw_seed(p)
    p.add_argument("--shard", type=_shard, metavar="i/N",
                   help="run only every N-th cell, from the i-th (1-based): N processes or "
                   "machines sharing one --out split a protocol with no coordination")
    p.add_argument("--population", action=_CountOrAll, nargs="?", const=0, metavar="P",
                   help="train cells that share an architecture (preset, width, length) "
                   "together, P at a time (default: all of them), in one compiled program "
                   "(JAX, PyTorch); each writes the same run directory as a sequential run")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("report", help="tables, Mann-Whitney statistics and figures from runs")
    _add_common(p, uses_keras=False)
    p.add_argument("runs", help="a directory of run directories")
    p.add_argument("--out", help="where report.md and the PNGs go (default: the runs dir)")
    p.add_argument("--reference",
                   help=f"condition the others are compared with (default {DEFAULT_REFERENCE}, "
                   "the paper's LN)")
    p.set_defaults(func=cmd_report)

    from ei_keras.tuning import add_sweep_parser

    add_sweep_parser(sub)

    # The time measured in the README (make demo): 2 min 29 s on a fresh clone, 160-212 s per
    # draw while other work shared the 2 cores.
    p = sub.add_parser("demo", help="the quick reproduction of the key finding (2.5-3.5 min "
                       "on 2 CPU cores with JAX, README)")
    _add_common(p, default_backend="jax")  # the fastest backend on CPU (bench/)
    p.add_argument("--out", help="results folder (default runs/demo)")
    p.add_argument("--smoke", action="store_true", help="tiny size for CI")
    p.add_argument("--overwrite", action="store_true",
                   help="train again (and replace) finished cells made with other settings")
    _add_jobs(p, default="auto")
    _add_draw_seed(p)
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
    extra = [*vars(args).pop("_overrides_after_options", []), *extra]
    if extra:
        if not hasattr(args, "overrides") or any("=" not in e or e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*(args.overrides or []), *extra]
    if args.command in RESEARCH_VERBS:
        from ei_keras.extras import message, missing

        absent = missing("research")
        if absent:  # before any backend import or file is touched
            print(f"error: {message('research', f'ei-keras {args.command}', absent)}",
                  file=sys.stderr)
            return EXIT_INVALID
    if getattr(args, "uses_keras", True) and not _select_backend(args, argv, may_reexec):
        return EXIT_INVALID
    from ei_keras import interrupt
    from ei_keras.config import ConfigError
    from ei_keras.extras import MissingExtraError
    from ei_keras.parallel import WorkerDiedError
    from ei_keras.run_directory import RunDirectoryError, is_disk_full

    try:
        with interrupt.sigterm_stops():  # clean up like Ctrl-C
            return args.func(args)
    # ValueError includes ei_keras.data's DataFileError (not imported here: it imports Keras).
    except (ConfigError, RunDirectoryError, FileNotFoundError, FileExistsError,
            ValueError, MissingExtraError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INVALID
    except OSError as e:
        why = "the disk is full" if is_disk_full(e) else (e.strerror or str(e))
        print(f"error: {why} ({getattr(e, 'filename', None) or 'while writing'}); nothing "
              "half-written was kept: free space or choose another --out, then rerun",
              file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("error: interrupted; finished runs are kept and nothing half-written is left: "
              "rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except WorkerDiedError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_WORKER_DIED
    except Exception as e:
        if not is_out_of_memory(e):
            raise
        print(f"error: out of memory ({_first_line(e)}): the model, a batch or --jobs is too "
              "large for this machine; lower model.width, data.batch_size or --jobs and rerun "
              "(finished runs are kept, nothing half-written is left)", file=sys.stderr)
        return EXIT_OUT_OF_MEMORY


#: How each backend (and NumPy) says that an allocation was refused: exception class names,
#: and texts in the message of a generic RuntimeError (torch's CPU allocator; a JAX error
#: passed on from a --jobs worker as text).
_OOM_TYPES = ("MemoryError", "ResourceExhaustedError", "OutOfMemoryError")
_OOM_TEXTS = ("RESOURCE_EXHAUSTED", "can't allocate memory", "CUDA out of memory")


def is_out_of_memory(error: BaseException | None) -> bool:
    """Whether `error` (or an exception it was raised from) is an out-of-memory error of
    NumPy, TensorFlow (`ResourceExhaustedError`), JAX (`RESOURCE_EXHAUSTED`) or torch
    (`OutOfMemoryError`, or its CPU allocator's "can't allocate memory")."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        names = {cls.__name__ for cls in type(error).__mro__}
        if names & set(_OOM_TYPES) or any(t in str(error) for t in _OOM_TEXTS):
            return True
        error = error.__cause__ or error.__context__
    return False


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 160 else text[:157] + "..."


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ei-keras")
    except PackageNotFoundError:
        return "unknown"


def leave_if_interrupted(code: int) -> None:
    """End the process at once with `code` when it is `EXIT_INTERRUPTED` (after flushing the
    output): the interpreter's teardown is skipped, because a backend stopped in the middle
    of a computation can crash there (JAX: SIGSEGV at exit in about one SIGTERM'd run in
    three on a loaded machine), turning the documented 130 into -11. The run's cleanup has
    already happened. For the process's own entry points only, never inside a caller's
    Python (`main` returns the code there)."""
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    _code = main()
    leave_if_interrupted(_code)
    sys.exit(_code)
