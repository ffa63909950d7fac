"""Roles route behaviour (`ei_keras.roles`): every E-I variable carries the role its layer
declared, and the optimizer groups, the divergence monitor and the measures follow the role,
not the variable's name or its layer's type. On every backend.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ei_keras import measures, roles, zoo
from ei_keras.divergence import RATE_OF_GROUP
from ei_keras.optimizers import RoleOptimizerMap, dale_sgd, group_optimizers

#: The role of each E-I variable by its name, written from the paper's definitions
#: independently of the layers: W_EE and the biases excitatory, W_IE/B_IE onto the
#: inhibitory populations, W_EI/B_EI from them, lambda and the fixed lateral pooling weights
#: parameters of the normalization.
EXPECTED = {"W_EE": roles.EXCITATORY, "bias": roles.EXCITATORY,
            "bias_positive": roles.EXCITATORY, "bias_negative": roles.EXCITATORY,
            "W_IE": roles.INHIBITORY_INPUT, "B_IE": roles.INHIBITORY_INPUT,
            "W_EI": roles.INHIBITORY_OUTPUT, "B_EI": roles.INHIBITORY_OUTPUT,
            "norm_weight": roles.NORMALIZATION, "lateral_weights": roles.NORMALIZATION}


@pytest.mark.parametrize("name", zoo.all_names())
def test_every_variable_of_every_preset_has_its_role(name):
    for split_bias in (False, True):
        model = zoo.build(name, width=8, depth=1, seed=0, split_bias=split_bias or None)
        variables = [v for layer in (*model.hidden, model.readout) for v in layer.variables]
        assert len(variables) >= 4  # W_EE, a bias, W_IE, W_EI at least
        for v in variables:
            assert roles.role_of(v) == EXPECTED[v.name], v.path
            # the optimizer trains it in its role's group
            opt = model.optimizer.optimizer_for(v) if v.trainable else None
            if opt is not None:
                assert opt is group_optimizers(model.optimizer)[roles.group_of(v)], v.path


class InhibitoryKernel(keras.layers.Layer):
    """A user layer whose one weight (named `kernel`, not `W_IE`) is declared to project
    onto an inhibitory population."""

    def build(self, input_shape):
        self.kernel = roles.declare(
            self.add_weight(name="kernel", shape=(int(input_shape[-1]), 2),
                            initializer="ones"), roles.INHIBITORY_INPUT)
        self.other = self.add_weight(name="W_IE", shape=(2,), initializer="ones")

    def call(self, x):
        return keras.ops.matmul(x, self.kernel) + self.other


def test_a_user_variable_declared_inhibitory_input_trains_at_lr_ie():
    layer = InhibitoryKernel()
    layer.build((None, 3))
    rates = {"lr_e": 0.5, "lr_ie": 0.25, "lr_ei": 0.125}  # powers of 2: exact in float32
    opt = dale_sgd(**rates)
    grads = [np.full((3, 2), 1.0, "float32"), np.full((2,), 1.0, "float32")]
    opt.apply([keras.ops.convert_to_tensor(g) for g in grads], [layer.kernel, layer.other])
    # w = 1 - lr * 1: exact in float32 for these rates
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.kernel), 1.0 - 0.25)
    # an undeclared variable is excitatory whatever its name (no routing by name)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.other), 1.0 - 0.5)
    assert roles.group_of(layer.kernel) == "inhibitory_input"
    assert RATE_OF_GROUP[roles.group_of(layer.kernel)] == "lr_ie"


def test_declare_refuses_an_unknown_role():
    v = keras.Variable(np.zeros(2, "float32"))
    with pytest.raises(ValueError, match="Unknown variable role 'inhibitory'"):
        roles.declare(v, "inhibitory")


def test_role_map_reads_the_path_patterns_of_older_files_as_the_same_groups():
    sgd = [keras.optimizers.SGD(r, name=n) for r, n in ((0.1, "e"), (0.2, "ie"), (0.3, "ei"))]
    legacy = RoleOptimizerMap(sgd[0], {r".*/(W_IE|B_IE)": sgd[1], r".*/(W_EI|B_EI)": sgd[2]})
    assert dict(legacy.items()) == {"inhibitory_input": sgd[1], "inhibitory_output": sgd[2]}
    with pytest.raises(ValueError, match="optimizer-map keys among the groups"):
        RoleOptimizerMap(sgd[0], {"encoder/.*": sgd[1]})


def test_measures_refuse_a_layer_that_provides_nothing_with_a_clear_message():
    layer = keras.layers.Dense(2, name="plain")
    layer.build((None, 3))
    with pytest.raises(TypeError, match="'plain' \\(Dense\\) cannot be measured.*"
                                        "raw_preactivation"):
        measures.raw_preactivation(layer, np.zeros((1, 3), "float32"))


#: The golden files whose optimizer is a `DaleSGD` (the `saved_*` ones hold a plain
#: `keras.optimizers.MultiOptimizer`, which still routes by Keras' own path patterns).
DALE_SGD_FILES = [f"{kind}_{b}" for kind in ("conv_saved", "dual_functional")
                  for b in ("tensorflow", "jax", "torch")]


@pytest.mark.parametrize("golden", DALE_SGD_FILES)
def test_files_written_before_roles_route_each_variable_as_their_path_patterns_did(golden):
    """The golden `.keras` files hold the optimizer map of before roles (keys: the path
    patterns of W_IE/B_IE and W_EI/B_EI). Loaded now, every variable goes to the group those
    patterns chose, checked with the patterns themselves (`re.fullmatch`, as Keras'
    `OptimizerMap` read them)."""
    import json
    import re
    import zipfile
    from pathlib import Path

    path = Path(__file__).parent / "data" / f"{golden}.keras"
    with zipfile.ZipFile(path) as z:
        saved = json.loads(z.read("config.json"))["compile_config"]["optimizer"]
    # the file really holds the path-pattern map
    assert r".*/(W_IE|B_IE)" in json.dumps(saved)
    model = keras.models.load_model(path, compile=False)
    opt = keras.optimizers.deserialize(saved)  # the saved optimizer config, as loading reads it
    opt.build(model.trainable_variables)
    groups = group_optimizers(opt)
    patterns = {r".*/(W_IE|B_IE)": "inhibitory_input", r".*/(W_EI|B_EI)": "inhibitory_output"}
    seen = set()
    for v in model.trainable_variables:
        want = next((g for p, g in patterns.items() if re.fullmatch(p, v.path)), "excitatory")
        assert opt.optimizer_for(v) is groups[want], v.path
        seen.add(want)
    assert seen == {"excitatory", "inhibitory_input", "inhibitory_output"}
