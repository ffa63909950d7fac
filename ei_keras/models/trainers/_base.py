"""The backend-independent half of the dual-loss trainer (private).

The paper trains two losses at once (Eyono et al. 2026, Methods): the task loss trains the
excitatory variables (and every variable of networks without learned normalization); each
I-Norm layer's normalization loss trains that layer's inhibitory variables only. Layers declare
which variables their own losses train through a `normalization_variables` attribute
(`ei_keras.layers.INormDense` does); everything here reads that declaration, so the
assignment of each gradient to each variable is explicit and inspectable
(`DualLossTrainerBase.loss_assignment`), whatever stop-gradients a layer uses.

A layer may also declare `shared_variables` (the isolation ablations of `INormDense`:
`task_trains_inhibitory`, `norm_trains_excitatory`): variables that both losses train. Such
a variable's gradient is the sum of the task loss' and the normalization loss' gradients, and
it gets one update per step, by its group's optimizer at its group's rate (clipping, momentum
and constraints act on the sum).

Each backend's file (`jax.py`, `tensorflow.py`, `torch.py`) subclasses
`DualLossTrainerBase` with its own `train_step` / `test_step`; `__init__.py` picks
one once, at import.
"""

from __future__ import annotations

import keras
from keras import ops

# Keras' MonitorCallback (EarlyStopping, ModelCheckpoint, ReduceLROnPlateau) infers in
# mode="auto" whether a monitored metric should go down from the ``_direction`` of metrics
# grouped in a MetricsList (or the compiled metrics); metrics listed on their own are not
# searched. Grouping the two loss trackers is what lets ``monitor="val_task_loss"`` work
# without ``mode="min"``. Private to Keras: the test suite checks the callbacks on every
# backend.
from keras.src.trainers.compile_utils import MetricsList

#: `compile` arguments of the inhibitory plasticity schedules (saved in `.keras` files).
SCHEDULE_ARGUMENTS = ("inhibitory_steps", "inhibitory_every")
COUNTER_NAME = "inhibitory_schedule_step"


def portable_compile_config(config):
    """A copy of a compile config with backend-specific optimizer classes made public.

    Keras records backend-specific optimizer classes (e.g. the torch backend's fused SGD,
    `keras.src.backend.torch.optimizers.torch_sgd`); loaded under another backend such an
    optimizer cannot update that backend's variables. Those entries are mapped back to the
    public `keras.optimizers` class of the same name, which resolves to the running backend's
    implementation; learning rates, momenta and clipping are unchanged.
    """
    if isinstance(config, dict):
        out = {k: portable_compile_config(v) for k, v in config.items()}
        module = out.get("module")
        if isinstance(module, str) and module.startswith("keras.src.backend.") and \
                ".optimizers" in module:
            out["module"] = "keras.optimizers"
            out["registered_name"] = None
        return out
    if isinstance(config, list):
        return [portable_compile_config(v) for v in config]
    return config


def _check_schedule(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Expected `{name}` to be an integer >= 1. Received: {name}={value!r}")
    return int(value)


def _supports_subset_updates(optimizer) -> bool:
    """Whether `optimizer.apply` accepts a subset of the variables it was built with.

    Keras' single optimizers do; `keras.optimizers.MultiOptimizer.apply` insists on the full
    list, so only `ei_keras.optimizers.DaleSGD` (which routes subsets) qualifies among
    multi-optimizers."""
    from ei_keras.optimizers import DaleSGD

    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        # Mixed precision: the loss-scale optimizer passes any subset on to the one it wraps.
        optimizer = optimizer.inner_optimizer
    if isinstance(optimizer, DaleSGD):
        return True
    return not isinstance(optimizer, keras.optimizers.MultiOptimizer)


class _Assignment:
    """The cached assignment (a plain object: Keras would track a list of layers or variables
    assigned to a built model as new state)."""

    __slots__ = ("key", "trainable", "by_task", "by_norm", "layers", "penalized")

    def __init__(self, key, trainable, by_task, by_norm, layers, penalized):
        self.key, self.trainable, self.layers = key, trainable, layers
        self.by_task, self.by_norm, self.penalized = by_task, by_norm, penalized


def select(values, flags):
    """The entries of `values` (aligned with the trainable variables) whose flag is set."""
    return [v for v, f in zip(values, flags) if f]


def combine(task_grads, norm_grads, by_task, by_norm):
    """One gradient per trainable variable from the task-loss gradients (aligned with
    `select(trainable, by_task)`) and the normalization-loss gradients (aligned with
    `select(trainable, by_norm)`): a variable both losses train gets their sum."""
    task_it, norm_it = iter(task_grads), iter(norm_grads)
    out = []
    for t, n in zip(by_task, by_norm):
        if t and n:
            out.append(next(task_it) + next(norm_it))
        else:
            out.append(next(task_it) if t else next(norm_it))
    return out


class _LossTrackers(MetricsList):
    """`task_loss` and `norm_loss` as one group of `model.metrics` (see the import of
    `MetricsList`); both are losses, so they should go down."""

    def __init__(self, trackers):
        super().__init__(list(trackers), name="dual_loss_trackers")
        for tracker in trackers:
            tracker._direction = "down"

    def result(self):
        return {m.name: m.result() for m in self.metrics}


class DualLossTrainerBase:
    """What every backend's dual-loss trainer shares: compile arguments, the loss assignment,
    the two loss values, the `task_loss` / `norm_loss` trackers, saving.

    `ei_keras.models.DualLossTrainer` is this class plus the running backend's `train_step`
    and `test_step`; mix it into a subclassed `keras.Model`, before `keras.Model` in the bases.

    Example:

    ```python
    import keras
    import numpy as np
    from ei_keras.layers import EIDense, INormDense
    from ei_keras.models import DualLossTrainer
    from ei_keras.optimizers import dale_sgd


    class Net(DualLossTrainer, keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inorm = INormDense(16, error_normalization="full", seed=0)
            self.readout = EIDense(3, seed=1)

        def call(self, x):
            return self.readout(keras.ops.relu(self.inorm(x)))


    net = Net()
    net.compile(optimizer=dale_sgd(0.05, 0.3, 0.1),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).random((32, 20), dtype="float32")
    history = net.fit(x, np.arange(32) % 3, batch_size=8, epochs=1, verbose=0)
    sorted(history.history)  # ['loss', 'norm_loss', 'task_loss']
    ```
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.task_loss_tracker = keras.metrics.Mean(name="task_loss")
        self.norm_loss_tracker = keras.metrics.Mean(name="norm_loss")
        self.dual_loss_trackers = _LossTrackers([self.task_loss_tracker,
                                                 self.norm_loss_tracker])
        self.inhibitory_steps = 1
        self.inhibitory_every = 1
        # The schedule's position is state: saved with the weights and threaded through JAX's
        # stateless step like any other non-trainable variable. Made here, before the model
        # is built (Keras locks a built subclassed model's state).
        self.inhibitory_counter = keras.Variable(0, dtype="int32", trainable=False,
                                                 name=COUNTER_NAME)
        self._assignment_cache = None

    @property
    def metrics(self):
        """Keras' metrics, with `task_loss` and `norm_loss` listed as one group (so that
        callbacks in `mode="auto"` know both go down); their results are reported as
        before, `task_loss` and `norm_loss`."""
        group = getattr(self, "dual_loss_trackers", None)
        metrics = super().metrics
        if group is None:
            return metrics
        own = (group, *group.metrics)
        out = []
        for m in metrics:
            if m is group.metrics[0]:
                out.append(group)
            elif all(m is not t for t in own):
                out.append(m)
        return out

    # -- compile ------------------------------------------------------------------------------
    def compile(self, *args, inhibitory_steps: int = 1, inhibitory_every: int = 1, **kwargs):
        """`keras.Model.compile` plus the inhibitory plasticity schedule.

        Args:
            *args: `keras.Model.compile` arguments (`optimizer`, `loss`, ...).
            inhibitory_steps: normalization-loss updates per batch: after the joint update of
                the batch, `inhibitory_steps - 1` more updates of the normalization
                variables, each from a fresh forward pass on the same batch. Default 1 (the
                paper's step).
            inhibitory_every: the normalization variables learn on one batch in
                `inhibitory_every` (the first of each block, counted across epochs); on the
                other batches only the task loss' variables move. Default 1 (every batch).
            **kwargs: `keras.Model.compile` keyword arguments.
        """
        self.inhibitory_steps = _check_schedule("inhibitory_steps", inhibitory_steps)
        self.inhibitory_every = _check_schedule("inhibitory_every", inhibitory_every)
        super().compile(*args, **kwargs)
        if (self.inhibitory_steps > 1 or self.inhibitory_every > 1) and \
                not _supports_subset_updates(self.optimizer):
            raise ValueError(
                "inhibitory_steps > 1 or inhibitory_every > 1 update a subset of the variables, "
                "which keras.optimizers.MultiOptimizer cannot do. Use "
                "ei_keras.optimizers.dale_sgd (per-group learning rates) or a single optimizer. "
                f"Received: optimizer={type(self.optimizer).__name__}")
        self._assignment_cache = None

    def get_compile_config(self):
        config = super().get_compile_config()
        if config:
            config = {**config, "inhibitory_steps": self.inhibitory_steps,
                      "inhibitory_every": self.inhibitory_every}
        return config

    def compile_from_config(self, config):
        """Compile from a `.keras` file saved under any backend.

        Backend-specific optimizer classes are mapped to their public `keras.optimizers`
        names (`portable_compile_config`) and `jit_compile` goes back to `"auto"`:
        Keras saves the resolved value (True under JAX, False under TF-on-CPU and torch), which
        would otherwise make a JAX file `torch.compile` under torch.
        """
        config = keras.saving.deserialize_keras_object(
            {**portable_compile_config(config), "jit_compile": "auto"})
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def load_own_variables(self, store):
        """Also loads files written before the schedule counter existed (it stays at 0)."""
        if len(store.keys()) == 0:
            return
        super().load_own_variables(store)

    # -- the assignment of variables to losses -------------------------------------------------
    def normalization_layers(self) -> list:
        """The sub-layers that declare `normalization_variables` (their own losses are the
        normalization loss)."""
        return [layer for layer in self._flatten_layers(include_self=False)
                if hasattr(layer, "normalization_variables")]

    def _assignment(self):
        """`(trainable, by_task, by_norm)`: the trainable variables and, for each, whether
        the task loss trains it and whether the normalization loss does (both for a layer's
        `shared_variables`; by default exactly one). Cached per compile."""
        trainable = self.trainable_variables
        key = tuple(id(v) for v in trainable)
        cache = self._assignment_cache
        if cache is None or cache.key != key:
            layers = self.normalization_layers()
            norm_ids = {id(v) for layer in layers for v in layer.normalization_variables}
            shared_ids = {id(v) for layer in layers
                          for v in getattr(layer, "shared_variables", ())}
            by_norm = tuple(id(v) in norm_ids for v in trainable)
            by_task = tuple(id(v) not in norm_ids or id(v) in shared_ids for v in trainable)
            # The penalties that join the normalization loss: those of the variables it
            # alone trains (a shared variable's penalty stays in the task loss: its
            # gradient is the sum of both losses' either way).
            penalized = tuple(tuple(v for v in layer.normalization_variables
                                    if id(v) not in shared_ids) for layer in layers)
            cache = self._assignment_cache = _Assignment(key, tuple(trainable), by_task,
                                                         by_norm, tuple(layers), penalized)
        return list(cache.trainable), cache.by_task, cache.by_norm

    def loss_assignment(self) -> dict[str, list[str]]:
        """Which loss trains which variable: `{"task": [paths], "normalization": [paths]}`
        (a variable of a layer's `shared_variables` is in both lists).

        Example:

        >>> from ei_keras import zoo
        >>> net = zoo.build("inorm_gradnorm", width=16, seed=0)
        >>> sorted(p.rsplit("/", 1)[-1] for p in net.loss_assignment()["normalization"])
        ['B_EI', 'B_EI', 'B_IE', 'B_IE', 'W_EI', 'W_EI', 'W_IE', 'W_IE']
        """
        trainable, by_task, by_norm = self._assignment()
        return {"task": [v.path for v in select(trainable, by_task)],
                "normalization": [v.path for v in select(trainable, by_norm)]}

    # -- the two losses -----------------------------------------------------------------------
    def normalization_terms(self) -> list:
        """The terms of the normalization loss of the last forward pass: the `add_loss`
        terms of the layers that declare `normalization_variables` (and of their sub-layers),
        plus the regularization penalties of the variables this loss alone trains. The
        penalties of every other variable (e.g. a `kernel_regularizer` on `W_EE`) stay
        in the task loss.

        Call it after the forward pass, where the layers hold their losses (inside the same
        `keras.StatelessScope` on JAX)."""
        cache = self._assignment_cache
        if cache is None:
            self._assignment()
            cache = self._assignment_cache
        terms = []
        for layer, penalized in zip(cache.layers, cache.penalized):
            # Layer.losses without its weight-regularization part (Keras' own split).
            terms += [loss for sub in layer._flatten_layers(include_self=True)
                      for loss in sub._get_own_losses()]
            terms += [v.regularizer(v.value) for v in penalized
                      if getattr(v, "regularizer", None) is not None]
        return terms

    def normalization_loss(self):
        """The sum of `normalization_terms` (float32)."""
        norm = None
        for loss in self.normalization_terms():
            loss = ops.cast(loss, "float32")
            norm = loss if norm is None else norm + loss
        return ops.zeros((), "float32") if norm is None else norm

    def compute_dual_losses(self, x, y, y_pred, sample_weight=None, training=True):
        """`(loss, task_loss, norm_loss)` after a forward pass.

        `loss` is Keras' loss (`compute_loss`: the compiled loss plus every `add_loss`
        term), `norm_loss` the normalization layers' own losses and `task_loss` the rest.
        """
        total = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                  training=training)
        norm = self.normalization_loss()
        task = ops.cast(total, "float32") - norm
        return total, task, norm

    def _scale_loss(self, loss):
        """`loss` times the optimizer's loss scale, as Keras' trainers scale the loss before
        differentiating it: under `mixed_float16` Keras wraps the optimizer in a
        `keras.optimizers.LossScaleOptimizer`, which divides every gradient by its (dynamic)
        scale, so each loss that gives gradients (the task loss and the normalization loss)
        must be scaled by the same factor (also `loss_scale_factor` of any optimizer).
        Reads the scale variable: on JAX call it inside a `keras.StatelessScope` that maps
        the optimizer's variables."""
        optimizer = getattr(self, "optimizer", None)
        return loss if optimizer is None else optimizer.scale_loss(loss)

    def _schedule_is_default(self) -> bool:
        return self.inhibitory_steps == 1 and self.inhibitory_every == 1

    @staticmethod
    def _batch_size(x):
        return ops.shape(next(t for t in keras.tree.flatten(x) if t is not None))[0]

    def _update_loss_trackers(self, x, total, task, norm):
        """Keras' `loss` tracker plus `task_loss` and `norm_loss` (batch-weighted)."""
        n = self._batch_size(x)
        if self._loss_tracker is not None:
            self._loss_tracker.update_state(total, sample_weight=n)
        self.task_loss_tracker.update_state(task, sample_weight=n)
        self.norm_loss_tracker.update_state(norm, sample_weight=n)

    def _sublayer(self, layer, *args, **kwargs):
        """Call a built sub-layer (backends may skip `Layer.__call__` bookkeeping)."""
        return layer(*args, **kwargs)
