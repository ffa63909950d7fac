"""Every recipe's --smoke run, on real data, under the current backend: it runs end to end and
writes the same files as a full run (config.json, history.csv, metrics.json per cell, and the
report with its figures). Each recipe trains into its own folder, so every test trains its
cells whatever ran before it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ei_keras import recipes, search_space, zoo
from ei_keras.run_directory import shift_dir

TINY = {"model.width": 8, "data.train_subset": 64, "data.test_subset": 64,
        "measures.probe_size": 32}
RUN_FILES = {"config.json", "history.csv", "metrics.json"}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("recipes")


def test_full_plans_match_the_paper_protocol():
    for name, protocol in recipes.PROTOCOLS.items():
        cells = recipes.plan(protocol)
        assert len(cells) == len(protocol.conditions) * len(protocol.sizes) * \
            protocol.configs, name
        assert all(cfg.train.epochs == protocol.epochs for _, cfg in cells), name
        # every cell shows its data with the protocol's shift, at a size of its folder's name
        for rel, cfg in cells:
            assert cfg.data.shift == protocol.shift, rel
            assert rel.parent.name == shift_dir(protocol.shift, cfg.shift_size), rel
        assert sorted({cfg.shift_size for _, cfg in cells}) == sorted(protocol.sizes), name
        if protocol.sweep:  # configuration i draws its learning rates from the search space
            for rel, cfg in cells:
                i = int(rel.name.removeprefix("cfg"))
                drawn = search_space.sample(cfg.preset, i)
                assert (cfg.opt.lr_e, cfg.opt.lr_ie, cfg.opt.lr_ei) == (
                    drawn["lr_e"], drawn["lr_ie"], drawn["lr_ei"]), rel
                low, high, _ = search_space.space_for(cfg.preset)["lr_e"]
                assert low <= cfg.opt.lr_e <= high and cfg.seed == i
    # a variant is its preset with fixed overrides, paired with it configuration by configuration
    cells = dict(recipes.plan(recipes.get("timescales"), configs=2))
    for i in range(2):
        base = cells[Path("inorm") / "r0.75" / f"cfg{i:02d}"]
        fast = cells[Path("inorm_k16") / "r0.75" / f"cfg{i:02d}"]
        assert (fast.preset, fast.condition, fast.train.inhibitory_steps) == (
            "inorm", "inorm_k16", 16)
        assert base.train.inhibitory_steps == 1 and base.condition is None
        assert (fast.opt, fast.seed) == (base.opt, base.seed)
    fig6 = recipes.get("fig6")
    assert fig6.configs == 30 and fig6.epochs == 50 and fig6.sizes == (0, .25, .5, .75)
    signal = dict(recipes.plan(recipes.get("contrast_signal"), configs=1))
    cfg = signal[Path("inorm_sub") / "s4" / "cfg00"]
    assert (cfg.data.shift, cfg.data.contrast, cfg.shift_size) == ("contrast_signal", 4.0, 4.0)
    assert set(recipes.get("contrast").conditions) == {
        "ei", "ei_ln", "inorm_sub", "inorm", "inorm_gradnorm"}
    conv = dict(recipes.plan(recipes.get("conv"), configs=1))  # the conv I-Norm space
    cfg = conv[Path("conv_inorm") / "r0.75" / "cfg00"]
    assert cfg.opt.lr_e == pytest.approx(search_space.sample("inorm", 0)["lr_e"] / 10, rel=1e-12)
    with pytest.raises(ValueError, match="Known recipes"):
        recipes.get("fig9")


def test_ablations_pair_each_variant_with_its_preset():
    protocol = recipes.get("ablations")
    assert (protocol.configs, protocol.epochs, protocol.sizes) == (12, 3, (0.0, 0.75))
    cells = dict(recipes.plan(protocol, configs=2))
    expect = {"inorm_gradnorm_z": ("inorm_gradnorm", "model.gradnorm_on", "z"),
              "inorm_noclip": ("inorm", "opt.inhibitory_clipnorm", 0.0),
              "inorm_gradnorm_noclip": ("inorm_gradnorm", "opt.inhibitory_clipnorm", 0.0),
              "ei_eg": ("ei", "opt.exponentiated", True),
              "ei_ln_eg": ("ei_ln", "opt.exponentiated", True),
              "inorm_gradnorm_eg": ("inorm_gradnorm", "opt.exponentiated", True),
              **{f"{p}_lambda{lam:g}": (p, "loss.norm_weight", lam)
                 for p in ("inorm", "inorm_gradnorm") for lam in (1e-4, 1e-3, 0.1, 1.0)}}
    assert set(expect) <= set(protocol.conditions)
    for condition, (preset, key, value) in expect.items():
        for i in range(2):
            cfg = cells[Path(condition) / "r0.75" / f"cfg{i:02d}"]
            base = cells[Path(preset) / "r0.75" / f"cfg{i:02d}"]
            assert cfg.preset == preset and cfg.get(key) == value, condition
            # paired: same seed and learning rates as the preset's configuration i
            assert (cfg.seed, cfg.opt.lr_e, cfg.opt.lr_ie, cfg.opt.lr_ei) == \
                (base.seed, base.opt.lr_e, base.opt.lr_ie, base.opt.lr_ei), condition


@pytest.mark.parametrize("name", list(recipes.PROTOCOLS))
def test_smoke_run_writes_what_a_full_run_writes(name, results, capsys):
    """`ei-keras reproduce <recipe> --smoke` for every recipe, the contrast ones too, at one
    size (the largest of its smoke sizes) and smaller still (TINY)."""
    from ei_keras import cli

    out = results / name
    protocol = recipes.get(name)
    size = max(protocol.smoke["sizes"])
    option = cli.SIZE_OPTIONS[protocol.family.size_key][0]  # --luminosity or --contrast
    argv = ["reproduce", name, "--smoke", option, f"{size:g}", "--out", str(out),
            *(f"{k}={v}" for k, v in TINY.items())]
    assert cli.main(argv) == 0
    assert f"[{name}] done: {len(protocol.conditions)} runs (0 already complete" in \
        capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert f"Reference condition: **{protocol.reference}**." in report  # conv: conv_ei_ln
    classes = 20 if protocol.shift == "contrast_signal" else 10  # class x {low, high}
    recurrent_runs = 0
    for condition in protocol.conditions:
        cell = out / condition / shift_dir(protocol.shift, size) / "cfg00"
        assert {p.name for p in cell.iterdir()} == RUN_FILES, cell
        metrics = json.loads((cell / "metrics.json").read_text())
        assert metrics["status"] in ("ok", "diverged") and metrics["condition"] == condition
        assert (metrics["shift"], metrics["shift_size"]) == (protocol.shift, size)
        assert metrics["num_classes"] == classes
        assert condition in report
        # the recurrent weights' spectrum, at the start and the end, for recurrent runs only
        recurrent = zoo.get(metrics["preset"]).network == "rnn"
        assert ("spectrum" in metrics) == recurrent, condition
        if recurrent:
            assert 0.0 <= metrics["spectrum"]["svd_entropy_init"] <= 1.0
            recurrent_runs += 1
    if recurrent_runs:  # the report's spectrum table, and the README block rendered from it
        from ei_keras.analysis import load_runs
        from ei_keras.analysis.readme import protocol_results
        from ei_keras.analysis.report import SPECTRUM_CAPTION, format_spectrum_table

        table = format_spectrum_table(load_runs(out), reference=protocol.reference)
        assert f"## Recurrent spectrum\n\n{SPECTRUM_CAPTION}\n\n{table}\n" in report
        assert table.count("(n=1)") == recurrent_runs
        block = protocol_results(out.parent, out.name, protocol.reference,
                                 f"ei-keras reproduce {name}")
        assert block.endswith(f"{SPECTRUM_CAPTION}\n\n{table}\n")
        assert f"Mann-Whitney U against {protocol.reference}" in block
        assert all(condition in block for condition in protocol.conditions)
    assert protocol.family.label(size) in report  # "r = 0.75", "contrast s = 4"
    figure = f"accuracy_by_{protocol.family.size_key.split('.')[1]}.png"
    assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.rglob(".*partial*")]


def test_cli_takes_overrides_after_options(results, capsys):
    from ei_keras import cli

    out = results / "cli-fig4"
    argv = ["reproduce", "fig4", "--smoke", "--luminosity", "0.75", "--out", str(out),
            *(f"{k}={v}" for k, v in TINY.items()), "opt.lr_e=0.02"]
    assert cli.main(argv) == 0
    assert "fig4" in capsys.readouterr().out
    for condition in recipes.get("fig4").conditions:
        config = json.loads((out / condition / "r0.75" / "cfg00" / "config.json").read_text())
        assert config["model"]["width"] == 8 and config["data"]["train_subset"] == 64
        assert config["opt"]["lr_e"] == 0.02  # the override wins over the sampled rate
        assert config["resolved"]["hyperparameters"]["lr_e"] == 0.02
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["reproduce", "fig7", "--smoke", "--out", str(results / "x"), "--bogus"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --bogus" in \
        capsys.readouterr().err


def test_shards_split_a_protocol_and_the_report_merges_them(results):
    out = results / "sharded"
    first = recipes.run_protocol("fig4", out, smoke=True, sizes=[0.75], overrides=TINY,
                                 shard=(1, 2), printer=lambda *a: None)
    assert first["ran"] == 1
    report = (out / "report.md").read_text()
    assert "1 of 2 planned cells have no finished run" in report
    second = recipes.run_protocol("fig4", out, smoke=True, sizes=[0.75],
                                  overrides=TINY, shard=(2, 2), printer=lambda *a: None)
    assert second["ran"] == 1 and second["skipped"] == 0  # no cell ran twice
    assert "Missing cells" not in (out / "report.md").read_text()
    whole = recipes.run_protocol("fig4", out, smoke=True, sizes=[0.75],
                                 overrides=TINY, printer=lambda *a: None)
    assert whole["ran"] == 0 and whole["skipped"] == 2


def test_jobs_train_in_worker_processes_with_the_same_results(results):
    """Two worker processes give the runs one process gives (float32 rounding aside: each
    worker runs its backend on one thread)."""
    kwargs = {"smoke": True, "sizes": [0.75], "overrides": TINY,
              "printer": lambda *a: None}
    serial = recipes.run_protocol("fig2", results / "serial", **kwargs)
    parallel = recipes.run_protocol("fig2", results / "parallel", jobs=2, **kwargs)
    assert serial["ran"] == parallel["ran"] == 3
    for condition in recipes.get("fig2").conditions:
        a, b = (json.loads((results / name / condition / "r0.75" / "cfg00" /
                            "metrics.json").read_text()) for name in ("serial", "parallel"))
        assert a["status"] == b["status"] == "ok"
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-4)
        assert not [p for p in (results / "parallel").rglob(".*partial*")]
