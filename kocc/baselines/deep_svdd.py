"""Deep SVDD (Ruff et al., ICML 2018), one-class objective, in TensorFlow/Keras.

Deep Support Vector Data Description maps the data with a bias-free network
:math:`\\phi(\\cdot; W)` and pulls the representations of the (normal) training
data toward a fixed centre :math:`c` (Ruff et al. 2018, Eq. (4), "One-Class Deep
SVDD"):

.. math::
    \\min_W \\frac{1}{n}\\sum_{i=1}^n \\|\\phi(x_i; W) - c\\|^2
    + \\frac{\\lambda}{2}\\sum_{\\ell}\\|W^\\ell\\|_F^2 .

The anomaly score of a test point is :math:`\\|\\phi(x; W^*) - c\\|^2` (Eq. (5));
:meth:`DeepSVDD.score_samples` returns its negative, so that, as for OCSDF and
scikit-learn's detectors, *higher means more normal*.

Details that follow the paper and its reference implementation:

* LeNet-type encoders without bias terms (a bias would let the network collapse
  to the constant map :math:`\\phi \\equiv c`): for 28x28 images two
  conv5x5 modules of 8 and 4 filters, for 32x32 images three modules of 32, 64
  and 128 filters, each followed by batch normalization without affine
  parameters (eps 1e-4), leaky ReLU (slope 0.01) and 2x2 max pooling, then a
  bias-free dense layer of 32 (MNIST) or 128 (CIFAR-10) units.
* The centre ``c`` is the mean initial representation of the training data
  (inference mode), with coordinates closer to 0 than ``center_eps`` pushed to
  ``±center_eps`` (the reference implementation's guard against trivial
  solutions); it is fixed during training.
* Weight decay :math:`\\lambda` as an L2 penalty :math:`\\lambda/2\\|W\\|^2` on every
  kernel (equal to Adam's ``weight_decay=λ`` in PyTorch).
* Optional pre-training of the encoder as part of a convolutional autoencoder
  (:meth:`DeepSVDD.pretrain`, mean squared reconstruction error). The decoder
  mirrors the encoder (a bias-free dense layer back to the last feature map,
  then per module: 2x upsampling, transposed conv5x5, batch normalization, leaky
  ReLU); it is a simplification of the reference decoder, which starts from a
  reshaped code and interpolates. Outputs use ``tanh`` because kocc's pixels are
  in ``[-1, 1]`` (the paper used global contrast normalization and min-max
  scaling to ``[0, 1]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from kocc.validation import check_batch, check_non_negative

#: LeNet-type encoders of Ruff et al. (2018): conv filters per module, code size.
LENET_ARCHITECTURES: dict[str, tuple[tuple[int, ...], int]] = {
    "mnist": ((8, 4), 32),
    "cifar10": ((32, 64, 128), 128),
}

_LEAKY_SLOPE = 0.01
_BN_EPS = 1e-4


def _architecture_for(input_shape: tuple[int, ...], architecture: str) -> str:
    if architecture != "auto":
        if architecture not in LENET_ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {architecture!r}: expected 'auto' or one of "
                f"{sorted(LENET_ARCHITECTURES)}"
            )
        return architecture
    return "mnist" if input_shape[-1] == 1 else "cifar10"


def lenet_encoder(
    input_shape: Sequence[int],
    filters: Sequence[int] = (8, 4),
    rep_dim: int = 32,
    weight_decay: float = 5e-7,
    seed: int = 0,
    name: str = "lenet_encoder",
) -> tf.keras.Sequential:
    """The bias-free LeNet-type encoder :math:`\\phi` of Deep SVDD.

    Args:
        input_shape: ``(H, W, C)``; ``H`` and ``W`` divisible by
            ``2 ** len(filters)``.
        filters: conv5x5 filters per module.
        rep_dim: size of the representation (the bias-free dense output).
        weight_decay: :math:`\\lambda`; the L2 penalty on each kernel is
            :math:`\\lambda/2\\|W\\|^2`.
        seed: seed of the Glorot initializations.
        name: model name.

    Returns:
        A Keras ``Sequential`` mapping ``(n, H, W, C)`` to ``(n, rep_dim)``.

    Raises:
        ValueError: on a bad shape, non-positive sizes or a negative decay.
    """
    shape = tuple(int(s) for s in input_shape)
    filters = tuple(int(f) for f in filters)
    if len(shape) != 3 or any(s <= 0 for s in shape):
        raise ValueError(f"input_shape must be (H, W, C), got {tuple(input_shape)!r}")
    if not filters or any(f <= 0 for f in filters) or int(rep_dim) <= 0:
        raise ValueError(
            f"filters and rep_dim must be positive, got {filters!r}, {rep_dim!r}"
        )
    if any(s % 2 ** len(filters) for s in shape[:2]):
        raise ValueError(
            f"{len(filters)} pooling modules need H and W divisible by "
            f"{2 ** len(filters)}, got {shape[:2]}"
        )
    check_non_negative(weight_decay=float(weight_decay))
    regularizer = tf.keras.regularizers.L2(float(weight_decay) / 2.0)
    layers: list[tf.keras.layers.Layer] = [tf.keras.layers.Input(shape)]
    for i, width in enumerate(filters):
        layers += [
            tf.keras.layers.Conv2D(
                width,
                5,
                padding="same",
                use_bias=False,
                kernel_initializer=tf.keras.initializers.GlorotUniform(seed + i),
                kernel_regularizer=regularizer,
            ),
            tf.keras.layers.BatchNormalization(
                epsilon=_BN_EPS, center=False, scale=False
            ),
            tf.keras.layers.LeakyReLU(_LEAKY_SLOPE),
            tf.keras.layers.MaxPooling2D(2),
        ]
    layers += [
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(
            int(rep_dim),
            use_bias=False,
            kernel_initializer=tf.keras.initializers.GlorotUniform(seed + 100),
            kernel_regularizer=regularizer,
        ),
    ]
    return tf.keras.Sequential(layers, name=name)


def lenet_decoder(
    output_shape: Sequence[int],
    filters: Sequence[int] = (8, 4),
    rep_dim: int = 32,
    weight_decay: float = 5e-7,
    seed: int = 0,
    name: str = "lenet_decoder",
) -> tf.keras.Sequential:
    """A decoder mirroring :func:`lenet_encoder`, for autoencoder pre-training.

    ``(n, rep_dim)`` -> bias-free dense to the encoder's last feature map ->
    for each module in reverse: 2x upsampling, transposed conv5x5 (bias-free),
    batch normalization, leaky ReLU -> transposed conv5x5 to ``C`` channels,
    ``tanh``.
    """
    shape = tuple(int(s) for s in output_shape)
    filters = tuple(int(f) for f in filters)
    factor = 2 ** len(filters)
    start = (shape[0] // factor, shape[1] // factor, filters[-1])
    regularizer = tf.keras.regularizers.L2(float(weight_decay) / 2.0)
    layers: list[tf.keras.layers.Layer] = [
        tf.keras.layers.Input((int(rep_dim),)),
        tf.keras.layers.Dense(
            int(np.prod(start)),
            use_bias=False,
            kernel_initializer=tf.keras.initializers.GlorotUniform(seed + 200),
            kernel_regularizer=regularizer,
        ),
        tf.keras.layers.Reshape(start),
        tf.keras.layers.LeakyReLU(_LEAKY_SLOPE),
    ]
    for i, width in enumerate(reversed(filters)):
        layers += [
            tf.keras.layers.UpSampling2D(2),
            tf.keras.layers.Conv2DTranspose(
                width,
                5,
                padding="same",
                use_bias=False,
                kernel_initializer=tf.keras.initializers.GlorotUniform(seed + 300 + i),
                kernel_regularizer=regularizer,
            ),
            tf.keras.layers.BatchNormalization(
                epsilon=_BN_EPS, center=False, scale=False
            ),
            tf.keras.layers.LeakyReLU(_LEAKY_SLOPE),
        ]
    layers.append(
        tf.keras.layers.Conv2DTranspose(
            shape[2],
            5,
            padding="same",
            activation="tanh",
            kernel_initializer=tf.keras.initializers.GlorotUniform(seed + 400),
        )
    )
    return tf.keras.Sequential(layers, name=name)


@tf.keras.utils.register_keras_serializable("kocc")
class DeepSVDD(tf.keras.Model):
    """One-Class Deep SVDD (Ruff et al., ICML 2018) with a LeNet-type encoder.

    ``fit(x)`` on normal images only; the centre is set from the data on the
    first ``fit`` (or after :meth:`pretrain`) and then kept fixed. ``call``
    returns the normality score :math:`-\\|\\phi(x) - c\\|^2`, shape ``(n, 1)``.

    Args:
        input_shape: ``(H, W, C)`` of the images.
        architecture: ``"mnist"`` (28x28 LeNet: 8, 4 filters, code 32),
            ``"cifar10"`` (32x32 LeNet: 32, 64, 128 filters, code 128) or
            ``"auto"`` (by the number of channels: 1 -> mnist, else cifar10).
        weight_decay: :math:`\\lambda` of the objective (paper: 0.5e-6).
        center_eps: coordinates of ``c`` with ``|c_j| < center_eps`` are set to
            ``±center_eps`` (reference implementation: 0.1).
        seed: seed of the initializations.
        **kwargs: passed to ``tf.keras.Model``.

    Raises:
        ValueError: on an unknown architecture, a shape the encoder cannot
            take, a negative ``weight_decay`` or ``center_eps``.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (28, 28, 1),
        architecture: str = "auto",
        weight_decay: float = 5e-7,
        center_eps: float = 0.1,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3:
            raise ValueError(f"input_shape must be (H, W, C), got {input_shape!r}")
        check_non_negative(center_eps=float(center_eps))
        self.image_shape = shape
        self.architecture = _architecture_for(shape, str(architecture))
        self.requested_architecture = str(architecture)
        self.weight_decay = float(weight_decay)
        self.center_eps = float(center_eps)
        self.seed = int(seed)
        filters, rep_dim = LENET_ARCHITECTURES[self.architecture]
        self.filters, self.rep_dim = filters, rep_dim
        self.encoder = lenet_encoder(
            shape, filters, rep_dim, self.weight_decay, self.seed
        )
        self.center = tf.Variable(tf.zeros([rep_dim]), trainable=False, name="center")
        self.center_is_set = tf.Variable(False, trainable=False, name="center_is_set")
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")
        self.build((None, *shape))

    def get_config(self) -> dict:
        return {
            "input_shape": list(self.image_shape),
            "architecture": self.requested_architecture,
            "weight_decay": self.weight_decay,
            "center_eps": self.center_eps,
            "seed": self.seed,
            "name": self.name,
        }

    @property
    def metrics(self) -> list:
        return [self.loss_tracker]

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Normality score :math:`-\\|\\phi(x) - c\\|^2`, shape ``(n, 1)``."""
        code = self.encoder(inputs, training=training)
        return -tf.reduce_sum(tf.square(code - self.center), axis=1, keepdims=True)

    def set_center(self, x: Any, batch_size: int = 1024) -> np.ndarray:
        """Set ``c`` to the mean representation of ``x`` (inference mode).

        Coordinates with ``|c_j| < center_eps`` become ``±center_eps`` (sign of
        ``c_j``, ``+`` for exact zeros).

        Returns:
            The centre as a numpy array.
        """
        x = check_batch(x, self.image_shape, "x")
        code = self.encoder.predict(x, batch_size=batch_size, verbose=0)
        center = code.mean(axis=0)
        small = np.abs(center) < self.center_eps
        center[small] = np.where(center[small] < 0, -self.center_eps, self.center_eps)
        self.center.assign(center)
        self.center_is_set.assign(True)
        return center

    def train_step(self, data: Any) -> dict:
        x = data[0] if isinstance(data, tuple) else data
        with tf.GradientTape() as tape:
            code = self.encoder(x, training=True)
            distance = tf.reduce_sum(tf.square(code - self.center), axis=1)
            loss = tf.reduce_mean(distance)
            if self.encoder.losses:
                loss += tf.add_n(self.encoder.losses)
        variables = self.encoder.trainable_variables
        self.optimizer.apply_gradients(
            zip(tape.gradient(loss, variables), variables, strict=True)
        )
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def fit(self, x: Any = None, y: Any = None, **kwargs: Any):
        """Keras ``fit`` on normal images; sets the centre first if needed.

        Raises:
            ValueError: for invalid ``x`` (rank, shape, empty, NaN/inf), or if
                labels are given (the objective is unsupervised).
        """
        if y is not None:
            raise ValueError("DeepSVDD.fit takes normal images only (y must be None)")
        x = check_batch(x, self.image_shape, "x")
        if not bool(self.center_is_set.numpy()):
            self.set_center(x)
        return super().fit(x, **kwargs)

    def pretrain(
        self,
        x: Any,
        epochs: int,
        batch_size: int = 200,
        learning_rate: float = 1e-4,
        verbose: int = 0,
    ) -> tf.keras.callbacks.History:
        """Pre-train the encoder as part of an autoencoder (reconstruction MSE).

        Resets the centre, so that the next :meth:`fit` recomputes it from the
        pre-trained encoder (as in the reference implementation).

        Args:
            x: normal training images.
            epochs: epochs (``>= 1``).
            batch_size: batch size.
            learning_rate: Adam learning rate.
            verbose: Keras verbosity.

        Raises:
            ValueError: for invalid ``x`` or ``epochs < 1``.
        """
        if int(epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs!r}")
        x = check_batch(x, self.image_shape, "x")
        decoder = lenet_decoder(
            self.image_shape, self.filters, self.rep_dim, self.weight_decay, self.seed
        )
        autoencoder = tf.keras.Sequential([self.encoder, decoder], name="autoencoder")
        autoencoder.compile(
            optimizer=tf.keras.optimizers.Adam(learning_rate), loss="mse"
        )
        history = autoencoder.fit(
            x, x, epochs=int(epochs), batch_size=batch_size, verbose=verbose
        )
        self.center_is_set.assign(False)
        return history

    def score_samples(self, x: Any, batch_size: int = 1024) -> np.ndarray:
        """Normality scores :math:`-\\|\\phi(x) - c\\|^2`, 1-D (higher = more normal).

        Raises:
            RuntimeError: if the centre was never set (call ``fit`` first).
        """
        if not bool(self.center_is_set.numpy()):
            raise RuntimeError("DeepSVDD is not fitted: call fit(x_normal) first")
        x = check_batch(x, self.image_shape, "x")
        return self.predict(x, batch_size=batch_size, verbose=0).reshape(-1)
