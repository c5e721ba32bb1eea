"""Where kocc keeps its own helper beside deel-lip's, the two agree."""

import numpy as np
import pytest
import tensorflow as tf
from deel.lip.metrics import BinaryProvableRobustAccuracy
from deel.lip.utils import evaluate_lip_const

from kocc.diagnostics import local_lipschitz
from kocc.metrics import certified_accuracy, hkr_binary_radius


@pytest.mark.parametrize("epsilon", [0.0, 0.05, 0.3])
def test_certified_accuracy_of_binary_radii_is_deel_lip_provable_accuracy(epsilon):
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=0.5, size=256).astype(np.float32)
    labels = rng.choice([-1.0, 1.0], size=256).astype(np.float32)
    lipschitz = 1.5
    ours = certified_accuracy(
        hkr_binary_radius(logits, lipschitz), np.sign(logits) == labels, epsilon
    )
    metric = BinaryProvableRobustAccuracy(epsilon=epsilon, lip_const=lipschitz)
    theirs = float(metric(labels[:, None], logits[:, None]))
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert 0.0 < ours < 1.0


def test_finite_difference_estimate_never_exceeds_the_exact_gradient_norm():
    # f(x) = w . x has gradient norm ||w|| everywhere: the exact local constant
    w = np.array([[3.0], [-4.0]], np.float32)
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, use_bias=False)])
    model.build((None, 2))
    model.set_weights([w])
    x = np.random.default_rng(1).normal(size=(64, 2)).astype(np.float32)
    exact = local_lipschitz(model, x)
    assert exact == pytest.approx(5.0, rel=1e-5)
    estimate = float(evaluate_lip_const(model, x, eps=1e-3, seed=0))
    assert estimate <= exact * (1 + 1e-3)
    assert estimate > 0.5 * exact  # 64 random directions: close to ||w||
