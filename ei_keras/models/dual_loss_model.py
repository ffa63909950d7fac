"""DualLossModel: any Keras model trained on the paper's two losses."""

from __future__ import annotations

import keras

# Private to Keras: what `keras.Model(inputs, outputs)` builds. The functional twin below
# subclasses it directly (see FunctionalDualLossModel).
from keras.src.models.functional import Functional

from ei_keras.models.trainers import DualLossTrainer


def _functional_arguments(args, kwargs) -> bool:
    """Keras' test for `Model(inputs, outputs)`-style construction."""
    return len(args) == 2 or (len(args) == 1 and "outputs" in kwargs) or \
        ("inputs" in kwargs and "outputs" in kwargs)


class DualLossModel(DualLossTrainer, keras.Model):
    """A `keras.Model` trained on a task loss and a normalization loss, each on its own
    variables (Eyono et al. 2026, Methods).

    The training step (one per backend, chosen at import) computes, from one forward pass:

    - `task_loss`: the compiled loss plus every `add_loss` term of layers that are not
      normalization layers;
    - `norm_loss`: the own losses of the layers that declare `normalization_variables`
      (`ei_keras.layers.INormDense`: `lambda * L_norm`);

    and applies the gradient of `norm_loss` to the declared normalization variables only and
    the gradient of `task_loss` to every other trainable variable, in one
    `optimizer.apply` (with `ei_keras.optimizers.dale_sgd`, each variable at its
    group's learning rate). The assignment is read from the layers' declarations, not inferred
    from stop-gradients; `loss_assignment` lists it. A variable a layer also lists in
    `shared_variables` (the isolation ablations of `ei_keras.layers.INormDense`:
    `task_trains_inhibitory`, `norm_trains_excitatory`) is trained by both losses: its
    gradient is the sum of the task loss' and the normalization loss' gradients, applied in
    the same single update by its group's optimizer at its group's rate. `History`, the
    progress bar and `CSVLogger` get `loss` (= `task_loss + norm_loss`), `task_loss` and
    `norm_loss`; `evaluate` reports the same three.

    `compile` takes two more keyword arguments, the inhibitory plasticity schedule (both
    saved in `.keras` files):

    - `inhibitory_steps=k`: after the batch's update, `k - 1` more normalization-loss
      updates of the normalization variables, each from a fresh forward pass;
    - `inhibitory_every=k`: the normalization variables learn on one batch in `k` (the
      first of each block of `k`, counted across epochs); on the others only the task
      variables move.

    The defaults (1, 1) are the paper's step.

    Use it as a Functional model, `DualLossModel(inputs, outputs)` (this returns a
    `FunctionalDualLossModel`: a subclass of both `DualLossModel` and Keras' Functional
    model, so `isinstance(model, DualLossModel)` holds), subclass it, or mix the trainer into
    a subclassed model: `class Net(ei_keras.models.DualLossTrainer, keras.Model)`.

    Args:
        *args: `inputs, outputs`, as `keras.Model` takes them (a Functional model); none
            in a subclass.
        **kwargs: `keras.Model`'s arguments (`inputs`, `outputs`, `name`, ...).

    Example:

    >>> import keras
    >>> from ei_keras.layers import EIDense, INormDense
    >>> from ei_keras.models import DualLossModel
    >>> from ei_keras.optimizers import dale_sgd
    >>> inputs = keras.Input((784,))
    >>> h = keras.layers.ReLU()(INormDense(64, error_normalization="full", seed=0)(inputs))
    >>> model = DualLossModel(inputs, EIDense(10, inhibitory_units=1, seed=1)(h))
    >>> model.compile(optimizer=dale_sgd(0.05, 0.3, 0.1), loss=keras.losses.
    ...               SparseCategoricalCrossentropy(from_logits=True))

    Reference:
        Eyono, Levenstein, Ghosh, Cornford, Richards (2026), "Inhibitory normalization of error
        signals improves learning in neural circuits".
    """

    def __new__(cls, *args, **kwargs):
        if cls is DualLossModel and _functional_arguments(args, kwargs):
            # An instance of DualLossModel: Python then calls its __init__ with these arguments.
            return keras.Model.__new__(FunctionalDualLossModel, *args, **kwargs)
        return super().__new__(cls, *args, **kwargs)


class _FunctionalInit(Functional):
    """Builds the Functional graph as `keras.Model.__init__` does for `Model(inputs,
    outputs)` (Keras' trainer state, then the graph), without the step that rewrites the
    bases of the instance's class and of every class above it to insert `Functional`: that
    would turn `DualLossModel` itself into a Functional subclass, for good, and break its
    subclassed use. The functional twin has `Functional` among its bases already."""

    def __init__(self, inputs, outputs, name=None, **kwargs):
        # The backend's Trainer.__init__ (the class after keras.Model in the MRO).
        super(keras.Model, self).__init__()
        Functional.__init__(self, inputs, outputs, name=name, **kwargs)


@keras.saving.register_keras_serializable(package="ei_keras", name="DualLossModel")
class FunctionalDualLossModel(DualLossModel, _FunctionalInit):
    """What `DualLossModel(inputs, outputs)` returns: a Functional model with the dual-loss
    step, an instance of `DualLossModel` (see `DualLossModel`)."""

    def __init__(self, inputs, outputs, name=None, **kwargs):
        super().__init__(inputs, outputs, name=name, **kwargs)
