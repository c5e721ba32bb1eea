"""Proven Lipschitz bounds of plain Keras networks (the export's soundness check)."""

import numpy as np
import pytest
import tensorflow as tf
from deel.lip.activations import FullSort, GroupSort2

from kocc.architectures import lipschitz_mlp
from kocc.export import vanilla_network
from kocc.lipschitz_bound import (
    LipschitzBoundError,
    conv2d_kernel_bound,
    dense_kernel_bound,
    layer_lipschitz_bound,
    lipschitz_upper_bound,
)


def _conv_operator_norm(kernel, hw, strides, padding, dilation, iterations=300):
    """Power iteration on the convolution itself: a lower bound of its norm."""
    kernel = tf.constant(kernel, tf.float32)
    x = tf.random.stateless_normal((1, *hw, kernel.shape[2]), seed=(1, 2))

    def conv(v):
        # tf.nn.convolution runs a dilated convolution through space-to-batch:
        # the gradient of tf.nn.conv2d with dilation > 1 has no kernel on CPUs
        # where TensorFlow leaves oneDNN off (AVX2 without AVX-512)
        return tf.nn.convolution(v, kernel, strides, padding, dilations=dilation)

    for _ in range(iterations):
        with tf.GradientTape() as tape:
            tape.watch(x)
            energy = 0.5 * tf.reduce_sum(tf.square(conv(x)))
        grad = tape.gradient(energy, x)  # = A^T A x
        x = grad / tf.norm(grad)
    return float(tf.norm(conv(x)))


@pytest.mark.parametrize(
    "hw, k, strides, padding, dilation",
    [
        ((7, 7), 3, 1, "SAME", 1),
        ((8, 6), 3, 2, "SAME", 1),
        ((9, 9), 5, 1, "VALID", 1),
        ((8, 8), 3, 1, "SAME", 2),
        ((6, 6), 2, 2, "VALID", 1),
    ],
)
def test_conv_bound_is_above_the_operator_norm_and_tight(
    hw, k, strides, padding, dilation
):
    rng = np.random.default_rng(k * 10 + strides)
    kernel = rng.normal(size=(k, k, 3, 4)).astype(np.float32)
    bound = conv2d_kernel_bound(kernel, hw, (dilation, dilation))
    estimate = _conv_operator_norm(kernel, hw, strides, padding, dilation)
    assert bound >= estimate * (1 - 1e-5)
    if strides == 1 and padding == "SAME":
        # zero padding loses little against the circular operator
        assert bound <= 1.25 * estimate


def test_one_by_one_conv_bound_is_the_kernel_spectral_norm():
    kernel = np.random.default_rng(0).normal(size=(1, 1, 5, 3))
    assert conv2d_kernel_bound(kernel, (4, 4)) == pytest.approx(
        np.linalg.norm(kernel[0, 0], 2), rel=1e-9
    )


def test_dense_bound_is_the_largest_singular_value():
    w = np.diag([3.0, 0.5, 2.0])
    assert dense_kernel_bound(w) == pytest.approx(3.0)


def test_chain_bound_is_the_product_of_layer_bounds():
    network = tf.keras.Sequential(
        [
            tf.keras.layers.Input((4,)),
            tf.keras.layers.Dense(4, activation="relu"),
            GroupSort2(),
            tf.keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    network.layers[0].kernel.assign(np.diag([2.0, 1.0, 0.5, 0.1]).astype(np.float32))
    network.layers[2].kernel.assign(np.array([[0.6], [0.8], [0.0], [0.0]], np.float32))
    assert lipschitz_upper_bound(network) == pytest.approx(2.0 * 1.0 * 0.25, rel=1e-6)


def test_vanilla_lipschitz_mlp_is_proved_1_lipschitz():
    network = vanilla_network(lipschitz_mlp(5, (32, 32), seed=3))
    assert abs(lipschitz_upper_bound(network) - 1.0) < 1e-3


def test_functional_chain_is_accepted_and_branching_is_refused():
    inputs = tf.keras.layers.Input((4,))
    hidden = tf.keras.layers.Dense(4)(inputs)
    chain = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(FullSort()(hidden)))
    assert lipschitz_upper_bound(chain) > 0
    residual = tf.keras.layers.Add()([hidden, inputs])
    branched = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(residual))
    with pytest.raises(LipschitzBoundError, match="not a chain"):
        lipschitz_upper_bound(branched)


@pytest.mark.parametrize(
    "layer, message",
    [
        (tf.keras.layers.Dense(2, activation="exponential"), "exponential"),
        (tf.keras.layers.BatchNormalization(), "no Lipschitz bound"),
        (tf.keras.layers.MaxPooling2D(3, strides=1), "overlapping"),
        (tf.keras.layers.ReLU(threshold=0.5), "threshold"),
    ],
)
def test_layers_without_a_proof_are_refused(layer, message):
    shape = (6, 6, 2) if isinstance(layer, tf.keras.layers.MaxPooling2D) else (2,)
    layer.build((None, *shape))
    with pytest.raises(LipschitzBoundError, match=message):
        layer_lipschitz_bound(layer)
