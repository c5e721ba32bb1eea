"""kocc's FullSort / GroupSort: deel-lip's outputs and gradients, faster sort."""

import numpy as np
import pytest
import tensorflow as tf
from deel.lip.activations import FullSort as DeelFullSort
from deel.lip.activations import GroupSort as DeelGroupSort
from deel.lip.activations import GroupSort2 as DeelGroupSort2

from kocc.activations import (
    BLOCK_KEYS,
    FullSort,
    GroupSort,
    GroupSort2,
    sort_pairs,
    sort_rows,
)
from kocc.architectures import lipschitz_activation, lipschitz_mlp
from kocc.lipschitz_bound import layer_lipschitz_bound


def _values_and_gradients(x, *layers):
    """Each layer's output at ``x`` and the gradient of a fixed random linear
    functional of it w.r.t. ``x`` (numpy arrays)."""
    weights = tf.random.stateless_normal(x.shape, seed=[3, 4])
    results = []
    for layer in layers:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * weights)
        results.append((y.numpy(), tape.gradient(loss, x).numpy()))
    return results


@pytest.mark.parametrize("shape", [(7, 512), (5, 3, 3, 100), (33, 128), (4, 2)])
@pytest.mark.parametrize("pair", ["fullsort", "groupsort4"])
def test_same_values_and_gradients_as_deel_lip(shape, pair):
    ours, theirs = (
        (FullSort(), DeelFullSort())
        if pair == "fullsort"
        else (GroupSort(n=4), DeelGroupSort(n=4))
    )
    x = tf.random.stateless_normal(shape, seed=[1, 2])
    (a, grad_a), (b, grad_b) = _values_and_gradients(x, ours, theirs)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(grad_a, grad_b, atol=1e-6)


@pytest.mark.parametrize("shape", [(64, 128), (5, 3, 3, 64), (4, 2)])
@pytest.mark.parametrize("ours", [GroupSort2, lambda: GroupSort(n=2)])
def test_pair_sort_equals_deel_lip_groupsort2_bit_for_bit_ties_included(shape, ours):
    # rounded to halves: about one pair in five is a tie, where deel-lip passes
    # both gradients to the pair's first entry
    x = tf.round(2 * tf.random.stateless_normal(shape, seed=[1, 2])) / 2
    pairs = tf.reshape(x, [-1, 2]).numpy()
    assert 0 < np.mean(pairs[:, 0] == pairs[:, 1]) < 1
    (a, grad_a), (b, grad_b) = _values_and_gradients(x, ours(), DeelGroupSort2())
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(grad_a, grad_b)


def test_pair_sort_permutes_each_pair_exactly_subnormals_and_signed_zeros_included():
    """Every output pair is its input pair, in order or swapped, bit for bit, in
    ascending order; the gradient moves with the same swap (ties aside).
    Subnormals and signed zeros pass through untouched (deel-lip's min/max do
    not promise that)."""
    values = np.array([0.0, -0.0, 1e-40, -1e-40, 3e-45, 1.5, -1.5, 7.0], np.float32)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.choice(values, size=(300, 16)))
    upstream = tf.constant(rng.choice(values, size=(300, 16)))
    score = tf.function(  # a graph over an unknown batch, as in training
        lambda x: sort_pairs(x), input_signature=[tf.TensorSpec([None, 16])]
    )
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = score(x)
    grad = tape.gradient(y, x, output_gradients=upstream).numpy()
    bits = x.numpy().view(np.int32).reshape(-1, 2)
    out = y.numpy().view(np.int32).reshape(-1, 2)
    swapped = np.all(out == bits[:, ::-1], axis=1)
    assert np.all(swapped | np.all(out == bits, axis=1))
    assert swapped.any() and not swapped.all()

    def flushed(v):  # as the CPU compares: subnormals as zeros (denormals-are-zero)
        v = v.numpy().reshape(-1, 2)
        return np.where(np.abs(v) < np.finfo(np.float32).tiny, 0, v)

    assert np.all(flushed(y)[:, 0] <= flushed(y)[:, 1])
    g = upstream.numpy().reshape(-1, 2)
    untied = flushed(x)[:, 0] != flushed(x)[:, 1]
    expected = np.where(swapped[:, None], g[:, ::-1], g)
    np.testing.assert_array_equal(grad.reshape(-1, 2)[untied], expected[untied])
    np.testing.assert_array_equal(  # another batch size: its own compiled loop
        score(x[:7]).numpy().view(np.int32), y.numpy()[:7].view(np.int32)
    )


def test_pair_sort_rejects_an_odd_number_of_channels():
    with pytest.raises(ValueError, match="even, static number of channels, got 3"):
        sort_pairs(tf.zeros([2, 3]))


def test_groupsort2_by_name_is_the_fast_layer():
    assert type(lipschitz_activation("groupsort2")) is GroupSort2


def test_inference_trace_is_exact_and_still_differentiable():
    """A graph traced without a tape sorts values only; a later tape still works."""
    layer = FullSort()
    ramp = tf.range(1.0, 129.0)
    fn = tf.function(lambda x: tf.reduce_sum(layer(x) * ramp))
    x = tf.random.stateless_normal((70, 128), seed=[5, 6])
    assert float(fn(x)) == pytest.approx(float(tf.reduce_sum(tf.sort(x) * ramp)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    with tf.GradientTape() as ref_tape:
        ref_tape.watch(x)
        ref = tf.reduce_sum(tf.sort(x) * ramp)
    np.testing.assert_array_equal(
        tape.gradient(y, x).numpy(), ref_tape.gradient(ref, x).numpy()
    )


def test_sort_rows_handles_signed_zeros_infinities_and_large_batches():
    x = tf.constant([[0.0, -1e-38, 3.4e38, -3.4e38, np.inf, -np.inf, 1e-38, -2.0]])
    np.testing.assert_array_equal(sort_rows(x).numpy(), np.sort(x.numpy(), -1))
    big = tf.random.stateless_normal((40000, 100), seed=[7, 8])  # several blocks
    np.testing.assert_array_equal(sort_rows(big).numpy(), np.sort(big.numpy(), -1))


def test_layers_serialize_and_keep_lipschitz_constant_one():
    for layer in (FullSort(), GroupSort(n=4), GroupSort2()):
        config = tf.keras.layers.serialize(layer)
        restored = tf.keras.layers.deserialize(config)
        assert type(restored) is type(layer)
        assert layer_lipschitz_bound(restored) == 1.0


def test_grid_sized_inference_matches_deel_lip_network():
    """Large inference batches (values-only sort in feature-major blocks)
    compute the network with deel-lip's FullSort (up to the matrix products'
    rounding, which differs between graph and eager)."""
    network = lipschitz_mlp(3, (128, 100), "fullsort", seed=3)
    rows = 5 * BLOCK_KEYS // 128 + 7  # several blocks and a padded last one

    def deel_forward(x):
        for layer in network.layers:
            x = DeelFullSort()(x) if isinstance(layer, FullSort) else layer(x)
        return x

    score = tf.function(
        lambda x: network(x, training=False),
        input_signature=[tf.TensorSpec([None, 3], tf.float32)],
    )
    x = tf.random.stateless_uniform((rows, 3), seed=[9, 10], minval=-2, maxval=2)
    ours, theirs = score(x).numpy(), deel_forward(x).numpy()
    assert any(isinstance(layer, FullSort) for layer in network.layers)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        score(x[:999]).numpy(), deel_forward(x[:999]).numpy(), rtol=0, atol=1e-6
    )
