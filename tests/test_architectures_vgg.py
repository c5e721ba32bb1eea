"""Tests of kocc.architectures.lipschitz_vgg (the paper's image network)."""

import kocc  # noqa: F401  (selects tf-keras; must run before TensorFlow loads)

# isort: split

import numpy as np
import pytest

from kocc.architectures import PAPER_VGG_WIDTHS, lipschitz_vgg
from kocc.diagnostics import gradient_norms
from kocc.orthogonalization import constrained_layers

NARROW = ((8, 8), (16, 16), (16,))


def test_narrow_vgg_is_1_lipschitz_on_random_images():
    model = lipschitz_vgg((28, 28, 1), widths=NARROW, seed=0)
    x = np.random.default_rng(0).uniform(-1, 1, (32, 28, 28, 1)).astype(np.float32)
    assert gradient_norms(model, x).max() <= 1.01
    # also after the kernels moved away from their initialization
    for layer in constrained_layers(model):
        layer.kernel.assign(layer.kernel * 3.0 + 0.1)
    model(x, training=True)  # deel-lip re-orthogonalizes in training mode
    assert gradient_norms(model, x).max() <= 1.01
    # pairs of images: |f(a) - f(b)| <= ||a - b||
    y = x + np.random.default_rng(1).normal(0, 0.3, x.shape).astype(np.float32)
    gap = np.abs(model(x, training=False) - model(y, training=False))[:, 0]
    dist = np.linalg.norm((x - y).reshape(len(x), -1), axis=1)
    assert np.all(gap <= dist * 1.01)


def test_vgg_has_the_paper_layout_and_one_output():
    model = lipschitz_vgg((28, 28, 1), seed=0)
    convs = [layer for layer in model.layers if "conv" in layer.name]
    assert [c.filters for c in convs] == [w for s in PAPER_VGG_WIDTHS for w in s]
    pools = [layer for layer in model.layers if "l2_norm_pooling" in layer.name]
    assert len(pools) == 4  # three 2x2 poolings and the global one
    assert model.output_shape == (None, 1)


def test_vgg_rgb_input_shape():
    model = lipschitz_vgg((32, 32, 3), widths=((4,), (4,)), activation="groupsort2")
    assert model(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_shape": (28, 28)}, "height, width, channels"),
        ({"input_shape": (28, 28, 1), "widths": ()}, "non-empty"),
        ({"input_shape": (28, 28, 1), "widths": ((8,), ())}, "non-empty"),
        ({"input_shape": (28, 28, 1), "widths": ((8, -1),)}, "positive"),
        ({"input_shape": (4, 4, 1), "widths": ((2,), (2,), (2,))}, "at least 8"),
        ({"input_shape": (28, 28, 1), "activation": "relu"}, "unknown activation"),
    ],
)
def test_vgg_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lipschitz_vgg(**kwargs)
