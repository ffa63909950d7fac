"""EINetwork: the paper's multilayer perceptron of Dale's-principle layers."""

from __future__ import annotations

import keras
from keras import ops

from ei_keras.layers import EDense, EIDense, INormDense, _dale
from ei_keras.ops import error_normalization as _errnorm

HIDDEN_LAYERS = ("ei", "e", "inorm")
_EAGER_TORCH = keras.backend.backend() == "torch"


def portable_compile_config(config):
    """A copy of a compile config with backend-specific optimizer classes made public."""
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
NORMALIZATIONS = (None, "layer_norm")


@keras.saving.register_keras_serializable(package="ei_keras")
class EINetwork(keras.Model):
    """``input -> [hidden layer -> (LayerNorm) -> ReLU] x depth -> EIDense(10, ni=1) logits``.

    Training is Keras' own ``fit``. Why no hand-written per-backend ``train_step``: the
    stop-gradients of :class:`~ei_keras.layers.INormDense` make the task loss and the
    normalization loss (added with ``add_loss``) reach disjoint sets of variables, so the
    gradient of their sum *is*, variable by variable, the gradient of the loss SPEC section 3
    assigns to it; the per-group learning rates come from one
    ``keras.optimizers.MultiOptimizer`` (:func:`ei_keras.optimizers.dale_sgd`). Keras' trainers
    (TF ``GradientTape``, JAX stateless ``value_and_grad``, torch autograd) then give each
    backend its own idiomatic step, with no second optimizer to thread through JAX's state.
    ``tests/test_training.py`` proves the identity: after one step every variable moved by
    exactly ``-lr_group * grad(assigned loss)`` computed independently of the trainer.

    :meth:`compute_loss` also tracks ``task_loss`` and ``norm_loss`` separately.

    Args:
        hidden_units: widths of the hidden layers (paper: two layers).
        hidden_layer: ``"ei"`` (:class:`EIDense`), ``"e"`` (:class:`EDense`) or ``"inorm"``
            (:class:`INormDense`).
        normalization: ``None`` or ``"layer_norm"`` (``keras.layers.LayerNormalization`` without
            gain or bias, before the ReLU); not used with ``"inorm"``.
        error_normalization: I-Norm layers' error-normalization mode.
        subtractive_only: I-Norm layers without the divisive population.
        norm_weight: ``lambda`` of the I-Norm normalization loss.
        trainable_ei: whether the hidden I-Norm layers' ``W_EI``/``B_EI`` learn.
        output_units: classes (10 for Fashion-MNIST).
        init_distribution: ``"exponential"`` or ``"lognormal"``.
        epsilon: LayerNorm / I-Norm epsilon.
        seed: seed of the NumPy initialisation: the same seed gives the same weights on every
            backend.
        **kwargs: ``keras.Model`` arguments (``name``, ...).

    Example:

    >>> import numpy as np
    >>> from ei_keras.models import EINetwork
    >>> net = EINetwork(hidden_units=(32, 32), hidden_layer="ei", normalization="layer_norm",
    ...                 seed=0)
    >>> net(np.random.rand(4, 784).astype("float32")).shape
    (4, 10)
    """

    def __init__(
        self,
        hidden_units=(234, 234),
        hidden_layer: str = "ei",
        normalization: str | None = None,
        error_normalization: str = "none",
        subtractive_only: bool = False,
        norm_weight: float = 0.01,
        trainable_ei: bool = True,
        output_units: int = 10,
        init_distribution: str = "exponential",
        epsilon: float = 1e-5,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if hidden_layer not in HIDDEN_LAYERS:
            raise ValueError(
                f"Expected `hidden_layer` to be one of {HIDDEN_LAYERS}. "
                f"Received: hidden_layer={hidden_layer!r}"
            )
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"Expected `normalization` to be one of {NORMALIZATIONS}. "
                f"Received: normalization={normalization!r}"
            )
        if hidden_layer == "inorm" and normalization is not None:
            raise ValueError("I-Norm layers normalize themselves: use normalization=None with "
                             "hidden_layer='inorm'.")
        if hidden_layer != "inorm" and error_normalization not in (None, "none"):
            raise ValueError("`error_normalization` applies to hidden_layer='inorm' only. "
                             f"Received: error_normalization={error_normalization!r} with "
                             f"hidden_layer={hidden_layer!r}.")
        self.hidden_units = tuple(_dale.check_units(u, "hidden_units") for u in hidden_units)
        if not self.hidden_units:
            raise ValueError("Expected at least one hidden layer. Received: hidden_units=()")
        self.hidden_layer = hidden_layer
        self.normalization = normalization
        self.error_normalization = _errnorm.validate_mode(error_normalization)
        self.subtractive_only = bool(subtractive_only)
        self.norm_weight = float(norm_weight)
        self.trainable_ei = bool(trainable_ei)
        self.output_units = _dale.check_units(output_units, "output_units")
        self.init_distribution = init_distribution
        self.epsilon = float(epsilon)
        self.seed = seed
        base = _dale._seed_or_draw(seed)

        self.hidden = []
        self.norms = []
        for i, units in enumerate(self.hidden_units):
            name = f"hidden_{i + 1}"
            layer_seed = base + 1000 * (i + 1)
            if hidden_layer == "ei":
                layer = EIDense(units, init_distribution=init_distribution, seed=layer_seed,
                                name=name)
            elif hidden_layer == "e":
                layer = EDense(units, init_distribution=init_distribution, seed=layer_seed,
                               name=name)
            else:
                layer = INormDense(
                    units, error_normalization=self.error_normalization,
                    subtractive_only=subtractive_only, norm_weight=norm_weight,
                    trainable_ei=trainable_ei, epsilon=epsilon,
                    init_distribution=init_distribution, seed=layer_seed, name=name,
                )
            self.hidden.append(layer)
            self.norms.append(
                keras.layers.LayerNormalization(center=False, scale=False, epsilon=epsilon,
                                                name=f"layer_norm_{i + 1}")
                if normalization == "layer_norm" else None
            )
        self.readout = EIDense(self.output_units, inhibitory_units=1,
                               init_distribution=init_distribution, seed=base, name="readout")
        self.task_loss_tracker = keras.metrics.Mean(name="task_loss")
        self.norm_loss_tracker = keras.metrics.Mean(name="norm_loss")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer, norm in zip(self.hidden, self.norms):
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
            if norm is not None:
                norm.build(shape)
        self.readout.build(shape)
        self.built = True

    # -- forward ----------------------------------------------------------------------------
    def hidden_preactivations(self, inputs, training: bool = False) -> list:
        """The input of each hidden ReLU (after LayerNorm / I-Norm division), one per layer."""
        x = inputs
        out = []
        for layer, norm in zip(self.hidden, self.norms):
            z = layer(x)
            if norm is not None:
                z = norm(z, training=training)
            out.append(z)
            x = ops.relu(z)
        return out

    def call(self, inputs, training: bool = False):
        x = inputs
        # Eager PyTorch pays Keras' Layer.__call__ bookkeeping (call context, autocast scope,
        # input checks) for every sub-layer on every step; TF and JAX pay it once while tracing.
        # After the first layer (whose __call__ checks the input), the sub-layers are all built
        # by build() and run in the model's float32 policy, so on torch their call() runs
        # directly: same numbers, same add_loss bookkeeping (the model's __call__ clears the
        # sub-layers' losses), 1.1-1.2x faster I-Norm steps (bench/profile_torch.py, patch C).
        direct = _EAGER_TORCH and self.dtype_policy.name == "float32"
        for i, (layer, norm) in enumerate(zip(self.hidden, self.norms)):
            z = layer.call(x) if direct and i else layer(x)
            if norm is not None:
                z = norm.call(z) if direct else norm(z, training=training)
            x = ops.relu(z)
        return self.readout.call(x) if direct else self.readout(x)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_units)

    # -- losses -----------------------------------------------------------------------------
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras' loss (compiled task loss + ``add_loss`` terms), tracking both parts."""
        total = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                     training=training)
        extra = self.losses
        # Added one by one: a stack + sum costs more ops per step on eager torch.
        norm = ops.zeros((), "float32")
        for i, v in enumerate(extra):
            norm = ops.cast(v, "float32") if i == 0 else norm + ops.cast(v, "float32")
        self.task_loss_tracker.update_state(ops.cast(total, "float32") - norm)
        self.norm_loss_tracker.update_state(norm)
        return total

    # -- config -----------------------------------------------------------------------------
    def compile_from_config(self, config):
        """Restore the compile configuration of a ``.keras`` file saved under any backend.

        Keras records backend-specific optimizer classes (e.g. the torch backend's fused SGD,
        ``keras.src.backend.torch.optimizers.torch_sgd``); loaded under another backend such an
        optimizer cannot update that backend's variables. Those entries are mapped back to the
        public ``keras.optimizers`` class of the same name, which resolves to the running
        backend's implementation; learning rates, momenta and clipping are unchanged.
        ``jit_compile`` is reset to ``"auto"`` for the same reason.
        """
        # Keras saves the resolved jit_compile (True under JAX, False under TF-on-CPU/torch);
        # "auto" lets the loading backend choose (a JAX file would otherwise torch.compile).
        return super().compile_from_config({**portable_compile_config(config),
                                            "jit_compile": "auto"})

    def get_config(self):
        return {
            "name": self.name,
            "hidden_units": list(self.hidden_units),
            "hidden_layer": self.hidden_layer,
            "normalization": self.normalization,
            "error_normalization": self.error_normalization,
            "subtractive_only": self.subtractive_only,
            "norm_weight": self.norm_weight,
            "trainable_ei": self.trainable_ei,
            "output_units": self.output_units,
            "init_distribution": self.init_distribution,
            "epsilon": self.epsilon,
            "seed": self.seed,
        }
