"""How kocc.losses.OneClassHKR relates to deel.lip.losses.HKR.

deel-lip's HKR(alpha, min_margin) is ``-(E_+[f] - E_-[f]) + alpha *
mean(relu(min_margin / 2 - y f))``, with the KR term averaged per class. kocc's
OneClassHKR(margin, lam) is ``mean(lam * relu(margin - y f) - y f)``, averaged
per sample. On a batch with as many normal (+1) as negative (-1) samples, as
OCSDF's ``train_step`` builds them, ``mean(y f) = (E_+[f] - E_-[f]) / 2``, so

    OneClassHKR(margin=m, lam=l) = HKR(alpha=2 l, min_margin=2 m) / 2.

On an unbalanced batch they differ: deel-lip weighs the two classes equally,
OneClassHKR weighs every sample equally.
"""

import numpy as np
import pytest
import tensorflow as tf
from deel.lip.losses import HKR

from kocc.losses import OneClassHKR


def _batch(n_pos, n_neg, seed=0):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos), -np.ones(n_neg)].astype(np.float32)[:, None]
    f = rng.normal(scale=0.3, size=(n_pos + n_neg, 1)).astype(np.float32)
    return tf.constant(y), tf.constant(f)


@pytest.mark.parametrize(("margin", "lam"), [(0.05, 100.0), (0.79, 200.0), (1.0, 1.0)])
def test_on_balanced_batches_one_class_hkr_is_half_deel_lip_hkr(margin, lam):
    y, f = _batch(64, 64)
    ours = float(OneClassHKR(margin=margin, lam=lam)(y, f))
    theirs = float(HKR(alpha=2 * lam, min_margin=2 * margin)(y, f))
    assert ours == pytest.approx(theirs / 2, rel=1e-5, abs=1e-6)


def test_on_unbalanced_batches_the_kr_terms_weigh_classes_differently():
    y, f = _batch(96, 32, seed=1)
    ours = float(OneClassHKR(margin=0.05, lam=10.0)(y, f))
    theirs = float(HKR(alpha=20.0, min_margin=0.1)(y, f)) / 2
    pos, neg = f.numpy()[:96], f.numpy()[96:]
    hinge = np.mean(np.maximum(0.0, 0.05 - y.numpy() * f.numpy()))
    # per-sample mean of y f (ours) vs half the difference of class means (theirs)
    assert ours == pytest.approx(10.0 * hinge - np.mean(y.numpy() * f.numpy()), 1e-5)
    assert theirs == pytest.approx(10.0 * hinge - (pos.mean() - neg.mean()) / 2, 1e-5)
    assert abs(ours - theirs) > 1e-3
