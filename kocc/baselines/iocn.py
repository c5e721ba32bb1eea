r"""Invertible One-Class Network (IOCN) and its normalizing-flow baseline (FLOW).

Schmier, Koethe, Straehle, "Towards reliable outlier detection using invertible
one-class networks". An invertible network (INN) of affine coupling blocks maps
the normal data onto the uniform distribution on the cube :math:`[-1, 1]^D`.

Training (paper Section 3, eq. (1), Algorithm 1 of its appendix A.4): per step,
N training points :math:`x_i` and N latents :math:`z_i \sim U([-1, 1]^D)`;
:math:`\tilde x_i = \mathrm{stopgrad}(\mathrm{INN}^{-1}(z_i))`;

.. math::
    L = \frac{1}{N}\sum_i f(\mathrm{INN}(x_i)) - f(\mathrm{INN}(\tilde x_i)),
    \qquad f(z) = \max_d |z_d| ,

with no Jacobian determinant. The outlier measure (eq. (2)-(4)) is the signed
distance of :math:`\mathrm{INN}(x)` to the cube's boundary,

.. math::
    s_{out} = \sum_d \max(|z_d| - 1, 0), \quad
    s_{in} = \min(\max_d |z_d| - 1, 0), \quad s = s_{out} + s_{in},

positive outside; ``IOCN.score_samples`` returns :math:`-s` so that, as for
OCSDF, *higher means more normal* and the inlier region is ``score > 0``.

:class:`FlowBaseline` is the paper's FLOW: the same architecture trained by
maximum likelihood under a standard Gaussian latent (change of variables with
the log-determinant), scored by the log-likelihood.

The architecture follows the paper's appendix A.5 (FrEIA "AllInOne" blocks):
each block is a fixed seeded permutation, an affine coupling whose subnetwork
has one hidden ReLU layer (width 128 in the paper) and soft-clamped log-scales,
and a learned per-feature affine map. Everything is exactly invertible in closed
form; :meth:`InvertibleNetwork.inverse` undoes :meth:`InvertibleNetwork.call`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from kocc.validation import check_batch, check_non_negative


def block_permutation(dim: int, seed: int) -> np.ndarray:
    """A seeded random permutation of ``range(dim)`` that is not the identity.

    Not the identity, so that consecutive couplings transform different halves
    (for ``dim = 2`` it is always the swap).
    """
    rng = np.random.default_rng(seed)
    perm = rng.permutation(dim)
    while dim > 1 and np.array_equal(perm, np.arange(dim)):
        perm = rng.permutation(dim)
    return perm


@tf.keras.utils.register_keras_serializable("kocc")
class AffineCoupling(tf.keras.layers.Layer):
    r"""One invertible block: permutation, affine coupling, per-feature affine.

    With :math:`u = P x` split into a passive half :math:`u_1` (first
    ``dim // 2`` features) and an active half :math:`u_2`,

    .. math::
        (s, t) = \mathrm{net}(u_1), \quad \hat s = c \tanh(s / c), \quad
        v = (u_1, u_2 \odot e^{\hat s} + t), \quad
        y = v \odot e^{\hat a} + b, \quad \hat a = c \tanh(a / c),

    (Dinh et al. 2017, RealNVP; c = ``clamp``). The last layer of ``net`` and
    :math:`a, b` start at zero, so a new block is a permutation.
    :math:`\log|\det \partial y / \partial x| = \sum \hat s + \sum \hat a`.
    Both log-scales are soft-clamped, so a block scales by at most
    :math:`e^{2c}` and scores of far outliers stay finite.

    Args:
        dim: number of features D >= 2.
        hidden_units: width of the subnetwork's hidden ReLU layer.
        clamp: soft clamp c > 0 of the log-scales.
        seed: seed of the permutation and of the subnetwork's initialization.
        **kwargs: passed to ``tf.keras.layers.Layer``.

    Raises:
        ValueError: on ``dim < 2``, ``hidden_units < 1`` or ``clamp <= 0``.
    """

    def __init__(
        self,
        dim: int,
        hidden_units: int = 128,
        clamp: float = 2.0,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(dim) < 2:
            raise ValueError(f"an affine coupling needs dim >= 2, got {dim!r}")
        if int(hidden_units) < 1:
            raise ValueError(f"hidden_units must be >= 1, got {hidden_units!r}")
        if not float(clamp) > 0:
            raise ValueError(f"clamp must be > 0, got {clamp!r}")
        self.dim = int(dim)
        self.hidden_units = int(hidden_units)
        self.clamp = float(clamp)
        self.seed = int(seed)
        self.passive = self.dim // 2
        self.active = self.dim - self.passive
        perm = block_permutation(self.dim, self.seed)
        self._perm = tf.constant(perm, tf.int32)
        self._inv_perm = tf.constant(np.argsort(perm), tf.int32)
        self.hidden = tf.keras.layers.Dense(
            self.hidden_units,
            activation="relu",
            kernel_initializer=tf.keras.initializers.GlorotUniform(self.seed),
            name="hidden",
        )
        self.out = tf.keras.layers.Dense(
            2 * self.active, kernel_initializer="zeros", name="scale_shift"
        )

    def build(self, input_shape: Any) -> None:
        self.hidden.build((None, self.passive))
        self.out.build((None, self.hidden_units))
        self.log_scale = self.add_weight(
            name="log_scale", shape=(self.dim,), initializer="zeros"
        )
        self.shift = self.add_weight(
            name="shift", shape=(self.dim,), initializer="zeros"
        )
        super().build(input_shape)

    def _global_log_scale(self) -> tf.Tensor:
        return self.clamp * tf.tanh(self.log_scale / self.clamp)

    def _scale_shift(self, u1: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        st = self.out(self.hidden(u1))
        s, t = st[:, : self.active], st[:, self.active :]
        return self.clamp * tf.tanh(s / self.clamp), t

    def forward(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``(y, log|det J|)`` with ``log|det J|`` of shape ``(n,)``."""
        u = tf.gather(x, self._perm, axis=1)
        u1, u2 = u[:, : self.passive], u[:, self.passive :]
        s, t = self._scale_shift(u1)
        v = tf.concat([u1, u2 * tf.exp(s) + t], axis=1)
        a = self._global_log_scale()
        y = v * tf.exp(a) + self.shift
        return y, tf.reduce_sum(s, axis=1) + tf.reduce_sum(a)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return self.forward(inputs)[0]

    def inverse(self, y: tf.Tensor) -> tf.Tensor:
        """The exact inverse of :meth:`call`."""
        v = (y - self.shift) * tf.exp(-self._global_log_scale())
        u1, v2 = v[:, : self.passive], v[:, self.passive :]
        s, t = self._scale_shift(u1)
        u = tf.concat([u1, (v2 - t) * tf.exp(-s)], axis=1)
        return tf.gather(u, self._inv_perm, axis=1)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "dim": self.dim,
            "hidden_units": self.hidden_units,
            "clamp": self.clamp,
            "seed": self.seed,
        }


@tf.keras.utils.register_keras_serializable("kocc")
class InvertibleNetwork(tf.keras.layers.Layer):
    """A stack of :class:`AffineCoupling` blocks: ``call`` is INN, ``inverse`` INN⁻¹.

    Args:
        dim: number of features D >= 2.
        num_blocks: number of blocks (the paper: 12).
        hidden_units: hidden width of each block's subnetwork (the paper: 128).
        clamp: soft clamp of the log-scales.
        seed: block ``i`` uses seed ``seed * 1000 + i``.
        **kwargs: passed to ``tf.keras.layers.Layer``.

    Raises:
        ValueError: on ``num_blocks < 1`` or invalid block arguments.
    """

    def __init__(
        self,
        dim: int,
        num_blocks: int = 12,
        hidden_units: int = 128,
        clamp: float = 2.0,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(num_blocks) < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks!r}")
        self.dim = int(dim)
        self.num_blocks = int(num_blocks)
        self.hidden_units = int(hidden_units)
        self.clamp = float(clamp)
        self.seed = int(seed)
        self.blocks = [
            AffineCoupling(
                self.dim,
                self.hidden_units,
                self.clamp,
                seed=self.seed * 1000 + i,
                name=f"coupling_{i}",
            )
            for i in range(self.num_blocks)
        ]

    def build(self, input_shape: Any) -> None:
        for block in self.blocks:
            block.build((None, self.dim))
        super().build(input_shape)

    def forward(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``(INN(x), log|det J_INN(x)|)``."""
        log_det = tf.zeros(tf.shape(x)[:1], x.dtype)
        for block in self.blocks:
            x, block_log_det = block.forward(x)
            log_det += block_log_det
        return x, log_det

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return self.forward(inputs)[0]

    def inverse(self, z: tf.Tensor) -> tf.Tensor:
        """INN⁻¹(z), in closed form (blocks undone in reverse order)."""
        for block in reversed(self.blocks):
            z = block.inverse(z)
        return z

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "dim": self.dim,
            "num_blocks": self.num_blocks,
            "hidden_units": self.hidden_units,
            "clamp": self.clamp,
            "seed": self.seed,
        }


def cube_pull(z: tf.Tensor) -> tf.Tensor:
    """The pull function of IOCN: :math:`f(z) = \\max_d |z_d|`, shape ``(n,)``."""
    return tf.reduce_max(tf.abs(z), axis=1)


def cube_signed_distance(z: tf.Tensor) -> tf.Tensor:
    """IOCN's outlier measure s = s_out + s_in (paper eq. (2)-(4)), positive outside."""
    excess = tf.abs(z) - 1.0
    s_out = tf.reduce_sum(tf.nn.relu(excess), axis=1)
    s_in = tf.minimum(tf.reduce_max(excess, axis=1), 0.0)
    return s_out + s_in


class _InvertibleOneClass(tf.keras.Model):
    """Shared plumbing: the INN, config, input checks, seeded latent draws."""

    def __init__(
        self,
        input_dim: int,
        num_blocks: int = 12,
        hidden_units: int = 128,
        clamp: float = 2.0,
        noise_std: float = 0.0,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(input_dim) < 2:
            raise ValueError(f"input_dim must be >= 2, got {input_dim!r}")
        check_non_negative(noise_std=float(noise_std))
        self.input_dim = int(input_dim)
        self.noise_std = float(noise_std)
        self.seed = int(seed)
        self.inn = InvertibleNetwork(
            self.input_dim, num_blocks, hidden_units, clamp, seed=self.seed, name="inn"
        )
        self.inn.build((None, self.input_dim))
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")
        self.build((None, self.input_dim))

    def get_config(self) -> dict:
        return {
            "input_dim": self.input_dim,
            "num_blocks": self.inn.num_blocks,
            "hidden_units": self.inn.hidden_units,
            "clamp": self.inn.clamp,
            "noise_std": self.noise_std,
            "seed": self.seed,
            "name": self.name,
        }

    def _step_seed(self) -> tf.Tensor:
        return tf.stack(
            [
                tf.constant(self.seed, tf.int64),
                tf.cast(self.optimizer.iterations, tf.int64),
            ]
        )

    def _noisy(self, x: tf.Tensor) -> tf.Tensor:
        """The training batch plus N(0, noise_std^2) noise (seeded per step).

        The paper adds "a small amount of noise to obtain a valid density"
        (appendix A.5): without it, data on a lower-dimensional subspace (fewer
        samples than features) have no density and the map diverges.
        """
        if self.noise_std == 0.0:
            return x
        seed = self._step_seed() + tf.constant([0, 1 << 40], tf.int64)
        return x + self.noise_std * tf.random.stateless_normal(tf.shape(x), seed)

    def _apply(self, tape: tf.GradientTape, loss: tf.Tensor) -> None:
        variables = self.inn.trainable_variables
        self.optimizer.apply_gradients(
            zip(tape.gradient(loss, variables), variables, strict=True)
        )

    def fit(self, x: Any = None, y: Any = None, **kwargs: Any):
        """Keras ``fit`` on normal samples ``x`` (no labels).

        Raises:
            ValueError: if labels are given, or for invalid ``x`` (rank, number
                of features, empty, NaN/inf; the message names the problem).
        """
        if y is not None:
            raise ValueError(f"{type(self).__name__}.fit takes normal samples only")
        return super().fit(check_batch(x, (self.input_dim,), "x"), **kwargs)

    def predict(self, x: Any, **kwargs: Any) -> np.ndarray:
        return super().predict(check_batch(x, (self.input_dim,), "x"), **kwargs)

    def score_samples(self, x: Any, batch_size: int = 4096) -> np.ndarray:
        """Normality scores, 1-D (higher = more normal)."""
        return self.predict(x, batch_size=batch_size, verbose=0).reshape(-1)

    def transform(self, x: Any, batch_size: int = 4096) -> np.ndarray:
        """The latent codes INN(x)."""
        x = check_batch(x, (self.input_dim,), "x")
        return np.concatenate(
            [
                self.inn(tf.constant(x[i : i + batch_size])).numpy()
                for i in range(0, len(x), batch_size)
            ]
        )

    def inverse_transform(self, z: Any, batch_size: int = 4096) -> np.ndarray:
        """INN⁻¹(z): latent codes back to the data space."""
        z = check_batch(z, (self.input_dim,), "z")
        return np.concatenate(
            [
                self.inn.inverse(tf.constant(z[i : i + batch_size])).numpy()
                for i in range(0, len(z), batch_size)
            ]
        )


@tf.keras.utils.register_keras_serializable("kocc")
class IOCN(_InvertibleOneClass):
    r"""Invertible One-Class Network (Schmier et al., eq. (1)-(4), Algorithm 1).

    ``fit(x)`` on normal samples. Each step draws as many latents
    :math:`z \sim U([-1, 1]^D)` as the batch holds points (stateless, seeded by
    ``seed`` and the step), maps them back without gradient and minimises
    :math:`\mathrm{mean}_i\, f(\mathrm{INN}(x_i)) - f(\mathrm{INN}(\tilde x_i))`,
    :math:`f = \max_d|\cdot|`. ``call`` returns the normality score
    :math:`-s(x)`, shape ``(n, 1)``: positive inside the learned support
    (the pre-image of the cube), negative outside.

    Logged: ``loss``, ``pull`` (mean f on the data), ``push`` (mean f on the
    latents' pre-images, :math:`E\max_d|z_d| = D/(D+1)` for the uniform cube),
    ``inside`` (fraction of the batch mapped inside the cube) and
    ``inverse_error`` (mean :math:`\max_d|\mathrm{INN}(\mathrm{INN}^{-1}(z))_d
    - z_d|`, float32 round-off while the map is well conditioned; see
    :class:`StopOnInverseError`).

    Args:
        input_dim: number of features D >= 2.
        **kwargs: the invertible network's settings, ``num_blocks`` (coupling
            blocks; paper: 12), ``hidden_units`` (subnetwork width; paper:
            128), ``clamp`` (soft clamp of the coupling log-scales),
            ``noise_std`` (std of Gaussian noise added to each training batch,
            the paper's "small amount of noise"; 0 = none) and ``seed`` (of the
            initialization, the latent draws and the noise); then
            ``tf.keras.Model``'s.
    """

    def __init__(self, input_dim: int, **kwargs: Any) -> None:
        super().__init__(input_dim, **kwargs)
        self.pull_tracker = tf.keras.metrics.Mean(name="pull")
        self.push_tracker = tf.keras.metrics.Mean(name="push")
        self.inside_tracker = tf.keras.metrics.Mean(name="inside")
        self.inverse_error_tracker = tf.keras.metrics.Mean(name="inverse_error")

    @property
    def metrics(self) -> list:
        return [
            self.loss_tracker,
            self.pull_tracker,
            self.push_tracker,
            self.inside_tracker,
            self.inverse_error_tracker,
        ]

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Normality score :math:`-s(x)` (eq. (4), negated), shape ``(n, 1)``."""
        return -cube_signed_distance(self.inn(inputs))[:, None]

    def train_step(self, data: Any) -> dict:
        x = data[0] if isinstance(data, tuple) else data
        x = self._noisy(tf.cast(x, tf.float32))
        z = tf.random.stateless_uniform(
            tf.shape(x), seed=self._step_seed(), minval=-1.0, maxval=1.0
        )
        x_tilde = tf.stop_gradient(self.inn.inverse(z))
        with tf.GradientTape() as tape:
            pull = cube_pull(self.inn(x))
            z_back = self.inn(x_tilde)
            push = cube_pull(z_back)
            loss = tf.reduce_mean(pull) - tf.reduce_mean(push)
        self._apply(tape, loss)
        # INN(INN^-1(z)) = z up to float32 round-off while the map is well
        # conditioned; a large error means the inverse no longer holds
        self.inverse_error_tracker.update_state(
            tf.reduce_max(tf.abs(z_back - z), axis=1)
        )
        self.loss_tracker.update_state(loss)
        self.pull_tracker.update_state(pull)
        self.push_tracker.update_state(push)
        self.inside_tracker.update_state(tf.cast(pull <= 1.0, tf.float32))
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data: Any) -> dict:
        x = tf.cast(data[0] if isinstance(data, tuple) else data, tf.float32)
        pull = cube_pull(self.inn(x))
        self.pull_tracker.update_state(pull)
        self.inside_tracker.update_state(tf.cast(pull <= 1.0, tf.float32))
        return {
            "pull": self.pull_tracker.result(),
            "inside": self.inside_tracker.result(),
        }


@tf.keras.utils.register_keras_serializable("kocc")
class FlowBaseline(_InvertibleOneClass):
    r"""The paper's FLOW baseline: the same INN trained by maximum likelihood.

    Standard Gaussian latent, change of variables:
    :math:`\log p(x) = -\tfrac12\|\mathrm{INN}(x)\|^2 - \tfrac D2\log 2\pi
    + \log|\det J_{\mathrm{INN}}(x)|`; ``fit`` minimises the mean negative
    log-likelihood per feature (``loss`` = NLL / D, in nats). ``call`` returns
    :math:`\log p(x)`, shape ``(n, 1)`` (higher = more normal), the score the
    paper uses for FLOW (appendix A.5).
    """

    @property
    def metrics(self) -> list:
        return [self.loss_tracker]

    def log_likelihood(self, x: tf.Tensor) -> tf.Tensor:
        z, log_det = self.inn.forward(x)
        dim = tf.cast(self.input_dim, z.dtype)
        return (
            -0.5 * tf.reduce_sum(z * z, axis=1)
            - 0.5 * dim * math.log(2.0 * math.pi)
            + log_det
        )

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Log-likelihood :math:`\\log p(x)`, shape ``(n, 1)``."""
        return self.log_likelihood(inputs)[:, None]

    def train_step(self, data: Any) -> dict:
        x = tf.cast(data[0] if isinstance(data, tuple) else data, tf.float32)
        x = self._noisy(x)
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(self.log_likelihood(x)) / self.input_dim
        self._apply(tape, loss)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data: Any) -> dict:
        x = tf.cast(data[0] if isinstance(data, tuple) else data, tf.float32)
        self.loss_tracker.update_state(
            -tf.reduce_mean(self.log_likelihood(x)) / self.input_dim
        )
        return {"loss": self.loss_tracker.result()}


@tf.keras.utils.register_keras_serializable("kocc")
class StopOnInverseError(tf.keras.callbacks.Callback):
    """Stop IOCN training when the inverse stops being exact in float32.

    IOCN's push term needs :math:`\\mathrm{INN}(\\mathrm{INN}^{-1}(z)) = z`. On
    data with fewer samples than features the map keeps expanding the empty
    directions until float32 can no longer invert it; the logged
    ``inverse_error`` then jumps by orders of magnitude and the loss diverges.
    This callback watches ``inverse_error`` at the end of every epoch and, once
    it exceeds ``threshold``, restores the weights of the last epoch below it
    and stops. It uses no labels.

    Args:
        threshold: largest acceptable mean inverse error (> 0).
    """

    def __init__(self, threshold: float = 1e-2) -> None:
        super().__init__()
        if not float(threshold) > 0:
            raise ValueError(f"threshold must be > 0, got {threshold!r}")
        self.threshold = float(threshold)
        self.stopped_epoch: int | None = None
        self._good_weights: list | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        error = float((logs or {}).get("inverse_error", 0.0))
        if np.isfinite(error) and error <= self.threshold:
            self._good_weights = self.model.get_weights()
            return
        self.stopped_epoch = epoch
        if self._good_weights is not None:
            self.model.set_weights(self._good_weights)
        self.model.stop_training = True

    def get_config(self) -> dict:
        return {"threshold": self.threshold}
