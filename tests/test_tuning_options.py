"""The options of issue 23 in the KerasTuner search spaces: `gradnorm_on` (GradNorm on `y`
or `z`) and `norm_weight_schedule` (lambda annealing), on every backend.

1. `tuner_configs/<family>_options.json` are generated (`python -m ei_keras.tuning.space
   tuner_configs`), hold the family's space plus both choices, and list only the presets
   where both apply.
2. A trial's choices reach the run: its configuration and the built network.
3. A hypermodel drops an option its preset has no use for; a sweep refuses an option space
   for such a preset.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras_tuner
import pytest

from ei_keras import zoo
from ei_keras.tuning import EIHyperModel
from ei_keras.tuning import space as space_module

pytestmark = [pytest.mark.filterwarnings("ignore:currentThread.*:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:getName.*:DeprecationWarning")]

CONFIGS = Path(__file__).resolve().parents[1] / "tuner_configs"


@pytest.mark.parametrize("name", space_module.OPTION_SPACES)
def test_option_spaces_are_generated_and_list_the_presets_they_apply_to(name):
    committed = json.loads((CONFIGS / f"{name}.json").read_text())
    assert committed == space_module.tuner_config(name), (
        "tuner_configs/ is stale: run `python -m ei_keras.tuning.space tuner_configs`")
    family = space_module.OPTION_SPACES[name]
    base = json.loads((CONFIGS / f"{family}.json").read_text())["hyperparameters"]
    hp = space_module.load_search_space(CONFIGS / f"{name}.json")
    config = hp.get_config()
    by_name = {e["config"]["name"]: e for e in config["space"]}
    assert {e["config"]["name"] for e in base["space"]} | set(space_module.OPTION_CHOICES) == \
        set(by_name)
    for option, values in space_module.OPTION_CHOICES.items():
        assert by_name[option]["class_name"] == "Choice"
        assert by_name[option]["config"]["values"] == list(values)
    gradnorm = [p for p in space_module.family_presets(family)
                if zoo.get(p).model.get("error_normalization") in ("full", "decorrelate")]
    assert committed["presets"] == gradnorm and gradnorm


def option_hp(gradnorm_on, schedule):
    hp = space_module.load_search_space(CONFIGS / "inorm_options.json")
    hp.values.update({"gradnorm_on": gradnorm_on, "norm_weight_schedule": schedule,
                      "width": 16})
    return hp


def test_a_trials_choices_reach_the_run_and_the_network(tmp_path):
    hypermodel = EIHyperModel("inorm_gradnorm", 0.75, tmp_path, smoke=True)
    cfg = hypermodel.run_config(option_hp("z", "cosine"), "3")
    assert cfg.model.gradnorm_on == "z" and cfg.loss.norm_weight_schedule == "cosine"
    model = hypermodel.build(option_hp("z", "cosine"))
    assert [layer.gradnorm_on for layer in model.hidden] == ["z", "z"]
    cfg = hypermodel.run_config(option_hp("y", "none"), "3")  # "none": constant lambda
    assert cfg.model.gradnorm_on == "y" and cfg.loss.norm_weight_schedule is None


def test_an_option_a_preset_has_no_use_for_is_dropped_or_refused(tmp_path):
    from ei_keras.tuning import run_sweep

    hp = keras_tuner.HyperParameters()
    hp.Choice("gradnorm_on", ["y", "z"], default="z")
    hp.Choice("norm_weight_schedule", ["none", "linear"], default="linear")
    assert "gradnorm_on" not in EIHyperModel("inorm", 0.75, tmp_path).values(hp)
    assert EIHyperModel("inorm", 0.75, tmp_path).values(hp)["norm_weight_schedule"] == "linear"
    values = EIHyperModel("ei_ln", 0.75, tmp_path).values(hp)
    assert "gradnorm_on" not in values and "norm_weight_schedule" not in values
    with pytest.raises(ValueError, match="is for presets"):
        run_sweep(CONFIGS / "inorm_options.json", preset="inorm", trials=1,
                  out_dir=tmp_path / "x", smoke=True)

