"""INormDense: learned inhibitory normalization (subtractive + divisive populations)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ei_keras import roles
from ei_keras.initializers import divisive_svd_init
from ei_keras.layers._dale import DaleDense, dense_t
from ei_keras.layers.error_normalization import add_lateral_weights
from ei_keras.ops import error_normalization as _errnorm


@keras.saving.register_keras_serializable(package="ei_keras")
class INormDense(DaleDense):
    """Dale's-principle dense layer normalized by two learned inhibitory populations.

    With `xs = stop_gradient(x)` (inhibition sends no task error back to `x`):

    - subtractive: `s = (xs W_IE^T) W_EI^T`
    - divisive: `delta = sqrt(((xs B_IE^T)^2) B_EI^T + eps)` (`delta = 1` if
      `subtractive_only`)
    - forward: `z = (x W_EE^T + b - sg(s)) / sg(delta)`, then error normalization
      (`error_normalization` mode, identity forward), then `activation`.

    The layer adds its normalization loss with `add_loss`; its gradient reaches only the
    inhibitory weights (`W_IE`, `W_EI`, `B_IE`, `B_EI`). With `e = sg(x W_EE^T + b)`
    and `zh = (e - s) / delta`:
    `L_norm = norm_weight * mean_batch[(mean_j zh)^2 + (var_j zh - 1)^2]`
    (subtractive-only: `norm_weight * mean_batch[(mean_j zh)^2]`). The task loss reaches only
    `W_EE`, `b` and the input.

    Initialisation: `W_EE`, `W_IE`, `W_EI` as `EIDense`; `B_IE = diag(S) V^T`
    from the SVD of `W = W_EE - W_EI W_IE` and `B_EI = 1/ne`, so that at initialisation
    `delta^2 = mean_j (W x)_j^2 + eps` exactly (needs `d >= units`). `B_IE` may be
    negative (the paper notes the divisive path breaks Dale's law); the others stay >= 0.

    Takes `keras.layers.Dense`'s arguments (as `EIDense`; `inhibitory_*` also act on
    `B_IE` and `B_EI`) and `(..., d)` inputs, normalizing over the units at every leading
    position. A regularizer on an inhibitory weight joins the normalization loss (the loss
    that trains it under `ei_keras.models.DualLossModel`); `activity_regularizer` is
    not accepted (the output is normalized by construction, and no inhibitory weight could
    act on its penalty: put it on the next layer).

    Isolation ablations (off by default: the paper's isolation above). The paper code
    declares `task_opt_inhib` and `homeo_opt_exc` and never reads them; these are those
    ablations as ours:

    - `task_trains_inhibitory=True`: the forward pass uses `z = (e - s) / delta`
      without the stop-gradients on `s` and `delta`, so the task loss also reaches `W_IE`,
      `W_EI`, `B_IE`, `B_EI` (through `s` and `delta`; their input stays `xs`, so the error
      sent back to `x` is unchanged).
    - `norm_trains_excitatory=True`: `L_norm` reads `e = xs W_EE^T + b` without the
      stop-gradient, so this layer's normalization loss also reaches its `W_EE` and bias
      (not `x`: the loss stays local to the layer).

    A variable both losses reach is listed in `normalization_variables` and in
    `shared_variables`; `ei_keras.models.DualLossModel` then trains it on the sum of the
    two losses' gradients (see there).

    Args:
        units: excitatory units `ne`.
        activation: Keras activation applied after error normalization (default: none).
        use_bias: as in `keras.layers.Dense`, in Dense's order
            (as `EIDense`). `activity_regularizer` (Dense's place between them) must
            stay `None`.
        kernel_initializer: as `use_bias` says.
        bias_initializer: as `use_bias` says.
        kernel_regularizer: as `use_bias` says.
        bias_regularizer: as `use_bias` says.
        kernel_constraint: as `use_bias` says.
        bias_constraint: as `use_bias` says.
        inhibitory_units: keyword-only, `ni` of the subtractive population; default
            `max(1, units // 10)`.
        error_normalization: keyword-only, `"none"`, `"full"` (GradNorm), `"center"`,
            `"scale"`, `"decorrelate"` or `"lateral"`.
        gradnorm_on: keyword-only, `"y"` (default: `full` is exactly LayerNorm's backward)
            or `"z"` (the paper code's formula, `z` in place of `y` in
            `full`/`decorrelate`; `ei_keras.ops.error_normalization`).
        subtractive_only: keyword-only, no divisive population (Fig. 3b).
        norm_weight: keyword-only, `lambda`, the weight of the normalization loss (paper:
            0.01).
        trainable_ei: keyword-only, whether `W_EI` and `B_EI` learn (the reference code
            freezes them).
        task_trains_inhibitory: keyword-only, the task loss also trains the inhibitory
            weights (isolation ablation; the paper code's `task_opt_inhib`, never wired
            there). Default False.
        norm_trains_excitatory: keyword-only, the normalization loss also trains `W_EE` and
            the bias (isolation ablation; the paper code's `homeo_opt_exc`, never wired
            there). Default False.
        epsilon: keyword-only, added under the square root of `delta` and in error
            normalization.
        init_distribution: keyword-only, `"exponential"` or `"lognormal"`.
        seed: keyword-only, NumPy seed of the initialisation and of the lateral weights.
        inhibitory_regularizer: keyword-only, regularizer of `W_IE`, `W_EI`, `B_IE`,
            `B_EI` (its penalty joins the normalization loss).
        inhibitory_constraint: keyword-only, constraint of the same weights, applied before
            Dale's sign (`B_IE` keeps its free sign).
        **kwargs: base `keras.layers.Layer` arguments.

    Attributes:
        kernel: read-only, the affine part before the normalization,
            `(W_EE - W_EI W_IE)^T` in Dense's `(d, units)` orientation:
            `x @ layer.kernel + layer.bias` is the numerator `e - s` of `z` (the
            divisive `delta` and error normalization act after it).

    Input shape:
        N-D tensor with shape `(batch_size, ..., d)`, like `keras.layers.Dense`'s input:
        every leading position is a sample.

    Output shape:
        N-D tensor with shape `(batch_size, ..., units)`; the normalization runs over the
        last axis at every leading position.

    Call arguments:
        - `inputs`: the input tensor. Every call adds the layer's normalization loss
          (`norm_weight * L_norm`) with `add_loss`; `DualLossModel` trains the
          inhibitory weights on it.

    Example:

    >>> import numpy as np
    >>> from ei_keras.layers import INormDense
    >>> layer = INormDense(16, error_normalization="full", seed=0)
    >>> layer(np.random.rand(8, 32).astype("float32")).shape
    (8, 16)
    >>> len(layer.losses)  # the normalization loss
    1

    Reference:
        Eyono et al. (2026), "Learned inhibitory normalization" (Fig. 3-5).
    """

    def __init__(
        self,
        units: int,
        activation=None,
        use_bias: bool = True,
        kernel_initializer=None,
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        *,
        inhibitory_units: int | None = None,
        error_normalization: str = "none",
        subtractive_only: bool = False,
        norm_weight: float = 0.01,
        trainable_ei: bool = True,
        epsilon: float = 1e-5,
        init_distribution: str = "exponential",
        seed: int | None = None,
        inhibitory_regularizer=None,
        inhibitory_constraint=None,
        gradnorm_on: str = "y",
        task_trains_inhibitory: bool = False,
        norm_trains_excitatory: bool = False,
        **kwargs,
    ):
        if activity_regularizer is not None:
            raise ValueError(
                f"{type(self).__name__} does not take `activity_regularizer`: its output is "
                "normalized by the inhibitory populations, and its normalization loss trains "
                "only those. "
                "Put the activity regularizer on the next layer (or a "
                "keras.layers.ActivityRegularization after this one). Received: "
                f"activity_regularizer={activity_regularizer!r}")
        super().__init__(units, activation, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer, None, kernel_constraint,
                         bias_constraint, init_distribution=init_distribution, seed=seed,
                         **kwargs)
        # Normalization computes in float32 like keras.layers.LayerNormalization; the output
        # is cast back to compute_dtype (mixed precision without overflow in delta or L_norm).
        # The weights are read in float32 too (`add_weight` below).
        self.autocast = False
        self.init_inhibition(inhibitory_units, trainable_ei, inhibitory_regularizer,
                             inhibitory_constraint)
        self.error_normalization = _errnorm.validate_mode(
            error_normalization, "error_normalization")
        self.gradnorm_on = _errnorm.validate_gradnorm_on(gradnorm_on)
        self.subtractive_only = bool(subtractive_only)
        for name, value in (("task_trains_inhibitory", task_trains_inhibitory),
                            ("norm_trains_excitatory", norm_trains_excitatory)):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"Expected `{name}` to be a boolean. Received: "
                                 f"{name}={value!r}")
        self.task_trains_inhibitory = bool(task_trains_inhibitory)
        self.norm_trains_excitatory = bool(norm_trains_excitatory)
        self.norm_weight_variable = None
        self.norm_weight = norm_weight
        if not epsilon > 0:
            raise ValueError(f"Expected `epsilon` > 0. Received: epsilon={epsilon!r}")
        self.epsilon = float(epsilon)
        self.lateral_weights = None

    def build(self, input_shape):
        d = self.input_width(input_shape)
        if not self.subtractive_only and d < self.units:
            raise ValueError(
                f"{type(self).__name__}'s SVD initialisation of the divisive population needs "
                f"input width{self._width_hint} >= units. Received: input width {d}, "
                f"units={self.units}. Use units <= {d} or subtractive_only=True."
            )
        seed = self.build_seed()
        w_ee = self.add_excitatory_weights(d, seed)
        w_ie, w_ei = self.add_inhibitory_weights(w_ee, seed)
        if not self.subtractive_only:
            b_ie, b_ei = divisive_svd_init(w_ee, w_ie, w_ei)
            self.B_IE = self.add_inhibitory_weight("B_IE", b_ie, roles.INHIBITORY_INPUT,
                                                   non_negative=False)
            self.B_EI = self.add_inhibitory_weight("B_EI", b_ei, roles.INHIBITORY_OUTPUT,
                                                   trainable=self.trainable_ei)
        if self.error_normalization == "lateral":
            self.lateral_weights = add_lateral_weights(
                self, self.error_normalization_width(input_shape), seed + 2)
        # lambda is state, not a constant baked into a compiled step: a callback or schedule
        # that sets `norm_weight` changes the loss of the next step on every backend, and the
        # value is saved with the weights. Created last, so that files written before it
        # existed load (see `load_own_variables`).
        self.norm_weight_variable = self.add_weight(
            name="norm_weight", shape=(), dtype="float32", trainable=False,
            initializer=keras.initializers.Constant(self._initial_norm_weight),
        )
        roles.declare(self.norm_weight_variable, roles.NORMALIZATION)

    def add_weight(self, *args, **kwargs):
        """`keras.layers.Layer.add_weight` with `autocast=False` (as Keras' normalization
        layers make theirs): under a mixed-precision policy a layer called on its own (outside
        a model) still opens an autocast scope, which would read the weights in float16 inside
        this layer's float32 arithmetic."""
        kwargs.setdefault("autocast", False)
        return super().add_weight(*args, **kwargs)

    def _parts(self, x):
        """`(e, s, delta)`: excitatory drive, subtractive and divisive inhibition (float32)."""
        xs = ops.stop_gradient(x)
        e = self.excitatory_drive(x)
        s = dense_t(self.project(xs, self.W_IE), self.W_EI)
        if self.subtractive_only:
            return e, s, None
        q = ops.square(self.project(xs, self.B_IE))
        delta = ops.sqrt(self.pool_divisive(ops.maximum(dense_t(q, self.B_EI), 0.0))
                         + self.epsilon)
        return e, s, delta

    def normalization_loss(self, e, s, delta):
        """`L_norm` from the parts; gradients reach only `s` and `delta` (and `e` with
        `norm_trains_excitatory`: pass `e` computed from the stopped input then)."""
        per_sample = self.normalization_loss_per_sample(e, s, delta)
        return self.norm_weight_tensor() * ops.mean(per_sample)

    def norm_weight_tensor(self):
        """`lambda` as a tensor (the variable once built)."""
        return (self._initial_norm_weight if self.norm_weight_variable is None
                else ops.convert_to_tensor(self.norm_weight_variable))

    def normalization_loss_per_sample(self, e, s, delta):
        """The unweighted per-sample terms of `L_norm`, `(mean_j zh)^2 + (var_j zh - 1)^2`
        (subtractive-only: the first), reduced over `statistics_axis` only (kept as size-1
        axes); gradients reach only `s` and `delta` (and `e` with
        `norm_trains_excitatory`)."""
        zh = (e if self.norm_trains_excitatory else ops.stop_gradient(e)) - s
        if delta is not None:
            zh = zh / delta
        axis = self.statistics_axis
        mean = ops.mean(zh, axis=axis, keepdims=True)
        loss = ops.square(mean)
        if delta is not None:
            var = ops.mean(ops.square(zh - mean), axis=axis, keepdims=True)
            loss = loss + ops.square(var - 1.0)
        return loss

    def preactivation(self, inputs):
        """The normalized pre-activation `z` (before error normalization and activation) and
        the normalization loss, in float32."""
        x = ops.cast(inputs, "float32")
        e, s, delta = self._parts(x)
        # The paper's isolation: the task loss does not see the inhibition's dependence on
        # its weights (unless `task_trains_inhibitory`) ...
        inhibition = (lambda t: t) if self.task_trains_inhibitory else ops.stop_gradient
        z = e - inhibition(s)
        if delta is not None:
            z = z / inhibition(delta)
        # ... and L_norm does not see e's (unless `norm_trains_excitatory`: then e is
        # recomputed from the stopped input, so L_norm reaches W_EE and b but not x).
        e_norm = (self.excitatory_drive(ops.stop_gradient(x)) if self.norm_trains_excitatory
                  else e)
        return z, self.normalization_loss(e_norm, s, delta)

    def raw_preactivation(self, inputs):
        """The un-normalized pre-activation `e - s = x W_EE^T + b - (x W_IE^T) W_EI^T`
        (float32): what `ei_keras.measures` compares with LayerNorm."""
        e, s, _ = self._parts(ops.cast(inputs, "float32"))
        return e - s

    def call(self, inputs):
        z, loss = self.preactivation(inputs)
        self.add_loss(loss)
        z = self.normalize_error(z)
        return self.activation(ops.cast(z, self.compute_dtype))

    # -- what the convolutional I-Norm changes (INormConv2D) ---------------------------------
    #: The axes of the per-sample statistics: the units (the last axis; every leading position
    #: is a sample).
    statistics_axis = -1
    _width_hint = ""

    def pool_divisive(self, p):
        """The divisive population's squared output `((xs B_IE^T)^2) B_EI^T`, pooled over
        the statistics' axes (per unit here: no pooling)."""
        return p

    def normalize_error(self, z):
        """Error normalization of `z` over the statistics' axes."""
        return _errnorm.normalize_error(z, self.error_normalization, self.lateral_weights,
                                        self.epsilon, self.gradnorm_on)

    def error_normalization_width(self, input_shape) -> int:
        """The number of units the error is normalized over (the lateral weights' size)."""
        return self.units

    @property
    def norm_weight(self) -> float:
        """`lambda`, the weight of the normalization loss; settable during training."""
        if self.norm_weight_variable is None:
            return self._initial_norm_weight
        return float(ops.convert_to_numpy(self.norm_weight_variable))

    @norm_weight.setter
    def norm_weight(self, value) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
                or not (np.isfinite(value) and value >= 0):
            raise ValueError(f"Expected `norm_weight` >= 0. Received: norm_weight={value!r}")
        if self.norm_weight_variable is None:
            self._initial_norm_weight = float(value)
        else:
            self.norm_weight_variable.assign(float(value))

    def _inhibitory_variables(self) -> list:
        candidates = [getattr(self, n, None) for n in ("W_IE", "W_EI", "B_IE", "B_EI")]
        return [v for v in candidates if v is not None and v.trainable]

    def _excitatory_variables(self) -> list:
        candidates = [getattr(self, n, None)
                      for n in ("W_EE", "bias", "bias_positive", "bias_negative")]
        return [v for v in candidates if v is not None and v.trainable]

    @property
    def normalization_variables(self) -> list:
        """The variables this layer's normalization loss trains (Eyono et al. 2026,
        Methods): the trainable inhibitory weights `W_IE`, `W_EI`, `B_IE`, `B_EI`, and
        with `norm_trains_excitatory` also `W_EE` and the bias.
        `ei_keras.models.DualLossModel` applies the normalization-loss gradient to
        exactly these and the task-loss gradient to every other trainable variable and to
        `shared_variables`."""
        return self._inhibitory_variables() + (
            self._excitatory_variables() if self.norm_trains_excitatory else [])

    @property
    def shared_variables(self) -> list:
        """The variables both losses train (the isolation ablations; empty by default): the
        inhibitory weights with `task_trains_inhibitory`, `W_EE` and the bias with
        `norm_trains_excitatory`."""
        return ((self._inhibitory_variables() if self.task_trains_inhibitory else []) +
                (self._excitatory_variables() if self.norm_trains_excitatory else []))

    def load_own_variables(self, store):
        """Loads files written before `norm_weight` became a variable (lambda then comes
        from the config) as well as current ones."""
        if self.norm_weight_variable is not None and \
                len(store.keys()) == len(self.variables) - 1:
            # Keras' order (Layer.load_own_variables), without the variable that is missing.
            saved = [v for v in self._trainable_variables + self._non_trainable_variables
                     if v is not self.norm_weight_variable]
            for i, v in enumerate(saved):
                v.assign(store[f"{i}"])
            return
        super().load_own_variables(store)

    def get_config(self):
        return {
            **super().get_config(),
            "error_normalization": self.error_normalization,
            "gradnorm_on": self.gradnorm_on,
            "subtractive_only": self.subtractive_only,
            "task_trains_inhibitory": self.task_trains_inhibitory,
            "norm_trains_excitatory": self.norm_trains_excitatory,
            "norm_weight": self.norm_weight,
            "epsilon": self.epsilon,
        }
